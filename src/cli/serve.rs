//! `authd serve`: its options, validated into a [`Config`], and the loop.
//!
//! Two stages, as in ripgrep: clap reads raw flags and environment
//! variables into [`ServeArgs`]; [`ServeArgs::into_config`] produces the
//! checked [`Config`] the server runs on.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{BoolishValueParser, TypedValueParser as _};
use clap::Args;

use super::{system, CliError, StoreArgs};

use crate::auth::limits::{self, LimitSettings};
use crate::auth::Lifetimes;
use crate::cidr::Cidr;
use crate::config::{self, Config, EdgeLimits, Profile};
use crate::delivery::{self, Channel};
use crate::hasher::{Algorithm, Argon2Params};
use crate::policy::PasswordPolicy;
use crate::server;

/// Options of `authd serve`.
/// The argon2id parameters of new hashes, for `serve` and for the admin
/// commands that hash (`authd user add`, `set-password`).
#[derive(Debug, Args)]
pub(super) struct Argon2Args {
    /// argon2id memory per hash, in KiB (OWASP's minimum: 19456).
    #[arg(long, env = "AUTHD_ARGON2_MEMORY_KIB", value_name = "KIB",
          default_value_t = Argon2Params::OWASP.memory_kib,
          value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    argon2_memory_kib: u32,

    /// argon2id passes over its memory (OWASP's minimum: 2).
    #[arg(long, env = "AUTHD_ARGON2_ITERATIONS", value_name = "N",
          default_value_t = Argon2Params::OWASP.iterations,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    argon2_iterations: u32,

    /// argon2id lanes (OWASP's minimum: 1); each hash still runs on one
    /// worker thread.
    #[arg(long, env = "AUTHD_ARGON2_PARALLELISM", value_name = "N",
          default_value_t = Argon2Params::OWASP.parallelism,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    argon2_parallelism: u32,
}

impl Argon2Args {
    pub(super) fn params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT. Port 0 picks a free port; the
    /// address actually bound is printed.
    #[arg(long, env = "AUTHD_ADDR", default_value = "127.0.0.1:5000",
          value_name = "HOST:PORT", value_parser = parse_addr)]
    addr: String,

    /// Not an option: the port is part of --addr (a hint, hidden).
    #[arg(long, hide = true, value_name = "PORT")]
    port: Option<String>,

    #[command(flatten)]
    store: StoreArgs,

    /// bcrypt cost for new password hashes (4-31; each step doubles the
    /// work: 12 takes about 0.27 s per hash on our 2-core test machine).
    #[arg(long, env = "AUTHD_BCRYPT_COST", default_value_t = config::DEFAULT_BCRYPT_COST,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,

    /// Algorithm of new password hashes: bcrypt (72 bytes of a password at
    /// most) or argon2id (up to 1,024 bytes) [default: bcrypt in dev,
    /// argon2id in production]. Stored hashes of either kind verify and
    /// are rehashed to this one at the next login.
    #[arg(
        long,
        env = "AUTHD_PASSWORD_HASH",
        value_enum,
        value_name = "bcrypt|argon2id"
    )]
    password_hash: Option<Algorithm>,

    #[command(flatten)]
    argon2: Argon2Args,

    /// Memory argon2 hashes may take at once, all workers together, in
    /// MiB; past it argon2 work waits in the hash queue.
    #[arg(long, env = "AUTHD_HASH_MEMORY_MB", value_name = "MIB",
          default_value_t = config::DEFAULT_HASH_MEMORY_MB,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    hash_memory_mb: u32,

    /// Requests handled at once (each connection has a thread of its own).
    /// Half of them at most wait for bcrypt; the rest stay free for cheap
    /// requests.
    #[arg(long, env = "AUTHD_THREADS", default_value_t = config::DEFAULT_THREADS,
          value_parser = clap::value_parser!(u16).range(2..=4096).map(usize::from))]
    threads: usize,

    /// Password-hashing worker threads, bcrypt or argon2id [default: one
    /// per CPU core].
    #[arg(long, env = "AUTHD_HASH_WORKERS",
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    hash_workers: Option<usize>,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "AUTHD_MAX_BODY_BYTES", default_value_t = config::DEFAULT_MAX_BODY_BYTES,
          value_parser = clap::value_parser!(u32).range(256..).map(|n| n as usize))]
    max_body_bytes: usize,

    /// Serve HTTPS with this PEM certificate chain (the server's
    /// certificate first), with --tls-key. Both files are re-read on
    /// SIGHUP; new connections get the new pair, open ones keep theirs.
    #[arg(long, env = "AUTHD_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "AUTHD_TLS_KEY", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,

    /// Mark the session cookie `Secure` (set this when clients reach authd
    /// over HTTPS through a TLS-terminating reverse proxy; with --tls-cert
    /// it is always set).
    #[arg(long, env = "AUTHD_SECURE_COOKIES", value_parser = BoolishValueParser::new())]
    secure_cookies: bool,

    /// Do not write the per-request access log to stderr.
    #[arg(long, env = "AUTHD_NO_ACCESS_LOG", value_parser = BoolishValueParser::new())]
    no_access_log: bool,

    /// Do not write the audit log (JSON lines on stderr, one per
    /// registration, login, logout, throttling and password reset).
    #[arg(long, env = "AUTHD_NO_AUDIT_LOG", value_parser = BoolishValueParser::new())]
    no_audit_log: bool,

    /// Absolute session lifetime in seconds, from login; also the cookie's
    /// Max-Age.
    #[arg(long, env = "AUTHD_SESSION_TTL", value_name = "SECONDS",
          default_value_t = Lifetimes::default().session.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    session_ttl: u64,

    /// Idle timeout in seconds: a session unused this long ends. Use
    /// extends it, never past the absolute lifetime.
    #[arg(long, env = "AUTHD_SESSION_IDLE_TTL", value_name = "SECONDS",
          default_value_t = Lifetimes::default().session_idle.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    session_idle_ttl: u64,

    /// Reset token lifetime in seconds, from issue.
    #[arg(long, env = "AUTHD_RESET_TOKEN_TTL", value_name = "SECONDS",
          default_value_t = Lifetimes::default().reset_token.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    reset_token_ttl: u64,

    /// Verification token lifetime in seconds, from issue (the address's
    /// own and an email change's).
    #[arg(long, env = "AUTHD_VERIFY_TOKEN_TTL", value_name = "SECONDS",
          default_value_t = Lifetimes::default().verify_token.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    verify_token_ttl: u64,

    /// Refuse logins of accounts whose address is not verified (403
    /// "email not verified", said only after the right password).
    /// Accounts that existed before verification count as verified.
    #[arg(long, env = "AUTHD_REQUIRE_VERIFIED_EMAIL", value_name = "on|off",
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "on",
          default_value = "off", value_parser = BoolishValueParser::new())]
    require_verified_email: bool,

    /// The name an authenticator app shows beside a TOTP second factor
    /// (the issuer of its otpauth:// URI): 1 to 64 characters, no ':'.
    #[arg(long, env = "AUTHD_TOTP_ISSUER", value_name = "NAME",
          default_value = crate::auth::DEFAULT_TOTP_ISSUER,
          value_parser = |s: &str| crate::totp::parse_issuer(s))]
    totp_issuer: String,

    /// Sessions a user may hold at once (one per device or browser); a new
    /// login past this ends the user's oldest session. 1 gives the Flask
    /// reference's behaviour: a login ends the previous session. At most
    /// 256.
    #[arg(long, env = "AUTHD_MAX_SESSIONS_PER_USER",
          default_value_t = crate::auth::DEFAULT_MAX_SESSIONS,
          value_parser = clap::value_parser!(u64)
              .range(1..=crate::auth::MAX_SESSIONS_LIMIT as u64)
              .map(|n| n as usize))]
    max_sessions_per_user: usize,

    /// Failed logins per account before growing delays (1 s, doubling) start;
    /// per client IP the allowance is ten times this.
    #[arg(long, env = "AUTHD_LOGIN_FREE_FAILURES",
          default_value_t = LimitSettings::default().login_free_failures,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    login_free_failures: u32,

    /// Consecutive failed logins after which an account refuses logins until
    /// the throttle window passes or its password is reset (at most 100, as
    /// NIST SP 800-63B requires).
    #[arg(long, env = "AUTHD_LOCKOUT_FAILURES",
          default_value_t = LimitSettings::default().lockout_failures,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    lockout_failures: u32,

    /// POST /users and POST /reset_password requests per client IP and per
    /// email at once (a token bucket's size); in the dev profile a client on
    /// this machine is not limited (see README).
    #[arg(long, env = "AUTHD_REQUEST_FREE",
          default_value_t = LimitSettings::default().request_free,
          value_parser = clap::value_parser!(u32).range(1..))]
    request_free: u32,

    /// Seconds for one more such request to come back into its bucket
    /// [default: 1 in dev, 60 in production].
    #[arg(long, env = "AUTHD_REQUEST_REFILL", value_name = "SECONDS",
          value_parser = parse_seconds)]
    request_refill: Option<Duration>,

    /// Successful logins per account at once (a token bucket's size):
    /// logging in as oneself in a loop must not keep the bcrypt workers
    /// from everyone else.
    #[arg(long, env = "AUTHD_LOGIN_SUCCESS_BURST",
          default_value_t = LimitSettings::default().login_success_burst,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    login_success_burst: u32,

    /// Seconds for one more successful login of an account to come back
    /// into its bucket.
    #[arg(long, env = "AUTHD_LOGIN_SUCCESS_REFILL", value_name = "SECONDS",
          default_value = "6", value_parser = parse_seconds)]
    login_success_refill: Duration,

    /// Places one client address holds in the bcrypt queue (at most 2 of
    /// them running; addresses with work waiting take turns); past them its
    /// requests get 429. Raise it for many users behind one address (an
    /// office's NAT).
    #[arg(long, env = "AUTHD_HASHES_PER_ADDRESS",
          default_value_t = LimitSettings::default().hashes_per_address,
          value_parser = clap::value_parser!(u64).range(1..=10_000).map(|n| n as usize))]
    hashes_per_address: usize,

    /// Longest delay, in seconds, that any throttle imposes.
    #[arg(long, env = "AUTHD_MAX_DELAY", value_name = "SECONDS",
          default_value_t = LimitSettings::default().max_delay.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    max_delay: u64,

    /// Seconds without events after which a client's or account's count
    /// starts over (this also bounds the lockout).
    #[arg(long, env = "AUTHD_THROTTLE_WINDOW", value_name = "SECONDS",
          default_value_t = LimitSettings::default().window.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    throttle_window: u64,

    /// Seconds between sweeps that remove expired sessions, reset tokens
    /// and throttle entries.
    #[arg(long, env = "AUTHD_SWEEP_INTERVAL", value_name = "SECONDS",
          default_value_t = config::DEFAULT_SWEEP_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    sweep_interval: u64,

    /// dev: the reference API for local prototyping (reset tokens in
    /// responses, any password). production: safe to expose (see README,
    /// "dev vs production").
    #[arg(long, env = "AUTHD_PROFILE", value_enum, default_value_t = Profile::Dev)]
    profile: Profile,

    /// Where messages go (reset and verification tokens, notices):
    /// `smtp://[USER:PASS@]HOST[:PORT]` (STARTTLS, required unless the
    /// host is loopback), `smtps://...` (TLS from the start),
    /// `webhook:https://HOST/PATH` (signed JSON; plain http only to
    /// loopback or private addresses), `outbox` (kept in the store: `authd
    /// outbox`, and `GET /dev/outbox` in dev) or `log` (the audit log).
    /// Required in production; in dev the default is `outbox`.
    #[arg(long, env = "AUTHD_DELIVERY", value_name = "CHANNEL",
          value_parser = |s: &str| s.parse::<Channel>())]
    delivery: Option<Channel>,

    /// The older name of --delivery, kept so configurations keep working;
    /// giving both is a usage error.
    #[arg(long, env = "AUTHD_RESET_DELIVERY", value_name = "CHANNEL",
          conflicts_with = "delivery", value_parser = |s: &str| s.parse::<Channel>())]
    reset_delivery: Option<Channel>,

    /// The sender of SMTP mail, e.g. 'Example <no-reply@example.com>'.
    #[arg(long, env = "AUTHD_MAIL_FROM", value_name = "ADDRESS")]
    mail_from: Option<String>,

    /// A directory of templates replacing the built-in ones:
    /// {reset,verify,email_change,password_changed,email_changed,account_deleted}.{subject,txt,html},
    /// each optional, checked at start.
    #[arg(long, env = "AUTHD_TEMPLATES", value_name = "DIR")]
    templates: Option<std::path::PathBuf>,

    /// A file holding the webhook's signing secret (whsec_..., Standard
    /// Webhooks); AUTHD_WEBHOOK_SECRET gives it directly.
    #[arg(long, env = "AUTHD_WEBHOOK_SECRET_FILE", value_name = "PATH")]
    webhook_secret_file: Option<std::path::PathBuf>,

    /// Where account events go (user.created, user.verified,
    /// password.changed, user.deleted): an https:// URL (http:// only to
    /// loopback or private addresses), signed as deliveries are.
    #[arg(long, env = "AUTHD_EVENTS_WEBHOOK", value_name = "URL")]
    events_webhook: Option<String>,

    /// Messages that may wait in the delivery queue (dead letters not
    /// counted); past it, requests that would queue one get 503.
    #[arg(long, env = "AUTHD_DELIVERY_QUEUE_MAX", value_name = "N",
          default_value_t = crate::outbox::QUEUE_MAX,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    delivery_queue_max: usize,

    /// Certificates (PEM) that SMTP and webhook servers are checked
    /// against instead of the public roots (a private CA).
    #[arg(long, env = "AUTHD_DELIVERY_CA_FILE", value_name = "PATH")]
    delivery_ca_file: Option<std::path::PathBuf>,

    /// Fewest characters in a new password [default: 1 in dev, 8 in
    /// production].
    #[arg(long, env = "AUTHD_MIN_PASSWORD_LENGTH",
          value_parser = clap::value_parser!(u16).range(1..=72).map(usize::from))]
    min_password_length: Option<usize>,

    /// Lowest zxcvbn strength score (0-4) for a new password; 0 disables
    /// the check [default: 0 in dev, 3 in production].
    #[arg(long, env = "AUTHD_MIN_PASSWORD_SCORE",
          value_parser = clap::value_parser!(u8).range(0..=4))]
    min_password_score: Option<u8>,

    /// Origins of other sites (scheme://host[:port], comma-separated) whose
    /// pages may register, log in, reset passwords and log out through
    /// authd; in production, such requests from any other site's pages are
    /// refused (403), and authd's own origin (--public-url) is always
    /// allowed.
    #[arg(
        long,
        env = "AUTHD_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ',',
        value_parser = parse_allowed_origin
    )]
    allowed_origins: Vec<String>,

    /// The URL browsers reach authd at, e.g. https://auth.example.com
    /// (scheme, host and optional port; no path). In production, browser
    /// requests whose Origin is this one are authd's own and pass the
    /// cross-site check; without it, authd's own origin is https:// and the
    /// request's Host header.
    #[arg(long, env = "AUTHD_PUBLIC_URL", value_name = "URL",
          value_parser = |s: &str| crate::http::csrf::parse_public_url(s))]
    public_url: Option<String>,

    /// Read the server key from this file (64 hex digits, e.g. from
    /// `openssl rand -hex 32`; a second line holds the previous key during
    /// a rotation) instead of keeping it in the store. Every instance on
    /// one database must be given the same file.
    #[arg(long, env = "AUTHD_SECRET_KEY_FILE", value_name = "PATH")]
    secret_key_file: Option<std::path::PathBuf>,

    /// Size of the store's page cache in MiB. Lookups of users not in the
    /// cache read the disk; the cache is most of authd's memory.
    #[arg(long, env = "AUTHD_CACHE_MB", value_name = "MIB", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(8..=65_536))]
    cache_mb: u64,

    /// Most connections to the --database this instance opens; the sum
    /// over all instances must stay below the server's max_connections.
    #[arg(long, env = "AUTHD_DB_POOL_SIZE", value_name = "N",
          default_value_t = config::DEFAULT_DB_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_pool_size: u32,

    /// Most connections open at once; over it a new connection gets 503
    /// and is closed [default: 1024, or less where the file-descriptor
    /// limit (less headroom for the store) or half the pids limit is lower].
    #[arg(long, env = "AUTHD_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    max_connections: Option<usize>,

    /// Most connections open at once from one client address
    /// [default: a quarter of --max-connections, at least 64].
    #[arg(long, env = "AUTHD_MAX_CONNECTIONS_PER_IP", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    max_connections_per_ip: Option<usize>,

    /// Seconds a client has to send a whole request head (fractions
    /// allowed); then 408 and the connection closes.
    #[arg(long, env = "AUTHD_HEADER_TIMEOUT", value_name = "SECONDS", default_value = "10",
          value_parser = parse_seconds)]
    header_timeout: Duration,

    /// Seconds a client has to send a whole request body, and to take an
    /// answer; then 408 (or nothing) and the connection closes.
    #[arg(long, env = "AUTHD_BODY_TIMEOUT", value_name = "SECONDS", default_value = "30",
          value_parser = parse_seconds)]
    body_timeout: Duration,

    /// Longest silence, in seconds, inside a request body.
    #[arg(long, env = "AUTHD_BODY_IDLE_TIMEOUT", value_name = "SECONDS", default_value = "10",
          value_parser = parse_seconds)]
    body_idle_timeout: Duration,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "AUTHD_KEEPALIVE_TIMEOUT", value_name = "SECONDS", default_value = "5",
          value_parser = parse_seconds)]
    keepalive_timeout: Duration,

    /// Serve GET /metrics (Prometheus) on a listener of its own,
    /// HOST:PORT (plain HTTP; e.g. 127.0.0.1:9090 for a scraper on this
    /// machine), and no longer on the main one (unless --metrics-public).
    #[arg(long, env = "AUTHD_METRICS_ADDR", value_name = "HOST:PORT",
          value_parser = parse_addr)]
    metrics_addr: Option<String>,

    /// Serve GET /metrics on the main listener in the production profile
    /// too (it answers 404 there otherwise; the dev profile serves it
    /// unless --metrics-addr is set).
    #[arg(long, env = "AUTHD_METRICS_PUBLIC", value_parser = BoolishValueParser::new())]
    metrics_public: bool,

    /// Serve the hosted pages under /ui/ (sign up, sign in, reset, verify,
    /// account; the dev outbox in dev) [default: on in dev, off in
    /// production].
    #[arg(long, env = "AUTHD_UI", value_name = "on|off",
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "on",
          value_parser = BoolishValueParser::new())]
    ui: Option<bool>,

    /// Take the client IP (for throttling and logs) from this header, as set
    /// by your reverse proxy: X-Forwarded-For (the last address of all its
    /// lines) or X-Real-IP. Only set it when a proxy you control always
    /// sets it.
    #[arg(long, env = "AUTHD_CLIENT_IP_HEADER", value_name = "HEADER")]
    client_ip_header: Option<String>,

    /// Addresses of your reverse proxies (CIDR blocks or single addresses,
    /// comma-separated, e.g. 10.0.0.0/8,fd00::/8). Needs
    /// --client-ip-header; the header is then believed only from these
    /// peers, and the client is the right-most address in it that is not
    /// one of them (all of them trusted: the left-most).
    #[arg(long, env = "AUTHD_TRUSTED_PROXIES", value_name = "CIDR,...",
          value_delimiter = ',', value_parser = |s: &str| s.parse::<Cidr>())]
    trusted_proxies: Vec<Cidr>,
}

impl ServeArgs {
    /// Where the control socket goes (used only with the embedded store).
    pub fn control_socket(&self) -> std::path::PathBuf {
        self.store.socket()
    }

    /// The validated configuration these options describe; an error says
    /// which options contradict each other.
    pub fn into_config(self) -> Result<Config, String> {
        if let Some(port) = &self.port {
            return Err(format!(
                "there is no --port: the port is part of --addr HOST:PORT \
                 (e.g. --addr 127.0.0.1:{port}; --addr 127.0.0.1:0 picks a free port)"
            ));
        }
        if self.lockout_failures < self.login_free_failures {
            return Err(format!(
                "--lockout-failures ({}) must not be below --login-free-failures ({})",
                self.lockout_failures, self.login_free_failures
            ));
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err("--tls-cert needs --tls-key (AUTHD_TLS_KEY): \
                            the private key of the certificate"
                    .to_owned())
            }
            (None, Some(_)) => {
                return Err("--tls-key needs --tls-cert (AUTHD_TLS_CERT): \
                            the certificate of the key"
                    .to_owned())
            }
        };
        let secs = Duration::from_secs;
        let base = if self.profile == Profile::Production {
            PasswordPolicy::PRODUCTION
        } else {
            PasswordPolicy::DEV
        };
        let config = Config {
            addr: self.addr,
            data_dir: self.store.data_dir,
            database_url: self.store.database,
            db_pool_size: self.db_pool_size,
            bcrypt_cost: self.bcrypt_cost,
            password_hash: self.password_hash.unwrap_or(match self.profile {
                Profile::Dev => Algorithm::Bcrypt,
                Profile::Production => Algorithm::Argon2id,
            }),
            argon2: self.argon2.params(),
            hash_memory_mb: self.hash_memory_mb,
            threads: self.threads,
            hash_workers: self
                .hash_workers
                .unwrap_or_else(config::default_hash_workers),
            max_body_bytes: self.max_body_bytes,
            secure_cookies: self.secure_cookies,
            access_log: !self.no_access_log,
            audit_log: !self.no_audit_log,
            lifetimes: Lifetimes {
                session: secs(self.session_ttl),
                session_idle: secs(self.session_idle_ttl),
                reset_token: secs(self.reset_token_ttl),
                verify_token: secs(self.verify_token_ttl),
            },
            require_verified_email: self.require_verified_email,
            totp_issuer: self.totp_issuer,
            max_sessions_per_user: self.max_sessions_per_user,
            limits: LimitSettings {
                login_free_failures: self.login_free_failures,
                lockout_failures: self.lockout_failures,
                request_free: self.request_free,
                request_refill: self.request_refill.unwrap_or(match self.profile {
                    Profile::Dev => limits::DEV_REQUEST_REFILL,
                    Profile::Production => limits::PRODUCTION_REQUEST_REFILL,
                }),
                max_delay: secs(self.max_delay),
                window: secs(self.throttle_window),
                login_success_burst: self.login_success_burst,
                login_success_refill: self.login_success_refill,
                hashes_per_address: self.hashes_per_address,
                ..LimitSettings::default()
            },
            sweep_interval: secs(self.sweep_interval),
            client_ip_header: self.client_ip_header,
            trusted_proxies: self.trusted_proxies,
            profile: self.profile,
            delivery: self
                .delivery
                .or(self.reset_delivery)
                .or((self.profile == Profile::Dev).then_some(Channel::Outbox)),
            delivery_queue_max: self.delivery_queue_max,
            delivery_settings: delivery::Settings {
                mail_from: self.mail_from,
                templates: self.templates,
                public_url: self.public_url.clone(),
                // The dev outbox's links point at this server when no
                // public URL is set: a prototype on one machine.
                links_to_listener: self.profile == Profile::Dev,
                webhook_secret: webhook_secret(self.webhook_secret_file.as_deref())?,
                ca_file: self.delivery_ca_file,
                events_webhook: self.events_webhook,
            },
            password_policy: PasswordPolicy {
                min_length: self.min_password_length.unwrap_or(base.min_length),
                min_score: self.min_password_score.unwrap_or(base.min_score),
            },
            cache_bytes: self.cache_mb * 1024 * 1024,
            edge: {
                let max_connections = self
                    .max_connections
                    .unwrap_or_else(|| system::default_max_connections(self.db_pool_size));
                EdgeLimits {
                    max_connections,
                    max_connections_per_ip: self
                        .max_connections_per_ip
                        .unwrap_or_else(|| EdgeLimits::per_ip_for(max_connections)),
                    header_timeout: self.header_timeout,
                    body_timeout: self.body_timeout,
                    body_idle_timeout: self.body_idle_timeout,
                    keepalive_timeout: self.keepalive_timeout,
                }
            },
            allowed_origins: self
                .allowed_origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            public_origin: self.public_url,
            secret_key_file: self.secret_key_file,
            tls,
            metrics_addr: self.metrics_addr,
            metrics_public: self.metrics_public,
            metrics_cache: crate::metrics::DEFAULT_CACHE_PERIOD,
            ui: self.ui,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Checks that an address to listen on has the shape HOST:PORT (a name,
/// an IPv4 address or a bracketed IPv6 address, and a port number), so a
/// mistake is a usage error naming the flag before anything starts; the
/// name is resolved when the listener binds.
fn parse_addr(text: &str) -> Result<String, String> {
    const HINT: &str = "expected HOST:PORT, e.g. 127.0.0.1:5000 or [::1]:5000 \
                        (127.0.0.1:0 picks a free port)";
    let (host, port) = text.rsplit_once(':').ok_or(HINT)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace)
    };
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(HINT.to_owned());
    }
    Ok(text.to_owned())
}

/// One value of `--allowed-origins`, checked before anything starts (a
/// usage error naming it); an empty one (a trailing comma) is dropped
/// later.
fn parse_allowed_origin(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Ok(String::new()),
        value => crate::http::cors::parse_origin(value),
    }
}

/// Parses a number of seconds, fractions allowed: "10", "0.25".
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&seconds) {
        return Err("must be between 0.001 and 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The start-up summary (stderr): the profile, where the store is (an
/// absolute path, or the database without its password), where reset
/// tokens go (a webhook without credentials or query), and the hashing and
/// connection settings. Standard output keeps its one line for scripts.
fn summary(config: &Config) -> String {
    let store = match &config.database_url {
        Some(_) => format!(
            "store PostgreSQL database {} (pool of {})",
            config.location(),
            config.db_pool_size
        ),
        None => format!(
            "store {} (embedded)",
            std::path::absolute(&config.data_dir)
                .unwrap_or_else(|_| config.data_dir.clone())
                .display()
        ),
    };
    let channel = config.delivery.as_ref().map(redacted_channel);
    let delivery = match (config.profile, channel) {
        (Profile::Dev, None) => "in the answers".to_owned(),
        (Profile::Dev, Some(channel)) => format!("in the answers, messages to {channel}"),
        (Profile::Production, Some(channel)) => format!("to {channel}"),
        (Profile::Production, None) => "nowhere".to_owned(),
    };
    let transport = match &config.tls {
        Some(files) => format!(
            "HTTPS with {} and {} (SIGHUP re-reads them)",
            files.cert.display(),
            files.key.display()
        ),
        None => "plain HTTP".to_owned(),
    };
    let metrics = match (&config.metrics_addr, config.metrics_on_main()) {
        (Some(_), true) => "metrics on --metrics-addr and the main listener".to_owned(),
        (Some(_), false) => "metrics on --metrics-addr only".to_owned(),
        (None, true) => "metrics on the main listener".to_owned(),
        (None, false) => "no metrics (--metrics-addr or --metrics-public)".to_owned(),
    };
    format!(
        "profile {}, {transport}, {store}, tokens {delivery}, {} on {} \
         workers ({} places per client address), {} requests handled at once, at most {} \
         connections ({} per client address), {metrics}",
        match config.profile {
            Profile::Dev => "dev",
            Profile::Production => "production",
        },
        match config.scheme() {
            scheme @ crate::hasher::Scheme::Argon2id(_) => format!(
                "{} ({} MiB at once)",
                scheme.describe(),
                config.hash_memory_mb
            ),
            scheme => scheme.describe(),
        },
        config.hash_workers,
        config.limits.hashes_per_address,
        config.threads,
        config.edge.max_connections,
        config.edge.max_connections_per_ip,
    )
}

/// A delivery channel as logs may show it: a webhook URL without user
/// information or query (either may carry a secret).
fn redacted_channel(channel: &Channel) -> String {
    match channel {
        Channel::Webhook(url) => {
            let url = url.split(['?', '#']).next().unwrap_or_default();
            let shown = match url.split_once("://") {
                Some((scheme, rest)) => {
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let host = authority
                        .rsplit_once('@')
                        .map_or(authority, |(_, host)| host);
                    format!("{scheme}://{host}{path}")
                }
                None => url.to_owned(),
            };
            format!("webhook:{shown}")
        }
        Channel::Log => "the audit log".to_owned(),
        Channel::Outbox => "the outbox (authd outbox)".to_owned(),
        smtp @ Channel::Smtp(_) => smtp.to_string(),
    }
}

/// The webhook secret: from `--webhook-secret-file` (trimmed), else from
/// `AUTHD_WEBHOOK_SECRET`; never from a flag's value, which `ps` shows.
fn webhook_secret(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|e| format!("--webhook-secret-file {}: {e}", path.display())),
        None => Ok(std::env::var("AUTHD_WEBHOOK_SECRET")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())),
    }
}

/// Handles the signals of a running server on a thread of its own:
/// SIGINT and SIGTERM set `stop`; SIGHUP re-reads the TLS certificate and
/// key (keeping the pair served when the new one is bad) and never stops
/// the server.
fn handle_signals(
    stop: Arc<AtomicBool>,
    certificate: Option<crate::tls::Certificate>,
) -> Result<(), CliError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(CliError::Signal)?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if signal != SIGHUP {
                    stop.store(true, Ordering::SeqCst);
                    continue;
                }
                match &certificate {
                    None => eprintln!("authd: SIGHUP: no --tls-cert to re-read; still serving"),
                    Some(certificate) => match certificate.reload() {
                        Ok(()) => eprintln!(
                            "authd: SIGHUP: re-read the TLS certificate {} and key {}",
                            certificate.files().cert.display(),
                            certificate.files().key.display()
                        ),
                        Err(e) => {
                            eprintln!("authd: SIGHUP: keeping the TLS certificate served: {e}")
                        }
                    },
                }
            }
        })
        .map_err(CliError::Signal)?;
    Ok(())
}

/// Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight
/// requests finish, flushes the store and returns.
pub fn serve(config: Config, control_socket: std::path::PathBuf) -> Result<(), CliError> {
    let mut running = server::start(&config)?;
    // Admin commands reach an embedded store through the server while it
    // runs (the store's lock is held now: a socket file there is stale).
    if matches!(running.any_store(), crate::store::AnyStore::Sled(_)) {
        let runner = super::remote::runner(running.any_store().clone(), config.location());
        if let Err(e) = running.serve_control(&control_socket, runner) {
            eprintln!(
                "authd: no control socket at {} ({e}): admin commands need the server \
                 stopped; --control-socket PATH puts it elsewhere",
                control_socket.display()
            );
        }
    }
    handle_signals(running.stop_flag(), running.certificate())?;
    eprintln!("authd: {}", summary(&config));
    if let Some(addr) = running.metrics_addr() {
        eprintln!("authd: metrics on http://{addr}/metrics");
    }
    if config.profile == Profile::Dev && !running.addr().ip().is_loopback() {
        eprintln!(
            "authd: WARNING: listening on {} (not a loopback address) in the dev profile: \
             POST /reset_password hands a reset token, and so the account, to anyone who \
             knows an email, and the API tells which emails are registered. \
             Use --profile production to expose authd.",
            running.addr()
        );
    }
    // The one line on stdout, for scripts that started us on port 0.
    let mut stdout = std::io::stdout().lock();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let _ = writeln!(stdout, "listening on {scheme}://{}", running.addr());
    let _ = stdout.flush();
    drop(stdout);
    let stopped = running.wait();
    crate::audit::flush_logs();
    stopped?;
    eprintln!("authd: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_credentials_and_queries_stay_out_of_the_summary() {
        let shown = |url: &str| redacted_channel(&Channel::Webhook(url.to_owned()));
        assert_eq!(
            shown("http://user:s3cret@hooks.example:8080/reset?token=abc"),
            "webhook:http://hooks.example:8080/reset"
        );
        assert_eq!(shown("http://127.0.0.1/r"), "webhook:http://127.0.0.1/r");
        assert_eq!(redacted_channel(&Channel::Log), "the audit log");
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        for good in ["127.0.0.1:5000", "localhost:0", "[::1]:5000", "0.0.0.0:80"] {
            assert_eq!(parse_addr(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "127.0.0.1",
            ":5000",
            "127.0.0.1:",
            "::1:5000",
            "[::1]",
            "h:99999",
            "a b:1",
        ] {
            let error = parse_addr(bad).unwrap_err();
            assert!(
                error.contains("HOST:PORT") && error.contains(":0"),
                "{bad}: {error}"
            );
        }
    }
}
