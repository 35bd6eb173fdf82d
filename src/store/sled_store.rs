//! [`UserStore`] on sled: one tree of records and three index trees.
//!
//! - `users`: id (u64 big-endian) -> user record (see `codec`)
//! - `by_email`: case-folded email -> id
//! - `by_session`: SHA-256 of the session token -> id
//! - `by_reset`: SHA-256 of the reset token -> id
//! - `meta`: the store marker and the next id
//!
//! Every write runs as one sled transaction over the record and the indexes
//! it touches, so they never disagree, then flushes before returning.

use std::ops::ControlFlow;
use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use super::{Change, Lookup, OpenError, Precondition, StoreError, UserStore};
use crate::codec::{self, decode_id, decode_user, encode_id, encode_user};
use crate::token::TokenHash;
use crate::user::{Email, User, UserId};
use subtle::ConstantTimeEq;

/// Page cache of a store opened without a size: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;
/// Key in `meta` that marks a directory as an authd store.
const MARKER_KEY: &[u8] = b"format";
/// Value of the marker for this store layout.
const MARKER_VALUE: &[u8] = b"authd-store-1";
/// Key in `meta` that health checks write, to prove the store can write.
const HEARTBEAT_KEY: &[u8] = b"heartbeat";
/// Key in `meta` holding the next user id to hand out.
const NEXT_ID_KEY: &[u8] = b"next_id";

/// The sled-backed store. Cheap to share: sled trees are reference-counted.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    users: Tree,
    by_email: Tree,
    by_session: Tree,
    by_reset: Tree,
    meta: Tree,
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn corrupt(e: codec::CodecError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn flatten(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

/// The three secondary indexes, so code that treats them alike (lookups,
/// consistency checks) is written once.
#[derive(Debug, Clone, Copy)]
enum Index {
    Email,
    Session,
    Reset,
}

impl Index {
    const ALL: [Index; 3] = [Index::Email, Index::Session, Index::Reset];

    fn name(self) -> &'static str {
        match self {
            Index::Email => "by_email",
            Index::Session => "by_session",
            Index::Reset => "by_reset",
        }
    }

    /// The key under which `user` must appear in this index, if any.
    fn key_of(self, user: &User) -> Option<&[u8]> {
        match self {
            Index::Email => Some(user.email.key().as_bytes()),
            Index::Session => user.session.as_ref().map(|s| &s.token_hash.as_bytes()[..]),
            Index::Reset => user.reset.as_ref().map(|r| &r.token_hash.as_bytes()[..]),
        }
    }

    /// Whether `user` owns `key` in this index; constant-time, since for
    /// the token indexes the key is derived from a secret.
    fn owned_by(self, user: &User, key: &[u8]) -> bool {
        self.key_of(user)
            .is_some_and(|own| bool::from(own.ct_eq(key)))
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in `path`.
    ///
    /// Fails fast with [`OpenError::InUse`] when another process holds the
    /// directory, instead of waiting on the lock.
    pub fn open(path: &Path) -> Result<SledStore, OpenError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`] with sled's page cache bounded to `cache_bytes`
    /// (sled's own default is 1 GiB, more than an auth store needs).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore, OpenError> {
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
        Self::from_db(db, path, had_files)
    }

    /// Opens the trees of an open sled database and checks (or, for a new
    /// one, writes) the authd marker.
    fn from_db(db: sled::Db, path: &Path, had_files: bool) -> Result<SledStore, OpenError> {
        let unusable = |e: sled::Error| OpenError::Unusable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let tree = |name: &str| db.open_tree(name).map_err(unusable);
        let store = SledStore {
            users: tree("users")?,
            by_email: tree("by_email")?,
            by_session: tree("by_session")?,
            by_reset: tree("by_reset")?,
            meta: tree("meta")?,
            db: db.clone(),
        };
        match store.meta.get(MARKER_KEY).map_err(unusable)? {
            Some(marker) if marker == MARKER_VALUE => {}
            Some(other) => {
                return Err(OpenError::Foreign {
                    path: path.to_owned(),
                    reason: format!(
                        "unknown format marker {:?}",
                        String::from_utf8_lossy(&other)
                    ),
                })
            }
            None if !store.users.is_empty() => {
                return Err(OpenError::Foreign {
                    path: path.to_owned(),
                    reason: "it holds users but no authd format marker".to_owned(),
                })
            }
            // Existing store files that hold no marker: another program's
            // sled database, or a damaged one that recovered to nothing.
            // Starting afresh there would silently hide the loss.
            None if had_files => return Err(OpenError::Foreign {
                path: path.to_owned(),
                reason:
                    "its store files hold no authd data (damaged, or written by another program); \
                             restore a backup, or point --data-dir at a new directory"
                        .to_owned(),
            }),
            None => {
                store
                    .meta
                    .insert(MARKER_KEY, MARKER_VALUE)
                    .map_err(unusable)?;
                db.flush().map_err(unusable)?;
            }
        }
        Ok(store)
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
            let mut batch = sled::Batch::default();
            for entry in source.iter() {
                let (key, value) = entry.map_err(failed)?;
                batch.insert(key, value);
                entries += 1;
            }
            target.apply_batch(batch).map_err(failed)?;
        }
        copy.flush().map_err(failed)?;
        Ok((Self::from_db(copy, dest, true)?, entries))
    }

    /// Walks every record and index entry and lists each disagreement:
    /// records that do not decode, records missing from an index, index
    /// entries pointing at nothing or at a user that does not own the key,
    /// and ids at or above the next id to be issued. Empty means consistent.
    fn check_indexes(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let next_id = match self.meta.get(NEXT_ID_KEY)? {
            Some(v) => decode_id(&v).map_err(corrupt)?.0,
            None => 1,
        };
        for entry in self.users.iter() {
            let (key, value) = entry?;
            let id = match decode_id(&key) {
                Ok(id) => id,
                Err(e) => {
                    problems.push(format!("users: bad key {key:?}: {e}"));
                    continue;
                }
            };
            if id.0 >= next_id {
                problems.push(format!("user {id}: id not below next id {next_id}"));
            }
            let user = match decode_user(id, &value) {
                Ok(user) => user,
                Err(e) => {
                    problems.push(format!("user {id}: {e}"));
                    continue;
                }
            };
            for index in Index::ALL {
                let Some(key) = index.key_of(&user) else {
                    continue;
                };
                let name = index.name();
                match self.tree(index).get(key)? {
                    Some(v) if decode_id(&v).ok() == Some(id) => {}
                    Some(v) => problems.push(format!(
                        "user {id}: {name} entry points at {:?}",
                        decode_id(&v).map(|i| i.0)
                    )),
                    None => problems.push(format!("user {id}: missing from {name}")),
                }
            }
        }
        for index in Index::ALL {
            let name = index.name();
            for entry in self.tree(index).iter() {
                let (key, value) = entry?;
                let Ok(id) = decode_id(&value) else {
                    problems.push(format!("{name}: entry {key:?} has a malformed id"));
                    continue;
                };
                match self.users.get(encode_id(id))? {
                    None => problems.push(format!("{name}: entry points at missing user {id}")),
                    Some(bytes) => match decode_user(id, &bytes) {
                        Ok(user) if index.owned_by(&user, &key) => {}
                        Ok(_) => problems.push(format!(
                            "{name}: entry for user {id} does not match the record"
                        )),
                        // Already reported while walking the records.
                        Err(_) => {}
                    },
                }
            }
        }
        Ok(problems)
    }

    /// Reads and decodes user `id`, if present.
    fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match self.users.get(encode_id(id))? {
            Some(bytes) => decode_user(id, &bytes).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    fn tree(&self, index: Index) -> &Tree {
        match index {
            Index::Email => &self.by_email,
            Index::Session => &self.by_session,
            Index::Reset => &self.by_reset,
        }
    }

    /// Follows an index entry to its user, and returns the user only if the
    /// record still owns the key. The index read and the record read are two
    /// steps, so a user whose token changed in between is simply not found.
    fn follow(&self, index: Index, key: &[u8]) -> Result<User, StoreError> {
        let id = self.tree(index).get(key)?.ok_or(StoreError::NotFound)?;
        let id = decode_id(&id).map_err(corrupt)?;
        match self.get(id)? {
            Some(user) if index.owned_by(&user, key) => Ok(user),
            _ => Err(StoreError::NotFound),
        }
    }
}

/// Points a token index at `id` for `new` and drops the entry for `old`.
fn move_token(
    index: &TransactionalTree,
    id: UserId,
    old: Option<TokenHash>,
    new: Option<TokenHash>,
) -> TxResult<()> {
    if old.map(|h| h.0) == new.map(|h| h.0) {
        return Ok(());
    }
    if let Some(old) = old {
        index.remove(old.as_bytes().as_slice())?;
    }
    if let Some(new) = new {
        if let Some(owner) = index.get(new.as_bytes())? {
            if decode_id(&owner).ok() != Some(id) {
                return abort(StoreError::InvalidValue {
                    field: "token",
                    reason: "already held by another user".to_owned(),
                });
            }
        }
        index.insert(new.as_bytes().as_slice(), encode_id(id).as_slice())?;
    }
    Ok(())
}

impl UserStore for SledStore {
    fn add_user(&self, email: &Email, hashed_password: &str) -> Result<User, StoreError> {
        let template = User {
            id: UserId(0),
            email: email.clone(),
            hashed_password: hashed_password.to_owned(),
            session: None,
            reset: None,
        };
        // The record body does not contain the id, so encode it once, outside
        // the transaction closure (which may run several times).
        let record = encode_user(&template)?;
        let id = (&self.users, &self.by_email, &self.meta)
            .transaction(|(users, by_email, meta)| {
                if by_email.get(email.key())?.is_some() {
                    return abort(StoreError::EmailTaken);
                }
                let id = match meta.get(NEXT_ID_KEY)? {
                    Some(v) => match decode_id(&v) {
                        Ok(id) => id,
                        Err(e) => return abort(corrupt(e)),
                    },
                    None => UserId(1),
                };
                meta.insert(NEXT_ID_KEY, encode_id(UserId(id.0 + 1)).as_slice())?;
                users.insert(encode_id(id).as_slice(), record.as_slice())?;
                by_email.insert(email.key(), encode_id(id).as_slice())?;
                Ok(id)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(User { id, ..template })
    }

    fn find_user_by(&self, lookup: &Lookup) -> Result<User, StoreError> {
        match lookup {
            Lookup::Id(id) => self.get(*id)?.ok_or(StoreError::NotFound),
            Lookup::Email(email) => self.follow(Index::Email, email.key().as_bytes()),
            Lookup::Session(hash) => self.follow(Index::Session, hash.as_bytes()),
            Lookup::Reset(hash) => self.follow(Index::Reset, hash.as_bytes()),
        }
    }

    fn update_user(
        &self,
        id: UserId,
        precondition: &Precondition,
        changes: &[Change],
    ) -> Result<User, StoreError> {
        let user = self.apply(id, precondition, changes)?;
        self.flush()?;
        Ok(user)
    }

    fn touch_session(
        &self,
        id: UserId,
        token_hash: &TokenHash,
        last_seen: u64,
    ) -> Result<(), StoreError> {
        let key = encode_id(id);
        self.users
            .transaction(|users| {
                let Some(bytes) = users.get(key)? else {
                    return Ok(());
                };
                let mut user = match decode_user(id, &bytes) {
                    Ok(user) => user,
                    Err(e) => return abort(corrupt(e)),
                };
                match user.session.as_mut() {
                    Some(session) if session.token_hash.ct_eq(token_hash) => {
                        session.last_seen = session.last_seen.max(last_seen);
                    }
                    _ => return Ok(()),
                }
                let record = match encode_user(&user) {
                    Ok(record) => record,
                    Err(e) => return abort(corrupt(e)),
                };
                users.insert(key.as_slice(), record)?;
                Ok(())
            })
            .map_err(flatten)
    }

    fn expire_sessions(&self, created_before: u64, seen_before: u64) -> Result<usize, StoreError> {
        self.expire(Index::Session, |user| {
            user.session.and_then(|s| {
                (s.created_at < created_before || s.last_seen < seen_before)
                    .then_some(Precondition::SessionIs(s.token_hash))
            })
        })
    }

    fn delete_user(&self, id: UserId) -> Result<(), StoreError> {
        let key = encode_id(id);
        (
            &self.users,
            &self.by_email,
            &self.by_session,
            &self.by_reset,
        )
            .transaction(|(users, by_email, by_session, by_reset)| {
                let Some(bytes) = users.remove(key.as_slice())? else {
                    return abort(StoreError::NotFound);
                };
                let user = match decode_user(id, &bytes) {
                    Ok(user) => user,
                    Err(e) => return abort(corrupt(e)),
                };
                by_email.remove(user.email.key())?;
                if let Some(session) = user.session {
                    by_session.remove(session.token_hash.as_bytes().as_slice())?;
                }
                if let Some(reset) = user.reset {
                    by_reset.remove(reset.token_hash.as_bytes().as_slice())?;
                }
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()
    }

    fn add_users(&self, batch: &[(Email, String)]) -> Result<Vec<UserId>, StoreError> {
        // Encode outside the transaction: the closure may run again.
        let records = batch
            .iter()
            .map(|(email, hashed_password)| {
                encode_user(&User {
                    id: UserId(0),
                    email: email.clone(),
                    hashed_password: hashed_password.clone(),
                    session: None,
                    reset: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = (&self.users, &self.by_email, &self.meta)
            .transaction(|(users, by_email, meta)| {
                let first = match meta.get(NEXT_ID_KEY)? {
                    Some(v) => match decode_id(&v) {
                        Ok(id) => id.0,
                        Err(e) => return abort(corrupt(e)),
                    },
                    None => 1,
                };
                let mut ids = Vec::with_capacity(batch.len());
                for (n, ((email, _), record)) in batch.iter().zip(&records).enumerate() {
                    let id = UserId(first + n as u64);
                    let previous = by_email.insert(email.key(), encode_id(id).as_slice())?;
                    if previous.is_some() {
                        return abort(StoreError::EmailTaken);
                    }
                    users.insert(encode_id(id).as_slice(), record.as_slice())?;
                    ids.push(id);
                }
                let next = UserId(first + batch.len() as u64);
                meta.insert(NEXT_ID_KEY, encode_id(next).as_slice())?;
                Ok(ids)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(ids)
    }

    fn each_user(&self, visit: &mut dyn FnMut(User) -> ControlFlow<()>) -> Result<(), StoreError> {
        for entry in self.users.iter() {
            let (key, value) = entry?;
            let user = decode_user(decode_id(&key)?, &value)?;
            if visit(user).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn count_users(&self) -> Result<usize, StoreError> {
        Ok(self.users.len())
    }

    /// Reads the marker, then writes and flushes a heartbeat: a store that
    /// can no longer write (disk full, I/O errors) is not healthy, even if
    /// it still answers reads.
    fn ping(&self) -> Result<(), StoreError> {
        match self.meta.get(MARKER_KEY)? {
            Some(marker) if marker == MARKER_VALUE => {}
            _ => {
                return Err(StoreError::Corrupt(
                    "the store marker is missing".to_owned(),
                ))
            }
        }
        self.meta
            .insert(HEARTBEAT_KEY, &crate::clock::unix_millis().to_be_bytes())?;
        self.flush()
    }

    fn expire_resets(&self, created_before: u64) -> Result<usize, StoreError> {
        self.expire(Index::Reset, |user| {
            user.reset.and_then(|r| {
                (r.created_at < created_before).then_some(Precondition::ResetIs(r.token_hash))
            })
        })
    }

    fn check(&self) -> Result<Vec<String>, StoreError> {
        self.check_indexes()
    }

    /// Entries in the session and reset-token indexes.
    fn token_counts(&self) -> Result<(usize, usize), StoreError> {
        Ok((self.by_session.len(), self.by_reset.len()))
    }

    fn flush(&self) -> Result<(), StoreError> {
        SledStore::flush(self)
    }
}

impl SledStore {
    /// One atomic update of a record and its indexes, not yet flushed.
    fn apply(
        &self,
        id: UserId,
        precondition: &Precondition,
        changes: &[Change],
    ) -> Result<User, StoreError> {
        let key = encode_id(id);
        (
            &self.users,
            &self.by_email,
            &self.by_session,
            &self.by_reset,
        )
            .transaction(|(users, by_email, by_session, by_reset)| {
                let Some(bytes) = users.get(key)? else {
                    return abort(StoreError::NotFound);
                };
                let old = match decode_user(id, &bytes) {
                    Ok(user) => user,
                    Err(e) => return abort(corrupt(e)),
                };
                if !precondition.holds_for(&old) {
                    return abort(StoreError::PreconditionFailed);
                }
                let mut new = old.clone();
                for change in changes {
                    change.apply_to(&mut new);
                }
                if new.email.key() != old.email.key() {
                    if by_email.get(new.email.key())?.is_some() {
                        return abort(StoreError::EmailTaken);
                    }
                    by_email.remove(old.email.key())?;
                    by_email.insert(new.email.key(), key.as_slice())?;
                }
                move_token(
                    by_session,
                    id,
                    old.session.map(|s| s.token_hash),
                    new.session.map(|s| s.token_hash),
                )?;
                move_token(
                    by_reset,
                    id,
                    old.reset.map(|r| r.token_hash),
                    new.reset.map(|r| r.token_hash),
                )?;
                let record = match encode_user(&new) {
                    Ok(record) => record,
                    Err(e) => return abort(corrupt(e)),
                };
                users.insert(key.as_slice(), record)?;
                Ok(new)
            })
            .map_err(flatten)
    }

    /// Walks a token index and clears the token of every user for whom
    /// `expired` names the precondition under which to clear it; one flush
    /// at the end.
    fn expire(
        &self,
        index: Index,
        expired: impl Fn(&User) -> Option<Precondition>,
    ) -> Result<usize, StoreError> {
        let change = match index {
            Index::Session => Change::Session(None),
            Index::Reset => Change::Reset(None),
            Index::Email => return Ok(0),
        };
        let mut removed = 0;
        for entry in self.tree(index).iter() {
            let (_, value) = entry?;
            let id = decode_id(&value)?;
            let Some(user) = self.get(id)? else {
                continue;
            };
            if let Some(precondition) = expired(&user) {
                match self.apply(id, &precondition, std::slice::from_ref(&change)) {
                    Ok(_) => removed += 1,
                    // Changed meanwhile (new login, used token): not ours.
                    Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }
}

impl From<codec::CodecError> for StoreError {
    fn from(e: codec::CodecError) -> Self {
        corrupt(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lookup;
    use crate::token::Token;
    use crate::user::{ResetGrant, Session};

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn session(token: &Token) -> Session {
        Session {
            token_hash: token.hash(),
            created_at: 10,
            last_seen: 10,
        }
    }

    fn grant(token: &Token) -> ResetGrant {
        ResetGrant {
            token_hash: token.hash(),
            created_at: 10,
        }
    }

    fn assert_consistent(store: &SledStore) {
        assert_eq!(store.check().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn ids_are_sequential_and_emails_unique_in_any_case() {
        let (_dir, store) = store();
        let a = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        let b = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
        assert_eq!((a.id, b.id), (UserId(1), UserId(2)));
        assert!(matches!(
            store.add_user(&email("A@X.IO"), "$2b$h"),
            Err(StoreError::EmailTaken)
        ));
        assert_eq!(store.count_users().unwrap(), 2);
        let found = store.find_user_by(&Lookup::Email(email("B@x.IO"))).unwrap();
        assert_eq!(found, b);
        assert_eq!(store.find_user_by(&Lookup::Id(UserId(1))).unwrap(), a);
        assert_consistent(&store);
    }

    #[test]
    fn keyword_api_distinguishes_no_user_from_no_field() {
        let (_dir, store) = store();
        let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        assert_eq!(store.find_user_by_keyword("email", "A@x.io").unwrap(), user);
        assert_eq!(store.find_user_by_keyword("id", "1").unwrap(), user);
        assert!(matches!(
            store.find_user_by_keyword("email", "b@x.io"),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.find_user_by_keyword("id", "99"),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.find_user_by_keyword("session_id", "not-a-token"),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.find_user_by_keyword("password", "x"),
            Err(StoreError::UnknownField(f)) if f == "password"
        ));
        assert!(matches!(
            store.find_user_by_keyword("id", "one"),
            Err(StoreError::InvalidValue { field: "id", .. })
        ));
        // An unknown field anywhere in an update changes nothing at all.
        assert!(matches!(
            store.update_user_keywords(
                user.id,
                &[("hashed_password", Some("$2b$new")), ("colour", Some("red"))]
            ),
            Err(StoreError::UnknownField(f)) if f == "colour"
        ));
        assert_eq!(store.find_user_by(&Lookup::Id(user.id)).unwrap(), user);
        assert!(matches!(
            store.update_user_keywords(UserId(99), &[("hashed_password", Some("$2b$x"))]),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn keyword_updates_hash_tokens() {
        let (_dir, store) = store();
        let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        let token = Token::generate().unwrap();
        store
            .update_user_keywords(user.id, &[("session_id", Some(token.as_str()))])
            .unwrap();
        let found = store
            .find_user_by_keyword("session_id", token.as_str())
            .unwrap();
        assert_eq!(found.id, user.id);
        store
            .update_user_keywords(user.id, &[("session_id", None)])
            .unwrap();
        assert!(matches!(
            store.find_user_by_keyword("session_id", token.as_str()),
            Err(StoreError::NotFound)
        ));
        assert_consistent(&store);
    }

    #[test]
    fn indexes_follow_every_kind_of_update() {
        let (_dir, store) = store();
        let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        let other = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
        let (s1, s2) = (Token::generate().unwrap(), Token::generate().unwrap());
        let (r1, r2) = (Token::generate().unwrap(), Token::generate().unwrap());
        let find = |l: Lookup| store.find_user_by(&l);
        let set = |changes: &[Change]| store.update_user(user.id, &Precondition::None, changes);

        set(&[Change::Session(Some(session(&s1)))]).unwrap();
        assert_eq!(find(Lookup::Session(s1.hash())).unwrap().id, user.id);
        assert_consistent(&store);

        set(&[Change::Session(Some(session(&s2)))]).unwrap();
        assert!(matches!(
            find(Lookup::Session(s1.hash())),
            Err(StoreError::NotFound)
        ));
        assert_eq!(find(Lookup::Session(s2.hash())).unwrap().id, user.id);
        assert_consistent(&store);

        set(&[Change::Reset(Some(grant(&r1)))]).unwrap();
        set(&[Change::Reset(Some(grant(&r2)))]).unwrap();
        assert!(matches!(
            find(Lookup::Reset(r1.hash())),
            Err(StoreError::NotFound)
        ));
        assert_eq!(find(Lookup::Reset(r2.hash())).unwrap().id, user.id);
        assert_consistent(&store);

        set(&[Change::Email(email("New@x.io"))]).unwrap();
        assert!(matches!(
            find(Lookup::Email(email("a@x.io"))),
            Err(StoreError::NotFound)
        ));
        assert_eq!(find(Lookup::Email(email("new@X.io"))).unwrap().id, user.id);
        assert_consistent(&store);

        // Taking another user's email is refused and changes nothing.
        let before = find(Lookup::Id(user.id)).unwrap();
        assert!(matches!(
            set(&[
                Change::HashedPassword("$2b$x".into()),
                Change::Email(email("B@x.io"))
            ]),
            Err(StoreError::EmailTaken)
        ));
        assert_eq!(find(Lookup::Id(user.id)).unwrap(), before);
        assert_eq!(find(Lookup::Email(email("b@x.io"))).unwrap().id, other.id);

        // A failed precondition changes nothing either.
        assert!(matches!(
            store.update_user(
                user.id,
                &Precondition::ResetIs(r1.hash()),
                &[Change::Reset(None), Change::Session(None)]
            ),
            Err(StoreError::PreconditionFailed)
        ));
        assert_eq!(find(Lookup::Id(user.id)).unwrap(), before);

        // The password-reset shape: consume the token, end the session.
        let after = store
            .update_user(
                user.id,
                &Precondition::ResetIs(r2.hash()),
                &[
                    Change::HashedPassword("$2b$new".into()),
                    Change::Reset(None),
                    Change::Session(None),
                ],
            )
            .unwrap();
        assert_eq!(after.hashed_password, "$2b$new");
        assert!(after.session.is_none() && after.reset.is_none());
        assert!(matches!(
            find(Lookup::Reset(r2.hash())),
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            find(Lookup::Session(s2.hash())),
            Err(StoreError::NotFound)
        ));
        assert_consistent(&store);
    }

    #[test]
    fn a_token_cannot_point_at_two_users() {
        let (_dir, store) = store();
        let a = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        let b = store.add_user(&email("b@x.io"), "$2b$h").unwrap();
        let token = Token::generate().unwrap();
        let set = |id| {
            store.update_user(
                id,
                &Precondition::None,
                &[Change::Session(Some(session(&token)))],
            )
        };
        set(a.id).unwrap();
        assert!(matches!(set(b.id), Err(StoreError::InvalidValue { .. })));
        assert_consistent(&store);
    }

    #[test]
    fn only_token_hashes_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::generate().unwrap();
        let reset = Token::generate().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
            store
                .update_user(
                    user.id,
                    &Precondition::None,
                    &[
                        Change::Session(Some(session(&token))),
                        Change::Reset(Some(grant(&reset))),
                    ],
                )
                .unwrap();
            for tree in [
                &store.users,
                &store.by_email,
                &store.by_session,
                &store.by_reset,
                &store.meta,
            ] {
                for entry in tree.iter() {
                    let (k, v) = entry.unwrap();
                    for secret in [token.as_str(), reset.as_str()] {
                        let s = secret.as_bytes();
                        assert!(!k.windows(s.len()).any(|w| w == s));
                        assert!(!v.windows(s.len()).any(|w| w == s));
                    }
                }
            }
        }
        // Nor in any file of the store.
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            for secret in [token.as_str(), reset.as_str()] {
                let s = secret.as_bytes();
                assert!(!bytes.windows(s.len()).any(|w| w == s), "{entry:?}");
            }
        }
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    fn reopen(path: &Path) -> SledStore {
        open_when_free(path).unwrap()
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let user = {
            let store = SledStore::open(dir.path()).unwrap();
            store.add_user(&email("a@x.io"), "$2b$h").unwrap()
        };
        let store = reopen(dir.path());
        assert_eq!(
            store.find_user_by(&Lookup::Email(email("a@x.io"))).unwrap(),
            user
        );
        // Ids keep counting where they were.
        assert_eq!(
            store.add_user(&email("b@x.io"), "$2b$h").unwrap().id,
            UserId(2)
        );
    }

    #[test]
    fn check_reports_planted_damage() {
        let (_dir, store) = store();
        let user = store.add_user(&email("a@x.io"), "$2b$h").unwrap();
        store
            .by_email
            .insert("ghost@x.io", &encode_id(UserId(42)))
            .unwrap();
        store
            .by_session
            .insert([7u8; 32], &encode_id(user.id))
            .unwrap();
        store
            .users
            .insert(encode_id(UserId(3)), &[9u8, 1, 2][..])
            .unwrap();
        let problems = store.check().unwrap();
        assert!(
            problems.iter().any(|p| p.contains("missing user 42")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("by_session")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("user 3")),
            "{problems:?}"
        );
        store.by_email.remove(user.email.key()).unwrap();
        let problems = store.check().unwrap();
        assert!(
            problems.iter().any(|p| p.contains("missing from by_email")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_store_in_use_is_refused_at_once() {
        let (dir, _store) = store();
        // sled's lock is per process and file; a second open in this
        // process is what a second server would hit too.
        match SledStore::open(dir.path()) {
            Err(OpenError::InUse(_)) => {}
            Err(other) => panic!("expected InUse, got {other}"),
            Ok(_) => panic!("a second open must fail"),
        }
    }

    #[test]
    fn a_foreign_sled_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("users").unwrap().insert("k", "v").unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            open_when_free(dir.path()),
            Err(OpenError::Foreign { .. })
        ));
    }
}

/// Waits (tests only, up to ten seconds) until no sled handle in this
/// process holds the store in `path`: sled locks its `db` file with
/// `flock`, and releases it a moment after the last handle is dropped.
#[cfg(test)]
fn wait_released(path: &Path) {
    use std::os::unix::io::AsRawFd;
    let file = std::fs::File::open(path.join("db")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // SAFETY: flock on a file descriptor we own; the lock is released at
    // once (and with the file) on success.
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
/// background threads let go of the directory lock a moment after the last
/// handle is dropped, so an open in the same process may briefly see it
/// held; this waits for it, up to ten seconds.
#[cfg(test)]
fn open_when_free(path: &Path) -> Result<SledStore, OpenError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(path) {
            Err(OpenError::InUse(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;

    /// A store whose files were overwritten must be refused, not silently
    /// replaced by an empty one.
    #[test]
    fn a_damaged_store_is_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .add_user(&Email::parse("a@x.io").unwrap(), "$2b$04$h")
                .unwrap();
        }
        // Wait until sled's background threads let go of the store.
        wait_released(dir.path());
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(dir.path().join("db"), garbage).unwrap();
        match open_when_free(dir.path()) {
            Err(OpenError::Foreign { reason, .. }) => {
                assert!(reason.contains("damaged"), "{reason}")
            }
            Err(OpenError::Unusable { reason, .. }) => assert!(!reason.is_empty()),
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("a damaged store opened as if empty"),
        }
    }
}
