//! The server's lifecycle: open the store, bind, serve, stop cleanly.
//!
//! [`start`] is used both by `authd serve` and by the integration tests,
//! which run the real server in-process on port 0 with a fresh store.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::auth::{Auth, AuthError};
use crate::config::Config;
use crate::hasher::Hasher;
use crate::http::{App, Settings};
use crate::store::{OpenError, SledStore, StoreError};

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
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    store: SledStore,
    app: Arc<App>,
}

/// Opens the store and starts serving `config` on a background thread.
///
/// The store is opened before the socket is bound, so a second server on
/// the same data directory fails on the store, with the clearer message.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let store = SledStore::open(&config.data_dir)?;
    let hasher = Hasher::start(config.hash_workers, config.hash_queue(), config.bcrypt_cost)?;
    let auth = Auth::new(Arc::new(store.clone()), hasher)?;
    let app = Arc::new(App {
        auth,
        settings: Settings {
            max_body_bytes: config.max_body_bytes,
            secure_cookies: config.secure_cookies,
            access_log: config.access_log,
        },
    });
    let handler_app = Arc::clone(&app);
    let server = rouille::Server::new(&config.addr, move |request| handler_app.handle(request))
        .map_err(|e| StartError::Bind {
            addr: config.addr.clone(),
            reason: e.to_string(),
        })?
        .pool_size(config.threads.max(1));
    let addr = server.server_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = thread::Builder::new()
        .name("accept".to_owned())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                server.poll_timeout(POLL);
            }
            // Let requests already being handled finish; the listening
            // socket closes when `server` is dropped here.
            server.join();
        })?;
    Ok(Running {
        addr,
        stop,
        thread: Some(thread),
        store,
        app,
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
    pub fn store(&self) -> &SledStore {
        &self.store
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
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
