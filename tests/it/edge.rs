//! Attacks on authd's HTTP edge, each against the real binary on loopback.
//!
//! One test per attack, each with a server process of its own (sled store,
//! timeouts of fractions of a second unless the attack needs connections
//! held longer). Every test proves the same three things: the attack gets
//! the answer that RFC 9112 and the README call for (or is cut off), the
//! process survives it, and a legitimate client is answered during and
//! after it.
//! The attacks:
//!
//! 1. huge declared bodies: 413 (or 400) from the headers alone;
//! 2. slow bodies on twice as many connections as handler threads;
//! 3. a declared over-limit body that never comes;
//! 4. pipelining: a client that never reads, and one that reads in order;
//! 5. endless header lines, with the server's memory watched;
//! 6. framing tricks (RFC 9112 section 6) and `Expect: 100-continue`;
//! 7. the connection caps, in all and per client address;
//! 8. running out of file descriptors (under `prlimit --nofile`);
//! 9. running out of threads (as an unprivileged user under
//!    `prlimit --nproc`, since root ignores that limit);
//! 10. SIGTERM in the middle of all this;
//! 11. `/healthz`.
//!
//! Hostile clients are raw `TcpStream`s (`common::raw`; source addresses
//! other than 127.0.0.1 through `libc`). Every loop is bounded in count and
//! time, every thread is scoped, and every server is killed when its test
//! ends.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authd::config::Profile;

use crate::common::process::{Proc, BIN};
use crate::common::raw::{addr_of, connect_with, get, post_form, Answer, Raw, FORM};

/// Timeouts short enough for a fast suite.
const FAST: [&str; 8] = [
    "--header-timeout",
    "0.3",
    "--body-timeout",
    "0.5",
    "--body-idle-timeout",
    "0.3",
    "--keepalive-timeout",
    "0.3",
];

/// Timeouts long enough that connections stay for as long as a test holds
/// them (the test closes them itself; nothing waits for these).
const PATIENT: [&str; 8] = [
    "--header-timeout",
    "30",
    "--body-timeout",
    "30",
    "--body-idle-timeout",
    "30",
    "--keepalive-timeout",
    "30",
];

// ---------------------------------------------------------------------------
// 1. Huge declared bodies
// ---------------------------------------------------------------------------

#[test]
fn huge_declared_bodies_are_refused_from_the_headers_alone() {
    let (_dir, server) = start(&FAST);
    let addr = addr_of(&server);
    // The edge writes its answers as the routes write their errors.
    let not_found = get(addr, "/nope", secs(5.0)).unwrap();
    assert_eq!(not_found.status, 404);
    for path in ["/", "/users"] {
        for (length, status) in [
            ("100000000000", 413),
            ("18446744073709551615", 413),
            // Over u64: not a length at all.
            ("99999999999999999999999", 400),
        ] {
            let mut raw = Raw::connect(addr);
            // The head only: the answer must come without any body byte.
            raw.send(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
                     Content-Length: {length}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let answer = raw
                .answer(secs(5.0))
                .unwrap_or_else(|e| panic!("POST {path} with Content-Length {length}: {e}"));
            let message = assert_edge(&answer, status);
            assert_eq!(
                answer.header("Content-Type"),
                not_found.header("Content-Type"),
                "{answer:?}"
            );
            if status == 413 {
                assert!(message.contains("65536"), "{message:?}");
            }
            let rest = raw.until_closed(secs(5.0)).unwrap_or_else(|e| {
                panic!("POST {path} with Content-Length {length}: not closed: {e}")
            });
            assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
            assert_alive(&server);
            assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Slow bodies
// ---------------------------------------------------------------------------

#[test]
fn slow_bodies_hold_no_handler_thread() {
    // Twice as many slow bodies as handler threads. Their bodies stall for
    // longer than the fast timeouts, so that they are surely still held
    // while the legitimate client is served.
    let (_dir, server) = start(&[
        "--threads",
        "4",
        "--header-timeout",
        "0.3",
        "--keepalive-timeout",
        "0.3",
        "--body-idle-timeout",
        "1.5",
        "--body-timeout",
        "3",
    ]);
    let addr = addr_of(&server);
    let mut slow: Vec<Raw> = (0..8)
        .map(|_| {
            let mut raw = Raw::connect(addr);
            raw.send(
                format!(
                    "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
                     Content-Length: 2000\r\n\r\nemail=slow"
                )
                .as_bytes(),
            )
            .unwrap();
            raw
        })
        .collect();
    // Let the server take them all in before the legitimate client comes.
    std::thread::sleep(secs(0.1));
    let started = Instant::now();
    let answer = get(addr, "/", secs(5.0)).expect("GET / while bodies are slow");
    let took = started.elapsed();
    assert_eq!(answer.status, 200);
    assert!(took < secs(1.0), "GET / took {took:?} during the attack");
    // A request that needs a handler and bcrypt, too.
    let answer = post_form(addr, "/users", "email=fast%40b.io&password=pw", secs(10.0)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    // The measurement counted only if the slow bodies were still held.
    for (i, raw) in slow.iter().enumerate() {
        assert!(
            raw.is_open_and_quiet(),
            "slow body {i} was let go too early"
        );
    }
    // Then the body idle timeout ends each one: 408, closed.
    for (i, raw) in slow.iter_mut().enumerate() {
        let answer = raw
            .answer(secs(10.0))
            .unwrap_or_else(|e| panic!("slow body {i}: {e}"));
        assert_edge(&answer, 408);
        raw.until_closed(secs(5.0))
            .unwrap_or_else(|e| panic!("slow body {i}: {e}"));
    }
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

// ---------------------------------------------------------------------------
// 3. A declared over-limit body that never arrives
// ---------------------------------------------------------------------------

#[test]
fn an_over_limit_body_is_refused_before_it_arrives() {
    // Body timeouts far longer than the test: an answer can only come from
    // the headers.
    let (_dir, server) = start(&[
        "--header-timeout",
        "0.3",
        "--keepalive-timeout",
        "0.3",
        "--body-idle-timeout",
        "30",
        "--body-timeout",
        "30",
    ]);
    let addr = addr_of(&server);
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
             Content-Length: 65537\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let answer = raw.answer(secs(5.0)).expect("413 before any body byte");
    assert!(started.elapsed() < secs(2.0), "{:?}", started.elapsed());
    assert_edge(&answer, 413);
    raw.until_closed(secs(5.0)).unwrap();
    // The limit is exact: a body of exactly 65536 bytes is read and
    // reaches the routes (405 for POST /).
    let mut raw = Raw::connect(addr);
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: 65536\r\n\r\n"
    )
    .into_bytes();
    request.extend(std::iter::repeat_n(b'a', 65536));
    raw.send(&request).unwrap();
    assert_eq!(raw.answer(secs(5.0)).unwrap().status, 405);
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

// ---------------------------------------------------------------------------
// 4. Pipelining
// ---------------------------------------------------------------------------

#[test]
fn a_pipelining_client_that_never_reads_blocks_only_itself() {
    // Two handler threads, two hostile connections. Each asks for 256
    // copies of the largest answer (the OpenAPI document, 24 KB) in one
    // write and never reads, with a small receive buffer, so the server's
    // writes to it stall. A handler that wrote to the socket itself would
    // be stuck, and with it the whole server.
    let mut flags = vec!["--threads", "2"];
    flags.extend(FAST);
    let (_dir, server) = start(&flags);
    let addr = addr_of(&server);
    let one = get(addr, "/openapi.json", secs(5.0)).unwrap();
    assert_eq!(one.status, 200);
    let whole = 256 * one.wire;
    let pipelined: Vec<u8> = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        .repeat(256)
        .into_bytes();
    let mut hostile: Vec<TcpStream> = (0..2)
        .map(|_| {
            let stream = connect_with(Ipv4Addr::LOCALHOST, addr, Some(4096), secs(5.0)).unwrap();
            stream.set_write_timeout(Some(secs(5.0))).unwrap();
            stream
        })
        .collect();
    for stream in &mut hostile {
        stream.write_all(&pipelined).unwrap();
    }
    std::thread::sleep(secs(0.2));
    let started = Instant::now();
    let answer = get(addr, "/", secs(5.0)).expect("GET / during the attack");
    assert_eq!(answer.status, 200);
    let answer = post_form(addr, "/users", "email=pipe%40b.io&password=pw", secs(10.0)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = post_form(
        addr,
        "/sessions",
        "email=pipe%40b.io&password=pw",
        secs(10.0),
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.session_in(Profile::Dev).is_some(), "{answer:?}");
    let took = started.elapsed();
    assert!(took < secs(5.0), "other clients waited {took:?}");
    // A client that does not take its answers is let go once the write
    // timeout (0.5 s here) has passed, before it got them all.
    std::thread::sleep(secs(1.5));
    for (i, stream) in hostile.iter_mut().enumerate() {
        let (got, ended) = drain(stream, secs(15.0));
        assert!(ended, "hostile connection {i} still open after 15 s");
        assert!(got < whole, "hostile connection {i} got all {got} bytes");
    }
    drop(hostile);
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_dir, server) = start(&FAST);
    let addr = addr_of(&server);
    let paths = ["/", "/healthz", "/nope"];
    let mut batch = String::new();
    for i in 0..20 {
        let close = if i == 19 { "Connection: close\r\n" } else { "" };
        batch.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n{close}\r\n",
            paths[i % 3]
        ));
    }
    let mut raw = Raw::connect(addr);
    raw.send(batch.as_bytes()).unwrap();
    for i in 0..20 {
        let answer = raw
            .answer(secs(5.0))
            .unwrap_or_else(|e| panic!("answer {i}: {e}"));
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        match paths[i % 3] {
            "/" => {
                assert_eq!(answer.status, 200, "answer {i}: {answer:?}");
                assert!(body.contains("Bienvenue"), "answer {i}: {body}");
            }
            "/healthz" => {
                assert_eq!(answer.status, 200, "answer {i}: {answer:?}");
                assert_eq!(answer.json()["status"], "ok", "answer {i}: {body}");
            }
            _ => {
                assert_eq!(answer.status, 404, "answer {i}: {answer:?}");
                assert!(body.contains("not found"), "answer {i}: {body}");
            }
        }
    }
    // Nothing more, and the connection ends as the last request asked.
    let rest = raw.until_closed(secs(5.0)).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

// ---------------------------------------------------------------------------
// 5. Endless header lines
// ---------------------------------------------------------------------------

#[test]
fn endless_header_lines_are_cut_off_and_cost_no_memory() {
    const LIMIT: usize = 1024 * 1024;
    // A head timeout longer than the paced attack lasts: a refusal can only
    // come from the head's size.
    let (_dir, server) = start(&[
        "--header-timeout",
        "5",
        "--body-timeout",
        "0.5",
        "--body-idle-timeout",
        "0.3",
        "--keepalive-timeout",
        "0.3",
    ]);
    let addr = addr_of(&server);
    let pid = server.child.id();
    let baseline = rss_kib(pid);
    let peak = std::sync::atomic::AtomicU64::new(baseline);
    let done = AtomicBool::new(false);
    let outcomes: Vec<(usize, Result<Answer, String>)> = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = Instant::now() + secs(30.0);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(secs(0.01));
            }
        });
        let attackers: Vec<_> = (0..8)
            .map(|_| scope.spawn(move || endless_header(addr, LIMIT)))
            .collect();
        let outcomes = attackers.into_iter().map(|a| a.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        watcher.join().unwrap();
        outcomes
    });
    let summary: Vec<String> = outcomes
        .iter()
        .map(|(sent, outcome)| match outcome {
            Ok(answer) => format!("{sent} bytes sent, then {}", answer.status),
            Err(e) => format!("{sent} bytes sent, then {e}"),
        })
        .collect();
    for (i, (sent, outcome)) in outcomes.iter().enumerate() {
        // Paced at about 2 MB/s: the server had a quarter of a second to
        // react to a head that was over its limit after 16 KiB.
        assert!(
            *sent <= LIMIT / 2,
            "attacker {i} sent {sent} bytes before the server reacted: {summary:#?}"
        );
        match outcome {
            Ok(answer) => {
                let message = assert_edge(answer, 431);
                assert!(message.contains("16384"), "{message:?}");
            }
            // Cut off without an answer is allowed.
            Err(e) => assert!(e.starts_with("closed"), "attacker {i}: {summary:#?}"),
        }
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak < 200 * 1024,
        "RSS went from {baseline} KiB to {peak} KiB"
    );
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

/// Sends `GET / HTTP/1.1\r\nX: ` and then up to `limit` bytes of `a`, 4 KiB
/// every 2 ms, looking for an answer after each write; returns the bytes
/// sent and the answer (or how the connection ended).
fn endless_header(addr: SocketAddr, limit: usize) -> (usize, Result<Answer, String>) {
    let mut raw = Raw::connect(addr);
    raw.stream.set_write_timeout(Some(secs(5.0))).unwrap();
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nX: ").unwrap();
    let chunk = [b'a'; 4096];
    let mut sent = 0;
    while sent < limit {
        if raw.stream.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if !raw.is_open_and_quiet() {
            break;
        }
        std::thread::sleep(secs(0.002));
    }
    (sent, raw.answer(secs(5.0)))
}

// ---------------------------------------------------------------------------
// 6. Framing
// ---------------------------------------------------------------------------

#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let (_dir, server) = start(&["--max-body-bytes", "1024", "--header-timeout", "0.3"]);
    let addr = addr_of(&server);
    let next = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = format!("POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n");
    let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "two Content-Length values",
            format!("{post}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc{next}"),
            400,
        ),
        (
            "Transfer-Encoding and Content-Length",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{next}"),
            400,
        ),
        (
            "a transfer coding other than chunked",
            format!("{post}Transfer-Encoding: gzip\r\n\r\nabc{next}"),
            501,
        ),
        (
            "a chunked body over --max-body-bytes",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n{next}"),
            413,
        ),
        (
            "a Content-Length that is not a number",
            format!("{post}Content-Length: abc\r\n\r\n{next}"),
            400,
        ),
    ];
    for (name, request, status) in cases {
        let mut raw = Raw::connect(addr);
        raw.send(request.as_bytes()).unwrap();
        let answer = raw
            .answer(secs(5.0))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_edge(&answer, status);
        // The request pipelined after it is not answered: closed.
        let rest = raw
            .until_closed(secs(5.0))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            rest.is_empty(),
            "{name}: answered after: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // A chunked body within the limit is read whole.
    let body = "email=chunked%40b.io&password=pw";
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "{post}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = raw.answer(secs(10.0)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

#[test]
fn expect_100_continue_is_honoured_only_within_the_limit() {
    let (_dir, server) = start(&["--max-body-bytes", "1024", "--header-timeout", "0.3"]);
    let addr = addr_of(&server);
    let body = "email=expect%40b.io&password=pw";
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = raw.answer(secs(5.0)).expect("100 Continue");
    assert_eq!(interim.raw_head, "HTTP/1.1 100 Continue\r\n\r\n");
    raw.send(body.as_bytes()).unwrap();
    let answer = raw.answer(secs(10.0)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    // Over the limit: 413 straight away, no 100 before it.
    let mut raw = Raw::connect(addr);
    raw.send(
        format!(
            "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
             Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let answer = raw.answer(secs(5.0)).unwrap();
    assert_edge(&answer, 413);
    let rest = raw.until_closed(secs(5.0)).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_alive(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
}

// ---------------------------------------------------------------------------
// 7. Connection caps
// ---------------------------------------------------------------------------

#[test]
fn connection_caps_refuse_with_503_and_free_up() {
    // Long timeouts: the idle connections stay until the test closes them.
    let mut flags = vec!["--max-connections", "20", "--max-connections-per-ip", "10"];
    flags.extend(PATIENT);
    let (_dir, server) = start(&flags);
    let addr = addr_of(&server);
    let from = |last: u8| Ipv4Addr::new(127, 0, 0, last);
    let open = |last: u8| connect_with(from(last), addr, None, secs(5.0)).unwrap();

    // Ten idle connections from 127.0.0.1 fill its share.
    let mut ones: Vec<TcpStream> = (0..10).map(|_| open(1)).collect();
    let mut eleventh = Raw::from(open(1));
    // The refusal comes without a byte sent.
    let answer = eleventh
        .answer(secs(5.0))
        .expect("503 over the per-address cap");
    assert_too_many(&answer);
    eleventh.until_closed(secs(5.0)).unwrap();
    for (i, stream) in ones.iter().enumerate() {
        assert!(
            Raw::quiet(stream),
            "idle connection {i} from 127.0.0.1 was not kept"
        );
    }

    // Another address is still served, on a connection it keeps.
    let mut kept = Raw::from(open(2));
    kept.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(kept.answer(secs(5.0)).unwrap().status, 200);

    // Fill the total: 10 + 1 + 4 (127.0.0.2) + 5 (127.0.0.3) = 20.
    let mut others: Vec<TcpStream> = (0..4).map(|_| open(2)).collect();
    others.extend((0..5).map(|_| open(3)));
    let mut over = Raw::from(open(4));
    let answer = over.answer(secs(5.0)).expect("503 over the total cap");
    assert_too_many(&answer);
    for (i, stream) in others.iter().enumerate() {
        assert!(
            Raw::quiet(stream),
            "connection {i} was refused below the cap"
        );
    }
    // Connections already in are still served at the cap.
    kept.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(kept.answer(secs(5.0)).unwrap().status, 200);
    assert_alive(&server);

    // Closing some frees their slots (once the server has seen them go).
    ones.truncate(7);
    let served = retry(secs(10.0), || {
        let mut raw = Raw::from(connect_with(from(4), addr, None, secs(2.0)).ok()?);
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let answer = raw.answer(secs(2.0)).ok()?;
        (answer.status == 200).then_some(answer)
    });
    assert!(served.is_some(), "no slot came free");
    drop(others);
    drop(ones);
    let answer = retry(secs(10.0), || {
        get(addr, "/", secs(2.0)).ok().filter(|a| a.status == 200)
    });
    assert!(answer.is_some(), "GET / not served after the slots freed");
    assert_alive(&server);
}

fn assert_too_many(answer: &Answer) {
    let message = assert_edge(answer, 503);
    assert_eq!(message, "too many connections");
    assert_eq!(answer.header("Retry-After"), Some("1"), "{answer:?}");
}

// ---------------------------------------------------------------------------
// 8. File descriptors
// ---------------------------------------------------------------------------

// A connection costs the server one descriptor. The two tests start the
// server with an even and an odd number of descriptors free (one more
// inherited descriptor flips it), so that the last connections meet the
// limit at different points of the accept (a fork that once duplicated
// each socket failed silently on one parity and not the other).

#[test]
fn out_of_file_descriptors_at_the_accept_is_logged_once_and_survived() {
    out_of_file_descriptors(0);
}

#[test]
fn out_of_file_descriptors_after_the_accept_is_logged_once_and_survived() {
    out_of_file_descriptors(1);
}

/// Runs the server under 256 descriptors, with `parity` (0 or 1) being the
/// number of descriptors free once it serves a connection, modulo 2; opens
/// connections until they run out.
fn out_of_file_descriptors(parity: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Caps well above the descriptor limit, so that descriptors run out
    // before a cap turns connections away.
    let mut flags = vec![
        "--max-connections",
        "1000",
        "--max-connections-per-ip",
        "1000",
    ];
    flags.extend(PATIENT);
    // One more inherited descriptor (fd 9) flips the parity.
    let (server, mut early, free) = [false, true]
        .into_iter()
        .find_map(|extra_fd| {
            let command = limited(&store, "--nofile=256:256", extra_fd, &flags);
            let server = Proc::spawn(command, &stderr_path(&store));
            // A keep-alive connection from before the descriptors run out.
            let mut early = Raw::connect(addr_of(&server));
            early
                .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let answer = early.answer(secs(5.0)).unwrap();
            assert_eq!(answer.status, 200, "{answer:?}");
            let free = 256 - open_fds(server.child.id());
            (free % 2 == parity).then_some((server, early, free))
        })
        .expect("one more descriptor changes the parity");
    let addr = addr_of(&server);
    let pid = server.child.id();

    let (idle, _) = open_many(addr, &[Ipv4Addr::LOCALHOST], 300, secs(20.0));
    let logged = retry(secs(10.0), || {
        server.stderr().contains("failed").then_some(())
    });
    assert!(
        logged.is_some(),
        "with {} connections open ({free} descriptors free at the start), \
         no failure was logged; server descriptors: {}; stderr:\n{}",
        idle.len(),
        open_fds(pid),
        server.stderr()
    );
    // Visible to a load balancer while it lasts.
    early
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answer = early.answer(secs(5.0)).unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.json()["reason"],
        "not accepting connections",
        "{answer:?}"
    );
    // Some time in the burst: the log stays at one line.
    std::thread::sleep(secs(1.0));
    assert_alive(&server);
    let stderr = server.stderr();
    let failed: Vec<&str> = stderr.lines().filter(|l| l.contains("failed")).collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(
        failed[0].starts_with("authd: ") && failed[0].contains("retrying"),
        "{stderr}"
    );

    drop(idle);
    let answer = retry(secs(10.0), || {
        get(addr, "/", secs(2.0)).ok().filter(|a| a.status == 200)
    });
    assert!(
        answer.is_some(),
        "not served again; stderr:\n{}",
        server.stderr()
    );
    let recovered = retry(secs(5.0), || {
        server.stderr().contains("works again after").then_some(())
    });
    assert!(recovered.is_some(), "{}", server.stderr());
    early
        .send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(early.answer(secs(5.0)).unwrap().status, 200);
    assert_alive(&server);
}

#[test]
fn the_default_cap_keeps_within_the_file_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let command = limited(&store, "--nofile=256:256", false, &PATIENT);
    let server = Proc::spawn(command, &stderr_path(&store));
    let addr = addr_of(&server);
    // 256 less 64 of headroom less 16 for the (unused) database pool.
    let stderr = server.stderr();
    let cap: usize = stderr
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap in the start-up line: {stderr}"));
    assert_eq!(cap, 176, "{stderr}");
    assert!(stderr.contains("(64 per client address)"), "{stderr}");
    // More than the cap, from four addresses (the per-address cap is 64).
    let sources: Vec<Ipv4Addr> = (2..=5).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let (mut conns, stopped) = open_many(addr, &sources, 240, secs(20.0));
    std::thread::sleep(secs(0.5));
    // Over the cap: 503; under it: kept, silent.
    let (mut kept, mut refused) = (0, 0);
    let mut other = std::collections::BTreeMap::<String, usize>::new();
    for raw in &mut conns {
        if raw.is_open_and_quiet() {
            kept += 1;
            continue;
        }
        match raw.answer(secs(5.0)) {
            Ok(answer) if answer.status == 503 => {
                assert_too_many(&answer);
                refused += 1;
            }
            Ok(answer) => *other.entry(format!("{answer:?}")).or_default() += 1,
            Err(e) => *other.entry(e).or_default() += 1,
        }
    }
    let stderr = server.stderr();
    let seen = format!(
        "{} connections opened (stopped early: {stopped:?}), {kept} kept, \
         {refused} refused with 503, others: {other:?}; server descriptors: {}; \
         stderr:\n{stderr}",
        conns.len(),
        open_fds(server.child.id())
    );
    assert_eq!(conns.len(), 240, "{seen}");
    assert!(!stderr.contains("failed"), "{seen}");
    assert!(other.is_empty(), "{seen}");
    assert_eq!((kept, refused), (cap, 240 - cap), "{seen}");
    assert_alive(&server);
    drop(conns);
    let answer = retry(secs(10.0), || {
        get(addr, "/", secs(2.0)).ok().filter(|a| a.status == 200)
    });
    assert!(answer.is_some(), "{}", server.stderr());
}

// ---------------------------------------------------------------------------
// 9. Threads
// ---------------------------------------------------------------------------

#[test]
fn running_out_of_threads_is_logged_once_and_survived() {
    // RLIMIT_NPROC counts a user's threads and root ignores it: the server
    // runs as a user of its own (CI runs as root; elsewhere there is no
    // user to switch to).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to an unprivileged user needs root");
        return;
    }
    let uid = 40_000 + std::process::id() % 10_000;
    let mut flags = vec![
        "--threads",
        "4",
        "--hash-workers",
        "1",
        "--max-connections",
        "1000",
    ];
    flags.extend(PATIENT);

    // What the server needs: its threads after start-up and some work.
    let needed = {
        let (dir, store) = shared_store_dir();
        let command = as_user(uid, 10_000, &store, &flags);
        let server = Proc::spawn(command, &stderr_path(&store));
        let addr = addr_of(&server);
        assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
        let answer = post_form(addr, "/users", "email=t%40b.io&password=pw", secs(10.0)).unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        let n = threads(server.child.id());
        drop(server);
        drop(dir);
        n
    };
    let limit = needed + 8;

    let (_dir, store) = shared_store_dir();
    let command = as_user(uid, limit, &store, &flags);
    let server = Proc::spawn(command, &stderr_path(&store));
    let addr = addr_of(&server);
    assert_eq!(get(addr, "/", secs(5.0)).unwrap().status, 200);
    let (idle, _) = open_many(addr, &[Ipv4Addr::LOCALHOST], 40, secs(10.0));
    let logged = retry(secs(10.0), || {
        server
            .stderr()
            .contains("starting a connection thread failed")
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "limit {limit}, {} threads; stderr:\n{}",
        threads(server.child.id()),
        server.stderr()
    );
    std::thread::sleep(secs(1.0));
    assert_alive(&server);
    let stderr = server.stderr();
    // Once per burst: a failure line, then none until a recovery line (on
    // a loaded machine a thread may end and the limit be met again, which
    // is a new burst).
    let mut failing = false;
    for line in stderr.lines() {
        if line.contains("failed") {
            assert!(!failing, "logged twice in one burst:\n{stderr}");
            assert!(
                line.starts_with("authd: ") && line.contains("retrying"),
                "{stderr}"
            );
            failing = true;
        } else if line.contains("works again") {
            failing = false;
        }
    }

    drop(idle);
    let answer = retry(secs(10.0), || {
        get(addr, "/", secs(2.0)).ok().filter(|a| a.status == 200)
    });
    assert!(
        answer.is_some(),
        "not served again; stderr:\n{}",
        server.stderr()
    );
    let answer = post_form(addr, "/sessions", "email=t%40b.io&password=pw", secs(10.0)).unwrap();
    // A fresh store: no such user, but answered by a handler.
    assert_eq!(answer.status, 401, "{answer:?}");
    let recovered = retry(secs(5.0), || {
        server
            .stderr()
            .contains("starting connection threads works again after")
            .then_some(())
    });
    assert!(recovered.is_some(), "{}", server.stderr());
    assert_alive(&server);
}

/// A temporary directory anyone may write (for a server running as another
/// user) and the store path in it.
fn shared_store_dir() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let store = dir.path().join("store");
    (dir, store)
}

/// `authd serve` as user `uid` with at most `nproc` threads.
fn as_user(uid: u32, nproc: usize, store: &Path, flags: &[&str]) -> Command {
    let id = uid.to_string();
    let mut command = Command::new("setpriv");
    command
        .env("AUTHD_BCRYPT_COST", "4")
        .args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "prlimit",
            &format!("--nproc={nproc}:{nproc}"),
            "--",
            BIN,
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(store)
        .args(flags);
    command
}

// ---------------------------------------------------------------------------
// 10. SIGTERM under attack
// ---------------------------------------------------------------------------

#[test]
fn sigterm_under_attack_finishes_in_flight_work_and_exits_0() {
    // A hash slow enough (about a second) to be surely in flight; slow and
    // idle connections that would hold the server for 30 s if it waited
    // for them.
    let mut flags = vec!["--bcrypt-cost", "12"];
    flags.extend(PATIENT);
    let (_dir, mut server) = start(&flags);
    let addr = addr_of(&server);
    let mut held: Vec<Raw> = (0..4)
        .map(|_| {
            let mut raw = Raw::connect(addr);
            raw.send(
                format!(
                    "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n\
                     Content-Length: 2000\r\n\r\nemail="
                )
                .as_bytes(),
            )
            .unwrap();
            raw
        })
        .collect();
    held.extend((0..4).map(|_| Raw::connect(addr)));
    let (answer, took) = std::thread::scope(|scope| {
        let in_flight =
            scope.spawn(|| post_form(addr, "/users", "email=term%40b.io&password=pw", secs(30.0)));
        std::thread::sleep(secs(0.3));
        let signalled = Instant::now();
        server.signal("TERM");
        let status = server.wait(secs(15.0));
        let took = signalled.elapsed();
        assert!(status.success(), "{status:?}; stderr:\n{}", server.stderr());
        (in_flight.join().unwrap(), took)
    });
    let answer = answer.expect("the request in flight is answered");
    assert_eq!(answer.status, 200, "{answer:?}");
    let stderr = server.stderr();
    assert!(
        took < secs(8.0),
        "exit took {took:?} (held by idle connections?); stderr:\n{stderr}"
    );
    assert!(!stderr.contains("did not finish"), "{stderr}");
    assert!(stderr.trim_end().ends_with("authd: stopped"), "{stderr}");
    drop(held);
}

// ---------------------------------------------------------------------------
// 11. Health
// ---------------------------------------------------------------------------

#[test]
fn healthz_is_ok_normally() {
    let (_dir, server) = start(&FAST);
    let answer = get(addr_of(&server), "/healthz", secs(5.0)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["status"], "ok", "{body}");
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A server on a fresh sled store, with `flags`; its stderr goes to a file
/// in the same temporary directory.
fn start(flags: &[&str]) -> (tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start(&dir.path().join("store"), flags);
    (dir, server)
}

/// Where [`Proc`] puts the stderr of a server on `store`.
fn stderr_path(store: &Path) -> PathBuf {
    store.with_extension("stderr")
}

/// `prlimit LIMIT -- authd serve` on `store`, optionally with one more
/// open descriptor (`/dev/null` on fd 9) inherited.
fn limited(store: &Path, limit: &str, extra_fd: bool, flags: &[&str]) -> Command {
    let mut command = Command::new("sh");
    let redirect = if extra_fd { "9</dev/null" } else { "" };
    command
        .env("AUTHD_BCRYPT_COST", "4")
        .args([
            "-c",
            &format!("exec prlimit \"$@\" {redirect}"),
            "sh",
            limit,
            "--",
            BIN,
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(store)
        .args(flags);
    command
}

/// Fails the test if the server process has ended.
fn assert_alive(server: &Proc) {
    let pid = server.child.id();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = state
        .rsplit(") ")
        .next()
        .and_then(|s| s.chars().next())
        .unwrap_or('?');
    assert!(
        !matches!(state, 'Z' | 'X' | '?'),
        "authd exited; stderr:\n{}",
        server.stderr()
    );
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Calls `attempt` until it gives something, for at most `limit`.
fn retry<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(secs(0.05));
    }
}

/// Opens up to `count` idle connections, round robin from `sources`;
/// stops at the first that cannot connect (the server's listen queue is
/// full) or when `limit` has passed, and says why it stopped early.
fn open_many(
    addr: SocketAddr,
    sources: &[Ipv4Addr],
    count: usize,
    limit: Duration,
) -> (Vec<Raw>, Option<String>) {
    let deadline = Instant::now() + limit;
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        if Instant::now() >= deadline {
            return (conns, Some(format!("out of time after {limit:?}")));
        }
        match connect_with(sources[i % sources.len()], addr, None, secs(0.5)) {
            Ok(stream) => conns.push(Raw::from(stream)),
            Err(e) => return (conns, Some(format!("connection {i}: {e}"))),
        }
    }
    (conns, None)
}

/// Checks an answer the edge wrote itself: `status`, a JSON
/// `{"message": ...}` body with a JSON media type, the common headers and
/// `Connection: close`. Returns the message.
fn assert_edge(answer: &Answer, status: u16) -> String {
    assert_eq!(answer.status, status, "{answer:?}");
    let content_type = answer.header("Content-Type").unwrap_or("");
    assert_eq!(
        content_type.split(';').next().unwrap().trim(),
        "application/json",
        "{answer:?}"
    );
    for (name, value) in [
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
        ("Connection", "close"),
    ] {
        assert_eq!(answer.header(name), Some(value), "{name} in {answer:?}");
    }
    let body = answer.json();
    let object = body.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "{body}");
    object["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_owned()
}

/// Reads whatever comes for at most `limit`; returns the bytes read and
/// whether the connection ended (EOF or reset).
fn drain(stream: &mut TcpStream, limit: Duration) -> (usize, bool) {
    let deadline = Instant::now() + limit;
    let mut got = 0;
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut scratch) {
            Ok(0) => return (got, true),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}
