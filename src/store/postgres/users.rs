//! [`UserStore`] on PostgreSQL: `authd_users`.

use super::rows::{self, violation};
use super::{key, PgStore};
use crate::store::{Ends, StoreError, UserChange, UserStore};
use crate::user::{Email, User, UserId};

const BY_ID: &str =
    "SELECT u.id, u.email, u.email_key, u.hashed_password FROM authd_users u WHERE u.id = $1";
const BY_EMAIL: &str =
    "SELECT u.id, u.email, u.email_key, u.hashed_password FROM authd_users u WHERE u.email_key = $1";

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
    fn add_user(&self, email: &Email, hashed_password: &str) -> Result<User, StoreError> {
        let row = super::pool::write(&self.pool, |conn| {
            conn.client.query_one(
                "INSERT INTO authd_users (email, email_key, hashed_password)
                 VALUES ($1, $2, $3) RETURNING id",
                &[&email.as_str(), &email.key(), &hashed_password],
            )
        })?
        .map_err(violation)?;
        let id: i64 = row.try_get(0)?;
        Ok(User {
            id: UserId(id as u64),
            email: email.clone(),
            hashed_password: hashed_password.to_owned(),
        })
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
        let row = tx.query_opt(
            "SELECT u.id, u.email, u.email_key, u.hashed_password FROM authd_users u WHERE u.id = $1 FOR UPDATE",
            &[&id_key],
        )?;
        let old = match row {
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
        tx.execute(
            "UPDATE authd_users SET email = $2, email_key = $3, hashed_password = $4 WHERE id = $1",
            &[
                &id_key,
                &new.email.as_str(),
                &new.email.key(),
                &new.hashed_password,
            ],
        )
        .map_err(violation)?;
        if ends.sessions {
            let kept = ends.keep_session.map(|hash| hash.as_bytes().to_vec());
            tx.execute(
                "DELETE FROM authd_sessions WHERE user_id = $1 \
                 AND ($2::bytea IS NULL OR token_hash <> $2)",
                &[&id_key, &kept],
            )?;
        }
        if ends.reset_token {
            tx.execute(
                "DELETE FROM authd_tokens WHERE user_id = $1 AND purpose = 'reset'",
                &[&id_key],
            )?;
        }
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
