//! Accounts whose addresses came to share a key when the email rules
//! changed (store format 3, schema 5: [`crate::email_key`]).
//!
//! The migration leaves both reachable: the account that holds the new key
//! keeps it, the other keeps its old key. Nothing is wrong with the store,
//! but a person may hold two accounts, or someone may hold a look-alike of
//! another's address; `authd check` lists them so an operator can decide.

use std::ops::ControlFlow;

use super::{Maintenance, StoreError, UserStore};
use crate::user::User;

/// An account kept under its old key, and the account that holds the key
/// its address has now (`None`: no account does any more, since the holder
/// was deleted or changed address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookalike {
    pub kept_old_key: User,
    pub holder: Option<User>,
}

/// Every account kept under an old key, with the holder of its new key,
/// in id order. One pass over the users; a lookup per account listed.
pub fn lookalikes(
    users: &dyn UserStore,
    scan: &dyn Maintenance,
) -> Result<Vec<Lookalike>, StoreError> {
    let mut kept = Vec::new();
    scan.each_user(&mut |user| {
        // A key that is neither (a fault `check` reports) is no look-alike.
        if let Some(key) = user.email.rule_key() {
            if key != user.email.key() && user.email.key() == user.email.legacy_key() {
                kept.push((user, key));
            }
        }
        ControlFlow::Continue(())
    })?;
    kept.into_iter()
        .map(|(user, key)| {
            let holder = match users.user_by_key(&key) {
                Ok(holder) => Some(holder),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            Ok(Lookalike {
                kept_old_key: user,
                holder,
            })
        })
        .collect()
}
