//! [`UserStore`] on PostgreSQL: `authd_users`.

use super::rows::{self, user_columns, violation};
use super::{key, ms, PgStore};
use crate::store::{Ends, StoreError, UserChange, UserStore};
use crate::user::{NewUser, TotpState, User, UserId};

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
     email_verified = $5, pending_email = $6, pending_email_key = $7, password_normalized = $8, \
     totp_secret = $9, totp_enabled = $10, totp_last_step = $11, totp_recovery = $12 \
     WHERE id = $1";

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
        change.apply_to(&mut new)?;
    }
    if !changes.is_empty() {
        write(tx, id, &new)?;
    }
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

/// Writes a second factor to user `id`'s row (an import's).
pub(super) fn set_totp(
    client: &mut impl postgres::GenericClient,
    id: UserId,
    totp: &TotpState,
) -> Result<(), StoreError> {
    let Some(id) = key(id) else {
        return Err(StoreError::NotFound);
    };
    let recovery: Vec<&[u8]> = totp.recovery.iter().map(|code| code.as_slice()).collect();
    client.execute(
        "UPDATE authd_users SET totp_secret = $2, totp_enabled = $3, totp_last_step = $4, \
         totp_recovery = $5 WHERE id = $1",
        &[
            &id,
            &totp.sealed_secret,
            &totp.enabled,
            &step_column(totp.last_step)?,
            &recovery,
        ],
    )?;
    Ok(())
}

/// A time step as its `BIGINT` column holds it.
fn step_column(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::InvalidValue {
        field: "totp_last_step",
        reason: "out of range".to_owned(),
    })
}

/// Writes every column of `user` to row `id`.
fn write(tx: &mut postgres::Transaction<'_>, id: i64, user: &User) -> Result<(), StoreError> {
    let pending = user.pending_email.as_ref();
    let totp = user.totp.as_ref();
    let recovery: Vec<&[u8]> = totp
        .map(|t| t.recovery.iter().map(|code| code.as_slice()).collect())
        .unwrap_or_default();
    let last_step = step_column(totp.map_or(0, |t| t.last_step))?;
    tx.execute(
        WRITE,
        &[
            &id,
            &user.email.as_str(),
            &user.email.key(),
            &user.hashed_password,
            &user.email_verified,
            &pending.map(|e| e.as_str()),
            &pending.map(|e| e.key()),
            &user.password_normalized,
            &totp.map(|t| t.sealed_secret.as_slice()),
            &totp.is_some_and(|t| t.enabled),
            &last_step,
            &recovery,
        ],
    )
    .map_err(violation)?;
    Ok(())
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
        if new.totp.is_some() {
            // An imported account with its second factor: both in one
            // transaction, as an import writes them.
            let ids = crate::store::Maintenance::add_users(self, std::slice::from_ref(new))?;
            let id = ids.first().copied().ok_or(StoreError::NotFound)?;
            return Ok(new.with_id(id));
        }
        let created_at = new.created_at.map(ms);
        let row = super::pool::write(&self.pool, |conn| {
            conn.client.query_one(
                "INSERT INTO authd_users (email, email_key, hashed_password, email_verified, \
                 created_at, password_normalized) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &new.email.as_str(),
                    &new.email.key(),
                    &new.hashed_password,
                    &new.email_verified,
                    &created_at,
                    &new.password_normalized,
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
