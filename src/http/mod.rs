//! The HTTP face of authd: routing, common headers and the access log.
//!
//! [`App::handle`] is the whole request path. It never panics: every
//! handler returns `Result<Response, ApiError>` and errors become JSON in
//! [`error`].

pub mod body;
pub mod client;
pub mod cookie;
pub mod cors;
pub mod credential;
pub mod csrf;
pub mod edge;
pub mod error;
pub mod form_data;
pub mod json;
pub mod routes;
pub mod ui;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rouille::{Request, Response};

use crate::auth::{Auth, Caller};
use crate::config::Profile;
use crate::metrics::Metrics;
use error::ApiError;

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
    /// Proxies whose entries in that header are walked past, and the only
    /// peers whose header is believed (`--trusted-proxies`); empty
    /// believes any peer's and takes the header's last entry.
    pub trusted_proxies: Vec<client::Cidr>,
    /// Dev or production behaviour.
    pub profile: Profile,
    /// Name of the session cookie.
    pub cookie_name: &'static str,
    /// `--allowed-origins`, canonical ([`cors::parse_allowed_origins`]):
    /// other sites whose pages may make state-changing requests (checked
    /// in production) and read the answers (CORS, both profiles).
    pub allowed_origins: Vec<String>,
    /// The server's own origin (`--public-url`), canonical; `None` derives
    /// it from each request's `Host`.
    pub public_origin: Option<String>,
    /// Whether the listener accepts connections, for the health check
    /// (`None` without a listener, as in handler tests).
    pub listener: Option<tiny_http::ListenerHealth>,
    /// Whether this listener answers `GET /metrics` ([`Config::metrics_on_main`]);
    /// if not, it is a 404 like any unknown path.
    ///
    /// [`Config::metrics_on_main`]: crate::config::Config::metrics_on_main
    pub metrics_on_main: bool,
    /// The hosted pages under `/ui/` (`--ui`); `None` when they are off,
    /// and `/ui/*` is then a 404 like any unknown path.
    pub ui: Option<ui::UiSettings>,
}

/// Everything a request handler needs: the service, the transport's
/// settings and the metrics every answer is counted in.
pub struct App {
    pub auth: Arc<Auth>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
}

/// The route templates requests are counted under in the metrics, in the
/// router's order; the last, `other`, takes everything else (unknown
/// paths, `/metrics` where it is not served), so no label is ever a path
/// a client chose.
pub const ROUTES: [&str; 17] = [
    "/",
    "/users",
    "/sessions",
    "/sessions/{id}",
    "/profile",
    "/auth/verify",
    "/password",
    "/account",
    "/reset_password",
    "/verify_email",
    "/dev/outbox",
    "/healthz",
    "/openapi.json",
    "/metrics",
    "/totp",
    "/ui/{page}",
    "other",
];

/// Where `/metrics` is in [`ROUTES`].
const METRICS_ROUTE: usize = 13;

/// Where the route of a normalized `path` is in [`ROUTES`].
fn route_index(path: &str) -> usize {
    const OTHER: usize = ROUTES.len() - 1;
    if let Some(id) = path.strip_prefix("/sessions/") {
        return if id.contains('/') { OTHER } else { 3 };
    }
    match path {
        "/" => 0,
        "/users" => 1,
        "/sessions" => 2,
        "/profile" => 4,
        "/auth/verify" => 5,
        "/password" => 6,
        "/account" => 7,
        "/reset_password" => 8,
        "/verify_email" => 9,
        "/dev/outbox" => 10,
        "/healthz" => 11,
        "/openapi.json" => 12,
        "/metrics" => METRICS_ROUTE,
        "/totp" => 14,
        _ if ui::owns(path) => 15,
        _ => OTHER,
    }
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
/// included. `Vary: Origin` because the CORS headers of an answer depend
/// on the request's `Origin` ([`cors`]): no cache may hand one origin's
/// answer to another.
pub fn with_common_headers(response: Response) -> Response {
    response
        .with_additional_header("X-Content-Type-Options", "nosniff")
        .with_additional_header("Cache-Control", "no-store")
        .with_additional_header("Vary", "Origin")
}

impl App {
    /// Answers one request: route (or answer a CORS preflight), add the
    /// CORS headers for an allowed origin and the common headers, log.
    pub fn handle(&self, request: &Request) -> Response {
        let started = Instant::now();
        let caller = self.caller(request);
        let ip = caller.ip;
        // Percent-decoded path without the query, computed once for both
        // routing and the log.
        let url = request.url();
        let cors = cors::applies_to(&url);
        let origin = cors
            .then(|| {
                cors::allowed_origin(
                    request,
                    &self.settings.allowed_origins,
                    self.settings.profile,
                )
            })
            .flatten();
        let response = if cors && cors::is_preflight(request) {
            cors::preflight(origin)
        } else {
            match self.route(request, &url, &caller) {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        };
        let response = with_common_headers(match origin {
            Some(origin) => cors::allow(response, origin),
            None => response,
        });
        let elapsed = started.elapsed();
        let route = match route_index(normalize(&url)) {
            METRICS_ROUTE if !self.settings.metrics_on_main => ROUTES.len() - 1,
            route => route,
        };
        self.metrics
            .observe_request(route, request.method(), response.status_code, elapsed);
        if self.settings.access_log {
            log_request(request, &url, ip, response.status_code, elapsed);
        }
        response
    }

    /// Answers one request on the listener of `--metrics-addr`: `GET
    /// /metrics`, and 404 for everything else (counted and logged like
    /// any request).
    pub fn handle_metrics_listener(&self, request: &Request) -> Response {
        let started = Instant::now();
        let url = request.url();
        let path = normalize(&url);
        let answer = match (path, request.method()) {
            ("/metrics", "GET") => routes::metrics::get(self, request),
            ("/metrics", _) => Err(ApiError::MethodNotAllowed("GET")),
            _ => Err(ApiError::NotFound("not found")),
        };
        let response = with_common_headers(answer.unwrap_or_else(ApiError::into_response));
        let elapsed = started.elapsed();
        let route = match path {
            "/metrics" => METRICS_ROUTE,
            _ => ROUTES.len() - 1,
        };
        self.metrics
            .observe_request(route, request.method(), response.status_code, elapsed);
        if self.settings.access_log {
            log_request(
                request,
                &url,
                request.remote_addr().ip(),
                response.status_code,
                elapsed,
            );
        }
        response
    }

    fn route(&self, request: &Request, url: &str, caller: &Caller) -> Result<Response, ApiError> {
        let path = normalize(url);
        if let Some(pages) = self.settings.ui.as_ref().filter(|_| ui::owns(path)) {
            return Ok(ui::handle(self, pages, request, caller, path));
        }
        if let Some(id) = path.strip_prefix("/sessions/") {
            return match request.method() {
                "DELETE" if !id.contains('/') => {
                    routes::sessions::delete_one(self, request, caller, id)
                }
                "DELETE" => Err(ApiError::NotFound("not found")),
                _ => Err(ApiError::MethodNotAllowed("DELETE")),
            };
        }
        match (path, request.method()) {
            ("/", "GET") => routes::index::get(),
            ("/", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/users", "POST") => routes::users::post(self, request, caller),
            ("/users", _) => Err(ApiError::MethodNotAllowed("POST")),
            ("/sessions", "POST") => routes::sessions::post(self, request, caller),
            ("/sessions", "GET") => routes::sessions::list(self, request),
            ("/sessions", "DELETE") => routes::sessions::delete(self, request, caller),
            ("/sessions", _) => Err(ApiError::MethodNotAllowed("GET, POST, DELETE")),
            ("/profile", "GET") => routes::profile::get(self, request),
            ("/profile", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/auth/verify", "GET" | "HEAD") => routes::verify::get(self, request),
            ("/auth/verify", _) => Err(ApiError::MethodNotAllowed("GET, HEAD")),
            ("/password", "PUT") => routes::account::put_password(self, request, caller),
            ("/password", _) => Err(ApiError::MethodNotAllowed("PUT")),
            ("/account", "GET") => routes::account::get(self, request),
            ("/account", "PUT") => routes::account::put(self, request, caller),
            ("/account", "DELETE") => routes::account::delete(self, request, caller),
            ("/account", _) => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
            ("/totp", "POST") => routes::totp::post(self, request, caller),
            ("/totp", "PUT") => routes::totp::put(self, request, caller),
            ("/totp", "DELETE") => routes::totp::delete(self, request, caller),
            ("/totp", _) => Err(ApiError::MethodNotAllowed("POST, PUT, DELETE")),
            ("/verify_email", "POST") => routes::verify_email::post(self, request, caller),
            ("/verify_email", "PUT") => routes::verify_email::put(self, request, caller),
            ("/verify_email", _) => Err(ApiError::MethodNotAllowed("POST, PUT")),
            ("/reset_password", "POST") => routes::reset_password::post(self, request, caller),
            ("/reset_password", "PUT") => routes::reset_password::put(self, request, caller),
            ("/reset_password", _) => Err(ApiError::MethodNotAllowed("POST, PUT")),
            ("/dev/outbox", "GET") => routes::dev_outbox::get(self, request),
            ("/dev/outbox", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/healthz", "GET") => routes::meta::healthz(self),
            ("/healthz", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/openapi.json", "GET") => routes::meta::openapi(),
            ("/openapi.json", _) => Err(ApiError::MethodNotAllowed("GET")),
            ("/metrics", "GET") if self.settings.metrics_on_main => {
                routes::metrics::get(self, request)
            }
            ("/metrics", _) if self.settings.metrics_on_main => {
                Err(ApiError::MethodNotAllowed("GET"))
            }
            _ => Err(ApiError::NotFound("not found")),
        }
    }

    /// Who is asking: the client address for throttling and the audit
    /// log, and whether
    /// the client is a developer's own machine: the dev profile, a loopback
    /// peer, no `--client-ip-header`, and no forwarding header (so a reverse
    /// proxy or tunnel on the same host does not lift the limits for the
    /// world; authd says so once on stderr when such headers reach a dev
    /// instance).
    pub fn caller(&self, request: &Request) -> Caller {
        let forwarding = client::Forwarding {
            header: self.settings.client_ip_header.as_deref(),
            trusted: &self.settings.trusted_proxies,
        };
        let ip = client::client_ip(request, forwarding);
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
        // The user agent matters to a login only (the session keeps it):
        // that route adds it, and no other request pays for the copy.
        Caller {
            ip,
            local,
            user_agent: None,
        }
    }

    /// In the production profile, 403 for a browser request made on
    /// behalf of another site ([`csrf`]); every state-changing route calls
    /// this first, before it reads a body or hashes anything, so a forged
    /// request costs no work and changes nothing. The dev profile answers
    /// as the reference does, which checks nothing.
    pub fn refuse_cross_site(&self, request: &Request) -> Result<(), ApiError> {
        if self.settings.profile != Profile::Production {
            return Ok(());
        }
        csrf::check(
            request,
            csrf::Origins {
                public: self.settings.public_origin.as_deref(),
                // Production runs behind TLS: its cookie is `Secure`.
                scheme: "https",
                allowed: &self.settings.allowed_origins,
            },
        )
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
    fn routes_are_templates_and_the_rest_is_other() {
        use super::{route_index, ROUTES};
        let template = |path: &str| ROUTES[route_index(super::normalize(path))];
        assert_eq!(template("/sessions/abc"), "/sessions/{id}");
        assert_eq!(template("/sessions/abc/"), "/sessions/{id}");
        assert_eq!(template("/sessions/a/b"), "other");
        assert_eq!(template("/users/"), "/users");
        assert_eq!(template("/nowhere"), "other");
        assert_eq!(template("/metrics"), "/metrics");
        assert_eq!(template("/"), "/");
        for (index, route) in ROUTES.iter().enumerate().take(ROUTES.len() - 1) {
            if *route != "/sessions/{id}" {
                assert_eq!(route_index(route), index, "{route}");
            }
        }
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

    use std::sync::Arc;

    use super::*;
    use crate::audit::Audit;
    use crate::auth::limits::{LimitSettings, Limits};
    use crate::auth::Rules;
    use crate::hasher::Hasher;
    use crate::message::Message;
    use crate::one_time::{OneTimeToken, Purpose};
    use crate::outbox::{Caught, Intent, Queued};
    use crate::session::{Session, SessionId};
    use crate::store::{
        Ends, Redemption, SessionStore, StoreError, TokenStore, UserChange, UserStore,
    };
    use crate::store::{QueueCounts, QueueStore};
    use crate::token::{Token, TokenHash};
    use crate::user::{NewUser, User, UserId};

    struct Broken;

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend("disk on fire".to_owned()))
    }

    impl UserStore for Broken {
        fn create_user(&self, _: &NewUser) -> Result<User, StoreError> {
            down()
        }
        fn user_by_id(&self, _: UserId) -> Result<User, StoreError> {
            down()
        }
        fn user_by_key(&self, _: &str) -> Result<User, StoreError> {
            down()
        }
        fn update_user(
            &self,
            _: UserId,
            _: Option<&str>,
            _: &[UserChange],
            _: Ends,
        ) -> Result<User, StoreError> {
            down()
        }
        fn delete_user(&self, _: UserId) -> Result<(), StoreError> {
            down()
        }
        fn ping(&self) -> Result<(), StoreError> {
            down()
        }
    }

    impl SessionStore for Broken {
        fn open_session(
            &self,
            _: &Session,
            _: &str,
            _: &[crate::store::UserChange],
            _: usize,
        ) -> Result<(), StoreError> {
            down()
        }
        fn session(&self, _: &TokenHash) -> Result<Option<(Session, User)>, StoreError> {
            down()
        }
        fn touch_session(&self, _: &TokenHash, _: u64) -> Result<(), StoreError> {
            down()
        }
        fn sessions_of(&self, _: UserId) -> Result<Vec<Session>, StoreError> {
            down()
        }
        fn end_session(&self, _: &TokenHash) -> Result<bool, StoreError> {
            down()
        }
        fn end_session_by_id(&self, _: UserId, _: SessionId) -> Result<bool, StoreError> {
            down()
        }
        fn end_sessions_of(&self, _: UserId, _: Option<&TokenHash>) -> Result<usize, StoreError> {
            down()
        }
        fn expire_sessions(&self, _: u64, _: u64) -> Result<usize, StoreError> {
            down()
        }
    }

    impl TokenStore for Broken {
        fn issue_token(&self, _: &OneTimeToken) -> Result<(), StoreError> {
            down()
        }
        fn token(&self, _: &TokenHash) -> Result<Option<(OneTimeToken, User)>, StoreError> {
            down()
        }
        fn drop_token(&self, _: &TokenHash) -> Result<bool, StoreError> {
            down()
        }
        fn drop_token_of(&self, _: UserId, _: Purpose) -> Result<bool, StoreError> {
            down()
        }
        fn redeem(
            &self,
            _: &Redemption<'_>,
            _: &[UserChange],
            _: Ends,
        ) -> Result<User, StoreError> {
            down()
        }
        fn expire_tokens(&self, _: u64, _: u64) -> Result<usize, StoreError> {
            down()
        }
    }

    impl QueueStore for Broken {
        fn enqueue(&self, _: &Intent, _: u64, _: usize) -> Result<u64, StoreError> {
            down()
        }
        fn claim(&self, _: u64, _: u64) -> Result<Option<Queued>, StoreError> {
            down()
        }
        fn finish(&self, _: u64) -> Result<(), StoreError> {
            down()
        }
        fn fail(&self, _: u64, _: u32, _: u64, _: &str, _: bool) -> Result<(), StoreError> {
            down()
        }
        fn next_due(&self) -> Result<Option<u64>, StoreError> {
            down()
        }
        fn queued(&self) -> Result<Vec<Queued>, StoreError> {
            down()
        }
        fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
            down()
        }
        fn revive(&self, _: Option<u64>, _: u64) -> Result<usize, StoreError> {
            down()
        }
        fn purge_dead(&self, _: Option<u64>) -> Result<usize, StoreError> {
            down()
        }
        fn catch(&self, _: &Message, _: u64, _: usize) -> Result<u64, StoreError> {
            down()
        }
        fn caught(&self) -> Result<Vec<Caught>, StoreError> {
            down()
        }
        fn purge_caught(&self) -> Result<usize, StoreError> {
            down()
        }
    }

    fn app() -> App {
        let hasher = Hasher::start(1, 4, 4).unwrap();
        let limits = Limits::new(LimitSettings::default());
        App {
            auth: Arc::new(
                Auth::new(
                    Arc::new(Broken),
                    hasher,
                    Rules::dev(),
                    limits,
                    Audit::new(false),
                )
                .unwrap(),
            ),
            settings: Settings {
                max_body_bytes: 1024,
                secure_cookies: false,
                access_log: false,
                client_ip_header: None,
                trusted_proxies: Vec::new(),
                profile: Profile::Dev,
                cookie_name: "session_id",
                allowed_origins: Vec::new(),
                public_origin: None,
                listener: None,
                metrics_on_main: true,
                ui: None,
            },
            metrics: Arc::new(Metrics::new(&ROUTES, Duration::from_secs(15))),
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
            Request::fake_http("GET", "/sessions", cookie.clone(), vec![]),
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

    #[test]
    fn a_preflight_is_answered_without_the_store() {
        let app = app();
        let preflight = |origin: &str, path: &str| {
            app.handle(&Request::fake_http(
                "OPTIONS",
                path,
                vec![
                    ("Origin".to_owned(), origin.to_owned()),
                    (
                        "Access-Control-Request-Method".to_owned(),
                        "POST".to_owned(),
                    ),
                ],
                vec![],
            ))
        };
        let header = |response: &Response, name: &str| {
            response
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        };
        // The store is down: anything routed to it would answer 503.
        let allowed = preflight("http://localhost:3000", "/users");
        assert_eq!(allowed.status_code, 204);
        assert_eq!(
            header(&allowed, "Access-Control-Allow-Origin"),
            ["http://localhost:3000"]
        );
        assert_eq!(
            header(&allowed, "Access-Control-Allow-Methods"),
            [cors::ALLOW_METHODS]
        );
        assert_eq!(header(&allowed, "Vary"), ["Origin"]);
        let other = preflight("https://evil.example", "/users");
        assert_eq!(other.status_code, 204);
        assert!(header(&other, "Access-Control-Allow-Origin").is_empty());
        assert_eq!(header(&other, "Vary"), ["Origin"]);
        // A 503 from the broken store carries the CORS headers too.
        let write = app.handle(&Request::fake_http(
            "POST",
            "/users",
            vec![
                ("Origin".to_owned(), "http://127.0.0.1:8080".to_owned()),
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned(),
                ),
            ],
            b"email=a%40b.io&password=pw".to_vec(),
        ));
        assert_eq!(write.status_code, 503);
        assert_eq!(
            header(&write, "Access-Control-Allow-Origin"),
            ["http://127.0.0.1:8080"]
        );
        assert_eq!(
            header(&write, "Access-Control-Expose-Headers"),
            ["Retry-After"]
        );
        // Never on the paths kept from other sites.
        // (Served here, GET only: the preflight is an OPTIONS like any.)
        let metrics = preflight("http://localhost:3000", "/metrics");
        assert_eq!(metrics.status_code, 405);
        assert!(header(&metrics, "Access-Control-Allow-Origin").is_empty());
    }

    #[test]
    fn production_refuses_cross_site_writes_before_any_work() {
        let mut app = app();
        app.settings.profile = Profile::Production;
        let token = Token::generate().unwrap();
        let reset = format!(
            "email=a%40b.io&reset_token={}&new_password=y",
            token.as_str()
        );
        let writes = [
            ("POST", "/users", "email=a%40b.io&password=pw"),
            ("POST", "/sessions", "email=a%40b.io&password=pw"),
            ("POST", "/reset_password", "email=a%40b.io"),
            ("PUT", "/reset_password", &reset),
            ("DELETE", "/sessions", ""),
            ("DELETE", "/sessions?scope=others", ""),
            ("DELETE", "/sessions?scope=global", ""),
            ("DELETE", "/sessions/abc", ""),
        ];
        let send = |method: &str, url: &str, body: &str, extra: Option<(&str, &str)>| {
            let mut headers = vec![
                ("Host".to_owned(), "auth.example.com".to_owned()),
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned(),
                ),
                (
                    "Cookie".to_owned(),
                    format!("session_id={}", token.as_str()),
                ),
            ];
            headers.extend(extra.map(|(k, v)| (k.to_owned(), v.to_owned())));
            app.handle(&Request::fake_http(
                method,
                url,
                headers,
                body.as_bytes().to_vec(),
            ))
        };
        for &(method, url, body) in &writes {
            // The store is down, so any request that got past the check
            // would answer 503 (or 400 for a body it read): 403 says the
            // check came first.
            for forged in [
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ] {
                let response = send(method, url, body, Some(forged));
                assert_eq!(response.status_code, 403, "{method} {url} {forged:?}");
            }
            let own = send(
                method,
                url,
                body,
                Some(("Origin", "https://auth.example.com")),
            );
            assert_eq!(own.status_code, 503, "{method} {url}");
        }
        // Reads are not checked.
        let read = send(
            "GET",
            "/profile",
            "",
            Some(("Origin", "https://evil.example")),
        );
        assert_eq!(read.status_code, 503);
    }
}
