//! [`UserStore`] on sled: `users`, `by_email`, and `owned` when a change
//! ends the user's sessions.

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::schema::NEXT_ID_KEY;
use super::{abort, flatten, owned_in, put_owned, tx, SledStore, TxResult};
use crate::codec::{decode_id, decode_user, encode_id, encode_user};
use crate::store::{Ends, StoreError, UserChange, UserStore};
use crate::user::{NewUser, User, UserId};

/// The trees a change to a user touches, inside one transaction.
pub(super) struct UserTrees<'a> {
    pub users: &'a TransactionalTree,
    pub by_email: &'a TransactionalTree,
    pub sessions: &'a TransactionalTree,
    pub tokens: &'a TransactionalTree,
    pub owned: &'a TransactionalTree,
}

/// Applies `changes` to user `id` inside a transaction, keeping the email
/// index in step and ending what `ends` names: the whole of
/// [`UserStore::update_user`], shared with a token's redemption.
pub(super) fn change_in(
    trees: &UserTrees<'_>,
    id: UserId,
    password_is: Option<&str>,
    changes: &[UserChange],
    ends: Ends,
) -> TxResult<User> {
    let key = encode_id(id);
    let Some(bytes) = trees.users.get(key)? else {
        return abort(StoreError::NotFound);
    };
    let old = tx(decode_user(id, &bytes))?;
    if password_is.is_some_and(|hash| hash != old.hashed_password) {
        return abort(StoreError::PreconditionFailed);
    }
    let mut new = old.clone();
    for change in changes {
        if let Err(refused) = change.apply_to(&mut new) {
            return abort(refused);
        }
    }
    if new.email.key() != old.email.key() {
        if trees.by_email.get(new.email.key())?.is_some() {
            return abort(StoreError::EmailTaken);
        }
        trees.by_email.remove(old.email.key())?;
        trees.by_email.insert(new.email.key(), key.as_slice())?;
    }
    if ends.sessions || !ends.tokens.is_empty() {
        let mut list = owned_in(trees.owned, id)?;
        if ends.sessions {
            let (kept, ended): (Vec<_>, Vec<_>) = list
                .sessions
                .drain(..)
                .partition(|(hash, _)| Some(*hash) == ends.keep_session);
            for (hash, _) in ended {
                trees.sessions.remove(hash.as_bytes().as_slice())?;
            }
            list.sessions = kept;
        }
        let ends_token = |code: u8| ends.tokens.iter().any(|p| p.code() == code);
        for (_, hash) in list.tokens.iter().filter(|(p, _)| ends_token(*p)) {
            trees.tokens.remove(hash.as_bytes().as_slice())?;
        }
        list.tokens.retain(|(p, _)| !ends_token(*p));
        put_owned(trees.owned, id, &list)?;
    }
    if !changes.is_empty() {
        trees.users.insert(key.as_slice(), tx(encode_user(&new))?)?;
    }
    Ok(new)
}

impl SledStore {
    /// Runs `write` as one transaction over the trees a change to a user
    /// touches, behind the write barrier, and flushes.
    pub(super) fn in_user_trees<T>(
        &self,
        write: impl Fn(&UserTrees<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let _writing = self.writing();
        let done = (
            &self.users,
            &self.by_email,
            &self.sessions,
            &self.tokens,
            &self.owned,
        )
            .transaction(|(users, by_email, sessions, tokens, owned)| {
                write(&UserTrees {
                    users,
                    by_email,
                    sessions,
                    tokens,
                    owned,
                })
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(done)
    }
}

impl UserStore for SledStore {
    fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let _writing = self.writing();
        let email = &new.email;
        // The record body does not contain the id, so encode it once,
        // outside the transaction closure (which may run several times).
        let record = encode_user(&new.with_id(UserId(0)))?;
        let id = (&self.users, &self.by_email, &self.meta)
            .transaction(|(users, by_email, meta)| {
                if by_email.get(email.key())?.is_some() {
                    return abort(StoreError::EmailTaken);
                }
                let id = match meta.get(NEXT_ID_KEY)? {
                    Some(v) => tx(decode_id(&v))?,
                    None => UserId(1),
                };
                meta.insert(NEXT_ID_KEY, encode_id(UserId(id.0 + 1)).as_slice())?;
                users.insert(encode_id(id).as_slice(), record.as_slice())?;
                by_email.insert(email.key(), encode_id(id).as_slice())?;
                Ok(id)
            })
            .map_err(flatten)?;
        self.flush()?;
        Ok(new.with_id(id))
    }

    fn user_by_id(&self, id: UserId) -> Result<User, StoreError> {
        self.get(id)?.ok_or(StoreError::NotFound)
    }

    fn user_by_key(&self, key: &str) -> Result<User, StoreError> {
        match self.get_by_email(key)? {
            // The index read and the record read are two steps: a user
            // whose email changed in between is simply not found.
            Some(user) if user.email.key() == key => Ok(user),
            _ => Err(StoreError::NotFound),
        }
    }

    fn update_user(
        &self,
        id: UserId,
        password_is: Option<&str>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError> {
        self.in_user_trees(|trees| change_in(trees, id, password_is, changes, ends))
    }

    fn delete_user(&self, id: UserId) -> Result<(), StoreError> {
        let _writing = self.writing();
        let key = encode_id(id);
        (
            &self.users,
            &self.by_email,
            &self.sessions,
            &self.tokens,
            &self.owned,
        )
            .transaction(|(users, by_email, sessions, tokens, owned)| {
                let Some(bytes) = users.remove(key.as_slice())? else {
                    return abort(StoreError::NotFound);
                };
                let user = tx(decode_user(id, &bytes))?;
                by_email.remove(user.email.key())?;
                let list = owned_in(owned, id)?;
                for (hash, _) in &list.sessions {
                    sessions.remove(hash.as_bytes().as_slice())?;
                }
                for (_, hash) in &list.tokens {
                    tokens.remove(hash.as_bytes().as_slice())?;
                }
                owned.remove(key.as_slice())?;
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.heartbeat()
    }

    fn flush(&self) -> Result<(), StoreError> {
        SledStore::flush(self)
    }
}
