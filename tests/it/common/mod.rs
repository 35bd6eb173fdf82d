//! `TestApp`: the real server, in-process, on a free port with a fresh
//! store, plus one method per endpoint (in the spirit of zero2prod's
//! `spawn_app`), sent through the raw client's [`Client`] and answered
//! with its [`Answer`].

pub mod page_checks;
pub mod process;
pub mod raw;
pub mod smtp_sink;
pub mod stores;
pub mod test_ca;
pub mod webdriver;
pub mod webhook_sink;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use authd::config::Config;
use authd::server::{self, Running};

use raw::{Answer, Client};

/// A running server and a client for it.
pub struct TestApp {
    pub running: Running,
    client: Client,
    _dir: tempfile::TempDir,
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    Form,
    Json,
    Multipart,
}

pub const FORMATS: [Format; 3] = [Format::Form, Format::Json, Format::Multipart];

/// Encodes `fields` as a body of `format`; returns (content type, bytes).
pub fn encode(format: Format, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    match format {
        Format::Form => {
            let body = fields
                .iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            (
                "application/x-www-form-urlencoded".to_owned(),
                body.into_bytes(),
            )
        }
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                .collect();
            (
                "application/json".to_owned(),
                serde_json::to_vec(&map).unwrap(),
            )
        }
        Format::Multipart => {
            let boundary = "----authdTestBoundary7MA4YWxk";
            let mut body = String::new();
            for (k, v) in fields {
                body.push_str(&format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                ));
            }
            body.push_str(&format!("--{boundary}--\r\n"));
            (
                format!("multipart/form-data; boundary={boundary}"),
                body.into_bytes(),
            )
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The configuration tests run with: port 0, bcrypt cost 4, quiet, and
/// the store of the current test's kind for `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    stores::configure(&mut config, dir);
    config.addr = "127.0.0.1:0".to_owned();
    config.bcrypt_cost = 4;
    config.access_log = false;
    config.audit_log = false;
    config
}

impl TestApp {
    /// Starts a server with the test configuration.
    pub fn spawn() -> TestApp {
        Self::spawn_with(|_| {})
    }

    /// Starts a server with the test configuration changed by `adjust`.
    pub fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let running = server::start(&config).expect("server starts");
        TestApp::new(running, &config, dir)
    }

    fn new(running: Running, config: &Config, dir: tempfile::TempDir) -> TestApp {
        let client = Client {
            base: format!("http://{}", running.addr()),
            server_profile: config.profile,
        };
        TestApp {
            running,
            client,
            _dir: dir,
        }
    }

    /// Stops this server and starts a new one on the same store, with the
    /// test configuration changed by `adjust`.
    pub fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let TestApp { running, _dir, .. } = self;
        running.stop().expect("clean stop");
        let mut config = test_config(_dir.path());
        adjust(&mut config);
        // sled's background threads release the directory lock a moment
        // after the last handle is dropped; a restart in the same process
        // may see it still held.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let running = loop {
            match server::start(&config) {
                Err(server::StartError::Store(authd::store::OpenError::InUse(_)))
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.expect("server restarts"),
            }
        };
        TestApp::new(running, &config, _dir)
    }

    /// The `Cookie` header that carries the session `token` to this
    /// server (under its profile's cookie name).
    pub fn cookie(&self, token: &str) -> (&'static str, String) {
        (
            "Cookie",
            raw::session_cookie(self.client.server_profile, token),
        )
    }

    /// The session token `reply` sets, under this server's cookie name
    /// (fails the test without one).
    pub fn session_of(&self, reply: &Answer) -> String {
        reply
            .session_in(self.client.server_profile)
            .unwrap_or_else(|| panic!("no session cookie: {reply:?}"))
    }

    /// Sends any request; `cookie` is the session token, if any.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        cookie: Option<&str>,
    ) -> Answer {
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct.to_owned()));
        }
        if let Some(token) = cookie {
            headers.push(self.cookie(token));
        }
        self.request_with(method, path, &headers, body)
    }

    /// Sends any request with these headers (and those [`raw::call`]
    /// adds).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Answer {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        self.client.request(method, path, &headers, body)
    }

    /// Sends `fields` encoded as `format`.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        format: Format,
        fields: &[(&str, &str)],
    ) -> Answer {
        let (content_type, body) = encode(format, fields);
        self.request(method, path, Some(&content_type), &body, None)
    }

    /// Sends `fields` as JSON in the session `session` (its cookie).
    pub fn send_in(
        &self,
        session: &str,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Answer {
        let (content_type, body) = encode(Format::Json, fields);
        self.request(method, path, Some(&content_type), &body, Some(session))
    }

    pub fn register(&self, email: &str, password: &str) -> Answer {
        self.send(
            "POST",
            "/users",
            Format::Form,
            &[("email", email), ("password", password)],
        )
    }

    pub fn log_in(&self, email: &str, password: &str) -> Answer {
        self.send(
            "POST",
            "/sessions",
            Format::Form,
            &[("email", email), ("password", password)],
        )
    }

    pub fn profile(&self, session: Option<&str>) -> Answer {
        self.request("GET", "/profile", None, b"", session)
    }

    pub fn log_out(&self, session: Option<&str>) -> Answer {
        self.request("DELETE", "/sessions", None, b"", session)
    }

    pub fn reset_token(&self, email: &str) -> Answer {
        self.send("POST", "/reset_password", Format::Form, &[("email", email)])
    }

    pub fn update_password(&self, email: &str, token: &str, new_password: &str) -> Answer {
        self.send(
            "PUT",
            "/reset_password",
            Format::Form,
            &[
                ("email", email),
                ("reset_token", token),
                ("new_password", new_password),
            ],
        )
    }

    /// Registers and logs in; returns the session token.
    pub fn signed_in(&self, email: &str, password: &str) -> String {
        assert_eq!(self.register(email, password).status, 200);
        let reply = self.log_in(email, password);
        assert_eq!(reply.status, 200, "{reply:?}");
        self.session_of(&reply)
    }

    /// Stored users, straight from the store.
    pub fn user_count(&self) -> usize {
        self.running
            .any_store()
            .maintenance()
            .counts()
            .unwrap()
            .users
    }

    /// Live (or not yet swept) sessions and one-time tokens in the store.
    pub fn token_counts(&self) -> (usize, usize) {
        let counts = self.running.any_store().maintenance().counts().unwrap();
        (counts.sessions, counts.tokens)
    }

    /// Index problems found in the store (empty when consistent).
    pub fn store_problems(&self) -> Vec<String> {
        self.running.any_store().maintenance().check().unwrap()
    }
}

/// Runs `n` copies of `f` released at the same moment; returns their
/// results in thread order.
pub fn all_at_once<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let f = Arc::clone(&f);
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Copies the fixture store `tests/fixtures/NAME` (a store an earlier
/// release wrote) to `dest`, which must not exist yet.
pub fn copy_fixture_store(name: &str, dest: &std::path::Path) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&source)
        .arg(dest)
        .status()
        .unwrap();
    assert!(
        copied.success(),
        "cp -r {} {}",
        source.display(),
        dest.display()
    );
}
