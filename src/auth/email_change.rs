//! An email change: `PUT /account` (password, new address). The new
//! address is verified before it applies (`PUT /verify_email` redeems its
//! token, in `verify`), and holds no claim until then: it stays free for
//! anyone to register meanwhile, and the redemption is refused (`email
//! already registered`) if someone did. The token goes to the new address,
//! bound to it, and a notice to the old one, so the owner hears of a
//! change made from a stolen session.

use super::account::notice;
use super::{Auth, AuthError, Caller, Delivery, Recipient};
use crate::message::Kind;
use crate::one_time::Purpose;
use crate::outbox::{Intent, Topic};
use crate::store::{Ends, StoreError, UserChange};
use crate::token::Token;
use crate::user::{Email, User};

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
                // A token of an earlier change must not apply this one.
                Ends {
                    tokens: &[Purpose::EmailChange],
                    ..Ends::default()
                },
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
}

#[cfg(test)]
mod tests {
    use crate::auth::test_support::*;
    use crate::auth::AuthError;

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
