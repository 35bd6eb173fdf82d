use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use std::sync::mpsc::Sender;

use crate::{HTTPVersion, Header, Method, Response};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// Requests a client pipelines on one connection are handed out one at a
/// time: the next is handed out only once the previous one is answered
/// (fork; upstream handed several out at once and reordered the answers,
/// which let one connection hold a handler per queued request).
///
/// # The body
///
/// The connection's thread has read the whole body, within the server's
/// limits, before the request is handed out (fork): `as_reader` reads it
/// from memory.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // where the answer goes; if empty, the request has been answered
    response_sink: Option<Sink>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,
}

/// What a connection's thread gets back from the handler of its request
/// (fork: handlers never write to the socket themselves).
pub(crate) enum Reply {
    /// The whole answer, and whether the connection must close after it.
    Answer { bytes: Vec<u8>, close: bool },
    /// The answer to an upgrade; the connection's thread then hands the
    /// raw stream over through `take`.
    Upgrade {
        bytes: Vec<u8>,
        take: Sender<Box<dyn ReadWrite + Send>>,
    },
}

/// Where a request's answer goes.
pub(crate) enum Sink {
    /// Back to the connection's thread, which writes it.
    Reply(Sender<Reply>),
    /// Into a writer (test requests).
    Writer(Box<dyn Write + Send + 'static>),
}

/// Collects an answer written through [`Request::into_writer`] and gives it
/// to the connection's thread when dropped.
struct ReplyWriter {
    bytes: Vec<u8>,
    replies: Sender<Reply>,
}

impl Write for ReplyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ReplyWriter {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        let _ = self.replies.send(Reply::Answer { bytes, close: true });
    }
}

/// The stream handed out when an upgrade could not take the connection.
struct Closed;

impl Read for Closed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(ErrorKind::BrokenPipe, "connection closed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds a request whose head has been parsed and whose body has been read
/// whole (fork: the connection's thread reads bodies before handing the
/// request out, within the server's limits).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_request(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    body: Vec<u8>,
    body_length: Option<usize>,
    sink: Sink,
) -> Request {
    Request {
        data_reader: Some(Box::new(Cursor::new(body))),
        response_sink: Some(sink),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length,
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        let stream: Box<dyn ReadWrite + Send> = match self.response_sink.take() {
            Some(Sink::Reply(replies)) => {
                let mut bytes = Vec::new();
                let _ = response.raw_print(
                    &mut bytes,
                    self.http_version.clone(),
                    &self.headers,
                    false,
                    Some(protocol),
                );
                let (take, taken) = std::sync::mpsc::channel();
                let _ = replies.send(Reply::Upgrade { bytes, take });
                taken.recv().unwrap_or_else(|_| Box::new(Closed))
            }
            Some(Sink::Writer(mut writer)) => {
                let _ = response.raw_print(
                    writer.by_ref(),
                    self.http_version.clone(),
                    &self.headers,
                    false,
                    Some(protocol),
                );
                let _ = writer.flush();
                Box::new(crate::util::CustomStream::new(
                    self.extract_reader_impl(),
                    writer,
                ))
            }
            None => Box::new(Closed),
        };
        stream
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// A `100 Continue` the client asked for with `Expect: 100-continue` was
    /// sent by the connection's thread before it read the body (fork).
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        // The connection's thread has read the body already (and sent any
        // `100 Continue` first), so this never touches the socket.
        match self.data_reader {
            Some(ref mut reader) => reader,
            None => self.data_reader.insert(Box::new(io::empty())),
        }
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        self.extract_writer_impl()
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        match self.response_sink.take() {
            Some(Sink::Reply(replies)) => Box::new(ReplyWriter {
                bytes: Vec::new(),
                replies,
            }),
            Some(Sink::Writer(writer)) => writer,
            None => Box::new(Closed),
        }
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        self.data_reader
            .take()
            .unwrap_or_else(|| Box::new(io::empty()))
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let do_not_send_body = self.method == Method::Head;
        match self.response_sink.take() {
            Some(Sink::Reply(replies)) => {
                // A handler asking to close the connection is obeyed
                // (upstream wrote the header and kept the connection).
                let close = response.headers().iter().any(|h| {
                    h.field.equiv("Connection") && h.value.as_str().eq_ignore_ascii_case("close")
                });
                let mut bytes = Vec::with_capacity(512);
                response.raw_print(
                    &mut bytes,
                    self.http_version.clone(),
                    &self.headers,
                    do_not_send_body,
                    None,
                )?;
                // The connection's thread may be gone (the client left):
                // nothing to do about it.
                let _ = replies.send(Reply::Answer { bytes, close });
                Ok(())
            }
            Some(Sink::Writer(mut writer)) => {
                Self::ignore_client_closing_errors(response.raw_print(
                    writer.by_ref(),
                    self.http_version.clone(),
                    &self.headers,
                    do_not_send_body,
                    None,
                ))?;
                Self::ignore_client_closing_errors(writer.flush())
            }
            None => Ok(()),
        }
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_sink.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
