//! The control socket: admin commands run inside a server that holds the
//! embedded store, for the time it serves.
//!
//! sled lets one process hold a store, so while `authd serve` runs, an
//! admin command cannot open it. Instead the command connects to the
//! server's Unix socket (`DATA_DIR/authd.sock`, or `--control-socket`),
//! and the server runs the very same command code on its open store, its
//! output coming back in frames. The socket is a file only its owner may
//! reach (0600, in the 0700 data directory), and each peer is checked with
//! `SO_PEERCRED` to be the server's user or root; it is never reachable
//! over HTTP. See [`frame`] for the protocol, [`listener`] for the server
//! side, [`client`] for the command's side.
//!
//! This module knows nothing of the command line: the server is handed a
//! [`Runner`] (the CLI's) that turns a request into output and a status.

pub mod client;
pub mod frame;
pub mod listener;
mod peer;

use std::io::{Read, Write};
use std::path::PathBuf;

/// The socket's file name in the data directory, by default.
pub const DEFAULT_SOCKET_NAME: &str = "authd.sock";

/// One admin command, as the client sends it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The command line after the binary's name (`user`, `add`, ...).
    pub args: Vec<String>,
    /// The client's working directory: relative paths it gave are its.
    pub cwd: PathBuf,
}

/// The streams of one command run through the socket.
pub struct Streams<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// What the client sends: its standard input or the file it reads.
    pub input: &'a mut dyn Read,
    /// Whether the client went away (or sent more than its input): a
    /// long command checks it between steps, and stops.
    pub gone: &'a dyn Fn() -> bool,
}

/// Runs one admin command inside the server and says its exit status.
pub trait Runner: Send + Sync {
    fn run(&self, request: Request, streams: Streams<'_>) -> u8;
}
