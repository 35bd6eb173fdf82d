//! [`TokenStore`] on PostgreSQL: `authd_tokens`.

use super::rows::{self, user_columns, violation};
use super::{key, ms, PgStore};
use crate::one_time::{OneTimeToken, Purpose};
use crate::store::{Ends, Redemption, StoreError, TokenStore, UserChange};
use crate::token::TokenHash;
use crate::user::{User, UserId};

const TOKEN_AND_USER: &str = concat!(
    "SELECT t.token_hash, t.user_id, t.purpose, t.created_at, t.expires_at, ",
    user_columns!(),
    " FROM authd_tokens t JOIN authd_users u ON u.id = t.user_id WHERE t.token_hash = $1"
);

/// Columns of a token row before its user's.
const TOKEN_COLUMNS: usize = 5;

impl TokenStore for PgStore {
    /// One upsert: the user's token of this purpose is replaced in place.
    fn issue_token(&self, token: &OneTimeToken) -> Result<(), StoreError> {
        let Some(user) = key(token.user) else {
            return Err(StoreError::NotFound);
        };
        self.conn()?
            .execute(
                "INSERT INTO authd_tokens (token_hash, user_id, purpose, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT ON CONSTRAINT authd_tokens_one_per_purpose DO UPDATE SET
                    token_hash = EXCLUDED.token_hash, created_at = EXCLUDED.created_at,
                    expires_at = EXCLUDED.expires_at",
                &[
                    &token.token_hash.as_bytes().as_slice(),
                    &user,
                    &token.purpose.name(),
                    &ms(token.created_at),
                    &ms(token.expires_at),
                ],
            )
            .map_err(violation)?;
        Ok(())
    }

    fn token(&self, token_hash: &TokenHash) -> Result<Option<(OneTimeToken, User)>, StoreError> {
        let row = super::pool::read(&self.pool, |conn| {
            conn.query_opt(TOKEN_AND_USER, &[&token_hash.as_bytes().as_slice()])
        })?;
        match row {
            Some(row) => Ok(Some((
                rows::token(&row, 0)?,
                rows::user(&row, TOKEN_COLUMNS)?,
            ))),
            None => Ok(None),
        }
    }

    fn drop_token(&self, token_hash: &TokenHash) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM authd_tokens WHERE token_hash = $1",
            &[&token_hash.as_bytes().as_slice()],
        )?;
        Ok(n > 0)
    }

    fn drop_token_of(&self, user: UserId, purpose: Purpose) -> Result<bool, StoreError> {
        let Some(user) = key(user) else {
            return Ok(false);
        };
        let n = self.conn()?.execute(
            "DELETE FROM authd_tokens WHERE user_id = $1 AND purpose = $2",
            &[&user, &purpose.name()],
        )?;
        Ok(n > 0)
    }

    /// The user's row is locked first, as every other write to a user
    /// does (locking the token first would deadlock against a password
    /// change ending the user's tokens); then the token's row is deleted:
    /// of two redemptions racing, the second finds it gone.
    fn redeem(
        &self,
        redemption: &Redemption<'_>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError> {
        let Some(user) = key(redemption.user) else {
            return Err(StoreError::PreconditionFailed);
        };
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute(
            "SELECT 1 FROM authd_users WHERE id = $1 FOR UPDATE",
            &[&user],
        )?;
        let row = tx.query_opt(
            "DELETE FROM authd_tokens WHERE token_hash = $1 AND purpose = $2
                AND user_id = $3 AND expires_at > $4 AND created_at >= $5
             RETURNING user_id",
            &[
                &redemption.token_hash.as_bytes().as_slice(),
                &redemption.purpose.name(),
                &user,
                &ms(redemption.now),
                &ms(redemption.issued_from),
            ],
        )?;
        if row.is_none() {
            return Err(StoreError::PreconditionFailed);
        }
        let updated = super::users::change_in(&mut tx, user, None, changes, ends)?;
        tx.commit()?;
        Ok(updated)
    }

    fn expire_tokens(&self, now: u64, issued_before: u64) -> Result<usize, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM authd_tokens WHERE expires_at <= $1 OR created_at < $2",
            &[&ms(now), &ms(issued_before)],
        )?;
        Ok(n as usize)
    }
}
