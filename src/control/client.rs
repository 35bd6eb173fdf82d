//! The admin command's side of the control socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::frame::{self, FrameWriter};
use super::Request;

/// How long the server has to greet.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest silence while the command runs (a backup of a large store
/// writes nothing until it is done).
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest wait to send one frame.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command did not run to its end through the socket.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing ran: no socket, nobody listening, a refused peer, another
    /// protocol version, a busy server.
    #[error("{0}")]
    Unavailable(String),
    /// The command was sent, and the connection failed before its status
    /// came back: it may or may not have done its work.
    #[error("{0}")]
    Lost(String),
}

/// Runs `request` in the server listening on `socket`: sends `input` (all
/// of it, then its end), writes what the command prints to `out` and
/// `err`, and returns its exit status.
pub fn run(
    socket: &Path,
    request: &Request,
    input: Option<&mut dyn Read>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, Failure> {
    let unavailable = |what: &str, e: io::Error| {
        Failure::Unavailable(format!("{what} {}: {e}", socket.display()))
    };
    let stream = UnixStream::connect(socket)
        .map_err(|e| unavailable("cannot connect to the control socket", e))?;
    stream
        .set_read_timeout(Some(GREETING_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|e| unavailable("cannot use the control socket", e))?;
    let mut wire = &stream;
    frame::write(&mut wire, frame::HELLO, &frame::hello(frame::VERSION))
        .map_err(|e| unavailable("cannot greet the server on", e))?;
    match frame::read(&mut wire) {
        Ok((frame::HELLO, payload)) if frame::version_of(&payload) == Some(frame::VERSION) => {}
        Ok((frame::REFUSED, why)) => {
            return Err(Failure::Unavailable(format!(
                "the server refused this command on its control socket {}: {}",
                socket.display(),
                String::from_utf8_lossy(&why)
            )))
        }
        Ok(_) => {
            return Err(Failure::Unavailable(format!(
                "the control socket {} does not speak control protocol version {}",
                socket.display(),
                frame::VERSION
            )))
        }
        Err(e) => return Err(unavailable("no greeting from the control socket", e)),
    }
    let payload = serde_json::to_vec(request).map_err(|e| Failure::Unavailable(e.to_string()))?;
    if payload.len() > frame::MAX_FRAME {
        return Err(Failure::Unavailable(
            "the command line is too long for the control socket".to_owned(),
        ));
    }
    frame::write(&mut wire, frame::REQUEST, &payload)
        .map_err(|e| unavailable("cannot send the command to", e))?;
    let lost = |e: io::Error| {
        Failure::Lost(format!(
            "the connection to the server ({}) failed while the command ran, which may or \
             may not have done its work: {e}",
            socket.display()
        ))
    };
    // The whole input first: the server reads it before it answers. A
    // server that stopped reading (it refused early) has its answer read
    // all the same.
    let sent = match input {
        Some(input) => io::copy(input, &mut FrameWriter::new(wire, frame::INPUT)).map(|_| ()),
        None => Ok(()),
    };
    let sent = sent.and_then(|()| frame::write(&mut wire, frame::INPUT_END, b""));
    stream
        .set_read_timeout(Some(RESULT_TIMEOUT))
        .map_err(lost)?;
    loop {
        match frame::read(&mut wire) {
            Ok((frame::OUT, text)) => out.write_all(&text).map_err(lost)?,
            Ok((frame::ERR, text)) => err.write_all(&text).map_err(lost)?,
            Ok((frame::EXIT, code)) => {
                let _ = out.flush();
                return Ok(code.first().copied().unwrap_or(1));
            }
            Ok((kind, _)) => {
                return Err(lost(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a frame of kind {kind}"),
                )))
            }
            Err(e) => return Err(lost(sent.err().unwrap_or(e))),
        }
    }
}
