//! [`SessionStore`] on PostgreSQL: `authd_sessions`.

use super::rows::{self, user_columns, violation, SESSION_COLUMNS};
use super::{key, ms, PgStore};
use crate::session::{Session, SessionId};
use crate::store::{Ends, SessionStore, StoreError, UserChange};
use crate::token::TokenHash;
use crate::user::{User, UserId};

/// A session and its user in one round trip: the whole session check.
const SESSION_AND_USER: &str = concat!(
    "SELECT s.token_hash, s.handle, s.user_id, s.created_at, s.last_seen, s.user_agent, s.ip, ",
    user_columns!(),
    " FROM authd_sessions s JOIN authd_users u ON u.id = s.user_id WHERE s.token_hash = $1"
);
const TOUCH: &str =
    "UPDATE authd_sessions SET last_seen = greatest(last_seen, $2) WHERE token_hash = $1";

impl SessionStore for PgStore {
    /// The user's row is locked while the session is added, so concurrent
    /// logins of one user keep to the cap.
    fn open_session(
        &self,
        session: &Session,
        password_is: &str,
        changes: &[UserChange],
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        let Some(user) = key(session.user) else {
            return Err(StoreError::NotFound);
        };
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        super::users::change_in(&mut tx, user, Some(password_is), changes, Ends::default())?;
        tx.execute(
            "INSERT INTO authd_sessions
                (token_hash, handle, user_id, created_at, last_seen, user_agent, ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &session.token_hash.as_bytes().as_slice(),
                &session.id.0.as_slice(),
                &user,
                &ms(session.created_at),
                &ms(session.last_seen),
                &session.user_agent,
                &session.ip,
            ],
        )
        .map_err(violation)?;
        let keep = i64::try_from(max_per_user.max(1)).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM authd_sessions WHERE token_hash IN (
                SELECT token_hash FROM authd_sessions WHERE user_id = $1
                ORDER BY seq DESC OFFSET $2)",
            &[&user, &keep],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, token_hash: &TokenHash) -> Result<Option<(Session, User)>, StoreError> {
        let row = super::pool::read(&self.pool, |conn| {
            conn.query_opt(SESSION_AND_USER, &[&token_hash.as_bytes().as_slice()])
        })?;
        match row {
            Some(row) => Ok(Some((
                rows::session(&row, 0)?,
                rows::user(&row, SESSION_COLUMNS)?,
            ))),
            None => Ok(None),
        }
    }

    fn touch_session(&self, token_hash: &TokenHash, last_seen: u64) -> Result<(), StoreError> {
        self.conn()?
            .execute(TOUCH, &[&token_hash.as_bytes().as_slice(), &ms(last_seen)])?;
        Ok(())
    }

    fn sessions_of(&self, user: UserId) -> Result<Vec<Session>, StoreError> {
        let Some(user) = key(user) else {
            return Ok(Vec::new());
        };
        let rows = self.conn()?.query(
            &format!(
                "SELECT {} FROM authd_sessions s WHERE s.user_id = $1
                 ORDER BY s.created_at DESC, s.seq DESC",
                rows::SESSION
            ),
            &[&user],
        )?;
        rows.iter().map(|row| rows::session(row, 0)).collect()
    }

    fn end_session(&self, token_hash: &TokenHash) -> Result<bool, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM authd_sessions WHERE token_hash = $1",
            &[&token_hash.as_bytes().as_slice()],
        )?;
        Ok(n > 0)
    }

    fn end_session_by_id(&self, user: UserId, id: SessionId) -> Result<bool, StoreError> {
        let Some(user) = key(user) else {
            return Ok(false);
        };
        let n = self.conn()?.execute(
            "DELETE FROM authd_sessions WHERE user_id = $1 AND handle = $2",
            &[&user, &id.0.as_slice()],
        )?;
        Ok(n > 0)
    }

    fn end_sessions_of(&self, user: UserId, keep: Option<&TokenHash>) -> Result<usize, StoreError> {
        let Some(user) = key(user) else {
            return Ok(0);
        };
        let keep: Option<&[u8]> = keep.map(|h| h.as_bytes().as_slice());
        let n = self.conn()?.execute(
            "DELETE FROM authd_sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2",
            &[&user, &keep],
        )?;
        Ok(n as usize)
    }

    fn expire_sessions(&self, created_before: u64, seen_before: u64) -> Result<usize, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM authd_sessions WHERE created_at < $1 OR last_seen < $2",
            &[&ms(created_before), &ms(seen_before)],
        )?;
        Ok(n as usize)
    }
}
