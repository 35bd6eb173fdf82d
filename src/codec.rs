//! The one place that knows how records look on disk.
//!
//! Every stored user record is one format-version byte followed by the
//! bincode (serde) encoding of that version's struct. bincode 2.0.1 is the
//! final release of its line, so keeping the encoding here means a later
//! switch of format is a new version byte and a migration in this file alone.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};

use crate::user::{Email, ResetGrant, Session, User, UserId};

/// Version byte of the current user record layout.
const USER_RECORD_V1: u8 = 1;
/// Upper bound for one decoded record, so a corrupted length prefix cannot
/// make the decoder allocate without limit. Real records are ~200 bytes.
const MAX_RECORD_BYTES: usize = 16 * 1024;

/// bincode's standard configuration with a decode size limit.
fn config() -> Configuration<LittleEndian, Varint, Limit<MAX_RECORD_BYTES>> {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// A stored value could not be read back: the store is damaged or was
/// written by something that is not this version of authd.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is empty")]
    Empty,
    #[error("record has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("record does not decode: {0}")]
    Decode(String),
    #[error("record has {0} trailing bytes")]
    Trailing(usize),
    #[error("record holds an invalid email: {0}")]
    InvalidEmail(String),
    #[error("record could not be encoded: {0}")]
    Encode(String),
    #[error("id index value has {0} bytes, expected 8")]
    BadId(usize),
}

/// Layout of a user record, version 1. The id is the record's key, so it is
/// not repeated inside the value.
#[derive(Serialize, Deserialize)]
struct UserRecordV1 {
    email: String,
    hashed_password: String,
    session: Option<Session>,
    reset: Option<ResetGrant>,
}

/// Encodes a user into its stored form (version byte + body).
pub fn encode_user(user: &User) -> Result<Vec<u8>, CodecError> {
    let record = UserRecordV1 {
        email: user.email.as_str().to_owned(),
        hashed_password: user.hashed_password.clone(),
        session: user.session,
        reset: user.reset,
    };
    let mut out = vec![USER_RECORD_V1];
    bincode::serde::encode_into_std_write(&record, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a stored user record, refusing unknown versions and leftovers.
pub fn decode_user(id: UserId, bytes: &[u8]) -> Result<User, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != USER_RECORD_V1 {
        return Err(CodecError::UnknownVersion(version));
    }
    let (record, used): (UserRecordV1, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    let email = Email::parse(&record.email).map_err(|e| CodecError::InvalidEmail(e.to_string()))?;
    Ok(User {
        id,
        email,
        hashed_password: record.hashed_password,
        session: record.session,
        reset: record.reset,
    })
}

/// Encodes a user id as a big-endian key, so sled's byte order is id order.
pub fn encode_id(id: UserId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Decodes a key or index value written by [`encode_id`].
pub fn decode_id(bytes: &[u8]) -> Result<UserId, CodecError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| CodecError::BadId(bytes.len()))?;
    Ok(UserId(u64::from_be_bytes(array)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    fn sample() -> User {
        let token = Token::generate().unwrap();
        User {
            id: UserId(7),
            email: Email::parse("Ann@Example.com").unwrap(),
            hashed_password: "$2b$04$abcdefghijklmnopqrstuu".to_owned(),
            session: Some(Session {
                token_hash: token.hash(),
                created_at: 1,
                last_seen: 2,
            }),
            reset: None,
        }
    }

    #[test]
    fn user_round_trips_with_a_version_byte() {
        let user = sample();
        let bytes = encode_user(&user).unwrap();
        assert_eq!(bytes[0], USER_RECORD_V1);
        assert_eq!(decode_user(UserId(7), &bytes).unwrap(), user);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode_user(&sample()).unwrap();
        assert!(matches!(
            decode_user(UserId(7), &[]),
            Err(CodecError::Empty)
        ));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(matches!(
            decode_user(UserId(7), &wrong_version),
            Err(CodecError::UnknownVersion(9))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode_user(UserId(7), &trailing),
            Err(CodecError::Trailing(1))
        ));
        for cut in 1..bytes.len() {
            assert!(
                decode_user(UserId(7), &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // A huge length prefix must hit the limit, not the allocator.
        let huge = [
            USER_RECORD_V1,
            0xfd,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        assert!(decode_user(UserId(7), &huge).is_err());
    }

    #[test]
    fn ids_sort_as_bytes() {
        assert!(encode_id(UserId(2)) < encode_id(UserId(256)));
        assert_eq!(decode_id(&encode_id(UserId(42))).unwrap(), UserId(42));
        assert!(decode_id(&[1, 2, 3]).is_err());
    }
}
