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

use super::account::notice;
use super::reset::refused;
use super::{Auth, AuthError, Caller, Delivery, Recipient, TokenAnswer};
use crate::audit::Event;
use crate::clock::{millis, unix_millis};
use crate::message::Kind;
use crate::one_time::Purpose;
use crate::outbox::{AccountEvent, Intent, Topic};
use crate::store::{Ends, Redemption, StoreError, UserChange};
use crate::token::Token;
use crate::user::{Email, User};

/// What `GET /account` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub user: User,
    pub session_count: usize,
}

/// What `PUT /account` answers.
#[derive(Debug)]
pub struct EmailChangeAnswer {
    pub user: User,
    pub new_email: Email,
    /// The token sent to the new address, also in the answer in the dev
    /// profile (as reset tokens are).
    pub token: Option<Token>,
}

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
        let hash = token.hash();
        let Some((grant, user)) = self.store.token(&hash)? else {
            return Err(refuse());
        };
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
            issued_from: now.checked_sub(lifetime).map_or(0, |t| t.saturating_add(1)),
        };
        // A changed address ends every token sent to the old one.
        let ends = Ends {
            tokens: grant.purpose == Purpose::EmailChange,
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

    /// Starts changing the session's user's address to `new_email`, after
    /// checking its password (401 `wrong password`, counted as a failed
    /// login): the address waits on the account until the token sent to
    /// it is redeemed, and a notice goes to the current one.
    /// `EmailTaken` if the address is registered (the caller's own
    /// included).
    pub fn change_email(
        &self,
        caller: &Caller,
        session: &Token,
        typed_password: &str,
        new_email: &Email,
    ) -> Result<EmailChangeAnswer, AuthError> {
        let (_, user) = self.authenticate(session)?;
        self.confirm_password(caller, &user, typed_password, "PUT /account")?;
        match self.store.user_by_email(new_email) {
            Ok(_) => return Err(AuthError::EmailTaken),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let user = self
            .store
            .update_user(
                user.id,
                Some(&user.hashed_password),
                &[UserChange::PendingEmail(Some(new_email.clone()))],
                Ends::default(),
            )
            .map_err(|e| match e {
                StoreError::PreconditionFailed | StoreError::NotFound => AuthError::WrongPassword,
                other => other.into(),
            })?;
        let to = Recipient::PendingAddress(user.id);
        let token = match self.rules.delivery {
            // The worker mints the token when it sends.
            Delivery::Queued => {
                self.send(
                    caller,
                    Intent {
                        kind: Topic::Message(Kind::EmailChange),
                        to: new_email.as_str().to_owned(),
                        user: Some(user.id),
                        new_email: None,
                        token: None,
                        ip: None,
                    },
                )?;
                None
            }
            Delivery::InResponse { .. } => {
                let (_, address, token) = self.issue_token(caller, &to, Purpose::EmailChange)?;
                self.send(
                    caller,
                    self.token_intent(Purpose::EmailChange, &user, address, &token),
                )?;
                Some(token)
            }
        };
        self.send_after(
            caller,
            notice(Kind::EmailChanged, &user, Some(new_email.as_str())),
        );
        Ok(EmailChangeAnswer {
            user,
            new_email: new_email.clone(),
            token,
        })
    }

    /// The session's user and how many sessions they hold.
    pub fn account(&self, session: &Token) -> Result<AccountView, AuthError> {
        let (_, user) = self.authenticate(session)?;
        let session_count = self.store.sessions_of(user.id)?.len();
        Ok(AccountView {
            user,
            session_count,
        })
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

    #[test]
    fn an_email_change_applies_only_when_the_new_address_answers() {
        let (_dir, auth) = auth();
        auth.register(&caller(), &email("old@x.io"), &password("pw"))
            .unwrap();
        auth.register(&caller(), &email("taken@x.io"), &password("pw"))
            .unwrap();
        let (_, session) = auth.log_in(&caller(), "old@x.io", "pw", None).unwrap();
        assert!(matches!(
            auth.change_email(&caller(), &session, "pw", &email("Taken@x.io")),
            Err(AuthError::EmailTaken)
        ));
        assert!(matches!(
            auth.change_email(&caller(), &session, "wrong", &email("new@x.io")),
            Err(AuthError::WrongPassword)
        ));
        let answer = auth
            .change_email(&caller(), &session, "pw", &email("new@x.io"))
            .unwrap();
        let token = answer.token.unwrap();
        // Nothing changed yet; the old address's verification token does
        // not apply the change, nor does the new token with the old one.
        let account = auth.account(&session).unwrap();
        assert_eq!(account.user.email.as_str(), "old@x.io");
        assert_eq!(account.session_count, 1);
        assert!(matches!(
            auth.redeem_verification(&caller(), "old@x.io", token.as_str()),
            Err(AuthError::InvalidVerifyToken)
        ));
        let changed = auth
            .redeem_verification(&caller(), "new@x.io", token.as_str())
            .unwrap();
        assert_eq!(changed.email.as_str(), "new@x.io");
        assert!(changed.email_verified && changed.pending_email.is_none());
        assert!(auth.log_in(&caller(), "new@x.io", "pw", None).is_ok());
        assert!(matches!(
            auth.log_in(&caller(), "old@x.io", "pw", None),
            Err(AuthError::InvalidCredentials)
        ));
        // The old address is free again.
        auth.register(&caller(), &email("old@x.io"), &password("pw"))
            .unwrap();
    }

    #[test]
    fn a_new_address_registered_meanwhile_refuses_the_change() {
        let (_dir, auth) = auth();
        auth.register(&caller(), &email("old@x.io"), &password("pw"))
            .unwrap();
        let (_, session) = auth.log_in(&caller(), "old@x.io", "pw", None).unwrap();
        let answer = auth
            .change_email(&caller(), &session, "pw", &email("new@x.io"))
            .unwrap();
        auth.register(&caller(), &email("NEW@x.io"), &password("pw"))
            .unwrap();
        assert!(matches!(
            auth.redeem_verification(&caller(), "new@x.io", answer.token.unwrap().as_str()),
            Err(AuthError::EmailTaken)
        ));
        assert_eq!(
            auth.account(&session).unwrap().user.email.as_str(),
            "old@x.io"
        );
    }
}
