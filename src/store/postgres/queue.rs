//! [`QueueStore`] on PostgreSQL: `authd_queue` and `authd_caught`,
//! shared by every instance on the database.
//!
//! A worker claims a message with one statement that picks the message
//! due first among those no other transaction holds (`FOR UPDATE SKIP
//! LOCKED`) and moves its due time to the end of a lease: other instances
//! pass it over until then, so none sends it twice while the lease runs,
//! and a worker that dies holding it only delays it (at-least-once).

use postgres::Row;

use super::{ms, PgStore};
use crate::message::{Kind, Message};
use crate::outbox::{Caught, Intent, Queued, Topic};
use crate::store::{QueueCounts, QueueStore, StoreError};
use crate::user::UserId;

/// The columns [`queued`] reads, as a literal for `concat!`.
macro_rules! queued_columns {
    () => {
        "id, kind, recipient, user_id, new_email, token, ip, created_at, attempts, next_at, \
         last_error, dead"
    };
}

/// Takes the message due first that no other transaction holds, and
/// leases it.
const CLAIM: &str = concat!(
    "UPDATE authd_queue SET next_at = $2 WHERE id = (
        SELECT id FROM authd_queue WHERE NOT dead AND next_at <= $1
        ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING ",
    queued_columns!()
);

const LIST: &str = concat!(
    "SELECT ",
    queued_columns!(),
    " FROM authd_queue ORDER BY id"
);

fn number(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative")))
}

fn topic(name: String) -> Result<Topic, StoreError> {
    Topic::from_name(&name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown queued topic {name:?}")))
}

fn kind(name: String) -> Result<Kind, StoreError> {
    Kind::from_name(&name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown message kind {name:?}")))
}

/// A queued message from `queued_columns!()`.
fn queued(row: &Row) -> Result<Queued, StoreError> {
    let user: Option<i64> = row.try_get(3)?;
    let attempts: i32 = row.try_get(8)?;
    Ok(Queued {
        id: number(row.try_get(0)?, "id")?,
        intent: Intent {
            kind: topic(row.try_get(1)?)?,
            to: row.try_get(2)?,
            user: user
                .map(|id| number(id, "user_id").map(UserId))
                .transpose()?,
            new_email: row.try_get(4)?,
            token: row.try_get(5)?,
            ip: row.try_get(6)?,
        },
        created_at: number(row.try_get(7)?, "created_at")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt("attempts is negative".to_owned()))?,
        next_at: number(row.try_get(9)?, "next_at")?,
        last_error: row.try_get(10)?,
        dead: row.try_get(11)?,
    })
}

fn id_of(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl QueueStore for PgStore {
    /// Counted and inserted in one statement; instances enqueueing at the
    /// same moment may pass the bound by the few they are.
    fn enqueue(&self, intent: &Intent, now: u64, max: usize) -> Result<u64, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let user = intent.user.map(|id| id_of(id.0));
        let row = super::pool::write(&self.pool, |conn| {
            conn.client.query_opt(
                "INSERT INTO authd_queue (kind, recipient, user_id, new_email, token, ip, \
                 created_at, attempts, next_at, dead)
                 SELECT $1, $2, $3, $4, $5, $6, $7, 0, $7, false
                 WHERE (SELECT count(*) FROM authd_queue WHERE NOT dead) < $8
                 RETURNING id",
                &[
                    &intent.kind.name(),
                    &intent.to,
                    &user,
                    &intent.new_email,
                    &intent.token,
                    &intent.ip,
                    &ms(now),
                    &max,
                ],
            )
        })??;
        match row {
            Some(row) => number(row.try_get(0)?, "id"),
            None => Err(StoreError::QueueFull),
        }
    }

    fn claim(&self, now: u64, lease: u64) -> Result<Option<Queued>, StoreError> {
        let until = ms(now.saturating_add(lease));
        let row = self.conn()?.query_opt(CLAIM, &[&ms(now), &until])?;
        row.as_ref().map(queued).transpose()
    }

    fn finish(&self, id: u64) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM authd_queue WHERE id = $1", &[&id_of(id)])?;
        Ok(())
    }

    fn fail(
        &self,
        id: u64,
        attempts: u32,
        next_at: u64,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.conn()?.execute(
            "UPDATE authd_queue SET attempts = $2, next_at = $3, last_error = $4, dead = $5
             WHERE id = $1",
            &[&id_of(id), &attempts, &ms(next_at), &error, &dead],
        )?;
        Ok(())
    }

    fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let row = self
            .conn()?
            .query_one("SELECT min(next_at) FROM authd_queue WHERE NOT dead", &[])?;
        let due: Option<i64> = row.try_get(0)?;
        due.map(|due| number(due, "next_at")).transpose()
    }

    fn queued(&self) -> Result<Vec<Queued>, StoreError> {
        let rows = self.conn()?.query(LIST, &[])?;
        rows.iter().map(queued).collect()
    }

    fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        let row = self.conn()?.query_one(
            "SELECT count(*) FILTER (WHERE NOT dead), count(*) FILTER (WHERE dead) \
             FROM authd_queue",
            &[],
        )?;
        let (waiting, dead): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        Ok(QueueCounts {
            waiting: usize::try_from(waiting).unwrap_or(0),
            dead: usize::try_from(dead).unwrap_or(0),
        })
    }

    fn revive(&self, id: Option<u64>, now: u64) -> Result<usize, StoreError> {
        let n = self.conn()?.execute(
            "UPDATE authd_queue SET dead = false, attempts = 0, next_at = $2
             WHERE dead AND ($1::bigint IS NULL OR id = $1)",
            &[&id.map(id_of), &ms(now)],
        )?;
        Ok(n as usize)
    }

    fn purge_dead(&self, id: Option<u64>) -> Result<usize, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM authd_queue WHERE dead AND ($1::bigint IS NULL OR id = $1)",
            &[&id.map(id_of)],
        )?;
        Ok(n as usize)
    }

    fn catch(&self, message: &Message, now: u64, keep: usize) -> Result<u64, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let row = tx.query_one(
            "INSERT INTO authd_caught (created_at, kind, recipient, subject, text, html)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &ms(now),
                &message.kind.name(),
                &message.to,
                &message.subject,
                &message.text,
                &message.html,
            ],
        )?;
        tx.execute(
            "DELETE FROM authd_caught WHERE id <= (
                SELECT id FROM authd_caught ORDER BY id DESC OFFSET $1 LIMIT 1)",
            &[&keep],
        )?;
        tx.commit()?;
        number(row.try_get(0)?, "id")
    }

    fn caught(&self) -> Result<Vec<Caught>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT id, created_at, kind, recipient, subject, text, html FROM authd_caught
             ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                Ok(Caught {
                    id: number(row.try_get(0)?, "id")?,
                    created_at: number(row.try_get(1)?, "created_at")?,
                    message: Message {
                        kind: kind(row.try_get(2)?)?,
                        to: row.try_get(3)?,
                        subject: row.try_get(4)?,
                        text: row.try_get(5)?,
                        html: row.try_get(6)?,
                    },
                })
            })
            .collect()
    }

    fn purge_caught(&self) -> Result<usize, StoreError> {
        let n = self.conn()?.execute("DELETE FROM authd_caught", &[])?;
        Ok(n as usize)
    }
}
