//! The address of an account: `POST /verify_email` (send a verification
//! token), `PUT /verify_email` (redeem it), `PUT /account` (change the
//! address, verified at its new place before it applies) and
//! `GET /account`.
//!
//! An email change holds no claim on the new address until its token is
//! redeemed: the address stays free for anyone to register meanwhile, and
//! the redemption is refused (`email already registered`) if someone did.
//! The token goes to the new address and a notice to the old one, so the
//! owner hears of a change made from a stolen session.

use super::tokens::{issued_from, refused};
use super::{Auth, AuthError, Caller, Delivery, Recipient, TokenAnswer};
use crate::audit::Event;
use crate::clock::{millis, unix_millis};
use crate::message::Kind;
use crate::one_time::Purpose;
use crate::outbox::{AccountEvent, Intent, Topic};
use crate::store::{Ends, Redemption, StoreError, UserChange};
use crate::token::Token;
use crate::user::{Email, User};

impl Auth {
    /// Answers `POST /verify_email` for what `caller` typed: throttled as
    /// reset requests are (their own counts), then as
    /// [`Auth::request_token`] for a verification token.
    pub fn request_verification(
        &self,
        caller: &Caller,
        typed: &str,
    ) -> Result<TokenAnswer, AuthError> {
        self.throttled(
            self.limits.verify_request(caller, typed),
            caller,
            typed,
            "POST /verify_email",
        )?;
        self.request_token(caller, typed, Purpose::Verify)
    }

    /// Sends a verification token to a new account's address, when
    /// messages are sent at all; the account stands whatever happens to
    /// the message (the user can ask again).
    pub(super) fn verify_new_account(&self, caller: &Caller, user: &User) {
        match self.rules.delivery {
            Delivery::InResponse { sends: false } => {}
            Delivery::Queued => self.send_after(
                caller,
                Intent {
                    kind: Topic::Message(Kind::Verify),
                    to: user.email.as_str().to_owned(),
                    user: Some(user.id),
                    new_email: None,
                    token: None,
                    ip: None,
                },
            ),
            Delivery::InResponse { sends: true } => {
                let to = Recipient::Address(user.email.clone());
                match self.issue_token(caller, &to, Purpose::Verify) {
                    Ok((user, address, token)) => self.send_after(
                        caller,
                        self.token_intent(Purpose::Verify, &user, address, &token),
                    ),
                    Err(e) => eprintln!("authd: no verification token for a new account: {e}"),
                }
            }
        }
    }

    /// Redeems what `caller` sent to `PUT /verify_email`: a token sent to
    /// the account's address verifies it; a token sent to the pending
    /// address of an email change makes it the account's address
    /// (verified), ending the account's other one-time tokens.
    /// `InvalidVerifyToken` for anything else (audited), `EmailTaken` if
    /// the new address was registered meanwhile.
    pub fn redeem_verification(
        &self,
        caller: &Caller,
        typed_email: &str,
        typed_token: &str,
    ) -> Result<User, AuthError> {
        let refuse = || {
            self.record_typed(refused(Purpose::Verify), caller, typed_email, None);
            AuthError::InvalidVerifyToken
        };
        let (Ok(email), Some(token)) = (Email::parse(typed_email), Token::parse(typed_token))
        else {
            return Err(refuse());
        };
        // A verification token by itself; an email change's bound to the
        // address it was sent to.
        let (hash, found) = match self.store.token(&token.hash())? {
            Some(found) => (token.hash(), found),
            None => {
                let bound = token.hash_for(email.key());
                match self.store.token(&bound)? {
                    Some(found) => (bound, found),
                    None => return Err(refuse()),
                }
            }
        };
        let (grant, user) = found;
        let changes = match grant.purpose {
            Purpose::Verify if user.email.key() == email.key() => {
                vec![UserChange::EmailVerified(true)]
            }
            Purpose::EmailChange => match &user.pending_email {
                Some(pending) if pending.key() == email.key() => vec![
                    UserChange::Email(pending.clone()),
                    UserChange::PendingEmail(None),
                    UserChange::EmailVerified(true),
                ],
                _ => return Err(refuse()),
            },
            _ => return Err(refuse()),
        };
        let now = unix_millis();
        let lifetime = millis(self.rules.lifetimes.token(grant.purpose));
        if grant.expired(now, lifetime) {
            self.store.drop_token(&hash)?;
            return Err(refuse());
        }
        let redemption = Redemption {
            token_hash: &hash,
            user: user.id,
            purpose: grant.purpose,
            now,
            issued_from: issued_from(now, lifetime),
        };
        // A changed address ends every token sent to the old one.
        let ends = Ends {
            tokens: if grant.purpose == Purpose::EmailChange {
                &Purpose::ALL
            } else {
                &[]
            },
            ..Ends::default()
        };
        let verified = self
            .store
            .redeem(&redemption, &changes, ends)
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => refuse(),
                StoreError::EmailTaken => AuthError::EmailTaken,
                other => other.into(),
            })?;
        let event = match grant.purpose {
            Purpose::EmailChange => Event::EmailChanged,
            _ => Event::EmailVerified,
        };
        self.record(
            event,
            caller,
            Some(verified.id),
            Some(verified.email.as_str()),
        );
        self.announce(caller, AccountEvent::UserVerified, &verified);
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::{AuthError, TokenAnswer};

    fn token_of(answer: TokenAnswer) -> crate::token::Token {
        match answer {
            TokenAnswer::Token { token, .. } => token,
            TokenAnswer::Queued { .. } => panic!("dev answers carry the token"),
        }
    }

    #[test]
    fn a_verification_token_verifies_its_own_address_once() {
        let (_dir, auth) = auth();
        let user = auth
            .register(&caller(), &email("a@x.io"), &password("pw"))
            .unwrap();
        assert!(!user.email_verified && user.created_at.is_some());
        auth.register(&caller(), &email("b@x.io"), &password("pw"))
            .unwrap();
        let token = token_of(auth.request_verification(&caller(), "a@x.io").unwrap());
        // Paired with another address: refused, token kept.
        assert!(matches!(
            auth.redeem_verification(&caller(), "b@x.io", token.as_str()),
            Err(AuthError::InvalidVerifyToken)
        ));
        let verified = auth
            .redeem_verification(&caller(), "A@X.io", token.as_str())
            .unwrap();
        assert!(verified.email_verified);
        assert!(matches!(
            auth.redeem_verification(&caller(), "a@x.io", token.as_str()),
            Err(AuthError::InvalidVerifyToken)
        ));
        assert!(matches!(
            auth.request_verification(&caller(), "nobody@x.io"),
            Err(AuthError::UnknownEmail)
        ));
    }
}
