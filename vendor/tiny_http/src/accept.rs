//! The accept loop (rewritten in the fork, see PATCHES.md).
//!
//! Upstream's loop ended at the first accept error (out of file
//! descriptors, say), leaving a live process with no listener, and a failed
//! thread start panicked it. Here nothing ends the loop but the server's
//! drop: errors are logged once per burst and retried with a growing pause,
//! and connections over the caps are answered 503 and closed at once.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::client::{render, ClientConnection};
use crate::connection::{Connection, Listener};
use crate::limits::{Hooks, Limits};
use crate::util::{ConnectionTable, MessagesQueue, TaskPool};
use crate::{Request, TlsSetup};

/// First pause after a failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

pub(crate) struct Acceptor {
    pub(crate) listener: Listener,
    pub(crate) close: Arc<AtomicBool>,
    pub(crate) messages: Arc<MessagesQueue<Request>>,
    pub(crate) accepting: Arc<AtomicBool>,
    pub(crate) connections: ConnectionTable,
    pub(crate) limits: Arc<Limits>,
    pub(crate) hooks: Hooks,
    /// HTTPS: each connection's thread does the handshake (fork).
    pub(crate) tls: Option<TlsSetup>,
}

/// A run of failures of one kind: logged when it starts and when it ends,
/// with a pause after each failure that grows while they last.
#[derive(Default)]
pub(crate) struct Burst {
    failures: u64,
    pause: Duration,
}

impl Burst {
    /// Counts a failure; returns how long to pause.
    pub(crate) fn failed(
        &mut self,
        log: &dyn Fn(&str),
        what: &str,
        error: &dyn std::fmt::Display,
    ) -> Duration {
        if self.failures == 0 {
            log(&format!(
                "{what} failed: {error}; retrying with pauses (logged once until it recovers)"
            ));
        }
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        self.pause
    }

    /// Ends the run, if there was one.
    pub(crate) fn recovered(&mut self, log: &dyn Fn(&str), what: &str) {
        if self.failures > 0 {
            log(&format!(
                "{what} works again after {} failures",
                self.failures
            ));
            *self = Burst::default();
        }
    }
}

impl Acceptor {
    pub(crate) fn run(self) {
        let pool = TaskPool::new();
        let log = |line: &str| (self.hooks.log)(line);
        let mut accept_errors = Burst::default();
        let mut spawn_errors = Burst::default();
        while !self.close.load(Ordering::SeqCst) {
            let (conn, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    if self.close.load(Ordering::SeqCst) {
                        break;
                    }
                    self.accepting.store(false, Ordering::SeqCst);
                    thread::sleep(accept_errors.failed(&log, "accepting a connection", &e));
                    continue;
                }
            };
            if self.close.load(Ordering::SeqCst) {
                break;
            }
            let Some(slot) = self.connections.admit(peer.map(|p| p.ip())) else {
                refuse(conn, &self.hooks, self.tls.is_some());
                continue;
            };
            let client = match ClientConnection::new(
                conn,
                peer,
                self.tls.as_ref(),
                Arc::clone(&self.limits),
                self.hooks.clone(),
            ) {
                Ok(client) => client,
                // The socket could not be set up: a failure of the same kind
                // as a failed accept.
                Err(e) => {
                    self.accepting.store(false, Ordering::SeqCst);
                    thread::sleep(accept_errors.failed(&log, "setting up a connection", &e));
                    continue;
                }
            };
            accept_errors.recovered(&log, "accepting connections");
            self.accepting.store(true, Ordering::SeqCst);
            let messages = Arc::clone(&self.messages);
            let (handler, close) = (self.hooks.handler.clone(), Arc::clone(&self.close));
            let mut task = Some((client, slot));
            let started = pool.spawn(Box::new(move || {
                if let Some((client, _slot)) = task.take() {
                    match &handler {
                        // A stopped server answers no new request.
                        Some(handler) => client.serve(&|request| {
                            if close.load(Ordering::SeqCst) {
                                return false;
                            }
                            handler(request);
                            true
                        }),
                        None => client.serve(&|request| messages.push(request).is_ok()),
                    }
                }
            }));
            match started {
                Ok(()) => spawn_errors.recovered(&log, "starting connection threads"),
                // The connection waits for a thread that frees up; new ones
                // wait in the listen queue meanwhile.
                Err(e) => {
                    thread::sleep(spawn_errors.failed(&log, "starting a connection thread", &e))
                }
            }
        }
        log::debug!("Terminating accept thread");
    }
}

/// Answers a connection over the caps with 503 and closes it, without
/// blocking the accept loop: one non-blocking write (a fresh socket's send
/// buffer always has room), then whatever the client sent already is read
/// so that the close does not reset the answer away. Over TLS there is no
/// answer, only the close: an answer would need a handshake, which is the
/// very cost the cap refuses (and the accept loop must not wait for).
fn refuse(conn: Connection, hooks: &Hooks, tls: bool) {
    let mut conn = conn;
    if conn.set_nonblocking(true).is_err() {
        return;
    }
    if !tls {
        let bytes = render(hooks, 503, "too many connections", &[("Retry-After", "1")]);
        let _ = conn.write(&bytes);
    }
    let _ = conn.shutdown(Shutdown::Write);
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        match conn.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_burst_is_logged_once_and_pauses_grow_to_a_cap() {
        let lines = Mutex::new(Vec::new());
        let log = |line: &str| lines.lock().unwrap().push(line.to_owned());
        let mut burst = Burst::default();
        let pauses: Vec<Duration> = (0..10)
            .map(|_| burst.failed(&log, "accepting", &"Too many open files"))
            .collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        burst.recovered(&log, "accepting");
        burst.recovered(&log, "accepting");
        let lines = lines.into_inner().unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("Too many open files"));
        assert!(lines[1].contains("after 10 failures"));
        assert_eq!(burst.pause, Duration::ZERO);
    }
}
