//! The service rules: the reference's `Auth` class, without its flaws.
//!
//! Registration, login, sessions and password reset live here, on top of a
//! [`UserStore`] and the bcrypt [`Hasher`]. Nothing here knows about HTTP;
//! the `http` module maps [`AuthError`] to statuses in one place.

use std::sync::Arc;

use crate::clock::unix_now;
use crate::hasher::{HashError, Hasher};
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

/// The authentication service.
pub struct Auth {
    store: Arc<dyn UserStore>,
    hasher: Hasher,
    /// A hash at the configured cost that matches no password, verified when
    /// the email is unknown so that case costs the same as a wrong password.
    dummy_hash: String,
}

impl Auth {
    /// Builds the service; hashes one random password for the dummy hash.
    pub fn new(store: Arc<dyn UserStore>, hasher: Hasher) -> Result<Auth, AuthError> {
        let filler = Token::generate()?;
        let filler = Password::parse(filler.as_str())
            .map_err(|e| AuthError::Internal(format!("dummy password: {e}")))?;
        let dummy_hash = hasher.hash(&filler)?;
        Ok(Auth {
            store,
            hasher,
            dummy_hash,
        })
    }

    /// The bcrypt pool, for its counters.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
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

    /// Starts a new session for `user`, replacing any previous one, and
    /// returns the token for the cookie. Only its hash is stored.
    pub fn create_session(&self, user: &User) -> Result<Token, AuthError> {
        let token = Token::generate()?;
        let now = unix_now();
        let session = Session {
            token_hash: token.hash(),
            created_at: now,
            last_seen: now,
        };
        self.store.update_user(
            user.id,
            Precondition::None,
            &[Change::Session(Some(session))],
        )?;
        Ok(token)
    }

    /// Credentials in, session token out: `valid_login` then `create_session`.
    pub fn log_in(&self, email: &Email, password: &Password) -> Result<(User, Token), AuthError> {
        let user = self.valid_login(email, password)?;
        let token = self.create_session(&user)?;
        Ok((user, token))
    }

    /// The user whose current session token is `token`.
    pub fn get_user_from_session_id(&self, token: &Token) -> Result<User, AuthError> {
        match self.store.find_user_by(&Lookup::Session(token.hash())) {
            Ok(user) => Ok(user),
            Err(StoreError::NotFound) => Err(AuthError::InvalidSession),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the session `token` on the server. Only that session: if the
    /// user has logged in again meanwhile, the newer session survives.
    pub fn destroy_session(&self, token: &Token) -> Result<User, AuthError> {
        let user = self.get_user_from_session_id(token)?;
        self.store
            .update_user(
                user.id,
                Precondition::SessionIs(token.hash()),
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
            created_at: unix_now(),
        };
        let user = self
            .store
            .update_user(user.id, Precondition::None, &[Change::Reset(Some(grant))])
            .map_err(|e| match e {
                StoreError::NotFound => AuthError::UnknownEmail,
                other => other.into(),
            })?;
        Ok((user, token))
    }

    /// Sets a new password with a reset token.
    ///
    /// The token must be the current one of the user who owns `email`. It is
    /// consumed atomically with the password change (so two concurrent
    /// redemptions cannot both succeed), and the user's session ends.
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
        let hashed = self.hasher.hash(new_password)?;
        self.store
            .update_user(
                user.id,
                Precondition::ResetIs(hash),
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
}
