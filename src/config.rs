//! The validated configuration of a server, whatever it came from.
//!
//! `cli` turns flags and environment variables into a [`Config`]; tests
//! build one directly. Either way the server sees only checked values.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::auth::limits::LimitSettings;
use crate::auth::Lifetimes;
use crate::delivery::Channel;
use crate::hasher::{Algorithm, Argon2Params, Scheme};
use crate::policy::PasswordPolicy;

/// The two ways to run authd: the reference API for local prototyping, or
/// safe to expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The reference API as is: reset tokens in responses, any password.
    Dev,
    /// Tokens only through a delivery channel, password policy, `__Host-`
    /// Secure cookie, cross-site refusal, bcrypt cost of at least 10.
    Production,
}

/// Everything needed to start a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on, `HOST:PORT`; port 0 picks a free port.
    pub addr: String,
    /// Directory of the sled store (created if missing).
    pub data_dir: PathBuf,
    /// bcrypt cost for new hashes (4..=31) when `password_hash` is bcrypt.
    pub bcrypt_cost: u32,
    /// The algorithm of new password hashes; stored hashes of either kind
    /// verify, and are rehashed to this one at login.
    pub password_hash: Algorithm,
    /// argon2id's parameters when `password_hash` is argon2id.
    pub argon2: Argon2Params,
    /// Memory argon2 hashes may take at once, all workers together, in MiB
    /// (`--hash-memory-mb`).
    pub hash_memory_mb: u32,
    /// Requests handled at once.
    pub threads: usize,
    /// bcrypt worker threads.
    pub hash_workers: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Mark the session cookie `Secure`.
    pub secure_cookies: bool,
    /// Log one line per request to stderr.
    pub access_log: bool,
    /// Log authentication events as JSON lines to stderr.
    pub audit_log: bool,
    /// Session and one-time token lifetimes.
    pub lifetimes: Lifetimes,
    /// Refuse logins of accounts whose address is not verified.
    pub require_verified_email: bool,
    /// The issuer name of TOTP second factors (`--totp-issuer`).
    pub totp_issuer: String,
    /// Sessions a user may hold at once (the oldest ends first).
    pub max_sessions_per_user: usize,
    /// Throttling of logins, registrations and reset requests.
    pub limits: LimitSettings,
    /// How often expired tokens and throttle entries are swept.
    pub sweep_interval: Duration,
    /// Header with the client IP set by a trusted reverse proxy.
    pub client_ip_header: Option<String>,
    /// Proxies in front of authd (`--trusted-proxies`): the header is
    /// believed only from them, and their own entries in it are skipped.
    /// Empty: the header is believed from any peer, its last entry used.
    pub trusted_proxies: Vec<crate::cidr::Cidr>,
    /// Dev or production behaviour.
    pub profile: Profile,
    /// Where messages go; tokens also go in responses in dev.
    pub delivery: Option<Channel>,
    /// What the delivery channel needs besides (sender, templates, links,
    /// secret).
    pub delivery_settings: crate::delivery::Settings,
    /// Messages that may wait in the delivery queue; past it, 503.
    pub delivery_queue_max: usize,
    /// Rules for new passwords.
    pub password_policy: PasswordPolicy,
    /// Origins of other sites whose pages may make state-changing
    /// requests (production).
    pub allowed_origins: Vec<String>,
    /// The server's own origin, from `--public-url` (canonical:
    /// `https://auth.example.com`); `None` derives it from `Host`.
    pub public_origin: Option<String>,
    /// Size of sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// PostgreSQL URL; when set, the store is there instead of `data_dir`.
    pub database_url: Option<String>,
    /// Most PostgreSQL connections this server opens.
    pub db_pool_size: u32,
    /// What the HTTP edge allows each client.
    pub edge: EdgeLimits,
    /// The server key from a file instead of the store.
    pub secret_key_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key (`--tls-cert`,
    /// `--tls-key`); `None` serves plain HTTP (behind a TLS proxy, say).
    pub tls: Option<crate::tls::TlsFiles>,
    /// `--metrics-addr`: serve `/metrics` (only) on a listener of its
    /// own, `HOST:PORT`, instead of the main one.
    pub metrics_addr: Option<String>,
    /// `--metrics-public`: `/metrics` on the main listener in production
    /// too (which otherwise answers 404 there).
    pub metrics_public: bool,
    /// How long the store's numbers in `/metrics` are kept before they
    /// are read again.
    pub metrics_cache: Duration,
    /// `--ui`: serve the hosted pages under `/ui/`; `None` follows the
    /// profile ([`Config::ui_on`]).
    pub ui: Option<bool>,
}

/// Connection caps and timeouts of the HTTP edge: what a slow, idle or
/// greedy client may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeLimits {
    /// Connections open at once; over it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Time for a whole request head.
    pub header_timeout: Duration,
    /// Time for a whole request body (and for the client to take an
    /// answer).
    pub body_timeout: Duration,
    /// Longest silence inside a body.
    pub body_idle_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
}

/// The connection cap where no limit of the machine asks for less.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl EdgeLimits {
    /// The per-address cap that goes with `max_connections`: a quarter of
    /// it, and at least 64, so one client cannot hold every slot.
    pub fn per_ip_for(max_connections: usize) -> usize {
        (max_connections / 4).max(64).min(max_connections)
    }
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: Self::per_ip_for(DEFAULT_MAX_CONNECTIONS),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
        }
    }
}

/// Default PostgreSQL connections per instance: enough for the cheap
/// requests of 64 HTTP threads (each holds a connection only for a query or
/// two), few enough that several instances fit in PostgreSQL's default
/// `max_connections` of 100.
pub const DEFAULT_DB_POOL_SIZE: u32 = 16;

/// Default HTTP worker threads: enough that requests waiting for bcrypt
/// leave plenty free for cheap ones.
pub const DEFAULT_THREADS: usize = 64;
/// Default bcrypt cost, OWASP's and the bcrypt crate's recommendation.
pub const DEFAULT_BCRYPT_COST: u32 = 12;
/// Default memory of the argon2 hashes running at once, in MiB: three
/// hashes at OWASP's 19 MiB.
pub const DEFAULT_HASH_MEMORY_MB: u32 = 64;
/// Default request body limit: far above any legitimate form here.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Default period of the sweep of expired tokens and throttle entries.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One bcrypt worker per core: more would only make hashes wait for CPU.
pub fn default_hash_workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

impl Config {
    /// The defaults of `authd serve`, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            addr: "127.0.0.1:5000".to_owned(),
            data_dir: data_dir.into(),
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            password_hash: Algorithm::Bcrypt,
            argon2: Argon2Params::OWASP,
            hash_memory_mb: DEFAULT_HASH_MEMORY_MB,
            threads: DEFAULT_THREADS,
            hash_workers: default_hash_workers(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            secure_cookies: false,
            access_log: true,
            audit_log: true,
            lifetimes: Lifetimes::default(),
            require_verified_email: false,
            totp_issuer: crate::auth::DEFAULT_TOTP_ISSUER.to_owned(),
            max_sessions_per_user: crate::auth::DEFAULT_MAX_SESSIONS,
            limits: LimitSettings::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            client_ip_header: None,
            trusted_proxies: Vec::new(),
            profile: Profile::Dev,
            delivery: None,
            delivery_settings: crate::delivery::Settings::default(),
            delivery_queue_max: crate::outbox::QUEUE_MAX,
            password_policy: PasswordPolicy::DEV,
            allowed_origins: Vec::new(),
            public_origin: None,
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            database_url: None,
            db_pool_size: DEFAULT_DB_POOL_SIZE,
            edge: EdgeLimits::default(),
            secret_key_file: None,
            tls: None,
            metrics_addr: None,
            metrics_public: false,
            metrics_cache: crate::metrics::DEFAULT_CACHE_PERIOD,
            ui: None,
        }
    }

    /// How new password hashes are made.
    pub fn scheme(&self) -> Scheme {
        match self.password_hash {
            Algorithm::Bcrypt => Scheme::Bcrypt {
                cost: self.bcrypt_cost,
            },
            Algorithm::Argon2id => Scheme::Argon2id(self.argon2),
        }
    }

    /// Whether the main listener serves `/metrics`: with
    /// `--metrics-public`, or in the dev profile without a listener of
    /// its own. Production keeps it off the public port unless told.
    pub fn metrics_on_main(&self) -> bool {
        self.metrics_public || (self.metrics_addr.is_none() && self.profile == Profile::Dev)
    }

    /// Whether the hosted pages are served: as `--ui` says, else on in
    /// the dev profile (a prototype's pages with nothing else to run) and
    /// off in production (an operator turns them on knowingly).
    pub fn ui_on(&self) -> bool {
        self.ui.unwrap_or(self.profile == Profile::Dev)
    }

    /// Where the store is: the database when a URL is set, else the
    /// directory.
    pub fn location(&self) -> crate::store::Location {
        match &self.database_url {
            Some(url) => crate::store::Location::Database {
                url: url.clone(),
                pool_size: self.db_pool_size,
            },
            None => crate::store::Location::Dir {
                path: self.data_dir.clone(),
                cache_bytes: self.cache_bytes,
            },
        }
    }

    /// Session cookie name: `__Host-session_id` in production (the prefix
    /// makes browsers insist on Secure, Path=/ and no Domain), the
    /// reference's `session_id` in dev.
    pub fn cookie_name(&self) -> &'static str {
        match self.profile {
            Profile::Dev => "session_id",
            Profile::Production => "__Host-session_id",
        }
    }

    /// Why this configuration must not start, if it must not.
    pub fn validate(&self) -> Result<(), String> {
        if !self.trusted_proxies.is_empty() && self.client_ip_header.is_none() {
            // Without a header there is nothing to walk: the list would be
            // ignored, and the operator would believe it protects them.
            return Err(
                "--trusted-proxies needs --client-ip-header (the header those proxies write, \
                 e.g. X-Forwarded-For)"
                    .to_owned(),
            );
        }
        if self.profile == Profile::Production {
            if self.delivery.is_none() {
                return Err("the production profile never puts tokens in responses: set \
                            --delivery smtp://HOST, webhook:https://HOST/PATH, outbox or log to say \
                            where messages go"
                    .to_owned());
            }
            if self.delivery == Some(Channel::Outbox) {
                return Err(
                    "the outbox keeps the text of what it catches, tokens included, in \
                            the store: it is for the dev profile; in production set --delivery \
                            smtp://HOST, webhook:https://HOST/PATH or log"
                        .to_owned(),
                );
            }
            // Checked whatever --password-hash says: bcrypt hashes are
            // still made by `authd user` and may be configured back.
            if self.bcrypt_cost < 10 {
                return Err(format!(
                    "the production profile needs --bcrypt-cost 10 or more (got {})",
                    self.bcrypt_cost
                ));
            }
        }
        if self.password_hash == Algorithm::Argon2id {
            let p = self.argon2;
            argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|e| {
                format!(
                    "--argon2-memory-kib {}, --argon2-iterations {}, --argon2-parallelism {}: {e} \
                     (the memory must be at least 8 KiB per lane)",
                    p.memory_kib, p.iterations, p.parallelism
                )
            })?;
        }
        Ok(())
    }

    /// How many password operations may wait for a bcrypt worker. Half the
    /// HTTP threads: the other half always stays free for requests that do
    /// not hash, such as `GET /profile`.
    pub fn hash_queue(&self) -> usize {
        (self.threads / 2).max(1)
    }
}
