//! [`PgLimiter`]: throttle counts as rows of `authd_throttle`, shared by
//! every instance, on the database's clock; bounded per throttle, and
//! never failing open when full.
//!
//! The same rules as the in-memory [`Throttle`](crate::throttle::Throttle),
//! kept in three tables (migration 4 added the last two):
//!
//! - `authd_throttle`: one row per key (`scope` is the throttle's name),
//!   at most [`Rule::max_entries`] rows per scope, plus at most one per
//!   reserve statement running when the last place is taken (see
//!   [`PgLimiter`]).
//! - `authd_throttle_room`: one row per scope, the places left. A reserve
//!   that makes a new row takes one, in the same statement; the sweep
//!   recounts it exactly. So every instance knows at once that a scope is
//!   full: no instance has to notice it.
//! - `authd_throttle_sketch`: a count-min sketch per scope, [`SKETCH_ROWS`]
//!   rows of [`SKETCH_WIDTH`] cells (a database row per cell, made when
//!   first used), which counts the keys that found no place, and keeps the
//!   counts of the rows the sweep evicts. Its estimates only ever
//!   overcount, so a key counted there is throttled early rather than not
//!   at all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use postgres::types::ToSql;
use sha2::Sha256;

use super::pool::{read, Pool};
use crate::throttle::{Limiter, Rule, ThrottleError};

/// Rows of the sketch (independent hashes of a key), as in memory.
pub const SKETCH_ROWS: usize = 4;
/// Cells per row of the sketch, as in memory: a scope's sketch is at most
/// `SKETCH_ROWS * SKETCH_WIDTH` (16,384) rows of `authd_throttle_sketch`.
pub const SKETCH_WIDTH: usize = 4096;
/// The sweep evicts quiet rows that delay no one until an eighth of the
/// places (at least one) is free, so that newcomers find a place until
/// the next sweep rather than go to the sketch.
const HEADROOM_DIVISOR: i64 = 8;
/// Name of the sketch's hash key in `authd_secrets`: the same for every
/// instance (they must agree on a key's cells), and unknown to clients, who
/// therefore cannot pick keys that share every cell with someone else's.
const SKETCH_SECRET: &str = "throttle_sketch";

/// The database's clock in Unix milliseconds: throttle times are taken from
/// it so that instances with slightly different clocks agree.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// The sketch's cells of a key ($1 scope, $3 its cells, ascending), with
/// `lock` (`FOR UPDATE`, or nothing): one lookup by primary key per cell,
/// in the order given. A join or `cell = ANY($3)` would leave the plan to
/// the table's statistics, and a plan made while the sketch was empty
/// (kept by the connection's prepared statement) scans all of its cells.
macro_rules! cell_probe {
    ($lock:literal) => {
        concat!(
            "(SELECT p.cell, p.count, p.last_at FROM unnest($3::integer[]) AS c(cell), ",
            "LATERAL (SELECT s.cell, s.count, s.last_at FROM authd_throttle_sketch s ",
            "WHERE s.scope = $1 AND s.cell = c.cell LIMIT 1 ",
            $lock,
            ") AS p)"
        )
    };
}

/// A key's cells as they stand.
const CELLS_OF_KEY: &str = cell_probe!("");
/// A key's cells, locked in cell order, the order every statement locks
/// cells in (so that none waits for another in a cycle).
const CELLS_OF_KEY_LOCKED: &str = cell_probe!("FOR UPDATE");

/// What is known of a key ($1 scope, $2 key, $3 its cells, $4 window):
/// its row, else the sketch's estimate (the smallest count and the latest
/// time of its cells, when every cell is live). No row: never counted.
const THROTTLE_CHECK: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    now_ms!(),
    " AS now) ",
    "(SELECT t.count, clock.now - t.last_at, 0 AS rank FROM authd_throttle t, clock ",
    "WHERE t.scope = $1 AND t.key = $2) ",
    "UNION ALL ",
    "(SELECT min(s.count), clock.now - max(s.last_at), 1 FROM clock, ",
    cell_probe!(""),
    " AS s WHERE clock.now - s.last_at <= $4 ",
    "GROUP BY clock.now HAVING count(*) = 4) ",
    "ORDER BY rank LIMIT 1"
);
const THROTTLE_RELEASE: &str = "UPDATE authd_throttle SET count = greatest(count - 1, 0) \
                                WHERE scope = $1 AND key = $2";
const THROTTLE_CLEAR: &str = "DELETE FROM authd_throttle WHERE scope = $1 AND key = $2";
/// Rows past their window ($1 scope, $2 window).
const THROTTLE_EXPIRE: &str = concat!(
    "DELETE FROM authd_throttle WHERE scope = $1 AND last_at < ",
    now_ms!(),
    " - $2"
);
/// The scope's room row, made if missing and locked: new rows of the scope
/// wait for the sweep (each takes its place in the statement that makes
/// it), so the count taken after it is exact.
const ROOM_LOCK: &str = "INSERT INTO authd_throttle_room AS r (scope, room) VALUES ($1, 0) \
                         ON CONFLICT (scope) DO UPDATE SET room = r.room RETURNING r.room";
/// The room row of a scope as a new instance finds it ($2 the most rows):
/// made from a count, or lowered to it (never raised: a sweep does that,
/// under its lock).
const ROOM_ENSURE: &str = "INSERT INTO authd_throttle_room AS r (scope, room) \
                           SELECT $1, $2 - count(*) FROM authd_throttle WHERE scope = $1 \
                           ON CONFLICT (scope) DO UPDATE SET room = least(r.room, EXCLUDED.room)";
const ROOM_SET: &str = "UPDATE authd_throttle_room SET room = $2 WHERE scope = $1";
const ROWS_COUNT: &str = "SELECT count(*) FROM authd_throttle WHERE scope = $1";
/// The quietest rows, whatever they are ($1 scope, $2 how many), returned
/// for the sketch to keep their counts.
const EVICT_ANY: &str = "DELETE FROM authd_throttle t USING ( \
                         SELECT q.key FROM authd_throttle q WHERE q.scope = $1 \
                         ORDER BY q.last_at LIMIT $2) v \
                         WHERE t.scope = $1 AND t.key = v.key \
                         RETURNING t.key, t.count, t.last_at";
/// Sketch cells a key needs ($1 scope, $2 cells), made empty if missing.
const CELLS_ADD: &str = "INSERT INTO authd_throttle_sketch (scope, cell, count, last_at) \
                         SELECT $1, c, 0, 0 FROM unnest($2::integer[]) AS c ORDER BY c \
                         ON CONFLICT (scope, cell) DO NOTHING";
/// Sketch cells locked in cell order, the order every statement locks
/// them in (so none waits for another in a cycle).
const CELLS_LOCK: &str = "SELECT cell FROM authd_throttle_sketch \
                          WHERE scope = $1 AND cell = ANY($2) ORDER BY cell FOR UPDATE";
/// Evicted counts taken into the sketch ($1 scope, $2 cells, $3 counts,
/// $4 times, $5 window): a live cell keeps the larger count and the later
/// time, one past the window takes the evicted ones. A maximum, not the
/// sum the in-memory sketch adds: every cell of the key is still at least
/// its count (the estimate never undercounts it, nor anyone else's), and
/// the sketch does not fill up with the sums of thousands of evicted keys
/// that delayed no one, which would refuse newcomers for nothing.
const CELLS_ABSORB: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    now_ms!(),
    " AS now) ",
    "UPDATE authd_throttle_sketch s SET ",
    "count = CASE WHEN clock.now - s.last_at > $5 THEN v.count ",
    "ELSE greatest(s.count, v.count) END, ",
    "last_at = CASE WHEN clock.now - s.last_at > $5 THEN v.last_at ",
    "ELSE greatest(s.last_at, v.last_at) END ",
    "FROM unnest($2::integer[], $3::integer[], $4::bigint[]) AS v(cell, count, last_at), clock ",
    "WHERE s.scope = $1 AND s.cell = v.cell"
);
/// Cells past the window ($1 scope, $2 window) are empty anyway: they go,
/// but never one a reserve holds (it would be waited for), nor one never
/// counted in (`last_at` 0): a reserve that found its cells missing has
/// just made it and is about to lock it.
const CELLS_FORGET: &str = concat!(
    "DELETE FROM authd_throttle_sketch WHERE (scope, cell) IN ( ",
    "SELECT scope, cell FROM authd_throttle_sketch WHERE scope = $1 AND last_at > 0 ",
    "AND last_at < ",
    now_ms!(),
    " - $2 FOR UPDATE SKIP LOCKED)"
);

/// The two kinds of rule, as SQL: growing delays, and token buckets.
/// Their parameters are numbered from `first` in each statement.
#[derive(Clone, Copy)]
enum Shape {
    /// `window, free, base ms (float), longest delay ms (float), lockout
    /// (integer or NULL)`.
    Delays,
    /// `window, free, refill ms`.
    Bucket,
}

impl Shape {
    /// The rule's parameters when they start at `first`, typed (a bare
    /// `$n` would take its type from where it is first used).
    fn params(self, first: usize) -> [String; 5] {
        let a = match self {
            Shape::Delays => "float8",
            Shape::Bucket => "bigint",
        };
        let types = ["bigint", "integer", a, "float8", "integer"];
        std::array::from_fn(|i| format!("${}::{}", first + i, types[i]))
    }

    /// Whether an event may come now for a key with `count` events, the
    /// last `since` ms ago: [`Rule::verdict`] in SQL.
    fn ok(self, first: usize, count: &str, since: &str) -> String {
        let [window, free, a, longest, lockout] = self.params(first);
        match self {
            Shape::Delays => {
                format!(
                    "({since} > {window} OR {count} < {free} OR \
                     (({lockout} IS NULL OR {count} < {lockout}) AND {since} >= \
                     least({a} * power(2::float8, least({count} - {free}, 40)), {longest})))"
                )
            }
            Shape::Bucket => {
                format!("({since} > {window} OR {count} < {free} OR {since} >= {a} * ({count} - {free} + 1))")
            }
        }
    }

    /// The count and time after one more event at `now` on (`count`,
    /// `last`): the in-memory `step` in SQL. Growing delays start over past
    /// the window; a bucket gets back the whole refills since the last
    /// event, and the time moves by them, so no part of one is lost.
    fn step(self, first: usize, count: &str, last: &str, now: &str) -> (String, String) {
        let [window, _, a, _, _] = self.params(first);
        match self {
            Shape::Delays => (
                format!(
                    "CASE WHEN {now} - {last} > {window} THEN 1 \
                     ELSE least({count}, 2147483646) + 1 END"
                ),
                now.to_owned(),
            ),
            Shape::Bucket => {
                let back = format!("(({now} - {last}) / {a})");
                (
                    format!(
                        "least(CASE WHEN {back} >= {count} THEN 1 \
                         ELSE {count} - {back} + 1 END, 2147483647)"
                    ),
                    format!(
                        "CASE WHEN {back} >= {count} THEN {now} ELSE {last} + {back} * {a} END"
                    ),
                )
            }
        }
    }

    /// Reserving an event ($1 scope, $2 key, $3 its sketch cells, the rule
    /// from $4), in one statement, so that concurrent attempts on any
    /// instance each see the ones before:
    ///
    /// - a key with a row: counted there if the rule allows it (the upsert
    ///   of old, its row locked);
    /// - a key without one, while the scope has room: a new row, which
    ///   starts from what the sketch counted for the key, if it allows
    ///   one more (so a key the sweep evicted keeps its count), and takes
    ///   one place from the room row;
    /// - else (the scope is full): counted in its sketch cells, locked in
    ///   cell order, if their estimate allows it. Written back by primary
    ///   key (an upsert on cells that exist and are locked): an `UPDATE`
    ///   joined to them would leave the way to find them to the planner,
    ///   which with the statistics of an empty sketch scans all its cells.
    ///
    /// Returns whether the event was counted (if not, nothing was), and
    /// whether the key's cells are still to be made (then nothing was
    /// counted either: make them, and reserve again).
    fn take_sql(self) -> String {
        let ok = |count: &str, since: &str| self.ok(4, count, since);
        let (seed_count, seed_last) = self.step(4, "est.count", "est.last_at", "clock.now");
        let now = "(SELECT now FROM clock)";
        let (row_count, row_last) = self.step(4, "t.count", "t.last_at", now);
        let (cell_count, cell_last) = self.step(4, "fresh.count", "fresh.last_at", "clock.now");
        let est_ok = ok("est.count", "clock.now - est.last_at");
        let row_ok = ok("t.count", &format!("{now} - t.last_at"));
        let judged_ok = ok("judged.count", "clock.now - judged.last_at");
        let cells = SKETCH_ROWS;
        format!(
            "WITH clock AS MATERIALIZED (SELECT {clock} AS now), \
             known AS MATERIALIZED (SELECT EXISTS ( \
                 SELECT 1 FROM authd_throttle WHERE scope = $1 AND key = $2) AS yes), \
             est AS MATERIALIZED ( \
                 SELECT count(*) AS cells, min(s.count) AS count, max(s.last_at) AS last_at \
                 FROM clock, {probe} AS s WHERE clock.now - s.last_at <= $4), \
             seed AS MATERIALIZED ( \
                 SELECT est.cells < {cells} OR {est_ok} AS ok, \
                 CASE WHEN est.cells < {cells} THEN 1 ELSE {seed_count} END AS count, \
                 CASE WHEN est.cells < {cells} THEN clock.now ELSE {seed_last} END AS last_at \
                 FROM est, clock), \
             gate AS MATERIALIZED ( \
                 SELECT known.yes AS known, NOT known.yes AND seed.ok AND coalesce(( \
                     SELECT room FROM authd_throttle_room WHERE scope = $1), 0) > 0 AS admit \
                 FROM known, seed), \
             counted AS ( \
                 INSERT INTO authd_throttle AS t (scope, key, count, last_at) \
                 SELECT $1, $2, seed.count, seed.last_at FROM seed, gate \
                 WHERE gate.known OR gate.admit \
                 ON CONFLICT (scope, key) DO UPDATE SET count = {row_count}, last_at = {row_last} \
                 WHERE {row_ok} \
                 RETURNING xmax = 0 AS inserted), \
             roomed AS ( \
                 UPDATE authd_throttle_room SET room = room - 1 \
                 WHERE scope = $1 AND EXISTS (SELECT 1 FROM counted WHERE inserted) RETURNING 1), \
             cells AS ( \
                 SELECT s.cell, s.count, s.last_at FROM gate, {lock} AS s \
                 WHERE NOT gate.known AND NOT gate.admit), \
             fresh AS ( \
                 SELECT cells.cell, \
                 CASE WHEN clock.now - cells.last_at > $4 THEN 0 ELSE cells.count END AS count, \
                 CASE WHEN clock.now - cells.last_at > $4 THEN clock.now ELSE cells.last_at END \
                     AS last_at \
                 FROM cells, clock), \
             judged AS ( \
                 SELECT count(*) AS cells, min(fresh.count) AS count, \
                 max(fresh.last_at) AS last_at FROM fresh), \
             sketched AS ( \
                 INSERT INTO authd_throttle_sketch AS s (scope, cell, count, last_at) \
                 SELECT $1, fresh.cell, {cell_count}, {cell_last} FROM fresh, judged, clock \
                 WHERE judged.cells = {cells} AND {judged_ok} \
                 ON CONFLICT (scope, cell) DO UPDATE \
                 SET count = EXCLUDED.count, last_at = EXCLUDED.last_at RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM counted) OR EXISTS (SELECT 1 FROM sketched), \
             NOT gate.known AND NOT gate.admit AND (SELECT cells FROM judged) < {cells} \
             FROM gate",
            clock = now_ms!(),
            probe = CELLS_OF_KEY,
            lock = CELLS_OF_KEY_LOCKED,
        )
    }

    /// The quietest rows that delay no one ($1 scope, $2 how many, the
    /// rule from $3), returned for the sketch to keep their counts.
    fn evict_sql(self) -> String {
        let ok = self.ok(3, "q.count", "clock.now - q.last_at");
        format!(
            "WITH clock AS MATERIALIZED (SELECT {clock} AS now) \
             DELETE FROM authd_throttle t USING ( \
                 SELECT q.key FROM authd_throttle q, clock WHERE q.scope = $1 AND {ok} \
                 ORDER BY q.last_at LIMIT $2) v \
             WHERE t.scope = $1 AND t.key = v.key \
             RETURNING t.key, t.count, t.last_at",
            clock = now_ms!(),
        )
    }
}

/// The statements that depend on the shape of the rule.
struct Statements {
    take: String,
    evict: String,
}

impl Statements {
    fn of(shape: Shape) -> Statements {
        Statements {
            take: shape.take_sql(),
            evict: shape.evict_sql(),
        }
    }
}

static DELAYS: LazyLock<Statements> = LazyLock::new(|| Statements::of(Shape::Delays));
static BUCKET: LazyLock<Statements> = LazyLock::new(|| Statements::of(Shape::Bucket));

/// A throttle whose counts are rows of `authd_throttle`, shared by every
/// instance on the database. Times come from the database's clock.
///
/// **Bounded.** A scope (this throttle's name) holds at most
/// [`Rule::max_entries`] rows, plus at most one per reserve statement in
/// flight at the moment its last place goes (each may have seen the room
/// before it went): at most the connections of every instance, the sum of
/// their `--db-pool-size`. A reserve that makes a row takes a place from
/// the scope's room row in the same statement; a reserve that finds no
/// place counts the key in the scope's sketch instead, so a full scope is
/// known to every instance at once. Each sweep (every instance's janitor)
/// then, under the room row's lock: drops the rows past their window;
/// evicts the quietest rows (least recently active, by an index on
/// `(scope, last_at)`) that delay no one until an eighth of the places is
/// free, their counts kept in the sketch; evicts the quietest rows of any
/// kind beyond the bound, should there be any (a smaller `max_entries`
/// than before, or the in-flight excess above); and recounts the room. The
/// sweep is O(rows of the scope); a reserve stays one statement with a
/// fixed number of index lookups.
///
/// **Never failing open.** While the scope is full of keys that are all
/// delaying, newcomers are counted in the sketch, whose estimate is never
/// below a key's true count: they are refused once their cells say so,
/// at the latest when their own failures would have. A key that gets a
/// row again starts from the sketch's estimate. Keys with a row are judged
/// by their row alone, as are newcomers while the scope has room: a full
/// table never refuses everyone.
///
/// Between two sweeps a full scope stays full (newcomers go to the sketch)
/// even if some rows stopped delaying: room comes back at the next sweep
/// of any instance, at most `--sweep-interval` later.
pub struct PgLimiter {
    pool: Pool,
    scope: &'static str,
    rule: Rule,
    /// The sketch's hash key, read from `authd_secrets` at first use.
    secret: OnceLock<[u8; 32]>,
    /// Whether this instance made sure of the scope's room row.
    room_ready: AtomicBool,
}

impl PgLimiter {
    pub(super) fn new(pool: Pool, scope: &'static str, rule: Rule) -> PgLimiter {
        PgLimiter {
            pool,
            scope,
            rule,
            secret: OnceLock::new(),
            room_ready: AtomicBool::new(false),
        }
    }

    fn window_ms(&self) -> i64 {
        ms(self.rule.window)
    }

    /// The most rows of the scope (the rule's `max_entries`, at least one).
    fn max_rows(&self) -> i64 {
        i64::try_from(self.rule.max_entries.max(1)).unwrap_or(i64::MAX)
    }

    fn statements(&self) -> &'static Statements {
        match self.rule.refill {
            Some(_) => &BUCKET,
            None => &DELAYS,
        }
    }

    /// The rule's parameters, in the order [`Shape`] numbers them.
    fn rule_params(&self) -> Vec<Box<dyn ToSql + Sync>> {
        let free = i32::try_from(self.rule.free).unwrap_or(i32::MAX);
        match self.rule.refill {
            Some(refill) => vec![
                Box::new(self.window_ms()),
                Box::new(free),
                Box::new(ms(refill).max(1)),
            ],
            None => vec![
                Box::new(self.window_ms()),
                Box::new(free),
                Box::new(ms(self.rule.base) as f64),
                Box::new(ms(self.rule.max_delay) as f64),
                Box::new(
                    self.rule
                        .lockout
                        .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                ),
            ],
        }
    }

    /// The sketch's key, and the scope's room row made (once per instance).
    fn ready(&self) -> Result<[u8; 32], ThrottleError> {
        let secret = match self.secret.get() {
            Some(secret) => *secret,
            None => {
                let store = super::PgStore {
                    pool: self.pool.clone(),
                };
                let secret = store.shared_secret(SKETCH_SECRET).map_err(failed)?;
                *self.secret.get_or_init(|| secret)
            }
        };
        if !self.room_ready.load(Ordering::Acquire) {
            self.pool
                .get()
                .map_err(pool_failed)?
                .execute(ROOM_ENSURE, &[&self.scope, &self.max_rows()])
                .map_err(pg)?;
            self.room_ready.store(true, Ordering::Release);
        }
        Ok(secret)
    }

    /// The key's cells in the scope's sketch, one per row, ascending.
    fn cells(&self, secret: &[u8; 32], key: &str) -> Vec<i32> {
        cells(secret, self.scope, key)
    }

    /// How long `key` must wait, from its row or its sketch estimate.
    fn wait(&self, key: &str, cells: &[i32]) -> Result<Option<Duration>, ThrottleError> {
        Ok(self
            .standing(key, cells)?
            .and_then(|(count, since)| self.rule.verdict(count, since).err()))
    }

    /// The count of `key` (its row, or its cells' estimate) and the time
    /// since its last event; `None` if nothing is counted for it.
    fn standing(&self, key: &str, cells: &[i32]) -> Result<Option<(u32, Duration)>, ThrottleError> {
        let cells = cells.to_vec();
        let row = read(&self.pool, |conn| {
            conn.query_opt(
                THROTTLE_CHECK,
                &[&self.scope, &key, &cells, &self.window_ms()],
            )
        })
        .map_err(failed)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let count: i32 = row.try_get(0).map_err(pg)?;
        let since: i64 = row.try_get(1).map_err(pg)?;
        let since = Duration::from_millis(u64::try_from(since).unwrap_or(0));
        Ok(Some((u32::try_from(count).unwrap_or(0), since)))
    }
}

impl Limiter for PgLimiter {
    fn check(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        let secret = self.ready()?;
        self.wait(key, &self.cells(&secret, key))
    }

    fn take(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        let secret = self.ready()?;
        let cells = self.cells(&secret, key);
        let rule = self.rule_params();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.scope, &key, &cells];
        params.extend(rule.iter().map(|p| &**p));
        let sql = self.statements().take.as_str();
        let mut conn = self.pool.get().map_err(pool_failed)?;
        // Twice at most: the second time the key's cells exist.
        for _ in 0..2 {
            let row = conn
                .query_opt(sql, &params)
                .map_err(pg)?
                .ok_or_else(|| ThrottleError("the reserve returned nothing".to_owned()))?;
            if row.try_get::<_, bool>(0).map_err(pg)? {
                return Ok(None);
            }
            if !row.try_get::<_, bool>(1).map_err(pg)? {
                break;
            }
            // The scope is full and the key's sketch cells are not made
            // yet: nothing was counted; make them and reserve again.
            conn.execute(CELLS_ADD, &[&self.scope, &cells])
                .map_err(pg)?;
        }
        drop(conn);
        // Refused: how long to wait, as the counts stand now (at least a
        // second, should they have moved since).
        Ok(Some(
            self.wait(key, &cells)?.unwrap_or(Duration::from_secs(1)),
        ))
    }

    fn locked(&self, key: &str) -> Result<bool, ThrottleError> {
        let secret = self.ready()?;
        Ok(self
            .standing(key, &self.cells(&secret, key))?
            .is_some_and(|(count, since)| self.rule.locked(count, since)))
    }

    fn release(&self, key: &str) -> Result<(), ThrottleError> {
        self.pool
            .get()
            .map_err(pool_failed)?
            .execute(THROTTLE_RELEASE, &[&self.scope, &key])
            .map_err(pg)?;
        Ok(())
    }

    /// Forgets the key's row (its place comes back at the next sweep); what
    /// the sketch counted for it stays, as in memory.
    fn clear(&self, key: &str) -> Result<(), ThrottleError> {
        self.pool
            .get()
            .map_err(pool_failed)?
            .execute(THROTTLE_CLEAR, &[&self.scope, &key])
            .map_err(pg)?;
        Ok(())
    }

    /// Drops the rows past their window, keeps the scope within its bound
    /// (see [`PgLimiter`]) and recounts its room, in one transaction under
    /// the room row's lock; then forgets sketch cells past the window.
    fn sweep(&self) -> Result<(), ThrottleError> {
        let secret = self.ready()?;
        let max = self.max_rows();
        let target = max - (max / HEADROOM_DIVISOR).max(1);
        let window = self.window_ms();
        let mut conn = self.pool.get().map_err(pool_failed)?;
        let mut tx = conn.transaction().map_err(pg)?;
        tx.query_one(ROOM_LOCK, &[&self.scope]).map_err(pg)?;
        tx.execute(THROTTLE_EXPIRE, &[&self.scope, &window])
            .map_err(pg)?;
        let mut rows: i64 = tx
            .query_one(ROWS_COUNT, &[&self.scope])
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        let mut evicted = Vec::new();
        if rows > target {
            let rule = self.rule_params();
            let excess = rows - target;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.scope, &excess];
            params.extend(rule.iter().map(|p| &**p));
            evicted = tx
                .query(self.statements().evict.as_str(), &params)
                .map_err(pg)?;
            rows -= evicted.len() as i64;
        }
        if rows > max {
            let excess = rows - max;
            let more = tx.query(EVICT_ANY, &[&self.scope, &excess]).map_err(pg)?;
            rows -= more.len() as i64;
            evicted.extend(more);
        }
        // Their counts go to the sketch, so a key evicted is not a key
        // forgiven.
        let mut absorbed: BTreeMap<i32, (i32, i64)> = BTreeMap::new();
        for row in &evicted {
            let key: &str = row.try_get(0).map_err(pg)?;
            let count: i32 = row.try_get(1).map_err(pg)?;
            let last: i64 = row.try_get(2).map_err(pg)?;
            if count <= 0 {
                continue;
            }
            for cell in self.cells(&secret, key) {
                let entry = absorbed.entry(cell).or_insert((count, last));
                entry.0 = entry.0.max(count);
                entry.1 = entry.1.max(last);
            }
        }
        if !absorbed.is_empty() {
            let cells: Vec<i32> = absorbed.keys().copied().collect();
            let counts: Vec<i32> = absorbed.values().map(|v| v.0).collect();
            let lasts: Vec<i64> = absorbed.values().map(|v| v.1).collect();
            tx.execute(CELLS_ADD, &[&self.scope, &cells]).map_err(pg)?;
            tx.query(CELLS_LOCK, &[&self.scope, &cells]).map_err(pg)?;
            tx.execute(
                CELLS_ABSORB,
                &[&self.scope, &cells, &counts, &lasts, &window],
            )
            .map_err(pg)?;
        }
        tx.execute(ROOM_SET, &[&self.scope, &(max - rows)])
            .map_err(pg)?;
        tx.commit().map_err(pg)?;
        conn.execute(CELLS_FORGET, &[&self.scope, &window])
            .map_err(pg)?;
        Ok(())
    }
}

/// The cells of `key` in the sketch of `scope`: one per row, from a keyed
/// hash, so that every instance with the same `secret` agrees and nobody
/// without it can aim at a key's cells.
fn cells(secret: &[u8; 32], scope: &str, key: &str) -> Vec<i32> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let digest = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(scope.as_bytes());
            mac.update(&[0]);
            mac.update(key.as_bytes());
            mac.finalize().into_bytes()
        }
        Err(_) => Default::default(),
    };
    (0..SKETCH_ROWS)
        .map(|row| {
            let bytes = [
                digest[row * 4],
                digest[row * 4 + 1],
                digest[row * 4 + 2],
                digest[row * 4 + 3],
            ];
            let column = u32::from_le_bytes(bytes) as usize % SKETCH_WIDTH;
            i32::try_from(row * SKETCH_WIDTH + column).unwrap_or(i32::MAX)
        })
        .collect()
}

/// Milliseconds as the statements take them.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_one_cell_per_row_of_the_sketch() {
        let secret = [7; 32];
        for key in ["", "203.0.113.9", "Zm9vYmFyYmF6cXV4cXV1eA"] {
            let cells = cells(&secret, "login_account", key);
            assert_eq!(cells.len(), SKETCH_ROWS);
            for (row, cell) in cells.iter().enumerate() {
                let cell = usize::try_from(*cell).unwrap();
                assert_eq!(cell / SKETCH_WIDTH, row, "{key:?}: {cells:?}");
            }
            // Ascending: the order every statement locks cells in.
            assert!(cells.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn cells_depend_on_the_secret_and_the_scope() {
        let of = |secret: u8, scope: &str| {
            (0..64)
                .map(|i| cells(&[secret; 32], scope, &format!("10.0.0.{i}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(of(1, "login_ip"), of(1, "login_ip"));
        assert_ne!(of(1, "login_ip"), of(2, "login_ip"));
        assert_ne!(of(1, "login_ip"), of(1, "reset_ip"));
    }

    #[test]
    fn the_check_statement_counts_the_cells_of_a_key() {
        // The estimate needs every cell: the literal in the statement.
        assert!(THROTTLE_CHECK.contains(&format!("count(*) = {SKETCH_ROWS}")));
    }

    #[test]
    fn every_statement_numbers_its_parameters_without_gaps() {
        // PostgreSQL refuses a statement with a parameter it cannot type,
        // which an unused number would be.
        let used = |sql: &str| {
            (1..=12)
                .filter(|n| {
                    let p = format!("${n}");
                    sql.match_indices(&p).any(|(at, _)| {
                        !sql[at + p.len()..].starts_with(|c: char| c.is_ascii_digit())
                    })
                })
                .collect::<Vec<_>>()
        };
        for (sql, count) in [
            (DELAYS.take.as_str(), 8),
            (BUCKET.take.as_str(), 6),
            (DELAYS.evict.as_str(), 7),
            (BUCKET.evict.as_str(), 5),
        ] {
            assert_eq!(used(sql), (1..=count).collect::<Vec<_>>(), "{sql}");
        }
    }
}
