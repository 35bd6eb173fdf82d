//! One-time tokens for every purpose (reset, verification, email
//! change): asking for one (in the answer in dev, by message in
//! production), minting it, and the message that carries it. The use
//! cases of each purpose (`reset`, `verify`, `email_change`) come here.

use super::{Auth, AuthError, Caller, Delivery, Recipient, TokenAnswer};
use crate::audit::Event;
use crate::clock::{millis, unix_millis};
use crate::one_time::{OneTimeToken, Purpose};
use crate::outbox::{kind_of, Intent, Topic};
use crate::store::StoreError;
use crate::token::Token;
use crate::user::{Email, User};

impl Auth {
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

    /// Stores a new token of `purpose` for `user` (replacing the older
    /// one) and returns it.
    /// An email change's token is bound to the pending address it is
    /// sent to ([`Token::hash_for`]).
    pub(super) fn mint(&self, user: &User, purpose: Purpose) -> Result<Token, AuthError> {
        let token = Token::generate()?;
        let token_hash = match purpose {
            Purpose::EmailChange => match &user.pending_email {
                Some(pending) => token.hash_for(pending.key()),
                None => return Err(AuthError::UnknownEmail),
            },
            Purpose::Reset | Purpose::Verify => token.hash(),
        };
        let now = unix_millis();
        let grant = OneTimeToken {
            token_hash,
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
}

/// The earliest issue time a token of `lifetime_ms` may have to be
/// redeemed at `now` (valid while created_at + lifetime > now), for the
/// store's check when it writes.
pub(super) fn issued_from(now: u64, lifetime_ms: u64) -> u64 {
    now.checked_sub(lifetime_ms)
        .map_or(0, |t| t.saturating_add(1))
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
