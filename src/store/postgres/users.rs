//! [`UserStore`] on PostgreSQL: `authd_users`.

use super::rows::{self, user_columns, violation};
use super::{key, ms, PgStore};
use crate::store::{Ends, StoreError, UserChange, UserStore};
use crate::user::{NewUser, User, UserId};

const BY_ID: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM authd_users u WHERE u.id = $1"
);
const BY_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM authd_users u WHERE u.email_key = $1"
);
const FOR_UPDATE: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM authd_users u WHERE u.id = $1 FOR UPDATE"
);
const WRITE: &str = "UPDATE authd_users SET email = $2, email_key = $3, hashed_password = $4, \
     email_verified = $5, pending_email = $6, pending_email_key = $7 WHERE id = $1";

/// Applies `changes` to user `id` in `tx`, if its password hash is still
/// `password_is`, ending what `ends` names: the whole of
/// [`UserStore::update_user`], shared with a token's redemption.
pub(super) fn change_in(
    tx: &mut postgres::Transaction<'_>,
    id: i64,
    password_is: Option<&str>,
    changes: &[UserChange],
    ends: Ends,
) -> Result<User, StoreError> {
    let old = match tx.query_opt(FOR_UPDATE, &[&id])? {
        Some(row) => rows::user(&row, 0)?,
        None => return Err(StoreError::NotFound),
    };
    if password_is.is_some_and(|hash| hash != old.hashed_password) {
        return Err(StoreError::PreconditionFailed);
    }
    let mut new = old;
    for change in changes {
        change.apply_to(&mut new);
    }
    let pending = new.pending_email.as_ref();
    tx.execute(
        WRITE,
        &[
            &id,
            &new.email.as_str(),
            &new.email.key(),
            &new.hashed_password,
            &new.email_verified,
            &pending.map(|e| e.as_str()),
            &pending.map(|e| e.key()),
        ],
    )
    .map_err(violation)?;
    if ends.sessions {
        let kept = ends.keep_session.map(|hash| hash.as_bytes().to_vec());
        tx.execute(
            "DELETE FROM authd_sessions WHERE user_id = $1 \
             AND ($2::bytea IS NULL OR token_hash <> $2)",
            &[&id, &kept],
        )?;
    }
    if !ends.tokens.is_empty() {
        let purposes: Vec<&str> = ends.tokens.iter().map(|p| p.name()).collect();
        tx.execute(
            "DELETE FROM authd_tokens WHERE user_id = $1 AND purpose = ANY($2)",
            &[&id, &purposes],
        )?;
    }
    Ok(new)
}

impl PgStore {
    /// One user by an indexed column (`sql` is one of the `BY_*` queries).
    fn find_user(
        &self,
        sql: &'static str,
        value: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<User, StoreError> {
        let row = super::pool::read(&self.pool, |conn| conn.query_opt(sql, &[value]))?;
        match row {
            Some(row) => rows::user(&row, 0),
            None => Err(StoreError::NotFound),
        }
    }
}

impl UserStore for PgStore {
    fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let created_at = new.created_at.map(ms);
        let row = super::pool::write(&self.pool, |conn| {
            conn.client.query_one(
                "INSERT INTO authd_users (email, email_key, hashed_password, email_verified, \
                 created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &new.email.as_str(),
                    &new.email.key(),
                    &new.hashed_password,
                    &new.email_verified,
                    &created_at,
                ],
            )
        })?
        .map_err(violation)?;
        let id: i64 = row.try_get(0)?;
        Ok(new.with_id(UserId(id as u64)))
    }

    fn user_by_id(&self, id: UserId) -> Result<User, StoreError> {
        let Some(id) = key(id) else {
            return Err(StoreError::NotFound);
        };
        self.find_user(BY_ID, &id)
    }

    fn user_by_key(&self, key: &str) -> Result<User, StoreError> {
        self.find_user(BY_EMAIL, &key)
    }

    fn update_user(
        &self,
        id: UserId,
        password_is: Option<&str>,
        changes: &[UserChange],
        ends: Ends,
    ) -> Result<User, StoreError> {
        let Some(id_key) = key(id) else {
            return Err(StoreError::NotFound);
        };
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let new = change_in(&mut tx, id_key, password_is, changes, ends)?;
        tx.commit()?;
        Ok(new)
    }

    /// Sessions and tokens go with the user (`ON DELETE CASCADE`).
    fn delete_user(&self, id: UserId) -> Result<(), StoreError> {
        let Some(id) = key(id) else {
            return Err(StoreError::NotFound);
        };
        match self
            .conn()?
            .execute("DELETE FROM authd_users WHERE id = $1", &[&id])?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// Writes a heartbeat row: a database that answers reads but refuses
    /// writes (read-only replica, full disk) is not healthy.
    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO authd_heartbeat (id, at) VALUES (1, now())
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            &[],
        )?;
        Ok(())
    }
}
