//! The reference's keyword calls over the typed store:
//! `find_user_by(field=value)` and `update_user(id, field=value)`, with its
//! distinct errors for no result ([`StoreError::NotFound`]) and for a field
//! users do not have ([`StoreError::UnknownField`]).
//!
//! Fields: `id`, `email`, `hashed_password`, and the reference's token
//! columns `session_id` and `reset_token`, given in clear and hashed here.
//! Sessions are records of their own now: `session_id` finds the user of
//! a live session, and `update_user(id, session_id=None)` ends all of the
//! user's sessions; a session cannot be set by keyword (it is opened by
//! logging in).

use super::{Ends, RequestStore, StoreError, UserChange};
use crate::clock::unix_millis;
use crate::one_time::{OneTimeToken, Purpose};
use crate::token::Token;
use crate::user::{Email, User, UserId};

/// Lifetime of a reset token set by keyword (the reference has none; the
/// service's own lifetime still bounds it when redeemed).
const KEYWORD_RESET_LIFETIME_MS: u64 = 30 * 60 * 1000;

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidValue {
        field,
        reason: reason.into(),
    }
}

/// `find_user_by(field=value)`.
pub fn find_user_by(
    store: &dyn RequestStore,
    field: &str,
    value: &str,
) -> Result<User, StoreError> {
    match field {
        "id" => {
            let id: u64 = value
                .parse()
                .map_err(|e: std::num::ParseIntError| invalid("id", e.to_string()))?;
            store.user_by_id(UserId(id))
        }
        "email" => {
            let email = Email::parse(value).map_err(|e| invalid("email", e.to_string()))?;
            store.user_by_email(&email)
        }
        "hashed_password" => Err(invalid(
            "hashed_password",
            "users are not looked up by password hash",
        )),
        // A value that is not shaped like a token belongs to nobody.
        "session_id" => {
            let token = Token::parse(value).ok_or(StoreError::NotFound)?;
            match store.session(&token.hash())? {
                Some((_, user)) => Ok(user),
                None => Err(StoreError::NotFound),
            }
        }
        "reset_token" => {
            let token = Token::parse(value).ok_or(StoreError::NotFound)?;
            match store.token(&token.hash())? {
                Some((grant, user)) if grant.purpose == Purpose::Reset => Ok(user),
                _ => Err(StoreError::NotFound),
            }
        }
        other => Err(StoreError::UnknownField(other.to_owned())),
    }
}

/// One checked keyword update.
enum Update {
    User(UserChange),
    EndSessions,
    DropReset,
    SetReset(OneTimeToken),
}

fn parse(id: UserId, field: &str, value: Option<&str>) -> Result<Update, StoreError> {
    match (field, value) {
        ("email", Some(v)) => Email::parse_new(v)
            .map(|e| Update::User(UserChange::Email(e)))
            .map_err(|e| invalid("email", e.to_string())),
        ("email", None) => Err(invalid("email", "required")),
        ("hashed_password", Some(v)) if v.starts_with("$2") => {
            Ok(Update::User(UserChange::HashedPassword(v.to_owned())))
        }
        ("hashed_password", _) => Err(invalid("hashed_password", "must be a bcrypt hash")),
        ("session_id", None) => Ok(Update::EndSessions),
        ("session_id", Some(_)) => Err(invalid(
            "session_id",
            "sessions are opened by logging in; only None (end them all) can be set",
        )),
        ("reset_token", None) => Ok(Update::DropReset),
        ("reset_token", Some(v)) => {
            let token = Token::parse(v)
                .ok_or_else(|| invalid("reset_token", "not a token issued by authd"))?;
            let now = unix_millis();
            Ok(Update::SetReset(OneTimeToken {
                token_hash: token.hash(),
                user: id,
                purpose: Purpose::Reset,
                created_at: now,
                expires_at: now.saturating_add(KEYWORD_RESET_LIFETIME_MS),
            }))
        }
        ("id", _) => Err(invalid("id", "a user's id cannot change")),
        (other, _) => Err(StoreError::UnknownField(other.to_owned())),
    }
}

/// `update_user(id, field=value, ...)`: every field is checked before
/// anything is written, so an unknown field anywhere changes nothing. The
/// user's own fields, ending its sessions and dropping its reset token are
/// one transaction; setting a reset token follows it.
pub fn update_user(
    store: &dyn RequestStore,
    id: UserId,
    fields: &[(&str, Option<&str>)],
) -> Result<User, StoreError> {
    let updates = fields
        .iter()
        .map(|(field, value)| parse(id, field, *value))
        .collect::<Result<Vec<_>, _>>()?;
    let mut changes: Vec<UserChange> = updates
        .iter()
        .filter_map(|u| match u {
            Update::User(change) => Some(change.clone()),
            _ => None,
        })
        .collect();
    // A new address is not proven, and no link mailed to the old one (a
    // verification, a pending change) may act on it.
    let new_address = changes.iter().any(|c| matches!(c, UserChange::Email(_)));
    if new_address {
        changes.push(UserChange::EmailVerified(false));
        changes.push(UserChange::PendingEmail(None));
    }
    let ends = Ends {
        sessions: updates.iter().any(|u| matches!(u, Update::EndSessions)),
        tokens: if new_address {
            &Purpose::ALL
        } else if updates.iter().any(|u| matches!(u, Update::DropReset)) {
            &[Purpose::Reset]
        } else {
            &[]
        },
        ..Ends::default()
    };
    let user = store.update_user(id, None, &changes, ends)?;
    for update in &updates {
        if let Update::SetReset(token) = update {
            store.issue_token(token)?;
        }
    }
    Ok(user)
}
