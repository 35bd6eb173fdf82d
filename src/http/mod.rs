//! The HTTP face of authd: routing, common headers and the access log.
//!
//! [`App::handle`] is the whole request path. It never panics: every
//! handler returns `Result<Response, ApiError>` and errors become JSON in
//! [`error`].

pub mod body;
pub mod cookie;
pub mod csrf;
pub mod edge;
pub mod error;
pub mod form_data;
pub mod json;
pub mod limits;
pub mod routes;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rouille::{Request, Response};

use crate::audit::{Audit, Event};
use crate::auth::{Auth, AuthError};
use crate::config::Profile;
use crate::delivery::Outbox;
use crate::token::Token;
use crate::user::{Email, User};
use error::ApiError;
use limits::{Client, Limits};

/// Settings the HTTP layer needs beyond the service itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body read, in bytes; larger gets 413.
    pub max_body_bytes: usize,
    /// Add `Secure` to the session cookie (when served over TLS).
    pub secure_cookies: bool,
    /// Write one access-log line per request to stderr.
    pub access_log: bool,
    /// Header carrying the client address set by a trusted reverse proxy
    /// (`X-Forwarded-For`, `X-Real-IP`); `None` uses the socket peer.
    pub client_ip_header: Option<String>,
    /// Dev or production behaviour.
    pub profile: Profile,
    /// Name of the session cookie.
    pub cookie_name: &'static str,
    /// Origins allowed to make cookie-authenticated state changes
    /// (checked in production).
    pub allowed_origins: Vec<String>,
    /// Queue to the reset-token delivery worker, when a channel is set.
    pub outbox: Option<Outbox>,
    /// Whether the listener accepts connections, for the health check
    /// (`None` without a listener, as in handler tests).
    pub listener: Option<tiny_http::ListenerHealth>,
}

/// Everything a request handler needs.
pub struct App {
    pub auth: Auth,
    pub limits: Limits,
    pub audit: Audit,
    pub settings: Settings,
}

/// Headers a proxy or tunnel adds; a dev client that sends one is not
/// treated as local.
const FORWARDING_HEADERS: [&str; 3] = ["Forwarded", "X-Forwarded-For", "X-Real-IP"];

/// Whether the forwarded-header warning has been written (once per
/// process).
static FORWARDED_WARNED: AtomicBool = AtomicBool::new(false);

/// Longest path written to the access log; the rest is cut.
const MAX_LOGGED_PATH: usize = 200;
/// Largest request head (request line and headers), enforced by the
/// connection layer while it reads (431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Adds the headers every answer carries, the connection layer's own
/// included.
pub fn with_common_headers(response: Response) -> Response {
    response
        .with_additional_header("X-Content-Type-Options", "nosniff")
        .with_additional_header("Cache-Control", "no-store")
}

impl App {
    /// Answers one request: route, add common headers, log.
    pub fn handle(&self, request: &Request) -> Response {
        let started = Instant::now();
        let client = self.client(request);
        let ip = client.ip;
        // Percent-decoded path without the query, computed once for both
        // routing and the log.
        let url = request.url();
        let response = with_common_headers(match self.route(request, &url, client) {
            Ok(response) => response,
            Err(error) => error.into_response(),
        });
        if self.settings.access_log {
            log_request(request, &url, ip, response.status_code, started.elapsed());
        }
        response
    }

    fn route(&self, request: &Request, url: &str, client: Client) -> Result<Response, ApiError> {
        match (normalize(url), request.method()) {
            ("/", "GET") => routes::index::get(),
            ("/", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/users", "POST") => routes::users::post(self, request, client),
            ("/users", _) => Err(ApiError::MethodNotAllowed("POST")),
            ("/sessions", "POST") => routes::sessions::post(self, request, client),
            ("/sessions", "DELETE") => routes::sessions::delete(self, request, client),
            ("/sessions", _) => Err(ApiError::MethodNotAllowed("POST, DELETE")),
            ("/profile", "GET") => routes::profile::get(self, request),
            ("/profile", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/reset_password", "POST") => routes::reset_password::post(self, request, client),
            ("/reset_password", "PUT") => routes::reset_password::put(self, request, client),
            ("/reset_password", _) => Err(ApiError::MethodNotAllowed("POST, PUT")),
            ("/healthz", "GET") => routes::meta::healthz(self),
            ("/healthz", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/openapi.json", "GET") => routes::meta::openapi(),
            ("/openapi.json", _) => Err(ApiError::MethodNotAllowed("GET")),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Passes a throttle's verdict through, logging a refusal as a
    /// `throttled` audit event for `route`.
    pub fn throttled(
        &self,
        verdict: Result<(), ApiError>,
        ip: IpAddr,
        email: &str,
        route: &str,
    ) -> Result<(), ApiError> {
        verdict.inspect_err(|_| {
            self.audit
                .record(Event::Throttled, ip, None, Some(email), Some(route));
        })
    }

    /// Issues a reset token for `email` and logs the outcome
    /// (`reset_requested` or `reset_refused`); used by the dev route and by
    /// the production delivery worker alike.
    pub fn issue_reset_token(&self, email: &Email, ip: IpAddr) -> Result<(User, Token), AuthError> {
        match self.auth.get_reset_password_token(email) {
            Ok((user, token)) => {
                self.audit.record(
                    Event::ResetRequested,
                    ip,
                    Some(user.id),
                    Some(user.email.as_str()),
                    None,
                );
                Ok((user, token))
            }
            Err(e) => {
                if matches!(e, AuthError::UnknownEmail) {
                    self.audit
                        .record(Event::ResetRefused, ip, None, Some(email.as_str()), None);
                }
                Err(e)
            }
        }
    }

    /// The client address for throttling and the audit log, and whether
    /// the client is a developer's own machine: the dev profile, a loopback
    /// peer, no `--client-ip-header`, and no forwarding header (so a reverse
    /// proxy or tunnel on the same host does not lift the limits for the
    /// world; authd says so once on stderr when such headers reach a dev
    /// instance).
    pub fn client(&self, request: &Request) -> Client {
        let ip = limits::client_ip(request, self.settings.client_ip_header.as_deref());
        let local = self.settings.profile == Profile::Dev
            && self.settings.client_ip_header.is_none()
            && request.remote_addr().ip().is_loopback()
            && !FORWARDING_HEADERS.iter().any(|name| {
                let forwarded = request.header(name).is_some();
                if forwarded && !FORWARDED_WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "authd: a request came with a {name} header: a proxy or tunnel on this \
                         host forwards to this dev instance, so its clients get the request-rate \
                         limits a loopback client is spared"
                    );
                }
                forwarded
            });
        Client { ip, local }
    }
}

/// Drops trailing slashes, so `/users/` is `/users`, as the reference
/// tolerates; the root stays `/`.
fn normalize(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// `2026-01-02T03:04:05.678Z 127.0.0.1 "POST /users" 200 12.3ms`: the path
/// without its query string (which could hold anything), cut to a bounded
/// length and with control characters escaped so a client cannot forge
/// log lines. Bodies, cookies and tokens are never logged.
fn log_request(request: &Request, url: &str, ip: IpAddr, status: u16, elapsed: Duration) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(96 + url.len().min(MAX_LOGGED_PATH));
    line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let _ = write!(line, " {ip} \"");
    push_escaped(&mut line, request.method(), 16);
    line.push(' ');
    push_escaped(&mut line, url, MAX_LOGGED_PATH);
    let ms = elapsed.as_secs_f64() * 1000.0;
    let _ = write!(line, "\" {status} {ms:.2}ms");
    crate::audit::write_line(line);
}

/// Appends at most `max` characters of `text`, control characters, quotes
/// and backslashes escaped, and "..." if it was cut. Plain short text (the
/// usual case) is copied as it is.
fn push_escaped(line: &mut String, text: &str, max: usize) {
    let plain = |b: &u8| b.is_ascii_graphic() && *b != b'"' && *b != b'\\';
    if text.len() <= max && text.bytes().all(|b| plain(&b)) {
        line.push_str(text);
        return;
    }
    line.extend(text.chars().take(max).flat_map(char::escape_debug));
    if text.chars().nth(max).is_some() {
        line.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn logged_text_is_escaped_and_cut() {
        let escaped = |text: &str, max: usize| {
            let mut line = String::new();
            super::push_escaped(&mut line, text, max);
            line
        };
        assert_eq!(escaped("/profile", 200), "/profile");
        assert_eq!(escaped("/a\"b\\c\n", 200), "/a\\\"b\\\\c\\n");
        assert_eq!(escaped("/abcdef", 3), "/ab...");
        assert_eq!(escaped("/é\u{7}", 200), "/é\\u{7}");
        assert_eq!(escaped("/éé", 2), "/é...");
    }

    #[test]
    fn trailing_slashes_are_dropped() {
        assert_eq!(normalize("/users/"), "/users");
        assert_eq!(normalize("/users//"), "/users");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//"), "/");
        assert_eq!(normalize("/profile"), "/profile");
    }
}

#[cfg(test)]
mod broken_store_tests {
    //! A store that fails every call: the API must answer 503 (retry later)
    //! without panicking, and the health check must say so.

    use std::ops::ControlFlow;
    use std::sync::Arc;

    use super::*;
    use crate::auth::Lifetimes;
    use crate::hasher::Hasher;
    use crate::http::limits::{LimitSettings, Limits};
    use crate::store::{Change, Lookup, Precondition, StoreError, UserStore};
    use crate::token::{Token, TokenHash};
    use crate::user::{Email, User, UserId};

    struct Broken;

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend("disk on fire".to_owned()))
    }

    impl UserStore for Broken {
        fn add_user(&self, _: &Email, _: &str) -> Result<User, StoreError> {
            down()
        }
        fn find_user_by(&self, _: &Lookup) -> Result<User, StoreError> {
            down()
        }
        fn update_user(
            &self,
            _: UserId,
            _: &Precondition,
            _: &[Change],
        ) -> Result<User, StoreError> {
            down()
        }
        fn touch_session(&self, _: UserId, _: &TokenHash, _: u64) -> Result<(), StoreError> {
            down()
        }
        fn expire_sessions(&self, _: u64, _: u64) -> Result<usize, StoreError> {
            down()
        }
        fn expire_resets(&self, _: u64) -> Result<usize, StoreError> {
            down()
        }
        fn delete_user(&self, _: UserId) -> Result<(), StoreError> {
            down()
        }
        fn add_users(&self, _: &[(Email, String)]) -> Result<Vec<UserId>, StoreError> {
            down()
        }
        fn each_user(&self, _: &mut dyn FnMut(User) -> ControlFlow<()>) -> Result<(), StoreError> {
            down()
        }
        fn count_users(&self) -> Result<usize, StoreError> {
            down()
        }
        fn ping(&self) -> Result<(), StoreError> {
            down()
        }
        fn check(&self) -> Result<Vec<String>, StoreError> {
            down()
        }
        fn token_counts(&self) -> Result<(usize, usize), StoreError> {
            down()
        }
    }

    fn app() -> App {
        let hasher = Hasher::start(1, 4, 4).unwrap();
        App {
            auth: Auth::new(
                Arc::new(Broken),
                hasher,
                Lifetimes::default(),
                crate::policy::PasswordPolicy::DEV,
            )
            .unwrap(),
            limits: Limits::new(LimitSettings::default()),
            audit: Audit::new(false),
            settings: Settings {
                max_body_bytes: 1024,
                secure_cookies: false,
                access_log: false,
                client_ip_header: None,
                profile: Profile::Dev,
                cookie_name: "session_id",
                allowed_origins: Vec::new(),
                outbox: None,
                listener: None,
            },
        }
    }

    fn form(method: &str, url: &str, body: &str) -> Request {
        Request::fake_http(
            method,
            url,
            vec![(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )],
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn a_broken_store_is_unhealthy_and_writes_answer_503() {
        let app = app();
        let health = app.handle(&Request::fake_http("GET", "/healthz", vec![], vec![]));
        assert_eq!(health.status_code, 503);
        let token = Token::generate().unwrap();
        let cookie = vec![(
            "Cookie".to_owned(),
            format!("session_id={}", token.as_str()),
        )];
        for request in [
            form("POST", "/users", "email=a%40b.io&password=pw"),
            form("POST", "/sessions", "email=a%40b.io&password=pw"),
            form("POST", "/reset_password", "email=a%40b.io"),
            Request::fake_http("GET", "/profile", cookie.clone(), vec![]),
            Request::fake_http("DELETE", "/sessions", cookie, vec![]),
        ] {
            let response = app.handle(&request);
            assert_eq!(
                response.status_code,
                503,
                "{} {}",
                request.method(),
                request.url()
            );
            assert!(response
                .headers
                .iter()
                .any(|(k, v)| k == "Retry-After" && v == "1"));
        }
        // What does not need the store still works.
        let index = app.handle(&Request::fake_http("GET", "/", vec![], vec![]));
        assert_eq!(index.status_code, 200);
    }
}
