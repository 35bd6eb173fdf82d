//! The server's lifecycle: open the store, bind, serve, stop cleanly.
//!
//! [`start`] is used both by `authd serve` and by the integration tests,
//! which run the real server in-process on port 0 with a fresh store.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::auth::limits::Limits;
use crate::auth::{Auth, AuthError, Delivery, Rules};
use crate::config::{Config, Profile};
use crate::control;
use crate::delivery;
use crate::device::DeviceKeys;
use crate::hasher::Hasher;
use crate::http::error::ApiError;
use crate::http::{edge, App, Settings, MAX_HEAD_BYTES, ROUTES};
use crate::metrics::Metrics;
use crate::permits::Permits;
use crate::server_key::ServerKey;
use crate::store::{AnyStore, Migration, OpenError, RequestStore, StoreError, Upgrade};

/// How often the serving thread and the janitor look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How long a stop waits for in-flight requests before giving up on them.
/// Every acknowledged write is already on disk, so cutting them is safe.
const GRACE: Duration = Duration::from_secs(10);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("cannot start worker threads: {0}")]
    Threads(#[from] std::io::Error),
    #[error("cannot initialise authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Config(String),
    #[error("cannot read the server key from the store: {0}")]
    ServerKey(StoreError),
    #[error("cannot migrate the store: {0}")]
    Migration(String),
    /// The certificate or key of `--tls-cert`/`--tls-key`, named.
    #[error("{0}")]
    Tls(String),
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    /// The address of the `--metrics-addr` listener, when there is one.
    metrics_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Stops the handlers once the stop flag is set.
    thread: Option<JoinHandle<()>>,
    janitor: Option<JoinHandle<()>>,
    /// The delivery worker, when a channel is set.
    courier: Option<JoinHandle<()>>,
    /// Wakes the delivery worker (to see the stop flag at once).
    bell: Arc<crate::outbox::Bell>,
    store: AnyStore,
    app: Arc<App>,
    /// The control socket, when one is served (embedded store only).
    control: Option<control::listener::Listener>,
    /// The certificate served over HTTPS, to re-read on SIGHUP.
    certificate: Option<crate::tls::Certificate>,
}

/// Opens the store and starts serving `config` on a background thread.
///
/// The store is opened before the socket is bound, so a second server on
/// the same data directory fails on the store, with the clearer message.
pub fn start(config: &Config) -> Result<Running, StartError> {
    config.validate().map_err(StartError::Config)?;
    crate::tls::install_crypto_provider();
    // The certificate first: a bad pair leaves no store and no socket.
    let certificate = match &config.tls {
        Some(files) => Some(crate::tls::Certificate::load(files).map_err(StartError::Tls)?),
        None => None,
    };
    let tls = match &certificate {
        Some(certificate) => Some(certificate.server_config().map_err(StartError::Tls)?),
        None => None,
    };
    let hsts = tls.is_some();
    // The delivery channel too: a bad SMTP URL, webhook secret or
    // template is a start-up error before anything is created.
    let courier = match &config.delivery {
        Some(channel) => {
            let (courier, warnings) = delivery::Courier::new(channel, &config.delivery_settings)
                .map_err(StartError::Config)?;
            for warning in warnings {
                eprintln!("authd: warning: {warning}");
            }
            Some(courier)
        }
        None => None,
    };
    // The listener exists before the application (which reports its
    // health), so its handler finds the application through a cell.
    let served = Arc::new(OnceLock::new());
    let permits = Arc::new(Permits::new(config.threads.max(1)));
    let metrics_permits = Arc::new(Permits::new(METRICS_THREADS));
    let bind = || -> Result<_, StartError> {
        let main = listen(
            &config.addr,
            edge_limits(config),
            handler(
                Arc::clone(&served),
                Arc::clone(&permits),
                hsts,
                Handle::Main,
            ),
            tls.clone(),
        )?;
        let metrics = match &config.metrics_addr {
            Some(addr) => Some(listen(
                addr,
                metrics_limits(config),
                handler(
                    Arc::clone(&served),
                    Arc::clone(&metrics_permits),
                    false,
                    Handle::Metrics,
                ),
                None,
            )?),
            None => None,
        };
        Ok((main, metrics))
    };
    // An existing store first, so a store held by another process is what
    // is reported, not the port it holds too; a new one after binding, so a
    // port in use leaves no empty store behind.
    let (store, (listener, metrics_listener)) = if opens_before_binding(config) {
        let store = open_migrated(config)?;
        (store, bind()?)
    } else {
        let listeners = bind()?;
        (open_migrated(config)?, listeners)
    };
    let metrics = Arc::new(Metrics::new(&ROUTES, config.metrics_cache));
    let hasher = Hasher::start_scheme(
        config.hash_workers,
        config.hash_queue(),
        config.scheme(),
        config.limits.hashes_per_address,
    )?
    .with_memory_limit(config.hash_memory_mb)
    .with_wait_observer(metrics.hash_wait_observer());
    let delivery = match config.profile {
        Profile::Production => Delivery::Queued,
        Profile::Dev => Delivery::InResponse {
            sends: config.delivery.is_some(),
        },
    };
    let rules = Rules {
        lifetimes: config.lifetimes,
        policy: config.password_policy,
        max_sessions_per_user: config.max_sessions_per_user,
        delivery,
        require_verified_email: config.require_verified_email,
        totp_issuer: config.totp_issuer.clone(),
        queue_max: config.delivery_queue_max,
        events: config.delivery_settings.events_webhook.is_some(),
    };
    let key = match &config.secret_key_file {
        Some(path) => ServerKey::from_file(path).map_err(|e| StartError::Config(e.to_string()))?,
        None => store.server_key().map_err(StartError::ServerKey)?,
    };
    let mut limits = Limits::with(config.limits, key.derive("throttle"), &|scope, rule| {
        store.limiter(scope, rule)
    });
    // Device cookies in production only: dev answers stay the reference's.
    if config.profile == Profile::Production {
        limits = limits.with_devices(DeviceKeys::from_server_key(&key));
    }
    let auth = Arc::new(
        Auth::new(
            store.request(),
            hasher,
            rules,
            limits,
            Audit::new(config.audit_log),
        )?
        .with_totp_sealer(crate::totp::Sealer::new(&key))
        .with_observer(Arc::clone(&metrics) as Arc<dyn crate::auth::Observer>),
    );
    metrics.attach(crate::metrics::Sources {
        store: store.clone(),
        requests: store.request(),
        hasher: auth.hasher().clone(),
    });
    let addr = listener
        .server_addr()
        .to_ip()
        .ok_or_else(|| StartError::Config("not a TCP address".to_owned()))?;
    let metrics_addr = match &metrics_listener {
        Some(listener) => Some(
            listener
                .server_addr()
                .to_ip()
                .ok_or_else(|| StartError::Config("not a TCP address".to_owned()))?,
        ),
        None => None,
    };
    let app = Arc::new(App {
        auth: Arc::clone(&auth),
        settings: Settings {
            max_body_bytes: config.max_body_bytes,
            // `__Host-` cookies must be Secure: production always is; and
            // so is a cookie authd itself sends over HTTPS.
            secure_cookies: config.secure_cookies || config.profile == Profile::Production || hsts,
            access_log: config.access_log,
            client_ip_header: config.client_ip_header.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            profile: config.profile,
            cookie_name: config.cookie_name(),
            allowed_origins: crate::http::cors::parse_allowed_origins(&config.allowed_origins)
                .map_err(StartError::Config)?,
            public_origin: config.public_origin.clone(),
            listener: Some(listener.health()),
            metrics_on_main: config.metrics_on_main(),
            ui: config.ui_on().then(|| crate::http::ui::UiSettings {
                form_keys: crate::http::ui::form_token::FormKeys::from_server_key(&key),
            }),
        },
        metrics: Arc::clone(&metrics),
    });
    // A cell made above and set only here: this cannot fail.
    let _ = served.set(Arc::clone(&app));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = serve(
        listener,
        permits,
        metrics_listener.map(|listener| (listener, metrics_permits)),
        Arc::clone(&stop),
    )?;
    let janitor = spawn_janitor(Arc::clone(&auth), Arc::clone(&stop), config.sweep_interval)?;
    let bell = Arc::clone(auth.bell());
    let courier = match courier {
        Some(mut courier) => {
            if config.delivery_settings.links_to_listener {
                courier.link_to(addr);
            }
            courier.count_with(Arc::clone(&metrics));
            let (auth, stop) = (auth, Arc::clone(&stop));
            Some(
                thread::Builder::new()
                    .name("delivery".to_owned())
                    .spawn(move || delivery::work(auth, courier, stop))?,
            )
        }
        None => None,
    };
    Ok(Running {
        addr,
        metrics_addr,
        stop,
        thread: Some(thread),
        janitor: Some(janitor),
        courier,
        bell,
        store,
        app,
        control: None,
        certificate,
    })
}

/// Opens the store, migrating an older format first and saying so.
/// Whether the store is opened before the listener binds: an embedded
/// store that already holds files (its lock may be another process's). A
/// new one, and a database (which no process holds), are opened after.
fn opens_before_binding(config: &Config) -> bool {
    config.database_url.is_none()
        && std::fs::read_dir(&config.data_dir).is_ok_and(|mut entries| entries.next().is_some())
}

fn open_migrated(config: &Config) -> Result<AnyStore, StartError> {
    let location = config.location();
    let store = AnyStore::open(&location, Upgrade::Inspect)?;
    let pending = store
        .pending_migrations()
        .map_err(|e| StartError::Migration(e.to_string()))?;
    if pending.is_empty() {
        return Ok(store);
    }
    for Migration {
        version,
        description,
    } in &pending
    {
        eprintln!("authd: migrating the store {location} to format {version}: {description}");
    }
    let started = Instant::now();
    store
        .migrate()
        .map_err(|e| StartError::Migration(e.to_string()))?;
    eprintln!(
        "authd: store migrated in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(store)
}

/// What every answer over HTTPS carries: browsers that saw authd over
/// HTTPS once never try plain HTTP to it for a year (RFC 6797).
const HSTS: (&str, &str) = ("Strict-Transport-Security", "max-age=31536000");

/// `response` with the [`HSTS`] header when `hsts` (served over HTTPS).
fn over_tls(mut response: tiny_http::ResponseBox, hsts: bool) -> tiny_http::ResponseBox {
    if hsts {
        if let Ok(header) = tiny_http::Header::from_bytes(HSTS.0, HSTS.1) {
            response.add_header(header);
        }
    }
    response
}

/// Requests the `--metrics-addr` listener handles at once: a scrape is
/// one cheap request, and more would only let a flood of them compete
/// with the API for the CPU.
const METRICS_THREADS: usize = 2;
/// Connections the `--metrics-addr` listener keeps open at once (and per
/// client address): a few scrapers.
const METRICS_CONNECTIONS: usize = 16;

/// The edge limits of the main listener, from `config`.
fn edge_limits(config: &Config) -> tiny_http::Limits {
    let edge = config.edge;
    tiny_http::Limits {
        max_head_bytes: MAX_HEAD_BYTES,
        max_body_bytes: config.max_body_bytes,
        header_timeout: edge.header_timeout,
        body_timeout: edge.body_timeout,
        body_idle_timeout: edge.body_idle_timeout,
        keepalive_timeout: edge.keepalive_timeout,
        // A client that does not take its answer gets as long as it had to
        // send its body.
        write_timeout: edge.body_timeout,
        max_connections: edge.max_connections,
        max_connections_per_ip: edge.max_connections_per_ip,
    }
}

/// The edge limits of the `--metrics-addr` listener: the main one's
/// timeouts, few connections, and no body worth reading (a scrape is a
/// `GET`).
fn metrics_limits(config: &Config) -> tiny_http::Limits {
    let connections = METRICS_CONNECTIONS.min(config.edge.max_connections);
    tiny_http::Limits {
        max_body_bytes: 1024,
        max_connections: connections,
        max_connections_per_ip: connections,
        ..edge_limits(config)
    }
}

/// Binds `addr` with `limits` and `handler`, serving HTTPS with `tls`
/// when given.
fn listen(
    addr: &str,
    limits: tiny_http::Limits,
    handler: tiny_http::Handler,
    tls: Option<Arc<tiny_http::tls::ServerConfig>>,
) -> Result<tiny_http::Server, StartError> {
    let bind_error = |reason: String| StartError::Bind {
        addr: addr.to_owned(),
        reason,
    };
    let listener = bind(addr).map_err(|e| bind_error(e.to_string()))?;
    let hsts = tls.is_some();
    let edge_response = edge::edge_response();
    let hooks = tiny_http::Hooks {
        edge_response: Arc::new(move |status, message| {
            over_tls(edge_response(status, message), hsts)
        }),
        log: Arc::new(|line| eprintln!("authd: {line}")),
        handler: Some(handler),
    };
    match tls {
        Some(tls) => tiny_http::Server::from_listener_tls(listener, tls, limits, hooks),
        None => tiny_http::Server::from_listener_with(listener, None, limits, hooks),
    }
    .map_err(|e| bind_error(e.to_string()))
}

/// Connections the kernel completes and queues before authd accepts them.
/// std's `TcpListener::bind` asks for 128, which a burst of new
/// connections (a load balancer warming up, a test opening hundreds)
/// overflows while the accept loop starts their threads: the kernel then
/// drops their SYNs and clients wait a second for the retry. The kernel
/// caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` (HOST:PORT; the first of its addresses that binds) with
/// [`LISTEN_BACKLOG`] and `SO_REUSEADDR`, as std does.
fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = None;
    for addr in std::net::ToSocketAddrs::to_socket_addrs(addr)? {
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok(socket.into())
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// The thread that stops serving: once `stop` is set it stops accepting
/// and waits (at most [`GRACE`]) for the requests being handled.
/// The `--metrics-addr` listener, when there is one, stops with the main
/// one.
fn serve(
    listener: tiny_http::Server,
    permits: Arc<Permits>,
    metrics: Option<(tiny_http::Server, Arc<Permits>)>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("serve".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(POLL);
            }
            // With the handler on the connections' threads nothing is queued.
            drop(listener.shutdown());
            if let Some((listener, permits)) = metrics {
                drop(listener.shutdown());
                // A scrape in flight is not worth waiting for.
                let _ = permits.close(POLL);
            }
            if !permits.close(GRACE) {
                eprintln!("authd: in-flight requests did not finish in {GRACE:?}; stopping anyway");
            }
        })
}

/// Which of the application's entry points a listener calls.
#[derive(Debug, Clone, Copy)]
enum Handle {
    /// The API ([`App::handle`]).
    Main,
    /// `/metrics` only ([`App::handle_metrics_listener`]).
    Metrics,
}

/// The request handler of the listener: on the connection's own thread,
/// once its body is read, within one of the `--threads` permits; `hsts`
/// when serving HTTPS.
fn handler(
    app: Arc<OnceLock<Arc<App>>>,
    permits: Arc<Permits>,
    hsts: bool,
    handle: Handle,
) -> tiny_http::Handler {
    Arc::new(move |request| {
        let refusal = match (app.get(), permits.acquire()) {
            (Some(app), Some(_permit)) => return answer(app, request, hsts, handle),
            // Bound, but the application is not set yet (a moment at start).
            (None, _) => "the server is starting, retry shortly",
            (_, None) => "the server is stopping",
        };
        let refused =
            crate::http::with_common_headers(ApiError::Unavailable(refusal).into_response());
        let _ = request.respond(over_tls(edge::outgoing(refused), hsts));
    })
}

/// Answers one request. A panic (there should be none: the request path
/// denies `unwrap` and friends) becomes a JSON 500 and leaves the handler
/// thread alive.
fn answer(app: &App, mut request: tiny_http::Request, hsts: bool, handle: Handle) {
    let incoming = edge::incoming(&mut request);
    let response = catch_unwind(AssertUnwindSafe(|| match handle {
        Handle::Main => app.handle(&incoming),
        Handle::Metrics => app.handle_metrics_listener(&incoming),
    }))
    .unwrap_or_else(|_| {
        crate::http::with_common_headers(
            ApiError::Internal("a request handler panicked".to_owned()).into_response(),
        )
    });
    let _ = request.respond(over_tls(edge::outgoing(response), hsts));
}

/// Every `interval`, removes expired sessions and reset tokens from the
/// store and stale entries from the throttles, until `stop` is set.
fn spawn_janitor(
    auth: Arc<Auth>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("janitor".to_owned())
        .spawn(move || {
            // An interval too long to add to an Instant means never.
            let later = || Instant::now().checked_add(interval);
            let mut next = later();
            while !stop.load(Ordering::SeqCst) {
                if next.is_none_or(|next| Instant::now() < next) {
                    thread::sleep(POLL.min(interval));
                    continue;
                }
                next = later();
                match auth.sweep_expired() {
                    Ok((0, 0)) => {}
                    Ok((sessions, tokens)) => eprintln!(
                        "authd: removed {sessions} expired sessions and {tokens} expired one-time tokens"
                    ),
                    Err(e) => eprintln!("authd: sweeping expired sessions and tokens failed: {e}"),
                }
            }
        })
}

impl Running {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the `--metrics-addr` listener bound, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The certificate served over HTTPS (`None` over plain HTTP), to
    /// re-read it on SIGHUP.
    pub fn certificate(&self) -> Option<crate::tls::Certificate> {
        self.certificate.clone()
    }

    /// The flag that stops the server when set; for signal handlers.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The application, for its counters.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The store, for inspection in tests and tools.
    pub fn store(&self) -> &dyn RequestStore {
        self.app.auth.store()
    }

    /// The store as the admin commands see it, for inspection in tests.
    pub fn any_store(&self) -> &AnyStore {
        &self.store
    }

    /// Serves admin commands on the Unix socket `path` (the embedded
    /// store's: call it only while this server holds the store, so a
    /// socket file already there is a stale one, replaced). The socket is
    /// removed when the server stops.
    pub fn serve_control(
        &mut self,
        path: &std::path::Path,
        runner: Arc<dyn control::Runner>,
    ) -> std::io::Result<()> {
        self.control = Some(control::listener::start(path, runner)?);
        Ok(())
    }

    /// Blocks until the stop flag is set and the server has stopped (or the
    /// grace period for in-flight requests is over), then flushes the store.
    pub fn wait(mut self) -> Result<(), StoreError> {
        if let Some(thread) = self.thread.take() {
            // It ends once stopped, after at most GRACE for requests in
            // flight; it does not panic, and if it did, the store is still
            // flushed below, which is all that matters now.
            let _ = thread.join();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(listener) = self.control.take() {
            listener.stop();
        }
        self.bell.ring();
        for worker in [self.janitor.take(), self.courier.take()]
            .into_iter()
            .flatten()
        {
            let _ = worker.join();
        }
        self.store.flush()
    }

    /// Stops accepting requests, waits for those in flight, flushes.
    pub fn stop(self) -> Result<(), StoreError> {
        self.stop.store(true, Ordering::SeqCst);
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in [self.thread.take(), self.janitor.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}
