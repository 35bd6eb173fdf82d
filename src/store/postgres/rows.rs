//! Rows into records: every column checked, a bad value a `Corrupt` error
//! rather than a panic.

use postgres::error::SqlState;
use postgres::Row;

use crate::one_time::{OneTimeToken, Purpose};
use crate::session::{Session, SessionId};
use crate::store::StoreError;
use crate::token::TokenHash;
use crate::user::{Email, TotpState, User, UserId};

/// The columns [`user`] reads, as a literal for `concat!`.
macro_rules! pg_user_columns {
    () => {
        "u.id, u.email, u.email_key, u.hashed_password, u.email_verified, u.created_at, \
         u.pending_email, u.pending_email_key, u.password_normalized, u.totp_secret, \
         u.totp_enabled, u.totp_last_step, u.totp_recovery"
    };
}
pub(crate) use pg_user_columns as user_columns;

/// The columns [`user`] reads, from its first column on.
pub const USER: &str = user_columns!();

/// The columns [`session`] reads, from its first column on.
pub const SESSION: &str = "s.token_hash, s.handle, s.user_id, s.created_at, s.last_seen, \
                           s.user_agent, s.ip";
/// The columns [`token`] reads, from its first column on.
pub const TOKEN: &str = "t.token_hash, t.user_id, t.purpose, t.created_at, t.expires_at";
/// Columns in [`SESSION`] (a user's follow them in a join).
pub const SESSION_COLUMNS: usize = 7;

fn id_of(value: i64) -> Result<UserId, StoreError> {
    u64::try_from(value)
        .map(UserId)
        .map_err(|_| StoreError::Corrupt(format!("user id {value}")))
}

fn hash_of(bytes: Vec<u8>, column: &str) -> Result<TokenHash, StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt(format!("{column} is not 32 bytes")))
}

fn millis(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative")))
}

/// A user from [`USER`] at column `at`: the address as stored, under its
/// stored key, whatever the rules for new addresses say of it now.
pub fn user(row: &Row, at: usize) -> Result<User, StoreError> {
    let created_at: Option<i64> = row.try_get(at + 5)?;
    let pending: Option<String> = row.try_get(at + 6)?;
    let pending_key: Option<String> = row.try_get(at + 7)?;
    let totp_secret: Option<Vec<u8>> = row.try_get(at + 9)?;
    let totp = match totp_secret {
        Some(sealed_secret) => Some(TotpState {
            sealed_secret,
            enabled: row.try_get(at + 10)?,
            last_step: millis(row.try_get(at + 11)?, "totp_last_step")?,
            recovery: row
                .try_get::<_, Vec<Vec<u8>>>(at + 12)?
                .into_iter()
                .map(|code| {
                    <[u8; 32]>::try_from(code.as_slice()).map_err(|_| {
                        StoreError::Corrupt("a totp_recovery hash is not 32 bytes".to_owned())
                    })
                })
                .collect::<Result<_, _>>()?,
        }),
        None => None,
    };
    Ok(User {
        id: id_of(row.try_get(at)?)?,
        email: Email::stored(row.try_get(at + 1)?, row.try_get(at + 2)?),
        hashed_password: row.try_get(at + 3)?,
        password_normalized: row.try_get(at + 8)?,
        totp,
        email_verified: row.try_get(at + 4)?,
        created_at: created_at.map(|ms| millis(ms, "created_at")).transpose()?,
        pending_email: match (pending, pending_key) {
            (Some(display), Some(key)) => Some(Email::stored(display, key)),
            (None, None) => None,
            _ => {
                return Err(StoreError::Corrupt(
                    "pending_email without its key".to_owned(),
                ))
            }
        },
    })
}

/// A session from [`SESSION`] at column `at`.
pub fn session(row: &Row, at: usize) -> Result<Session, StoreError> {
    let handle: Vec<u8> = row.try_get(at + 1)?;
    Ok(Session {
        token_hash: hash_of(row.try_get(at)?, "token_hash")?,
        id: SessionId(
            handle
                .try_into()
                .map_err(|_| StoreError::Corrupt("session handle is not 16 bytes".to_owned()))?,
        ),
        user: id_of(row.try_get(at + 2)?)?,
        created_at: millis(row.try_get(at + 3)?, "created_at")?,
        last_seen: millis(row.try_get(at + 4)?, "last_seen")?,
        user_agent: row.try_get(at + 5)?,
        ip: row.try_get(at + 6)?,
    })
}

/// A one-time token from [`TOKEN`] at column `at`.
pub fn token(row: &Row, at: usize) -> Result<OneTimeToken, StoreError> {
    let purpose: String = row.try_get(at + 2)?;
    Ok(OneTimeToken {
        token_hash: hash_of(row.try_get(at)?, "token_hash")?,
        user: id_of(row.try_get(at + 1)?)?,
        purpose: Purpose::from_name(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token purpose {purpose:?}")))?,
        created_at: millis(row.try_get(at + 3)?, "created_at")?,
        expires_at: millis(row.try_get(at + 4)?, "expires_at")?,
    })
}

/// A constraint violation as the sled store reports it: `EmailTaken` on
/// the email key, an invalid token on a token hash held already, `NotFound`
/// for a row whose user is gone; any other error as it is.
pub fn violation(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound,
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            match e.as_db_error().and_then(|db| db.constraint()) {
                Some("authd_users_email_key") => StoreError::EmailTaken,
                Some("authd_sessions_pkey" | "authd_tokens_pkey" | "authd_sessions_handle_key") => {
                    StoreError::InvalidValue {
                        field: "token",
                        reason: "already held by another user".to_owned(),
                    }
                }
                _ => e.into(),
            }
        }
        _ => e.into(),
    }
}
