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
//! - `imports`: one tag per batch of an import not yet committed (import
//!   id, first user id -> number of users); empty between imports, see
//!   `maintenance`
//! - `queue`, `queue_due`, `caught`: the delivery queue and the dev
//!   outbox, see `queue`
//!
//! Every write runs as one sled transaction over the records and indexes
//! it touches, so they never disagree, then flushes before returning. The
//! files split by concern: [`schema`] (opening, format, migrations),
//! `users`, `sessions`, `tokens` and `maintenance` (the trait of each).
//!
//! The directory is private whatever the umask: authd makes it 0700 before
//! sled writes in it, and every file and directory in it 0700/0600 at each
//! open (sled creates its files with the process umask; those it makes
//! later, snapshots, are out of reach inside the 0700 directory).

mod maintenance;
mod queue;
pub mod schema;
mod sessions;
mod tokens;
mod users;

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Tree;

use super::{absolute, Found, OpenError, OpenMode, StoreError, Upgrade};
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
    imports: Tree,
    queue: Tree,
    queue_due: Tree,
    caught: Tree,
    /// The barrier behind which writers pause while a backup or a check
    /// of the live store runs (through the control socket): each write
    /// holds it shared, [`SledStore::pause_writers`] exclusively.
    gate: Arc<RwLock<()>>,
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
        Self::open_as(path, cache_bytes, upgrade, OpenMode::Create).map(|(store, _)| store)
    }

    /// [`SledStore::open_with`], creating a store only as `mode` allows;
    /// returns the store and whether this open created it. A refusal
    /// ([`OpenError::NoStore`]) creates nothing, not even the directory.
    ///
    /// An import interrupted in this store is rolled back here, before
    /// anything else reads it (and said on stderr).
    pub fn open_as(
        path: &Path,
        cache_bytes: u64,
        upgrade: Upgrade,
        mode: OpenMode,
    ) -> Result<(SledStore, bool), OpenError> {
        // sled creates its `db` file on first open; one that exists already
        // must hold an authd store.
        let db_file = path.join("db").metadata();
        let had_files = db_file.as_ref().is_ok_and(|m| m.len() > 0);
        // A `db` that cannot be looked at (permissions) is left to sled,
        // whose error says why; only a missing one means "no store".
        let no_db = matches!(&db_file, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if no_db {
            let found = Found::of(path);
            let refused = match mode {
                OpenMode::Create => false,
                OpenMode::Existing => true,
                OpenMode::CreateIfEmpty => found == Found::OtherFiles,
            };
            if refused {
                return Err(OpenError::NoStore {
                    path: absolute(path),
                    found,
                });
            }
            create_private_dir(path).map_err(|e| OpenError::Unusable {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
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
        make_private(path);
        let store = Self::trees(db, path)?;
        let created = schema::prepare(&store, path, had_files, upgrade, mode)?;
        Ok((store, created))
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
            imports: tree("imports")?,
            queue: tree("queue")?,
            queue_due: tree("queue_due")?,
            caught: tree("caught")?,
            db: db.clone(),
            gate: Arc::default(),
        })
    }

    /// Holds the write barrier shared, for the length of one write (a
    /// poisoned barrier guards nothing: it is taken all the same).
    pub(super) fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pauses every writer of this store (in this process) until the guard
    /// drops: what runs meanwhile sees one consistent state. Writes in
    /// flight finish first; new ones wait.
    pub fn pause_writers(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
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
        // A backup holds every password hash: private from the start.
        create_private_dir(dest).map_err(|e| OpenError::Unusable {
            path: dest.to_owned(),
            reason: e.to_string(),
        })?;
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
        make_private(dest);
        let store = Self::trees(copy, dest)?;
        // The copy is of the same format as this store: inspect, never
        // convert (a backup before a migration must stay the old format).
        schema::prepare(&store, dest, true, Upgrade::Inspect, OpenMode::Existing)?;
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

/// Mode of the store's directories (and of a backup's).
const PRIVATE_DIR: u32 = 0o700;
/// Mode of the store's files.
const PRIVATE_FILE: u32 = 0o600;

/// Creates `path` (and any missing parent, as usual) with mode 0700 before
/// sled writes in it, or makes an existing one 0700. Explicitly, after
/// creation: the umask may have taken bits off (never added any).
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(PRIVATE_DIR).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
        other => other?,
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Makes `path` 0700 and everything in it 0700 (directories) or 0600
/// (files), whatever the umask sled created them under. Symbolic links are
/// left alone. A failure (a file of another owner) is a warning: the store
/// works, but the operator should know it is not private.
fn make_private(path: &Path) {
    if let Err(e) = private_tree(path, 0) {
        eprintln!(
            "authd: warning: cannot make the store in {} private (mode 0700/0600): {e}",
            path.display()
        );
    }
}

fn private_tree(path: &Path, depth: usize) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let wanted = if meta.is_dir() {
        PRIVATE_DIR
    } else if meta.is_file() {
        PRIVATE_FILE
    } else {
        return Ok(());
    };
    if meta.permissions().mode() & 0o7777 != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
    }
    // sled's layout is two levels deep (`blobs/`); a bound all the same.
    if meta.is_dir() && depth < 4 {
        for entry in std::fs::read_dir(path)? {
            private_tree(&entry?.path(), depth + 1)?;
        }
    }
    Ok(())
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

/// The process holding the lock of the store in `dir`, as "pid N, NAME",
/// from the kernel's table of file locks (Linux's `/proc/locks`), so an
/// "in use" refusal says which process to stop; `None` where that table
/// is not readable or names no holder.
pub(crate) fn lock_holder(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(dir.join("db")).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 19909 fe:00:10019689 0 EOF"; a waiter's
    // line has "->" after the number.
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        let file_inode: u64 = fields.get(5)?.rsplit(':').next()?.parse().ok()?;
        (file_inode == inode).then(|| fields.get(4)?.parse::<u32>().ok())?
    })?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(match name.trim() {
        "" => format!("pid {pid}"),
        name => format!("pid {pid}, {name}"),
    })
}
