//! The real `authd` binary: start-up, port 0, the store lock, signals,
//! durability across kill -9, and start-up errors.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{run, Proc, BIN};

fn port_zero_prints_the_bound_address_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = Proc::start(&tmp.path().join("store"), &[]);
    assert!(proc.base.starts_with("http://127.0.0.1:"), "{}", proc.base);
    assert!(!proc.base.ends_with(":0"));
    let (status, body) = proc.post("/users", "email=a%40b.io&password=pw");
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"email\":\"a@b.io\",\"message\":\"user created\"}\n")
    );
}

fn sigterm_and_sigint_stop_cleanly() {
    for signal in ["TERM", "INT"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut proc = Proc::start(&tmp.path().join("store"), &[]);
        proc.signal(signal);
        let status = proc.wait(Duration::from_secs(15));
        assert!(
            status.success(),
            "SIG{signal}: {status:?}; stderr: {}",
            proc.stderr()
        );
        assert!(
            proc.stderr().contains("authd: stopped"),
            "{}",
            proc.stderr()
        );
    }
}

fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut proc = Proc::start(&store, &[]);
    let (status, _) = proc.post("/users", "email=durable%40b.io&password=pw1");
    assert_eq!(status, 200);
    let (status, body) = proc.post("/reset_password", "email=durable%40b.io");
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["reset_token"].as_str().unwrap().to_owned();
    let form = format!("email=durable%40b.io&reset_token={token}&new_password=pw2");
    assert_eq!(proc.send("PUT", "/reset_password", &form, None).status, 200);
    // SIGKILL right after the 2xx: no chance to flush anything more.
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();

    let restarted = Proc::start(&store, &[]);
    assert_eq!(
        restarted
            .post("/sessions", "email=durable%40b.io&password=pw2")
            .0,
        200
    );
    assert_eq!(
        restarted
            .post("/sessions", "email=durable%40b.io&password=pw1")
            .0,
        401
    );
    assert_eq!(
        restarted
            .post("/users", "email=DURABLE%40b.io&password=x")
            .0,
        400
    );
}

#[test]
fn a_second_server_on_the_same_store_exits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let _first = Proc::start(&store, &[]);
    let started = Instant::now();
    let store_arg = store.to_str().unwrap();
    let (code, stdout, stderr) = run(&["--addr", "127.0.0.1:0", "--data-dir", store_arg]);
    assert_eq!(code, 1, "stdout: {stdout} stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains("in use by another authd process"),
        "{stderr}"
    );
    // Which process, and what to do.
    assert!(
        stderr.contains(&format!("(pid {}, authd)", _first.pid()))
            && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stdout.is_empty());
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    // Port already in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let store = tmp.path().join("a");
    let (code, _, stderr) = run(&["--addr", &addr, "--data-dir", store.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    // A data directory that is a file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let (code, _, stderr) = run(&[
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot open the data directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    // An unresolvable address.
    let (code, _, stderr) = run(&[
        "--addr",
        "no-such-host.invalid:5000",
        "--data-dir",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--bcrypt-cost", "3"][..],
        &["--bcrypt-cost", "32"],
        &["--threads", "0"],
        &["--no-such-flag"],
        &["serve", "--bcrypt-cost", "twelve"],
        &["--lockout-failures", "101"],
        &["--login-free-failures", "10", "--lockout-failures", "5"],
        &["--session-ttl", "0"],
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
    }
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--addr",
        "--data-dir",
        "--bcrypt-cost",
        "AUTHD_ADDR",
        "AUTHD_DATA_DIR",
        "AUTHD_BCRYPT_COST",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}");
    }
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn environment_variables_configure_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("env-store");
    let mut command = Command::new(BIN);
    command
        .env("AUTHD_ADDR", "127.0.0.1:0")
        .env("AUTHD_DATA_DIR", &store)
        .env("AUTHD_BCRYPT_COST", "5");
    let server = Proc::spawn(command, &tmp.path().join("env.stderr"));
    let (status, _) = server.post("/users", "email=e%40b.io&password=pw");
    drop(server);
    assert_eq!(status, 200);
    assert!(
        store.join("db").exists(),
        "the store went to AUTHD_DATA_DIR"
    );
    // The stored hash has the cost from AUTHD_BCRYPT_COST.
    let db = authd::store::SledStore::open(&store).unwrap();
    let user = authd::store::keyword::find_user_by(&db, "email", "e@b.io").unwrap();
    assert!(
        user.hashed_password.starts_with("$2b$05$"),
        "{}",
        user.hashed_password
    );
}

fn the_audit_log_records_every_event_and_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(&tmp.path().join("store"), &["--login-free-failures", "1"]);
    let send = |method: &str, path: &str, form: &str, cookie: Option<&str>| {
        proc.send(method, path, form, cookie)
    };
    assert_eq!(
        send("POST", "/users", "email=a%40b.io&password=Secret-1", None).status,
        200
    );
    assert_eq!(
        send("POST", "/users", "email=a%40b.io&password=Secret-1", None).status,
        400
    );
    assert_eq!(
        send("POST", "/sessions", "email=a%40b.io&password=Wrong-2", None).status,
        401
    );
    assert_eq!(
        send(
            "POST",
            "/sessions",
            "email=a%40b.io&password=Secret-1",
            None
        )
        .status,
        429
    );
    std::thread::sleep(Duration::from_millis(1100));
    let reply = send(
        "POST",
        "/sessions",
        "email=a%40b.io&password=Secret-1",
        None,
    );
    assert_eq!(reply.status, 200);
    let session = reply.session();
    assert_eq!(send("DELETE", "/sessions", "", Some(&session)).status, 302);
    let reply = send("POST", "/reset_password", "email=a%40b.io", None);
    assert_eq!(reply.status, 200);
    let token = reply.json();
    let token = token["reset_token"].as_str().unwrap().to_owned();
    let form = format!("email=a%40b.io&reset_token={token}&new_password=Secret-3");
    assert_eq!(send("PUT", "/reset_password", &form, None).status, 200);
    assert_eq!(send("PUT", "/reset_password", &form, None).status, 403);
    proc.signal("TERM");
    assert!(proc.wait(Duration::from_secs(15)).success());

    let stderr = proc.stderr();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["audit"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "register",
            // The dev profile's outbox: a verification for the new account.
            "verify_requested",
            "register_refused",
            "login_failure",
            "throttled",
            "login_success",
            "logout",
            "reset_requested",
            "password_changed",
            "reset_refused",
        ],
        "{stderr}"
    );
    for event in &events {
        assert_eq!(event["ip"], "127.0.0.1");
        assert_eq!(event["email"], "a@b.io");
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
    }
    for (event, name) in events.iter().zip(&names) {
        let has_id = event.get("user_id").is_some();
        // A registered account is named by its id too, in failures as in
        // successes (only a refused registration has no account of its own).
        let expect_id = *name != "register_refused";
        assert_eq!(has_id, expect_id, "{name}: {event}");
    }
    assert_eq!(events[4]["route"], "POST /sessions");
    for secret in ["Secret-1", "Wrong-2", "Secret-3", &session, &token] {
        assert!(!stderr.contains(secret), "stderr leaks {secret:?}");
    }
}

crate::on_every_store!(
    port_zero_prints_the_bound_address_and_serves,
    sigterm_and_sigint_stop_cleanly,
    acknowledged_writes_survive_kill_9,
    the_audit_log_records_every_event_and_no_secret,
);

/// Start-up mistakes are usage errors that say what to write instead, and
/// leave nothing behind: no store is created before the port is bound.
#[test]
fn start_up_mistakes_name_the_fix_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let fresh_arg = fresh.to_str().unwrap();
    // An address without a port.
    let (code, _, stderr) = run(&["--addr", "127.0.0.1", "--data-dir", fresh_arg]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("expected HOST:PORT") && stderr.contains("127.0.0.1:0 picks a free port"),
        "{stderr}"
    );
    // --port is no option: the hint points at --addr.
    let (code, _, stderr) = run(&["--port", "8080", "--data-dir", fresh_arg]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--addr 127.0.0.1:8080"), "{stderr}");
    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = run(&["--addr", &addr, "--data-dir", fresh_arg]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        !fresh.exists(),
        "a failed start left {} behind",
        fresh.display()
    );

    // A store another server holds, on that server's port: the store is
    // what is reported.
    let held = tmp.path().join("held");
    let first = Proc::start(&held, &[]);
    let first_addr = first.base.trim_start_matches("http://").to_owned();
    let (code, _, stderr) = run(&["--addr", &first_addr, "--data-dir", held.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("in use by another authd process"),
        "{stderr}"
    );
}

/// A bad value from an environment variable is reported under the
/// variable's name; booleans read as people write them.
#[test]
fn environment_values_are_named_and_booleans_are_lenient() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .env("AUTHD_BCRYPT_COST", "abc")
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("never"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("AUTHD_BCRYPT_COST (the environment variable of --bcrypt-cost)"),
        "{stderr}"
    );
    for (value, secure) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("off", false),
    ] {
        let mut command = Command::new(BIN);
        command
            .env("AUTHD_BCRYPT_COST", "4")
            .env("AUTHD_SECURE_COOKIES", value)
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join(format!("bool-{value}")));
        let server = Proc::spawn(command, &tmp.path().join(format!("bool-{value}.stderr")));
        assert_eq!(server.post("/users", "email=b%40x.io&password=pw").0, 200);
        let answer = server.send("POST", "/sessions", "email=b%40x.io&password=pw", None);
        let cookie = answer
            .set_cookie("session_id")
            .unwrap_or_default()
            .to_owned();
        assert_eq!(cookie.contains("Secure"), secure, "{value}: {cookie}");
    }
    let output = Command::new(BIN)
        .env("AUTHD_SECURE_COOKIES", "maybe")
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("never"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!tmp.path().join("never").exists());
}

/// A server setting gone wrong in the environment (a container's, say)
/// stops the server with a usage error, and leaves the admin commands,
/// which do not use it, working.
#[test]
fn a_bad_serve_variable_does_not_stop_the_admin_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let with_bad_env = |args: &[&str]| {
        Command::new(BIN)
            .env("AUTHD_ADDR", "not an address")
            .env("AUTHD_BCRYPT_COST", "4")
            .env("AUTHD_SECURE_COOKIES", "maybe")
            .args(args)
            .arg("--data-dir")
            .arg(&store)
            .output()
            .unwrap()
    };
    let serve = with_bad_env(&["serve"]);
    assert_eq!(serve.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("AUTHD_ADDR"));
    let add = Command::new(BIN)
        .env("AUTHD_ADDR", "not an address")
        .env("AUTHD_BCRYPT_COST", "4")
        .args(["user", "add", "a@x.io", "--password-stdin", "--data-dir"])
        .arg(&store)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(b"pw-a-1\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        add.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    for args in [&["check"][..], &["user", "list"], &["outbox", "list"]] {
        let output = with_bad_env(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("AUTHD_ADDR"), "{args:?}: {stderr}");
    }
}

/// Standard output is exactly one line, for scripts; the summary goes to
/// stderr and says the profile and the absolute store path.
#[test]
fn stdout_is_one_line_and_the_summary_goes_to_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let mut child = Command::new(BIN)
        .env("AUTHD_BCRYPT_COST", "4")
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The line says the server is serving; stopped then, everything it
    // printed is there (a fixed sleep lost the race on a busy machine).
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = crate::common::process::wait_output(child, Duration::from_secs(20));
    let stdout = format!("{first}{}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("listening on http://127.0.0.1:"),
        "{stdout}"
    );
    let absolute = std::fs::canonicalize(&store).unwrap();
    assert!(stderr.contains("profile dev"), "{stderr}");
    assert!(
        stderr.contains(&format!("store {} (embedded)", absolute.display()))
            || stderr.contains(&format!("store {} (embedded)", store.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("tokens in the answers, messages to the outbox"),
        "{stderr}"
    );
}
