//! Storage: traits by purpose, a sled implementation (the default,
//! embedded) and a PostgreSQL one (for several instances).
//!
//! The request path sees [`UserStore`], [`SessionStore`] and
//! [`TokenStore`] (together, [`RequestStore`]); the admin commands see
//! [`Maintenance`] too. Users, sessions and one-time tokens are records of
//! their own; a write that spans them (a password reset sets the password,
//! consumes the token and ends the sessions) is one transaction. Every
//! write method returns only once the write is durable, so callers can
//! answer 2xx. The reference's keyword calls (`find_user_by(field=value)`,
//! `update_user(id, field=value)`) are a thin layer over these, in
//! [`keyword`].

pub mod keyword;
pub mod lookalikes;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sled;
mod traits;

pub use self::sled::{SledStore, DEFAULT_CACHE_BYTES};
pub use traits::{
    Counts, Ends, Import, Maintenance, QueueCounts, QueueStore, Redemption, RequestStore,
    SessionStore, TokenStore, UserChange, UserStore,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// is no longer the current one, or the password it checked changed.
    #[error("the record no longer matches the precondition")]
    PreconditionFailed,
    /// This kind of store cannot do that (e.g. a directory backup of a
    /// PostgreSQL database: use its own tools).
    #[error("{0}")]
    NotSupported(&'static str),
    /// The delivery queue holds its most messages already.
    #[error("the delivery queue is full")]
    QueueFull,
    /// Stored data that does not decode or indexes that disagree.
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    /// The storage engine failed (I/O, disk full...).
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
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
        "the data directory {} is in use by another authd process{} (only one process may \
         open a store at a time): stop it first (an admin command on the embedded store \
         needs the server stopped), or point --data-dir elsewhere",
        .0.display(),
        sled::lock_holder(.0).map(|holder| format!(" ({holder})")).unwrap_or_default()
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
    /// The store is of an older format and this open may not convert it
    /// (admin commands other than `migrate`).
    #[error(
        "the store {target} is of format {found}, older than this authd's ({current}){note}: \
         run `authd migrate` (it writes a backup of an embedded store first), \
         or start `authd serve`, which migrates at start"
    )]
    Outdated {
        target: String,
        found: u32,
        current: u32,
        /// Says so when a migration was interrupted half-way.
        note: String,
    },
    /// The directory holds no authd store, and this open may not create
    /// one (admin commands that read or change an existing store; `import`
    /// and `user add` in a directory that holds other files). `path` is
    /// absolute, so a wrong working directory shows.
    #[error("no authd store in {}{}", path.display(), found.describe())]
    NoStore { path: PathBuf, found: Found },
    /// The database holds no authd schema (no `authd_migrations` table),
    /// and this open may not create it. `target` names the database without
    /// its password.
    #[error("no authd schema in the {target} (it has no authd_migrations table)")]
    NoSchema { target: String },
    /// The store was written by a newer authd.
    #[error(
        "the store {target} is of format {found}, newer than this authd knows ({current}): \
         run the authd release that wrote it, or a newer one"
    )]
    TooNew {
        target: String,
        found: u32,
        current: u32,
    },
}

/// What opening a store may do about an older format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Convert it (`serve`, `migrate`).
    Apply,
    /// Refuse it with [`OpenError::Outdated`] (every other admin command).
    Refuse,
    /// Open it as it is, converting nothing, for `migrate --dry-run` to
    /// report on; only [`AnyStore::pending_migrations`] may be asked of it.
    Inspect,
}

/// What opening may do where there is no store yet.
///
/// `serve` creates its store ([`OpenMode::Create`]); the admin commands
/// that read or change users must not leave an empty store behind a typo in
/// `--data-dir` ([`OpenMode::Existing`]); `import` and `user add` create one
/// where nothing else is ([`OpenMode::CreateIfEmpty`]), or anywhere with
/// `--create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a store if there is none (a directory holding other files
    /// included).
    Create,
    /// Open an existing store only; anything else is
    /// [`OpenError::NoStore`] / [`OpenError::NoSchema`], and nothing is
    /// created, not even the directory.
    Existing,
    /// Create a store in a directory that does not exist or is empty, or in
    /// a database without authd's schema; refuse a directory holding other
    /// files.
    CreateIfEmpty,
}

/// What a data directory without a store holds, for
/// [`OpenError::NoStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The directory does not exist.
    Missing,
    /// The directory exists and is empty.
    Empty,
    /// The directory holds files, none of them a store (or is not a
    /// directory).
    OtherFiles,
}

impl Found {
    /// Says what was found, for the message: ` (the directory ...)`.
    fn describe(self) -> &'static str {
        match self {
            Found::Missing => " (the directory does not exist)",
            Found::Empty => " (the directory is empty)",
            Found::OtherFiles => " (the directory holds other files)",
        }
    }

    /// What `path` holds, a store aside: missing, empty, or something
    /// else.
    pub fn of(path: &Path) -> Found {
        match std::fs::read_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Missing,
            Ok(mut entries) => match entries.next() {
                None => Found::Empty,
                Some(_) => Found::OtherFiles,
            },
            Err(_) => Found::OtherFiles,
        }
    }
}

/// A store just opened, and whether this open created it.
pub struct Opened {
    pub store: AnyStore,
    /// True when there was no store (or no schema) before this open.
    pub created: bool,
}

/// `path` made absolute against the working directory, for messages (not
/// resolved: it may not exist).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// One step of a store's migration chain, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub description: &'static str,
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

/// An open store of either kind. What differs between the kinds (where
/// throttle counts live, the sled-only backup) is asked of it directly;
/// the traits are reached through [`AnyStore::request`] and
/// [`AnyStore::maintenance`].
#[derive(Clone)]
pub enum AnyStore {
    Sled(SledStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStore),
}

impl AnyStore {
    /// Opens the store at `location`, creating it if there is none (what
    /// `serve` does): a sled directory fails at once if another process
    /// holds it. An older format is converted, refused or left for
    /// inspection as `upgrade` says.
    pub fn open(location: &Location, upgrade: Upgrade) -> Result<AnyStore, OpenError> {
        Self::open_as(location, upgrade, OpenMode::Create).map(|opened| opened.store)
    }

    /// [`AnyStore::open`], creating a store only as `mode` allows, and
    /// saying whether it did.
    pub fn open_as(
        location: &Location,
        upgrade: Upgrade,
        mode: OpenMode,
    ) -> Result<Opened, OpenError> {
        match location {
            Location::Dir { path, cache_bytes } => {
                let (store, created) = SledStore::open_as(path, *cache_bytes, upgrade, mode)?;
                Ok(Opened {
                    store: AnyStore::Sled(store),
                    created,
                })
            }
            #[cfg(feature = "postgres")]
            Location::Database { url, pool_size } => {
                let (store, created) =
                    postgres::PgStore::connect_as(url, *pool_size, upgrade, mode)?;
                Ok(Opened {
                    store: AnyStore::Postgres(store),
                    created,
                })
            }
            #[cfg(not(feature = "postgres"))]
            Location::Database { .. } => Err(OpenError::Database {
                target: location.to_string(),
                reason: "this authd was built without the `postgres` feature".to_owned(),
            }),
        }
    }

    /// The store as the service layer uses it.
    pub fn request(&self) -> Arc<dyn RequestStore> {
        match self {
            AnyStore::Sled(store) => Arc::new(store.clone()),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// The store as the admin commands use it.
    pub fn maintenance(&self) -> &dyn Maintenance {
        match self {
            AnyStore::Sled(store) => store,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store,
        }
    }

    /// The migrations this store still needs, oldest first (empty when it
    /// is current).
    pub fn pending_migrations(&self) -> Result<Vec<Migration>, StoreError> {
        match self {
            AnyStore::Sled(store) => store.pending_migrations(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.pending_migrations(),
        }
    }

    /// Applies the pending migrations; returns those applied.
    pub fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        match self {
            AnyStore::Sled(store) => store.migrate(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.migrate(),
        }
    }

    /// Copies an embedded store into `dest` (see [`SledStore::backup_to`]);
    /// a database is backed up with its own tools.
    pub fn backup_to(&self, dest: &Path) -> Result<usize, StoreError> {
        match self {
            AnyStore::Sled(store) => store
                .backup_to(dest)
                .map(|(_, entries)| entries)
                .map_err(|e| StoreError::Backend(e.to_string())),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(_) => Err(StoreError::NotSupported(
                "a PostgreSQL database is backed up with its own tools (pg_dump)",
            )),
        }
    }

    /// The server key kept in the store (made on first use): in sled's
    /// `meta` tree, or shared by every instance on PostgreSQL.
    pub fn server_key(&self) -> Result<crate::server_key::ServerKey, StoreError> {
        match self {
            AnyStore::Sled(store) => store.server_key(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.server_key(),
        }
    }

    /// Replaces the stored server key; the current one stays accepted as
    /// the previous one.
    pub fn rotate_server_key(&self) -> Result<crate::server_key::ServerKey, StoreError> {
        match self {
            AnyStore::Sled(store) => store.rotate_server_key(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => store.rotate_server_key(),
        }
    }

    /// The throttle named `scope`: in this process's memory for sled (one
    /// process owns the store), in the database for PostgreSQL (so every
    /// instance counts the same failures).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub fn limiter(
        &self,
        scope: &'static str,
        rule: crate::throttle::Rule,
    ) -> Box<dyn crate::throttle::Limiter> {
        match self {
            AnyStore::Sled(_) => Box::new(crate::throttle::Throttle::new(rule)),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(store) => Box::new(store.limiter(scope, rule)),
        }
    }

    /// Makes durable what was written without waiting for the disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.request().flush()
    }

    /// Pauses this process's writers of an embedded store until the guard
    /// drops (see [`SledStore::pause_writers`]); `None` on PostgreSQL,
    /// whose transactions give their own consistent views.
    pub fn pause_writers(&self) -> Option<std::sync::RwLockWriteGuard<'_, ()>> {
        match self {
            AnyStore::Sled(store) => Some(store.pause_writers()),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(_) => None,
        }
    }
}
