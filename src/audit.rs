//! The audit log: one JSON line on stderr per authentication event.
//!
//! Each line has the time, the event, the client IP, and the user id and/or
//! email when known, and never a password or a token. JSON keeps the lines
//! machine-readable and makes it impossible for a client to forge a line
//! through a crafted email.

use std::io::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::user::UserId;

/// Writes one log line to stderr in a single `write` call. stderr is
/// unbuffered, so `writeln!` on it would make one system call per piece of
/// the format string; one call also keeps lines from different threads
/// whole. Logging never fails a request: errors are ignored.
pub fn write_line(mut line: String) {
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
    PasswordChanged,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
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

    /// Writes a reset token to the log: the `log` delivery channel, for a
    /// single operator who hands tokens over by hand. The one audit line
    /// that carries a secret, and only when that channel is chosen.
    pub fn reset_token(&self, email: &str, token: &crate::token::Token, expires_at: &str) {
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "audit": "reset_token_delivery",
            "email": email,
            "reset_token": token.as_str(),
            "expires_at": expires_at,
        });
        // Written even with the audit log off: it is a delivery channel.
        write_line(line.to_string());
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
            email,
            route,
        };
        if let Ok(json) = serde_json::to_string(&line) {
            write_line(json);
        }
    }
}
