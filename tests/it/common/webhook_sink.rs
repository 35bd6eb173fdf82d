//! An HTTP(S) receiver for webhook tests: records each request (headers
//! and body) and answers the status the test chose, or a redirect; plus a
//! Standard Webhooks signature verifier written from the specification,
//! independently of authd's signing code.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::test_ca::{read_line, Acceptor, Stream, TestCa};

const MAX_CONNECTIONS: usize = 8;
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the sink answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// A 302 to this URL.
    Redirect(String),
}

struct Shared {
    requests: Mutex<Vec<Request>>,
    answer: Mutex<Answer>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

pub struct WebhookSink {
    acceptor: Acceptor,
    shared: Arc<Shared>,
    ca: TestCa,
}

impl WebhookSink {
    /// A plain HTTP sink.
    pub fn http() -> WebhookSink {
        Self::start(false)
    }

    /// An HTTPS sink with a certificate from its own test CA.
    pub fn https() -> WebhookSink {
        Self::start(true)
    }

    fn start(tls: bool) -> WebhookSink {
        let ca = TestCa::new();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            answer: Mutex::new(Answer::Status(204)),
            tls: tls.then(|| ca.server_config()),
        });
        let serving = Arc::clone(&shared);
        let acceptor = Acceptor::start(
            MAX_CONNECTIONS,
            move |stream| {
                let _ = serve(stream, &serving);
            },
            drop,
        );
        WebhookSink {
            acceptor,
            shared,
            ca,
        }
    }

    /// `scheme://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.acceptor.addr())
    }

    pub fn ca_file(&self) -> &std::path::Path {
        self.ca.ca_file()
    }

    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// One request per connection, answered with `Connection: close`.
fn serve(tcp: TcpStream, shared: &Shared) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = Stream::Plain(tcp);
    if let Some(tls) = &shared.tls {
        stream = stream.into_tls(Arc::clone(tls))?;
    }
    let Some(request_line) = read_line(&mut stream)? else {
        return Ok(());
    };
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    while let Some(line) = read_line(&mut stream)? {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_BODY)];
    stream.read_exact(&mut body)?;
    // Recorded before answering, so a test that got the answer finds it.
    shared.requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let answer = shared.answer.lock().unwrap().clone();
    let head = match answer {
        Answer::Status(status) => format!("HTTP/1.1 {status} Sink\r\n"),
        Answer::Redirect(location) => format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\n"),
    };
    stream.write_all(head.as_bytes())?;
    stream.write_all(b"Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    if let Stream::Tls(tls) = &mut stream {
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
    Ok(())
}

/// Checks a request's Standard Webhooks signature as a receiver would:
/// the three headers present, the timestamp within `tolerance_secs` of
/// `now_secs`, and one of the space-separated `v1,` signatures equal to
/// the HMAC-SHA256 of `{id}.{timestamp}.{body}` under the key that
/// `secret` (`whsec_` + base64) holds.
pub fn verify_signature(
    secret: &str,
    request: &Request,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), String> {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").ok_or("no whsec_ prefix")?)
        .map_err(|e| e.to_string())?;
    let id = request.header("webhook-id").ok_or("no webhook-id")?;
    let timestamp = request
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let signatures = request
        .header("webhook-signature")
        .ok_or("no webhook-signature")?;
    let ts: i64 = timestamp.parse().map_err(|_| "timestamp not a number")?;
    if (now_secs - ts).abs() > tolerance_secs {
        return Err(format!("timestamp {ts} too far from {now_secs}"));
    }
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = BASE64.decode(encoded) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(&signed);
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches".to_owned())
}
