//! The real `authd` binary as a server process or a one-shot command.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_authd");

/// A server process, its address, and where its stderr goes.
pub struct Proc {
    pub child: Child,
    client: Client,
    stderr: std::path::PathBuf,
}

/// An HTTP client for a server at `base`; a [`Proc`] is one too.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
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
            client: Client { base },
            stderr,
        }
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

impl Client {
    /// Sends a form-encoded request; returns (status, body, Set-Cookie).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        form: &str,
        cookie: Option<&str>,
    ) -> (u16, String, Option<String>) {
        self.try_send(method, path, form, cookie)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Like [`Proc::send`], but a transport failure (the server died) is an
    /// error instead of a panic.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        form: &str,
        cookie: Option<&str>,
    ) -> Result<(u16, String, Option<String>), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(token) = cookie {
            request = request.header("Cookie", format!("session_id={token}"));
        }
        let mut response = agent
            .run(request.body(form.to_owned()).unwrap())
            .map_err(|e| e.to_string())?;
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, body, set_cookie))
    }

    /// POSTs a form; returns (status, body).
    pub fn post(&self, path: &str, form: &str) -> (u16, String) {
        let (status, body, _) = self.send("POST", path, form, None);
        (status, body)
    }

    /// Logs in; returns the session token, or the status on failure.
    pub fn log_in(&self, email: &str, password: &str) -> Result<String, u16> {
        let form = format!("email={}&password={}", enc(email), enc(password));
        match self.send("POST", "/sessions", &form, None) {
            (200, _, Some(cookie)) => Ok(cookie["session_id=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_owned()),
            (status, _, _) => Err(status),
        }
    }

    /// `GET /profile` with `session`; returns the status.
    pub fn profile(&self, session: &str) -> u16 {
        self.send("GET", "/profile", "", Some(session)).0
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
    let mut child = Command::new(BIN)
        .args(args)
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
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("authd {args:?} did not exit within a minute");
        }
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
