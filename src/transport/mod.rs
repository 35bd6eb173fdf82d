//! The ways a rendered message leaves authd: SMTP ([`smtp`]) and signed
//! webhooks ([`webhook`]).
//!
//! A transport makes one attempt per call and says whether a failure is
//! worth retrying ([`SendError`]); the queue worker owns retries, with
//! [`backoff`] between attempts, so a transport never sleeps while it
//! holds a message.

pub mod smtp;
pub mod webhook;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Why one attempt failed. The text names the server and what it said,
/// never the SMTP password or the webhook secret (callers log it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later: the server is unreachable, slow, or
    /// said "not now" (SMTP 4xx, HTTP 5xx, 408, 429).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Another attempt would fail the same way: the server refused the
    /// message or the credentials (SMTP 5xx, HTTP 4xx, a redirect), or
    /// authd's policy refused the connection (no STARTTLS where it is
    /// required, an untrusted certificate).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}

/// First wait after a failed attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest wait between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(600);

/// How long to wait after failed attempt number `attempt` (1 for the
/// first): 2 s, 4 s, 8 s, ... up to 10 minutes, each drawn at random
/// between half and all of that ("equal jitter"), so messages that failed
/// together (a mail server restarting) do not all come back at the same
/// moment. Without randomness the full step is used.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.clamp(1, 20) - 1;
    let step = BACKOFF_BASE
        .checked_mul(1 << exponent)
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP));
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return step;
    }
    let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    step / 2 + (step / 2).mul_f64(fraction)
}

/// Whether `host` (a name or an address literal, IPv6 with or without
/// brackets) is this machine: `localhost` or a loopback address. Traffic
/// to it never crosses a network, which is why plain SMTP is allowed there.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    parse_ip(host).is_some_and(|ip| ip.is_loopback())
}

/// Whether `host` is loopback or an address literal of a private network
/// (10/8, 172.16/12, 192.168/16, fc00::/7): where a plain-HTTP webhook
/// stays on the operator's own network. Names other than `localhost` do
/// not count: what they resolve to can change.
pub fn is_private_host(host: &str) -> bool {
    if is_loopback_host(host) {
        return true;
    }
    match parse_ip(host) {
        Some(IpAddr::V4(ip)) => ip.is_private(),
        Some(IpAddr::V6(ip)) => {
            is_unique_local(ip)
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback())
        }
        None => false,
    }
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .filter(Ipv4Addr::is_loopback)
            .map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// fc00::/7 (`Ipv6Addr::is_unique_local` is not stable yet).
fn is_unique_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xfe00 == 0xfc00
}

/// Removes every occurrence of each secret from `text`, so an error a
/// server echoed (or a library formatted) cannot carry one into a log.
pub(crate) fn scrub(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets {
        if !secret.is_empty() && text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for attempt in 1..=12 {
            let step = Duration::from_secs(2u64 << (attempt - 1)).min(BACKOFF_CAP);
            for _ in 0..20 {
                let wait = backoff(attempt);
                assert!(wait >= step / 2 && wait <= step, "{attempt}: {wait:?}");
            }
        }
        assert!(backoff(u32::MAX) <= BACKOFF_CAP && backoff(u32::MAX) >= BACKOFF_CAP / 2);
        assert!(backoff(0) <= Duration::from_secs(2));
        // Jitter: 50 draws of attempt 10 (up to 600 s, in nanoseconds) are not all equal.
        let first = backoff(10);
        assert!((0..50).any(|_| backoff(10) != first));
    }

    #[test]
    fn loopback_and_private_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
            assert!(is_private_host(host), "{host}");
        }
        for host in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fc00::1",
            "fd12:3456::1",
            "[fd00::1]",
        ] {
            assert!(!is_loopback_host(host), "{host}");
            assert!(is_private_host(host), "{host}");
        }
        for host in [
            "example.com",
            "localhost.example.com",
            "mylocalhost",
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "fe80::1",
            "2001:db8::1",
            "169.254.1.1",
            "0.0.0.0",
            "",
        ] {
            assert!(!is_private_host(host), "{host}");
        }
    }

    #[test]
    fn scrub_removes_every_copy() {
        assert_eq!(
            scrub("a pw b pw".to_owned(), &["pw", ""]),
            "a [redacted] b [redacted]"
        );
        assert_eq!(scrub("nothing".to_owned(), &["pw"]), "nothing");
    }
}
