//! Password reset: `POST /reset_password` (ask for a token) and
//! `PUT /reset_password` (redeem it), with the reference's
//! `get_reset_password_token` and `update_password`.

use super::tokens::issued_from;
use super::{Auth, AuthError, Caller, TokenAnswer};
use crate::audit::Event;
use crate::clock::{millis, unix_millis};
use crate::hasher::{HashKey, OWN_WORK};
use crate::one_time::Purpose;
use crate::outbox::AccountEvent;
use crate::store::{Ends, Redemption, StoreError, UserChange};
use crate::token::Token;
use crate::user::{Email, Password, User};

impl Auth {
    /// Answers a reset request for what `caller` typed, throttled per
    /// address and per email: [`Auth::request_token`] for a reset token.
    pub fn request_reset(&self, caller: &Caller, typed: &str) -> Result<TokenAnswer, AuthError> {
        self.throttled(
            self.limits.reset_request(caller, typed),
            caller,
            typed,
            "POST /reset_password",
        )?;
        self.request_token(caller, typed, Purpose::Reset)
    }

    /// Issues a reset token for `email`, replacing any earlier one (the
    /// reference's `get_reset_password_token`).
    pub fn get_reset_password_token(&self, email: &Email) -> Result<(User, Token), AuthError> {
        let user = match self.store.user_by_email(email) {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(AuthError::UnknownEmail),
            Err(e) => return Err(e.into()),
        };
        let token = self.mint(&user, Purpose::Reset)?;
        Ok((user, token))
    }

    /// Redeems what `caller` sent to `PUT /reset_password`. A missing or
    /// malformed email, or a token not shaped like ours, can own no token:
    /// refused like any other wrong pair, without hashing or a lookup.
    /// Success lifts the account's login backoff; both outcomes are
    /// audited.
    pub fn redeem_reset(
        &self,
        caller: &Caller,
        typed_email: &str,
        typed_token: &str,
        new_password: &Password,
    ) -> Result<User, AuthError> {
        let refused = || {
            self.record_typed(Event::ResetRefused, caller, typed_email, None);
            AuthError::InvalidResetToken
        };
        let (Ok(email), Some(token)) = (Email::parse(typed_email), Token::parse(typed_token))
        else {
            return Err(refused());
        };
        let user = self
            .update_password_for(caller.ip, &email, &token, new_password)
            .map_err(|e| match e {
                AuthError::InvalidResetToken => refused(),
                other => other,
            })?;
        self.limits.account_recovered(email.key());
        self.record(
            Event::PasswordChanged,
            caller,
            Some(user.id),
            Some(user.email.as_str()),
        );
        self.announce(caller, AccountEvent::PasswordChanged, &user);
        Ok(user)
    }

    /// Sets a new password with a reset token (the reference's
    /// `update_password`).
    ///
    /// The token must be the current, unexpired one of the user who owns
    /// `email`. It is consumed atomically with the password change (so two
    /// concurrent redemptions cannot both succeed), and every session of
    /// the user ends. An expired token is removed.
    pub fn update_password(
        &self,
        email: &Email,
        reset_token: &Token,
        new_password: &Password,
    ) -> Result<User, AuthError> {
        self.update_password_for(OWN_WORK, email, reset_token, new_password)
    }

    /// [`Auth::update_password`], its bcrypt work done in `key`'s turns.
    fn update_password_for(
        &self,
        key: HashKey,
        email: &Email,
        reset_token: &Token,
        new_password: &Password,
    ) -> Result<User, AuthError> {
        let hash = reset_token.hash();
        let now = unix_millis();
        let lifetime = millis(self.rules.lifetimes.reset_token);
        let (grant, user) = match self.store.token(&hash)? {
            Some((grant, user))
                if grant.purpose == Purpose::Reset && user.email.key() == email.key() =>
            {
                (grant, user)
            }
            _ => return Err(AuthError::InvalidResetToken),
        };
        if grant.expired(now, lifetime) {
            self.store.drop_token(&hash)?;
            return Err(AuthError::InvalidResetToken);
        }
        self.check_policy(new_password, &user.email)?;
        let hashed = self.hasher.hash_for(key, new_password)?;
        // Checked again when it writes, a hash's time later: still this
        // user's, still unexpired at the time it was checked above.
        let redemption = Redemption {
            token_hash: &hash,
            user: user.id,
            purpose: Purpose::Reset,
            now,
            issued_from: issued_from(now, lifetime),
        };
        // The token came to the address: redeeming it proves the address
        // as a verification token would.
        // A recovered account starts clean: every session and every other
        // one-time token ends, and with them a pending email change
        // (someone who had the account before the reset must not finish
        // one afterwards).
        let changes = [
            UserChange::HashedPassword(hashed),
            UserChange::EmailVerified(true),
            UserChange::PendingEmail(None),
        ];
        let ends = Ends {
            sessions: true,
            tokens: &Purpose::ALL,
            ..Ends::default()
        };
        self.store
            .redeem(&redemption, &changes, ends)
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => {
                    AuthError::InvalidResetToken
                }
                other => other.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::AuthError;

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
        let (_, phone) = auth.log_in(&caller(), "a@x.io", "old", None).unwrap();
        let (_, laptop) = auth.log_in(&caller(), "a@x.io", "old", None).unwrap();
        auth.update_password(&email("A@x.io"), &token, &new)
            .unwrap();
        assert!(matches!(
            auth.update_password(&email("a@x.io"), &token, &password("again")),
            Err(AuthError::InvalidResetToken)
        ));
        // A reset ends every session.
        for session in [&phone, &laptop] {
            assert!(matches!(
                auth.get_user_from_session_id(session),
                Err(AuthError::InvalidSession)
            ));
        }
        assert!(auth.valid_login(&email("a@x.io"), &new).is_ok());
        assert!(auth
            .valid_login(&email("a@x.io"), &password("old"))
            .is_err());
        assert!(auth.valid_login(&email("b@x.io"), &password("b")).is_ok());
    }
}
