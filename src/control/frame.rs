//! The wire format: frames of one kind byte, a 4-byte big-endian length
//! and at most [`MAX_FRAME`] bytes of payload.
//!
//! A session: the client says [`HELLO`] with its protocol version, the
//! server answers [`HELLO`] with its own (or [`REFUSED`] with why: another
//! version, a peer of another user, too busy). The client then sends one
//! [`REQUEST`] (a JSON [`super::Request`]), its input as [`INPUT`] frames
//! and [`INPUT_END`]; the server answers with [`OUT`] and [`ERR`] frames
//! (the command's stdout and stderr) and one [`EXIT`] (its status byte).

use std::io::{self, Read, Write};

/// The protocol both sides must speak; a change of frames or their
/// meaning is a new version.
pub const VERSION: u32 = 1;
/// What a [`HELLO`] payload starts with, before the version.
pub const MAGIC: &[u8] = b"authd-control";
/// The largest payload: a longer frame is refused unread.
pub const MAX_FRAME: usize = 64 * 1024;

pub const HELLO: u8 = 1;
pub const REQUEST: u8 = 2;
pub const INPUT: u8 = 3;
pub const INPUT_END: u8 = 4;
pub const OUT: u8 = 5;
pub const ERR: u8 = 6;
pub const EXIT: u8 = 7;
pub const REFUSED: u8 = 8;

/// A [`HELLO`] payload for `version`.
pub fn hello(version: u32) -> Vec<u8> {
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(&version.to_be_bytes());
    payload
}

/// The version of a [`HELLO`] payload, if it is one.
pub fn version_of(payload: &[u8]) -> Option<u32> {
    let rest = payload.strip_prefix(MAGIC)?;
    Some(u32::from_be_bytes(rest.try_into().ok()?))
}

/// Writes one frame (`payload` at most [`MAX_FRAME`] bytes).
pub fn write(to: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too long",
        ));
    }
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    to.write_all(&frame)
}

/// Reads one frame; a length past [`MAX_FRAME`] is an error, read no
/// further.
pub fn read(from: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    from.read_exact(&mut header)?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut payload = vec![0u8; len];
    from.read_exact(&mut payload)?;
    Ok((header[0], payload))
}

/// A writer that sends what it is given as frames of one kind.
pub struct FrameWriter<W: Write> {
    to: W,
    kind: u8,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(to: W, kind: u8) -> Self {
        FrameWriter { to, kind }
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_FRAME);
        if n > 0 {
            write(&mut self.to, self.kind, &buf[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.to.flush()
    }
}

/// A reader of [`INPUT`] frames, ending at [`INPUT_END`].
pub struct FrameReader<R: Read> {
    from: R,
    pending: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(from: R) -> Self {
        FrameReader {
            from,
            pending: Vec::new(),
            at: 0,
            ended: false,
        }
    }

    /// Reads (and drops) what is left of the input, up to its end.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            if self.ended {
                return Ok(0);
            }
            match read(&mut self.from)? {
                (INPUT, payload) => {
                    self.pending = payload;
                    self.at = 0;
                }
                (INPUT_END, _) => self.ended = true,
                (kind, _) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of kind {kind} in the input"),
                    ))
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_long_ones_are_refused_unread() {
        let mut wire = Vec::new();
        write(&mut wire, HELLO, &hello(VERSION)).unwrap();
        write(&mut wire, INPUT, b"abc").unwrap();
        write(&mut wire, INPUT_END, b"").unwrap();
        let mut from = wire.as_slice();
        let (kind, payload) = read(&mut from).unwrap();
        assert_eq!((kind, version_of(&payload)), (HELLO, Some(VERSION)));
        let mut input = String::new();
        FrameReader::new(&mut from)
            .read_to_string(&mut input)
            .unwrap();
        assert_eq!(input, "abc");
        assert!(write(&mut Vec::new(), OUT, &vec![0; MAX_FRAME + 1]).is_err());
        let mut huge = vec![OUT];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let error = read(&mut huge.as_slice()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(version_of(b"authd-control\0\0"), None);
        assert_eq!(version_of(b"something else!!!"), None);
    }

    #[test]
    fn a_writer_splits_what_it_is_given_into_bounded_frames() {
        let mut wire = Vec::new();
        FrameWriter::new(&mut wire, OUT)
            .write_all(&vec![7; MAX_FRAME * 2 + 1])
            .unwrap();
        let mut from = wire.as_slice();
        let sizes: Vec<usize> = (0..3).map(|_| read(&mut from).unwrap().1.len()).collect();
        assert_eq!(sizes, [MAX_FRAME, MAX_FRAME, 1]);
    }
}
