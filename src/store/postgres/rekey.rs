//! The data step of schema migration 5: email keys by the rules of
//! [`crate::email_key`] (NFKC_Casefold local parts, UTS 46 domains).
//!
//! Schemas before it keyed an address by lowercasing it. Only addresses
//! outside ASCII can key differently now, so only those rows are read. They
//! go in id order, in the migration's transaction: a row whose new key is
//! free moves to it; one whose new key is taken (by an account whose old key
//! already was that key, or by an older account moved before it) keeps its
//! old key, so both stay reachable by the spelling each registered with and
//! `authd check` lists the pair. The sled store's migration to format 3
//! decides alike.

use postgres::Transaction;

use crate::store::StoreError;
use crate::user::Email;

/// Addresses with a character outside ASCII (more bytes than characters in
/// the database's UTF-8), oldest account first.
const NON_ASCII: &str = "SELECT id, email, email_key FROM authd_users \
                         WHERE octet_length(email) <> char_length(email) ORDER BY id";
/// Moves a row to its new key unless another row holds it.
const MOVE: &str = "UPDATE authd_users SET email_key = $1 WHERE id = $2 \
                    AND NOT EXISTS (SELECT 1 FROM authd_users WHERE email_key = $1)";

/// Re-keys every address whose key changed with the rules; returns how
/// many rows moved.
pub(super) fn rekey_emails(tx: &mut Transaction<'_>) -> Result<u64, StoreError> {
    let mut moved = 0;
    for row in tx.query(NON_ASCII, &[])? {
        let id: i64 = row.try_get(0)?;
        let email: String = row.try_get(1)?;
        let key: String = row.try_get(2)?;
        let Ok(fresh) = Email::parse(&email) else {
            // Not an address's shape any more: it keeps its key.
            continue;
        };
        if fresh.key() != key {
            moved += tx.execute(MOVE, &[&fresh.key(), &id])?;
        }
    }
    Ok(moved)
}
