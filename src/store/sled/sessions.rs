//! [`SessionStore`] on sled: `sessions` (token hash -> session) and each
//! user's list of session hashes in `owned`, changed together.

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::users::change_in;
use super::{abort, flatten, owned_in, put_owned, tx, SledStore, TxResult};
use crate::codec::{decode_hash, decode_session, encode_id, encode_session};
use crate::session::{Session, SessionId};
use crate::store::{Ends, SessionStore, StoreError, UserChange};
use crate::token::TokenHash;
use crate::user::{User, UserId};

/// Ends the session with `hash` inside a transaction: its record and its
/// entry in its user's list. `false` if it had ended.
fn end_in(
    sessions: &TransactionalTree,
    owned: &TransactionalTree,
    hash: &TokenHash,
) -> TxResult<bool> {
    let Some(bytes) = sessions.remove(hash.as_bytes().as_slice())? else {
        return Ok(false);
    };
    let session = tx(decode_session(*hash, &bytes))?;
    let mut list = owned_in(owned, session.user)?;
    list.sessions.retain(|(h, _)| h != hash);
    put_owned(owned, session.user, &list)?;
    Ok(true)
}

impl SessionStore for SledStore {
    fn open_session(
        &self,
        session: &Session,
        password_is: &str,
        changes: &[UserChange],
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        let id = session.user;
        let record = encode_session(session)?;
        self.in_user_trees(|trees| {
            // A hash in use is refused, as PostgreSQL's key refuses it
            // (a fresh 256-bit token never meets one).
            if trees.sessions.get(session.token_hash.as_bytes())?.is_some() {
                return abort(StoreError::InvalidValue {
                    field: "token",
                    reason: "already held by a session".to_owned(),
                });
            }
            change_in(trees, id, Some(password_is), changes, Ends::default())?;
            let mut list = owned_in(trees.owned, id)?;
            list.sessions.push((session.token_hash, session.id.0));
            // The oldest end first.
            let excess = list.sessions.len().saturating_sub(max_per_user.max(1));
            for (hash, _) in list.sessions.drain(..excess) {
                trees.sessions.remove(hash.as_bytes().as_slice())?;
            }
            trees
                .sessions
                .insert(session.token_hash.as_bytes().as_slice(), record.as_slice())?;
            put_owned(trees.owned, id, &list)?;
            Ok(())
        })
    }

    fn session(&self, token_hash: &TokenHash) -> Result<Option<(Session, User)>, StoreError> {
        let Some(bytes) = self.sessions.get(token_hash.as_bytes())? else {
            return Ok(None);
        };
        let session = decode_session(*token_hash, &bytes)?;
        Ok(self.get(session.user)?.map(|user| (session, user)))
    }

    fn touch_session(&self, token_hash: &TokenHash, last_seen: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        let key = token_hash.as_bytes();
        self.sessions
            .transaction(|sessions| {
                let Some(bytes) = sessions.get(key)? else {
                    return Ok(());
                };
                let mut session = tx(decode_session(*token_hash, &bytes))?;
                if session.last_seen >= last_seen {
                    return Ok(());
                }
                session.last_seen = last_seen;
                sessions.insert(key.as_slice(), tx(encode_session(&session))?)?;
                Ok(())
            })
            .map_err(flatten)
    }

    fn sessions_of(&self, user: UserId) -> Result<Vec<Session>, StoreError> {
        let Some(bytes) = self.owned.get(encode_id(user))? else {
            return Ok(Vec::new());
        };
        let list = crate::codec::decode_owned(&bytes)?;
        let mut found = Vec::with_capacity(list.sessions.len());
        for (hash, _) in list.sessions.iter().rev() {
            if let Some(bytes) = self.sessions.get(hash.as_bytes())? {
                found.push(decode_session(*hash, &bytes)?);
            }
        }
        // Newest first; the list is in login order already, this settles
        // sessions of one millisecond.
        found.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(found)
    }

    fn end_session(&self, token_hash: &TokenHash) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let ended = (&self.sessions, &self.owned)
            .transaction(|(sessions, owned)| end_in(sessions, owned, token_hash))
            .map_err(flatten)?;
        if ended {
            self.flush()?;
        }
        Ok(ended)
    }

    fn end_session_by_id(&self, user: UserId, id: SessionId) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let ended = (&self.sessions, &self.owned)
            .transaction(|(sessions, owned)| {
                let list = owned_in(owned, user)?;
                match list.sessions.iter().find(|(_, handle)| *handle == id.0) {
                    Some((hash, _)) => end_in(sessions, owned, hash),
                    None => Ok(false),
                }
            })
            .map_err(flatten)?;
        if ended {
            self.flush()?;
        }
        Ok(ended)
    }

    fn end_sessions_of(&self, user: UserId, keep: Option<&TokenHash>) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let ended = (&self.sessions, &self.owned)
            .transaction(|(sessions, owned)| {
                let mut list = owned_in(owned, user)?;
                let before = list.sessions.len();
                let mut kept = Vec::new();
                for (hash, handle) in list.sessions.drain(..) {
                    if keep.is_some_and(|k| k.ct_eq(&hash)) {
                        kept.push((hash, handle));
                    } else {
                        sessions.remove(hash.as_bytes().as_slice())?;
                    }
                }
                list.sessions = kept;
                let ended = before - list.sessions.len();
                put_owned(owned, user, &list)?;
                Ok(ended)
            })
            .map_err(flatten)?;
        if ended > 0 {
            self.flush()?;
        }
        Ok(ended)
    }

    fn expire_sessions(&self, created_before: u64, seen_before: u64) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let expired = |s: &Session| s.created_at < created_before || s.last_seen < seen_before;
        let mut removed = 0;
        for entry in self.sessions.iter() {
            let (key, value) = entry?;
            let hash = decode_hash(&key)?;
            if !expired(&decode_session(hash, &value)?) {
                continue;
            }
            // Checked again inside: a request may have used it meanwhile.
            let ended = (&self.sessions, &self.owned)
                .transaction(|(sessions, owned)| match sessions.get(hash.as_bytes())? {
                    Some(bytes) if expired(&tx(decode_session(hash, &bytes))?) => {
                        end_in(sessions, owned, &hash)
                    }
                    _ => Ok(false),
                })
                .map_err(flatten)?;
            removed += usize::from(ended);
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }
}
