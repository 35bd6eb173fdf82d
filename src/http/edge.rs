//! Between the connection layer (the vendored tiny_http) and the routes
//! (rouille's `Request` and `Response`).
//!
//! rouille's own `Server` builds its tiny_http server with no way to pass
//! limits, so authd configures the tiny_http server itself, with a handler
//! that runs on each connection's thread (src/server.rs), and crosses over
//! here: [`incoming`] turns a request,
//! whose body the connection's thread has already read within the limits,
//! into a rouille `Request`; [`outgoing`] turns the answer back. The answers
//! tiny_http writes on its own (413, 431, 503 over the connection cap...)
//! come from [`edge_response`], through the same JSON error writer and
//! common headers as every other answer.

use std::net::SocketAddr;
use std::sync::Arc;

use rouille::{Request, Response};

use super::error::ApiError;

/// Where a request from a Unix socket (no peer address) seems to come from.
const NO_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The rouille request for `request`. Its body is in memory already, so
/// this only moves bytes. (`fake_http_from` is rouille's one public
/// constructor from parts; despite its name it builds an ordinary request.)
pub fn incoming(request: &mut tiny_http::Request) -> Request {
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0));
    // Reading from memory cannot fail.
    let _ = request.as_reader().read_to_end(&mut body);
    let headers = request
        .headers()
        .iter()
        .map(|h| (h.field.to_string(), h.value.to_string()))
        .collect();
    Request::fake_http_from(
        request.remote_addr().copied().unwrap_or(NO_PEER),
        request.method().as_str(),
        request.url(),
        headers,
        body,
    )
}

/// The tiny_http response for `response`, as rouille's own server makes it.
pub fn outgoing(response: Response) -> tiny_http::ResponseBox {
    let (data, length) = response.data.into_reader_and_size();
    // Answers are rendered whole before they are sent (the connection's
    // thread writes them), so each gets a Content-Length, never chunks.
    let mut out = tiny_http::Response::empty(response.status_code)
        .with_data(data, length)
        .with_chunked_threshold(usize::MAX);
    for (name, value) in response.headers {
        // tiny_http sets the length itself.
        if name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(header);
        }
    }
    out
}

/// The answers the connection layer writes itself: the JSON error body and
/// the common headers every answer has.
pub fn edge_response() -> tiny_http::EdgeResponder {
    Arc::new(|status, message| {
        let error = ApiError::Edge {
            status: status.0,
            message: message.to_owned(),
        };
        outgoing(super::with_common_headers(error.into_response()))
    })
}
