//! Password reset: `POST /reset_password` (ask for a token) and
//! `PUT /reset_password` (redeem it), with the reference's
//! `get_reset_password_token` and `update_password`.

use super::{Auth, AuthError, Caller, Delivery, Recipient, TokenAnswer};
use crate::audit::Event;
use crate::clock::{millis, unix_millis};
use crate::hasher::{HashKey, OWN_WORK};
use crate::one_time::{OneTimeToken, Purpose};
use crate::outbox::{kind_of, AccountEvent, Intent, Topic};
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

    /// Answers a request for a one-time token of `purpose` for what
    /// `caller` typed (throttled by the caller).
    ///
    /// Dev: the token, or `UnknownEmail` for an email nobody registered
    /// (an email that cannot be an address is answered as one); the token
    /// also goes to the delivery worker if one is set. Production: the same
    /// answer whether or not the email is registered, in the same time:
    /// the request only enqueues, and the worker issues and sends the
    /// token. `QueueFull` if the queue is.
    pub(super) fn request_token(
        &self,
        caller: &Caller,
        typed: &str,
        purpose: Purpose,
    ) -> Result<TokenAnswer, AuthError> {
        let email = Email::parse(typed);
        match self.rules.delivery {
            Delivery::Queued => {
                let shown = email
                    .as_ref()
                    .map_or(typed.trim(), |email| email.as_str())
                    .to_owned();
                match email {
                    // The worker mints the token when it sends, if the
                    // address has an account.
                    Ok(email) => self.send(
                        caller,
                        Intent {
                            kind: Topic::Message(kind_of(purpose)),
                            to: email.as_str().to_owned(),
                            user: None,
                            new_email: None,
                            token: None,
                            ip: None,
                        },
                    )?,
                    Err(_) => self.record_typed(refused(purpose), caller, typed, None),
                }
                Ok(TokenAnswer::Queued { shown })
            }
            Delivery::InResponse { .. } => {
                let Ok(email) = email else {
                    self.record_typed(refused(purpose), caller, typed, None);
                    return Err(AuthError::UnknownEmail);
                };
                let (user, address, token) =
                    self.issue_token(caller, &Recipient::Address(email), purpose)?;
                self.send(caller, self.token_intent(purpose, &user, address, &token))?;
                Ok(TokenAnswer::Token {
                    email: user.email.as_str().to_owned(),
                    token,
                })
            }
        }
    }

    /// The message carrying a token the request minted (the dev profile,
    /// whose answers carry it too).
    pub(super) fn token_intent(
        &self,
        purpose: Purpose,
        user: &User,
        address: String,
        token: &Token,
    ) -> Intent {
        Intent {
            kind: Topic::Message(kind_of(purpose)),
            to: address,
            user: Some(user.id),
            new_email: None,
            token: Some(token.as_str().to_owned()),
            ip: None,
        }
    }

    /// Issues a token of `purpose` for `to`, replacing the user's earlier
    /// one of that purpose, and audits the outcome; returns the user, the
    /// address the token goes to (the pending one for an email change)
    /// and the token. The HTTP routes and the delivery worker alike come
    /// here. `UnknownEmail` if `to` names no account (or no pending
    /// change).
    pub fn issue_token(
        &self,
        caller: &Caller,
        to: &Recipient,
        purpose: Purpose,
    ) -> Result<(User, String, Token), AuthError> {
        let found = match to {
            Recipient::Address(email) => self.store.user_by_email(email),
            Recipient::PendingAddress(id) => self.store.user_by_id(*id),
        };
        let user = match found {
            Ok(user) => user,
            Err(StoreError::NotFound) => {
                if let Recipient::Address(email) = to {
                    self.record_typed(refused(purpose), caller, email.as_str(), None);
                }
                return Err(AuthError::UnknownEmail);
            }
            Err(e) => return Err(e.into()),
        };
        let address = match (to, &user.pending_email) {
            (Recipient::PendingAddress(_), Some(pending)) => pending.as_str().to_owned(),
            (Recipient::PendingAddress(_), None) => return Err(AuthError::UnknownEmail),
            (Recipient::Address(_), _) => user.email.as_str().to_owned(),
        };
        let token = self.mint(&user, purpose)?;
        self.record(requested(purpose), caller, Some(user.id), Some(&address));
        Ok((user, address, token))
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

    /// Stores a new token of `purpose` for `user` (replacing the older
    /// one) and returns it.
    pub(super) fn mint(&self, user: &User, purpose: Purpose) -> Result<Token, AuthError> {
        let token = Token::generate()?;
        let now = unix_millis();
        let grant = OneTimeToken {
            token_hash: token.hash(),
            user: user.id,
            purpose,
            created_at: now,
            expires_at: now.saturating_add(millis(self.rules.lifetimes.token(purpose))),
        };
        self.store.issue_token(&grant).map_err(|e| match e {
            StoreError::NotFound => AuthError::UnknownEmail,
            other => other.into(),
        })?;
        Ok(token)
    }

    /// When a token of `purpose` issued now expires, as RFC 3339 (for
    /// deliveries).
    pub fn expires_at(&self, purpose: Purpose) -> String {
        let now = chrono::Utc::now();
        // A lifetime too long for a date saturates at the latest date
        // chrono has.
        chrono::Duration::from_std(self.rules.lifetimes.token(purpose))
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
            // Valid while created_at + lifetime > now.
            issued_from: now.checked_sub(lifetime).map_or(0, |t| t.saturating_add(1)),
        };
        // The token came to the address: redeeming it proves the address
        // as a verification token would.
        let changes = [
            UserChange::HashedPassword(hashed),
            UserChange::EmailVerified(true),
        ];
        let ends = Ends {
            sessions: true,
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

/// The audit event of a token of `purpose` issued.
fn requested(purpose: Purpose) -> Event {
    match purpose {
        Purpose::Reset => Event::ResetRequested,
        Purpose::Verify => Event::VerifyRequested,
        Purpose::EmailChange => Event::EmailChangeRequested,
    }
}

/// The audit event of a token of `purpose` refused (asked for or
/// redeemed).
pub(super) fn refused(purpose: Purpose) -> Event {
    match purpose {
        Purpose::Reset => Event::ResetRefused,
        Purpose::Verify | Purpose::EmailChange => Event::VerifyRefused,
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
