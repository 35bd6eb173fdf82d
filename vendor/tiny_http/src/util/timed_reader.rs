//! Reads from a socket within a deadline and an idle limit (fork addition).
//!
//! Upstream reads with no timeout at all, so a client that stops sending
//! holds its connection's thread, and a request it started, forever.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Shortest timeout handed to the socket: a zero timeout means "none".
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A socket whose reads fail with `TimedOut` once the deadline has passed
/// or no byte came for `idle`.
///
/// The socket's own timeout is changed only when a read needs a shorter
/// one, or when it fired before the budget was spent: a client that sends
/// its requests whole costs no extra system call per request.
pub(crate) struct TimedReader {
    conn: Connection,
    deadline: Option<Instant>,
    idle: Duration,
    /// The socket's current receive timeout.
    armed: Option<Duration>,
}

impl TimedReader {
    pub(crate) fn new(conn: Connection) -> TimedReader {
        TimedReader {
            conn,
            deadline: None,
            idle: Duration::from_secs(10),
            armed: None,
        }
    }

    /// Reads from now on must end by `deadline` (if any), and each waits
    /// at most `idle` for its first byte.
    pub(crate) fn set_budget(&mut self, deadline: Option<Instant>, idle: Duration) {
        self.deadline = deadline;
        self.idle = idle;
    }

    pub(crate) fn get_ref(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn get_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(ErrorKind::TimedOut, "the client took too long")
}

impl Read for TimedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let mut wait = self.idle.saturating_sub(now - started);
            if let Some(deadline) = self.deadline {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            if wait.is_zero() {
                return Err(timed_out());
            }
            let wait = wait.max(MIN_WAIT);
            if self.armed.is_none_or(|armed| armed > wait) {
                self.conn.set_read_timeout(Some(wait))?;
                self.armed = Some(wait);
            }
            match self.conn.read(buf) {
                // The socket's timeout fired. It may have been shorter than
                // what is left (set for an earlier, tighter budget): look
                // again with the exact remainder.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.armed = None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// Writes go straight to the socket, each bounded by the socket's own
/// write timeout (set once per connection): TLS writes its records
/// through here.
impl Write for TimedReader {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.conn.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TimedReader) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, TimedReader::new(Connection::from(server)))
    }

    #[test]
    fn a_silent_client_times_out_after_idle() {
        let (_client, mut reader) = pair();
        reader.set_budget(None, Duration::from_millis(50));
        let started = Instant::now();
        let err = reader.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_trickling_client_meets_the_deadline() {
        let (mut client, mut reader) = pair();
        let trickle = std::thread::spawn(move || {
            for _ in 0..40 {
                if client.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // Each byte comes well within the idle limit, but the whole
        // exchange may not last past the deadline.
        reader.set_budget(
            Some(Instant::now() + Duration::from_millis(100)),
            Duration::from_millis(80),
        );
        let mut got = 0;
        let err = loop {
            match reader.read(&mut [0; 8]) {
                Ok(0) => panic!("unexpected end"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(got > 0 && got < 40, "read {got} bytes");
        drop(reader);
        trickle.join().unwrap();
    }

    #[test]
    fn data_that_is_there_is_read_without_waiting() {
        let (mut client, mut reader) = pair();
        client.write_all(b"hello").unwrap();
        reader.set_budget(None, Duration::from_secs(5));
        let mut buf = [0; 5];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }
}
