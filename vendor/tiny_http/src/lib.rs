//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(feature = "ssl-openssl")]
compile_error!(
    "this fork of tiny_http serves HTTPS with rustls only (feature ssl-rustls): see vendor/tiny_http/PATCHES.md"
);

use std::error::Error;
use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use connection::Connection;
use util::{ConnectionTable, MessagesQueue};

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use limits::{EdgeResponder, Handler, Hooks, Limits, ListenerHealth, Logger};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod accept;
mod client;
mod common;
mod connection;
mod limits;
mod request;
mod response;
mod test;
#[cfg(feature = "ssl-rustls")]
pub mod tls;
mod util;

/// What a connection needs to speak TLS (fork): a rustls configuration,
/// whose certificate resolver may be swapped while the server runs
/// ([`tls::SwappableCert`]). Without the feature there is none.
#[cfg(feature = "ssl-rustls")]
pub(crate) type TlsSetup = Arc<rustls::ServerConfig>;
#[cfg(not(feature = "ssl-rustls"))]
pub(crate) type TlsSetup = std::convert::Infallible;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Request>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // false while accepting fails (fork)
    accepting: Arc<AtomicBool>,

    // the open connections (fork)
    connections: ConnectionTable,
}

// this trait is to make sure that Server implements Share and Send
const _: () = {
    const fn must_be_share<T: Sync + Send>() {}
    must_be_share::<Server>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,

    /// What one connection may cost (fork).
    pub limits: Limits,

    /// How the server answers and logs on its own (fork).
    pub hooks: Hooks,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
            limits: Limits::default(),
            hooks: Hooks::default(),
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(feature = "ssl-rustls")]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
            limits: Limits::default(),
            hooks: Hooks::default(),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
            limits: Limits::default(),
            hooks: Hooks::default(),
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener_with(listener, config.ssl, config.limits, config.hooks)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with(listener, ssl_config, Limits::default(), Hooks::default())
    }

    /// [`Server::from_listener`] with limits and hooks (fork). An
    /// `ssl_config` (PEM certificate and key) serves HTTPS with a fixed
    /// certificate; see [`Server::from_listener_tls`] for one that can
    /// change.
    pub fn from_listener_with<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
        hooks: Hooks,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let tls = match ssl_config {
            None => None,
            #[cfg(feature = "ssl-rustls")]
            Some(ssl) => Some(tls::from_ssl_config(&ssl)?),
            #[cfg(not(feature = "ssl-rustls"))]
            Some(_) => {
                return Err("this tiny_http was built without HTTPS (feature ssl-rustls)".into())
            }
        };
        Self::start(listener.into(), tls, limits, hooks)
    }

    /// Serves HTTPS with `tls` on `listener` (fork): each connection's
    /// thread does the handshake within the head timeout. Build `tls` with
    /// [`tls::server_config`] and a [`tls::SwappableCert`] to replace the
    /// certificate while serving.
    #[cfg(feature = "ssl-rustls")]
    pub fn from_listener_tls<L: Into<Listener>>(
        listener: L,
        tls: Arc<rustls::ServerConfig>,
        limits: Limits,
        hooks: Hooks,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener.into(), Some(tls), limits, hooks)
    }

    fn start(
        listener: Listener,
        tls: Option<TlsSetup>,
        limits: Limits,
        hooks: Hooks,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let local_addr = listener.local_addr()?;
        log::debug!("Server listening on {}", local_addr);
        let close = Arc::new(AtomicBool::new(false));
        let messages = MessagesQueue::with_capacity(8);
        let accepting = Arc::new(AtomicBool::new(true));
        let connections =
            ConnectionTable::new(limits.max_connections, limits.max_connections_per_ip);
        let accept = accept::Acceptor {
            listener,
            close: Arc::clone(&close),
            messages: Arc::clone(&messages),
            accepting: Arc::clone(&accepting),
            connections: connections.clone(),
            limits: Arc::new(limits),
            hooks,
            tls,
        };
        thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || accept.run())?;
        Ok(Server {
            messages,
            close,
            listening_addr: local_addr,
            accepting,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.connections.open()
    }

    /// Whether connections are being accepted; false while accepting fails
    /// (out of file descriptors, say) and the server retries (fork).
    pub fn health(&self) -> ListenerHealth {
        ListenerHealth(Arc::clone(&self.accepting))
    }

    /// Stops accepting and queueing requests, and returns the requests
    /// queued but not yet taken, for the caller to answer (fork: a graceful
    /// stop answers everything it accepted).
    pub fn shutdown(&self) -> Vec<Request> {
        let first = !self.close.swap(true, Ordering::SeqCst);
        let left = self.messages.close();
        if first {
            self.unblock_accept();
        }
        left
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(rq) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        Ok(self.messages.pop_timeout(timeout))
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        Ok(self.messages.try_pop())
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Server {
    /// Connects briefly to ourselves to wake the accept thread, which then
    /// sees the close flag.
    fn unblock_accept(&self) {
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => match addr.as_pathname() {
                Some(path) => std::os::unix::net::UnixStream::connect(path).map(Connection::from),
                None => return,
            },
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Requests no handler took are answered (500) as they drop.
        drop(self.shutdown());
    }
}
