//! Registration: `POST /users`, and the reference's `register_user`.

use super::{Auth, AuthError, Caller};
use crate::audit::Event;
use crate::hasher::{HashKey, OWN_WORK};
use crate::outbox::AccountEvent;
use crate::store::StoreError;
use crate::user::{Email, Password, User};

impl Auth {
    /// Registers `email` with `password` for `caller`: throttled per
    /// address and per email, audited (`register` or `register_refused`).
    pub fn register(
        &self,
        caller: &Caller,
        email: &Email,
        password: &Password,
    ) -> Result<User, AuthError> {
        self.throttled(
            self.limits.register(caller, email.key()),
            caller,
            email.as_str(),
            "POST /users",
        )?;
        match self.register_user_for(caller.ip, email, password) {
            Ok(user) => {
                self.record(
                    Event::Register,
                    caller,
                    Some(user.id),
                    Some(user.email.as_str()),
                );
                self.verify_new_account(caller, &user);
                self.announce(caller, AccountEvent::UserCreated, &user);
                Ok(user)
            }
            Err(e) => {
                if matches!(e, AuthError::EmailTaken) {
                    self.record(Event::RegisterRefused, caller, None, Some(email.as_str()));
                }
                Err(e)
            }
        }
    }

    /// Creates the user (the reference's `register_user`): the password
    /// policy applies; a taken email is refused before any bcrypt work,
    /// and the store re-checks atomically, so a race still yields one
    /// account.
    pub fn register_user(&self, email: &Email, password: &Password) -> Result<User, AuthError> {
        self.register_user_for(OWN_WORK, email, password)
    }

    /// [`Auth::register_user`], its bcrypt work done in `key`'s turns.
    fn register_user_for(
        &self,
        key: HashKey,
        email: &Email,
        password: &Password,
    ) -> Result<User, AuthError> {
        match self.store.user_by_email(email) {
            Ok(_) => return Err(AuthError::EmailTaken),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.check_policy(password, email)?;
        let hashed = self.hasher.hash_for(key, password)?;
        self.store.add_user(email, &hashed).map_err(|e| match e {
            StoreError::EmailTaken => AuthError::EmailTaken,
            other => other.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::AuthError;

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
}
