//! One client connection, served by its own thread (rewritten in the fork,
//! see PATCHES.md).
//!
//! The connection's thread reads a whole request, head and body, within
//! the size and time limits, hands it to the handler (called right here
//! when the server has one, `Hooks::handler`, else through the server's
//! queue), takes the handler's answer and writes it, and only then reads
//! the next request. So a slow or hostile client costs its own connection
//! and thread, never a handler: handlers get requests whose bodies are
//! already in memory and never write to a socket. Pipelined requests are
//! answered one at a time in order; at most one answer per connection is
//! ever outstanding.
//!
//! Whatever breaks the rules (RFC 9112) is answered here, through the
//! server's [`Hooks`], and the connection is closed.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::str::FromStr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunked_transfer::Decoder;

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::connection::Connection;
use crate::limits::{Hooks, Limits};
use crate::request::{Reply, Sink};
use crate::util::TimedReader;
use crate::{Request, TlsSetup};

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 8 * 1024;
/// How long a refused connection is read from (and thrown away) after its
/// answer, so that closing it does not reset the answer away before the
/// client has read it.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes thrown away while lingering.
const LINGER_BYTES: u64 = 64 * 1024;

/// The bytes of a connection: the socket itself, or TLS over it. Either
/// way every read from the socket is a [`TimedReader`]'s, within the
/// budget the connection's thread sets, TLS handshake included.
enum Transport {
    Plain(TimedReader),
    #[cfg(feature = "ssl-rustls")]
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TimedReader>>),
}

impl Transport {
    fn timed(&mut self) -> &mut TimedReader {
        match self {
            Transport::Plain(timed) => timed,
            #[cfg(feature = "ssl-rustls")]
            Transport::Tls(stream) => &mut stream.sock,
        }
    }

    fn socket(&self) -> &Connection {
        match self {
            Transport::Plain(timed) => timed.get_ref(),
            #[cfg(feature = "ssl-rustls")]
            Transport::Tls(stream) => stream.sock.get_ref(),
        }
    }

    fn is_tls(&self) -> bool {
        !matches!(self, Transport::Plain(_))
    }

    /// Completes the TLS handshake (nothing to do in plain text), within
    /// the budget already set: a client that never sends its hello is cut
    /// off like one that never sends its head.
    fn handshake(&mut self) -> io::Result<()> {
        #[cfg(feature = "ssl-rustls")]
        if let Transport::Tls(stream) = self {
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock)?;
            }
        }
        Ok(())
    }

    /// Says that no more will be written (TLS: `close_notify`), then
    /// stops sending on the socket.
    fn close_write(&mut self) {
        #[cfg(feature = "ssl-rustls")]
        if let Transport::Tls(stream) = self {
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(timed) => timed.read(buf),
            #[cfg(feature = "ssl-rustls")]
            Transport::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(timed) => timed.get_mut().write(buf),
            #[cfg(feature = "ssl-rustls")]
            Transport::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(timed) => timed.get_mut().flush(),
            #[cfg(feature = "ssl-rustls")]
            Transport::Tls(stream) => stream.flush(),
        }
    }
}

/// An upgraded TLS connection, handed over whole: the TLS state cannot be
/// split into a reader and a writer on two descriptors.
#[cfg(feature = "ssl-rustls")]
struct Upgraded(BufReader<Transport>);

#[cfg(feature = "ssl-rustls")]
impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

#[cfg(feature = "ssl-rustls")]
impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

/// A client connection and what it may cost.
pub(crate) struct ClientConnection {
    /// The socket (or TLS over it), read through a buffer and written
    /// directly: one file descriptor per connection (the connection cap
    /// counts on it).
    reader: BufReader<Transport>,
    remote_addr: Option<SocketAddr>,
    limits: Arc<Limits>,
    hooks: Hooks,
    accepted: Instant,
    first: bool,
    replies: (Sender<Reply>, Receiver<Reply>),
}

/// Why no request came out of the connection.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// Close without a word: the client left, or stayed idle too long.
    Silent,
    /// Answer this, then close.
    Answer(u16, String),
}

impl Refusal {
    fn answer(status: u16, message: impl Into<String>) -> Refusal {
        Refusal::Answer(status, message.into())
    }
}

/// How a request's body is framed (RFC 9112, section 6).
#[derive(Debug, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
struct Head {
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
}

impl ClientConnection {
    pub(crate) fn new(
        conn: Connection,
        remote_addr: Option<SocketAddr>,
        tls: Option<&TlsSetup>,
        limits: Arc<Limits>,
        hooks: Hooks,
    ) -> io::Result<ClientConnection> {
        conn.set_write_timeout(Some(limits.write_timeout.max(Duration::from_millis(1))))?;
        let timed = TimedReader::new(conn);
        let transport = match tls {
            None => Transport::Plain(timed),
            #[cfg(feature = "ssl-rustls")]
            Some(config) => {
                let session =
                    rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
                Transport::Tls(Box::new(rustls::StreamOwned::new(session, timed)))
            }
            #[cfg(not(feature = "ssl-rustls"))]
            Some(never) => match *never {},
        };
        Ok(ClientConnection {
            reader: BufReader::with_capacity(READ_BUFFER, transport),
            remote_addr,
            limits,
            hooks,
            accepted: Instant::now(),
            first: true,
            replies: channel(),
        })
    }

    /// Serves requests until the connection ends. `dispatch` queues a
    /// request for the handlers and says whether it could (not when the
    /// server is stopping).
    pub(crate) fn serve(mut self, dispatch: &dyn Fn(Request) -> bool) {
        // The handshake spends the first request's head budget: from the
        // accept, the client has the head timeout for both.
        let timeout = self.limits.header_timeout;
        let deadline = self.accepted + timeout;
        self.timed().set_budget(Some(deadline), timeout);
        if self.reader.get_mut().handshake().is_err() {
            return;
        }
        loop {
            let (request, last) = match self.read_request() {
                Ok(next) => next,
                Err(Refusal::Silent) => return,
                Err(Refusal::Answer(status, message)) => {
                    self.refuse(status, &message);
                    return;
                }
            };
            if !dispatch(request) {
                self.refuse(503, "the server is stopping");
                return;
            }
            match self.replies.1.recv() {
                Ok(Reply::Answer { bytes, close }) => {
                    if self.write(&bytes).is_err() || close || last {
                        return;
                    }
                }
                Ok(Reply::Upgrade { bytes, take }) => {
                    #[cfg(feature = "ssl-rustls")]
                    if self.reader.get_ref().is_tls() {
                        if self.write(&bytes).is_ok() {
                            let _ = self.reader.get_ref().socket().set_read_timeout(None);
                            let _ = take.send(Box::new(Upgraded(self.reader)));
                        }
                        return;
                    }
                    // The one place a second descriptor is needed: the
                    // stream handed over reads and writes on its own.
                    if self.write(&bytes).is_ok() {
                        let conn = self.reader.get_ref().socket();
                        let _ = conn.set_read_timeout(None);
                        if let Ok(writer) = conn.try_clone() {
                            let stream = crate::util::CustomStream::new(self.reader, writer);
                            let _ = take.send(Box::new(stream));
                        }
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Reads the next request whole. The flag says whether it is the last
    /// one on this connection.
    fn read_request(&mut self) -> Result<(Request, bool), Refusal> {
        let limits = Arc::clone(&self.limits);
        // The wait for a request's first byte: a new connection has the
        // head timeout from its accept, a kept-alive one the idle timeout.
        if self.first {
            let deadline = self.accepted + limits.header_timeout;
            self.timed()
                .set_budget(Some(deadline), limits.header_timeout);
        } else {
            self.timed().set_budget(None, limits.keepalive_timeout);
            match self.reader.fill_buf() {
                Ok([]) | Err(_) => return Err(Refusal::Silent),
                Ok(_) => {}
            }
            let deadline = Instant::now() + limits.header_timeout;
            self.timed()
                .set_budget(Some(deadline), limits.header_timeout);
        }
        self.first = false;
        let head = read_head(&mut self.reader, limits.max_head_bytes)?;
        let head = parse_head(&head)?;
        if head.version > (1, 1) {
            return Err(Refusal::answer(
                505,
                "only HTTP/1.0 and HTTP/1.1 are served",
            ));
        }
        let framing = framing(&head.headers)?;
        if let Framing::Length(n) = framing {
            if n > limits.max_body_bytes as u64 {
                return Err(Refusal::answer(
                    413,
                    format!(
                        "request body is larger than {} bytes",
                        limits.max_body_bytes
                    ),
                ));
            }
        }
        let expects_continue = match find(&head.headers, "Expect") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            Some(_) => {
                return Err(Refusal::answer(
                    417,
                    "only Expect: 100-continue is understood",
                ))
            }
        };
        // RFC 9110, 15.2: no 1xx answer to an HTTP/1.0 client.
        let has_body = framing != Framing::None && framing != Framing::Length(0);
        if expects_continue && has_body && head.version >= (1, 1) {
            let continue_line: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.write(continue_line).is_err() {
                return Err(Refusal::Silent);
            }
        }
        let deadline = Instant::now() + limits.body_timeout;
        self.timed()
            .set_budget(Some(deadline), limits.body_idle_timeout);
        let body = match framing {
            Framing::None | Framing::Length(0) => Vec::new(),
            Framing::Length(n) => read_exact_body(&mut self.reader, n as usize)?,
            Framing::Chunked => read_chunked_body(&mut self.reader, limits.max_body_bytes)?,
        };
        let last = is_last(&head);
        let body_length = match framing {
            Framing::Length(n) => Some(n as usize),
            _ => None,
        };
        let request = crate::request::new_request(
            self.secure(),
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            body,
            body_length,
            Sink::Reply(self.replies.0.clone()),
        );
        Ok((request, last))
    }

    /// Writes all of `bytes` to the client, each write within the write
    /// timeout.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let transport = self.reader.get_mut();
        transport.write_all(bytes)?;
        // TLS buffers what it encrypts: send all of it now.
        transport.flush()
    }

    fn secure(&self) -> bool {
        self.reader.get_ref().is_tls()
    }

    fn timed(&mut self) -> &mut TimedReader {
        self.reader.get_mut().timed()
    }

    /// Answers `status` with `message`, then closes: stops sending, reads
    /// (and drops) what the client still sends for a moment, so that the
    /// close does not reset the answer away.
    fn refuse(mut self, status: u16, message: &str) {
        let bytes = render(&self.hooks, status, message, &[]);
        if self.write(&bytes).is_err() {
            return;
        }
        self.reader.get_mut().close_write();
        self.timed()
            .set_budget(Some(Instant::now() + LINGER), LINGER);
        let _ = io::copy(&mut self.reader.take(LINGER_BYTES), &mut io::sink());
    }
}

/// The bytes of the server's own answer: the hooks' rendering of `status`
/// and `message`, with `Connection: close` and `extra` headers.
pub(crate) fn render(hooks: &Hooks, status: u16, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut response = (hooks.edge_response)(StatusCode(status), message);
    for (name, value) in [("Connection", "close")].iter().chain(extra) {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let mut bytes = Vec::with_capacity(512);
    let _ = response.raw_print(&mut bytes, HTTPVersion(1, 1), &[], false, None);
    bytes
}

/// Reads a request head, through the blank line that ends it, refusing it
/// (431) as soon as it is longer than `max` bytes. Empty lines before the
/// request line are skipped (RFC 9112, section 2.2).
fn read_head<R: BufRead>(reader: &mut R, max: usize) -> Result<Vec<u8>, Refusal> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::TimedOut && !head.is_empty() => {
                return Err(Refusal::answer(
                    408,
                    "the request head did not arrive in time",
                ));
            }
            Err(_) => return Err(Refusal::Silent),
        };
        if buf.is_empty() {
            return Err(Refusal::Silent);
        }
        let before = head.len();
        let take = buf.len().min(max + 1 - before);
        head.extend_from_slice(&buf[..take]);
        // Leading empty lines.
        let blank = head
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            head.drain(..blank);
        }
        let from = before.saturating_sub(blank).saturating_sub(3);
        if let Some(at) = find_bytes(&head[from..], b"\r\n\r\n") {
            let end = from + at + 4;
            // What of this read belongs to the head; the rest stays for the body.
            let used = take - (head.len() - end);
            head.truncate(end);
            reader.consume(used);
            return Ok(head);
        }
        reader.consume(take);
        if head.len() > max {
            return Err(Refusal::answer(
                431,
                format!("request headers are larger than {max} bytes"),
            ));
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a head read by [`read_head`]. Lines end in CRLF; a bare CR or LF,
/// a NUL, a non-ASCII byte or a folded line (obsolete, RFC 9112 section
/// 5.2) refuses the request.
fn parse_head(head: &[u8]) -> Result<Head, Refusal> {
    let bad = |what: &str| Refusal::answer(400, format!("malformed request: {what}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("non-ASCII bytes in the head"))?;
    if !text.is_ascii() {
        return Err(bad("non-ASCII bytes in the head"));
    }
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| bad("unterminated head"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut headers = Vec::new();
    for line in lines {
        if line.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("stray line break or NUL in a header"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(bad("folded header line"));
        }
        match Header::from_str(line) {
            Ok(header) if !header.field.as_str().as_str().is_empty() => headers.push(header),
            _ => return Err(bad("invalid header line")),
        }
    }
    if request_line
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(bad("stray line break or NUL in the request line"));
    }
    let (method, path, version) =
        parse_request_line(request_line.trim()).ok_or_else(|| bad("invalid request line"))?;
    Ok(Head {
        method,
        path,
        version,
        headers,
    })
}

/// The first value of header `name`.
fn find<'a>(headers: &'a [Header], name: &'static str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// How the body is framed, refusing what RFC 9112 (section 6) says must
/// not be guessed at: `Content-Length` values that disagree or are not
/// numbers (400), `Transfer-Encoding` together with `Content-Length`
/// (400), and any transfer coding but `chunked` (501).
fn framing(headers: &[Header]) -> Result<Framing, Refusal> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    for header in headers {
        if header.field.equiv("Content-Length") {
            for value in header.value.as_str().split(',') {
                let value = value.trim();
                let n = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                    value.parse::<u64>().ok()
                } else {
                    None
                };
                let n = n.ok_or_else(|| Refusal::answer(400, "invalid Content-Length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(Refusal::answer(400, "conflicting Content-Length headers"));
                }
                length = Some(n);
            }
        } else if header.field.equiv("Transfer-Encoding") {
            codings.extend(
                header
                    .value
                    .as_str()
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        }
    }
    let has_te = headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));
    match (length, has_te) {
        (Some(_), true) => Err(Refusal::answer(
            400,
            "Transfer-Encoding and Content-Length together",
        )),
        (_, true) if codings == ["chunked"] => Ok(Framing::Chunked),
        (_, true) => Err(Refusal::answer(
            501,
            "only the chunked transfer coding is supported",
        )),
        (Some(n), false) => Ok(Framing::Length(n)),
        (None, false) => Ok(Framing::None),
    }
}

/// Whether the connection ends after this request (`Connection: close`, an
/// upgrade, or HTTP/1.0 without keep-alive).
fn is_last(head: &Head) -> bool {
    let connection = find(&head.headers, "Connection").map(|v| v.to_ascii_lowercase());
    match connection {
        Some(ref v) if v.contains("close") || v.contains("upgrade") => true,
        Some(ref v) if !v.contains("keep-alive") && head.version == (1, 0) => true,
        None if head.version == (1, 0) => true,
        _ => false,
    }
}

/// Maps a failed body read: too slow is 408, a client gone is silence.
fn body_error(e: io::Error) -> Refusal {
    match e.kind() {
        ErrorKind::TimedOut => Refusal::answer(408, "the request body did not arrive in time"),
        ErrorKind::InvalidInput | ErrorKind::InvalidData => {
            Refusal::answer(400, "malformed chunked body")
        }
        _ => Refusal::Silent,
    }
}

/// Reads exactly `n` bytes (`n` is within the body limit already).
fn read_exact_body<R: Read>(reader: &mut R, n: usize) -> Result<Vec<u8>, Refusal> {
    let mut body = Vec::with_capacity(n);
    reader
        .take(n as u64)
        .read_to_end(&mut body)
        .map_err(body_error)?;
    if body.len() < n {
        return Err(Refusal::answer(
            400,
            "the request body is shorter than its Content-Length",
        ));
    }
    Ok(body)
}

/// Decodes a chunked body, refusing it (413) once it is longer than `max`
/// bytes, or once its encoding (chunk sizes, extensions) is much longer.
fn read_chunked_body<R: BufRead>(reader: &mut R, max: usize) -> Result<Vec<u8>, Refusal> {
    let too_large = || Refusal::answer(413, format!("request body is larger than {max} bytes"));
    let raw_cap = (max as u64).saturating_mul(2).saturating_add(4096);
    let mut raw = reader.take(raw_cap);
    let mut decoder = Decoder::new(&mut raw);
    let mut body = Vec::new();
    let result = (&mut decoder).take(max as u64 + 1).read_to_end(&mut body);
    let unfinished = decoder.remaining_chunks_size().is_some_and(|n| n > 0);
    let raw_used_up = raw.limit() == 0;
    match result {
        _ if body.len() > max => Err(too_large()),
        _ if raw_used_up => Err(too_large()),
        Err(e) => Err(body_error(e)),
        // The source ended inside a chunk: the client is gone.
        Ok(_) if unfinished => Err(Refusal::Silent),
        Ok(_) => Ok(body),
    }
}

/// Parses "HTTP/1.1".
fn parse_http_version(version: &str) -> Option<HTTPVersion> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return None,
    };
    Some(HTTPVersion(major, minor))
}

/// Parses the request line, e.g. `GET / HTTP/1.1`.
fn parse_request_line(line: &str) -> Option<(Method, String, HTTPVersion)> {
    let mut parts = line.split(' ');
    let method = parts.next().and_then(|w| w.parse().ok())?;
    let path = parts.next().filter(|p| !p.is_empty())?.to_owned();
    let version = parts.next().and_then(parse_http_version)?;
    Some((method, path, version))
}

#[cfg(test)]
mod test {
    use super::*;
    use std::io::Cursor;

    fn headers(list: &[(&str, &str)]) -> Vec<Header> {
        list.iter()
            .map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = parse_request_line("GET /hello HTTP/1.1").unwrap();
        assert!(method == Method::Get);
        assert!(path == "/hello");
        assert!(ver == HTTPVersion(1, 1));
        assert!(parse_request_line("GET /hello").is_none());
        assert!(parse_request_line("qsd qsd qsd").is_none());
    }

    #[test]
    fn heads_are_cut_at_the_limit_while_reading() {
        // An endless header line: refused once past the limit, having read
        // at most the limit and one buffer more.
        let endless = b"GET / HTTP/1.1\r\nX: ".chain(std::io::repeat(b'a'));
        let mut source = BufReader::with_capacity(1024, endless);
        let err = read_head(&mut source, 16 * 1024).unwrap_err();
        assert!(matches!(err, Refusal::Answer(431, _)), "{err:?}");
    }

    #[test]
    fn a_head_leaves_the_body_unread() {
        let mut source = BufReader::new(Cursor::new(
            b"\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET".to_vec(),
        ));
        let head = read_head(&mut source, 1024).unwrap();
        assert_eq!(head, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        let mut rest = String::new();
        source.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "abcGET");
        // The terminator may straddle two reads.
        let mut source =
            BufReader::with_capacity(2, Cursor::new(b"GET / HTTP/1.1\r\n\r\nx".to_vec()));
        assert_eq!(
            read_head(&mut source, 1024).unwrap(),
            b"GET / HTTP/1.1\r\n\r\n"
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for head in [
            &b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GARBAGE\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(head), Err(Refusal::Answer(400, _))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |list: &[(&str, &str)]| framing(&headers(list));
        assert_eq!(f(&[]).unwrap(), Framing::None);
        assert_eq!(f(&[("Content-Length", "12")]).unwrap(), Framing::Length(12));
        assert_eq!(
            f(&[("Content-Length", "12"), ("content-length", "12, 12")]).unwrap(),
            Framing::Length(12)
        );
        assert_eq!(
            f(&[("Transfer-Encoding", "Chunked")]).unwrap(),
            Framing::Chunked
        );
        let status = |r: Result<Framing, Refusal>| match r {
            Err(Refusal::Answer(status, _)) => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            status(f(&[("Content-Length", "1"), ("Content-Length", "2")])),
            400
        );
        assert_eq!(status(f(&[("Content-Length", "-1")])), 400);
        assert_eq!(status(f(&[("Content-Length", "+1")])), 400);
        assert_eq!(status(f(&[("Content-Length", "")])), 400);
        assert_eq!(
            status(f(&[("Content-Length", "99999999999999999999999")])),
            400
        );
        assert_eq!(
            status(f(&[
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "3")
            ])),
            400
        );
        assert_eq!(status(f(&[("Transfer-Encoding", "gzip")])), 501);
        assert_eq!(status(f(&[("Transfer-Encoding", "gzip, chunked")])), 501);
        assert_eq!(status(f(&[("Transfer-Encoding", "chunked, chunked")])), 501);
    }

    #[test]
    fn chunked_bodies_are_bounded() {
        let read = |raw: &[u8], max| read_chunked_body(&mut BufReader::new(raw), max);
        assert_eq!(read(b"3\r\nabc\r\n0\r\n\r\n", 10).unwrap(), b"abc");
        assert!(matches!(
            read(b"b\r\nabcdefghijk\r\n0\r\n\r\n", 10),
            Err(Refusal::Answer(413, _))
        ));
        // Chunk extensions cannot stretch the encoding without bound.
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', 100_000));
        assert!(matches!(read(&long, 10), Err(Refusal::Answer(413, _))));
        assert!(matches!(read(b"zz\r\n", 10), Err(Refusal::Answer(400, _))));
        // The client left inside a chunk.
        assert_eq!(read(b"5\r\nab", 10).unwrap_err(), Refusal::Silent);
    }

    #[test]
    fn exact_bodies_must_be_whole() {
        let mut source = Cursor::new(b"abcdef".to_vec());
        assert_eq!(read_exact_body(&mut source, 3).unwrap(), b"abc");
        let mut short = Cursor::new(b"ab".to_vec());
        assert!(matches!(
            read_exact_body(&mut short, 3),
            Err(Refusal::Answer(400, _))
        ));
    }
}
