//! The real `authd` binary: start-up, port 0, the store lock, signals,
//! durability across kill -9, and start-up errors.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_authd");

/// A server process, its address, and where its stderr goes.
struct Proc {
    child: Child,
    base: String,
    stderr: std::path::PathBuf,
}

impl Proc {
    /// Starts `authd serve` on port 0 with `dir` as the store.
    fn start(dir: &Path, extra: &[&str]) -> Proc {
        let stderr = dir.with_extension("stderr");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--bcrypt-cost",
                "4",
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_owned();
        Proc {
            child,
            base,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to end, at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "authd did not exit; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn post(&self, path: &str, form: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(format!("{}{path}", self.base))
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args`; returns (code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "authd {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn port_zero_prints_the_bound_address_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = Proc::start(&tmp.path().join("store"), &[]);
    assert!(proc.base.starts_with("http://127.0.0.1:"), "{}", proc.base);
    assert!(!proc.base.ends_with(":0"));
    let (status, body) = proc.post("/users", "email=a%40b.io&password=pw");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"email":"a@b.io","message":"user created"}"#)
    );
}

#[test]
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

#[test]
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
    let ureq_put = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .put(format!("{}/reset_password", proc.base))
            .content_type("application/x-www-form-urlencoded")
            .send(form.as_str())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ureq_put, 200);
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
    let mut child = Command::new(BIN)
        .env("AUTHD_ADDR", "127.0.0.1:0")
        .env("AUTHD_DATA_DIR", &store)
        .env("AUTHD_BCRYPT_COST", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = agent
        .post(format!("{base}/users"))
        .content_type("application/x-www-form-urlencoded")
        .send("email=e%40b.io&password=pw")
        .unwrap()
        .status()
        .as_u16();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert!(
        store.join("db").exists(),
        "the store went to AUTHD_DATA_DIR"
    );
    // The stored hash has the cost from AUTHD_BCRYPT_COST.
    let db = authd::store::SledStore::open(&store).unwrap();
    use authd::store::UserStore as _;
    let user = db.find_user_by_keyword("email", "e@b.io").unwrap();
    assert!(
        user.hashed_password.starts_with("$2b$05$"),
        "{}",
        user.hashed_password
    );
}

#[test]
fn the_audit_log_records_every_event_and_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let mut proc = Proc::start(&tmp.path().join("store"), &["--login-free-failures", "1"]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let send = |method: &str, path: &str, form: &str, cookie: Option<&str>| {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", proc.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(token) = cookie {
            request = request.header("Cookie", format!("session_id={token}"));
        }
        let mut response = agent.run(request.body(form.to_owned()).unwrap()).unwrap();
        let cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, body, cookie)
    };
    assert_eq!(
        send("POST", "/users", "email=a%40b.io&password=Secret-1", None).0,
        200
    );
    assert_eq!(
        send("POST", "/users", "email=a%40b.io&password=Secret-1", None).0,
        400
    );
    assert_eq!(
        send("POST", "/sessions", "email=a%40b.io&password=Wrong-2", None).0,
        401
    );
    assert_eq!(
        send(
            "POST",
            "/sessions",
            "email=a%40b.io&password=Secret-1",
            None
        )
        .0,
        429
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, cookie) = send(
        "POST",
        "/sessions",
        "email=a%40b.io&password=Secret-1",
        None,
    );
    assert_eq!(status, 200);
    let session = cookie.unwrap()["session_id=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(send("DELETE", "/sessions", "", Some(&session)).0, 302);
    let (status, body, _) = send("POST", "/reset_password", "email=a%40b.io", None);
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["reset_token"].as_str().unwrap().to_owned();
    let form = format!("email=a%40b.io&reset_token={token}&new_password=Secret-3");
    assert_eq!(send("PUT", "/reset_password", &form, None).0, 200);
    assert_eq!(send("PUT", "/reset_password", &form, None).0, 403);
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
        let expect_id = [
            "register",
            "login_success",
            "logout",
            "reset_requested",
            "password_changed",
        ]
        .contains(name);
        assert_eq!(has_id, expect_id, "{name}: {event}");
    }
    assert_eq!(events[3]["route"], "POST /sessions");
    for secret in ["Secret-1", "Wrong-2", "Secret-3", &session, &token] {
        assert!(!stderr.contains(secret), "stderr leaks {secret:?}");
    }
}
