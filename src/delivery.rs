//! Delivery of messages (reset and verification tokens, notices) outside
//! the HTTP response: to the integrator's mailer by webhook, or to the
//! audit log.
//!
//! Requests only enqueue; one background worker issues tokens (in the
//! production profile) and delivers them, with a timeout and retries, so a
//! slow or failing mailer never holds up a request, and `POST
//! /reset_password` takes the same time whether the email exists or not.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::auth::{Auth, AuthError, Caller};
use crate::one_time::Purpose;
use crate::outbox::Job;
use crate::token::Token;
/// Attempts per webhook delivery, with 1 s, 2 s, ... between them.
const ATTEMPTS: u32 = 3;
/// Time allowed for one webhook call.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where reset tokens go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// POST `{"email", "reset_token", "expires_at"}` to this URL.
    Webhook(String),
    /// Write the token to the audit log, for a single operator.
    Log,
}

impl FromStr for Channel {
    type Err = String;

    /// `log` or `webhook:http://HOST[:PORT]/PATH`.
    fn from_str(s: &str) -> Result<Channel, String> {
        if s == "log" {
            return Ok(Channel::Log);
        }
        let Some(url) = s.strip_prefix("webhook:") else {
            return Err(format!("{s:?} is neither `log` nor `webhook:URL`"));
        };
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| format!("webhook URL {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "webhook URL {url:?} must be http://HOST/PATH (authd speaks plain HTTP to the mailer; put a local relay in front of an https endpoint)"
            ));
        }
        Ok(Channel::Webhook(url.to_owned()))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Webhook(url) => write!(f, "webhook:{url}"),
            Channel::Log => f.write_str("log"),
        }
    }
}

/// The worker: runs jobs until `stop` is set, then finishes what is queued.
pub fn work(auth: Arc<Auth>, channel: Channel, inbox: Receiver<Job>, stop: Arc<AtomicBool>) {
    loop {
        match inbox.recv_timeout(Duration::from_millis(50)) {
            Ok(job) => run(&auth, &channel, job),
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn run(auth: &Auth, channel: &Channel, job: Job) {
    let body = match job {
        Job::Issue { purpose, to, ip } => {
            let caller = Caller {
                ip,
                local: false,
                user_agent: None,
            };
            match auth.issue_token(&caller, &to, purpose) {
                Ok((_, address, token)) => {
                    token_body(purpose, &address, &token, &auth.expires_at(purpose))
                }
                // Logged as refused; nothing to deliver.
                Err(AuthError::UnknownEmail) => return,
                Err(e) => {
                    eprintln!("authd: could not issue a {} token: {e}", purpose.name());
                    return;
                }
            }
        }
        Job::Deliver {
            purpose,
            email,
            token,
            expires_at,
        } => token_body(purpose, &email, &token, &expires_at),
        Job::Notify {
            notice,
            email,
            new_email,
        } => {
            let mut body = serde_json::json!({"type": notice.name(), "email": email});
            if let Some(new_email) = new_email {
                body["new_email"] = new_email.into();
            }
            body
        }
    };
    deliver(auth, channel, &body);
}

/// The body of a token's message: `{"type", "email", "reset_token" or
/// "verify_token", "expires_at"}` (the reset's as before, plus `type`).
fn token_body(purpose: Purpose, email: &str, token: &Token, expires_at: &str) -> Value {
    let field = match purpose {
        Purpose::Reset => "reset_token",
        Purpose::Verify | Purpose::EmailChange => "verify_token",
    };
    let mut body = serde_json::json!({
        "type": purpose.name(),
        "email": email,
        "expires_at": expires_at,
    });
    body[field] = token.as_str().into();
    body
}

fn deliver(auth: &Auth, channel: &Channel, body: &Value) {
    let email = body["email"].as_str().unwrap_or_default();
    match channel {
        Channel::Log => auth.audit().delivery(body),
        Channel::Webhook(url) => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .build()
                .into();
            let mut last_error = String::new();
            let encoded = body.to_string();
            for attempt in 1..=ATTEMPTS {
                match agent
                    .post(url)
                    .content_type("application/json")
                    .send(encoded.as_bytes())
                {
                    Ok(_) => return,
                    Err(e) => last_error = e.to_string(),
                }
                if attempt < ATTEMPTS {
                    std::thread::sleep(Duration::from_secs(1 << (attempt - 1)));
                }
            }
            eprintln!(
                "authd: delivery of a {} message for {email} to {url} failed after {ATTEMPTS} \
                 attempts: {last_error}",
                body["type"].as_str().unwrap_or_default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_strictly() {
        assert_eq!("log".parse::<Channel>(), Ok(Channel::Log));
        assert_eq!(
            "webhook:http://127.0.0.1:8025/reset".parse::<Channel>(),
            Ok(Channel::Webhook("http://127.0.0.1:8025/reset".to_owned()))
        );
        for bad in [
            "",
            "email",
            "webhook:",
            "webhook:ftp://x/",
            "webhook:https://x/",
            "webhook:not a url",
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad:?}");
        }
    }
}
