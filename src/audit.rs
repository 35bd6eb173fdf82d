//! The audit log: one JSON line on stderr per authentication event.
//!
//! Each line has the time, the event, the client IP, and the user id and/or
//! email when known, and never a password or a token. JSON keeps the lines
//! machine-readable and makes it impossible for a client to forge a line
//! through a crafted email.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;

use serde::Serialize;

use crate::user::UserId;

/// Lines the background log writer may hold before writers block on it.
const LOG_QUEUE: usize = 8192;

enum LogMessage {
    Line(String),
    /// Answered once every line sent before it is written.
    Flush(SyncSender<()>),
}

/// The queue to the log writer thread, started on first use.
fn log_queue() -> &'static SyncSender<LogMessage> {
    static QUEUE: OnceLock<SyncSender<LogMessage>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<LogMessage>(LOG_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    // Write everything already queued, then flush once.
                    while let Some(message) = next {
                        match message {
                            LogMessage::Line(line) => {
                                let _ = out.write_all(line.as_bytes());
                            }
                            LogMessage::Flush(done) => {
                                let _ = out.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    let _ = out.flush();
                    // Let lines gather rather than waking up for each one:
                    // a sender only pays for a wake-up when the writer is
                    // idle, not while it naps.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            });
        if spawned.is_err() {
            eprintln!("authd: cannot start the log writer; logging directly");
        }
        tx
    })
}

/// Writes one log line to stderr.
///
/// A background thread does the writing, so a request pays for a queue
/// push rather than a system call (stderr is unbuffered: `eprintln!` would
/// make one `write` per piece of the format string, under a lock every
/// request thread contends for), and lines from many requests go out in
/// one `write`. Lines stay whole and in order. If the queue is full, the
/// caller writes the line itself rather than dropping it. A crash loses at
/// most the lines of the last moment; a clean stop calls [`flush_logs`].
pub fn write_line(mut line: String) {
    line.push('\n');
    if let Err(
        TrySendError::Full(LogMessage::Line(line))
        | TrySendError::Disconnected(LogMessage::Line(line)),
    ) = log_queue().try_send(LogMessage::Line(line))
    {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Waits until every line logged so far is written (at shutdown).
pub fn flush_logs() {
    let (done, wait) = mpsc::sync_channel(1);
    if log_queue().send(LogMessage::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(std::time::Duration::from_secs(5));
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Register,
    RegisterRefused,
    LoginSuccess,
    LoginFailure,
    Throttled,
    Logout,
    ResetRequested,
    ResetRefused,
    VerifyRequested,
    VerifyRefused,
    EmailVerified,
    EmailChangeRequested,
    EmailChanged,
    PasswordChanged,
    /// One or more sessions ended by their user (not a logout of the
    /// current one) or by an administrator.
    SessionEnded,
    UserDeleted,
    /// A second factor's secret was made, waiting for its first code.
    TotpPending,
    /// A second factor was confirmed and is now asked at every login.
    TotpEnabled,
    /// A second factor was turned off (by its user or an administrator).
    TotpDisabled,
    /// A wrong, replayed or spent second-factor code after the right
    /// password.
    TotpRefused,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    audit: Event,
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    /// In place of `email` when what was typed is not a registered
    /// address: a keyed hash of it, so a password typed into the email
    /// field never reaches the log, while lines about the same typed text
    /// still match each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_hmac: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
}

/// Longest email written to the audit log, in bytes (an address is at most
/// 254).
const MAX_LOGGED_EMAIL: usize = 320;

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where audit lines go; disabled in tests that do not read them.
#[derive(Debug, Clone, Copy)]
pub struct Audit {
    enabled: bool,
}

impl Audit {
    /// An audit log that writes to stderr when `enabled`.
    pub fn new(enabled: bool) -> Audit {
        Audit { enabled }
    }

    /// Whether lines are written (so callers skip work for nothing).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Writes a message to the log: the `log` delivery channel, for a
    /// single operator who hands tokens over by hand. `body` is what a
    /// webhook would get (`{"type", "email", ...}`); the line is
    /// `{"time", "audit": "<type>_token_delivery", ...body}` for a token
    /// (a reset's is `reset_token_delivery` with its `reset_token`, as
    /// before there were other messages) and `"<type>_notice"` for a
    /// notice. The one audit line that carries a secret, and only when
    /// that channel is chosen.
    pub fn delivery(&self, body: &serde_json::Value) {
        let kind = body["type"].as_str().unwrap_or("message");
        let with_token = body.get("reset_token").is_some() || body.get("verify_token").is_some();
        let audit = if with_token {
            format!("{kind}_token_delivery")
        } else {
            format!("{kind}_notice")
        };
        let mut line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "audit": audit,
        });
        if let (Some(line), Some(body)) = (line.as_object_mut(), body.as_object()) {
            for (key, value) in body {
                if key != "type" {
                    line.insert(key.clone(), value.clone());
                }
            }
        }
        // Written even with the audit log off: it is a delivery channel.
        write_line(line.to_string());
    }

    /// Records `event` about typed text that is not a registered address,
    /// by its keyed hash `email_hmac` only.
    pub fn record_unregistered(
        &self,
        event: Event,
        ip: IpAddr,
        email_hmac: &str,
        route: Option<&str>,
    ) {
        if !self.enabled {
            return;
        }
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            audit: event,
            ip,
            user_id: None,
            email: None,
            email_hmac: Some(email_hmac),
            route,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            write_line(json);
        }
    }

    /// Records `event`. `route` names the throttled route for `Throttled`.
    pub fn record(
        &self,
        event: Event,
        ip: IpAddr,
        user_id: Option<UserId>,
        email: Option<&str>,
        route: Option<&str>,
    ) {
        if !self.enabled {
            return;
        }
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            audit: event,
            ip,
            user_id: user_id.map(|id| id.0),
            // What a client typed where an address belongs can be anything
            // up to the body limit: the log keeps what an address can be.
            email: email.map(|e| cut(e, MAX_LOGGED_EMAIL)),
            email_hmac: None,
            route,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            write_line(json);
        }
    }
}
