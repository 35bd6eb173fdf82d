//! [`PgLimiter`]: throttle counts as rows of `authd_throttle`, shared by
//! every instance, on the database's clock.

use std::time::Duration;

use super::pool::{read, Pool};
use crate::throttle::{Limiter, Rule, ThrottleError};

/// The database's clock in Unix milliseconds: throttle times are taken from
/// it so that instances with slightly different clocks agree.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

const THROTTLE_CHECK: &str = concat!(
    "SELECT count, ",
    now_ms!(),
    " - last_at FROM authd_throttle WHERE scope = $1 AND key = $2"
);
/// Reserving an event under a rule of growing delays ($3 window, $4
/// free events, $5 base and $6 longest delay in ms as floats, $7 lockout
/// or NULL): counts the event (starting over past the window) only when
/// [`Rule::verdict`] would allow it, in one statement, so
/// concurrent attempts on any instance each see the ones before. No row
/// returned: refused, nothing counted.
const THROTTLE_RESERVE: &str = concat!(
    "INSERT INTO authd_throttle AS t (scope, key, count, last_at) VALUES ($1, $2, 1, ",
    now_ms!(),
    ") ON CONFLICT (scope, key) DO UPDATE SET ",
    "count = CASE WHEN EXCLUDED.last_at - t.last_at > $3 THEN 1 ",
    "ELSE least(t.count, 2147483646) + 1 END, last_at = EXCLUDED.last_at ",
    "WHERE EXCLUDED.last_at - t.last_at > $3 OR t.count < $4 ",
    "OR (($7::integer IS NULL OR t.count < $7) AND EXCLUDED.last_at - t.last_at >= ",
    "least($5 * power(2::float8, least(t.count - $4, 40)), $6)) ",
    "RETURNING count"
);
/// Reserving an event from a token bucket ($3 refill ms, $4 window, $5
/// the bucket's size): takes a token only when one is there; the whole
/// refills since the last event come back, and the last event's time moves
/// by them, so no part of a refill is lost.
const THROTTLE_RESERVE_BUCKET: &str = concat!(
    "INSERT INTO authd_throttle AS t (scope, key, count, last_at) VALUES ($1, $2, 1, ",
    now_ms!(),
    ") ON CONFLICT (scope, key) DO UPDATE SET ",
    "count = CASE WHEN (EXCLUDED.last_at - t.last_at) / $3 >= t.count THEN 1 ",
    "ELSE t.count - (EXCLUDED.last_at - t.last_at) / $3 + 1 END, ",
    "last_at = CASE WHEN (EXCLUDED.last_at - t.last_at) / $3 >= t.count THEN EXCLUDED.last_at ",
    "ELSE t.last_at + ((EXCLUDED.last_at - t.last_at) / $3) * $3 END ",
    "WHERE EXCLUDED.last_at - t.last_at > $4 OR t.count < $5 ",
    "OR EXCLUDED.last_at - t.last_at >= $3 * (t.count - $5 + 1) ",
    "RETURNING count"
);
const THROTTLE_RELEASE: &str = "UPDATE authd_throttle SET count = greatest(count - 1, 0) \
                                WHERE scope = $1 AND key = $2";
const THROTTLE_CLEAR: &str = "DELETE FROM authd_throttle WHERE scope = $1 AND key = $2";
const THROTTLE_SWEEP: &str = concat!(
    "DELETE FROM authd_throttle WHERE scope = $1 AND last_at < ",
    now_ms!(),
    " - $2"
);

/// A throttle whose counts are rows of `authd_throttle`, shared by every
/// instance on the database. Times come from the database's clock.
///
/// Unlike the in-memory throttle, the number of keys is not capped: the
/// table is swept like the in-memory maps, and a row is a few dozen bytes.
pub struct PgLimiter {
    pool: Pool,
    scope: &'static str,
    rule: Rule,
}

impl PgLimiter {
    pub(super) fn new(pool: Pool, scope: &'static str, rule: Rule) -> PgLimiter {
        PgLimiter { pool, scope, rule }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.rule.window.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Limiter for PgLimiter {
    fn check(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        let row = read(&self.pool, |conn| {
            conn.query_opt(THROTTLE_CHECK, &[&self.scope, &key])
        })
        .map_err(failed)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let count: i32 = row.try_get(0).map_err(pg)?;
        let since: i64 = row.try_get(1).map_err(pg)?;
        let since = Duration::from_millis(u64::try_from(since).unwrap_or(0));
        Ok(self
            .rule
            .verdict(u32::try_from(count).unwrap_or(0), since)
            .err())
    }

    fn take(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let free = i32::try_from(self.rule.free).unwrap_or(i32::MAX);
        let mut conn = self.pool.get().map_err(pool_failed)?;
        let row = match self.rule.refill {
            Some(refill) => {
                let refill_ms = ms(refill).max(1);
                conn.query_opt(
                    THROTTLE_RESERVE_BUCKET,
                    &[&self.scope, &key, &refill_ms, &self.window_ms(), &free],
                )
            }
            None => {
                let lockout = self
                    .rule
                    .lockout
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
                conn.query_opt(
                    THROTTLE_RESERVE,
                    &[
                        &self.scope,
                        &key,
                        &self.window_ms(),
                        &free,
                        &(ms(self.rule.base) as f64),
                        &(ms(self.rule.max_delay) as f64),
                        &lockout,
                    ],
                )
            }
        }
        .map_err(pg)?;
        drop(conn);
        if row.is_some() {
            return Ok(None);
        }
        // Refused: how long to wait, as the counts stand now (at least a
        // second, should they have moved since).
        Ok(Some(self.check(key)?.unwrap_or(Duration::from_secs(1))))
    }

    fn release(&self, key: &str) -> Result<(), ThrottleError> {
        self.pool
            .get()
            .map_err(pool_failed)?
            .execute(THROTTLE_RELEASE, &[&self.scope, &key])
            .map_err(pg)?;
        Ok(())
    }

    fn clear(&self, key: &str) -> Result<(), ThrottleError> {
        self.pool
            .get()
            .map_err(pool_failed)?
            .execute(THROTTLE_CLEAR, &[&self.scope, &key])
            .map_err(pg)?;
        Ok(())
    }

    fn sweep(&self) -> Result<(), ThrottleError> {
        self.pool
            .get()
            .map_err(pool_failed)?
            .execute(THROTTLE_SWEEP, &[&self.scope, &self.window_ms()])
            .map_err(pg)?;
        Ok(())
    }
}

fn failed(e: crate::store::StoreError) -> ThrottleError {
    ThrottleError(e.to_string())
}

fn pg(e: postgres::Error) -> ThrottleError {
    failed(e.into())
}

fn pool_failed(e: r2d2::Error) -> ThrottleError {
    failed(e.into())
}
