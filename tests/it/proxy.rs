//! The client address behind a reverse proxy, against the real binary:
//! every line of `--client-ip-header` counts and the right-most address
//! wins, so a client that writes its own first line (before the line a
//! proxy such as HAProxy adds) is still throttled and logged as itself;
//! `--trusted-proxies` walks past the proxies' own entries and believes
//! the header only from them. Clients on several addresses are
//! connections bound to 127.0.0.x source addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::process::{run, Proc};
use crate::common::raw::{self, addr_of, connect_with, Answer, Raw, FORM, IO_LIMIT};
use serde_json::Value;

/// With `--login-free-failures 1` an address has ten free failures; the
/// throttle must have answered 429 by this many.
const PER_IP_BOUND: usize = 12;

fn store() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
}

/// A failed login for `email` from the source address `from`, carrying
/// one `X-Forwarded-For` line per entry of `xff`, in order.
fn failed_login(addr: SocketAddr, from: Ipv4Addr, email: &str, xff: &[&str]) -> Answer {
    let body = format!("email={}&password=wrong", crate::common::urlencode(email));
    let length = body.len().to_string();
    let mut headers = vec![
        ("Host", "localhost"),
        ("Connection", "close"),
        ("Content-Type", FORM),
        ("Content-Length", length.as_str()),
    ];
    headers.extend(xff.iter().map(|line| ("X-Forwarded-For", *line)));
    let stream = connect_with(from, addr, None, IO_LIMIT)
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    let mut raw = Raw::from(stream);
    raw.send(&raw::request(
        "POST",
        "/sessions",
        &headers,
        body.as_bytes(),
    ))
    .unwrap();
    raw.sole_answer(IO_LIMIT)
        .unwrap_or_else(|e| panic!("POST /sessions from {from}: {e}"))
}

/// Failed logins on fresh accounts (so no account's own throttle counts),
/// the `xff` lines of each made by `lines(i)`, until the first 429; its
/// attempt number. Every earlier answer must be 401.
fn attempts_until_429(
    addr: SocketAddr,
    from: Ipv4Addr,
    tag: &str,
    lines: impl Fn(usize) -> Vec<String>,
) -> usize {
    for i in 0..PER_IP_BOUND {
        let xff = lines(i);
        let xff: Vec<&str> = xff.iter().map(String::as_str).collect();
        let reply = failed_login(addr, from, &format!("{tag}{i}@example.com"), &xff);
        match reply.status {
            401 => {}
            429 => {
                assert!(reply.header("Retry-After").is_some(), "{reply:?}");
                return i;
            }
            _ => panic!("attempt {i} of {tag}: {reply:?}"),
        }
    }
    panic!("{tag}: no 429 within {PER_IP_BOUND} failed logins from one client");
}

/// The audit lines (JSON with an `"audit"` field) in `server`'s stderr,
/// once at least `count` of them are `login_failure` lines (within 10 s).
fn audit_lines(server: &Proc, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = server
            .stderr()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line.get("audit").is_some())
            .collect();
        let failures = lines
            .iter()
            .filter(|line| line["audit"] == "login_failure")
            .count();
        if failures >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{failures} of {count} login_failure lines: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `ip`s of the audit `lines`, split into phases of `sizes` failed
/// logins each, in order: a phase is its `login_failure` lines and the
/// lines that follow them before the next phase's first (its 429's
/// `throttled` line). The log keeps the order in which requests were
/// answered, and each phase was answered before the next began, so this
/// does not depend on what else a line holds.
fn ips_by_phase(lines: &[Value], sizes: &[usize]) -> Vec<Vec<String>> {
    let starts: Vec<usize> = sizes
        .iter()
        .scan(0, |seen, size| {
            let start = *seen;
            *seen += size;
            Some(start)
        })
        .collect();
    let mut phases = vec![Vec::new(); sizes.len()];
    let mut failures = 0;
    let mut phase = None;
    for line in lines {
        if line["audit"] == "login_failure" {
            if let Some(next) = starts.iter().rposition(|start| *start == failures) {
                phase = Some(next);
            }
            failures += 1;
        }
        let (Some(phase), Some(ip)) = (phase, line["ip"].as_str()) else {
            continue;
        };
        phases[phase].push(ip.to_owned());
    }
    phases
}

fn a_spoofed_first_line_does_not_escape_the_throttle() {
    let (_tmp, dir) = store();
    let server = Proc::start(
        &dir,
        &[
            "--client-ip-header",
            "X-Forwarded-For",
            "--login-free-failures",
            "1",
            "--no-access-log",
        ],
    );
    let addr = addr_of(&server);
    // The client writes a first line of its own, a new address each time;
    // the proxy's line, second, names the real client.
    let spoofed = |i: usize| vec![format!("6.6.6.{i}"), "198.51.100.7".to_owned()];
    let throttled_at = attempts_until_429(addr, Ipv4Addr::LOCALHOST, "spoof", spoofed);
    assert!(
        throttled_at >= 10,
        "throttled after {throttled_at} failures"
    );
    // Still throttled: a first line of several addresses changes nothing.
    let reply = failed_login(
        addr,
        Ipv4Addr::LOCALHOST,
        "spoof-more@example.com",
        &["6.6.6.6, 7.7.7.7", "198.51.100.7"],
    );
    assert_eq!(reply.status, 429, "{reply:?}");
    // Another real client (its own second line) has its own allowance.
    let other = failed_login(
        addr,
        Ipv4Addr::LOCALHOST,
        "other@example.com",
        &["6.6.6.6", "198.51.100.8"],
    );
    assert_eq!(other.status, 401, "{other:?}");

    let lines = audit_lines(&server, throttled_at + 1);
    let phases = ips_by_phase(&lines, &[throttled_at, 1]);
    assert!(
        phases[0].len() >= throttled_at && phases[0].iter().all(|ip| ip == "198.51.100.7"),
        "{lines:?}"
    );
    assert_eq!(phases[1], ["198.51.100.8"], "{lines:?}");
}

fn trusted_proxies_are_walked_past_and_only_they_are_believed() {
    let (_tmp, dir) = store();
    let server = Proc::start(
        &dir,
        &[
            "--client-ip-header",
            "X-Forwarded-For",
            "--trusted-proxies",
            "127.0.0.2,10.0.0.0/8,fd00::/8",
            "--login-free-failures",
            "1",
            "--no-access-log",
        ],
    );
    let addr = addr_of(&server);
    let proxy = Ipv4Addr::new(127, 0, 0, 2);
    let stranger = Ipv4Addr::new(127, 0, 0, 3);

    // Through the trusted proxy 127.0.0.2, behind a trusted hop 10.1.2.3:
    // the client is 203.0.113.9, whatever it writes further left.
    let via_proxy = |i: usize| vec![format!("6.6.6.{i}"), "203.0.113.9, 10.1.2.3".to_owned()];
    let throttled_at = attempts_until_429(addr, proxy, "hop", via_proxy);
    assert!(
        throttled_at >= 10,
        "throttled after {throttled_at} failures"
    );

    // A peer that is not a trusted proxy is the client, whatever header
    // it sends: rotating it buys nothing.
    let forged = |i: usize| vec![format!("198.51.100.{i}")];
    let stranger_at = attempts_until_429(addr, stranger, "direct", forged);
    assert!(stranger_at >= 10, "throttled after {stranger_at} failures");

    // Every hop trusted: the left-most is the client.
    let all_trusted = failed_login(
        addr,
        proxy,
        "inside@example.com",
        &["10.0.0.5, fd00::6", "10.0.0.7"],
    );
    assert_eq!(all_trusted.status, 401, "{all_trusted:?}");
    // The trusted proxy itself, without a header.
    let bare = failed_login(addr, proxy, "bare@example.com", &[]);
    assert_eq!(bare.status, 401, "{bare:?}");

    let lines = audit_lines(&server, throttled_at + stranger_at + 2);
    let phases = ips_by_phase(&lines, &[throttled_at, stranger_at, 1, 1]);
    let only = |phase: &Vec<String>, ip: &str| !phase.is_empty() && phase.iter().all(|i| i == ip);
    assert!(only(&phases[0], "203.0.113.9"), "{lines:?}");
    assert!(only(&phases[1], "127.0.0.3"), "{lines:?}");
    assert_eq!(phases[2], ["10.0.0.5"], "{lines:?}");
    assert_eq!(phases[3], ["127.0.0.2"], "{lines:?}");
}

fn trusted_proxies_are_checked_at_start() {
    let (_tmp, dir) = store();
    let dir = dir.to_str().unwrap();
    let (code, _, stderr) = run(&[
        "serve",
        "--data-dir",
        dir,
        "--trusted-proxies",
        "10.0.0.0/8",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--client-ip-header"), "{stderr}");
    for bad in ["10.0.0.0/33", "10.1.2.3/8", "not-an-ip", "fd00::/129"] {
        let list = format!("127.0.0.1,{bad}");
        let (code, _, stderr) = run(&[
            "serve",
            "--data-dir",
            dir,
            "--client-ip-header",
            "X-Forwarded-For",
            "--trusted-proxies",
            &list,
        ]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
}

crate::on_every_store!(
    a_spoofed_first_line_does_not_escape_the_throttle,
    trusted_proxies_are_walked_past_and_only_they_are_believed,
    trusted_proxies_are_checked_at_start,
);
