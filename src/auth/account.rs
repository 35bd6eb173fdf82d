//! A signed-in user's own account: `PUT /password` (a new password, the
//! current one given again) and `DELETE /account`.
//!
//! Both ask for the current password although the caller holds a session:
//! a session left open on a shared computer, or stolen, must not be enough
//! to take the account over or destroy it. That check counts as a login
//! attempt on the account (reserved before the bcrypt work, backing off
//! after the free failures), so a stolen session cannot guess the
//! password faster than a login could.

use super::{Auth, AuthError, Caller};
use crate::audit::Event;
use crate::message::Kind;
use crate::one_time::Purpose;
use crate::outbox::{AccountEvent, Intent, Topic};
use crate::store::{Ends, StoreError, UserChange};
use crate::token::Token;
use crate::user::{Password, User};

/// What `GET /account` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub user: User,
    pub session_count: usize,
}

impl Auth {
    /// The session's user and how many sessions they hold.
    pub fn account(&self, session: &Token) -> Result<AccountView, AuthError> {
        let (_, user) = self.authenticate(session)?;
        let session_count = self.store.sessions_of(user.id)?.len();
        Ok(AccountView {
            user,
            session_count,
        })
    }

    /// Sets a new password for the session's user, after checking the
    /// current one (401 `wrong password`, counted as a failed login) and
    /// the password policy. One write: the new hash (only if the one just
    /// checked is still current), the end of every other session of the
    /// user and of every one-time token; the caller's session stays.
    pub fn change_password(
        &self,
        caller: &Caller,
        token: &Token,
        typed_current: &str,
        new: &Password,
    ) -> Result<User, AuthError> {
        let (session, user) = self.authenticate(token)?;
        self.confirm_password(caller, &user, typed_current, "PUT /password")?;
        self.check_policy(new, &user.email)?;
        let hashed = self.hasher.hash_for(caller.ip, new)?;
        // A link mailed before the change (reset, verification, email
        // change) must not act after it: every token ends, and with the
        // email change's token its pending address.
        let ends = Ends {
            sessions: true,
            tokens: &Purpose::ALL,
            keep_session: Some(session.token_hash),
        };
        let changed = self
            .store
            .update_user(
                user.id,
                Some(&user.hashed_password),
                &[
                    UserChange::HashedPassword(hashed),
                    UserChange::PendingEmail(None),
                ],
                ends,
            )
            .map_err(|e| match e {
                // Changed or deleted meanwhile (a reset, another change):
                // the password given is no longer the current one.
                StoreError::PreconditionFailed | StoreError::NotFound => AuthError::WrongPassword,
                other => other.into(),
            })?;
        self.record(
            Event::PasswordChanged,
            caller,
            Some(changed.id),
            Some(changed.email.as_str()),
        );
        self.send_after(caller, notice(Kind::PasswordChanged, &changed, None));
        self.announce(caller, AccountEvent::PasswordChanged, &changed);
        Ok(changed)
    }

    /// Deletes the session's user, after checking its password (401
    /// `wrong password`, counted as a failed login), with every session and
    /// one-time token of it, in one transaction.
    pub fn delete_account(
        &self,
        caller: &Caller,
        token: &Token,
        typed_password: &str,
    ) -> Result<User, AuthError> {
        let (_, user) = self.authenticate(token)?;
        self.confirm_password(caller, &user, typed_password, "DELETE /account")?;
        self.store.delete_user(user.id).map_err(|e| match e {
            StoreError::NotFound => AuthError::InvalidSession,
            other => other.into(),
        })?;
        self.record(
            Event::UserDeleted,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.send_after(caller, notice(Kind::AccountDeleted, &user, None));
        self.announce(caller, AccountEvent::UserDeleted, &user);
        Ok(user)
    }

    /// Checks that `typed` is `user`'s password, as a login attempt on the
    /// account from `caller`: reserved first (429 while backing off), one
    /// bcrypt verification (padded like a login's), counted when wrong and
    /// audited as a failed login on `route`.
    pub(super) fn confirm_password(
        &self,
        caller: &Caller,
        user: &User,
        typed: &str,
        route: &str,
    ) -> Result<(), AuthError> {
        self.confirm_credentials(caller, user, typed, None, route)
            .map(|_| ())
    }

    /// [`Auth::confirm_password`], and with `typed_code` the second factor
    /// too when the user has one enabled, inside the same counted attempt
    /// (a wrong code is a failed attempt, 401 `invalid totp code`): what
    /// that code changes when it is written comes back. For a user with a
    /// second factor, only a right code with the right password lifts the
    /// account's backoff.
    pub(super) fn confirm_credentials(
        &self,
        caller: &Caller,
        user: &User,
        typed: &str,
        typed_code: Option<&str>,
        route: &str,
    ) -> Result<Option<UserChange>, AuthError> {
        let email = user.email.as_str();
        let budget = self.limits.budget(email, None);
        self.throttled(
            self.limits.reserve_login(caller, email, &budget),
            caller,
            email,
            route,
        )?;
        let outcome = match Password::parse_for(typed, crate::user::PasswordLimit::Long) {
            Ok(password) => self
                .valid_login_for(caller.ip, &user.email, &password)
                .and_then(|found| {
                    if found.id == user.id {
                        Ok(())
                    } else {
                        Err(AuthError::InvalidCredentials)
                    }
                })
                .and_then(|()| match (user.totp_enabled(), typed_code) {
                    (Some(totp), Some(code)) => self
                        .second_factor(caller, user, totp, code, route)
                        .map(Some),
                    _ => Ok(None),
                }),
            Err(_) => self.refuse_login(caller.ip).map(|never| match never {}),
        };
        match outcome {
            // With a second factor, the password alone lifts no backoff:
            // otherwise a right password (a refused new one, say) would
            // wipe the failures wrong codes counted, and codes could be
            // guessed without end.
            Ok(None) if user.totp_enabled().is_some() => {
                self.limits.login_not_attempted(caller, email, &budget);
                Ok(None)
            }
            Ok(change) => {
                self.limits.login_succeeded(caller);
                self.limits.account_recovered(email);
                Ok(change)
            }
            Err(AuthError::InvalidCredentials) => {
                // Counted already, when the attempt was reserved.
                self.record_typed(Event::LoginFailure, caller, email, Some(route));
                Err(AuthError::WrongPassword)
            }
            // Counted too, and audited where it was refused.
            Err(AuthError::WrongTotp) => Err(AuthError::WrongTotp),
            Err(e) => {
                self.limits.login_not_attempted(caller, email, &budget);
                Err(e)
            }
        }
    }
}

/// A notice of `kind` about `user`, to its address; `new_email` says
/// where an address change goes.
pub(super) fn notice(kind: Kind, user: &User, new_email: Option<&str>) -> Intent {
    Intent {
        kind: Topic::Message(kind),
        to: user.email.as_str().to_owned(),
        user: Some(user.id),
        new_email: new_email.map(str::to_owned),
        token: None,
        ip: None,
    }
}
