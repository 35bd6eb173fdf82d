//! Logging in: `POST /sessions`, and the reference's `valid_login` and
//! `create_session`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::limits::Budget;
use super::{Auth, AuthError, Caller, LoginOutcome};
use crate::audit::Event;
use crate::clock::unix_millis;
use crate::device::DeviceCookie;
use crate::hasher::{HashKey, OWN_WORK};
use crate::message::Kind;
use crate::session::{kept_user_agent, Session, SessionId};
use crate::store::{StoreError, UserChange};
use crate::token::Token;
use crate::user::{Email, Password, PasswordLimit, User};

/// A successful login: the user, the new session's token, and the device
/// cookie its client now holds (with device cookies on: the production
/// profile).
#[derive(Debug)]
pub struct LoggedIn {
    pub user: User,
    pub token: Token,
    pub device: Option<DeviceCookie>,
}

impl Auth {
    /// Logs `caller` in with what it typed: 429 (before any bcrypt work)
    /// while the account or the address is backing off; otherwise one
    /// bcrypt verification whatever was typed. As the reference looks up
    /// whatever it is given, an email that cannot be an address or a
    /// password no account can have is a wrong pair like any other,
    /// counted against what was typed. Success opens a new session (the
    /// user's oldest end past the per-user cap), ends the session the
    /// client presented with its login (`replacing`: its cookie is about to
    /// be overwritten, so nothing would ever end it otherwise) and lifts
    /// the account's backoff; both outcomes are audited.
    ///
    /// A client that presents no device cookie; see
    /// [`Auth::log_in_from_device`].
    pub fn log_in(
        &self,
        caller: &Caller,
        typed_email: &str,
        typed_password: &str,
        replacing: Option<&Token>,
    ) -> Result<(User, Token), AuthError> {
        self.log_in_from_device(caller, typed_email, typed_password, None, replacing, None)
            .map(|login| (login.user, login.token))
    }

    /// [`Auth::log_in`] from a client presenting the device cookie
    /// `device`. With device cookies on (production), a cookie genuine for
    /// the account typed makes the attempt count against that device's
    /// own failure budget instead of the account's (which every device it
    /// does not know shares), so guesses from elsewhere never lock the
    /// owner out of a browser they have logged in with. A success clears
    /// the device's backoff along with the account's, and gives the
    /// client its device cookie: the same device renewed, or a new one.
    /// Without device cookies (dev) `device` is ignored and none is given.
    ///
    /// An account with a second factor enabled also needs `typed_totp`, a
    /// current code or a recovery code, checked after the password: 401
    /// `totp required` without one (not a failed attempt: the password was
    /// right), 401 `invalid totp code` for a wrong or replayed one (a
    /// failed attempt like a wrong password).
    pub fn log_in_from_device(
        &self,
        caller: &Caller,
        typed_email: &str,
        typed_password: &str,
        typed_totp: Option<&str>,
        replacing: Option<&Token>,
        device: Option<&DeviceCookie>,
    ) -> Result<LoggedIn, AuthError> {
        // Checked with no store read, so the attempt still takes its place
        // before any other work.
        let budget = self.limits.budget(typed_email, device);
        self.throttled(
            self.limits.reserve_login(caller, typed_email, &budget),
            caller,
            typed_email,
            "POST /sessions",
        )
        .inspect_err(|e| {
            if let Some(observer) = &self.observer {
                // A refusal is a lockout or a delay: only the counts say
                // which, so they are read only when someone is counting.
                let outcome = match e {
                    AuthError::Throttled(_) if self.limits.locked_out(typed_email, &budget) => {
                        LoginOutcome::Locked
                    }
                    other => login_outcome(other),
                };
                observer.login(outcome);
            }
        })?;
        let outcome = self.limits.reserve_success(typed_email).and_then(|()| {
            // The bcrypt work, in this address's turns of the queue.
            // Any length either algorithm reads: see Password::parse_for.
            let typed = Password::parse_for(typed_password, PasswordLimit::Long);
            let attempt = match (Email::parse(typed_email), typed) {
                (Ok(email), Ok(password)) => self.log_in_as(caller, &email, &password, typed_totp),
                _ => self.refuse_login(caller.ip).map(|never| match never {}),
            };
            // A success reserved and not used goes back.
            attempt.inspect_err(|_| self.limits.success_not_used(typed_email))
        });
        if let Some(observer) = &self.observer {
            observer.login(match &outcome {
                Ok(_) => LoginOutcome::Ok,
                Err(e) => login_outcome(e),
            });
        }
        match outcome {
            Ok((user, token)) => {
                if let Some(old) = replacing {
                    // Best effort: the login itself has succeeded.
                    if let Err(e) = self.store.end_session(&old.hash()) {
                        eprintln!("authd: could not end the session a login replaced: {e}");
                    }
                }
                self.limits.login_succeeded(caller);
                self.limits.account_recovered(typed_email);
                if let Budget::Device(known) = &budget {
                    self.limits.device_recovered(known);
                }
                let device = self
                    .limits
                    .device_cookie(typed_email, &budget)
                    .unwrap_or_else(|e| {
                        // The login has succeeded: without its cookie the
                        // browser is only an unknown device.
                        eprintln!("authd: cannot issue a device cookie: {e}");
                        None
                    });
                self.record(
                    Event::LoginSuccess,
                    caller,
                    Some(user.id),
                    Some(user.email.as_str()),
                );
                Ok(LoggedIn {
                    user,
                    token,
                    device,
                })
            }
            Err(e) => {
                if matches!(e, AuthError::InvalidCredentials) {
                    // Counted already, when the attempt was reserved.
                    self.record_typed(Event::LoginFailure, caller, typed_email, None);
                } else if matches!(e, AuthError::WrongTotp) {
                    // Counted as well, and audited where it was refused.
                } else {
                    self.limits
                        .login_not_attempted(caller, typed_email, &budget);
                }
                Err(e)
            }
        }
    }

    /// Credentials in, session token out: `valid_login` then a new session.
    ///
    /// A stored hash of the other algorithm, or weaker or other parameters
    /// than configured ([`crate::hasher::Hasher::needs_rehash`]), is
    /// replaced by a fresh hash of the password just verified (rehash on
    /// login), in the same write as the session. If the hash queue is full
    /// at that moment, or the password is longer than bcrypt reads (set
    /// under argon2id, now configured bcrypt), the login still succeeds and
    /// the old hash stays. A hash of the password as typed (made before
    /// authd normalised, or imported) is replaced by one of its NFC form
    /// the same way.
    ///
    /// With a second factor enabled, its code is checked after the
    /// password and its step (or recovery code) written with the session,
    /// on the condition that it is still unused.
    fn log_in_as(
        &self,
        caller: &Caller,
        email: &Email,
        password: &Password,
        typed_totp: Option<&str>,
    ) -> Result<(User, Token), AuthError> {
        let user = self.valid_login_for(caller.ip, email, password)?;
        // Said only to whoever knows the password.
        if self.rules.require_verified_email && !user.email_verified {
            return Err(AuthError::EmailNotVerified);
        }
        let mut changes = Vec::with_capacity(2);
        if let Some(totp) = user.totp_enabled() {
            // An empty field is no code (a form's blank input), not a
            // wrong one.
            let typed = typed_totp
                .filter(|code| !code.trim().is_empty())
                .ok_or(AuthError::TotpRequired)?;
            changes.push(self.second_factor(caller, &user, totp, typed, "POST /sessions")?);
        }
        if !user.password_normalized || self.hasher.needs_rehash(&user.hashed_password) {
            if let Ok(rehashed) = self.hasher.hash_for(caller.ip, password) {
                changes.push(UserChange::HashedPassword(rehashed));
            }
        }
        let token = self
            .open_session(caller, &user, &changes)
            .map_err(|e| match e {
                // The code's step or recovery code was used by a login
                // that raced this one (or the password changed meanwhile).
                AuthError::InvalidCredentials if user.totp_enabled().is_some() => {
                    AuthError::WrongTotp
                }
                other => other,
            })?;
        if changes
            .iter()
            .any(|change| matches!(change, UserChange::TotpRecovery(_)))
        {
            // Someone signed in without the device: its owner should know.
            self.send_after(
                caller,
                super::account::notice(Kind::RecoveryCodeUsed, &user, None),
            );
        }
        Ok((user, token))
    }

    /// Checks credentials and returns the user they belong to (the
    /// reference's `valid_login`).
    ///
    /// An unknown email is verified against the dummy hash, so both failure
    /// cases cost one bcrypt verification and answer alike.
    pub fn valid_login(&self, email: &Email, password: &Password) -> Result<User, AuthError> {
        self.valid_login_for(OWN_WORK, email, password)
    }

    /// [`Auth::valid_login`], its bcrypt work done in `key`'s turns.
    pub(super) fn valid_login_for(
        &self,
        key: HashKey,
        email: &Email,
        password: &Password,
    ) -> Result<User, AuthError> {
        match self.store.user_by_email(email) {
            Ok(user) => {
                let started = Instant::now();
                if self.hasher.verify_for(
                    key,
                    password,
                    &user.hashed_password,
                    user.password_normalized,
                )? {
                    return Ok(user);
                }
                if self.hasher.is_current(&user.hashed_password) {
                    self.verify_time.observe(started.elapsed());
                } else {
                    // A hash made otherwise (a lower cost, the other
                    // algorithm: before the configuration changed, or
                    // imported) may answer sooner: pad the failure to a
                    // verification with the configured scheme, so the
                    // time does not tell such accounts apart. (A slower
                    // one is not padded: padding only adds.)
                    self.verify_time.pad(started.elapsed());
                }
                Err(AuthError::InvalidCredentials)
            }
            Err(StoreError::NotFound) => {
                let started = Instant::now();
                self.hasher
                    .verify_for(key, password, self.dummy_hash()?, true)?;
                self.verify_time.observe(started.elapsed());
                Err(AuthError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a login whose email or password cannot belong to any account
    /// (malformed), after the same bcrypt work a real check costs, so the
    /// answer and its time are those of an unknown address.
    pub(super) fn refuse_login(&self, key: HashKey) -> Result<std::convert::Infallible, AuthError> {
        let placeholder = Password::parse("not a password of anyone")
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.hasher
            .verify_for(key, &placeholder, self.dummy_hash()?, true)?;
        Err(AuthError::InvalidCredentials)
    }

    /// Starts a new session for `user` (the reference's `create_session`)
    /// and returns the token for the cookie. Only its hash is stored.
    pub fn create_session(&self, caller: &Caller, user: &User) -> Result<Token, AuthError> {
        self.open_session(caller, user, &[])
    }

    /// Writes a new session, with `changes` to the user (a rehashed
    /// password, a second factor's step), only if the password hash is
    /// still the one the caller checked: a login must not outlive a
    /// password change that raced it.
    fn open_session(
        &self,
        caller: &Caller,
        user: &User,
        changes: &[UserChange],
    ) -> Result<Token, AuthError> {
        let token = Token::generate()?;
        let now = unix_millis();
        let session = Session {
            id: SessionId::generate()?,
            token_hash: token.hash(),
            user: user.id,
            created_at: now,
            last_seen: now,
            user_agent: kept_user_agent(caller.user_agent.as_deref()),
            ip: Some(caller.ip.to_string()),
        };
        self.store
            .open_session(
                &session,
                &user.hashed_password,
                changes,
                self.rules.max_sessions_per_user,
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => {
                    AuthError::InvalidCredentials
                }
                other => other.into(),
            })?;
        Ok(token)
    }
}

/// How a login that ended in `error` is counted (a lockout is told from
/// a delay where the reservation is refused).
fn login_outcome(error: &AuthError) -> LoginOutcome {
    match error {
        AuthError::InvalidCredentials => LoginOutcome::WrongPassword,
        AuthError::Throttled(_) => LoginOutcome::Throttled,
        AuthError::EmailNotVerified => LoginOutcome::Unverified,
        AuthError::TotpRequired => LoginOutcome::TotpRequired,
        AuthError::WrongTotp => LoginOutcome::WrongTotp,
        _ => LoginOutcome::Error,
    }
}

/// How long a failed verification with the configured scheme takes, as
/// last seen: what a failure against a hash made otherwise is padded to.
#[derive(Debug, Default)]
pub(super) struct VerifyTime {
    /// Nanoseconds, a moving average (0 until the first is seen).
    nanos: AtomicU64,
    /// Verifications taken in, for tests (which never assert on time).
    #[cfg(test)]
    observed: AtomicU64,
}

impl VerifyTime {
    /// Takes in one more verification at the configured cost (a queue wait
    /// included: what a client sees is what must match).
    pub(super) fn observe(&self, took: Duration) {
        #[cfg(test)]
        self.observed.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.nanos.load(Ordering::Relaxed);
        // An average over the last few, so one slow moment moves it little.
        let new = if old == 0 {
            took
        } else {
            old - old / 4 + took / 4
        };
        self.nanos.store(new, Ordering::Relaxed);
    }

    /// Sleeps until a verification that took `took` has taken as long as
    /// one at the configured cost.
    pub(super) fn pad(&self, took: Duration) {
        let target = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
        if let Some(rest) = target.checked_sub(took) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::Audit;
    use crate::auth::limits::{LimitSettings, Limits};
    use crate::auth::test_support::*;
    use crate::auth::Rules;
    use crate::device::DeviceKeys;
    use crate::hasher::Hasher;
    use crate::store::SledStore;

    /// Under argon2id the dummy hash is argon2id, and a failure against a
    /// stored bcrypt hash is padded to the argon2id time rather than taken
    /// as a sample of it (which would drag the padding target down to
    /// bcrypt's). Counted, never timed.
    #[test]
    fn under_argon2id_failures_take_argon2id_time_whatever_the_stored_kind() {
        use crate::hasher::{Argon2Params, Scheme};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let scheme = Scheme::Argon2id(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        });
        let hasher = Hasher::start_scheme(2, 8, scheme, 6).unwrap();
        let limits = Limits::new(LimitSettings::default());
        let auth = Auth::new(
            Arc::new(store),
            hasher,
            Rules::dev(),
            limits,
            Audit::new(false),
        )
        .unwrap();
        assert!(auth.dummy_hash().unwrap().starts_with("$argon2id$"));
        let old = Hasher::start(1, 1, 4).unwrap();
        auth.store()
            .create_user(&crate::user::NewUser {
                email: email("old@x.io"),
                hashed_password: old.hash(&password("pw")).unwrap(),
                password_normalized: true,
                email_verified: true,
                created_at: None,
                totp: None,
            })
            .unwrap();
        auth.register_user(&email("new@x.io"), &password("pw"))
            .unwrap();
        let observed = || auth.verify_time.observed.load(Ordering::Relaxed);
        let wrong = |address: &str| {
            assert!(matches!(
                auth.log_in(&caller(), address, "wrong", None),
                Err(AuthError::InvalidCredentials)
            ));
        };
        let before = observed();
        wrong("old@x.io");
        assert_eq!(
            observed(),
            before,
            "a bcrypt failure is padded, not sampled"
        );
        wrong("new@x.io");
        wrong("nobody@x.io");
        assert_eq!(observed(), before + 2);
        // The old account logs in, and its hash is argon2id from then on.
        auth.log_in(&caller(), "old@x.io", "pw", None).unwrap();
        let stored = auth.store().user_by_email(&email("old@x.io")).unwrap();
        assert!(stored.hashed_password.starts_with("$argon2id$"));
    }

    #[test]
    fn malformed_input_is_a_wrong_pair_after_one_verify() {
        let (_dir, auth) = auth();
        let verifies = auth.hasher().stats().verifies();
        for (email, password) in [("not an email", "pw"), ("a@x.io", ""), ("", "")] {
            assert!(matches!(
                auth.log_in(&caller(), email, password, None),
                Err(AuthError::InvalidCredentials)
            ));
        }
        assert_eq!(auth.hasher().stats().verifies(), verifies + 3);
    }

    #[test]
    fn the_oldest_session_ends_past_the_cap() {
        let (_dir, auth) = auth_with(Rules {
            max_sessions_per_user: 2,
            ..Rules::dev()
        });
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let tokens: Vec<_> = (0..3)
            .map(|_| auth.log_in(&caller(), "a@x.io", "pw", None).unwrap().1)
            .collect();
        assert!(matches!(
            auth.get_user_from_session_id(&tokens[0]),
            Err(AuthError::InvalidSession)
        ));
        assert!(auth.get_user_from_session_id(&tokens[1]).is_ok());
        assert!(auth.get_user_from_session_id(&tokens[2]).is_ok());
    }

    /// A service whose logins tell devices apart: two free failures, and
    /// locked out at two.
    fn auth_with_devices() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let limits = Limits::new(LimitSettings {
            login_free_failures: 2,
            lockout_failures: 2,
            ..LimitSettings::default()
        })
        .with_devices(DeviceKeys::new([5; 32], None));
        let hasher = Hasher::start(2, 8, 4).unwrap();
        let auth = Auth::new(
            Arc::new(store),
            hasher,
            Rules::dev(),
            limits,
            Audit::new(false),
        )
        .unwrap();
        (dir, auth)
    }

    #[test]
    fn a_known_device_logs_in_while_unknown_ones_are_locked_out() {
        let (_dir, auth) = auth_with_devices();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let log_in = |password: &str, device: Option<&DeviceCookie>| {
            auth.log_in_from_device(&caller(), "a@x.io", password, None, None, device)
        };
        let cookie = log_in("pw", None).unwrap().device.unwrap();
        for _ in 0..2 {
            assert!(matches!(
                log_in("wrong", None),
                Err(AuthError::InvalidCredentials)
            ));
        }
        let verifies = auth.hasher().stats().verifies();
        assert!(matches!(log_in("pw", None), Err(AuthError::Throttled(_))));
        // A forged cookie is an unknown device.
        let forged = DeviceCookie::parse(&"A".repeat(64)).unwrap();
        assert!(matches!(
            log_in("pw", Some(&forged)),
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(auth.hasher().stats().verifies(), verifies);
        // The owner's browser: in, and its cookie renewed (the same device).
        let login = log_in("pw", Some(&cookie)).unwrap();
        assert_eq!(login.user.email.as_str(), "a@x.io");
        assert_eq!(login.device, Some(cookie.clone()));
        // Its own failures lock out that device only.
        for _ in 0..2 {
            assert!(matches!(
                log_in("wrong", Some(&cookie)),
                Err(AuthError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            log_in("pw", Some(&cookie)),
            Err(AuthError::Throttled(_))
        ));
        let elsewhere = log_in("pw", None).unwrap();
        let new_device = elsewhere.device.unwrap();
        assert_ne!(new_device, cookie);
        assert!(log_in("pw", Some(&new_device)).is_ok());
    }

    /// Remembers every login outcome it is told.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<LoginOutcome>>);

    impl crate::auth::Observer for Seen {
        fn login(&self, outcome: LoginOutcome) {
            self.0.lock().unwrap().push(outcome);
        }
    }

    #[test]
    fn every_login_outcome_is_observed_and_a_lockout_told_from_a_delay() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // Locked out at the first failure; one success per account at
        // once, the next after an hour (a refusal no clock can undo).
        let limits = Limits::new(LimitSettings {
            login_free_failures: 1,
            lockout_failures: 1,
            login_success_burst: 1,
            login_success_refill: std::time::Duration::from_secs(3600),
            ..LimitSettings::default()
        });
        let seen = Arc::new(Seen::default());
        let rules = Rules {
            require_verified_email: true,
            ..Rules::dev()
        };
        let hasher = Hasher::start(2, 8, 4).unwrap();
        let auth = Auth::new(Arc::new(store), hasher, rules, limits, Audit::new(false))
            .unwrap()
            .with_observer(Arc::clone(&seen) as Arc<dyn crate::auth::Observer>);
        for (address, verified) in [("u@x.io", false), ("v@x.io", true), ("w@x.io", true)] {
            auth.store()
                .create_user(&crate::user::NewUser {
                    email: email(address),
                    hashed_password: auth.hasher().hash(&password("pw")).unwrap(),
                    password_normalized: true,
                    email_verified: verified,
                    created_at: None,
                    totp: None,
                })
                .unwrap();
        }
        let log_in = |email: &str, password: &str| auth.log_in(&caller(), email, password, None);
        assert!(matches!(
            log_in("u@x.io", "pw"),
            Err(AuthError::EmailNotVerified)
        ));
        assert!(log_in("v@x.io", "pw").is_ok());
        // The next success of the account waits an hour: a delay.
        assert!(matches!(
            log_in("v@x.io", "pw"),
            Err(AuthError::Throttled(_))
        ));
        assert!(matches!(
            log_in("w@x.io", "wrong"),
            Err(AuthError::InvalidCredentials)
        ));
        // One failure reaches the lockout: 429 as well, counted apart.
        assert!(matches!(
            log_in("w@x.io", "pw"),
            Err(AuthError::Throttled(_))
        ));
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                LoginOutcome::Unverified,
                LoginOutcome::Ok,
                LoginOutcome::Throttled,
                LoginOutcome::WrongPassword,
                LoginOutcome::Locked,
            ]
        );
    }

    #[test]
    fn without_device_keys_no_cookie_is_given_or_read() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let (_dir2, other) = auth_with_devices();
        other
            .register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let cookie = other
            .log_in_from_device(&caller(), "a@x.io", "pw", None, None, None)
            .unwrap()
            .device
            .unwrap();
        let login = auth
            .log_in_from_device(&caller(), "a@x.io", "pw", None, None, Some(&cookie))
            .unwrap();
        assert_eq!(login.device, None);
    }
}
