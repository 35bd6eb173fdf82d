//! What one connection may cost the server, and how the server speaks
//! when it answers on its own (fork addition, see PATCHES.md).
//!
//! Upstream tiny_http reads heads and bodies without bounds in size or
//! time, spawns a thread per connection without bound, and answers its own
//! errors with empty bodies. Every number here bounds one of those.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{Header, Response, ResponseBox, StatusCode};

/// Bounds on requests and connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line and headers), enforced while
    /// reading: past it the server answers 431 and closes.
    pub max_head_bytes: usize,
    /// Largest request body. A larger declared `Content-Length` is answered
    /// 413 from the headers alone; a chunked body that grows past it is
    /// answered 413 as soon as it does. Either way the connection closes.
    pub max_body_bytes: usize,
    /// Time for a whole request head, from its first byte (from the accept
    /// for a connection's first request).
    pub header_timeout: Duration,
    /// Time for a whole request body.
    pub body_timeout: Duration,
    /// Longest silence while a body is being read.
    pub body_idle_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request.
    pub keepalive_timeout: Duration,
    /// Longest wait for the client to take part of an answer.
    pub write_timeout: Duration,
    /// Connections open at once; over it, new ones get 503 and are closed.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_ip: 256,
        }
    }
}

/// Builds the answers the server writes itself (400, 408, 413, 417, 431,
/// 501, 503, 505), from a status and a short message.
pub type EdgeResponder = Arc<dyn Fn(StatusCode, &str) -> ResponseBox + Send + Sync>;

/// Receives the server's own log lines (accept errors, spawn failures).
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// Answers a request on the connection's own thread (see [`Hooks::handler`]).
pub type Handler = Arc<dyn Fn(crate::Request) + Send + Sync>;

/// How the server answers and logs on its own.
#[derive(Clone)]
pub struct Hooks {
    /// Renders the server's own answers.
    pub edge_response: EdgeResponder,
    /// Where the server's own log lines go.
    pub log: Logger,
    /// When set, each request is answered by calling this on its
    /// connection's thread, right after its body is read, instead of being
    /// queued for [`crate::Server::recv`]: no hand-over between threads per
    /// request (the handler must respond, or drop the request for a 500).
    pub handler: Option<Handler>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            edge_response: Arc::new(|status, message| {
                let mut response =
                    Response::from_string(message.to_owned()).with_status_code(status);
                if let Ok(header) = Header::from_bytes("Content-Type", "text/plain; charset=utf-8")
                {
                    response.add_header(header);
                }
                response.boxed()
            }),
            log: Arc::new(|line| log::error!("{}", line)),
            handler: None,
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// Whether the server is accepting connections; false while accepting
/// fails (out of file descriptors, say) and it retries. Cheap to clone and
/// to ask, for a health check.
#[derive(Debug, Clone)]
pub struct ListenerHealth(pub(crate) Arc<AtomicBool>);

impl ListenerHealth {
    pub fn is_accepting(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
