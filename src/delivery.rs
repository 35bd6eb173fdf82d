//! Delivery of messages (reset and verification tokens, notices) outside
//! the HTTP response: by SMTP, to the integrator's mailer by signed
//! webhook, into the dev outbox, or to the audit log.
//!
//! Requests only queue an intent in the store ([`crate::outbox`]); one
//! background worker per instance claims what is due, mints the token
//! when the message carries one (production), renders it from the
//! templates and hands it to the channel, with retries and backoff, and
//! keeps what keeps failing as a dead letter. A slow or failing mailer
//! never holds up a request, and `POST /reset_password` takes the same
//! time whether the email exists or not.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::auth::{Auth, AuthError, Caller, Recipient};
use crate::clock::unix_millis;
use crate::message::{Kind, Message, PublicUrl, Templates, Vars};
use crate::metrics::{DeliveryOutcome, Metrics};
use crate::outbox::{purpose_of, AccountEvent, Queued, Topic, CAUGHT_MAX};
use crate::store::StoreError;
use crate::transport::smtp::{Smtp, SmtpConfig};
use crate::transport::webhook::{Webhook, WebhookSecret, WebhookTarget};
use crate::transport::{backoff, SendError};
use crate::user::Email;

/// How long a claimed message is the worker's alone: longer than the
/// slowest attempt (SMTP's 10 s timeouts, a few round trips). A worker that
/// dies holding it delays it by this much.
pub const LEASE: Duration = Duration::from_secs(60);
/// Attempts before a message that keeps failing is kept as a dead letter
/// (with backoff 2 s, 4 s ... the last about 4 min after the first).
pub const MAX_ATTEMPTS: u32 = 8;
/// The worker looks at the queue at least this often (messages queued by
/// other instances, retries coming due).
const POLL: Duration = Duration::from_secs(1);

/// Where messages go.
#[derive(Clone, PartialEq, Eq)]
pub enum Channel {
    /// `smtp://[user:pass@]host[:port]` or `smtps://...`, as given.
    Smtp(String),
    /// POST each message as JSON to this URL, signed when a secret is set.
    Webhook(String),
    /// Keep each message in the store: `authd outbox`, `GET /dev/outbox`.
    Outbox,
    /// Write each message to the audit log, for a single operator.
    Log,
}

impl FromStr for Channel {
    type Err = String;

    /// `smtp://...`, `smtps://...`, `webhook:URL`, `outbox` or `log`.
    fn from_str(s: &str) -> Result<Channel, String> {
        match s {
            "log" => return Ok(Channel::Log),
            "outbox" => return Ok(Channel::Outbox),
            _ => {}
        }
        if s.starts_with("smtp://") || s.starts_with("smtps://") {
            // The sender is checked with the rest at start; any valid one
            // will do to check the URL's shape now.
            SmtpConfig::parse(s, "authd@localhost")?;
            return Ok(Channel::Smtp(s.to_owned()));
        }
        if let Some(url) = s.strip_prefix("webhook:") {
            WebhookTarget::parse(url)?;
            return Ok(Channel::Webhook(url.to_owned()));
        }
        Err(format!(
            "{:?} is none of smtp://HOST, smtps://HOST, webhook:URL, outbox, log",
            redact(s)
        ))
    }
}

/// `s` with any password of a URL in it hidden.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &s[..scheme + 3], &s[at..]),
                None => s.to_owned(),
            }
        }
        _ => s.to_owned(),
    }
}

impl fmt::Display for Channel {
    /// The channel with any SMTP password hidden: safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Smtp(url) => f.write_str(&redact(url)),
            Channel::Webhook(url) => write!(f, "webhook:{url}"),
            Channel::Outbox => f.write_str("outbox"),
            Channel::Log => f.write_str("log"),
        }
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({self})")
    }
}

/// The webhook secret of `settings`, parsed; `None` when unset.
fn secret(settings: &Settings) -> Result<Option<WebhookSecret>, String> {
    settings
        .webhook_secret
        .as_deref()
        .map(WebhookSecret::parse)
        .transpose()
}

/// What the delivery worker needs beyond the channel, from the
/// configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--mail-from`: the sender of SMTP mail.
    pub mail_from: Option<String>,
    /// `--templates DIR`: files that replace the built-in templates.
    pub templates: Option<PathBuf>,
    /// The base of every link (`--public-url`).
    pub public_url: Option<String>,
    /// Without a public URL, build links on the address the server
    /// listens at (`http://HOST:PORT`, known once bound) rather than
    /// refusing to start: the dev profile, on one machine.
    pub links_to_listener: bool,
    /// The webhook's `whsec_...` secret.
    pub webhook_secret: Option<String>,
    /// `--delivery-ca-file`: the certificates SMTP and webhook servers are
    /// checked against instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// `--events-webhook`: where account events go.
    pub events_webhook: Option<String>,
}

/// A channel made ready to send: its transport, the templates and the
/// base of links. Built at start, so every mistake in the delivery
/// configuration is a start-up error.
pub struct Courier {
    transport: Transport,
    templates: Templates,
    public_url: Option<PublicUrl>,
    /// Where events go (`--events-webhook`), signed like the deliveries.
    events: Option<Webhook>,
    /// Where attempts are counted, when metrics are kept.
    metrics: Option<Arc<Metrics>>,
}

enum Transport {
    /// Boxed: the SMTP client is several times the size of the others.
    Smtp(Box<Smtp>),
    Webhook(Webhook),
    Outbox,
    Log,
}

impl Courier {
    /// Makes `channel` ready; returns it with the warnings to print at
    /// start (a plain-http webhook). Links need a public URL for the
    /// channels that render them (SMTP, the outbox).
    pub fn new(channel: &Channel, settings: &Settings) -> Result<(Courier, Vec<String>), String> {
        let mut warnings = Vec::new();
        let ca = settings.ca_file.as_deref();
        let transport = match channel {
            Channel::Smtp(url) => {
                let from = settings.mail_from.as_deref().ok_or(
                    "--delivery smtp needs --mail-from (the sender address, e.g. \
                     'Example <no-reply@example.com>')",
                )?;
                Transport::Smtp(Box::new(Smtp::new(SmtpConfig::parse(url, from)?, ca)?))
            }
            Channel::Webhook(url) => {
                let (target, warning) = WebhookTarget::parse(url)?;
                warnings.extend(warning);
                let secret = secret(settings)?;
                if secret.is_none() {
                    warnings.push(
                        "webhook deliveries are not signed: set --webhook-secret-file or \
                         AUTHD_WEBHOOK_SECRET (whsec_...) so the receiver can tell authd's \
                         calls from anyone's"
                            .to_owned(),
                    );
                }
                Transport::Webhook(Webhook::new(target, secret, ca)?)
            }
            Channel::Outbox => Transport::Outbox,
            Channel::Log => Transport::Log,
        };
        let events = match &settings.events_webhook {
            Some(url) => {
                let (target, warning) = WebhookTarget::parse(url)?;
                warnings.extend(warning);
                let secret = secret(settings)?;
                if secret.is_none() {
                    warnings.push(
                        "events are not signed: set --webhook-secret-file or AUTHD_WEBHOOK_SECRET"
                            .to_owned(),
                    );
                }
                Some(Webhook::new(target, secret, ca)?)
            }
            None => None,
        };
        let templates =
            Templates::load(settings.templates.as_deref()).map_err(|e| e.to_string())?;
        let public_url = settings
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()?;
        let links = matches!(transport, Transport::Smtp(_) | Transport::Outbox);
        if public_url.is_none() && links && !settings.links_to_listener {
            return Err(format!(
                "--delivery {channel} sends links: set --public-url to the address users reach \
                 authd at (links are never built from a request's Host)"
            ));
        }
        Ok((
            Courier {
                transport,
                templates,
                public_url,
                events,
                metrics: None,
            },
            warnings,
        ))
    }

    /// Counts every attempt in `metrics` by its outcome.
    pub fn count_with(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Builds links on `listener` (the address bound) when no public URL
    /// was given ([`Settings::links_to_listener`]).
    pub fn link_to(&mut self, listener: std::net::SocketAddr) {
        if self.public_url.is_none() {
            self.public_url = PublicUrl::parse(&format!("http://{listener}")).ok();
        }
    }

    /// Makes one attempt at message `queued` and records the outcome:
    /// done, to be retried after a backoff, or a dead letter.
    fn run(&self, auth: &Auth, queued: &Queued) {
        let attempts = queued.attempts + 1;
        let store = auth.store();
        let outcome = match self.attempt(auth, queued) {
            Ok(()) => {
                self.count(DeliveryOutcome::Sent);
                store.finish(queued.id)
            }
            Err(e) => {
                let now = unix_millis();
                let dead = !e.is_transient() || attempts >= MAX_ATTEMPTS;
                self.count(if dead {
                    DeliveryOutcome::Dead
                } else {
                    DeliveryOutcome::Retry
                });
                let next_at = now.saturating_add(crate::clock::millis(backoff(attempts)));
                if dead {
                    eprintln!(
                        "authd: a {} message to {} failed {attempts} time(s) and is kept as a \
                         dead letter (`authd outbox list`): {e}",
                        queued.intent.kind, queued.intent.to
                    );
                } else {
                    eprintln!(
                        "authd: a {} message to {} failed (attempt {attempts} of \
                         {MAX_ATTEMPTS}), retried in {} s: {e}",
                        queued.intent.kind,
                        queued.intent.to,
                        next_at.saturating_sub(now).div_ceil(1000)
                    );
                }
                store.fail(queued.id, attempts, next_at, &e.to_string(), dead)
            }
        };
        if let Err(e) = outcome {
            eprintln!("authd: could not record a delivery's outcome: {e}");
        }
    }

    fn count(&self, outcome: DeliveryOutcome) {
        if let Some(metrics) = &self.metrics {
            metrics.delivery_attempt(outcome);
        }
    }

    /// Builds and sends message `queued`. A token message minted by the
    /// request (dev) is sent as queued; otherwise the token is minted
    /// now, if the address still has an account (and an email change is
    /// still the one asked for): when not, there is nothing to send.
    fn attempt(&self, auth: &Auth, queued: &Queued) -> Result<(), SendError> {
        let intent = &queued.intent;
        let kind = match intent.kind {
            Topic::Message(kind) => kind,
            Topic::Event(event) => return self.announce(event, queued),
        };
        let transient = |e: &dyn fmt::Display| SendError::Transient(e.to_string());
        let mut vars = Vars {
            email: intent.to.clone(),
            new_email: intent.new_email.clone(),
            ..Vars::default()
        };
        if kind == Kind::EmailChanged {
            vars.old_email = Some(intent.to.clone());
        }
        if let Some(purpose) = purpose_of(kind) {
            let token = match &intent.token {
                Some(token) => token.clone(),
                None => {
                    let caller = Caller {
                        ip: intent
                            .ip
                            .as_deref()
                            .and_then(|ip| ip.parse().ok())
                            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                        local: false,
                        user_agent: None,
                    };
                    let recipient = match (kind, intent.user) {
                        (Kind::EmailChange, Some(id)) => {
                            // A newer change (or a cancelled one) makes
                            // this message stale: minting now would end
                            // the newer change's token.
                            let user = match auth.store().user_by_id(id) {
                                Ok(user) => user,
                                Err(StoreError::NotFound) => return Ok(()),
                                Err(e) => return Err(transient(&e)),
                            };
                            let current = user.pending_email.as_ref().map(Email::key);
                            let asked = Email::parse(&intent.to).ok();
                            if current.is_none() || current != asked.as_ref().map(Email::key) {
                                return Ok(());
                            }
                            vars.old_email = Some(user.email.as_str().to_owned());
                            Recipient::PendingAddress(id)
                        }
                        _ => match Email::parse(&intent.to) {
                            Ok(email) => Recipient::Address(email),
                            Err(_) => return Ok(()),
                        },
                    };
                    match auth.issue_token(&caller, &recipient, purpose) {
                        Ok((_, address, token)) => {
                            vars.email = address;
                            token.as_str().to_owned()
                        }
                        Err(AuthError::UnknownEmail) => return Ok(()),
                        Err(e) => return Err(transient(&e)),
                    }
                }
            };
            vars.expires_at = Some(auth.expires_at(purpose));
            vars.link = self
                .public_url
                .as_ref()
                .and_then(|url| url.link(kind, &vars.email, &token));
            vars.token = Some(token);
        }
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(&self.templates.render(kind, &vars)),
            Transport::Webhook(webhook) => {
                let body = body(kind, &vars).to_string();
                // A token minted for this attempt makes it a message of
                // its own: a receiver that dropped a retry as a duplicate
                // would keep only a token the retry replaced.
                let id = if intent.token.is_none() && purpose_of(kind).is_some() {
                    format!("authd_{}_{}", queued.id, queued.attempts + 1)
                } else {
                    format!("authd_{}", queued.id)
                };
                webhook.send(&id, body.as_bytes())
            }
            Transport::Outbox => {
                let message: Message = self.templates.render(kind, &vars);
                auth.store()
                    .catch(&message, unix_millis(), CAUGHT_MAX)
                    .map(|_| ())
                    .map_err(|e| transient(&e))
            }
            Transport::Log => {
                auth.audit().delivery(&body(kind, &vars));
                Ok(())
            }
        }
    }
}

impl Courier {
    /// Sends `event` to the events webhook, if one is set (an event
    /// queued before it was unset has nowhere to go: done).
    fn announce(&self, event: AccountEvent, queued: &Queued) -> Result<(), SendError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let intent = &queued.intent;
        let body = serde_json::json!({
            "type": event.name(),
            "timestamp": crate::clock::rfc3339(queued.created_at),
            "data": {
                "user_id": intent.user.map(|id| id.0),
                "email": intent.to,
            },
        });
        events.send(&format!("authd_{}", queued.id), body.to_string().as_bytes())
    }
}

/// What a webhook receives (and the log channel writes): `{"type",
/// "email"}`, with `reset_token` or `verify_token` and `expires_at` for a
/// token, `new_email` for an address change's notice.
fn body(kind: Kind, vars: &Vars) -> Value {
    let mut body = serde_json::json!({"type": kind.name(), "email": vars.email});
    if let Some(token) = &vars.token {
        let field = match kind {
            Kind::Reset => "reset_token",
            _ => "verify_token",
        };
        body[field] = token.as_str().into();
        body["expires_at"] = vars.expires_at.clone().unwrap_or_default().into();
    }
    if kind == Kind::EmailChanged {
        if let Some(new_email) = &vars.new_email {
            body["new_email"] = new_email.as_str().into();
        }
    }
    body
}

/// The worker: sends what is due until `stop` is set; woken at once by a
/// new message (the service's bell), and at least every second for what
/// other instances queued and for retries.
pub fn work(auth: Arc<Auth>, courier: Courier, stop: Arc<AtomicBool>) {
    let bell = Arc::clone(auth.bell());
    let lease = crate::clock::millis(LEASE);
    while !stop.load(Ordering::SeqCst) {
        let now = unix_millis();
        match auth.store().claim(now, lease) {
            Ok(Some(queued)) => courier.run(&auth, &queued),
            Ok(None) => {
                let wait = match auth.store().next_due() {
                    Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now)).min(POLL),
                    _ => POLL,
                };
                bell.wait(wait.max(Duration::from_millis(1)));
            }
            Err(e) => {
                eprintln!("authd: cannot read the delivery queue: {e}");
                bell.wait(POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_strictly_and_show_no_password() {
        assert_eq!("log".parse::<Channel>(), Ok(Channel::Log));
        assert_eq!("outbox".parse::<Channel>(), Ok(Channel::Outbox));
        assert_eq!(
            "webhook:http://127.0.0.1:8025/reset".parse::<Channel>(),
            Ok(Channel::Webhook("http://127.0.0.1:8025/reset".to_owned()))
        );
        assert_eq!(
            "webhook:https://hooks.example.com/authd".parse::<Channel>(),
            Ok(Channel::Webhook(
                "https://hooks.example.com/authd".to_owned()
            ))
        );
        let smtp: Channel = "smtp://mailer:s3cret@mail.example.com:587".parse().unwrap();
        assert_eq!(smtp.to_string(), "smtp://mailer:***@mail.example.com:587");
        assert!(!format!("{smtp:?}").contains("s3cret"));
        for bad in [
            "",
            "email",
            "webhook:",
            "webhook:ftp://x/",
            "webhook:http://mailer.example.com/",
            "webhook:not a url",
            "smtp://",
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad:?}");
        }
        let refused = "smtpx://u:s3cret@x".parse::<Channel>().unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
    }

    #[test]
    fn bodies_name_their_token_and_type() {
        let vars = Vars {
            email: "a@x.io".to_owned(),
            token: Some("T".to_owned()),
            expires_at: Some("2026-11-26T07:00:00Z".to_owned()),
            ..Vars::default()
        };
        assert_eq!(
            body(Kind::Reset, &vars),
            serde_json::json!({"type": "reset", "email": "a@x.io", "reset_token": "T",
                               "expires_at": "2026-11-26T07:00:00Z"})
        );
        assert_eq!(body(Kind::Verify, &vars)["verify_token"], "T");
        let notice = Vars {
            email: "a@x.io".to_owned(),
            new_email: Some("b@x.io".to_owned()),
            ..Vars::default()
        };
        assert_eq!(
            body(Kind::EmailChanged, &notice),
            serde_json::json!({"type": "email_changed", "email": "a@x.io", "new_email": "b@x.io"})
        );
        assert_eq!(
            body(Kind::PasswordChanged, &notice),
            serde_json::json!({"type": "password_changed", "email": "a@x.io"})
        );
    }
}
