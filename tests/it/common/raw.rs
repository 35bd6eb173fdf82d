//! The suite's one HTTP/1.1 client, raw on `TcpStream`, and its one answer
//! type, [`Answer`]: [`TestApp`] and [`Client`] (a server process) send
//! their requests through [`call`], and the tests that must control or see
//! the bytes on the wire use the same pieces directly: attacks on the HTTP
//! edge (`edge`), byte-exact answers (`compat`), the edge's own answers
//! checked against the OpenAPI document (`openapi`), and malformed requests
//! (`hostile`).
//!
//! What is read is parsed strictly: a status line of HTTP/1.1, every header
//! line with a colon, a UTF-8 head, a body framed by `Transfer-Encoding:
//! chunked`, `Content-Length` or (only once the server has closed) the end
//! of the connection. Failures are `Err(String)` with what was read, so a
//! test may tell a refusal from a cut-off connection; errors from a
//! connection the server ended start with `"closed"`.
//!
//! The session cookie is read and written here only, under the name of the
//! server's profile ([`session_cookie_name`]).
//!
//! [`TestApp`]: super::TestApp

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use authd::config::Profile;

pub const FORM: &str = "application/x-www-form-urlencoded";

/// Longest [`Client`] (and so [`TestApp`](super::TestApp)) waits for an
/// answer.
pub const IO_LIMIT: Duration = Duration::from_secs(30);

/// The session cookie's name in `profile`: `session_id` (the reference's)
/// in dev, `__Host-session_id` in production, as `Config::cookie_name`
/// (src/config.rs) names it. Written out here, so that a renamed cookie
/// fails the tests.
pub fn session_cookie_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Dev => "session_id",
        Profile::Production => "__Host-session_id",
    }
}

/// The value of a `Cookie` header that carries the session `token` to a
/// server of `profile`.
pub fn session_cookie(profile: Profile, token: &str) -> String {
    format!("{}={token}", session_cookie_name(profile))
}

/// The head of an answer: its length in bytes (blank line included), its
/// text, status and header lines.
struct Head {
    len: usize,
    raw: String,
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    /// The head at the start of `bytes`; `Ok(None)` while it is incomplete.
    fn parse(bytes: &[u8]) -> Result<Option<Head>, String> {
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let len = end + 4;
        let raw = std::str::from_utf8(&bytes[..len])
            .map_err(|_| {
                format!(
                    "non-UTF-8 head: {:?}",
                    String::from_utf8_lossy(&bytes[..len])
                )
            })?
            .to_owned();
        let mut lines = raw[..end].split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line in {raw:?}"))?;
        let headers = lines
            .map(|line| {
                line.split_once(':')
                    .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("bad header line {line:?} in {raw:?}"))
            })
            .collect::<Result<Vec<(String, String)>, String>>()?;
        Ok(Some(Head {
            len,
            raw,
            status,
            headers,
        }))
    }
}

/// One complete answer, as it came off the wire.
pub struct Answer {
    pub status: u16,
    /// The status line and headers, through the blank line: what an
    /// interim answer (`100 Continue`) is checked against byte for byte.
    pub raw_head: String,
    /// In the order sent, names as sent, values trimmed; a header sent
    /// twice is here twice (see [`Answer::all`] and [`Answer::only`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes on the wire, head and framed body: how much a client that
    /// never reads leaves in the server's send buffer.
    pub wire: usize,
}

/// The body as text (lossily), so that a failed assertion shows it.
impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("wire", &self.wire)
            .finish()
    }
}

impl Answer {
    /// The first value of header `name`, like [`Reply::header`]; for a
    /// header that must be there once, use [`Answer::only`].
    ///
    /// [`Reply::header`]: super::Reply::header
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name`; fails the test if it is there twice
    /// (where a duplicate is itself a fault, as for a drop-in of Flask).
    pub fn only(&self, name: &str) -> Option<&str> {
        let values = self.all(name);
        assert!(values.len() <= 1, "{name} given twice: {self:?}");
        values.first().copied()
    }

    /// Every value of header `name`, in order: to check that a header is
    /// sent exactly once with exactly one value.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (fails the test if it is not UTF-8): for checks
    /// of the exact bytes of a JSON body.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_else(|_| panic!("body not UTF-8: {self:?}"))
    }

    /// The body as JSON (fails the test with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `message` of a JSON error body (fails the test without one).
    pub fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {self:?}"))
            .to_owned()
    }

    /// The whole first `Set-Cookie` header that sets the cookie `name`,
    /// attributes included: the one place `Set-Cookie` is parsed.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.all("Set-Cookie").into_iter().find(|v| {
            v.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
        })
    }

    /// The value of the cookie `name` that a `Set-Cookie` sets, without
    /// its attributes.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.set_cookie(name)?;
        let value = &header[name.len() + 1..];
        Some(value.split(';').next().unwrap().to_owned())
    }

    /// The session token this answer sets, under the session cookie's name
    /// in `profile`.
    pub fn session_in(&self, profile: Profile) -> Option<String> {
        self.cookie(session_cookie_name(profile))
    }

    /// The session token this answer of a dev-profile server sets (fails
    /// the test without one).
    pub fn session(&self) -> String {
        self.session_in(Profile::Dev)
            .unwrap_or_else(|| panic!("no session_id cookie: {self:?}"))
    }

    /// Parses one answer at the start of `bytes`: `Ok(None)` while it is
    /// incomplete. `closed` says the server has ended the connection, so
    /// that an answer framed by neither `Transfer-Encoding` nor
    /// `Content-Length` is complete (its body is the rest); until then
    /// such an answer is incomplete. 1xx, 204 and 304 answers have no
    /// body (RFC 9112 section 6.3).
    pub fn parse(bytes: &[u8], closed: bool) -> Result<Option<Answer>, String> {
        let Some(Head {
            len: head_len,
            raw: raw_head,
            status,
            headers,
        }) = Head::parse(bytes)?
        else {
            return Ok(None);
        };
        let rest = &bytes[head_len..];
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("Transfer-Encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v);
        let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else if chunked {
            match dechunk(rest).map_err(|e| format!("{e} in {raw_head:?}"))? {
                Some(done) => done,
                None => return Ok(None),
            }
        } else if let Some(length) = length {
            let length: usize = length
                .parse()
                .map_err(|e| format!("bad Content-Length ({e}) in {raw_head:?}"))?;
            match rest.get(..length) {
                Some(body) => (body.to_vec(), length),
                None => return Ok(None),
            }
        } else if closed {
            (rest.to_vec(), rest.len())
        } else {
            return Ok(None);
        };
        Ok(Some(Answer {
            status,
            raw_head,
            headers,
            body,
            wire: head_len + used,
        }))
    }
}

/// Decodes a chunked body at the start of `bytes`; returns the body and
/// the bytes it took (trailer section included), or `None` while it is
/// incomplete.
fn dechunk(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let line_end = |at: usize| {
        bytes[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|n| at + n)
    };
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(end) = line_end(at) else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&bytes[at..end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .map_err(|e| format!("bad chunk size {line:?}: {e}"))?;
        at = end + 2;
        if size == 0 {
            // Trailer lines, if any, up to an empty line.
            loop {
                let Some(end) = line_end(at) else {
                    return Ok(None);
                };
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Ok(Some((body, at)));
                }
            }
        }
        if bytes.len().saturating_sub(at) < size.saturating_add(2) {
            return Ok(None);
        }
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err(format!("no CRLF after a chunk of {size} bytes"));
        }
        body.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

/// A raw client connection, with what it has read and not yet used.
pub struct Raw {
    /// The socket itself, for writes the helpers do not cover (paced, with
    /// a write timeout).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `addr` (fails the test if it cannot).
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::from(TcpStream::connect(addr).unwrap())
    }

    /// Connects to `addr` within `limit`.
    pub fn connect_within(addr: SocketAddr, limit: Duration) -> Result<Raw, String> {
        let stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
        Ok(Raw::from(stream))
    }

    /// A connection made otherwise (see [`connect_with`]).
    pub fn from(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one answer (an interim 1xx one too), for at most `limit`; the
    /// connection may go on (keep-alive, pipelining).
    pub fn answer(&mut self, limit: Duration) -> Result<Answer, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(answer) = self.take(false)? {
                return Ok(answer);
            }
            if let Err(e) = self.fill(deadline) {
                if e.starts_with("closed") {
                    // An answer delimited by the end of the connection.
                    if let Some(answer) = self.take(true)? {
                        return Ok(answer);
                    }
                }
                return Err(e);
            }
        }
    }

    /// Reads until the server closes the connection, for at most `limit`,
    /// and that must be exactly one whole answer: for a server that is to
    /// answer once and close (`Connection: close`, the edge's refusals).
    /// A reset after the answer counts as a close.
    pub fn sole_answer(&mut self, limit: Duration) -> Result<Answer, String> {
        let bytes = self.until_closed(limit)?;
        let answer = Answer::parse(&bytes, true)?.ok_or_else(|| {
            format!(
                "connection closed before a whole answer: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if answer.wire != bytes.len() {
            return Err(format!(
                "bytes after the answer: {:?}",
                String::from_utf8_lossy(&bytes[answer.wire..])
            ));
        }
        Ok(answer)
    }

    /// Reads until the server closes the connection, for at most `limit`;
    /// returns what came before the end (EOF or a reset) and was not yet
    /// taken as an answer.
    pub fn until_closed(&mut self, limit: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.fill(deadline) {
                Ok(()) => {}
                Err(e) if e.starts_with("closed") => return Ok(std::mem::take(&mut self.buf)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the connection is open with nothing to read.
    pub fn is_open_and_quiet(&self) -> bool {
        self.buf.is_empty() && Raw::quiet(&self.stream)
    }

    /// Whether `stream` is open with nothing to read.
    pub fn quiet(stream: &TcpStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        let result = stream.peek(&mut [0; 1]);
        stream.set_nonblocking(false).unwrap();
        matches!(result, Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    /// Takes one whole answer off the buffer, if there is one.
    fn take(&mut self, closed: bool) -> Result<Option<Answer>, String> {
        let answer = Answer::parse(&self.buf, closed)?;
        if let Some(answer) = &answer {
            self.buf.drain(..answer.wire);
        }
        Ok(answer)
    }

    /// One read into the buffer, by `deadline`. Errors start with "closed"
    /// when the server ended the connection.
    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let shown = |buf: &[u8]| String::from_utf8_lossy(buf).into_owned();
        if left.is_zero() {
            return Err(format!("timed out; read so far: {:?}", shown(&self.buf)));
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut scratch = [0u8; 16 * 1024];
        match self.stream.read(&mut scratch) {
            Ok(0) => Err(format!("closed (EOF); read so far: {:?}", shown(&self.buf))),
            Ok(n) => {
                self.buf.extend_from_slice(&scratch[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!("timed out; read so far: {:?}", shown(&self.buf)))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("closed ({e}); read so far: {:?}", shown(&self.buf))),
        }
    }
}

/// The bytes of a request: the request line, `headers` exactly as given
/// and in that order (nothing added: no `Host`, no `Content-Length`), a
/// blank line, `body`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `request` as is on a connection of its own and reads until the
/// server closes it ([`Raw::sole_answer`]), within `limit` for each step.
/// A failed write is ignored: a server may answer and close before it has
/// read everything it was sent (an oversized head), and then the answer is
/// what counts.
pub fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Result<Answer, String> {
    let mut raw = Raw::connect_within(addr, limit)?;
    raw.stream.set_write_timeout(Some(limit)).unwrap();
    let _ = raw.send(request);
    raw.sole_answer(limit)
}

/// `method path` with `headers` and `body` on a connection of its own,
/// with `Host`, `Connection: close` and (when there is a body, and always
/// for POST and PUT) `Content-Length` added; reads until the server closes
/// the connection ([`exchange`]). How [`Client`] and
/// [`TestApp`](super::TestApp) send every request.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
) -> Result<Answer, String> {
    let length = body.len().to_string();
    let mut all = vec![("Host", "localhost"), ("Connection", "close")];
    all.extend_from_slice(headers);
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        all.push(("Content-Length", &length));
    }
    exchange(addr, &request(method, path, &all, body), limit)
}

/// `HEAD path` with `headers` on a connection of its own, with `Host` and
/// `Connection: close` added, read until the server closes it. An answer
/// to HEAD has no body whatever its `Content-Length` says, so its head is
/// parsed alone (strictly, as [`Answer::parse`] does); returns it, with an
/// empty `body`, and the bytes that followed the head (a correct server
/// sends none).
pub fn head(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Result<(Answer, Vec<u8>), String> {
    let mut all = vec![("Host", "localhost"), ("Connection", "close")];
    all.extend_from_slice(headers);
    let mut raw = Raw::connect_within(addr, limit)?;
    raw.stream.set_write_timeout(Some(limit)).unwrap();
    raw.send(&request("HEAD", path, &all, b""))
        .map_err(|e| e.to_string())?;
    let bytes = raw.until_closed(limit)?;
    let Head {
        len: head_len,
        raw: raw_head,
        status,
        headers,
    } = Head::parse(&bytes)?
        .ok_or_else(|| format!("no whole head: {:?}", String::from_utf8_lossy(&bytes)))?;
    let answer = Answer {
        status,
        raw_head,
        headers,
        body: Vec::new(),
        wire: head_len,
    };
    Ok((answer, bytes[head_len..].to_vec()))
}

/// An HTTP client for a server at `base` (`http://127.0.0.1:PORT`) of
/// `profile`; a [`Proc`](super::process::Proc) is one too.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    /// The server's profile, for the name of its session cookie.
    pub server_profile: Profile,
}

impl Client {
    /// The server's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not http://IP:PORT: {}", self.base))
    }

    /// `method path` with exactly `headers` besides those [`call`] adds,
    /// and `body`; an error when no whole answer came (the server died).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, String> {
        call(self.addr(), method, path, headers, body, IO_LIMIT)
    }

    /// Like [`Client::try_request`], failing the test without an answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends the url-encoded `form`, with the session cookie carrying
    /// `session` if given; an error when no whole answer came (the server
    /// died).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        form: &str,
        session: Option<&str>,
    ) -> Result<Answer, String> {
        let cookie = session.map(|token| session_cookie(self.server_profile, token));
        let mut headers = vec![("Content-Type", FORM)];
        if let Some(cookie) = &cookie {
            headers.push(("Cookie", cookie));
        }
        self.try_request(method, path, &headers, form.as_bytes())
    }

    /// Like [`Client::try_send`], failing the test without an answer.
    pub fn send(&self, method: &str, path: &str, form: &str, session: Option<&str>) -> Answer {
        self.try_send(method, path, form, session)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// POSTs a form; returns (status, body).
    pub fn post(&self, path: &str, form: &str) -> (u16, String) {
        let answer = self.send("POST", path, form, None);
        (answer.status, answer.text().to_owned())
    }

    /// Logs in; returns the session token, or the status on failure.
    pub fn log_in(&self, email: &str, password: &str) -> Result<String, u16> {
        let form = format!(
            "email={}&password={}",
            super::urlencode(email),
            super::urlencode(password)
        );
        let answer = self.send("POST", "/sessions", &form, None);
        match answer.session_in(self.server_profile) {
            Some(token) if answer.status == 200 => Ok(token),
            _ => Err(answer.status),
        }
    }

    /// `GET /profile` with `session`; returns the status.
    pub fn profile(&self, session: &str) -> u16 {
        self.send("GET", "/profile", "", Some(session)).status
    }
}

/// `GET path` (`Host: x`, `Connection: close`) on a connection of its own;
/// reads the one answer.
pub fn get(addr: SocketAddr, path: &str, limit: Duration) -> Result<Answer, String> {
    let mut raw = Raw::connect_within(addr, limit)?;
    raw.send(&request(
        "GET",
        path,
        &[("Host", "x"), ("Connection", "close")],
        b"",
    ))
    .map_err(|e| e.to_string())?;
    raw.answer(limit)
}

/// POSTs the url-encoded `form` (`Host: x`, `Connection: close`) on a
/// connection of its own; reads the one answer.
pub fn post_form(
    addr: SocketAddr,
    path: &str,
    form: &str,
    limit: Duration,
) -> Result<Answer, String> {
    let mut raw = Raw::connect_within(addr, limit)?;
    let length = form.len().to_string();
    let headers = [
        ("Host", "x"),
        ("Content-Type", FORM),
        ("Content-Length", length.as_str()),
        ("Connection", "close"),
    ];
    raw.send(&request("POST", path, &headers, form.as_bytes()))
        .map_err(|e| e.to_string())?;
    raw.answer(limit)
}

/// The socket address of a server process, for raw connections.
pub fn addr_of(server: &Client) -> SocketAddr {
    server.addr()
}

/// A TCP connection to `to` from the address `from` (any 127.0.0.x works on
/// Linux loopback), with an optional receive buffer size set before the
/// handshake, within `limit`: for the per-address connection cap, and for
/// a client whose small window stalls the server's writes. std cannot bind
/// a client socket, hence libc.
pub fn connect_with(
    from: Ipv4Addr,
    to: SocketAddr,
    receive_buffer: Option<i32>,
    limit: Duration,
) -> io::Result<TcpStream> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};

    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only: {to}")
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let check = |result: libc::c_int| {
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(result)
        }
    };
    // SAFETY: plain socket calls on a descriptor this function owns (the
    // TcpStream closes it on every path), with pointers to live locals of
    // the sizes given.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        ))?;
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(size) = receive_buffer {
            check(libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            ))?;
        }
        let local = sockaddr(from, 0);
        check(libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        let remote = sockaddr(*to.ip(), to.port());
        let connected = libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len);
        if connected < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
            let mut poll = libc::pollfd {
                fd: stream.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            let millis = limit.as_millis().clamp(1, 60_000) as libc::c_int;
            if check(libc::poll(&mut poll, 1, millis))? == 0 {
                return Err(io::Error::new(ErrorKind::TimedOut, "connect timed out"));
            }
            if let Some(error) = stream.take_error()? {
                return Err(error);
            }
        }
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}
