//! Forward-auth: `GET` and `HEAD /auth/verify` answer a reverse proxy
//! whether a request carries a live session (cookie or Bearer token) and
//! whose, in `X-Auth-User-Id` and `X-Auth-Email`; and a real nginx
//! (Debian's package) in front of a tiny upstream, with `auth_request`
//! asking authd before every request, as the operations guide shows it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use authd::user::Email;

use crate::common::raw::{self, Answer};
use crate::common::TestApp;

/// Longest any one exchange of these tests may take.
const LIMIT: Duration = Duration::from_secs(10);

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// The id of the user `email`, decimal, straight from the store.
fn user_id(app: &TestApp, email: &str) -> String {
    let key = Email::parse(email).unwrap();
    app.running
        .any_store()
        .request()
        .user_by_key(key.key())
        .unwrap()
        .id
        .to_string()
}

fn verify(app: &TestApp, headers: &[(&str, String)]) -> Answer {
    app.request_with("GET", "/auth/verify", headers, b"")
}

/// A 200 naming user `id` with the `X-Auth-Email` value `email`, once
/// each, and no body.
fn assert_verified(answer: &Answer, id: &str, email: &str) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.all("X-Auth-User-Id"), [id], "{answer:?}");
    assert_eq!(answer.all("X-Auth-Email"), [email], "{answer:?}");
    assert_eq!(answer.header("Content-Length"), Some("0"), "{answer:?}");
    assert!(answer.body.is_empty(), "{answer:?}");
    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
}

/// The 401 of no valid session, naming nobody.
fn assert_refused(answer: &Answer) {
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.text(), "{\"message\":\"no valid session\"}\n");
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(
        answer.header("WWW-Authenticate"),
        Some("Bearer realm=\"authd\"")
    );
    assert_eq!(answer.header("X-Auth-User-Id"), None, "{answer:?}");
    assert_eq!(answer.header("X-Auth-Email"), None, "{answer:?}");
}

fn a_live_session_is_named_by_cookie_or_bearer() {
    let app = TestApp::spawn();
    let bob = app.signed_in("bob@example.com", "pw-bob-1");
    let ann = app.signed_in("Ann@Example.com", "pw-ann-1");
    let (bob_id, ann_id) = (
        user_id(&app, "bob@example.com"),
        user_id(&app, "ann@example.com"),
    );
    assert_ne!(bob_id, ann_id);
    assert_verified(
        &verify(&app, &[app.cookie(&bob)]),
        &bob_id,
        "bob@example.com",
    );
    // The address as registered, as GET /profile shows it.
    assert_verified(
        &verify(&app, &[app.cookie(&ann)]),
        &ann_id,
        "Ann@Example.com",
    );
    // A login's session_token, as a Bearer token.
    let login = app.request(
        "POST",
        "/sessions",
        Some("application/json"),
        br#"{"email": "bob@example.com", "password": "pw-bob-1", "token": true}"#,
        None,
    );
    let token = login.json()["session_token"].as_str().unwrap().to_owned();
    assert_verified(&verify(&app, &[bearer(&token)]), &bob_id, "bob@example.com");
    // A Bearer header alone counts: it names its own session over the
    // cookie's, and a bad one is refused even with a good cookie.
    assert_verified(
        &verify(&app, &[app.cookie(&bob), bearer(&ann)]),
        &ann_id,
        "Ann@Example.com",
    );
    assert_refused(&verify(
        &app,
        &[
            app.cookie(&bob),
            ("Authorization", "Bearer nope".to_owned()),
        ],
    ));
    // Another scheme is not authd's: the cookie counts.
    let basic = ("Authorization", "Basic Ym9iOnB3".to_owned());
    assert_verified(
        &verify(&app, &[app.cookie(&bob), basic]),
        &bob_id,
        "bob@example.com",
    );
    // X-Auth-* headers sent to authd mean nothing to it.
    let forged = [
        ("X-Auth-User-Id", ann_id.clone()),
        ("X-Auth-Email", "Ann@Example.com".to_owned()),
    ];
    assert_refused(&verify(&app, &forged));
    let mut with_cookie = forged.to_vec();
    with_cookie.push(app.cookie(&bob));
    assert_verified(&verify(&app, &with_cookie), &bob_id, "bob@example.com");
    // A trailing slash is tolerated, as everywhere.
    let slash = app.request_with("GET", "/auth/verify/", &[app.cookie(&bob)], b"");
    assert_verified(&slash, &bob_id, "bob@example.com");
    // Other methods: 405 naming GET and HEAD.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let answer = app.request_with(method, "/auth/verify", &[app.cookie(&bob)], b"");
        assert_eq!(answer.status, 405, "{method}: {answer:?}");
        assert_eq!(answer.header("Allow"), Some("GET, HEAD"));
        assert_eq!(answer.header("X-Auth-User-Id"), None);
    }
    // Asking changes nothing: the session lives on.
    assert_eq!(app.profile(Some(&bob)).status, 200);
}

fn no_live_session_is_401() {
    let app = TestApp::spawn();
    let session = app.signed_in("bob@example.com", "pw-bob-1");
    let unknown = "A".repeat(43);
    for headers in [
        vec![],
        vec![app.cookie("nope")],
        vec![app.cookie(&unknown)],
        vec![bearer(&unknown)],
        vec![("Authorization", "Bearer".to_owned())],
        vec![("Authorization", "Basic Ym9iOnB3".to_owned())],
        // The production cookie's name is not the dev one.
        vec![("Cookie", format!("__Host-session_id={session}"))],
    ] {
        assert_refused(&verify(&app, &headers));
    }
    // Ended: by logout, and by ending it from another session.
    assert_eq!(app.log_out(Some(&session)).status, 302);
    assert_refused(&verify(&app, &[app.cookie(&session)]));
    assert_refused(&verify(&app, &[bearer(&session)]));
    let first = app.session_of(&app.log_in("bob@example.com", "pw-bob-1"));
    let second = app.session_of(&app.log_in("bob@example.com", "pw-bob-1"));
    let others = app.request("DELETE", "/sessions?scope=others", None, b"", Some(&second));
    assert_eq!(others.status, 204, "{others:?}");
    assert_refused(&verify(&app, &[app.cookie(&first)]));
    assert_eq!(verify(&app, &[app.cookie(&second)]).status, 200);
    // An anonymous 401 is the same on HEAD, without its body.
    let (head, after) = raw::head(app.running.addr(), "/auth/verify", &[], LIMIT).unwrap();
    assert_eq!(head.status, 401);
    assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
}

fn an_expired_session_is_401_and_removed() {
    let app = TestApp::spawn_with(|c| c.lifetimes.session_idle = Duration::from_secs(1));
    let session = app.signed_in("bob@example.com", "pw-bob-1");
    let id = user_id(&app, "bob@example.com");
    assert_verified(
        &verify(&app, &[app.cookie(&session)]),
        &id,
        "bob@example.com",
    );
    sleep(Duration::from_millis(1300));
    assert_refused(&verify(&app, &[app.cookie(&session)]));
    assert_eq!(app.token_counts().0, 0, "the expired session is removed");
}

fn head_answers_like_get_without_a_body() {
    let app = TestApp::spawn();
    let session = app.signed_in("bob@example.com", "pw-bob-1");
    let id = user_id(&app, "bob@example.com");
    let addr = app.running.addr();
    for (credential, value) in [app.cookie(&session), bearer(&session)] {
        let (head, after) =
            raw::head(addr, "/auth/verify", &[(credential, &value)], LIMIT).unwrap();
        assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
        assert_verified(&head, &id, "bob@example.com");
    }
    let get = verify(&app, &[]);
    assert_refused(&get);
    let (head, after) = raw::head(addr, "/auth/verify", &[], LIMIT).unwrap();
    assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
    assert_eq!(head.status, 401);
    // The same headers as GET's (the framing included), but the date.
    let names = |answer: &Answer| {
        answer
            .headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("Date"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&head), names(&get));
}

fn a_non_ascii_email_is_percent_encoded() {
    let app = TestApp::spawn();
    let email = "zoë.müller@exämple.de";
    let session = app.signed_in(email, "pw-zoe-1");
    let id = user_id(&app, email);
    let answer = verify(&app, &[app.cookie(&session)]);
    let encoded = "zo%C3%AB.m%C3%BCller@ex%C3%A4mple.de";
    assert_verified(&answer, &id, encoded);
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, email);
    // An ASCII address with a `%` is escaped too, so it cannot pass for
    // an encoded one.
    let percent = app.signed_in("a%25b@example.com", "pw-pct-1");
    let answer = verify(&app, &[app.cookie(&percent)]);
    let header = answer.header("X-Auth-Email").unwrap().to_owned();
    let decoded = percent_encoding::percent_decode_str(&header)
        .decode_utf8()
        .unwrap();
    assert_eq!(decoded, "a%25b@example.com", "{answer:?}");
}

crate::on_every_store!(
    a_live_session_is_named_by_cookie_or_bearer,
    no_live_session_is_401,
    an_expired_session_is_401_and_removed,
    head_answers_like_get_without_a_body,
    a_non_ascii_email_is_percent_encoded,
);

// ---- nginx in front of an app ----

/// nginx on `PATH` or in `/usr/sbin` (Debian's `nginx-light` or `nginx`).
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// nginx, or `None` (with a message) to skip: outside CI only. Under CI
/// (`CI` set, and not `false` or `0`) a missing nginx fails the test.
fn nginx_or_skip() -> Option<PathBuf> {
    if let Some(found) = find_nginx() {
        return Some(found);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"));
    assert!(
        !ci,
        "nginx is not installed and CI is set: the forward-auth test must run in CI \
         (.ci/run installs it: apt-get install nginx-light)"
    );
    eprintln!(
        "SKIPPED forward_auth::nginx_*: nginx is not installed; install it (Debian: apt-get \
         install nginx-light) to run the forward-auth test with a real proxy (with CI=true \
         this fails)"
    );
    None
}

/// One request as the upstream received it: its request line and its
/// header lines, names and values as sent.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name` (case-insensitive).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The app nginx protects: answers every request 200 with the `X-Auth-*`
/// headers it received, one per line, and reports each request it got.
struct Upstream {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    Upstream::serve(stream, &tx);
                }
            }
        });
        Upstream {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads one request head (bounded in size and time), records it, then
    /// answers it: recorded first, so a test that has nginx's answer in hand
    /// always finds the request (nginx answers after the app does).
    fn serve(mut stream: TcpStream, seen: &mpsc::Sender<Seen>) -> Option<()> {
        stream.set_read_timeout(Some(LIMIT)).ok()?;
        stream.set_write_timeout(Some(LIMIT)).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 || buf.len() > 64 * 1024 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect();
        let body: String = headers
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-auth-"))
            .map(|(k, v)| format!("{}: {v}\n", k.to_ascii_lowercase()))
            .collect();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        seen.send(Seen { line, headers }).ok()?;
        let _ = stream.write_all(answer.as_bytes());
        Some(())
    }

    /// The requests received since the last call (nginx has answered the
    /// client by then: it forwards before it answers).
    fn received(&self) -> Vec<Seen> {
        self.seen.try_iter().collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, LIMIT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The part of nginx's configuration the operations guide shows: the app
/// on `upstream` behind `auth_request`, authd on `authd`, nginx listening
/// on `listen`.
fn protected_server(listen: SocketAddr, authd: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        r#"    # authd's session cookie (session_id; __Host-session_id in the production
    # profile) taken out of the Cookie header the app gets; its own cookies stay.
    map $http_cookie $authd_app_cookie {{
        default $http_cookie;
        "~^(?:__Host-)?session_id=[^;]*;?\s*(?<authd_after>.*)$" $authd_after;
        "~^(?<authd_before>.*?);\s*(?:__Host-)?session_id=[^;]*(?<authd_rest>.*)$" $authd_before$authd_rest;
    }}

    server {{
        listen {listen};

        location / {{
            # Ask authd first: 2xx lets the request through, 401 and 403 go
            # back to the client, anything else is a 500.
            auth_request /_authd;
            auth_request_set $authd_user_id $upstream_http_x_auth_user_id;
            auth_request_set $authd_email $upstream_http_x_auth_email;
            # Overwrite whatever the client sent under these names.
            proxy_set_header X-Auth-User-Id $authd_user_id;
            proxy_set_header X-Auth-Email $authd_email;
            # The app never sees authd's credentials.
            proxy_set_header Cookie $authd_app_cookie;
            proxy_set_header Authorization "";
            proxy_pass http://{upstream};
        }}

        location = /_authd {{
            internal;
            proxy_pass http://{authd}/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
"#
    )
}

/// A whole nginx configuration for the test: its own pid file, error log
/// and temporary directories under `dir`, in the foreground.
fn nginx_conf(dir: &Path, server: &str) -> String {
    let dir = dir.display();
    // As root, nginx's workers would run as `nobody`, which cannot enter
    // the test's private directory: keep them as root.
    // SAFETY: geteuid(2) has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n    access_log off;\n\
         \x20   client_body_temp_path {dir}/client_body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\n{server}}}\n"
    )
}

/// nginx as a child process in a process group of its own (master and
/// worker), all of it killed when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    ended: bool,
}

impl Nginx {
    /// Starts nginx with the configuration `conf(listen)` written to
    /// `dir`, and waits until it accepts connections. Retries on another
    /// port if the one picked was taken meanwhile.
    fn start(nginx: &Path, dir: &Path, conf: impl Fn(SocketAddr) -> String) -> Nginx {
        use std::os::unix::process::CommandExt as _;

        let mut failures = Vec::new();
        for _ in 0..3 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let conf_path = dir.join("nginx.conf");
            std::fs::write(&conf_path, conf(addr)).unwrap();
            let _ = std::fs::remove_file(dir.join("error.log"));
            let child = Command::new(nginx)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("nginx.stdout")).unwrap())
                .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut started = Nginx {
                child,
                addr,
                dir: dir.to_owned(),
                ended: false,
            };
            let deadline = Instant::now() + LIMIT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = started.child.try_wait() {
                    started.ended = true;
                    failures.push(format!("nginx exited ({status}): {}", started.logs()));
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return started;
                }
                sleep(Duration::from_millis(50));
            }
            if !started.ended {
                failures.push(format!(
                    "nginx did not listen on {addr} within {LIMIT:?}: {}",
                    started.logs()
                ));
            }
        }
        panic!("nginx would not start: {failures:#?}");
    }

    /// Its error log and output, for a failure message.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "error.log: {}\nstderr: {}",
            read("error.log"),
            read("nginx.stderr")
        )
    }

    /// `method path` with `headers`, through nginx.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        raw::call(self.addr, method, path, headers, b"", LIMIT)
            .unwrap_or_else(|e| panic!("{method} {path} through nginx: {e}\n{}", self.logs()))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            let _ = self.child.wait();
            return;
        }
        // The group was made for this child (process_group(0)): its id is
        // the child's, which is not reaped yet.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_asks_authd_before_serving_the_upstream() {
    let Some(nginx) = nginx_or_skip() else {
        return;
    };
    let app = TestApp::spawn();
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let authd = app.running.addr();
    let proxy = Nginx::start(&nginx, dir.path(), |listen| {
        nginx_conf(dir.path(), &protected_server(listen, authd, upstream.addr))
    });

    // Without a session: 401 from nginx, and the app never sees the request.
    for headers in [
        &[][..],
        &[("Cookie", "session_id=nope")][..],
        &[("Authorization", "Bearer nope")][..],
        &[("X-Auth-User-Id", "1"), ("X-Auth-Email", "bob@example.com")][..],
    ] {
        let answer = proxy.request("GET", "/app/page?x=1", headers);
        assert_eq!(answer.status, 401, "{headers:?}: {answer:?}");
        assert_eq!(
            answer.header("WWW-Authenticate"),
            Some("Bearer realm=\"authd\"")
        );
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());

    let session = app.signed_in("bob@example.com", "pw-bob-1");
    let id = user_id(&app, "bob@example.com");
    let cookie = format!("theme=dark; session_id={session}; lang=fr");
    let alone = format!("session_id={session}");
    let by_bearer = format!("Bearer {session}");
    let forged_id = if id == "1" { "2" } else { "1" };
    for (what, headers) in [
        ("cookie", vec![("Cookie", cookie.as_str())]),
        ("cookie alone", vec![("Cookie", alone.as_str())]),
        ("bearer", vec![("Authorization", by_bearer.as_str())]),
        (
            "forged headers",
            vec![
                ("Cookie", cookie.as_str()),
                ("X-Auth-User-Id", forged_id),
                ("X-Auth-Email", "admin@example.com"),
                ("x-auth-email", "admin@example.com"),
                ("X_Auth_User_Id", forged_id),
                ("X-Auth-User-ID", forged_id),
            ],
        ),
    ] {
        let answer = proxy.request("GET", "/app/page?x=1", &headers);
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
        // The upstream's echo of what it got, through nginx.
        assert_eq!(
            answer.text(),
            format!("x-auth-user-id: {id}\nx-auth-email: bob@example.com\n"),
            "{what}"
        );
        let seen = upstream.received();
        assert_eq!(seen.len(), 1, "{what}: {seen:?}");
        let seen = &seen[0];
        assert!(seen.line.starts_with("GET /app/page?x=1 "), "{seen:?}");
        assert_eq!(
            seen.all("X-Auth-User-Id"),
            [id.as_str()],
            "{what}: {seen:?}"
        );
        assert_eq!(seen.all("X-Auth-Email"), ["bob@example.com"], "{what}");
        // No spelling of the forged names gets through (an app may read
        // X_Auth_User_Id as X-Auth-User-Id).
        for (name, value) in &seen.headers {
            let normal = name.to_ascii_lowercase().replace('_', "-");
            if normal.starts_with("x-auth-") {
                assert!(
                    [id.as_str(), "bob@example.com"].contains(&value.as_str()),
                    "{what}: {name}: {value} reached the app"
                );
            }
        }
        // authd's credentials stay out of the app; its own cookies do not.
        assert!(seen.all("Authorization").is_empty(), "{what}: {seen:?}");
        let cookies = seen.all("Cookie");
        assert!(
            cookies.iter().all(|c| !c.contains("session_id")),
            "{what}: {seen:?}"
        );
        if what == "bearer" || what == "cookie alone" {
            assert!(cookies.is_empty(), "{what}: {seen:?}");
        } else {
            assert_eq!(cookies, ["theme=dark; lang=fr"], "{what}");
        }
    }
    // The cookie first or last among others.
    for (sent, kept) in [
        (format!("session_id={session}; lang=fr"), "lang=fr"),
        (format!("theme=dark; session_id={session}"), "theme=dark"),
    ] {
        let answer = proxy.request("GET", "/", &[("Cookie", &sent)]);
        assert_eq!(answer.status, 200, "{sent}: {answer:?}");
        assert_eq!(upstream.received()[0].all("Cookie"), [kept], "{sent}");
    }

    // A non-ASCII address reaches the app percent-encoded.
    let zoe = app.signed_in("zoë@example.com", "pw-zoe-1");
    let answer = proxy.request("GET", "/", &[("Authorization", &format!("Bearer {zoe}"))]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = upstream.received();
    assert_eq!(seen[0].all("X-Auth-Email"), ["zo%C3%AB@example.com"]);

    // Once the session ends, nginx refuses again.
    assert_eq!(app.log_out(Some(&session)).status, 302);
    let answer = proxy.request("GET", "/app/page", &[("Cookie", &cookie)]);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(upstream.received().is_empty());
    drop(proxy);
}
