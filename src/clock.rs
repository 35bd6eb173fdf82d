//! Wall-clock time in the one unit the store keeps: Unix milliseconds.
//!
//! Milliseconds rather than seconds so that short lifetimes (and the tests
//! that use them) are not rounded by a whole second either way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; a clock set before 1970 reads as 0
/// rather than failing a request.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A duration in milliseconds, saturating (lifetimes are configured in
/// seconds and compared with [`unix_millis`] stamps).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
