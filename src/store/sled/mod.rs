//! The stores on sled: one tree per kind of record, index trees beside.
//!
//! - `users`: id (u64 big-endian) -> user record (see `codec`)
//! - `by_email`: case-folded email -> id
//! - `sessions`: SHA-256 of the session token -> session record
//! - `tokens`: SHA-256 of a one-time token -> token record
//! - `owned`: id -> the hashes of the user's sessions (oldest first) and
//!   tokens, so a transaction reaches all of them by key (sled
//!   transactions cannot scan)
//! - `meta`: the format marker, the next id, a heartbeat
//!
//! Every write runs as one sled transaction over the records and indexes
//! it touches, so they never disagree, then flushes before returning. The
//! files split by concern: [`schema`] (opening, format, migrations),
//! `users`, `sessions`, `tokens` and `maintenance` (the trait of each).

mod maintenance;
pub mod schema;
mod sessions;
mod tokens;
mod users;

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Tree;

use super::{OpenError, StoreError, Upgrade};
use crate::codec::{self, decode_id, decode_owned, decode_user, encode_id, encode_owned, Owned};
use crate::user::{User, UserId};

/// Entries copied per batch by a backup.
const BACKUP_BATCH: usize = 10_000;

/// Page cache of a store opened without a size: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The sled-backed store. Cheap to share: sled trees are reference-counted.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    users: Tree,
    by_email: Tree,
    sessions: Tree,
    tokens: Tree,
    owned: Tree,
    meta: Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn corrupt(e: codec::CodecError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A decoding result inside a transaction: a damaged record aborts it.
fn tx<T>(result: Result<T, codec::CodecError>) -> TxResult<T> {
    result.map_err(|e| ConflictableTransactionError::Abort(corrupt(e)))
}

fn flatten(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

impl From<codec::CodecError> for StoreError {
    fn from(e: codec::CodecError) -> Self {
        corrupt(e)
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `path`, converting an older
    /// format.
    ///
    /// Fails fast with [`OpenError::InUse`] when another process holds the
    /// directory, instead of waiting on the lock.
    pub fn open(path: &Path) -> Result<SledStore, OpenError> {
        Self::open_with(path, DEFAULT_CACHE_BYTES, Upgrade::Apply)
    }

    /// [`SledStore::open`] with sled's page cache bounded to `cache_bytes`
    /// (sled's own default is 1 GiB, more than an auth store needs), and
    /// what to do about an older format.
    pub fn open_with(
        path: &Path,
        cache_bytes: u64,
        upgrade: Upgrade,
    ) -> Result<SledStore, OpenError> {
        // sled creates its `db` file on first open; one that exists already
        // must hold an authd store.
        let had_files = path.join("db").metadata().is_ok_and(|m| m.len() > 0);
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| {
                let reason = e.to_string();
                if reason.contains("could not acquire lock") {
                    OpenError::InUse(path.to_owned())
                } else {
                    OpenError::Unusable {
                        path: path.to_owned(),
                        reason,
                    }
                }
            })?;
        let store = Self::trees(db, path)?;
        schema::prepare(&store, path, had_files, upgrade)?;
        Ok(store)
    }

    /// Opens the trees of an open sled database.
    fn trees(db: sled::Db, path: &Path) -> Result<SledStore, OpenError> {
        let unusable = |e: sled::Error| OpenError::Unusable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let tree = |name: &str| db.open_tree(name).map_err(unusable);
        Ok(SledStore {
            users: tree("users")?,
            by_email: tree("by_email")?,
            sessions: tree("sessions")?,
            tokens: tree("tokens")?,
            owned: tree("owned")?,
            meta: tree("meta")?,
            db: db.clone(),
        })
    }

    /// Writes everything to disk; called after each write and at shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Copies every tree into a new store at `dest`, flushes it, and
    /// returns it with the number of entries copied. The caller holds this
    /// store's lock, so nothing writes meanwhile and the copy is
    /// consistent. The copy is returned open, not closed and reopened: sled
    /// lets go of a directory lock a moment after its last handle drops.
    pub fn backup_to(&self, dest: &Path) -> Result<(SledStore, usize), OpenError> {
        let failed = |e: sled::Error| OpenError::Unusable {
            path: dest.to_owned(),
            reason: e.to_string(),
        };
        let copy = sled::Config::new().path(dest).open().map_err(failed)?;
        let mut entries = 0;
        for name in self.db.tree_names() {
            let source = self.db.open_tree(&name).map_err(failed)?;
            let target = copy.open_tree(&name).map_err(failed)?;
            // Batches of a bounded size: one batch of a whole tree made a
            // backup of a million users take minutes.
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for entry in source.iter() {
                let (key, value) = entry.map_err(failed)?;
                batch.insert(key, value);
                entries += 1;
                in_batch += 1;
                if in_batch == BACKUP_BATCH {
                    target
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(failed)?;
                    in_batch = 0;
                }
            }
            target.apply_batch(batch).map_err(failed)?;
        }
        copy.flush().map_err(failed)?;
        let store = Self::trees(copy, dest)?;
        // The copy is of the same format as this store: inspect, never
        // convert (a backup before a migration must stay the old format).
        schema::prepare(&store, dest, true, Upgrade::Inspect)?;
        Ok((store, entries))
    }

    /// Reads and decodes user `id`, if present.
    fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match self.users.get(encode_id(id))? {
            Some(bytes) => decode_user(id, &bytes).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// The user `by_email` points at for `key`, if any.
    fn get_by_email(&self, key: &str) -> Result<Option<User>, StoreError> {
        match self.by_email.get(key)? {
            Some(id) => self.get(decode_id(&id)?),
            None => Ok(None),
        }
    }
}

/// What user `id` owns, read inside a transaction (empty if nothing).
fn owned_in(owned: &TransactionalTree, id: UserId) -> TxResult<Owned> {
    match owned.get(encode_id(id))? {
        Some(bytes) => tx(decode_owned(&bytes)),
        None => Ok(Owned::default()),
    }
}

/// Writes what user `id` owns inside a transaction (removing an empty
/// list, so a user without sessions or tokens costs no entry).
fn put_owned(owned: &TransactionalTree, id: UserId, value: &Owned) -> TxResult<()> {
    if value.sessions.is_empty() && value.tokens.is_empty() {
        owned.remove(encode_id(id).as_slice())?;
    } else {
        owned.insert(encode_id(id).as_slice(), tx(encode_owned(value))?)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    use super::*;

    /// Waits (tests only, up to ten seconds) until no sled handle in this
    /// process holds the store in `path`: sled locks its `db` file with
    /// `flock`, and releases it a moment after the last handle is dropped.
    pub fn wait_released(path: &Path) {
        use std::os::unix::io::AsRawFd;
        let file = std::fs::File::open(path.join("db")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // SAFETY: flock on a file descriptor we own; the lock is released
        // at once (and with the file) on success.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "sled kept the store locked"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }

    /// Opens a store just closed in this process (tests only). sled's
    /// background threads let go of the directory lock a moment after the
    /// last handle is dropped, so an open in the same process may briefly
    /// see it held; this waits for it, up to ten seconds.
    pub fn open_when_free(path: &Path, upgrade: Upgrade) -> Result<SledStore, OpenError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledStore::open_with(path, DEFAULT_CACHE_BYTES, upgrade) {
                Err(OpenError::InUse(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    pub fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests;
