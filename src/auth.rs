//! The service rules: the reference's `Auth` class, without its flaws.
//!
//! Registration, login, sessions and password reset live here, on top of a
//! [`UserStore`] and the bcrypt [`Hasher`]. Nothing here knows about HTTP;
//! the `http` module maps [`AuthError`] to statuses in one place.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{millis, unix_millis};
use crate::hasher::{HashError, Hasher};
use crate::policy::PasswordPolicy;
use crate::store::{Change, Lookup, Precondition, StoreError, UserStore};
use crate::token::{RandomError, Token};
use crate::user::{Email, Password, ResetGrant, Session, User};

/// Outcomes of the service rules that are not success.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately one case.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// No cookie, a malformed one, or a session that is not current.
    #[error("no valid session")]
    InvalidSession,
    /// `POST /reset_password` for an email nobody registered.
    #[error("email not registered")]
    UnknownEmail,
    /// A reset token that is malformed, unknown, used, replaced, or paired
    /// with an email that does not own it.
    #[error("invalid reset token")]
    InvalidResetToken,
    /// The new password does not meet the password policy; the text says
    /// why, for the person choosing it.
    #[error("password {0}")]
    WeakPassword(String),
    /// The bcrypt queue is full: try again shortly.
    #[error("too many password operations in progress")]
    Busy,
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
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl From<RandomError> for AuthError {
    fn from(e: RandomError) -> Self {
        AuthError::Internal(e.to_string())
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
}

impl Default for Lifetimes {
    /// 24 h absolute (Ory Kratos's default session lifespan), 30 min idle
    /// (OWASP's bound for low-risk applications), 30 min reset tokens
    /// (PocketBase, Rauthy).
    fn default() -> Self {
        Lifetimes {
            session: Duration::from_secs(24 * 3600),
            session_idle: Duration::from_secs(30 * 60),
            reset_token: Duration::from_secs(30 * 60),
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

    fn session_expired(&self, session: &Session, now: u64) -> bool {
        now >= session.created_at.saturating_add(millis(self.session))
            || now >= session.last_seen.saturating_add(millis(self.session_idle))
    }

    fn reset_expired(&self, grant: &ResetGrant, now: u64) -> bool {
        now >= grant.created_at.saturating_add(millis(self.reset_token))
    }
}

/// The authentication service.
pub struct Auth {
    store: Arc<dyn UserStore>,
    hasher: Hasher,
    lifetimes: Lifetimes,
    policy: PasswordPolicy,
    /// A hash at the configured cost that matches no password, verified when
    /// the email is unknown so that case costs the same as a wrong password.
    dummy_hash: String,
}

impl Auth {
    /// Builds the service; hashes one random password for the dummy hash.
    pub fn new(
        store: Arc<dyn UserStore>,
        hasher: Hasher,
        lifetimes: Lifetimes,
        policy: PasswordPolicy,
    ) -> Result<Auth, AuthError> {
        let filler = Token::generate()?;
        let filler = Password::parse(filler.as_str())
            .map_err(|e| AuthError::Internal(format!("dummy password: {e}")))?;
        let dummy_hash = hasher.hash(&filler)?;
        Ok(Auth {
            store,
            hasher,
            lifetimes,
            policy,
            dummy_hash,
        })
    }

    /// The bcrypt pool, for its counters.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Whether the store answers a read (for health checks).
    pub fn ping(&self) -> Result<(), AuthError> {
        Ok(self.store.ping()?)
    }

    /// The configured lifetimes.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// Registers a new user. A taken email is refused before any bcrypt
    /// work; the store re-checks atomically, so a race still yields one
    /// account.
    pub fn register_user(&self, email: &Email, password: &Password) -> Result<User, AuthError> {
        match self.store.find_user_by(&Lookup::Email(email.clone())) {
            Ok(_) => return Err(AuthError::EmailTaken),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.check_policy(password, email)?;
        let hashed = self.hasher.hash(password)?;
        self.store.add_user(email, &hashed).map_err(|e| match e {
            StoreError::EmailTaken => AuthError::EmailTaken,
            other => other.into(),
        })
    }

    /// Checks credentials and returns the user they belong to.
    ///
    /// An unknown email is verified against the dummy hash, so both failure
    /// cases cost one bcrypt verification and answer alike.
    pub fn valid_login(&self, email: &Email, password: &Password) -> Result<User, AuthError> {
        match self.store.find_user_by(&Lookup::Email(email.clone())) {
            Ok(user) => {
                if self.hasher.verify(password, &user.hashed_password)? {
                    Ok(user)
                } else {
                    Err(AuthError::InvalidCredentials)
                }
            }
            Err(StoreError::NotFound) => {
                self.hasher.verify(password, &self.dummy_hash)?;
                Err(AuthError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Refuses a login whose email or password cannot belong to any account
    /// (malformed), after the same bcrypt work a real check costs, so the
    /// answer and its time are those of an unknown address.
    pub fn refuse_login(&self) -> Result<(User, Token), AuthError> {
        let placeholder = Password::parse("not a password of anyone")
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.hasher.verify(&placeholder, &self.dummy_hash)?;
        Err(AuthError::InvalidCredentials)
    }

    /// Starts a new session for `user`, replacing any previous one, and
    /// returns the token for the cookie. Only its hash is stored.
    pub fn create_session(&self, user: &User) -> Result<Token, AuthError> {
        self.start_session(user, None)
    }

    /// Writes a new session, and a rehashed password if given, only if the
    /// password hash is still the one the caller checked: a login must not
    /// outlive a password change that raced it.
    fn start_session(&self, user: &User, rehashed: Option<String>) -> Result<Token, AuthError> {
        let token = Token::generate()?;
        let now = unix_millis();
        let session = Session {
            token_hash: token.hash(),
            created_at: now,
            last_seen: now,
        };
        let mut changes = vec![Change::Session(Some(session))];
        changes.extend(rehashed.map(Change::HashedPassword));
        self.store
            .update_user(
                user.id,
                &Precondition::PasswordIs(user.hashed_password.clone()),
                &changes,
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => {
                    AuthError::InvalidCredentials
                }
                other => other.into(),
            })?;
        Ok(token)
    }

    /// Credentials in, session token out: `valid_login` then a new session.
    ///
    /// A stored hash of a lower cost than the configured one is replaced by
    /// a fresh hash of the password just verified (rehash on login), in the
    /// same write as the session. If the bcrypt queue is full at that
    /// moment, the login still succeeds and the rehash waits for the next.
    pub fn log_in(&self, email: &Email, password: &Password) -> Result<(User, Token), AuthError> {
        let user = self.valid_login(email, password)?;
        let rehashed = if self.needs_rehash(&user.hashed_password) {
            self.hasher.hash(password).ok()
        } else {
            None
        };
        let token = self.start_session(&user, rehashed)?;
        Ok((user, token))
    }

    fn check_policy(&self, password: &Password, email: &Email) -> Result<(), AuthError> {
        self.policy
            .check(password.expose(), email.key())
            .map_err(AuthError::WeakPassword)
    }

    /// Whether `hash` was made with a lower cost than the configured one.
    fn needs_rehash(&self, hash: &str) -> bool {
        hash.parse::<bcrypt::HashParts>()
            .is_ok_and(|parts| parts.get_cost() < self.hasher.cost())
    }

    /// The user whose current, unexpired session token is `token`.
    ///
    /// An expired session is removed on the spot and answers like an
    /// unknown one. A live one has its idle window extended.
    pub fn get_user_from_session_id(&self, token: &Token) -> Result<User, AuthError> {
        let (user, session) = self.live_session(token)?;
        let now = unix_millis();
        if now.saturating_sub(session.last_seen) >= self.lifetimes.touch_interval() {
            // Best effort: failing to extend the idle window must not fail
            // the request it belongs to.
            if let Err(e) = self.store.touch_session(user.id, &token.hash(), now) {
                eprintln!("authd: could not record session activity: {e}");
            }
        }
        Ok(user)
    }

    /// The user and the session of `token` if it is current and unexpired;
    /// an expired one is removed. Records no activity.
    fn live_session(&self, token: &Token) -> Result<(User, Session), AuthError> {
        let hash = token.hash();
        let user = match self.store.find_user_by(&Lookup::Session(hash)) {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(AuthError::InvalidSession),
            Err(e) => return Err(e.into()),
        };
        let Some(session) = user.session else {
            return Err(AuthError::InvalidSession);
        };
        if self.lifetimes.session_expired(&session, unix_millis()) {
            match self.store.update_user(
                user.id,
                &Precondition::SessionIs(hash),
                &[Change::Session(None)],
            ) {
                Ok(_) | Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            return Err(AuthError::InvalidSession);
        }
        Ok((user, session))
    }

    /// Ends the session `token` on the server. Only that session: if the
    /// user has logged in again meanwhile, the newer session survives.
    pub fn destroy_session(&self, token: &Token) -> Result<User, AuthError> {
        // No activity to record on a session about to end.
        let (user, _) = self.live_session(token)?;
        self.store
            .update_user(
                user.id,
                &Precondition::SessionIs(token.hash()),
                &[Change::Session(None)],
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => AuthError::InvalidSession,
                other => other.into(),
            })
    }

    /// Issues a reset token for `email`, replacing any earlier one.
    pub fn get_reset_password_token(&self, email: &Email) -> Result<(User, Token), AuthError> {
        let user = match self.store.find_user_by(&Lookup::Email(email.clone())) {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(AuthError::UnknownEmail),
            Err(e) => return Err(e.into()),
        };
        let token = Token::generate()?;
        let grant = ResetGrant {
            token_hash: token.hash(),
            created_at: unix_millis(),
        };
        let user = self
            .store
            .update_user(user.id, &Precondition::None, &[Change::Reset(Some(grant))])
            .map_err(|e| match e {
                StoreError::NotFound => AuthError::UnknownEmail,
                other => other.into(),
            })?;
        Ok((user, token))
    }

    /// Sets a new password with a reset token.
    ///
    /// The token must be the current, unexpired one of the user who owns
    /// `email`. It is consumed atomically with the password change (so two
    /// concurrent redemptions cannot both succeed), and the user's session
    /// ends. An expired token is removed.
    pub fn update_password(
        &self,
        email: &Email,
        reset_token: &Token,
        new_password: &Password,
    ) -> Result<User, AuthError> {
        let hash = reset_token.hash();
        let user = match self.store.find_user_by(&Lookup::Reset(hash)) {
            Ok(user) if user.email.key() == email.key() => user,
            Ok(_) | Err(StoreError::NotFound) => return Err(AuthError::InvalidResetToken),
            Err(e) => return Err(e.into()),
        };
        let consume = Precondition::ResetIs(hash);
        if user
            .reset
            .is_some_and(|grant| self.lifetimes.reset_expired(&grant, unix_millis()))
        {
            match self
                .store
                .update_user(user.id, &consume, &[Change::Reset(None)])
            {
                Ok(_) | Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            return Err(AuthError::InvalidResetToken);
        }
        self.check_policy(new_password, &user.email)?;
        let hashed = self.hasher.hash(new_password)?;
        self.store
            .update_user(
                user.id,
                &consume,
                &[
                    Change::HashedPassword(hashed),
                    Change::Reset(None),
                    Change::Session(None),
                ],
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => {
                    AuthError::InvalidResetToken
                }
                other => other.into(),
            })
    }

    /// Removes every expired session and reset token; returns how many of
    /// each. Run periodically so the token indexes stay proportional to
    /// live tokens even for users who never come back.
    pub fn sweep_expired(&self) -> Result<(usize, usize), AuthError> {
        let now = unix_millis();
        let sessions = self.store.expire_sessions(
            now.saturating_sub(millis(self.lifetimes.session)),
            now.saturating_sub(millis(self.lifetimes.session_idle)),
        )?;
        let resets = self
            .store
            .expire_resets(now.saturating_sub(millis(self.lifetimes.reset_token)))?;
        Ok((sessions, resets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let hasher = Hasher::start(2, 8, 4).unwrap();
        let auth = Auth::new(
            Arc::new(store),
            hasher,
            Lifetimes::default(),
            PasswordPolicy::DEV,
        )
        .unwrap();
        (dir, auth)
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn password(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[test]
    fn register_then_log_in() {
        let (_dir, auth) = auth();
        let user = auth
            .register_user(&email("Ann@x.io"), &password("pw"))
            .unwrap();
        assert!(user.hashed_password.starts_with("$2b$04$"));
        assert!(matches!(
            auth.register_user(&email("ann@X.io"), &password("other")),
            Err(AuthError::EmailTaken)
        ));
        assert_eq!(
            auth.valid_login(&email("ANN@x.io"), &password("pw"))
                .unwrap()
                .id,
            user.id
        );
        assert!(matches!(
            auth.valid_login(&email("ann@x.io"), &password("pW")),
            Err(AuthError::InvalidCredentials)
        ));
    }

    #[test]
    fn a_taken_email_costs_no_hash_and_unknown_email_costs_one_verify() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let hashes = auth.hasher().stats().hashes();
        let _ = auth.register_user(&email("a@x.io"), &password("pw"));
        assert_eq!(auth.hasher().stats().hashes(), hashes);
        let verifies = auth.hasher().stats().verifies();
        assert!(matches!(
            auth.valid_login(&email("nobody@x.io"), &password("pw")),
            Err(AuthError::InvalidCredentials)
        ));
        assert_eq!(auth.hasher().stats().verifies(), verifies + 1);
    }

    #[test]
    fn sessions_replace_and_end() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let (_, first) = auth.log_in(&email("a@x.io"), &password("pw")).unwrap();
        let (_, second) = auth.log_in(&email("a@x.io"), &password("pw")).unwrap();
        assert!(matches!(
            auth.get_user_from_session_id(&first),
            Err(AuthError::InvalidSession)
        ));
        // Logging out the replaced session does not end the current one.
        assert!(matches!(
            auth.destroy_session(&first),
            Err(AuthError::InvalidSession)
        ));
        assert!(auth.get_user_from_session_id(&second).is_ok());
        auth.destroy_session(&second).unwrap();
        assert!(matches!(
            auth.get_user_from_session_id(&second),
            Err(AuthError::InvalidSession)
        ));
    }

    #[test]
    fn reset_tokens_are_bound_single_use_and_replaced() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("old"))
            .unwrap();
        auth.register_user(&email("b@x.io"), &password("b"))
            .unwrap();
        assert!(matches!(
            auth.get_reset_password_token(&email("c@x.io")),
            Err(AuthError::UnknownEmail)
        ));
        let (_, older) = auth.get_reset_password_token(&email("a@x.io")).unwrap();
        let (_, token) = auth.get_reset_password_token(&email("a@x.io")).unwrap();
        let new = password("new");
        assert!(matches!(
            auth.update_password(&email("a@x.io"), &older, &new),
            Err(AuthError::InvalidResetToken)
        ));
        // Another user's email with this token: refused, token kept.
        assert!(matches!(
            auth.update_password(&email("b@x.io"), &token, &new),
            Err(AuthError::InvalidResetToken)
        ));
        let (_, session) = auth.log_in(&email("a@x.io"), &password("old")).unwrap();
        auth.update_password(&email("A@x.io"), &token, &new)
            .unwrap();
        assert!(matches!(
            auth.update_password(&email("a@x.io"), &token, &password("again")),
            Err(AuthError::InvalidResetToken)
        ));
        assert!(matches!(
            auth.get_user_from_session_id(&session),
            Err(AuthError::InvalidSession)
        ));
        assert!(auth.valid_login(&email("a@x.io"), &new).is_ok());
        assert!(auth
            .valid_login(&email("a@x.io"), &password("old"))
            .is_err());
        assert!(auth.valid_login(&email("b@x.io"), &password("b")).is_ok());
    }
}
