//! The service: every use case of authd, whoever calls it.
//!
//! One file per use case: [`register`](Auth::register),
//! [`log_in`](Auth::log_in), the session calls (check, list, end), the
//! password reset (request, redeem) and the administrator's calls. Each
//! takes the [`Caller`] and does the whole job: throttle, hash, store,
//! audit and enqueue. The HTTP routes parse, call and respond; the admin
//! commands call the same functions and leave the same audit lines.
//! Nothing here knows about HTTP; `http::error` maps [`AuthError`] to
//! statuses in one place.

mod account;
mod admin;
mod email_change;
pub mod limits;
mod login;
mod register;
mod reset;
mod sessions;
mod tokens;
mod totp;
mod verify;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::audit::{Audit, Event};
use crate::clock::millis;
use crate::hasher::{HashError, Hasher};
use crate::message::Kind;
use crate::one_time::Purpose;
use crate::outbox::{AccountEvent, Bell, Intent, Topic, QUEUE_MAX};
use crate::policy::PasswordPolicy;
use crate::session::Session;
use crate::store::{RequestStore, StoreError};
use crate::token::{RandomError, Token};
use crate::user::{Email, Password, User, UserId};
use limits::Limits;

pub use account::AccountView;
pub use email_change::EmailChangeAnswer;
pub use sessions::Scope;
pub use totp::TotpEnrolment;

/// What a request for a one-time token (reset, verification) answers.
#[derive(Debug)]
pub enum TokenAnswer {
    /// The token itself (dev, as the reference).
    Token { email: String, token: Token },
    /// Only that a token is on its way if the email is registered
    /// (production): `shown` is the email as the client typed it.
    Queued { shown: String },
}

/// Outcomes of the use cases that are not success.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately one case.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// A signed-in user's own password, asked again before a change to
    /// the account, was wrong.
    #[error("wrong password")]
    WrongPassword,
    /// No cookie, a malformed one, or a session that is not current.
    #[error("no valid session")]
    InvalidSession,
    /// A session handle that names no session of the caller's.
    #[error("session not found")]
    SessionNotFound,
    /// `POST /reset_password` for an email nobody registered.
    #[error("email not registered")]
    UnknownEmail,
    /// A reset token that is malformed, unknown, used, replaced, or paired
    /// with an email that does not own it.
    #[error("invalid reset token")]
    InvalidResetToken,
    /// A verification token that is malformed, unknown, used, replaced,
    /// expired, or paired with an address it was not sent to.
    #[error("invalid verify token")]
    InvalidVerifyToken,
    /// An account with a second factor logged in with the right password
    /// and no code (said only after the password was right).
    #[error("totp required")]
    TotpRequired,
    /// A second factor's code that is wrong, of a step already used, or
    /// a recovery code that is not (or no longer) the account's.
    #[error("invalid totp code")]
    WrongTotp,
    /// `PUT /totp` with a wrong code, or nothing pending to confirm.
    #[error("invalid totp code")]
    TotpCodeRefused,
    /// `POST /totp` while a second factor is enabled.
    #[error("totp already enabled")]
    TotpAlreadyEnabled,
    /// Turning off a second factor the account does not have.
    #[error("totp not enabled")]
    TotpNotEnabled,
    /// `--require-verified-email` and the account's address is not
    /// verified (said only after the password was right).
    #[error("email not verified")]
    EmailNotVerified,
    /// The new password does not meet the password policy; the text says
    /// why, for the person choosing it.
    #[error("password {0}")]
    WeakPassword(String),
    /// A throttle refuses the attempt until this much time has passed.
    #[error("too many attempts")]
    Throttled(Duration),
    /// The bcrypt queue is full: try again shortly.
    #[error("too many password operations in progress")]
    Busy,
    /// The delivery queue is full: try again shortly.
    #[error("too many messages queued")]
    QueueFull,
    /// The throttle counts cannot be read or kept; an uncounted attempt
    /// is not let through.
    #[error("{0}")]
    ThrottleUnavailable(String),
    /// The store could not complete the operation.
    #[error(transparent)]
    Store(StoreError),
    /// Anything else that is our fault (random source, worker pool).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(e)
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            // This client holds all of its places: it slows down (429),
            // everyone else is still served.
            HashError::KeyBusy => AuthError::Throttled(std::time::Duration::from_secs(1)),
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl From<RandomError> for AuthError {
    fn from(e: RandomError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

/// Who is asking: what the throttles key on, what the audit log and a new
/// session record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client address (the socket peer, or the proxy's header).
    pub ip: IpAddr,
    /// A developer's own machine: dev profile, a loopback peer, and no
    /// proxy in between. Exempt from the per-address and request-rate
    /// limits, never from the per-account backoff.
    pub local: bool,
    /// The `User-Agent` header, kept with a new session.
    pub user_agent: Option<String>,
}

impl Caller {
    /// The administrator at the command line: not throttled, audited as
    /// coming from this machine.
    pub fn admin() -> Caller {
        Caller {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local: true,
            user_agent: Some("authd admin command".to_owned()),
        }
    }
}

/// How long credentials live. Enforced on the server, whatever the client
/// does with its cookie.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Absolute lifetime of a session, from login.
    pub session: Duration,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// Lifetime of a reset token, from issue.
    pub reset_token: Duration,
    /// Lifetime of a verification token (the address's own or an email
    /// change's), from issue.
    pub verify_token: Duration,
}

impl Default for Lifetimes {
    /// 24 h absolute (Ory Kratos's default session lifespan), 30 min idle
    /// (OWASP's bound for low-risk applications), 30 min reset tokens
    /// (PocketBase, Rauthy), 24 h verification tokens (a mail read the
    /// next day still works; it grants no sign-in).
    fn default() -> Self {
        Lifetimes {
            session: Duration::from_secs(24 * 3600),
            session_idle: Duration::from_secs(30 * 60),
            reset_token: Duration::from_secs(30 * 60),
            verify_token: Duration::from_secs(24 * 3600),
        }
    }
}

impl Lifetimes {
    /// How stale `last_seen` may get before a request refreshes it: a tenth
    /// of the idle timeout, at most a minute. Refreshing on every request
    /// would turn every authenticated read into a write.
    fn touch_interval(&self) -> u64 {
        millis(self.session_idle / 10).min(60_000)
    }

    /// The lifetime of a one-time token of `purpose`.
    pub fn token(&self, purpose: Purpose) -> Duration {
        match purpose {
            Purpose::Reset => self.reset_token,
            Purpose::Verify | Purpose::EmailChange => self.verify_token,
        }
    }

    fn session_expired(&self, session: &Session, now: u64) -> bool {
        now >= session.created_at.saturating_add(millis(self.session))
            || now >= session.last_seen.saturating_add(millis(self.session_idle))
    }
}

/// Whom a token is for, when the delivery worker mints it.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// Whoever registered this address, if anyone (production: the
    /// request learns nothing either way).
    Address(Email),
    /// This user, at the pending address of their email change.
    PendingAddress(UserId),
}

/// Whether messages are sent, and whether tokens also go in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Tokens in the answers, as the reference does for reset tokens
    /// (dev); messages queued too when `sends` (a channel is set).
    InResponse { sends: bool },
    /// Tokens only by message; the answer is the same whether the email
    /// is registered or not (production).
    Queued,
}

impl Delivery {
    /// Whether messages are queued at all.
    pub fn sends(self) -> bool {
        match self {
            Delivery::InResponse { sends } => sends,
            Delivery::Queued => true,
        }
    }
}

/// The rules the use cases follow, beyond lifetimes.
#[derive(Debug, Clone)]
pub struct Rules {
    pub lifetimes: Lifetimes,
    pub policy: PasswordPolicy,
    /// Sessions a user may hold at once; a new login ends the oldest past
    /// this (1 gives the reference's one session per user).
    pub max_sessions_per_user: usize,
    pub delivery: Delivery,
    /// Refuse logins of accounts whose address is not verified (403
    /// `email not verified`, after the password check).
    pub require_verified_email: bool,
    /// Messages that may wait in the delivery queue.
    pub queue_max: usize,
    /// Account events are queued for `--events-webhook`.
    pub events: bool,
    /// The issuer an authenticator app shows for a second factor
    /// (`--totp-issuer`).
    pub totp_issuer: String,
}

impl Rules {
    /// The dev profile's rules with default lifetimes and no delivery.
    pub fn dev() -> Rules {
        Rules {
            lifetimes: Lifetimes::default(),
            policy: PasswordPolicy::DEV,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS,
            delivery: Delivery::InResponse { sends: false },
            require_verified_email: false,
            queue_max: QUEUE_MAX,
            events: false,
            totp_issuer: DEFAULT_TOTP_ISSUER.to_owned(),
        }
    }
}

/// How a login attempt ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A new session.
    Ok,
    /// Unknown email or wrong password (one case, as in the answer).
    WrongPassword,
    /// Refused before any bcrypt work while a delay runs (429), or the
    /// client held all its places in the bcrypt queue.
    Throttled,
    /// Refused because the account (or the known device) reached its
    /// lockout: 429 like a delay, told apart only here.
    Locked,
    /// The right password of an account whose address is not verified
    /// (`--require-verified-email`).
    Unverified,
    /// The right password of an account with a second factor, without a
    /// code.
    TotpRequired,
    /// The right password and a wrong or replayed second-factor code.
    WrongTotp,
    /// Not decided: the bcrypt queue was full, the store or the throttle
    /// counts failed.
    Error,
}

impl LoginOutcome {
    /// Every outcome, in the order of [`LoginOutcome::index`].
    pub const ALL: [LoginOutcome; 8] = [
        LoginOutcome::Ok,
        LoginOutcome::WrongPassword,
        LoginOutcome::Throttled,
        LoginOutcome::Locked,
        LoginOutcome::Unverified,
        LoginOutcome::TotpRequired,
        LoginOutcome::WrongTotp,
        LoginOutcome::Error,
    ];

    /// The outcome's name, as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::WrongPassword => "wrong_password",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Locked => "locked",
            LoginOutcome::Unverified => "unverified",
            LoginOutcome::TotpRequired => "totp_required",
            LoginOutcome::WrongTotp => "wrong_totp",
            LoginOutcome::Error => "error",
        }
    }

    /// Its place in [`LoginOutcome::ALL`], to index pre-resolved counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Watches the use cases for what an operator counts (the metrics), so
/// that `auth` stays free of any metrics library or HTTP notion.
pub trait Observer: Send + Sync {
    /// A login attempt ended so.
    fn login(&self, outcome: LoginOutcome);
}

/// `--totp-issuer`'s default.
pub const DEFAULT_TOTP_ISSUER: &str = "authd";

/// Sessions per user by default: enough for every device a person owns,
/// few enough that a list of them stays readable and a leaked password
/// cannot pile up sessions without bound.
pub const DEFAULT_MAX_SESSIONS: usize = 100;

/// The most `--max-sessions-per-user` allows: the embedded store keeps a
/// user's session list in one record of at most 16 KiB (48 bytes a
/// session), read and rewritten by every login and logout of the user.
pub const MAX_SESSIONS_LIMIT: usize = 256;

/// The authentication service.
pub struct Auth {
    store: Arc<dyn RequestStore>,
    hasher: Hasher,
    rules: Rules,
    limits: Limits,
    audit: Audit,
    /// A hash with the configured scheme that matches no password, verified when
    /// the email is unknown so that case costs the same as a wrong password.
    /// Made at start for a server; on first need for an admin command,
    /// which rarely needs it.
    dummy_hash: OnceLock<String>,
    /// How long a failed verification at the configured cost takes.
    verify_time: login::VerifyTime,
    /// Rung when a message is queued.
    bell: Arc<Bell>,
    /// Told how logins end, when metrics are kept.
    observer: Option<Arc<dyn Observer>>,
    /// Seals second-factor secrets under the server key (a server has
    /// one; admin commands that never see a secret need none).
    totp_sealer: Option<crate::totp::Sealer>,
}

impl Auth {
    /// Builds the service; hashes one random password for the dummy hash.
    pub fn new(
        store: Arc<dyn RequestStore>,
        hasher: Hasher,
        rules: Rules,
        limits: Limits,
        audit: Audit,
    ) -> Result<Auth, AuthError> {
        let auth = Auth::for_admin(store, hasher, rules, limits, audit);
        auth.dummy_hash()?;
        // A first measure of a verification at the configured cost, so
        // that padding holds from the first failed login on.
        if let Some(hash) = auth.dummy_hash.get() {
            let started = std::time::Instant::now();
            let filler = Password::parse("measures a verification")
                .map_err(|e| AuthError::Internal(e.to_string()))?;
            auth.hasher.verify(&filler, hash)?;
            auth.verify_time.observe(started.elapsed());
        }
        Ok(auth)
    }

    /// [`Auth::new`] without making the dummy hash before it is needed
    /// (the admin commands).
    pub fn for_admin(
        store: Arc<dyn RequestStore>,
        hasher: Hasher,
        rules: Rules,
        limits: Limits,
        audit: Audit,
    ) -> Auth {
        Auth {
            store,
            hasher,
            rules,
            limits,
            audit,
            dummy_hash: OnceLock::new(),
            verify_time: login::VerifyTime::default(),
            bell: Arc::default(),
            observer: None,
            totp_sealer: None,
        }
    }

    /// This service, sealing second-factor secrets with `sealer`.
    pub fn with_totp_sealer(self, sealer: crate::totp::Sealer) -> Auth {
        Auth {
            totp_sealer: Some(sealer),
            ..self
        }
    }

    /// This service, telling `observer` how logins end.
    pub fn with_observer(self, observer: Arc<dyn Observer>) -> Auth {
        Auth {
            observer: Some(observer),
            ..self
        }
    }

    /// The dummy hash, made on first use.
    fn dummy_hash(&self) -> Result<&str, AuthError> {
        if let Some(hash) = self.dummy_hash.get() {
            return Ok(hash);
        }
        let filler = Token::generate()?;
        let filler = Password::parse(filler.as_str())
            .map_err(|e| AuthError::Internal(format!("dummy password: {e}")))?;
        let hash = self.hasher.hash(&filler)?;
        Ok(self.dummy_hash.get_or_init(|| hash))
    }

    /// The hash pool, for its counters and scheme.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// How long a new password may be: what the configured algorithm
    /// reads exactly.
    pub fn password_limit(&self) -> crate::user::PasswordLimit {
        self.hasher.scheme().password_limit()
    }

    /// The store, for what is not a use case (health checks, shutdown).
    pub fn store(&self) -> &dyn RequestStore {
        &*self.store
    }

    /// Whether the store answers (for health checks).
    pub fn ping(&self) -> Result<(), AuthError> {
        Ok(self.store.ping()?)
    }

    /// The configured lifetimes.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.rules.lifetimes
    }

    /// The audit log the use cases write.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Writes one audit line for `caller`.
    fn record(&self, event: Event, caller: &Caller, user: Option<UserId>, email: Option<&str>) {
        self.audit.record(event, caller.ip, user, email, None);
    }

    /// Writes one audit line about what `caller` typed as an email: the
    /// address and its user when it is registered, else only its keyed
    /// hash (a password typed into the email field stays out of the log).
    fn record_typed(&self, event: Event, caller: &Caller, typed: &str, route: Option<&str>) {
        if !self.audit.enabled() {
            return;
        }
        let user = Email::parse(typed)
            .ok()
            .and_then(|email| self.store.user_by_email(&email).ok());
        match user {
            Some(user) => self.audit.record(
                event,
                caller.ip,
                Some(user.id),
                Some(user.email.as_str()),
                route,
            ),
            None => self.audit.record_unregistered(
                event,
                caller.ip,
                &self.limits.email_hmac(typed),
                route,
            ),
        }
    }

    /// Passes a throttle's verdict through, logging a refusal as a
    /// `throttled` audit event for `route`.
    fn throttled(
        &self,
        verdict: Result<(), AuthError>,
        caller: &Caller,
        email: &str,
        route: &str,
    ) -> Result<(), AuthError> {
        verdict.inspect_err(|e| {
            if matches!(e, AuthError::Throttled(_)) {
                self.record_typed(Event::Throttled, caller, email, Some(route));
            }
        })
    }

    /// Queues `intent` for the delivery worker, if messages are sent:
    /// durably (on disk, or committed, before the answer), and the worker
    /// is woken. A full queue is `QueueFull` (503), so that a request
    /// whose whole point is the message is not answered as done.
    ///
    /// Messages anyone can have sent to an address (a reset or a
    /// verification asked for by address, and an email change's token,
    /// which anyone with an account can aim at any address) are limited
    /// per address and in
    /// all ([`Limits::delivery`]); one over a limit is dropped and logged,
    /// never said in the answer (which would tell whether the address has
    /// an account).
    fn send(&self, caller: &Caller, intent: Intent) -> Result<(), AuthError> {
        if !self.rules.delivery.sends() {
            return Ok(());
        }
        if intent.user.is_none()
            || matches!(
                intent.kind,
                Topic::Message(Kind::Reset | Kind::Verify | Kind::EmailChange)
            )
        {
            if let Err(e) = self.limits.delivery(&intent.to) {
                eprintln!(
                    "authd: a {} message was not sent: {e} (too many to one address, or in all)",
                    intent.kind
                );
                return Ok(());
            }
        }
        let intent = Intent {
            ip: Some(caller.ip.to_string()),
            ..intent
        };
        self.store
            .enqueue(&intent, crate::clock::unix_millis(), self.rules.queue_max)
            .map_err(|e| match e {
                StoreError::QueueFull => AuthError::QueueFull,
                other => other.into(),
            })?;
        self.bell.ring();
        Ok(())
    }

    /// [`Auth::send`] for a message that follows a change already made
    /// (a notice, the verification after a registration): the change
    /// stands whether or not the queue takes it, so a failure is only
    /// logged.
    fn send_after(&self, caller: &Caller, intent: Intent) {
        let kind = intent.kind;
        if let Err(e) = self.send(caller, intent) {
            eprintln!("authd: a {kind} message was not queued: {e}");
        }
    }

    /// Queues `event` about `user` for the events webhook, if one is set;
    /// the change it reports stands whatever happens to it (logged).
    fn announce(&self, caller: &Caller, event: AccountEvent, user: &User) {
        if !self.rules.events {
            return;
        }
        let intent = Intent {
            kind: Topic::Event(event),
            to: user.email.as_str().to_owned(),
            user: Some(user.id),
            new_email: None,
            token: None,
            ip: Some(caller.ip.to_string()),
        };
        let queued = self
            .store
            .enqueue(&intent, crate::clock::unix_millis(), self.rules.queue_max);
        match queued {
            Ok(_) => self.bell.ring(),
            Err(e) => eprintln!("authd: a {} event was not queued: {e}", event.name()),
        }
    }

    /// Rung when a message is queued: the delivery worker waits on it.
    pub fn bell(&self) -> &Arc<Bell> {
        &self.bell
    }

    fn check_policy(&self, password: &Password, email: &Email) -> Result<(), AuthError> {
        self.rules
            .policy
            .check(password.expose(), email.key())
            .map_err(AuthError::WeakPassword)
    }

    /// Removes every expired session and one-time token, and forgets quiet
    /// throttle entries; returns how many sessions and tokens went. Run
    /// periodically so the stores stay proportional to live records even
    /// for users who never come back.
    pub fn sweep_expired(&self) -> Result<(usize, usize), AuthError> {
        let now = crate::clock::unix_millis();
        let lifetimes = &self.rules.lifetimes;
        // Each sweep runs whatever another one met: a damaged record in one
        // must not stop the others.
        let sessions = self.store.expire_sessions(
            now.saturating_sub(millis(lifetimes.session)),
            now.saturating_sub(millis(lifetimes.session_idle)),
        );
        // Tokens older than the longest lifetime of any purpose; a
        // redemption also checks its own purpose's (shortened) lifetime.
        let longest = lifetimes.reset_token.max(lifetimes.verify_token);
        let tokens = self
            .store
            .expire_tokens(now, now.saturating_sub(millis(longest)));
        let throttles = self.limits.sweep();
        let (sessions, tokens) = (sessions?, tokens?);
        throttles.map_err(|e| AuthError::ThrottleUnavailable(e.0))?;
        Ok((sessions, tokens))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::store::SledStore;

    /// A service on a fresh sled store with dev rules.
    pub fn auth_with(rules: Rules) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let hasher = Hasher::start(2, 8, 4).unwrap();
        let limits = Limits::new(limits::LimitSettings::default());
        let auth = Auth::new(Arc::new(store), hasher, rules, limits, Audit::new(false)).unwrap();
        (dir, auth)
    }

    pub fn auth() -> (tempfile::TempDir, Auth) {
        auth_with(Rules::dev())
    }

    pub fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    pub fn password(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    pub fn caller() -> Caller {
        Caller {
            ip: "192.0.2.1".parse().unwrap(),
            local: false,
            user_agent: Some("test".to_owned()),
        }
    }
}
