//! Running authd as a service: `authd healthcheck` against the real
//! binary (plain HTTP, HTTPS with and without the CA, a closed port, a
//! 404, a redirect, a listener that never answers), and `contrib/`'s
//! systemd unit and example settings checked against what the binary
//! accepts.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{run, run_command, Proc, BIN};

/// `authd healthcheck ARGS` with the server's settings in the
/// environment set to nonsense: the check must not read them.
fn healthcheck(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("healthcheck")
        .args(args)
        .env("AUTHD_ADDR", "not an address")
        .env("AUTHD_BCRYPT_COST", "abc")
        .env("AUTHD_PROFILE", "bogus")
        .env("AUTHD_DATA_DIR", "/nonexistent/authd")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9");
    run_command(command, None)
}

/// A failure is status 1 and one line on stderr that says `why`.
fn assert_unhealthy((code, stdout, stderr): (i32, String, String), why: &str) {
    assert_eq!(code, 1, "stdout: {stdout} stderr: {stderr}");
    assert!(stderr.contains(why), "no {why:?} in {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn healthcheck_passes_on_2xx_and_fails_on_404_and_a_stopped_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Proc::start(&tmp.path().join("store"), &[]);
    let url = format!("{}/healthz", server.base);
    let (code, stdout, stderr) = healthcheck(&[&url]);
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("answered 200"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    assert_unhealthy(
        healthcheck(&[&format!("{}/no-such-path", server.base)]),
        "answered 404",
    );
    // A 3xx is not followed (to the healthy URL here), and not healthy.
    let redirect = TcpListener::bind("127.0.0.1:0").unwrap();
    let moved = format!("http://{}/old-healthz", redirect.local_addr().unwrap());
    let to = url.clone();
    let answering = std::thread::spawn(move || {
        let (mut stream, _) = redirect.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head);
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).unwrap();
    });
    assert_unhealthy(healthcheck(&[&moved]), "answered 302");
    answering.join().unwrap();

    drop(server);
    assert_unhealthy(healthcheck(&[&url]), "connection refused");
}

#[test]
fn healthcheck_fails_promptly_on_a_listener_that_never_answers() {
    // The kernel completes the connection; nobody ever reads or writes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let started = Instant::now();
    let result = healthcheck(&[&url, "--timeout", "0.5"]);
    let took = started.elapsed();
    assert_unhealthy(result, "no answer within 0.5 s");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn healthcheck_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = tmp.path().join("missing.pem");
    let url = "http://127.0.0.1:9/healthz";
    for args in [
        &["127.0.0.1:5000/healthz"][..],
        &["ftp://127.0.0.1/healthz"],
        &["http:///healthz"],
        &[],
        &[url, "--timeout", "0"],
        &[url, "--timeout", "soon"],
        &[url, "--cacert", missing.to_str().unwrap()],
        &[url, "--cacert", empty.to_str().unwrap()],
    ] {
        let (code, _, stderr) = healthcheck(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("healthcheck"), "{stdout}");
}

#[test]
fn healthcheck_over_https_trusts_only_the_given_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path());
    let server = Proc::start(
        &tmp.path().join("store"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let url = format!("{}/healthz", server.base);
    let (code, stdout, stderr) = healthcheck(&[&url, "--cacert", ca.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    // Without it, the built-in roots do not know the test CA.
    assert_unhealthy(healthcheck(&[&url]), "--cacert");
    // Plain HTTP on the TLS port is no health either.
    let plain = url.replacen("https://", "http://", 1);
    let (code, _, stderr) = healthcheck(&[&plain, "--timeout", "2"]);
    assert_eq!(code, 1, "{stderr}");
}

/// A CA made for the test and a certificate it signed for 127.0.0.1 and
/// localhost: the CA's PEM file, the certificate's and its key's.
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

// --- contrib/: the systemd unit and its settings file ---

/// A file of `contrib/`.
fn contrib(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's directives, by section then key (a key's values in order);
/// comments left out.
fn unit() -> HashMap<String, HashMap<String, Vec<String>>> {
    let mut sections: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
    let mut section = String::new();
    for line in contrib("authd.service").lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        sections
            .entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

/// The example settings: `(variable, value, set)`, `set` false for a
/// commented-out line.
fn env_file() -> Vec<(String, String, bool)> {
    contrib("authd.env")
        .lines()
        .filter_map(|line| {
            let (set, line) = match line.strip_prefix('#') {
                Some(rest) => (false, rest),
                None => (true, line),
            };
            let (name, value) = line.split_once('=')?;
            (name.starts_with("AUTHD_") && !name.contains(' '))
                .then(|| (name.to_owned(), value.to_owned(), set))
        })
        .collect()
}

#[test]
fn the_systemd_unit_has_the_limits_sandbox_and_install_section() {
    let unit = unit();
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] {key}: {other:?}"),
        }
    };
    assert!(matches!(one("Type"), "simple" | "exec"));
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    // authd's usage errors (exit 2) are not retried.
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(one("EnvironmentFile"), "-/etc/authd/authd.env");
    for (key, value) in [
        ("User", "authd"),
        ("Group", "authd"),
        ("StateDirectory", "authd"),
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        // No capability at all (a port below 1024 is the commented case).
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    // The control socket of the admin commands is a Unix socket.
    let families: Vec<&str> = one("RestrictAddressFamilies").split(' ').collect();
    for family in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(families.contains(&family), "{families:?}");
    }
    assert!(service.get("AmbientCapabilities").is_none());
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // The data directory is the one systemd makes and hands to the user.
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(exec[..2], ["/usr/local/bin/authd", "serve"]);
    let flag = |name: &str| {
        let at = exec.iter().position(|a| *a == name);
        at.and_then(|i| exec.get(i + 1)).copied()
    };
    assert_eq!(flag("--profile"), Some("production"));
    assert_eq!(flag("--data-dir"), Some("/var/lib/authd"));

    // The limits let authd's default 1,024 connections through: its cap
    // is the lowest of 1,024, the open-file limit less 64 (src/cli/
    // system.rs) and the database pool, and half the pids limit.
    let number = |key: &str| one(key).parse::<usize>().unwrap();
    let wanted = authd::config::DEFAULT_MAX_CONNECTIONS;
    let pool = authd::config::DEFAULT_DB_POOL_SIZE as usize;
    assert!(number("LimitNOFILE") >= wanted + 64 + pool);
    assert!(number("TasksMax") / 2 >= wanted);
}

#[test]
fn the_example_settings_are_authd_s_and_the_unit_s_command_starts_with_them() {
    let settings = env_file();
    assert!(settings.len() >= 5, "{settings:?}");
    // Every variable named, set or commented, is one `authd serve` reads.
    let (code, help, stderr) = run(&["serve", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    for (name, _, _) in &settings {
        // `[env: NAME=VALUE]`, or `[env: NAME]` for a hidden value.
        assert!(
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]")),
            "{name} is not a variable of `authd serve`"
        );
    }
    let set: HashMap<&str, &str> = settings
        .iter()
        .filter(|(_, _, set)| *set)
        .map(|(name, value, _)| (name.as_str(), value.as_str()))
        .collect();
    assert!(set.contains_key("AUTHD_DELIVERY"), "{set:?}");

    // The unit's command line, with the example's settings: it serves in
    // the production profile (on a free port and a temporary store).
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit();
    let exec = unit["Service"]["ExecStart"][0].clone();
    let data_dir = tmp.path().join("state");
    let mut command = Command::new(BIN);
    for arg in exec.split_whitespace().skip(1) {
        match arg {
            "/var/lib/authd" => command.arg(&data_dir),
            arg => command.arg(arg),
        };
    }
    command.envs(&set).env("AUTHD_ADDR", "127.0.0.1:0");
    let server = Proc::spawn(command, &tmp.path().join("stderr"));
    assert!(
        server.stderr().contains("profile production"),
        "{}",
        server.stderr()
    );
    let (code, _, stderr) = healthcheck(&[&format!("{}/healthz", server.base)]);
    assert_eq!(code, 0, "{stderr}");
}

/// `systemd-analyze verify` accepts the unit, where it is installed (with
/// the test binary in place of /usr/local/bin/authd, which it checks).
#[test]
fn systemd_analyze_verifies_the_unit_where_available() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze not installed: unit not verified by systemd");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let unit = tmp.path().join("authd.service");
    std::fs::write(
        &unit,
        contrib("authd.service").replace("/usr/local/bin/authd", BIN),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Only what concerns this unit: systemd may warn about the host.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("authd.service"))
        .collect();
    assert!(about_unit.is_empty(), "{stderr}");
}
