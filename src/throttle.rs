//! Growing delays per key (client IP, account), kept in memory.
//!
//! A [`Throttle`] counts events per key: failed logins, or requests to a
//! rate-limited route. The first `free` events cost nothing; after that each
//! further event must wait `base * 2^(n - free)` after the previous one,
//! capped at `max_delay`, so a guesser slows down exponentially while a user
//! who mistyped a few times never notices. At `lockout` events (if set) the
//! key is refused until its entry expires. An entry is forgotten `window`
//! after its last event, so nothing an attacker does locks anyone out for
//! longer than that, and memory is bounded by `max_entries`.
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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// Counts an event for `key`.
    fn record(&self, key: &str) -> Result<(), ThrottleError>;
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
    entries: Mutex<HashMap<String, Entry>>,
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
        Throttle {
            rule,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave a map half-updated
        // in a way that matters (worst case one count is off), so a poisoned
        // lock is simply taken over.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` if an event for `key` at `now` must wait.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries();
        match entries.get(key) {
            Some(entry) => self
                .rule
                .verdict(entry.count, now.saturating_duration_since(entry.last)),
            None => Ok(()),
        }
    }

    /// Counts an event for `key` at `now`.
    pub fn record(&self, key: &str, now: Instant) {
        let mut entries = self.entries();
        self.count(&mut entries, key, now);
    }

    /// Reserves an event for `key` at `now`: `Err(wait)` with nothing
    /// counted if it must wait, else counted, under one lock.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries();
        if let Some(entry) = entries.get(key) {
            self.rule
                .verdict(entry.count, now.saturating_duration_since(entry.last))?;
        }
        self.count(&mut entries, key, now);
        Ok(())
    }

    /// Gives back one event of `key`.
    pub fn release(&self, key: &str) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    /// Counts an event for `key` at `now` in `entries` (locked).
    fn count(&self, entries: &mut HashMap<String, Entry>, key: &str, now: Instant) {
        if !entries.contains_key(key) && entries.len() >= self.rule.max_entries {
            let window = self.rule.window;
            entries.retain(|_, e| now.saturating_duration_since(e.last) <= window);
            if entries.len() >= self.rule.max_entries {
                // Full of live entries: keep the ones already throttling
                // (they matter) and leave this new key untracked for now.
                return;
            }
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            count: 0,
            last: now,
        });
        let since = now.saturating_duration_since(entry.last);
        if let Some((count, advance)) = self.rule.take(entry.count, since) {
            entry.count = count;
            entry.last += advance;
            return;
        }
        if since > self.rule.window {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Forgets `key` (after a successful login or a password reset).
    pub fn clear(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Drops every entry quiet for longer than the window.
    pub fn sweep(&self, now: Instant) {
        let window = self.rule.window;
        self.entries()
            .retain(|_, e| now.saturating_duration_since(e.last) <= window);
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-memory throttle on the real clock.
impl Limiter for Throttle {
    fn check(&self, key: &str) -> Result<Option<Duration>, ThrottleError> {
        Ok(Throttle::check(self, key, Instant::now()).err())
    }

    fn record(&self, key: &str) -> Result<(), ThrottleError> {
        Throttle::record(self, key, Instant::now());
        Ok(())
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
        assert_eq!(t.len(), 1);
        t.sweep(later + 101 * S);
        assert!(t.is_empty());
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
