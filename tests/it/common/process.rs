//! The real `authd` binary as a server process or a one-shot command.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use authd::config::Profile;

use super::raw::Client;

pub const BIN: &str = env!("CARGO_BIN_EXE_authd");

/// A server process, its address, and where its stderr goes.
pub struct Proc {
    pub child: Child,
    client: Client,
    stderr: std::path::PathBuf,
}

impl std::ops::Deref for Proc {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Proc {
    /// Starts `authd serve` on port 0 with the store for `dir` (the
    /// directory, or its schema on PostgreSQL).
    pub fn start(dir: &Path, extra: &[&str]) -> Proc {
        Self::start_at(dir, "127.0.0.1:0", extra)
    }

    /// Starts `authd serve` on `addr` with `dir` as the store.
    pub fn start_at(dir: &Path, addr: &str, extra: &[&str]) -> Proc {
        // Cost 4 through the environment, so `extra` may still set a flag.
        let mut command = Command::new(BIN);
        command
            .env("AUTHD_BCRYPT_COST", "4")
            .args(["serve", "--addr", addr])
            .args(super::stores::store_args(dir))
            .args(extra);
        Self::spawn(command, &dir.with_extension("stderr"))
    }

    /// Runs `command` (an authd server) and waits for its address, with its
    /// stderr going to the file `stderr`.
    pub fn spawn(mut command: Command, stderr: &Path) -> Proc {
        let server_profile = profile_of(&command);
        let stderr = stderr.to_owned();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_owned();
        Proc {
            child,
            client: Client {
                base,
                server_profile,
            },
            stderr,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to end, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "authd did not exit; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The profile `command` starts authd in (`--profile`, or `AUTHD_PROFILE`).
fn profile_of(command: &Command) -> Profile {
    let args: Vec<&std::ffi::OsStr> = command.get_args().collect();
    let flag = args.iter().enumerate().find_map(|(i, arg)| {
        match arg.to_str()?.strip_prefix("--profile")? {
            "" => args.get(i + 1)?.to_str(),
            rest => rest.strip_prefix('='),
        }
    });
    let env = command
        .get_envs()
        .find(|(k, _)| *k == "AUTHD_PROFILE")
        .and_then(|(_, v)| v?.to_str());
    match flag.or(env) {
        Some("production") => Profile::Production,
        _ => Profile::Dev,
    }
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    super::urlencode(s)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion with `args`; returns (code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    run_with_stdin(args, None)
}

/// Runs the binary with `stdin` as its standard input (or none at all);
/// returns (code, stdout, stderr). Fails the test after a minute.
pub fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    run_command(command, stdin)
}

/// Runs `command` (authd, or a shell that execs it) to completion with
/// `stdin` as its standard input (or none at all); returns (code, stdout,
/// stderr). Fails the test after a minute.
pub fn run_command(mut command: Command, stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let output = wait_output(child, Duration::from_secs(60));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits for `child` and collects its output; kills it and fails the test
/// past `limit`.
pub fn wait_output(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("authd did not exit within {limit:?}");
        }
    }
}
