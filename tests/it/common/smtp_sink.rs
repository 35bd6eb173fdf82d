//! A small SMTP server on 127.0.0.1 that records what it receives: enough
//! of RFC 5321 (EHLO/HELO, STARTTLS, AUTH PLAIN and LOGIN, MAIL, RCPT,
//! DATA with dot-unstuffing, RSET, NOOP, QUIT) to test authd's SMTP
//! transport against a real conversation, TLS included.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::test_ca::{read_line, Acceptor, Stream, TestCa};

/// Connections served at once; more are answered 421 and closed.
const MAX_CONNECTIONS: usize = 8;

/// How the sink behaves.
#[derive(Clone, Default)]
pub struct SinkOptions {
    /// Offer STARTTLS (with the test CA's certificate).
    pub starttls: bool,
    /// TLS from the first byte (smtps).
    pub implicit_tls: bool,
    /// Require AUTH with this user and password before MAIL.
    pub auth: Option<(String, String)>,
    /// Answer every RCPT with this line (e.g. "451 4.3.0 try later").
    pub rcpt_reply: Option<String>,
}

/// One message accepted with DATA.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent, dot-unstuffed, lines joined with CRLF.
    pub data: String,
    pub tls: bool,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

#[derive(Default)]
struct Log {
    received: Vec<Received>,
    /// Every command line in order ("EHLO x", "MAIL FROM:<..>"), AUTH
    /// payload lines excluded.
    commands: Vec<String>,
    auth_failures: usize,
}

struct Shared {
    log: Mutex<Log>,
    changed: Condvar,
    options: SinkOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
}

pub struct SmtpSink {
    acceptor: Acceptor,
    shared: Arc<Shared>,
    ca: TestCa,
}

impl SmtpSink {
    pub fn start(options: SinkOptions) -> SmtpSink {
        let ca = TestCa::new();
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            changed: Condvar::new(),
            tls: (options.starttls || options.implicit_tls).then(|| ca.server_config()),
            options,
        });
        let serving = Arc::clone(&shared);
        let acceptor = Acceptor::start(
            MAX_CONNECTIONS,
            move |stream| {
                let _ = serve(stream, &serving);
            },
            |mut stream| {
                let _ = stream.write_all(b"421 too many connections\r\n");
            },
        );
        SmtpSink {
            acceptor,
            shared,
            ca,
        }
    }

    pub fn port(&self) -> u16 {
        self.acceptor.addr().port()
    }

    /// The CA that signed the sink's certificate (for `127.0.0.1` and
    /// `localhost`).
    pub fn ca_file(&self) -> &std::path::Path {
        self.ca.ca_file()
    }

    /// Waits until `n` messages were received (or `timeout` passed) and
    /// returns all received so far.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log.lock().unwrap();
        while log.received.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            log = self.shared.changed.wait_timeout(log, left).unwrap().0;
        }
        log.received.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().received.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().commands.clone()
    }

    pub fn auth_failures(&self) -> usize {
        self.shared.log.lock().unwrap().auth_failures
    }
}

/// Per-connection state.
struct Session {
    from: Option<String>,
    to: Vec<String>,
    user: Option<String>,
}

fn reply(stream: &mut Stream, line: &str) -> std::io::Result<()> {
    stream.write_all(line.as_bytes())?;
    stream.write_all(b"\r\n")?;
    stream.flush()
}

fn serve(tcp: TcpStream, shared: &Shared) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let options = &shared.options;
    let mut stream = Stream::Plain(tcp);
    if options.implicit_tls {
        stream = stream.into_tls(shared.tls.clone().unwrap())?;
    }
    reply(&mut stream, "220 sink.test ESMTP ready")?;
    let mut session = Session {
        from: None,
        to: Vec::new(),
        user: None,
    };
    while let Some(line) = read_line(&mut stream)? {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default().to_owned();
        let logged = if verb == "AUTH" {
            upper.split(' ').take(2).collect::<Vec<_>>().join(" ")
        } else {
            line.clone()
        };
        shared.log.lock().unwrap().commands.push(logged);
        match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["250-sink.test".to_owned()];
                if options.starttls && !stream.is_tls() {
                    lines.push("250-STARTTLS".to_owned());
                }
                if options.auth.is_some() {
                    lines.push("250-AUTH PLAIN LOGIN".to_owned());
                }
                lines.push("250 8BITMIME".to_owned());
                reply(&mut stream, &lines.join("\r\n"))?;
            }
            "HELO" => reply(&mut stream, "250 sink.test")?,
            "STARTTLS" if options.starttls && !stream.is_tls() => {
                reply(&mut stream, "220 2.0.0 go ahead")?;
                stream = stream.into_tls(shared.tls.clone().unwrap())?;
                session = Session {
                    from: None,
                    to: Vec::new(),
                    user: None,
                };
            }
            "AUTH" => {
                let Some((user, password)) = &options.auth else {
                    reply(&mut stream, "502 5.5.1 no AUTH here")?;
                    continue;
                };
                let given = authenticate(&mut stream, &upper, &line)?;
                match given {
                    Some((u, p)) if &u == user && &p == password => {
                        session.user = Some(u);
                        reply(&mut stream, "235 2.7.0 authenticated")?;
                    }
                    Some(_) => {
                        shared.log.lock().unwrap().auth_failures += 1;
                        reply(&mut stream, "535 5.7.8 authentication credentials invalid")?;
                    }
                    None => reply(&mut stream, "501 5.5.2 cannot decode")?,
                }
            }
            "MAIL" => {
                if options.auth.is_some() && session.user.is_none() {
                    reply(&mut stream, "530 5.7.0 authentication required")?;
                    continue;
                }
                session.from = Some(address(&line));
                session.to.clear();
                reply(&mut stream, "250 2.1.0 ok")?;
            }
            "RCPT" => {
                if session.from.is_none() {
                    reply(&mut stream, "503 5.5.1 MAIL first")?;
                } else if let Some(line) = &options.rcpt_reply {
                    reply(&mut stream, line)?;
                } else {
                    session.to.push(address(&line));
                    reply(&mut stream, "250 2.1.5 ok")?;
                }
            }
            "DATA" => {
                if session.to.is_empty() {
                    reply(&mut stream, "503 5.5.1 RCPT first")?;
                    continue;
                }
                reply(&mut stream, "354 end with <CRLF>.<CRLF>")?;
                let mut lines = Vec::new();
                loop {
                    let Some(line) = read_line(&mut stream)? else {
                        return Ok(());
                    };
                    if line == "." {
                        break;
                    }
                    lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
                }
                let received = Received {
                    from: session.from.take().unwrap_or_default(),
                    to: std::mem::take(&mut session.to),
                    data: lines.join("\r\n"),
                    tls: stream.is_tls(),
                    user: session.user.clone(),
                };
                {
                    let mut log = shared.log.lock().unwrap();
                    log.received.push(received);
                    shared.changed.notify_all();
                }
                reply(&mut stream, "250 2.0.0 queued")?;
            }
            "RSET" => {
                session.from = None;
                session.to.clear();
                reply(&mut stream, "250 2.0.0 ok")?;
            }
            "NOOP" => reply(&mut stream, "250 2.0.0 ok")?,
            "QUIT" => {
                reply(&mut stream, "221 2.0.0 bye")?;
                return Ok(());
            }
            _ => reply(&mut stream, "502 5.5.2 not implemented")?,
        }
    }
    Ok(())
}

/// The address between `<` and `>` in a MAIL or RCPT line.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_owned()
}

/// Runs AUTH PLAIN or LOGIN; the (user, password) the client gave.
fn authenticate(
    stream: &mut Stream,
    upper: &str,
    line: &str,
) -> std::io::Result<Option<(String, String)>> {
    let decode = |s: &str| {
        BASE64
            .decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let mut words = line.split(' ').skip(2);
    if upper.starts_with("AUTH PLAIN") {
        let payload = match words.next() {
            Some(initial) => initial.to_owned(),
            None => {
                reply(stream, "334 ")?;
                read_line(stream)?.unwrap_or_default()
            }
        };
        // authzid NUL authcid NUL password
        let Some(plain) = decode(&payload) else {
            return Ok(None);
        };
        let parts: Vec<&str> = plain.split('\0').collect();
        return Ok(match parts.as_slice() {
            [_, user, password] => Some(((*user).to_owned(), (*password).to_owned())),
            _ => None,
        });
    }
    if upper.starts_with("AUTH LOGIN") {
        let user = match words.next() {
            Some(initial) => decode(initial),
            None => {
                reply(stream, "334 VXNlcm5hbWU6")?;
                decode(&read_line(stream)?.unwrap_or_default())
            }
        };
        reply(stream, "334 UGFzc3dvcmQ6")?;
        let password = decode(&read_line(stream)?.unwrap_or_default());
        return Ok(user.zip(password));
    }
    Ok(None)
}
