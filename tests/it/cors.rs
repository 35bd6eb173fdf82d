//! CORS for browser front ends on other origins, and `--allowed-origins`.
//!
//! Header by header with the raw client: which origins get
//! `Access-Control-Allow-Origin` and the rest (listed ones; in dev, local
//! pages on any port), on every routed answer, errors included; `Vary:
//! Origin` on every answer; preflights; never on `/metrics`, `/dev/*` or
//! `/ui/*`; values refused at start. Then in a real browser: headless
//! Chromium loads a page from another port, which registers, logs in,
//! reads the profile and logs out through `fetch(url, {credentials:
//! "include"})`; the same page from an origin that is not allowed reads
//! nothing and, its requests being preflighted, changes nothing.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;
use authd::server::{self, StartError};

use crate::common::process::run;
use crate::common::raw::Answer;
use crate::common::{encode, test_config, urlencode, Format, TestApp};

const STRONG: &str = "correct horse battery staple";
/// A front end's dev server: allowed by default in the dev profile.
const LOCAL_PAGE: &str = "http://localhost:3000";
/// A listed origin (production tests).
const LISTED: &str = "https://app.example.com";

const ALLOW_ORIGIN: &str = "Access-Control-Allow-Origin";
/// Every CORS response header authd may send.
const CORS_HEADERS: [&str; 6] = [
    ALLOW_ORIGIN,
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Max-Age",
];

/// `method path` with `Origin: origin` (none for `None`), the session
/// cookie, a form body of `fields` and the `extra` headers.
fn from(
    app: &TestApp,
    origin: Option<&str>,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    session: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let (content_type, body) = encode(Format::Form, fields);
    let mut headers = vec![("Content-Type", content_type)];
    headers.extend(origin.map(|o| ("Origin", o.to_owned())));
    headers.extend(session.map(|token| app.cookie(token)));
    headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    app.request_with(method, path, &headers, &body)
}

/// A preflight of `method path` from `origin`.
fn preflight(app: &TestApp, origin: &str, method: &str, path: &str) -> Answer {
    let headers = [
        ("Origin", origin.to_owned()),
        ("Access-Control-Request-Method", method.to_owned()),
        ("Access-Control-Request-Headers", "content-type".to_owned()),
    ];
    app.request_with("OPTIONS", path, &headers, b"")
}

/// `Vary: Origin`, once: every answer has it.
fn assert_varies(reply: &Answer, what: &str) {
    assert_eq!(reply.all("Vary"), ["Origin"], "{what}: {reply:?}");
}

/// The headers of an answer a page of `origin` may read, credentials
/// included, each once; and none of a preflight's.
fn assert_readable_by(reply: &Answer, origin: &str, what: &str) {
    assert_eq!(reply.all(ALLOW_ORIGIN), [origin], "{what}: {reply:?}");
    assert_eq!(
        reply.all("Access-Control-Allow-Credentials"),
        ["true"],
        "{what}: {reply:?}"
    );
    assert_eq!(
        reply.all("Access-Control-Expose-Headers"),
        ["Retry-After"],
        "{what}: {reply:?}"
    );
    for name in &CORS_HEADERS[3..] {
        assert!(reply.all(name).is_empty(), "{what}: {name} in {reply:?}");
    }
    assert_varies(reply, what);
}

/// No CORS header at all, but `Vary: Origin`.
fn assert_not_readable(reply: &Answer, what: &str) {
    for name in CORS_HEADERS {
        assert!(reply.all(name).is_empty(), "{what}: {name} in {reply:?}");
    }
    assert_varies(reply, what);
}

/// A preflight's answer for an allowed `origin`: 204, no body, every
/// header once.
fn assert_preflight_allowed(reply: &Answer, origin: &str, what: &str) {
    assert_eq!(reply.status, 204, "{what}: {reply:?}");
    assert!(reply.body.is_empty(), "{what}: {reply:?}");
    for (name, value) in [
        (ALLOW_ORIGIN, origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE"),
        (
            "Access-Control-Allow-Headers",
            "Content-Type, Authorization",
        ),
        ("Access-Control-Max-Age", "600"),
    ] {
        assert_eq!(reply.all(name), [value], "{what}: {name} in {reply:?}");
    }
    assert_varies(reply, what);
}

/// The answers a page gets from every kind of route: success, errors in
/// JSON, 404, 405 (a plain `OPTIONS` included: it is no preflight).
fn every_kind_of_answer(app: &TestApp, origin: Option<&str>, tag: &str) -> Vec<(String, Answer)> {
    let email = format!("{tag}@example.com");
    let creds = [("email", email.as_str()), ("password", STRONG)];
    let mut seen = Vec::new();
    let mut send = |what: &str, reply: Answer, status: u16| {
        assert_eq!(reply.status, status, "{what} from {origin:?}: {reply:?}");
        seen.push((format!("{what} from {origin:?}"), reply));
    };
    send("GET /", from(app, origin, "GET", "/", &[], None, &[]), 200);
    send(
        "POST /users",
        from(app, origin, "POST", "/users", &creds, None, &[]),
        200,
    );
    send(
        "POST /users again",
        from(app, origin, "POST", "/users", &creds, None, &[]),
        400,
    );
    let wrong = [("email", email.as_str()), ("password", "wrong")];
    send(
        "POST /sessions wrong",
        from(app, origin, "POST", "/sessions", &wrong, None, &[]),
        401,
    );
    let login = from(app, origin, "POST", "/sessions", &creds, None, &[]);
    let session = app.session_of(&login);
    send("POST /sessions", login, 200);
    send(
        "GET /profile",
        from(app, origin, "GET", "/profile", &[], Some(&session), &[]),
        200,
    );
    send(
        "GET /sessions",
        from(app, origin, "GET", "/sessions", &[], Some(&session), &[]),
        200,
    );
    send(
        "DELETE /sessions/<unknown>",
        from(
            app,
            origin,
            "DELETE",
            "/sessions/0123456789abcdef",
            &[],
            Some(&session),
            &[],
        ),
        404,
    );
    send(
        "DELETE /sessions",
        from(app, origin, "DELETE", "/sessions", &[], Some(&session), &[]),
        302,
    );
    send(
        "GET /profile ended",
        from(app, origin, "GET", "/profile", &[], Some(&session), &[]),
        403,
    );
    send(
        "POST /users text",
        {
            let mut headers = vec![("Content-Type", "text/plain".to_owned())];
            headers.extend(origin.map(|o| ("Origin", o.to_owned())));
            app.request_with("POST", "/users", &headers, b"x")
        },
        415,
    );
    send(
        "GET /nope",
        from(app, origin, "GET", "/nope", &[], None, &[]),
        404,
    );
    send(
        "PATCH /users",
        from(app, origin, "PATCH", "/users", &[], None, &[]),
        405,
    );
    let options = from(app, origin, "OPTIONS", "/sessions", &[], None, &[]);
    assert_eq!(options.header("Allow"), Some("GET, POST, DELETE"));
    send("OPTIONS /sessions (no preflight)", options, 405);
    send(
        "GET /healthz",
        from(app, origin, "GET", "/healthz", &[], None, &[]),
        200,
    );
    send(
        "GET /openapi.json",
        from(app, origin, "GET", "/openapi.json", &[], None, &[]),
        200,
    );
    seen
}

fn dev_lets_local_pages_on_any_port_read_every_answer() {
    let app = TestApp::spawn();
    for (i, origin) in [
        LOCAL_PAGE,
        "http://127.0.0.1:5173",
        "http://[::1]:8080",
        "http://localhost",
    ]
    .into_iter()
    .enumerate()
    {
        for (what, reply) in every_kind_of_answer(&app, Some(origin), &format!("local{i}")) {
            assert_readable_by(&reply, origin, &what);
        }
    }
}

fn other_origins_and_no_origin_read_nothing() {
    let app = TestApp::spawn();
    for (i, origin) in [
        None,
        Some("https://evil.example"),
        // Local in name only: another scheme, host or address.
        Some("https://localhost:3000"),
        Some("http://127.0.0.2:3000"),
        Some("http://localhost.evil.example:3000"),
        Some("null"),
    ]
    .into_iter()
    .enumerate()
    {
        for (what, reply) in every_kind_of_answer(&app, origin, &format!("other{i}")) {
            assert_not_readable(&reply, &what);
        }
    }
    // Two Origin lines are no browser's: nothing is echoed.
    let reply = app.request_with(
        "GET",
        "/",
        &[
            ("Origin", LOCAL_PAGE.to_owned()),
            ("Origin", "https://evil.example".to_owned()),
        ],
        b"",
    );
    assert_not_readable(&reply, "two origins");
}

fn preflights_answer_204_and_allow_only_allowed_origins() {
    let app = TestApp::spawn();
    for path in [
        "/",
        "/users",
        "/users/",
        "/sessions",
        "/sessions/0123456789abcdef",
        "/profile",
        "/reset_password",
        "/healthz",
        "/openapi.json",
        // Unknown paths too: the request itself then gets its 404, which
        // the page can read.
        "/nope",
    ] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let what = format!("preflight of {method} {path}");
            let reply = preflight(&app, LOCAL_PAGE, method, path);
            assert_preflight_allowed(&reply, LOCAL_PAGE, &what);
            let reply = preflight(&app, "https://evil.example", method, path);
            assert_eq!(reply.status, 204, "{what}: {reply:?}");
            assert!(reply.body.is_empty(), "{what}: {reply:?}");
            assert_not_readable(&reply, &what);
        }
    }
    // A preflight changes nothing and reads no body.
    let users = app.user_count();
    let reply = app.request_with(
        "OPTIONS",
        "/users",
        &[
            ("Origin", LOCAL_PAGE.to_owned()),
            ("Access-Control-Request-Method", "POST".to_owned()),
            ("Content-Type", "application/json".to_owned()),
        ],
        br#"{"email": "pre@example.com", "password": "pw"}"#,
    );
    assert_preflight_allowed(&reply, LOCAL_PAGE, "preflight with a body");
    assert_eq!(app.user_count(), users);
    // Without Origin it is no CORS request: a bare 204.
    let reply = app.request_with(
        "OPTIONS",
        "/users",
        &[("Access-Control-Request-Method", "POST".to_owned())],
        b"",
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_not_readable(&reply, "preflight without Origin");
}

fn metrics_dev_and_ui_are_never_cors() {
    let app = TestApp::spawn_with(|c| c.allowed_origins = vec![LISTED.to_owned()]);
    for path in [
        "/metrics",
        "/metrics/",
        "/dev",
        "/dev/mail",
        "/dev/reset/abc",
        "/ui",
        "/ui/",
        "/ui/app.js",
        "//ui/index.html",
        "/UI/",
    ] {
        for origin in [LOCAL_PAGE, LISTED] {
            let what = format!("GET {path} from {origin}");
            let reply = from(&app, Some(origin), "GET", path, &[], None, &[]);
            assert_not_readable(&reply, &what);
            let what = format!("preflight of {path} from {origin}");
            let reply = preflight(&app, origin, "GET", path);
            assert_ne!(reply.status, 204, "{what}: {reply:?}");
            assert_not_readable(&reply, &what);
        }
    }
}

fn throttled_pages_may_read_retry_after() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 1);
    assert_eq!(app.register("t@example.com", STRONG).status, 200);
    let wrong = [("email", "t@example.com"), ("password", "wrong")];
    let throttled = (0..5)
        .map(|_| {
            from(
                &app,
                Some(LOCAL_PAGE),
                "POST",
                "/sessions",
                &wrong,
                None,
                &[],
            )
        })
        .find(|reply| reply.status == 429)
        .expect("a 429 within five failures");
    assert!(throttled.header("Retry-After").is_some(), "{throttled:?}");
    assert_readable_by(&throttled, LOCAL_PAGE, "429");
}

fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.delivery = Some(Channel::Log);
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
    c.limits.request_free = 1000;
}

fn production_allows_listed_origins_only() {
    let app = TestApp::spawn_with(|c| {
        production(c);
        // As an operator may write them: canonical all the same.
        c.allowed_origins = vec![
            "HTTPS://App.Example.com:443/".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
    });
    assert_eq!(app.register("p@example.com", STRONG).status, 200);
    let creds = [("email", "p@example.com"), ("password", STRONG)];
    for origin in [LISTED, LOCAL_PAGE] {
        let login = from(&app, Some(origin), "POST", "/sessions", &creds, None, &[]);
        assert_eq!(login.status, 200, "{login:?}");
        assert_readable_by(&login, origin, "listed login");
        let session = app.session_of(&login);
        let profile = from(
            &app,
            Some(origin),
            "GET",
            "/profile",
            &[],
            Some(&session),
            &[],
        );
        assert_eq!(profile.status, 200, "{profile:?}");
        assert_readable_by(&profile, origin, "listed profile");
        let logout = from(
            &app,
            Some(origin),
            "DELETE",
            "/sessions",
            &[],
            Some(&session),
            &[],
        );
        assert_eq!(logout.status, 302, "{logout:?}");
        assert_readable_by(&logout, origin, "listed logout");
        assert_preflight_allowed(
            &preflight(&app, origin, "DELETE", "/sessions"),
            origin,
            "listed preflight",
        );
    }
    // Local pages other than the listed one are nothing special in
    // production; nor is any other site, whose writes are refused too.
    for origin in [
        "http://localhost:3001",
        "http://127.0.0.1:5173",
        "https://evil.example",
    ] {
        let reply = preflight(&app, origin, "POST", "/sessions");
        assert_eq!(reply.status, 204, "{reply:?}");
        assert_not_readable(&reply, origin);
        let reply = from(&app, Some(origin), "POST", "/sessions", &creds, None, &[]);
        assert_eq!(reply.status, 403, "{origin}: {reply:?}");
        assert_eq!(reply.message(), "cross-site request refused");
        assert_not_readable(&reply, origin);
    }
}

/// The whole flow a front end makes, on each store: the cookie set in a
/// CORS answer is the session the next ones use.
fn a_page_signs_in_registers_and_signs_out_across_origins() {
    let app = TestApp::spawn();
    const ORIGIN: &str = "http://127.0.0.1:8080";
    let page = Some(ORIGIN);
    let creds = [("email", "flow@example.com"), ("password", STRONG)];
    let reply = from(&app, page, "POST", "/users", &creds, None, &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let login = from(&app, page, "POST", "/sessions", &creds, None, &[]);
    assert_eq!(login.status, 200, "{login:?}");
    assert_readable_by(&login, ORIGIN, "login");
    let session = app.session_of(&login);
    let profile = from(&app, page, "GET", "/profile", &[], Some(&session), &[]);
    assert_eq!(profile.json()["email"], "flow@example.com");
    assert_readable_by(&profile, ORIGIN, "profile");
    let reply = from(
        &app,
        page,
        "POST",
        "/reset_password",
        &[("email", "flow@example.com")],
        None,
        &[],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_readable_by(&reply, ORIGIN, "reset");
    let logout = from(&app, page, "DELETE", "/sessions", &[], Some(&session), &[]);
    assert_eq!(logout.status, 302, "{logout:?}");
    assert_readable_by(&logout, ORIGIN, "logout");
    // fetch follows the 302 keeping its method: DELETE /, a 405 the page
    // can read (README: use redirect "manual").
    let follow = from(&app, page, "DELETE", "/", &[], Some(&session), &[]);
    assert_eq!(follow.status, 405, "{follow:?}");
    assert_readable_by(&follow, ORIGIN, "DELETE /");
    let profile = from(&app, page, "GET", "/profile", &[], Some(&session), &[]);
    assert_eq!(profile.status, 403, "{profile:?}");
    assert_readable_by(&profile, ORIGIN, "profile after logout");
}

fn the_edges_own_answers_vary_by_origin_too() {
    let app = TestApp::spawn();
    let reply = crate::common::raw::exchange(
        app.running.addr(),
        b"GET / HTTP/1.1\r\nOrigin: http://localhost:3000\r\nContent-Length: x\r\n\r\n",
        crate::common::raw::IO_LIMIT,
    )
    .unwrap();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_varies(&reply, "the edge's 400");
}

crate::on_every_store!(a_page_signs_in_registers_and_signs_out_across_origins);

#[test]
fn dev_lets_local_pages_read_every_answer() {
    dev_lets_local_pages_on_any_port_read_every_answer();
}

#[test]
fn other_origins_read_nothing() {
    other_origins_and_no_origin_read_nothing();
}

#[test]
fn preflights() {
    preflights_answer_204_and_allow_only_allowed_origins();
}

#[test]
fn never_on_metrics_dev_or_ui() {
    metrics_dev_and_ui_are_never_cors();
}

#[test]
fn throttled_answers_expose_retry_after() {
    throttled_pages_may_read_retry_after();
}

#[test]
fn production_listed_origins() {
    production_allows_listed_origins_only();
}

#[test]
fn edge_answers_carry_vary() {
    the_edges_own_answers_vary_by_origin_too();
}

// ---------------------------------------------------------------------------
// --allowed-origins refused at start
// ---------------------------------------------------------------------------

/// Values that cannot be an origin, and what the error must say.
const BAD_ORIGINS: [(&str, &str); 6] = [
    ("localhost:3000", "has no scheme"),
    ("app.example.com", "has no scheme"),
    ("null", "never allowed"),
    ("*", "wildcards"),
    ("https://app.example.com/login", "no path"),
    ("ftp://app.example.com", "https:// or http://"),
];

#[test]
fn bad_allowed_origins_stop_the_start() {
    for (bad, why) in BAD_ORIGINS {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.allowed_origins = vec![LISTED.to_owned(), bad.to_owned()];
        match server::start(&config) {
            Err(StartError::Config(message)) => {
                assert!(message.contains("--allowed-origins"), "{bad}: {message}");
                assert!(message.contains(&format!("{bad:?}")), "{bad}: {message}");
                assert!(message.contains(why), "{bad}: {message}");
            }
            Err(other) => panic!("{bad}: {other}"),
            Ok(_) => panic!("{bad}: the server started"),
        }
    }
}

#[test]
fn the_binary_names_a_bad_origin_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let serve = ["serve", "--addr", "127.0.0.1:0", "--data-dir", data];
    let flag = [
        &serve[..],
        &[
            "--allowed-origins",
            "https://app.example.com,localhost:3000",
        ],
    ]
    .concat();
    // A usage error (exit 2), before anything starts: no store is made.
    let (code, stdout, stderr) = run(&flag);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("\"localhost:3000\" has no scheme"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(data).exists(), "a store was made");
    assert!(stderr.contains("http://localhost:3000"), "{stderr}");
    // The environment variable, through the real binary.
    let output = Command::new(crate::common::process::BIN)
        .args(serve)
        .env("AUTHD_ALLOWED_ORIGINS", "https://app.example.com, null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AUTHD_ALLOWED_ORIGINS"), "{stderr}");
    assert!(stderr.contains("\"null\""), "{stderr}");
}

// ---------------------------------------------------------------------------
// A real browser
// ---------------------------------------------------------------------------

/// The page: registers, logs in, reads the profile and logs out through
/// `fetch` with credentials, against the API at `?api=`, as `?email=`;
/// JSON bodies, so every write is preflighted. It writes one line per step
/// into `#out` (`NAME TYPE STATUS EMAIL-OR-MESSAGE`, or `NAME blocked`
/// when the browser refused the answer to the script), then `done`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>authd CORS</title></head>
<body><pre id="out">running</pre>
<script>
const query = new URLSearchParams(location.search);
const api = query.get("api");
const email = query.get("email");
const lines = [];
async function step(name, path, init) {
  try {
    const reply = await fetch(api + path, Object.assign({credentials: "include"}, init));
    let body = {};
    try { body = await reply.json(); } catch (e) {}
    lines.push([name, reply.type, reply.status, body.email || body.message || ""].join(" ").trim());
  } catch (e) {
    lines.push(name + " blocked");
  }
}
(async () => {
  const json = {"Content-Type": "application/json"};
  const creds = JSON.stringify({email: email, password: "correct horse battery staple"});
  await step("register", "/users", {method: "POST", headers: json, body: creds});
  await step("login", "/sessions", {method: "POST", headers: json, body: creds});
  await step("profile", "/profile", {});
  await step("logout", "/sessions", {method: "DELETE", redirect: "manual"});
  await step("after", "/profile", {});
  document.getElementById("out").textContent = lines.join("\n") + "\ndone";
})();
</script></body></html>
"#;

/// Longest one browser run may take.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// A static page server on `ip`, port 0: [`PAGE`] for any path but
/// `/favicon.ico`. Stopped and joined on drop.
struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PageServer {
    fn start(ip: Ipv4Addr) -> PageServer {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve_page(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PageServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on `stream` and closes it.
fn serve_page(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let favicon = head.starts_with(b"GET /favicon.ico ");
    let (status, body) = if favicon {
        ("404 Not Found", "")
    } else {
        ("200 OK", PAGE)
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

/// Chromium on `PATH` (Debian's `chromium`, or `chromium-browser`).
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Chromium, or `None` (with a message) to skip: outside CI only. Under
/// CI (`CI` set, and not `false` or `0`) a missing browser fails the test.
fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(found) = find_chromium() {
        return Some(found);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"));
    assert!(
        !ci,
        "chromium is not installed and CI is set: the browser test of CORS must run in CI \
         (.ci/run installs it: apt-get install chromium)"
    );
    eprintln!(
        "SKIPPED cors::a_real_browser_*: chromium is not on PATH; install it (Debian: \
         apt-get install chromium) to run the browser test of CORS (with CI=true this fails)"
    );
    None
}

/// A browser process group (renderer and helpers included), all of it
/// killed when the browser has finished or the test gives up on it.
struct Browser {
    child: Child,
    ended: bool,
}

impl Browser {
    /// Whether the browser process has exited, without reaping it: while
    /// it is not reaped its group id cannot name another group.
    fn exited(&self) -> bool {
        // SAFETY: waitid(2) on this test's own child, into a zeroed
        // siginfo_t it owns; WNOWAIT leaves the child to be reaped.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let waited = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            waited == 0 && info.si_pid() != 0
        }
    }

    /// Kills what is left of the group, then reaps the browser.
    fn end(&mut self) -> Option<std::process::ExitStatus> {
        if std::mem::replace(&mut self.ended, true) {
            return None;
        }
        // The group was made for this child (process_group(0)): its id is
        // the child's, not reaped yet.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        self.child.wait().ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end();
    }
}

/// Loads `url` in headless Chromium and returns the lines the page wrote
/// into `#out` once its script is done, within [`BROWSER_LIMIT`].
fn browse(chromium: &Path, url: &str) -> Vec<String> {
    use std::os::unix::process::CommandExt as _;

    let dir = tempfile::tempdir().unwrap();
    let dom_path = dir.path().join("dom.html");
    let err_path = dir.path().join("chromium.stderr");
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            // Virtual time advances only while no fetch is in flight, so
            // a slow machine does not cut the script short.
            "--virtual-time-budget=20000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let mut browser = Browser {
        child: command.spawn().unwrap(),
        ended: false,
    };
    let deadline = Instant::now() + BROWSER_LIMIT;
    while !browser.exited() {
        if Instant::now() > deadline {
            browser.end();
            panic!(
                "chromium did not finish {url} within {BROWSER_LIMIT:?}; stderr: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = browser.end();
    let dom = std::fs::read_to_string(&dom_path).unwrap_or_default();
    let out = dom
        .split_once("<pre id=\"out\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(out, _)| out.to_owned());
    let Some(out) = out.filter(|out| out.trim_end().ends_with("done")) else {
        panic!(
            "the page did not finish ({status:?}); DOM: {dom}\nstderr: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    out.lines()
        .map(str::trim)
        .filter(|line| *line != "done")
        .map(str::to_owned)
        .collect()
}

/// The page's URL on `server`, against `app` as `email`.
fn page_url(server: &PageServer, app: &TestApp, email: &str) -> String {
    format!(
        "http://{}/?api={}&email={}",
        server.addr,
        urlencode(&format!("http://{}", app.running.addr())),
        urlencode(email)
    )
}

#[test]
fn a_real_browser_signs_in_from_an_allowed_origin_and_is_blocked_from_others() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    // authd in dev on 127.0.0.1; the page on another port of the same
    // host (allowed by default, and same-site: the cookie travels), and
    // on 127.0.0.2 (neither local by name nor listed).
    let app = TestApp::spawn();
    let local = PageServer::start(Ipv4Addr::LOCALHOST);
    let elsewhere = PageServer::start(Ipv4Addr::new(127, 0, 0, 2));

    let email = "browser@example.com";
    let lines = browse(&chromium, &page_url(&local, &app, email));
    assert_eq!(
        lines,
        [
            format!("register cors 200 {email}"),
            format!("login cors 200 {email}"),
            format!("profile cors 200 {email}"),
            // redirect "manual": the 302 as an opaque redirect.
            "logout opaqueredirect 0".to_owned(),
            "after cors 403 no valid session".to_owned(),
        ],
        "from {}",
        local.addr
    );

    let email = "blocked@example.com";
    let lines = browse(&chromium, &page_url(&elsewhere, &app, email));
    assert_eq!(
        lines,
        [
            "register blocked",
            "login blocked",
            "profile blocked",
            "logout blocked",
            "after blocked",
        ],
        "from {}",
        elsewhere.addr
    );
    // The preflight stopped the registration before it was sent.
    assert_eq!(app.register(email, STRONG).status, 200);
}

#[test]
fn a_real_browser_on_a_listed_cross_site_origin_reads_answers_but_sends_no_cookie() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    // The page's origin is listed, but 127.0.0.2 and 127.0.0.1 are two
    // sites: the answers are readable, and the SameSite=Lax session
    // cookie does not travel with a cross-site fetch (README: cross-site
    // front ends need bearer tokens).
    let elsewhere = PageServer::start(Ipv4Addr::new(127, 0, 0, 2));
    let origin = format!("http://{}", elsewhere.addr);
    let app = TestApp::spawn_with(|c| c.allowed_origins = vec![origin.clone()]);
    let email = "listed@example.com";
    let lines = browse(&chromium, &page_url(&elsewhere, &app, email));
    assert_eq!(
        lines,
        [
            format!("register cors 200 {email}"),
            format!("login cors 200 {email}"),
            "profile cors 403 no valid session".to_owned(),
            "logout cors 403 no valid session".to_owned(),
            "after cors 403 no valid session".to_owned(),
        ],
        "from {origin}"
    );
}
