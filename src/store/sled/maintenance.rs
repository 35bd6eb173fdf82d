//! [`Maintenance`] on sled: bulk import, scans, counts and the
//! consistency check.
//!
//! An import is all or nothing although each batch is a transaction of its
//! own (one transaction of a million users would hold them all in memory,
//! and sled's transactions are meant to stay small). Each batch writes, in
//! its transaction, a tag in the `imports` tree: the import's random id and
//! the batch's first user id as key, the number of users as value (a
//! batch's ids are consecutive: the next id is read and advanced in the
//! same transaction). The commit removes every tag of the import in one
//! transaction. Tags still present when a store is opened are of an import
//! that never committed (killed, crashed, interrupted): the open removes
//! each tagged batch's users with its tag, one transaction per batch, so a
//! crash during the rollback resumes it.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::path::Path;

use sled::Transactional;

use super::schema::NEXT_ID_KEY;
use super::{abort, corrupt, flatten, owned_in, tx, SledStore};
use crate::codec::{
    decode_hash, decode_id, decode_owned, decode_session, decode_token, decode_user, encode_id,
    encode_user,
};
use crate::store::{Counts, Import, Maintenance, StoreError};
use crate::user::{NewUser, User, UserId};

/// Version byte of a tag's value.
const TAG_VERSION: u8 = 1;
/// More users than one tag may name: a tag saying more is damaged (an
/// import writes batches of 10,000).
const MAX_TAGGED: u64 = 1 << 24;

/// One batch of an uncommitted import, as its tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    import: u64,
    first: u64,
    count: u64,
}

impl Tag {
    fn key(&self) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.import.to_be_bytes());
        key[8..].copy_from_slice(&self.first.to_be_bytes());
        key
    }

    fn value(&self) -> [u8; 9] {
        let mut value = [TAG_VERSION; 9];
        value[1..].copy_from_slice(&self.count.to_be_bytes());
        value
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Tag, StoreError> {
        let bad = || StoreError::Corrupt(format!("imports: malformed tag {key:?} = {value:?}"));
        if key.len() != 16 || value.len() != 9 || value[0] != TAG_VERSION {
            return Err(bad());
        }
        let word = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap_or_default());
        let tag = Tag {
            import: word(&key[..8]),
            first: word(&key[8..]),
            count: word(&value[1..]),
        };
        if tag.count > MAX_TAGGED || tag.first.checked_add(tag.count).is_none() {
            return Err(bad());
        }
        Ok(tag)
    }
}

/// An import in progress on sled: the tags of the batches it wrote.
struct SledImport<'a> {
    store: &'a SledStore,
    id: u64,
    tags: Vec<Tag>,
}

impl Import for SledImport<'_> {
    fn add_users(&mut self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.store.insert_users(users, Some(self.id))?;
        self.tags.push(Tag {
            import: self.id,
            first: ids[0].0,
            count: ids.len() as u64,
        });
        Ok(ids)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let _writing = self.store.writing();
        let keys: Vec<[u8; 16]> = self.tags.iter().map(Tag::key).collect();
        self.store
            .imports
            .transaction(|imports| -> super::TxResult<()> {
                for key in &keys {
                    imports.remove(key.as_slice())?;
                }
                Ok(())
            })
            .map_err(flatten)?;
        self.store.flush()
    }

    fn roll_back(self: Box<Self>) -> Result<usize, StoreError> {
        let mut removed = 0;
        for tag in &self.tags {
            removed += self.store.roll_back_batch(tag)?;
        }
        self.store.flush()?;
        Ok(removed)
    }
}

impl SledStore {
    /// Creates `batch` in one transaction, with the tag of `import` when
    /// given, and flushes.
    fn insert_users(
        &self,
        batch: &[NewUser],
        import: Option<u64>,
    ) -> Result<Vec<UserId>, StoreError> {
        let _writing = self.writing();
        // Encode outside the transaction: the closure may run again.
        let records = batch
            .iter()
            .map(|new| encode_user(&new.with_id(UserId(0))))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = (&self.users, &self.by_email, &self.meta, &self.imports)
            .transaction(|(users, by_email, meta, imports)| {
                let first = match meta.get(NEXT_ID_KEY)? {
                    Some(v) => tx(decode_id(&v))?.0,
                    None => 1,
                };
                let mut ids = Vec::with_capacity(batch.len());
                for (n, (new, record)) in batch.iter().zip(&records).enumerate() {
                    let id = UserId(first + n as u64);
                    let previous = by_email.insert(new.email.key(), encode_id(id).as_slice())?;
                    if previous.is_some() {
                        return abort(StoreError::EmailTaken);
                    }
                    users.insert(encode_id(id).as_slice(), record.as_slice())?;
                    ids.push(id);
                }
                let next = UserId(first + batch.len() as u64);
                meta.insert(NEXT_ID_KEY, encode_id(next).as_slice())?;
                if let Some(import) = import {
                    let tag = Tag {
                        import,
                        first,
                        count: batch.len() as u64,
                    };
                    imports.insert(tag.key().as_slice(), tag.value().as_slice())?;
                }
                Ok(ids)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(ids)
    }

    /// Removes the users of one tagged batch (with whatever they came to
    /// own) and its tag, in one transaction; returns how many users were
    /// still there.
    fn roll_back_batch(&self, tag: &Tag) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let tag_key = tag.key();
        (
            &self.users,
            &self.by_email,
            &self.sessions,
            &self.tokens,
            &self.owned,
            &self.imports,
        )
            .transaction(|(users, by_email, sessions, tokens, owned, imports)| {
                let mut removed = 0;
                for id in (tag.first..tag.first + tag.count).map(UserId) {
                    let key = encode_id(id);
                    let Some(bytes) = users.remove(key.as_slice())? else {
                        continue;
                    };
                    removed += 1;
                    let user = tx(decode_user(id, &bytes))?;
                    if by_email.get(user.email.key())?.as_deref() == Some(key.as_slice()) {
                        by_email.remove(user.email.key())?;
                    }
                    let list = owned_in(owned, id)?;
                    for (hash, _) in &list.sessions {
                        sessions.remove(hash.as_bytes().as_slice())?;
                    }
                    for (_, hash) in &list.tokens {
                        tokens.remove(hash.as_bytes().as_slice())?;
                    }
                    owned.remove(key.as_slice())?;
                }
                imports.remove(tag_key.as_slice())?;
                Ok(removed)
            })
            .map_err(flatten)
    }

    /// Rolls back every batch still tagged (imports that never committed),
    /// and says so on stderr; called by every open, before anything reads
    /// the store. Does nothing, at the cost of one read, when no tag is
    /// left.
    pub(super) fn recover_imports(&self, path: &Path) -> Result<(), StoreError> {
        if self.imports.is_empty() {
            return Ok(());
        }
        let tags = self
            .imports
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Tag::decode(&key, &value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let imports: BTreeSet<u64> = tags.iter().map(|t| t.import).collect();
        let mut removed = 0;
        for tag in &tags {
            removed += self.roll_back_batch(tag)?;
        }
        self.flush()?;
        eprintln!(
            "authd: rolled back {} interrupted import(s) in {}: removed the {removed} users \
             it had written (nothing of an import stays unless it completes)",
            imports.len(),
            crate::store::absolute(path).display()
        );
        Ok(())
    }
}

impl Maintenance for SledStore {
    /// A look in the index per key: local reads, nothing to batch.
    fn held_keys(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut held = std::collections::HashSet::new();
        for key in keys {
            if self.by_email.contains_key(key.as_bytes())? {
                held.insert((*key).to_owned());
            }
        }
        Ok(held)
    }

    fn add_users(&self, batch: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
        self.insert_users(batch, None)
    }

    fn begin_import(&self) -> Result<Box<dyn Import + '_>, StoreError> {
        let mut id = [0u8; 8];
        crate::token::fill_random(&mut id).map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Box::new(SledImport {
            store: self,
            id: u64::from_be_bytes(id),
            tags: Vec::new(),
        }))
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

    fn counts(&self) -> Result<Counts, StoreError> {
        Ok(Counts {
            users: self.users.len(),
            sessions: self.sessions.len(),
            tokens: self.tokens.len(),
        })
    }

    fn check(&self) -> Result<Vec<String>, StoreError> {
        self.check_records()
    }
}

impl SledStore {
    /// Walks every record and index entry and lists each disagreement:
    /// records that do not decode, users missing from `by_email` or entries
    /// pointing at nothing, sessions and tokens whose user is gone or whose
    /// user's list does not name them (and list entries naming nothing),
    /// and ids at or above the next id to be issued. Empty means
    /// consistent.
    fn check_records(&self) -> Result<Vec<String>, StoreError> {
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
            if !user.email.key_fits() {
                problems.push(format!(
                    "user {id}: email key {:?} is neither the key of {:?} nor its old key",
                    user.email.key(),
                    user.email.as_str()
                ));
            }
            match self.by_email.get(user.email.key())? {
                Some(v) if decode_id(&v).ok() == Some(id) => {}
                Some(v) => problems.push(format!(
                    "user {id}: by_email entry points at {:?}",
                    decode_id(&v).map(|i| i.0)
                )),
                None => problems.push(format!("user {id}: missing from by_email")),
            }
        }
        for entry in self.by_email.iter() {
            let (key, value) = entry?;
            let Ok(id) = decode_id(&value) else {
                problems.push(format!("by_email: entry {key:?} has a malformed id"));
                continue;
            };
            match self.get(id) {
                Ok(None) => problems.push(format!("by_email: entry points at missing user {id}")),
                Ok(Some(user)) if user.email.key().as_bytes() != key.as_ref() => problems.push(
                    format!("by_email: entry for user {id} does not match the record"),
                ),
                // A record that does not decode is reported above.
                Ok(Some(_)) | Err(_) => {}
            }
        }
        // What the lists say, to compare with the records.
        let mut listed_sessions = HashSet::new();
        let mut listed_tokens = HashSet::new();
        for entry in self.owned.iter() {
            let (key, value) = entry?;
            let id = decode_id(&key)?;
            let list = match decode_owned(&value) {
                Ok(list) => list,
                Err(e) => {
                    problems.push(format!("owned {id}: {e}"));
                    continue;
                }
            };
            if self.users.get(encode_id(id))?.is_none() {
                problems.push(format!("owned: list of missing user {id}"));
            }
            for (hash, handle) in list.sessions {
                match self.sessions.get(hash.as_bytes())? {
                    Some(bytes) => match decode_session(hash, &bytes) {
                        Ok(s) if s.user == id && s.id.0 == handle => {}
                        Ok(_) => problems.push(format!(
                            "owned {id}: a session entry does not match its record"
                        )),
                        Err(_) => {}
                    },
                    None => problems.push(format!("owned {id}: lists a session that is gone")),
                }
                listed_sessions.insert(hash.0);
            }
            for (code, hash) in list.tokens {
                match self.tokens.get(hash.as_bytes())? {
                    Some(bytes) => match decode_token(hash, &bytes) {
                        Ok(t) if t.user == id && t.purpose.code() == code => {}
                        Ok(_) => problems.push(format!(
                            "owned {id}: a token entry does not match its record"
                        )),
                        Err(_) => {}
                    },
                    None => problems.push(format!("owned {id}: lists a token that is gone")),
                }
                listed_tokens.insert(hash.0);
            }
        }
        for entry in self.sessions.iter() {
            let (key, value) = entry?;
            let hash = decode_hash(&key)?;
            match decode_session(hash, &value) {
                Err(e) => problems.push(format!("sessions: {e}")),
                Ok(s) => {
                    if self.users.get(encode_id(s.user))?.is_none() {
                        problems.push(format!("sessions: a session of missing user {}", s.user));
                    }
                    if !listed_sessions.contains(&hash.0) {
                        problems.push(format!(
                            "sessions: a session of user {} missing from its list",
                            s.user
                        ));
                    }
                }
            }
        }
        for entry in self.tokens.iter() {
            let (key, value) = entry?;
            let hash = decode_hash(&key)?;
            match decode_token(hash, &value) {
                Err(e) => problems.push(format!("tokens: {e}")),
                Ok(t) => {
                    if self.users.get(encode_id(t.user))?.is_none() {
                        problems.push(format!("tokens: a token of missing user {}", t.user));
                    }
                    if !listed_tokens.contains(&hash.0) {
                        problems.push(format!(
                            "tokens: a token of user {} missing from its list",
                            t.user
                        ));
                    }
                }
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open_when_free, store, wait_released};
    use super::*;
    use crate::store::{Upgrade, UserStore};
    use crate::user::Email;

    const HASH: &str = "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e";

    fn users(from: usize, n: usize) -> Vec<NewUser> {
        (from..from + n)
            .map(|i| NewUser {
                email: Email::parse(&format!("u{i}@x.io")).unwrap(),
                hashed_password: HASH.to_owned(),
                password_normalized: true,
                email_verified: true,
                created_at: None,
                totp: None,
            })
            .collect()
    }

    #[test]
    fn tags_round_trip_and_damaged_ones_are_refused() {
        let tag = Tag {
            import: 0xdead_beef,
            first: 7,
            count: 10_000,
        };
        assert_eq!(Tag::decode(&tag.key(), &tag.value()).unwrap(), tag);
        let mut value = tag.value();
        value[0] = 9;
        assert!(Tag::decode(&tag.key(), &value).is_err());
        assert!(Tag::decode(&tag.key()[..15], &tag.value()).is_err());
        let huge = Tag {
            count: MAX_TAGGED + 1,
            ..tag
        };
        assert!(Tag::decode(&huge.key(), &huge.value()).is_err());
        let overflow = Tag {
            first: u64::MAX,
            count: 2,
            ..tag
        };
        assert!(Tag::decode(&overflow.key(), &overflow.value()).is_err());
    }

    #[test]
    fn a_committed_import_stays_and_leaves_no_tag() {
        let (_dir, store) = store();
        store.add_user(&users(100, 1)[0].email, HASH).unwrap();
        let mut import = store.begin_import().unwrap();
        let first = import.add_users(&users(0, 3)).unwrap();
        let second = import.add_users(&users(3, 2)).unwrap();
        assert_eq!(first, [UserId(2), UserId(3), UserId(4)]);
        assert_eq!(second, [UserId(5), UserId(6)]);
        assert_eq!(store.imports.len(), 2);
        // Tags are not inconsistencies.
        assert_eq!(store.check().unwrap(), Vec::<String>::new());
        import.commit().unwrap();
        assert!(store.imports.is_empty());
        assert_eq!(store.counts().unwrap().users, 6);
        assert_eq!(store.check().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_rolled_back_import_leaves_the_store_as_it_was() {
        let (_dir, store) = store();
        let before = store.add_user(&users(100, 1)[0].email, HASH).unwrap();
        let mut import = store.begin_import().unwrap();
        import.add_users(&users(0, 3)).unwrap();
        // A refused batch writes nothing and no tag.
        let taken = vec![users(5, 1)[0].clone(), users(100, 1)[0].clone()];
        assert!(matches!(
            import.add_users(&taken),
            Err(StoreError::EmailTaken)
        ));
        assert_eq!(store.imports.len(), 1);
        assert_eq!(import.roll_back().unwrap(), 3);
        assert!(store.imports.is_empty());
        assert_eq!(store.counts().unwrap().users, 1);
        assert_eq!(store.user_by_email(&before.email).unwrap(), before);
        assert!(store.user_by_email(&users(0, 1)[0].email).is_err());
        assert_eq!(store.check().unwrap(), Vec::<String>::new());
        // The emails are free again.
        store.add_users(&users(0, 3)).unwrap();
    }

    #[test]
    fn an_import_never_committed_is_rolled_back_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.add_user(&users(100, 1)[0].email, HASH).unwrap();
            let mut import = store.begin_import().unwrap();
            import.add_users(&users(0, 4)).unwrap();
            import.add_users(&users(4, 4)).unwrap();
            // Neither committed nor rolled back: as if the process died.
            std::mem::forget(import);
            store.flush().unwrap();
        }
        wait_released(dir.path());
        let store = open_when_free(dir.path(), Upgrade::Refuse).unwrap();
        assert!(store.imports.is_empty());
        assert_eq!(store.counts().unwrap().users, 1);
        assert_eq!(store.by_email.len(), 1);
        assert_eq!(store.check().unwrap(), Vec::<String>::new());
        // New ids continue after the rolled-back ones.
        let next = store.add_user(&users(0, 1)[0].email, HASH).unwrap();
        assert_eq!(next.id, UserId(10));
    }
}
