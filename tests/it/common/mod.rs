//! `TestApp`: the real server, in-process, on a free port with a fresh
//! store, plus one method per endpoint (in the spirit of zero2prod's
//! `spawn_app`).

pub mod process;
pub mod raw;
pub mod stores;

use std::time::Duration;

use authd::config::Config;
use authd::server::{self, Running};
use ureq::http;

/// A running server and a client for it.
pub struct TestApp {
    pub running: Running,
    pub base: String,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
}

/// One answer, with everything read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `message` of a JSON error body.
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {:?}", self.body))
            .to_owned()
    }

    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole `Set-Cookie` header for `session_id`.
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with("session_id="))
    }

    /// The session token the reply sets.
    pub fn session(&self) -> String {
        let header = self.set_cookie().expect("a session_id cookie");
        let value = header["session_id=".len()..].split(';').next().unwrap();
        value.to_owned()
    }
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
        let base = format!("http://{}", running.addr());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        TestApp {
            running,
            base,
            agent,
            _dir: dir,
        }
    }

    /// Stops this server and starts a new one on the same store, with the
    /// test configuration changed by `adjust`.
    pub fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let TestApp {
            running,
            agent,
            _dir,
            ..
        } = self;
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
        let base = format!("http://{}", running.addr());
        TestApp {
            running,
            base,
            agent,
            _dir,
        }
    }

    /// Sends any request; `cookie` is the session token, if any.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        cookie: Option<&str>,
    ) -> Reply {
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct.to_owned()));
        }
        if let Some(token) = cookie {
            headers.push(("Cookie", format!("session_id={token}")));
        }
        self.request_with(method, path, &headers, body)
    }

    /// Sends any request with exactly these headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Reply {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let result = if body.is_empty() {
            self.agent.run(builder.body(()).unwrap())
        } else {
            self.agent.run(builder.body(body).unwrap())
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends `fields` encoded as `format`.
    pub fn send(&self, method: &str, path: &str, format: Format, fields: &[(&str, &str)]) -> Reply {
        let (content_type, body) = encode(format, fields);
        self.request(method, path, Some(&content_type), &body, None)
    }

    pub fn register(&self, email: &str, password: &str) -> Reply {
        self.send(
            "POST",
            "/users",
            Format::Form,
            &[("email", email), ("password", password)],
        )
    }

    pub fn log_in(&self, email: &str, password: &str) -> Reply {
        self.send(
            "POST",
            "/sessions",
            Format::Form,
            &[("email", email), ("password", password)],
        )
    }

    pub fn profile(&self, session: Option<&str>) -> Reply {
        self.request("GET", "/profile", None, b"", session)
    }

    pub fn log_out(&self, session: Option<&str>) -> Reply {
        self.request("DELETE", "/sessions", None, b"", session)
    }

    pub fn reset_token(&self, email: &str) -> Reply {
        self.send("POST", "/reset_password", Format::Form, &[("email", email)])
    }

    pub fn update_password(&self, email: &str, token: &str, new_password: &str) -> Reply {
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
        reply.session()
    }

    /// Stored users, straight from the store.
    pub fn user_count(&self) -> usize {
        self.running.store().count_users().unwrap()
    }

    /// Live (or not yet swept) session and reset tokens in the store.
    pub fn token_counts(&self) -> (usize, usize) {
        self.running.store().token_counts().unwrap()
    }

    /// Index problems found in the store (empty when consistent).
    pub fn store_problems(&self) -> Vec<String> {
        self.running.store().check().unwrap()
    }
}
