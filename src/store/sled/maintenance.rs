//! [`Maintenance`] on sled: bulk import, scans, counts and the
//! consistency check.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sled::Transactional;

use super::schema::NEXT_ID_KEY;
use super::{abort, corrupt, flatten, tx, SledStore};
use crate::codec::{
    decode_hash, decode_id, decode_owned, decode_session, decode_token, decode_user, encode_id,
    encode_user,
};
use crate::store::{Counts, Maintenance, StoreError};
use crate::user::{Email, User, UserId};

impl Maintenance for SledStore {
    fn add_users(&self, batch: &[(Email, String)]) -> Result<Vec<UserId>, StoreError> {
        // Encode outside the transaction: the closure may run again.
        let records = batch
            .iter()
            .map(|(email, hashed_password)| {
                encode_user(&User {
                    id: UserId(0),
                    email: email.clone(),
                    hashed_password: hashed_password.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = (&self.users, &self.by_email, &self.meta)
            .transaction(|(users, by_email, meta)| {
                let first = match meta.get(NEXT_ID_KEY)? {
                    Some(v) => tx(decode_id(&v))?.0,
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
