//! The administrator's use cases, behind `authd user ...`: the same rules
//! and audit lines as the API, without the throttles (the administrator
//! is on the machine) and without the password policy (the administrator
//! decides).

use super::{Auth, AuthError, Caller};
use crate::audit::Event;
use crate::one_time::Purpose;
use crate::outbox::AccountEvent;
use crate::session::{Session, SessionId};
use crate::store::{Ends, StoreError, UserChange};
use crate::user::{Email, Password, User};

impl Auth {
    /// The user with `email`; `UnknownEmail` if none.
    pub fn find_user(&self, email: &Email) -> Result<User, AuthError> {
        self.store.user_by_email(email).map_err(|e| match e {
            StoreError::NotFound => AuthError::UnknownEmail,
            other => other.into(),
        })
    }

    /// Creates a user (audited as `register`).
    pub fn add_user(
        &self,
        caller: &Caller,
        email: &Email,
        password: &Password,
    ) -> Result<User, AuthError> {
        if self.store.user_by_email(email).is_ok() {
            return Err(AuthError::EmailTaken);
        }
        let hashed = self.hasher.hash(password)?;
        let user = self.store.add_user(email, &hashed).map_err(|e| match e {
            StoreError::EmailTaken => AuthError::EmailTaken,
            other => other.into(),
        })?;
        self.record(
            Event::Register,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.announce(caller, AccountEvent::UserCreated, &user);
        Ok(user)
    }

    /// Sets `email`'s password: every session of the user ends with the
    /// change, in one write, and a pending reset token is dropped (it was
    /// asked for before the change). Lifts the login backoff; audited as
    /// `password_changed`.
    pub fn set_password(
        &self,
        caller: &Caller,
        email: &Email,
        password: &Password,
    ) -> Result<User, AuthError> {
        let user = self.find_user(email)?;
        let hashed = self.hasher.hash(password)?;
        // One write: the new password, the end of every session and of
        // every one-time token (a pending reset would otherwise undo it).
        let ends = Ends {
            sessions: true,
            tokens: &Purpose::ALL,
            ..Ends::default()
        };
        let changes = [
            UserChange::HashedPassword(hashed),
            UserChange::PendingEmail(None),
        ];
        let user = self.store.update_user(user.id, None, &changes, ends)?;
        self.limits.account_recovered(user.email.key());
        self.record(
            Event::PasswordChanged,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.announce(caller, AccountEvent::PasswordChanged, &user);
        Ok(user)
    }

    /// Deletes `email`'s user with its sessions and tokens (audited as
    /// `user_deleted`).
    pub fn delete_user(&self, caller: &Caller, email: &Email) -> Result<User, AuthError> {
        let user = self.find_user(email)?;
        self.store.delete_user(user.id).map_err(|e| match e {
            StoreError::NotFound => AuthError::UnknownEmail,
            other => other.into(),
        })?;
        self.record(
            Event::UserDeleted,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.announce(caller, AccountEvent::UserDeleted, &user);
        Ok(user)
    }

    /// Marks `email`'s address verified (audited as `email_verified`).
    pub fn verify_user(&self, caller: &Caller, email: &Email) -> Result<User, AuthError> {
        let user = self.find_user(email)?;
        let user = self.store.update_user(
            user.id,
            None,
            &[UserChange::EmailVerified(true)],
            Ends::default(),
        )?;
        self.record(
            Event::EmailVerified,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.announce(caller, AccountEvent::UserVerified, &user);
        Ok(user)
    }

    /// `email`'s user and its sessions, newest first.
    pub fn sessions_of(&self, email: &Email) -> Result<(User, Vec<Session>), AuthError> {
        let user = self.find_user(email)?;
        let sessions = self.store.sessions_of(user.id)?;
        Ok((user, sessions))
    }

    /// Ends `email`'s session with handle `id`, or all of them; returns
    /// the user and how many ended (`SessionNotFound` for a handle that is
    /// not one of the user's). Audited as `logout`.
    pub fn log_out_user(
        &self,
        caller: &Caller,
        email: &Email,
        id: Option<&str>,
    ) -> Result<(User, usize), AuthError> {
        let user = self.find_user(email)?;
        let ended = match id {
            Some(id) => {
                let id = SessionId::parse(id).ok_or(AuthError::SessionNotFound)?;
                if !self.store.end_session_by_id(user.id, id)? {
                    return Err(AuthError::SessionNotFound);
                }
                1
            }
            None => self.store.end_sessions_of(user.id, None)?,
        };
        self.record(
            Event::Logout,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        Ok((user, ended))
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::{AuthError, Caller};

    #[test]
    fn set_password_ends_sessions_and_the_pending_reset() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("old"))
            .unwrap();
        let (_, session) = auth.log_in(&caller(), "a@x.io", "old", None).unwrap();
        let (_, reset) = auth.get_reset_password_token(&email("a@x.io")).unwrap();
        auth.set_password(&Caller::admin(), &email("a@x.io"), &password("new"))
            .unwrap();
        assert!(auth.get_user_from_session_id(&session).is_err());
        assert!(matches!(
            auth.update_password(&email("a@x.io"), &reset, &password("x")),
            Err(AuthError::InvalidResetToken)
        ));
        assert!(auth.valid_login(&email("a@x.io"), &password("new")).is_ok());
    }

    #[test]
    fn log_out_user_ends_one_or_all() {
        let (_dir, auth) = auth();
        auth.register_user(&email("a@x.io"), &password("pw"))
            .unwrap();
        let (_, one) = auth.log_in(&caller(), "a@x.io", "pw", None).unwrap();
        let (_, two) = auth.log_in(&caller(), "a@x.io", "pw", None).unwrap();
        let (_, sessions) = auth.sessions_of(&email("a@x.io")).unwrap();
        assert_eq!(sessions.len(), 2);
        let admin = Caller::admin();
        let newest = sessions[0].id.to_string();
        assert_eq!(
            auth.log_out_user(&admin, &email("a@x.io"), Some(&newest))
                .unwrap()
                .1,
            1
        );
        assert!(auth.get_user_from_session_id(&two).is_err());
        assert!(auth.get_user_from_session_id(&one).is_ok());
        assert!(matches!(
            auth.log_out_user(&admin, &email("a@x.io"), Some(&newest)),
            Err(AuthError::SessionNotFound)
        ));
        assert_eq!(
            auth.log_out_user(&admin, &email("a@x.io"), None).unwrap().1,
            1
        );
        assert!(auth.get_user_from_session_id(&one).is_err());
    }
}
