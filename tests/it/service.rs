//! Running authd as a service: `authd healthcheck` against the real
//! binary (plain HTTP, HTTPS with and without the CA, a closed port, a
//! 404, a redirect, a listener that never answers).

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
