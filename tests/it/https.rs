//! HTTPS from the binary (`--tls-cert`, `--tls-key`): the real `authd` on
//! loopback, with certificates made here by `rcgen` (a test authority and
//! leaf certificates for localhost), and a rustls client (ring, as the
//! server) that trusts only that authority.
//!
//! What is checked: the reference flow over HTTPS with a `Secure` cookie
//! and HSTS on every answer, the edge's own included; SIGHUP swaps the
//! certificate for new connections while open ones keep working, keeps
//! the served pair when the new one is bad, and never stops the server;
//! bad, mismatched, missing and half-given pairs are one-line start-up
//! errors; a client that connects and never says hello is dropped after
//! the head timeout while others are served; plain HTTP on the TLS port
//! and connections over the cap are closed and harm nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::common::process::{run, Proc};
use crate::common::raw::{request, Answer, FORM};

const LIMIT: Duration = Duration::from_secs(10);
const HSTS: &str = "max-age=31536000";

/// A test certificate authority.
struct Authority {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate for localhost and its key, as PEM, and the certificate's
/// DER (what a client sees).
struct Pair {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Authority {
    fn new() -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Authority {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn pair(&self) -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration that trusts this authority only.
    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        Arc::new(config)
    }
}

/// Writes `pair` to `dir/cert.pem` and `dir/key.pem`; returns their paths.
fn write_pair(dir: &Path, pair: &Pair) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pair.cert).unwrap();
    std::fs::write(&key, &pair.key).unwrap();
    (cert, key)
}

/// `authd serve` over HTTPS with `pair`, and `flags`.
fn start(dir: &Path, pair: &Pair, flags: &[&str]) -> (Proc, SocketAddr) {
    let (cert, key) = write_pair(dir, pair);
    let mut all = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    all.extend_from_slice(flags);
    let server = Proc::start(&dir.join("store"), &all);
    let addr = server
        .base
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not https://IP:PORT: {}", server.base));
    (server, addr)
}

/// A TLS connection to the server, keeping what it read and not used.
struct Tls {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Tls {
    fn connect(authority: &Authority, addr: SocketAddr) -> Tls {
        let sock = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
        sock.set_read_timeout(Some(LIMIT)).unwrap();
        sock.set_write_timeout(Some(LIMIT)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(authority.client(), name).unwrap();
        Tls {
            stream: StreamOwned::new(conn, sock),
            buf: Vec::new(),
        }
    }

    /// Sends `method path` (`Host`, `Content-Length` added) and reads its
    /// answer; the connection stays open unless `headers` close it.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, String> {
        let length = body.len().to_string();
        let mut all = vec![("Host", "localhost"), ("Content-Length", length.as_str())];
        all.extend_from_slice(headers);
        let bytes = request(method, path, &all, body);
        self.stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("closed ({e})"))?;
        self.answer()
    }

    fn answer(&mut self) -> Result<Answer, String> {
        let deadline = Instant::now() + LIMIT;
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if let Some(answer) = Answer::parse(&self.buf, false)? {
                self.buf.drain(..answer.wire);
                return Ok(answer);
            }
            if Instant::now() > deadline {
                return Err("timed out".to_owned());
            }
            match self.stream.read(&mut scratch) {
                Ok(0) => return Err("closed (EOF)".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&scratch[..n]),
                Err(e) => return Err(format!("closed ({e})")),
            }
        }
    }

    /// The certificate the server presented.
    fn served(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    }
}

/// One request on a connection of its own.
fn call(
    authority: &Authority,
    addr: SocketAddr,
    method: &str,
    path: &str,
    form: &str,
    cookie: Option<&str>,
) -> Answer {
    let mut tls = Tls::connect(authority, addr);
    let mut headers = vec![("Content-Type", FORM), ("Connection", "close")];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    tls.call(method, path, &headers, form.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Waits (at most [`LIMIT`]) for `text` in the server's stderr.
fn wait_for_log(server: &Proc, text: &str) {
    let deadline = Instant::now() + LIMIT;
    while !server.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_running(server: &mut Proc) {
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "authd exited; stderr:\n{}",
        server.stderr()
    );
}

#[test]
fn the_reference_flow_over_https_has_a_secure_cookie_and_hsts() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let pair = authority.pair();
    let (mut server, addr) = start(tmp.path(), &pair, &[]);
    let form = "email=tls%40b.io&password=pw";
    let registered = call(&authority, addr, "POST", "/users", form, None);
    assert_eq!(registered.status, 200, "{registered:?}");
    let login = call(&authority, addr, "POST", "/sessions", form, None);
    assert_eq!(login.status, 200, "{login:?}");
    let set_cookie = login.set_cookie("session_id").unwrap().to_owned();
    assert!(
        set_cookie.split("; ").any(|a| a == "Secure"),
        "{set_cookie}"
    );
    let cookie = format!("session_id={}", login.session());
    let profile = call(&authority, addr, "GET", "/profile", "", Some(&cookie));
    assert_eq!(profile.status, 200, "{profile:?}");
    assert_eq!(profile.json()["email"], "tls@b.io");
    // Logging out clears the cookie with the same attributes.
    let logout = call(&authority, addr, "DELETE", "/sessions", "", Some(&cookie));
    assert_eq!(logout.status, 302, "{logout:?}");
    assert!(logout
        .set_cookie("session_id")
        .unwrap()
        .contains("; Secure"));
    for answer in [&registered, &login, &profile, &logout] {
        assert_eq!(answer.only("Strict-Transport-Security"), Some(HSTS));
    }
    // The edge's own answers too (two Content-Length values: 400).
    let mut tls = Tls::connect(&authority, addr);
    let edge = tls
        .call("POST", "/users", &[("Content-Length", "7")], b"")
        .unwrap();
    assert_eq!(edge.status, 400, "{edge:?}");
    assert_eq!(edge.only("Strict-Transport-Security"), Some(HSTS));
    assert_eq!(tls.served(), pair.der);
    assert!(
        server.stderr().contains("HTTPS with"),
        "{}",
        server.stderr()
    );
    assert_running(&mut server);
}

#[test]
fn plain_http_answers_carry_no_hsts() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Proc::start(&tmp.path().join("store"), &[]);
    let answer = server.request("GET", "/", &[], b"");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Strict-Transport-Security"), None);
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let (first, second) = (authority.pair(), authority.pair());
    let (mut server, addr) = start(tmp.path(), &first, &["--keepalive-timeout", "60"]);
    // A kept-alive connection made before the swap.
    let mut before = Tls::connect(&authority, addr);
    assert_eq!(before.call("GET", "/", &[], b"").unwrap().status, 200);
    assert_eq!(before.served(), first.der);

    write_pair(tmp.path(), &second);
    server.signal("HUP");
    wait_for_log(&server, "SIGHUP: re-read the TLS certificate");
    assert_running(&mut server);
    let mut after = Tls::connect(&authority, addr);
    assert_eq!(after.call("GET", "/", &[], b"").unwrap().status, 200);
    assert_eq!(after.served(), second.der);
    // The connection made before still works, on the certificate it had.
    assert_eq!(before.call("GET", "/", &[], b"").unwrap().status, 200);
    assert_eq!(before.served(), first.der);

    // A broken renewal: one line, and the pair served stays.
    std::fs::write(tmp.path().join("key.pem"), "not a key").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "SIGHUP: keeping the TLS certificate served");
    let kept = server
        .stderr()
        .lines()
        .filter(|l| l.contains("keeping the TLS certificate"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains("key.pem"), "{kept:?}");
    let mut again = Tls::connect(&authority, addr);
    assert_eq!(again.call("GET", "/", &[], b"").unwrap().status, 200);
    assert_eq!(again.served(), second.der);
    assert_running(&mut server);

    // SIGTERM still stops it cleanly.
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {}", server.stderr());
}

#[test]
fn sighup_without_tls_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Proc::start(&tmp.path().join("store"), &[]);
    server.signal("HUP");
    wait_for_log(&server, "SIGHUP: no --tls-cert to re-read");
    assert_running(&mut server);
    assert_eq!(server.request("GET", "/", &[], b"").status, 200);
}

#[test]
fn bad_pairs_are_one_line_start_up_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let (pair, other) = (authority.pair(), authority.pair());
    let dir = |name: &str| {
        let path = tmp.path().join(name);
        std::fs::create_dir(&path).unwrap();
        path
    };
    let path = |p: &Path| p.to_str().unwrap().to_owned();

    let bad_key = dir("bad-key");
    let (cert, key) = write_pair(&bad_key, &pair);
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mismatched = dir("mismatched");
    let (cert2, key2) = write_pair(&mismatched, &pair);
    std::fs::write(&key2, &other.key).unwrap();
    let missing = tmp.path().join("missing.pem");

    for (flags, names) in [
        (vec![path(&cert), path(&key)], vec![path(&key)]),
        (
            vec![path(&cert2), path(&key2)],
            vec![path(&key2), path(&cert2)],
        ),
        (vec![path(&missing), path(&key2)], vec![path(&missing)]),
    ] {
        let store = tmp.path().join("store");
        let (code, stdout, stderr) = run(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            store.to_str().unwrap(),
            "--tls-cert",
            &flags[0],
            "--tls-key",
            &flags[1],
        ]);
        assert_eq!(code, 1, "{flags:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("authd: error: "), "{stderr}");
        for name in names {
            assert!(stderr.contains(&name), "{name} not in {stderr}");
        }
        // Nothing was made: the pair is checked before the store opens.
        assert!(!store.exists(), "{flags:?}");
    }
    let mismatch = run(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        tmp.path().join("store").to_str().unwrap(),
        "--tls-cert",
        &path(&cert2),
        "--tls-key",
        &path(&key2),
    ])
    .2;
    assert!(mismatch.contains("does not match"), "{mismatch}");

    // One of the two alone is a usage error (status 2), from either source.
    let (code, _, stderr) = run(&["serve", "--tls-cert", &path(&cert)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-cert needs --tls-key"), "{stderr}");
    let mut command = std::process::Command::new(crate::common::process::BIN);
    command.env("AUTHD_TLS_KEY", path(&key)).args([
        "serve",
        "--data-dir",
        tmp.path().join("store").to_str().unwrap(),
    ]);
    let (code, _, stderr) = crate::common::process::run_command(command, None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-key needs --tls-cert"), "{stderr}");
}

#[test]
fn a_silent_client_is_dropped_after_the_head_timeout_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let pair = authority.pair();
    let (mut server, addr) = start(tmp.path(), &pair, &["--header-timeout", "0.5"]);
    let mut silent: Vec<TcpStream> = (0..4)
        .map(|_| {
            let sock = TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(LIMIT)).unwrap();
            sock
        })
        .collect();
    let started = Instant::now();
    // Others are served meanwhile, promptly.
    let answer = call(&authority, addr, "GET", "/", "", None);
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() < Duration::from_millis(450));
    // Each silent one is closed, without a byte, after the head timeout.
    for sock in &mut silent {
        let mut rest = Vec::new();
        let read = sock.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{read:?} {rest:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(call(&authority, addr, "GET", "/", "", None).status, 200);
    assert_running(&mut server);
}

#[test]
fn plain_http_on_the_tls_port_harms_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let pair = authority.pair();
    let (mut server, addr) = start(tmp.path(), &pair, &[]);
    for _ in 0..3 {
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.set_read_timeout(Some(LIMIT)).unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        // A TLS alert at most, never an HTTP answer in the clear.
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    }
    assert_eq!(call(&authority, addr, "GET", "/", "", None).status, 200);
    assert_running(&mut server);
}

#[test]
fn over_the_cap_a_tls_connection_is_closed_and_the_held_one_served() {
    let tmp = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let pair = authority.pair();
    let (mut server, addr) = start(
        tmp.path(),
        &pair,
        &["--max-connections", "1", "--keepalive-timeout", "30"],
    );
    let mut held = Tls::connect(&authority, addr);
    assert_eq!(held.call("GET", "/", &[], b"").unwrap().status, 200);
    let mut over = Tls::connect(&authority, addr);
    let refused = over.call("GET", "/", &[], b"");
    assert!(
        refused.as_ref().is_err_and(|e| e.starts_with("closed")),
        "{refused:?}"
    );
    assert_eq!(held.call("GET", "/", &[], b"").unwrap().status, 200);
    assert_running(&mut server);
}
