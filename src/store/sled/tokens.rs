//! [`TokenStore`] on sled: `tokens` (token hash -> token) and each user's
//! list of token hashes in `owned`, changed together.

use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::users::change_in;
use super::{abort, flatten, owned_in, put_owned, tx, SledStore};
use crate::codec::{decode_hash, decode_token, encode_id, encode_token};
use crate::one_time::{OneTimeToken, Purpose};
use crate::store::{Ends, Redemption, StoreError, TokenStore, UserChange};
use crate::token::TokenHash;
use crate::user::{User, UserId};

/// Drops the token with `hash` inside a transaction, with its entry in its
/// user's list; `false` if it was gone.
fn drop_in(
    tokens: &TransactionalTree,
    owned: &TransactionalTree,
    hash: &TokenHash,
) -> super::TxResult<bool> {
    let Some(bytes) = tokens.remove(hash.as_bytes().as_slice())? else {
        return Ok(false);
    };
    let token = tx(decode_token(*hash, &bytes))?;
    let mut list = owned_in(owned, token.user)?;
    list.tokens.retain(|(_, h)| h != hash);
    put_owned(owned, token.user, &list)?;
    Ok(true)
}

impl TokenStore for SledStore {
    fn issue_token(&self, token: &OneTimeToken) -> Result<(), StoreError> {
        let _writing = self.writing();
        let record = encode_token(token)?;
        let code = token.purpose.code();
        (&self.users, &self.tokens, &self.owned)
            .transaction(|(users, tokens, owned)| {
                // A hash held by another user is refused first, as on
                // PostgreSQL (whose insert meets the hash's key before the
                // user's foreign key).
                if let Some(other) = tokens.get(token.token_hash.as_bytes())? {
                    if tx(decode_token(token.token_hash, &other))?.user != token.user {
                        return abort(StoreError::InvalidValue {
                            field: "token",
                            reason: "already held by another user".to_owned(),
                        });
                    }
                }
                if users.get(encode_id(token.user))?.is_none() {
                    return abort(StoreError::NotFound);
                }
                let mut list = owned_in(owned, token.user)?;
                // A newer token replaces the older one of its purpose.
                for (_, old) in list.tokens.iter().filter(|(p, _)| *p == code) {
                    tokens.remove(old.as_bytes().as_slice())?;
                }
                list.tokens.retain(|(p, _)| *p != code);
                list.tokens.push((code, token.token_hash));
                tokens.insert(token.token_hash.as_bytes().as_slice(), record.as_slice())?;
                put_owned(owned, token.user, &list)?;
                Ok(())
            })
            .map_err(flatten)?;
        self.flush()
    }

    fn token(&self, token_hash: &TokenHash) -> Result<Option<(OneTimeToken, User)>, StoreError> {
        let Some(bytes) = self.tokens.get(token_hash.as_bytes())? else {
            return Ok(None);
        };
        let token = decode_token(*token_hash, &bytes)?;
        Ok(self.get(token.user)?.map(|user| (token, user)))
    }

    fn drop_token(&self, token_hash: &TokenHash) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let dropped = (&self.tokens, &self.owned)
            .transaction(|(tokens, owned)| drop_in(tokens, owned, token_hash))
            .map_err(flatten)?;
        if dropped {
            self.flush()?;
        }
        Ok(dropped)
    }

    fn drop_token_of(&self, user: UserId, purpose: Purpose) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let code = purpose.code();
        let dropped = (&self.tokens, &self.owned)
            .transaction(|(tokens, owned)| {
                let list = owned_in(owned, user)?;
                match list.tokens.iter().find(|(p, _)| *p == code) {
                    Some((_, hash)) => drop_in(tokens, owned, hash),
                    None => Ok(false),
                }
            })
            .map_err(flatten)?;
        if dropped {
            self.flush()?;
        }
        Ok(dropped)
    }

    fn redeem(
        &self,
        redemption: &Redemption<'_>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError> {
        let token_hash = redemption.token_hash;
        self.in_user_trees(|trees| {
            let Some(bytes) = trees.tokens.get(token_hash.as_bytes())? else {
                return abort(StoreError::PreconditionFailed);
            };
            let token = tx(decode_token(*token_hash, &bytes))?;
            if token.purpose != redemption.purpose
                || token.user != redemption.user
                || redemption.now >= token.expires_at
                || token.created_at < redemption.issued_from
            {
                return abort(StoreError::PreconditionFailed);
            }
            drop_in(trees.tokens, trees.owned, token_hash)?;
            change_in(trees, token.user, None, changes, ends)
        })
    }

    fn expire_tokens(&self, now: u64, issued_before: u64) -> Result<usize, StoreError> {
        let _writing = self.writing();
        let expired = |t: &OneTimeToken| now >= t.expires_at || t.created_at < issued_before;
        let mut removed = 0;
        for entry in self.tokens.iter() {
            let (key, value) = entry?;
            let hash = decode_hash(&key)?;
            if !expired(&decode_token(hash, &value)?) {
                continue;
            }
            let dropped = (&self.tokens, &self.owned)
                .transaction(|(tokens, owned)| drop_in(tokens, owned, &hash))
                .map_err(flatten)?;
            removed += usize::from(dropped);
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }
}
