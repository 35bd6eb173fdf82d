//! The server's side of the control socket: its own threads, never the
//! HTTP ones; a few connections at a time, each bounded in time.

use std::io::{self, BufWriter, LineWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::frame::{self, FrameReader, FrameWriter};
use super::{peer, Request, Runner, Streams};

/// Commands running at once; one more client is told the server is busy.
pub const MAX_CONNECTIONS: usize = 4;
/// How long a client has for its greeting and its request, in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for one read or write once the command runs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the accepting thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How long a stop waits for commands still running.
const GRACE: Duration = Duration::from_secs(10);

/// A listening control socket; stopping it (or dropping it) removes the
/// socket file.
pub struct Listener {
    path: PathBuf,
    /// The socket file's device and inode, so only ours is removed.
    file: (u64, u64),
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// Listens on `path` and runs each client's command with `runner`.
///
/// Call it only with the store's lock held: a socket file already there is
/// then a stale one (a server that did not stop cleanly) and is replaced.
/// Any other kind of file there is left alone, and an error.
pub fn start(path: &Path, runner: Arc<dyn Runner>) -> io::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    // Private whatever the umask (authd runs under 077 anyway).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let meta = std::fs::symlink_metadata(path)?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (stop, active) = (Arc::clone(&stop), Arc::clone(&active));
        std::thread::Builder::new()
            .name("authd-control".into())
            .spawn(move || accept(&listener, &runner, &stop, &active))?
    };
    Ok(Listener {
        path: path.to_owned(),
        file: (meta.dev(), meta.ino()),
        stop,
        active,
        thread: Some(thread),
    })
}

impl Listener {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, waits a little for commands still running, and
    /// removes the socket file (if it is still this listener's).
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let deadline = Instant::now() + GRACE;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.file {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut();
        }
    }
}

/// Counts a running connection for as long as it lives.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept(
    listener: &UnixListener,
    runner: &Arc<dyn Runner>,
    stop: &AtomicBool,
    active: &Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            // Out of descriptors and the like: try again later.
            Err(e) => {
                eprintln!("authd: control socket: cannot accept: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err()
            || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
        {
            continue;
        }
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = frame::write(
                &mut &stream,
                frame::REFUSED,
                format!("the server runs {MAX_CONNECTIONS} admin commands already; try again")
                    .as_bytes(),
            );
            continue;
        }
        let slot = Slot(Arc::clone(active));
        let runner = Arc::clone(runner);
        let spawned = std::thread::Builder::new()
            .name("authd-control-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve(&stream, runner.as_ref()) {
                    eprintln!("authd: control socket: a client was dropped: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("authd: control socket: cannot start a thread: {e}");
        }
    }
}

/// Reads from a stream with one deadline for all its reads.
struct Until<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "too slow"));
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

/// One client: peer check, greeting, request, the command, its status.
fn serve(stream: &UnixStream, runner: &dyn Runner) -> io::Result<()> {
    let uid = peer::uid(stream)?;
    let own = peer::own_uid();
    if !peer::allowed(uid, own) {
        eprintln!("authd: control socket: refused a client of uid {uid}");
        let why = format!(
            "the control socket serves the server's user (uid {own}) and root, not uid {uid}"
        );
        return frame::write(&mut &*stream, frame::REFUSED, why.as_bytes());
    }
    let mut early = Until {
        stream,
        deadline: Instant::now() + REQUEST_TIMEOUT,
    };
    let (kind, payload) = frame::read(&mut early)?;
    let version = match (kind, frame::version_of(&payload)) {
        (frame::HELLO, Some(version)) => version,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "no greeting")),
    };
    if version != frame::VERSION {
        let why = format!(
            "the server speaks control protocol version {}, this command {version}: \
             run the admin command with the authd binary the server runs",
            frame::VERSION
        );
        return frame::write(&mut &*stream, frame::REFUSED, why.as_bytes());
    }
    frame::write(&mut &*stream, frame::HELLO, &frame::hello(frame::VERSION))?;
    let request: Request = match frame::read(&mut early)? {
        (frame::REQUEST, payload) => serde_json::from_slice(&payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "no request")),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let name = command_name(&request.args);
    let mut input = FrameReader::new(stream);
    let mut out = BufWriter::with_capacity(frame::MAX_FRAME, FrameWriter::new(stream, frame::OUT));
    // By lines: progress reaches the client as it is made.
    let mut err = LineWriter::new(FrameWriter::new(stream, frame::ERR));
    let gone = || hung_up(stream);
    let code = runner.run(
        request,
        Streams {
            out: &mut out,
            err: &mut err,
            input: &mut input,
            gone: &gone,
        },
    );
    let finished = out.flush().and_then(|()| err.flush());
    drop((out, err));
    eprintln!(
        "authd: control socket: `{name}` (uid {uid}) exited {code}{}",
        if finished.is_err() {
            " (its client had gone)"
        } else {
            ""
        }
    );
    finished?;
    input.drain()?;
    frame::write(&mut &*stream, frame::EXIT, &[code])
}

/// Whether the client hung up, or sent anything after its input's end:
/// either way, nobody waits for the command's end any more.
fn hung_up(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents != 0
}

/// The command's name for the log: `user add`, `backup`; never its
/// arguments (addresses).
fn command_name(args: &[String]) -> String {
    let words: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .take(2)
        .map(String::as_str)
        .collect();
    match words.as_slice() {
        [group @ ("user" | "key"), sub] => format!("{group} {sub}"),
        [first, ..] => (*first).to_owned(),
        [] => "?".to_owned(),
    }
}
