//! Growing delays per key (client IP, account), kept in memory.
//!
//! A [`Throttle`] counts events per key: failed logins, or requests to a
//! rate-limited route. The first `free` events cost nothing; after that each
//! further event must wait `base * 2^(n - free)` after the previous one,
//! capped at `max_delay`, so a guesser slows down exponentially while a user
//! who mistyped a few times never notices. At `lockout` events (if set) the
//! key is refused until its entry expires. An entry is forgotten `window`
//! after its last event, so nothing an attacker does locks anyone out for
//! longer than that.
//!
//! Memory is bounded and the bound never opens the gate: a table holds at
//! most `max_entries` keys in least-recently-active order (O(1) per
//! event). When it is full, a new key takes the place of the quietest
//! entry if that entry is not delaying anyone; when even the quietest one
//! is delaying (a flood of keys, all failing), the newcomer is counted in a
//! fixed-size count-min sketch shared by all newcomers, whose estimates
//! only ever overcount, so newcomers are throttled early rather than not
//! at all, and never refused before their own failures warrant it unless
//! they share every cell with busier keys. Memory: `max_entries` entries of
//! about 100 bytes plus the key, and the sketch's 384 KiB.
//!
//! A rule with a `refill` is a token bucket instead (request rates): `free`
//! events at once, then one more each `refill`; no growing delay, so a
//! steady client that keeps under the rate is never refused.
//!
//! Time is passed in, so the rules are tested without sleeping.
//!
//! Where the counts live is behind the [`Limiter`] trait: a [`Throttle`]
//! keeps them in this process's memory (the embedded store's case: one
//! process serves the store), and the PostgreSQL store keeps them in a
//! table, so that failed logins are counted across every instance.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

/// Rows of the sketch (independent hashes of a key).
const SKETCH_ROWS: usize = 4;
/// Cells per row of the sketch.
const SKETCH_WIDTH: usize = 4096;

/// The counts could not be read or kept (their database failed). Callers
/// fail closed: an uncounted attempt is not let through.
#[derive(Debug, thiserror::Error)]
#[error("throttle counts unavailable: {0}")]
pub struct ThrottleError(pub String);

/// A throttle as the service sees it, wherever its counts are kept.
///
/// Every method may fail when the counts live in a database; callers fail
/// closed (503) rather than let an unthrottled attempt through.
pub trait Limiter: Send + Sync {
    /// `Some(wait)` if an event for `key` must wait that long first.
    fn check(&self, key: &str) -> Result<Option<Duration>, ThrottleError>;
    /// Reserves an event for `key`: `Some(wait)` (and nothing counted) if
    /// it must wait, else it is counted at once, in one step, so attempts
    /// still in flight count against the ones that follow (reserve, then
    /// work).
    fn take(&self, key: &str) -> Result<Option<Duration>, ThrottleError>;
    /// Gives back one event taken for `key` (an attempt that turned out
    /// not to count, such as a successful login against its address).
    fn release(&self, key: &str) -> Result<(), ThrottleError>;
    /// Forgets `key`.
    fn clear(&self, key: &str) -> Result<(), ThrottleError>;
    /// Drops every entry quiet for longer than the window.
    fn sweep(&self) -> Result<(), ThrottleError>;
    /// Whether `key` is locked out ([`Rule::locked`]) rather than only
    /// delayed: asked after a refusal, to tell the two apart in the
    /// metrics (both answer 429 alike).
    fn locked(&self, key: &str) -> Result<bool, ThrottleError>;
}

/// The rules of one throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Events allowed before any delay.
    pub free: u32,
    /// First delay; it doubles with each further event.
    pub base: Duration,
    /// Longest delay between two events.
    pub max_delay: Duration,
    /// Events after which the key is refused until the entry expires.
    pub lockout: Option<u32>,
    /// Quiet time after which a key's count starts again from zero.
    pub window: Duration,
    /// Most keys tracked at once.
    pub max_entries: usize,
    /// `Some(refill)`: a token bucket of `free` tokens, one coming back
    /// every `refill`, in place of growing delays (`base`, `max_delay` and
    /// `lockout` then play no part).
    pub refill: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u32,
    last: Instant,
}

/// One throttle: a rule and the counts per key.
#[derive(Debug)]
pub struct Throttle {
    rule: Rule,
    table: Mutex<Table>,
}

/// The counts of one throttle: the keys it tracks, least recently active
/// first, and the sketch that counts newcomers while the table is full of
/// keys that are all delaying.
#[derive(Debug)]
struct Table {
    entries: LruCache<String, Entry>,
    capacity: usize,
    sketch: Sketch,
}

/// A count-min sketch of entries: each key maps to one cell per row; its
/// estimate is the smallest count of its cells and the latest time among
/// them, so it never undercounts a key, nor ages it faster than it did.
#[derive(Debug)]
struct Sketch {
    cells: Vec<Option<Entry>>,
    hashers: [RandomState; SKETCH_ROWS],
}

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            cells: vec![None; SKETCH_ROWS * SKETCH_WIDTH],
            hashers: std::array::from_fn(|_| RandomState::new()),
        }
    }

    fn cells(&self, key: &str) -> [usize; SKETCH_ROWS] {
        std::array::from_fn(|row| {
            let column = (self.hashers[row].hash_one(key) % SKETCH_WIDTH as u64) as usize;
            row * SKETCH_WIDTH + column
        })
    }

    /// The key's estimate, after `window` has aged cells out; `None` if
    /// any of its cells is empty (then the key was never counted here).
    fn estimate(&self, key: &str, now: Instant, window: Duration) -> Option<Entry> {
        let mut estimate: Option<Entry> = None;
        for cell in self.cells(key) {
            let entry =
                self.cells[cell].filter(|e| now.saturating_duration_since(e.last) <= window)?;
            estimate = Some(match estimate {
                None => entry,
                Some(e) => Entry {
                    count: e.count.min(entry.count),
                    last: e.last.max(entry.last),
                },
            });
        }
        estimate
    }

    /// Counts an event of `key` in each of its cells.
    fn count(&mut self, rule: &Rule, key: &str, now: Instant) {
        for cell in self.cells(key) {
            let entry = self.cells[cell].get_or_insert(Entry {
                count: 0,
                last: now,
            });
            step(rule, entry, now);
        }
    }

    /// Takes in an entry leaving the table, so the key keeps its count.
    fn absorb(&mut self, key: &str, entry: Entry) {
        for cell in self.cells(key) {
            let merged = match self.cells[cell] {
                None => entry,
                Some(e) => Entry {
                    count: e.count.saturating_add(entry.count),
                    last: e.last.max(entry.last),
                },
            };
            self.cells[cell] = Some(merged);
        }
    }

    fn sweep(&mut self, now: Instant, window: Duration) {
        for cell in &mut self.cells {
            if cell.is_some_and(|e| now.saturating_duration_since(e.last) > window) {
                *cell = None;
            }
        }
    }
}

/// One more event on `entry` at `now`, under `rule`.
fn step(rule: &Rule, entry: &mut Entry, now: Instant) {
    let since = now.saturating_duration_since(entry.last);
    if let Some((count, advance)) = rule.take(entry.count, since) {
        entry.count = count;
        entry.last += advance;
        return;
    }
    if since > rule.window {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
}

impl Rule {
    /// The verdict for a key with `count` events, the last `since_last`
    /// ago: `Err(wait)` if the next event must wait. Pure arithmetic on
    /// durations, shared by every place counts are kept.
    pub fn verdict(&self, count: u32, since_last: Duration) -> Result<(), Duration> {
        if since_last > self.window {
            return Ok(());
        }
        if let Some(refill) = self.refill {
            // `count` tokens were taken, one has come back every `refill`
            // since: a token is free once `count - free + 1` have.
            let Some(short) = count.checked_sub(self.free) else {
                return Ok(());
            };
            let ready = refill.saturating_mul(short.saturating_add(1));
            return match ready.checked_sub(since_last) {
                Some(wait) if !wait.is_zero() => Err(wait),
                _ => Ok(()),
            };
        }
        match self.wait(count) {
            Some(wait) if since_last < wait => Err(wait - since_last),
            _ => Ok(()),
        }
    }

    /// The bucket after one more event at `since_last` after the last one:
    /// the tokens still out, and how far the time of the last event moves
    /// (by the whole refills that came back, so none of a partial one is
    /// lost). `None` for a rule without a bucket.
    pub fn take(&self, count: u32, since_last: Duration) -> Option<(u32, Duration)> {
        let refill = self.refill?;
        let back = if refill.is_zero() {
            u32::MAX
        } else {
            u32::try_from(since_last.as_nanos() / refill.as_nanos()).unwrap_or(u32::MAX)
        };
        Some(if back >= count {
            (1, since_last)
        } else {
            (count - back + 1, refill.saturating_mul(back))
        })
    }

    /// Whether a key with `count` events, the last `since_last` ago, is
    /// locked out (its `lockout` reached within the window), not only
    /// delayed; never for a token bucket.
    pub fn locked(&self, count: u32, since_last: Duration) -> bool {
        self.refill.is_none()
            && since_last <= self.window
            && self.lockout.is_some_and(|limit| count >= limit)
    }

    /// How long after the last event the next one may come, for a key with
    /// `count` events; `None` if it may come at once.
    fn wait(&self, count: u32) -> Option<Duration> {
        if self.lockout.is_some_and(|limit| count >= limit) {
            return Some(self.window);
        }
        let excess = count.checked_sub(self.free)?;
        let factor = 1u32.checked_shl(excess).unwrap_or(u32::MAX);
        Some(self.base.saturating_mul(factor).min(self.max_delay))
    }
}

impl Throttle {
    /// A throttle with `rule` and no entries.
    pub fn new(rule: Rule) -> Throttle {
        let capacity = rule.max_entries.max(1);
        Throttle {
            rule,
            table: Mutex::new(Table {
                entries: LruCache::unbounded(),
                capacity,
                sketch: Sketch::new(),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the table
        // half-updated in a way that matters (worst case one count is
        // off), so a poisoned lock is simply taken over.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` if an event for `key` at `now` must wait.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let table = self.table();
        match table.entry(&self.rule, key, now) {
            Some(entry) => self
                .rule
                .verdict(entry.count, now.saturating_duration_since(entry.last)),
            None => Ok(()),
        }
    }

    /// Whether `key` is locked out at `now` ([`Rule::locked`]).
    pub fn is_locked(&self, key: &str, now: Instant) -> bool {
        let table = self.table();
        table.entry(&self.rule, key, now).is_some_and(|entry| {
            self.rule
                .locked(entry.count, now.saturating_duration_since(entry.last))
        })
    }

    /// Counts an event for `key` at `now`.
    pub fn record(&self, key: &str, now: Instant) {
        self.table().count(&self.rule, key, now);
    }

    /// Reserves an event for `key` at `now`: `Err(wait)` with nothing
    /// counted if it must wait, else counted, under one lock.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut table = self.table();
        if let Some(entry) = table.entry(&self.rule, key, now) {
            self.rule
                .verdict(entry.count, now.saturating_duration_since(entry.last))?;
        }
        table.count(&self.rule, key, now);
        Ok(())
    }

    /// Gives back one event of `key` (a key counted in the sketch keeps
    /// it: its cells are shared).
    pub fn release(&self, key: &str) {
        if let Some(entry) = self.table().entries.peek_mut(key) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Forgets `key` (after a successful login or a password reset).
    pub fn clear(&self, key: &str) {
        self.table().entries.pop(key);
    }

    /// Drops every entry quiet for longer than the window: from the least
    /// recently active end, so the cost follows what is dropped.
    pub fn sweep(&self, now: Instant) {
        let window = self.rule.window;
        let mut table = self.table();
        while table
            .entries
            .peek_lru()
            .is_some_and(|(_, e)| now.saturating_duration_since(e.last) > window)
        {
            table.entries.pop_lru();
        }
        table.sketch.sweep(now, window);
    }

    /// Keys tracked in the table now (not those in the sketch).
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Table {
    /// What is known of `key`: its entry, or the sketch's estimate.
    fn entry(&self, rule: &Rule, key: &str, now: Instant) -> Option<Entry> {
        match self.entries.peek(key) {
            Some(entry) => Some(*entry),
            None => self.sketch.estimate(key, now, rule.window),
        }
    }

    /// Counts an event for `key` at `now`: in its entry (made most recently
    /// active), or a new entry, in place of the quietest one if the table
    /// is full and that one delays no one, else in the sketch.
    fn count(&mut self, rule: &Rule, key: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            step(rule, entry, now);
            return;
        }
        if self.entries.len() >= self.capacity {
            let quietest_delays = self.entries.peek_lru().is_some_and(|(_, e)| {
                rule.verdict(e.count, now.saturating_duration_since(e.last))
                    .is_err()
            });
            if quietest_delays {
                self.sketch.count(rule, key, now);
                return;
            }
            // The quietest entry leaves for the sketch, count and all.
            if let Some((old, entry)) = self.entries.pop_lru() {
                if now.saturating_duration_since(entry.last) <= rule.window {
                    self.sketch.absorb(&old, entry);
                }
            }
        }
        // A key the sketch counted before keeps what it counted.
        let mut entry = self
            .sketch
            .estimate(key, now, rule.window)
            .unwrap_or(Entry {
                count: 0,
                last: now,
            });
        step(rule, &mut entry, now);
        self.entries.push(key.to_owned(), entry);
    }
}

/// The in-memory throttle on the real clock.
impl Limiter for Throttle {
    fn check(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        Ok(Throttle::check(self, key, Instant::now()).err())
    }

    fn take(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        Ok(Throttle::take(self, key, Instant::now()).err())
    }

    fn release(&self, key: &str) -> Result<(), ThrottleError> {
        Throttle::release(self, key);
        Ok(())
    }

    fn clear(&self, key: &str) -> Result<(), ThrottleError> {
        Throttle::clear(self, key);
        Ok(())
    }

    fn sweep(&self) -> Result<(), ThrottleError> {
        Throttle::sweep(self, Instant::now());
        Ok(())
    }

    fn locked(&self, key: &str) -> Result<bool, ThrottleError> {
        Ok(Throttle::is_locked(self, key, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rule() -> Rule {
        Rule {
            free: 3,
            base: S,
            max_delay: 8 * S,
            lockout: Some(10),
            window: 100 * S,
            max_entries: 4,
            refill: None,
        }
    }

    fn bucket() -> Rule {
        Rule {
            free: 3,
            refill: Some(10 * S),
            window: 30 * S,
            ..rule()
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_refill() {
        let t = Throttle::new(bucket());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check("k", t0), Ok(()));
            t.record("k", t0);
        }
        // Empty: the next token is back 10 s after the burst, not after a
        // growing delay.
        assert_eq!(t.check("k", t0 + 4 * S), Err(6 * S));
        assert_eq!(t.check("k", t0 + 10 * S), Ok(()));
        t.record("k", t0 + 10 * S);
        assert_eq!(t.check("k", t0 + 15 * S), Err(5 * S));
        // A steady client at the refill rate is never refused.
        let mut now = t0 + 10 * S;
        for _ in 0..20 {
            now += 10 * S;
            assert_eq!(t.check("k", now), Ok(()));
            t.record("k", now);
        }
        // Part of a refill is not lost: 25 s after two tokens went out at
        // once, two came back and the third is 5 s away.
        let t = Throttle::new(bucket());
        for _ in 0..3 {
            t.record("j", t0);
        }
        t.record("j", t0 + 25 * S);
        assert_eq!(t.check("j", t0 + 25 * S), Ok(()));
        t.record("j", t0 + 25 * S);
        assert_eq!(t.check("j", t0 + 25 * S), Err(5 * S));
        // A quiet bucket fills up again.
        assert_eq!(t.check("j", t0 + 60 * S), Ok(()));
    }

    #[test]
    fn free_events_then_doubling_delays_up_to_the_cap() {
        let t = Throttle::new(rule());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check("k", t0), Ok(()));
            t.record("k", t0);
        }
        // The fourth must wait 1 s after the third, then 2, 4, 8, 8...
        let mut now = t0;
        for expected in [1, 2, 4, 8, 8, 8] {
            assert_eq!(t.check("k", now), Err(expected * S));
            assert!(t
                .check("k", now + expected * S - Duration::from_millis(1))
                .is_err());
            now += expected * S;
            assert_eq!(t.check("k", now), Ok(()));
            t.record("k", now);
        }
        // Other keys are unaffected.
        assert_eq!(t.check("other", now), Ok(()));
    }

    #[test]
    fn lockout_lasts_until_the_window_passes() {
        let t = Throttle::new(rule());
        let mut now = Instant::now();
        for _ in 0..10 {
            now += 10 * S;
            t.record("k", now);
        }
        assert_eq!(t.check("k", now + 50 * S), Err(50 * S));
        assert_eq!(t.check("k", now + 99 * S), Err(S));
        // After the window the count starts over.
        assert_eq!(t.check("k", now + 101 * S), Ok(()));
        t.record("k", now + 101 * S);
        assert_eq!(t.check("k", now + 101 * S), Ok(()));
    }

    #[test]
    fn a_lockout_is_told_from_a_delay() {
        let t = Throttle::new(rule());
        let mut now = Instant::now();
        for _ in 0..9 {
            now += 10 * S;
            t.record("k", now);
        }
        // Delayed, not locked: nine events, the lockout is at ten.
        assert!(t.check("k", now).is_err());
        assert!(!t.is_locked("k", now));
        now += 10 * S;
        t.record("k", now);
        assert!(t.check("k", now + 50 * S).is_err());
        assert!(t.is_locked("k", now + 50 * S));
        assert!(!t.is_locked("k", now + 101 * S));
        assert!(!t.is_locked("other", now));
        // A bucket is never locked.
        let bucket = Rule {
            refill: Some(S),
            ..rule()
        };
        assert!(!bucket.locked(1_000, S));
    }

    #[test]
    fn clear_forgets_a_key() {
        let t = Throttle::new(rule());
        let now = Instant::now();
        for _ in 0..5 {
            t.record("k", now);
        }
        assert!(t.check("k", now).is_err());
        t.clear("k");
        assert_eq!(t.check("k", now), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(rule());
        let now = Instant::now();
        for i in 0..100 {
            t.record(&format!("ip-{i}"), now);
        }
        assert_eq!(t.len(), 4);
        // Once old entries expire they make room again.
        let later = now + 101 * S;
        t.record("fresh", later);
        t.sweep(later);
        assert_eq!(t.len(), 1);
        t.sweep(later + 101 * S);
        assert!(t.is_empty());
    }

    #[test]
    fn the_sketch_takes_the_memory_the_docs_say() {
        let bytes = std::mem::size_of::<Option<Entry>>() * SKETCH_ROWS * SKETCH_WIDTH;
        assert_eq!(bytes, 384 * 1024);
    }

    #[test]
    fn a_full_table_never_fails_open() {
        let t = Throttle::new(rule());
        let now = Instant::now();
        // The table fills with keys that are all delaying (past their 3
        // free events).
        for i in 0..4 {
            for _ in 0..4 {
                t.record(&format!("busy-{i}"), now);
            }
        }
        assert!((0..4).all(|i| t.check(&format!("busy-{i}"), now).is_err()));
        // A newcomer is still counted (in the sketch) and throttled after
        // its own free events: never waved through.
        for _ in 0..3 {
            assert_eq!(t.take("newcomer", now), Ok(()));
        }
        assert!(t.take("newcomer", now).is_err());
        assert_eq!(t.len(), 4);
        // The delaying keys kept their places.
        assert!((0..4).all(|i| t.check(&format!("busy-{i}"), now).is_err()));
    }

    #[test]
    fn the_quietest_entry_makes_room_and_keeps_its_count() {
        let t = Throttle::new(rule());
        let now = Instant::now();
        // Two events each: not delaying.
        for i in 0..4 {
            t.record(&format!("k-{i}"), now + i * S);
            t.record(&format!("k-{i}"), now + i * S);
        }
        t.record("new", now + 5 * S);
        assert_eq!(t.len(), 4);
        // k-0 (the quietest) left the table for the sketch with its two
        // events: one more is free, the next waits.
        assert_eq!(t.take("k-0", now + 6 * S), Ok(()));
        assert!(t.take("k-0", now + 6 * S).is_err());
    }

    #[test]
    fn huge_durations_do_not_panic() {
        let t = Throttle::new(Rule {
            max_delay: Duration::MAX,
            window: Duration::MAX,
            ..rule()
        });
        let b = Throttle::new(Rule {
            refill: Some(Duration::MAX),
            window: Duration::MAX,
            ..bucket()
        });
        let now = Instant::now();
        for _ in 0..12 {
            b.record("k", now);
        }
        assert!(b.check("k", now).is_err());
        let now = Instant::now();
        for _ in 0..12 {
            t.record("k", now);
        }
        assert!(t.check("k", now).is_err());
        t.sweep(now);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let rule = Rule {
            lockout: None,
            ..rule()
        };
        assert_eq!(rule.wait(u32::MAX), Some(8 * S));
        assert_eq!(rule.wait(2), None);
    }
}
/// A measurement, not a test (README quotes it): `cargo test --release
/// --lib throttle::measure -- --ignored --nocapture`.
#[cfg(test)]
mod measure {
    #[test]
    #[ignore]
    fn rss_of_a_full_table() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let before = rss();
        let t = super::Throttle::new(super::Rule {
            free: 5,
            base: std::time::Duration::from_secs(1),
            max_delay: std::time::Duration::from_secs(900),
            lockout: Some(100),
            window: std::time::Duration::from_secs(3600),
            max_entries: 100_000,
            refill: None,
        });
        let now = std::time::Instant::now();
        for i in 0..200_000u32 {
            t.record(&format!("{:022}", i), now);
        }
        println!("RSS grew by {} KiB for {} entries", rss() - before, t.len());
    }
}
