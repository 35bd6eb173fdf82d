//! The server's lifecycle: open the store, bind, serve, stop cleanly.
//!
//! [`start`] is used both by `authd serve` and by the integration tests,
//! which run the real server in-process on port 0 with a fresh store.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::auth::{Auth, AuthError};
use crate::config::{Config, Profile};
use crate::delivery;
use crate::hasher::Hasher;
use crate::http::error::ApiError;
use crate::http::limits::Limits;
use crate::http::{edge, App, Settings, MAX_HEAD_BYTES};
use crate::store::{AnyStore, OpenError, StoreError, UserStore};

/// How often the accept loop looks at the stop flag.
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
    #[error("cannot read the throttle key from the store: {0}")]
    ThrottleKey(StoreError),
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Stops the handlers once the stop flag is set.
    thread: Option<JoinHandle<()>>,
    janitor: Option<JoinHandle<()>>,
    /// The reset-token delivery worker, when a channel is set.
    courier: Option<JoinHandle<()>>,
    store: AnyStore,
    app: Arc<App>,
}

/// Opens the store and starts serving `config` on a background thread.
///
/// The store is opened before the socket is bound, so a second server on
/// the same data directory fails on the store, with the clearer message.
pub fn start(config: &Config) -> Result<Running, StartError> {
    config.validate().map_err(StartError::Config)?;
    let store = AnyStore::open(&config.location())?;
    let hasher = Hasher::start(config.hash_workers, config.hash_queue(), config.bcrypt_cost)?;
    let auth = Auth::new(
        store.shared(),
        hasher,
        config.lifetimes,
        config.password_policy,
    )?;
    let listener = listen(config)?;
    let addr = listener
        .server_addr()
        .to_ip()
        .ok_or_else(|| StartError::Config("not a TCP address".to_owned()))?;
    let (outbox, inbox) = delivery::queue();
    let app = Arc::new(App {
        auth,
        limits: Limits::with(
            config.limits,
            store.throttle_secret().map_err(StartError::ThrottleKey)?,
            &|scope, rule| store.limiter(scope, rule),
        ),
        audit: Audit::new(config.audit_log),
        settings: Settings {
            max_body_bytes: config.max_body_bytes,
            // `__Host-` cookies must be Secure: production always is.
            secure_cookies: config.secure_cookies || config.profile == Profile::Production,
            access_log: config.access_log,
            client_ip_header: config.client_ip_header.clone(),
            profile: config.profile,
            cookie_name: config.cookie_name(),
            allowed_origins: config.allowed_origins.clone(),
            outbox: config.reset_delivery.as_ref().map(|_| outbox),
            listener: Some(listener.health()),
        },
    });
    let stop = Arc::new(AtomicBool::new(false));
    let thread = serve(
        listener,
        Arc::clone(&app),
        Arc::clone(&stop),
        config.threads.max(1),
    )?;
    let janitor = spawn_janitor(Arc::clone(&app), Arc::clone(&stop), config.sweep_interval)?;
    let courier = match &config.reset_delivery {
        Some(channel) => {
            let (app, channel, stop) = (Arc::clone(&app), channel.clone(), Arc::clone(&stop));
            Some(
                thread::Builder::new()
                    .name("delivery".to_owned())
                    .spawn(move || delivery::work(app, channel, inbox, stop))?,
            )
        }
        None => None,
    };
    Ok(Running {
        addr,
        stop,
        thread: Some(thread),
        janitor: Some(janitor),
        courier,
        store,
        app,
    })
}

/// Binds the listener with the edge limits of `config`.
fn listen(config: &Config) -> Result<tiny_http::Server, StartError> {
    let bind_error = |reason: String| StartError::Bind {
        addr: config.addr.clone(),
        reason,
    };
    let listener = bind(&config.addr).map_err(|e| bind_error(e.to_string()))?;
    let edge = config.edge;
    let limits = tiny_http::Limits {
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
    };
    let hooks = tiny_http::Hooks {
        edge_response: edge::edge_response(),
        log: Arc::new(|line| eprintln!("authd: {line}")),
    };
    tiny_http::Server::from_listener_with(listener, None, limits, hooks)
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

/// Starts `threads` request handlers on `listener`'s requests, and the
/// thread that stops them: once `stop` is set it stops accepting, answers
/// what was queued, and waits for the handlers to finish.
fn serve(
    listener: tiny_http::Server,
    app: Arc<App>,
    stop: Arc<AtomicBool>,
    threads: usize,
) -> std::io::Result<JoinHandle<()>> {
    let listener = Arc::new(listener);
    let mut handlers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (listener, app) = (Arc::clone(&listener), Arc::clone(&app));
        handlers.push(
            thread::Builder::new()
                .name("http".to_owned())
                // `recv` fails only when unblocked, at the stop.
                .spawn(move || {
                    while let Ok(request) = listener.recv() {
                        answer(&app, request);
                    }
                })?,
        );
    }
    thread::Builder::new()
        .name("serve".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(POLL);
            }
            for request in listener.shutdown() {
                answer(&app, request);
            }
            for _ in &handlers {
                listener.unblock();
            }
            for handler in handlers {
                let _ = handler.join();
            }
        })
}

/// Answers one request. A panic (there should be none: the request path
/// denies `unwrap` and friends) becomes a JSON 500 and leaves the handler
/// thread alive.
fn answer(app: &App, mut request: tiny_http::Request) {
    let incoming = edge::incoming(&mut request);
    let response = catch_unwind(AssertUnwindSafe(|| app.handle(&incoming))).unwrap_or_else(|_| {
        crate::http::with_common_headers(
            ApiError::Internal("a request handler panicked".to_owned()).into_response(),
        )
    });
    let _ = request.respond(edge::outgoing(response));
}

/// Every `interval`, removes expired sessions and reset tokens from the
/// store and stale entries from the throttles, until `stop` is set.
fn spawn_janitor(
    app: Arc<App>,
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
                if let Err(e) = app.limits.sweep() {
                    eprintln!("authd: sweeping throttle entries failed: {e}");
                }
                match app.auth.sweep_expired() {
                    Ok((0, 0)) => {}
                    Ok((sessions, resets)) => eprintln!(
                        "authd: removed {sessions} expired sessions and {resets} expired reset tokens"
                    ),
                    Err(e) => eprintln!("authd: sweeping expired tokens failed: {e}"),
                }
            }
        })
}

impl Running {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    pub fn store(&self) -> &dyn UserStore {
        &*self.store
    }

    /// Blocks until the stop flag is set and the server has stopped (or the
    /// grace period for in-flight requests is over), then flushes the store.
    pub fn wait(mut self) -> Result<(), StoreError> {
        let mut stopping_since = None;
        while let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                // The accept thread does not panic; if it did, the store is
                // still flushed below, which is all that matters now.
                let _ = thread.join();
                break;
            }
            if self.stop.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GRACE {
                    eprintln!(
                        "authd: in-flight requests did not finish in {GRACE:?}; stopping anyway"
                    );
                    break;
                }
            }
            self.thread = Some(thread);
            thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::SeqCst);
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
