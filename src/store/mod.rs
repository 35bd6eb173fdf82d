//! Storage: the [`UserStore`] trait, its sled implementation (the
//! default, embedded) and its PostgreSQL one (for several instances).
//!
//! The trait follows the reference's `DB` class (`add_user`, `find_user_by`,
//! `update_user`) with typed arguments, plus keyword forms that keep the
//! reference's distinct errors for an unknown field. Every write method
//! returns only once the write is durable, so callers can answer 2xx.

#[cfg(feature = "postgres")]
pub mod postgres;
mod sled_store;

pub use sled_store::{SledStore, DEFAULT_CACHE_BYTES};

use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::clock::unix_millis;
use crate::throttle::{Limiter, Rule, Throttle};
use crate::token::{Token, TokenHash};
use crate::user::{Email, ResetGrant, Session, User, UserId};

/// What went wrong in the store. The HTTP layer maps these through
/// `auth::AuthError`; none of them is ever shown to a client verbatim.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No user matches (the reference's `NoResultFound`).
    #[error("no user found")]
    NotFound,
    /// The keyword names no field of a user (`InvalidRequestError` /
    /// `ValueError` in the reference).
    #[error("users have no field named {0:?}")]
    UnknownField(String),
    /// The keyword is a field, but the value cannot be one of it.
    #[error("invalid value for {field}: {reason}")]
    InvalidValue { field: &'static str, reason: String },
    /// Another user already has this email (case-insensitively).
    #[error("email already registered")]
    EmailTaken,
    /// The record changed since the caller looked: the token it presented
    /// is no longer the current one.
    #[error("the record no longer matches the precondition")]
    PreconditionFailed,
    /// Stored data that does not decode or indexes that disagree.
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    /// The storage engine failed (I/O, disk full...).
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(format!(
            "{e} (sled refuses writes after an I/O error: fix the disk, e.g. free space, \
             then restart authd)"
        ))
    }
}

/// Why the store could not be opened. Each says what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the data directory {0} is in use by another authd process (only one process may open a store at a time)"
    )]
    InUse(PathBuf),
    #[error("the data directory {path} is not an authd store ({reason})")]
    Foreign { path: PathBuf, reason: String },
    #[error("cannot open the data directory {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    /// The database cannot be reached or its schema cannot be brought up
    /// to date. `target` names it without its password.
    #[error("cannot use the {target}: {reason}")]
    Database { target: String, reason: String },
}

/// Where a store is: an embedded sled directory (the default: one process,
/// nothing else to run) or a PostgreSQL database shared by any number of
/// authd instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A sled store in this directory, with this much page cache.
    Dir { path: PathBuf, cache_bytes: u64 },
    /// A PostgreSQL database by URL, with at most `pool_size` connections.
    Database { url: String, pool_size: u32 },
}

impl std::fmt::Display for Location {
    /// Names the store for messages, never showing a database password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir { path, .. } => write!(f, "{}", path.display()),
            #[cfg(feature = "postgres")]
            Location::Database { url, .. } => f.write_str(&postgres::redact(url)),
            #[cfg(not(feature = "postgres"))]
            Location::Database { .. } => f.write_str("PostgreSQL database"),
        }
    }
}

/// An open store of either kind. It dereferences to the [`UserStore`]
/// trait; what differs between the kinds (where throttle counts live, the
/// sled-only backup) is asked of it directly.
#[derive(Clone)]
pub enum AnyStore {
    Sled(SledStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStore),
}

impl AnyStore {
    /// Opens the store at `location`: a sled directory fails at once if
    /// another process holds it; a database gets its schema migrated.
    pub fn open(location: &Location) -> Result<AnyStore, OpenError> {
        match location {
            Location::Dir { path, cache_bytes } => Ok(AnyStore::Sled(SledStore::open_with_cache(
                path,
                *cache_bytes,
            )?)),
            #[cfg(feature = "postgres")]
            Location::Database { url, pool_size } => Ok(AnyStore::Postgres(
                postgres::PgStore::connect(url, *pool_size)?,
            )),
            #[cfg(not(feature = "postgres"))]
            Location::Database { .. } => Err(OpenError::Database {
                target: location.to_string(),
                reason: "this authd was built without the `postgres` feature".to_owned(),
            }),
        }
    }

    /// The store as a shared trait object, for the service layer.
    pub fn shared(&self) -> std::sync::Arc<dyn UserStore> {
        match self {
            AnyStore::Sled(store) => std::sync::Arc::new(store.clone()),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => std::sync::Arc::new(store.clone()),
        }
    }

    /// The key of the throttles' keyed hashes: random for each process on
    /// the embedded store (whose throttle counts live in memory), shared by
    /// every instance on PostgreSQL (whose counts are shared).
    pub fn throttle_secret(&self) -> Result<[u8; 32], StoreError> {
        match self {
            AnyStore::Sled(_) => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| StoreError::Backend(e.to_string()))?;
                Ok(secret)
            }
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.shared_secret("throttle"),
        }
    }

    /// The throttle named `scope`: in this process's memory for sled (one
    /// process owns the store), in the database for PostgreSQL (so every
    /// instance counts the same failures).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub fn limiter(&self, scope: &'static str, rule: Rule) -> Box<dyn Limiter> {
        match self {
            AnyStore::Sled(_) => Box::new(Throttle::new(rule)),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => Box::new(store.limiter(scope, rule)),
        }
    }
}

impl std::ops::Deref for AnyStore {
    type Target = dyn UserStore;

    fn deref(&self) -> &(dyn UserStore + 'static) {
        match self {
            AnyStore::Sled(store) => store,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store,
        }
    }
}

/// A keyword lookup, typed: every variant is backed by an index, so each
/// lookup is O(log n).
#[derive(Debug, Clone)]
pub enum Lookup {
    Id(UserId),
    Email(Email),
    /// By the SHA-256 of the session token.
    Session(TokenHash),
    /// By the SHA-256 of the reset token.
    Reset(TokenHash),
}

impl Lookup {
    /// The reference's `find_user_by(field=value)`: `id`, `email`,
    /// `session_id` or `reset_token` (tokens given in clear and hashed here).
    pub fn from_keyword(field: &str, value: &str) -> Result<Lookup, StoreError> {
        match field {
            "id" => value.parse().map(|id| Lookup::Id(UserId(id))).map_err(
                |e: std::num::ParseIntError| StoreError::InvalidValue {
                    field: "id",
                    reason: e.to_string(),
                },
            ),
            "email" => {
                Email::parse(value)
                    .map(Lookup::Email)
                    .map_err(|e| StoreError::InvalidValue {
                        field: "email",
                        reason: e.to_string(),
                    })
            }
            // A value that is not shaped like a token belongs to nobody.
            "session_id" => Token::parse(value)
                .map(|t| Lookup::Session(t.hash()))
                .ok_or(StoreError::NotFound),
            "reset_token" => Token::parse(value)
                .map(|t| Lookup::Reset(t.hash()))
                .ok_or(StoreError::NotFound),
            other => Err(StoreError::UnknownField(other.to_owned())),
        }
    }
}

/// One field update for [`UserStore::update_user`].
#[derive(Debug, Clone)]
pub enum Change {
    Email(Email),
    HashedPassword(String),
    Session(Option<Session>),
    Reset(Option<ResetGrant>),
}

impl Change {
    /// Makes this change to `user` in memory; the store writes the result
    /// and keeps its indexes in step.
    pub fn apply_to(&self, user: &mut User) {
        match self {
            Change::Email(email) => user.email = email.clone(),
            Change::HashedPassword(hash) => user.hashed_password = hash.clone(),
            Change::Session(session) => user.session = *session,
            Change::Reset(reset) => user.reset = *reset,
        }
    }

    /// The reference's `update_user(id, field=value)`: `email`,
    /// `hashed_password`, `session_id` or `reset_token`; `None` clears a
    /// token. Tokens are given in clear and only their hash is kept.
    pub fn from_keyword(field: &str, value: Option<&str>) -> Result<Change, StoreError> {
        let invalid = |field: &'static str, reason: &str| StoreError::InvalidValue {
            field,
            reason: reason.to_owned(),
        };
        let token = |field: &'static str, value: &str| {
            Token::parse(value)
                .map(|t| t.hash())
                .ok_or_else(|| invalid(field, "not a token issued by authd"))
        };
        let now = unix_millis();
        match (field, value) {
            ("email", Some(v)) => Email::parse(v)
                .map(Change::Email)
                .map_err(|e| invalid("email", &e.to_string())),
            ("email", None) => Err(invalid("email", "required")),
            ("hashed_password", Some(v)) if v.starts_with("$2") => {
                Ok(Change::HashedPassword(v.to_owned()))
            }
            ("hashed_password", _) => Err(invalid("hashed_password", "must be a bcrypt hash")),
            ("session_id", None) => Ok(Change::Session(None)),
            ("session_id", Some(v)) => Ok(Change::Session(Some(Session {
                token_hash: token("session_id", v)?,
                created_at: now,
                last_seen: now,
            }))),
            ("reset_token", None) => Ok(Change::Reset(None)),
            ("reset_token", Some(v)) => Ok(Change::Reset(Some(ResetGrant {
                token_hash: token("reset_token", v)?,
                created_at: now,
            }))),
            (other, _) => Err(StoreError::UnknownField(other.to_owned())),
        }
    }
}

/// A condition checked atomically with an update: the update happens only if
/// the user's current token (or password hash) is still the one the caller
/// saw. This is what makes a reset token single-use under concurrent
/// requests, and keeps a login from outliving a concurrent password change.
#[derive(Debug, Clone)]
pub enum Precondition {
    None,
    SessionIs(TokenHash),
    ResetIs(TokenHash),
    PasswordIs(String),
}

impl Precondition {
    /// Whether `user` satisfies the condition (token hashes compared in
    /// constant time).
    pub fn holds_for(&self, user: &User) -> bool {
        match self {
            Precondition::None => true,
            Precondition::SessionIs(h) => user.session.is_some_and(|s| s.token_hash.ct_eq(h)),
            Precondition::ResetIs(h) => user.reset.is_some_and(|r| r.token_hash.ct_eq(h)),
            Precondition::PasswordIs(hash) => user.hashed_password == *hash,
        }
    }
}

/// Persistent storage of users, with unique emails and token indexes.
///
/// Implementations keep the indexes in step with the records atomically and
/// make every successful write durable before returning.
pub trait UserStore: Send + Sync {
    /// Creates a user; `EmailTaken` if the email exists in any letter case.
    fn add_user(&self, email: &Email, hashed_password: &str) -> Result<User, StoreError>;

    /// Finds the one user matching `lookup`; `NotFound` if none.
    fn find_user_by(&self, lookup: &Lookup) -> Result<User, StoreError>;

    /// Applies `changes` to user `id` if `precondition` holds, atomically
    /// with all index updates, and returns the user as stored.
    fn update_user(
        &self,
        id: UserId,
        precondition: &Precondition,
        changes: &[Change],
    ) -> Result<User, StoreError>;

    /// Records activity on session `token_hash` of user `id` (for the idle
    /// timeout). Not flushed: losing it in a crash only shortens one idle
    /// window, and flushing on every authenticated read would cost far
    /// more. Does nothing if that session is no longer current.
    fn touch_session(
        &self,
        id: UserId,
        token_hash: &TokenHash,
        last_seen: u64,
    ) -> Result<(), StoreError>;

    /// Ends every session created before `created_before` or last used
    /// before `seen_before` (Unix ms); returns how many. Works through the
    /// session index, so its cost follows the number of live sessions, not
    /// of users.
    fn expire_sessions(&self, created_before: u64, seen_before: u64) -> Result<usize, StoreError>;

    /// Drops every reset grant issued before `created_before` (Unix ms);
    /// returns how many.
    fn expire_resets(&self, created_before: u64) -> Result<usize, StoreError>;

    /// Removes user `id`, its record and every index entry, atomically.
    fn delete_user(&self, id: UserId) -> Result<(), StoreError>;

    /// Creates many users in as few durable writes as possible (bulk
    /// import), in order, returning their ids. All or nothing per call:
    /// `EmailTaken` if any email exists already or twice in `users`.
    fn add_users(&self, users: &[(Email, String)]) -> Result<Vec<UserId>, StoreError>;

    /// Calls `visit` with every user in id order, without loading them all
    /// into memory; stops early when `visit` returns `Break`.
    fn each_user(&self, visit: &mut dyn FnMut(User) -> ControlFlow<()>) -> Result<(), StoreError>;

    /// Number of users.
    fn count_users(&self) -> Result<usize, StoreError>;

    /// Reads from the store, proving it answers (for health checks).
    fn ping(&self) -> Result<(), StoreError>;

    /// Walks every record (and index, where the store keeps its own) and
    /// lists each inconsistency in words; empty means consistent.
    fn check(&self) -> Result<Vec<String>, StoreError>;

    /// Live (or not yet swept) session and reset tokens.
    fn token_counts(&self) -> Result<(usize, usize), StoreError>;

    /// Makes durable what was written without waiting for the disk
    /// (session activity); called once at shutdown.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Keyword form of [`UserStore::find_user_by`], as in the reference.
    fn find_user_by_keyword(&self, field: &str, value: &str) -> Result<User, StoreError> {
        self.find_user_by(&Lookup::from_keyword(field, value)?)
    }

    /// Keyword form of [`UserStore::update_user`]: every field is checked
    /// before anything is written.
    fn update_user_keywords(
        &self,
        id: UserId,
        fields: &[(&str, Option<&str>)],
    ) -> Result<User, StoreError> {
        let changes = fields
            .iter()
            .map(|(field, value)| Change::from_keyword(field, *value))
            .collect::<Result<Vec<_>, _>>()?;
        self.update_user(id, &Precondition::None, &changes)
    }
}
