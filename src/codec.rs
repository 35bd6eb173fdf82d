//! The one place that knows how records look on disk.
//!
//! Every stored record (user, session, one-time token, a user's list of
//! both) is one format-version byte followed by the bincode (serde)
//! encoding of that version's struct. bincode 2.0.1 is the
//! final release of its line, so keeping the encoding here means a later
//! switch of format is a new version byte and a migration in this file alone.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};

use crate::message::{Kind, Message};
use crate::one_time::{OneTimeToken, Purpose};
use crate::outbox::{Caught, Intent, Queued, Topic};
use crate::session::{Session, SessionId};
use crate::token::TokenHash;
use crate::user::{Email, TotpState, User, UserId};

/// Version byte of the user records of store format 1 (with the session
/// and reset grant inside).
const USER_RECORD_V1: u8 = 1;
/// Version byte of the user records of store format 2 (keyed by the
/// lowercased address, the key not stored).
const USER_RECORD_V2: u8 = 2;
/// Version byte of the user records of store format 3 (no verification
/// state, no creation time).
const USER_RECORD_V3: u8 = 3;
/// Version byte of the user records of store format 4 (passwords hashed
/// as typed, no second factor).
const USER_RECORD_V4: u8 = 4;
/// Version byte of the current user record layout.
const USER_RECORD_V5: u8 = 5;
/// Version byte of the session record layout.
const SESSION_RECORD_V1: u8 = 1;
/// Version byte of the one-time token record layout.
const TOKEN_RECORD_V1: u8 = 1;
/// Version byte of the per-user list of sessions and tokens.
const OWNED_RECORD_V1: u8 = 1;
/// Version byte of a queued message's record.
const QUEUED_RECORD_V1: u8 = 1;
/// Version byte of a dev outbox message's record.
const CAUGHT_RECORD_V1: u8 = 1;
/// Upper bound for one decoded record, so a corrupted length prefix cannot
/// make the decoder allocate without limit. Users, sessions and tokens are
/// ~200 bytes; a message the dev outbox caught holds three rendered
/// templates of at most 64 KiB each.
const MAX_RECORD_BYTES: usize = 256 * 1024;

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
    #[error("record could not be encoded: {0}")]
    Encode(String),
    #[error("id index value has {0} bytes, expected 8")]
    BadId(usize),
    #[error("token hash has {0} bytes, expected 32")]
    BadHash(usize),
    #[error("one-time token has unknown purpose {0}")]
    UnknownPurpose(u8),
    #[error("message has unknown kind {0:?}")]
    UnknownKind(String),
}

/// Layout of a user record, version 1 (stores of format 1): the user with
/// its one session and one reset grant inside. Read only by the migration
/// to format 2.
#[derive(Serialize, Deserialize)]
struct UserRecordV1 {
    email: String,
    hashed_password: String,
    session: Option<LegacySession>,
    reset: Option<LegacyGrant>,
}

/// The session inside a version-1 user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacySession {
    pub token_hash: TokenHash,
    pub created_at: u64,
    pub last_seen: u64,
}

/// The reset grant inside a version-1 user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyGrant {
    pub token_hash: TokenHash,
    pub created_at: u64,
}

/// Layout of a user record, version 2 (stores of format 2): identity and
/// credentials only, the key derived by lowercasing. Read only by the
/// migration to format 3.
#[derive(Serialize, Deserialize)]
struct UserRecordV2 {
    email: String,
    hashed_password: String,
}

/// Layout of a user record, version 3: identity and credentials, with the
/// key the address is indexed under (which the rules of the day derive
/// from the address, except for the older of two accounts whose addresses
/// came to share a key: see [`crate::email_key`]). The id is the record's
/// key, so it is not repeated inside the value. Still read: format 4
/// did not rewrite the records, it reads these as accounts created under
/// the old rules (verified, creation time unknown).
#[derive(Serialize, Deserialize)]
struct UserRecordV3 {
    email: String,
    email_key: String,
    hashed_password: String,
}

/// Layout of a user record, version 4: version 3 with the state of the
/// address (verified, an email change pending with its key) and the
/// creation time.
#[derive(Serialize, Deserialize)]
struct UserRecordV4 {
    email: String,
    email_key: String,
    hashed_password: String,
    email_verified: bool,
    created_at: Option<u64>,
    pending_email: Option<(String, String)>,
}

/// Layout of a user record, version 5: version 4 with whether the password
/// was normalised before hashing, and the second factor.
#[derive(Serialize, Deserialize)]
struct UserRecordV5 {
    email: String,
    email_key: String,
    hashed_password: String,
    password_normalized: bool,
    email_verified: bool,
    created_at: Option<u64>,
    pending_email: Option<(String, String)>,
    totp: Option<TotpRecordV1>,
}

/// A user's second factor inside a version-5 user record.
#[derive(Serialize, Deserialize)]
struct TotpRecordV1 {
    sealed_secret: Vec<u8>,
    enabled: bool,
    last_step: u64,
    recovery: Vec<[u8; 32]>,
}

/// Layout of a session record, version 1; the key is the token's hash.
#[derive(Serialize, Deserialize)]
struct SessionRecordV1 {
    handle: [u8; 16],
    user: u64,
    created_at: u64,
    last_seen: u64,
    user_agent: Option<String>,
    ip: Option<String>,
}

/// Layout of a one-time token record, version 1; the key is the token's
/// hash.
#[derive(Serialize, Deserialize)]
struct TokenRecordV1 {
    user: u64,
    purpose: u8,
    created_at: u64,
    expires_at: u64,
}

/// Layout of a queued message's record, version 1; the key is its id.
/// The kind by name, so a record stays readable whatever order the kinds
/// are declared in.
#[derive(Serialize, Deserialize)]
struct QueuedRecordV1 {
    kind: String,
    to: String,
    user: Option<u64>,
    new_email: Option<String>,
    token: Option<String>,
    ip: Option<String>,
    created_at: u64,
    attempts: u32,
    next_at: u64,
    last_error: Option<String>,
    dead: bool,
}

/// Layout of a message the dev outbox caught, version 1; the key is its
/// id.
#[derive(Serialize, Deserialize)]
struct CaughtRecordV1 {
    created_at: u64,
    kind: String,
    to: String,
    subject: String,
    text: String,
    html: String,
}

/// What a user owns, kept beside the user record so that a transaction can
/// reach every session and token of a user by key (sled transactions
/// cannot scan): session hashes with their handles, oldest first, and
/// token hashes with their purposes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub sessions: Vec<(TokenHash, [u8; 16])>,
    pub tokens: Vec<(u8, TokenHash)>,
}

/// Prefixes `record`'s encoding with `version`.
fn encode<T: Serialize>(version: u8, record: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![version];
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// The body of a record of exactly `version`, decoded without leftovers.
fn decode<T: serde::de::DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let (&found, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if found != version {
        return Err(CodecError::UnknownVersion(found));
    }
    let (record, used): (T, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    Ok(record)
}

/// Encodes a user into its stored form (version byte + body).
pub fn encode_user(user: &User) -> Result<Vec<u8>, CodecError> {
    encode(
        USER_RECORD_V5,
        &UserRecordV5 {
            email: user.email.as_str().to_owned(),
            email_key: user.email.key().to_owned(),
            hashed_password: user.hashed_password.clone(),
            password_normalized: user.password_normalized,
            email_verified: user.email_verified,
            created_at: user.created_at,
            pending_email: pending_pair(user),
            totp: user.totp.as_ref().map(|totp| TotpRecordV1 {
                sealed_secret: totp.sealed_secret.clone(),
                enabled: totp.enabled,
                last_step: totp.last_step,
                recovery: totp.recovery.clone(),
            }),
        },
    )
}

/// The pending address of an email change with its key, as records hold it.
fn pending_pair(user: &User) -> Option<(String, String)> {
    user.pending_email
        .as_ref()
        .map(|e| (e.as_str().to_owned(), e.key().to_owned()))
}

/// Decodes a stored user record of version 5, 4 or 3, refusing other
/// versions and leftovers. The address is taken as stored, under its
/// stored key, whatever the rules for new addresses say of it now.
/// Versions before 5 hold hashes of passwords as typed, and no second
/// factor.
pub fn decode_user(id: UserId, bytes: &[u8]) -> Result<User, CodecError> {
    match bytes.first() {
        Some(&USER_RECORD_V3) => {
            let record: UserRecordV3 = decode(USER_RECORD_V3, bytes)?;
            Ok(User::existing(
                id,
                Email::stored(record.email, record.email_key),
                record.hashed_password,
            ))
        }
        Some(&USER_RECORD_V4) => {
            let record: UserRecordV4 = decode(USER_RECORD_V4, bytes)?;
            Ok(User {
                email_verified: record.email_verified,
                created_at: record.created_at,
                pending_email: record
                    .pending_email
                    .map(|(display, key)| Email::stored(display, key)),
                ..User::existing(
                    id,
                    Email::stored(record.email, record.email_key),
                    record.hashed_password,
                )
            })
        }
        _ => {
            let record: UserRecordV5 = decode(USER_RECORD_V5, bytes)?;
            Ok(User {
                id,
                email: Email::stored(record.email, record.email_key),
                hashed_password: record.hashed_password,
                password_normalized: record.password_normalized,
                email_verified: record.email_verified,
                created_at: record.created_at,
                pending_email: record
                    .pending_email
                    .map(|(display, key)| Email::stored(display, key)),
                totp: record.totp.map(|totp| TotpState {
                    sealed_secret: totp.sealed_secret,
                    enabled: totp.enabled,
                    last_step: totp.last_step,
                    recovery: totp.recovery,
                }),
            })
        }
    }
}

/// Encodes a version-4 user record (tests make format-4 stores with it).
pub fn encode_user_v4(user: &User) -> Result<Vec<u8>, CodecError> {
    encode(
        USER_RECORD_V4,
        &UserRecordV4 {
            email: user.email.as_str().to_owned(),
            email_key: user.email.key().to_owned(),
            hashed_password: user.hashed_password.clone(),
            email_verified: user.email_verified,
            created_at: user.created_at,
            pending_email: pending_pair(user),
        },
    )
}

/// Encodes a version-3 user record (tests make format-3 stores with it).
pub fn encode_user_v3(user: &User) -> Result<Vec<u8>, CodecError> {
    encode(
        USER_RECORD_V3,
        &UserRecordV3 {
            email: user.email.as_str().to_owned(),
            email_key: user.email.key().to_owned(),
            hashed_password: user.hashed_password.clone(),
        },
    )
}

/// Whether a stored user record is of the current version.
pub fn is_current_user(bytes: &[u8]) -> bool {
    bytes.first() == Some(&USER_RECORD_V5)
}

/// Whether a stored user record is of version 1 (store format 1).
pub fn is_user_v1(bytes: &[u8]) -> bool {
    bytes.first() == Some(&USER_RECORD_V1)
}

/// Whether a stored user record is of version 2 (store format 2).
pub fn is_user_v2(bytes: &[u8]) -> bool {
    bytes.first() == Some(&USER_RECORD_V2)
}

/// Decodes a version-2 user record: its address keyed as format 2 keyed
/// it (lowercased), so the migration knows the index entry it finds.
pub fn decode_user_v2(id: UserId, bytes: &[u8]) -> Result<User, CodecError> {
    let record: UserRecordV2 = decode(USER_RECORD_V2, bytes)?;
    let legacy = record.email.to_lowercase();
    Ok(User::existing(
        id,
        Email::stored(record.email, legacy),
        record.hashed_password,
    ))
}

/// Encodes a version-2 user record (tests make format-2 stores with it).
pub fn encode_user_v2(user: &User) -> Result<Vec<u8>, CodecError> {
    encode(
        USER_RECORD_V2,
        &UserRecordV2 {
            email: user.email.as_str().to_owned(),
            hashed_password: user.hashed_password.clone(),
        },
    )
}

/// Decodes a version-1 user record into the user and what it held.
pub fn decode_user_v1(
    id: UserId,
    bytes: &[u8],
) -> Result<(User, Option<LegacySession>, Option<LegacyGrant>), CodecError> {
    let record: UserRecordV1 = decode(USER_RECORD_V1, bytes)?;
    let legacy = record.email.to_lowercase();
    let user = User::existing(
        id,
        Email::stored(record.email, legacy),
        record.hashed_password,
    );
    Ok((user, record.session, record.reset))
}

/// Encodes a version-1 user record (tests make old stores with it).
pub fn encode_user_v1(
    user: &User,
    session: Option<LegacySession>,
    reset: Option<LegacyGrant>,
) -> Result<Vec<u8>, CodecError> {
    encode(
        USER_RECORD_V1,
        &UserRecordV1 {
            email: user.email.as_str().to_owned(),
            hashed_password: user.hashed_password.clone(),
            session,
            reset,
        },
    )
}

/// Encodes a queued message (its key, the id, is not repeated).
pub fn encode_queued(queued: &Queued) -> Result<Vec<u8>, CodecError> {
    let intent = &queued.intent;
    encode(
        QUEUED_RECORD_V1,
        &QueuedRecordV1 {
            kind: intent.kind.name().to_owned(),
            to: intent.to.clone(),
            user: intent.user.map(|id| id.0),
            new_email: intent.new_email.clone(),
            token: intent.token.clone(),
            ip: intent.ip.clone(),
            created_at: queued.created_at,
            attempts: queued.attempts,
            next_at: queued.next_at,
            last_error: queued.last_error.clone(),
            dead: queued.dead,
        },
    )
}

/// Decodes a queued message stored under `id`.
pub fn decode_queued(id: u64, bytes: &[u8]) -> Result<Queued, CodecError> {
    let record: QueuedRecordV1 = decode(QUEUED_RECORD_V1, bytes)?;
    let kind = Topic::from_name(&record.kind).ok_or(CodecError::UnknownKind(record.kind))?;
    Ok(Queued {
        id,
        intent: Intent {
            kind,
            to: record.to,
            user: record.user.map(UserId),
            new_email: record.new_email,
            token: record.token,
            ip: record.ip,
        },
        created_at: record.created_at,
        attempts: record.attempts,
        next_at: record.next_at,
        last_error: record.last_error,
        dead: record.dead,
    })
}

/// Encodes a message the dev outbox caught.
pub fn encode_caught(caught: &Caught) -> Result<Vec<u8>, CodecError> {
    let message = &caught.message;
    encode(
        CAUGHT_RECORD_V1,
        &CaughtRecordV1 {
            created_at: caught.created_at,
            kind: message.kind.name().to_owned(),
            to: message.to.clone(),
            subject: message.subject.clone(),
            text: message.text.clone(),
            html: message.html.clone(),
        },
    )
}

/// Decodes a caught message stored under `id`.
pub fn decode_caught(id: u64, bytes: &[u8]) -> Result<Caught, CodecError> {
    let record: CaughtRecordV1 = decode(CAUGHT_RECORD_V1, bytes)?;
    let kind = Kind::from_name(&record.kind).ok_or(CodecError::UnknownKind(record.kind))?;
    Ok(Caught {
        id,
        created_at: record.created_at,
        message: Message {
            kind,
            to: record.to,
            subject: record.subject,
            text: record.text,
            html: record.html,
        },
    })
}

/// Encodes a session (its key, the token hash, is not repeated).
pub fn encode_session(session: &Session) -> Result<Vec<u8>, CodecError> {
    encode(
        SESSION_RECORD_V1,
        &SessionRecordV1 {
            handle: session.id.0,
            user: session.user.0,
            created_at: session.created_at,
            last_seen: session.last_seen,
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
        },
    )
}

/// Decodes the session stored under `token_hash`.
pub fn decode_session(token_hash: TokenHash, bytes: &[u8]) -> Result<Session, CodecError> {
    let record: SessionRecordV1 = decode(SESSION_RECORD_V1, bytes)?;
    Ok(Session {
        id: SessionId(record.handle),
        token_hash,
        user: UserId(record.user),
        created_at: record.created_at,
        last_seen: record.last_seen,
        user_agent: record.user_agent,
        ip: record.ip,
    })
}

/// Encodes a one-time token (its key, the token hash, is not repeated).
pub fn encode_token(token: &OneTimeToken) -> Result<Vec<u8>, CodecError> {
    encode(
        TOKEN_RECORD_V1,
        &TokenRecordV1 {
            user: token.user.0,
            purpose: token.purpose.code(),
            created_at: token.created_at,
            expires_at: token.expires_at,
        },
    )
}

/// Decodes the one-time token stored under `token_hash`.
pub fn decode_token(token_hash: TokenHash, bytes: &[u8]) -> Result<OneTimeToken, CodecError> {
    let record: TokenRecordV1 = decode(TOKEN_RECORD_V1, bytes)?;
    Ok(OneTimeToken {
        token_hash,
        user: UserId(record.user),
        purpose: Purpose::from_code(record.purpose)
            .ok_or(CodecError::UnknownPurpose(record.purpose))?,
        created_at: record.created_at,
        expires_at: record.expires_at,
    })
}

/// Encodes what a user owns.
pub fn encode_owned(owned: &Owned) -> Result<Vec<u8>, CodecError> {
    encode(OWNED_RECORD_V1, owned)
}

/// Decodes what a user owns.
pub fn decode_owned(bytes: &[u8]) -> Result<Owned, CodecError> {
    decode(OWNED_RECORD_V1, bytes)
}

/// A token hash from a key of the session or token trees.
pub fn decode_hash(bytes: &[u8]) -> Result<TokenHash, CodecError> {
    bytes
        .try_into()
        .map(TokenHash)
        .map_err(|_| CodecError::BadHash(bytes.len()))
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
        User {
            id: UserId(7),
            email: Email::parse("Ann@Example.com").unwrap(),
            hashed_password: "$2b$04$abcdefghijklmnopqrstuu".to_owned(),
            password_normalized: true,
            email_verified: false,
            created_at: Some(1_700_000_000_000),
            pending_email: Some(Email::parse("Ann@New.example").unwrap()),
            totp: Some(TotpState {
                sealed_secret: vec![9; 48],
                enabled: true,
                last_step: 56_666_666,
                recovery: vec![[1; 32], [2; 32]],
            }),
        }
    }

    #[test]
    fn user_round_trips_with_a_version_byte() {
        let user = sample();
        let bytes = encode_user(&user).unwrap();
        assert_eq!(bytes[0], USER_RECORD_V5);
        assert!(is_current_user(&bytes));
        assert_eq!(decode_user(UserId(7), &bytes).unwrap(), user);
        let plain = User {
            totp: None,
            ..sample()
        };
        let bytes = encode_user(&plain).unwrap();
        assert_eq!(decode_user(UserId(7), &bytes).unwrap(), plain);
    }

    #[test]
    fn version_4_users_read_with_passwords_hashed_as_typed_and_no_second_factor() {
        let user = sample();
        let bytes = encode_user_v4(&user).unwrap();
        assert!(!is_current_user(&bytes));
        let back = decode_user(UserId(7), &bytes).unwrap();
        assert_eq!(
            back,
            User {
                password_normalized: false,
                totp: None,
                ..user
            }
        );
    }

    #[test]
    fn version_3_users_read_as_verified_accounts_of_unknown_age() {
        let user = sample();
        let bytes = encode_user_v3(&user).unwrap();
        assert!(!is_current_user(&bytes));
        let back = decode_user(UserId(7), &bytes).unwrap();
        assert_eq!(
            back,
            User::existing(UserId(7), user.email.clone(), user.hashed_password.clone())
        );
        assert!(back.email_verified && back.created_at.is_none() && back.pending_email.is_none());
    }

    #[test]
    fn stored_addresses_load_under_their_stored_key_whatever_the_rules() {
        // An address new accounts may no longer use, under its old key.
        let user = User {
            email: Email::stored("bob\u{200b}@x.io".to_owned(), "bob\u{200b}@x.io".to_owned()),
            ..sample()
        };
        assert!(Email::parse_new(user.email.as_str()).is_err());
        let back = decode_user(UserId(7), &encode_user(&user).unwrap()).unwrap();
        assert_eq!(back.email.key(), "bob\u{200b}@x.io");
        // Format 2 records key as format 2 did: lowercased.
        let old = User {
            email: Email::stored("JOSE\u{301}@X.io".to_owned(), "unused".to_owned()),
            ..sample()
        };
        let bytes = encode_user_v2(&old).unwrap();
        assert!(is_user_v2(&bytes) && !is_current_user(&bytes));
        assert!(decode_user(UserId(7), &bytes).is_err());
        let decoded = decode_user_v2(UserId(7), &bytes).unwrap();
        assert_eq!(decoded.email.as_str(), "JOSE\u{301}@X.io");
        assert_eq!(decoded.email.key(), "jose\u{301}@x.io");
    }

    #[test]
    fn version_1_users_decode_with_what_they_held() {
        let user = sample();
        let session = LegacySession {
            token_hash: Token::generate().unwrap().hash(),
            created_at: 1,
            last_seen: 2,
        };
        let bytes = encode_user_v1(&user, Some(session), None).unwrap();
        assert!(!is_current_user(&bytes) && is_user_v1(&bytes));
        assert!(decode_user(UserId(7), &bytes).is_err());
        let existing = User::existing(user.id, user.email.clone(), user.hashed_password.clone());
        assert_eq!(
            decode_user_v1(UserId(7), &bytes).unwrap(),
            (existing, Some(session), None)
        );
    }

    #[test]
    fn sessions_tokens_and_lists_round_trip() {
        let hash = Token::generate().unwrap().hash();
        let session = Session {
            id: SessionId::generate().unwrap(),
            token_hash: hash,
            user: UserId(3),
            created_at: 5,
            last_seen: 6,
            user_agent: Some("curl/8".to_owned()),
            ip: None,
        };
        let bytes = encode_session(&session).unwrap();
        assert_eq!(decode_session(hash, &bytes).unwrap(), session);
        let token = OneTimeToken {
            token_hash: hash,
            user: UserId(3),
            purpose: Purpose::Reset,
            created_at: 1,
            expires_at: 9,
        };
        assert_eq!(
            decode_token(hash, &encode_token(&token).unwrap()).unwrap(),
            token
        );
        let owned = Owned {
            sessions: vec![(hash, session.id.0)],
            tokens: vec![(1, hash)],
        };
        assert_eq!(decode_owned(&encode_owned(&owned).unwrap()).unwrap(), owned);
        let mut bad = encode_token(&token).unwrap();
        bad[2] = 77;
        assert!(matches!(
            decode_token(hash, &bad),
            Err(CodecError::UnknownPurpose(77))
        ));
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
            USER_RECORD_V3,
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
