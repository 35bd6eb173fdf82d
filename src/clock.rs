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

/// Unix milliseconds as RFC 3339 UTC to the second
/// (`2026-11-25T23:39:11Z`), as the API and the admin commands show times;
/// a time past what a date can hold shows as the latest date.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Unix milliseconds as RFC 3339 UTC to the millisecond, for exports,
/// which must read back exactly ([`parse_rfc3339`]).
pub fn rfc3339_millis(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An RFC 3339 time (any offset) as Unix milliseconds; `None` if it is
/// not one or lies before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(time.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_times_read_back_exactly() {
        for ms in [0, 1, 1_764_115_187_123] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339_millis(ms)), Some(ms));
        }
        assert_eq!(
            super::parse_rfc3339("2026-11-26T06:00:00+01:00"),
            Some(1_795_669_200_000)
        );
        assert_eq!(super::parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn times_show_as_rfc3339_utc_seconds() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(86_401_999), "1970-01-02T00:00:01Z");
        assert!(super::rfc3339(u64::MAX).starts_with('+'));
    }
}
