//! A drop-in for every client of the reference and for every prototype:
//!
//! 1. every JSON answer, the HTTP edge's own included, is byte for byte
//!    what Flask's `jsonify` sends for the same object (compact, keys
//!    sorted, `\uXXXX` escapes with surrogate pairs, a trailing newline,
//!    `Content-Type: application/json` exactly), with the security headers;
//! 2. the routes that look a user up by email answer an address that fails
//!    validation, or no `email` at all, exactly as an unknown valid one;
//! 3. the request-rate limits never bother a seed script on the developer's
//!    own machine in the dev profile...
//! 4. ...while the per-account login backoff still holds, in both profiles;
//! 5. the exemption ends as soon as a forwarding header (or
//!    `--client-ip-header`) says the client may not be local, and authd
//!    says so once on stderr;
//! 6. request rates are token buckets: a burst, then one per refill.
//!
//! Answers are read with the raw `TcpStream` client of `common::raw`, so
//! the bytes checked are the bytes sent. Every loop is bounded; the only
//! timing assertions are generous ones about the refill of a bucket.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::process::Proc;
use authd::config::Profile;

use crate::common::raw::{self, addr_of, session_cookie, Answer, Raw, FORM};
use crate::common::{urlencode, TestApp};
use serde_json::{json, Value};

/// Longest a test waits for any one answer.
const IO_LIMIT: Duration = Duration::from_secs(30);

/// An address outside ASCII, and what `jsonify` makes of it.
const JOSE: &str = "jos\u{e9}@example.com";
const JOSE_JSON: &str = "jos\\u00e9@example.com";
/// An address above the Basic Multilingual Plane: a surrogate pair.
const GRIN: &str = "a\u{1F600}@example.com";
const GRIN_JSON: &str = "a\\ud83d\\ude00@example.com";

/// A password the production policy accepts.
const STRONG: &str = "correct horse battery staple";

/// The flags of a production server (cost 10, the least it allows).
const PRODUCTION: [&str; 6] = [
    "--profile",
    "production",
    "--reset-delivery",
    "log",
    "--bcrypt-cost",
    "10",
];

// ---------------------------------------------------------------------------
// Requests, on the raw client of `common::raw`
// ---------------------------------------------------------------------------

/// Sends `request` as is on a connection of its own and reads the answer
/// until the server closes the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    raw::exchange(addr, request, IO_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// `method path` with `headers` and `body`, `Connection: close`
/// ([`raw::call`]).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    raw::call(addr, method, path, headers, body, IO_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// `method path` with `fields` form-encoded, and `headers` besides.
fn form(
    addr: SocketAddr,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Answer {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut all = vec![("Content-Type", FORM)];
    all.extend_from_slice(headers);
    call(addr, method, path, &all, body.as_bytes())
}

fn register(addr: SocketAddr, email: &str, password: &str, headers: &[(&str, &str)]) -> Answer {
    form(
        addr,
        "POST",
        "/users",
        &[("email", email), ("password", password)],
        headers,
    )
}

fn log_in(addr: SocketAddr, email: &str, password: &str) -> Answer {
    form(
        addr,
        "POST",
        "/sessions",
        &[("email", email), ("password", password)],
        &[],
    )
}

fn addr_of_app(app: &TestApp) -> SocketAddr {
    app.running.addr()
}

/// A store directory in a fresh temporary directory (its stderr file goes
/// beside it).
fn store() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    (tmp, dir)
}

// ---------------------------------------------------------------------------
// What jsonify writes
// ---------------------------------------------------------------------------

/// What Flask's `jsonify` sends for `value`: Python's
/// `json.dumps(value, separators=(",", ":"), sort_keys=True,
/// ensure_ascii=True) + "\n"`. Written here from Python's rules, not from
/// authd's writer, to check its output against.
fn jsonify(value: &Value) -> String {
    fn string(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                // Python's ESCAPE_ASCII escapes everything outside ' '..='~'.
                ' '..='~' => out.push(c),
                _ => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }
    fn write(out: &mut String, value: &Value) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => string(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(out, item);
                }
                out.push(']');
            }
            Value::Object(map) => {
                // Python sorts by code point; UTF-8 byte order is the same.
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, key);
                    out.push(':');
                    write(out, item);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(&mut out, value);
    out.push('\n');
    out
}

#[test]
fn the_jsonify_model_matches_pythons_output() {
    // Each expected string is what Flask 3.1's jsonify gave for the object
    // (checked with Python 3 when this test was written).
    let cases = [
        (
            json!({"message": "Bienvenue"}),
            r#"{"message":"Bienvenue"}"#,
        ),
        (
            json!({"message": "user created", "email": JOSE}),
            r#"{"email":"jos\u00e9@example.com","message":"user created"}"#,
        ),
        (
            json!({"message": "user created", "email": GRIN}),
            r#"{"email":"a\ud83d\ude00@example.com","message":"user created"}"#,
        ),
        (
            json!({"message": "missing field \"email\""}),
            r#"{"message":"missing field \"email\""}"#,
        ),
        (
            json!({"b": {"z": 1, "a": [true, null]}, "a": "\u{7f}\u{1}/\u{2028}"}),
            r#"{"a":"\u007f\u0001/\u2028","b":{"a":[true,null],"z":1}}"#,
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(jsonify(&value), format!("{expected}\n"), "{value}");
    }
}

/// Checks a JSON answer: `status`, exactly the bytes `body` (a literal
/// without its trailing newline), one `Content-Type: application/json`, and
/// the security headers.
fn assert_json(answer: &Answer, status: u16, body: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.text(),
        format!("{body}\n"),
        "body bytes differ: {answer:?}"
    );
    assert_flask_headers(answer);
    // The literal is itself what jsonify writes for the object it holds.
    let value: Value = serde_json::from_str(body).unwrap();
    assert_eq!(jsonify(&value), format!("{body}\n"), "bad expectation");
}

/// Checks the error answer `{"message": message}` with `status`.
fn assert_error(answer: &Answer, status: u16, message: &str) {
    let body = jsonify(&json!({ "message": message }));
    assert_json(answer, status, body.trim_end_matches('\n'));
}

/// Checks a JSON answer whose content is not known in advance: its body is
/// exactly what jsonify writes for the object it holds; returns that.
fn assert_flask_shaped(answer: &Answer) -> Value {
    let text = answer.text();
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"));
    assert_eq!(text, jsonify(&value), "not what jsonify writes: {answer:?}");
    assert_flask_headers(answer);
    value
}

/// `Content-Type: application/json` exactly, once, and the security
/// headers.
fn assert_flask_headers(answer: &Answer) {
    assert_eq!(
        answer.all("Content-Type"),
        ["application/json"],
        "{answer:?}"
    );
    assert_eq!(
        answer.all("X-Content-Type-Options"),
        ["nosniff"],
        "{answer:?}"
    );
    assert_eq!(answer.all("Cache-Control"), ["no-store"], "{answer:?}");
}

/// Checks a 429: `{"message": "too many attempts, retry in N s"}` with
/// `Retry-After: N`; returns N.
fn assert_throttled(answer: &Answer) -> u64 {
    assert_eq!(answer.status, 429, "{answer:?}");
    let retry_after: u64 = answer
        .only("Retry-After")
        .unwrap_or_else(|| panic!("no Retry-After: {answer:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After not a number: {answer:?}"));
    assert!(retry_after >= 1, "{answer:?}");
    assert_error(
        answer,
        429,
        &format!("too many attempts, retry in {retry_after} s"),
    );
    retry_after
}

// ---------------------------------------------------------------------------
// 1. Byte for byte what jsonify sends
// ---------------------------------------------------------------------------

fn every_route_answers_what_jsonify_sends() {
    let app = TestApp::spawn();
    let addr = addr_of_app(&app);

    assert_json(
        &call(addr, "GET", "/", &[], b""),
        200,
        r#"{"message":"Bienvenue"}"#,
    );
    assert_json(
        &call(addr, "GET", "/healthz", &[], b""),
        200,
        &format!(
            r#"{{"status":"ok","version":"{}"}}"#,
            env!("CARGO_PKG_VERSION")
        ),
    );

    // Registration: the é as the six characters \u00e9.
    let reply = register(addr, JOSE, "pw one", &[]);
    assert_json(
        &reply,
        200,
        r#"{"email":"jos\u00e9@example.com","message":"user created"}"#,
    );
    assert!(reply.text().is_ascii());
    assert_json(
        &register(addr, JOSE, "pw two", &[]),
        400,
        r#"{"message":"email already registered"}"#,
    );
    // A message with quotes in it.
    assert_json(
        &form(addr, "POST", "/users", &[("password", "pw")], &[]),
        400,
        r#"{"message":"missing field \"email\""}"#,
    );

    // Logging in.
    assert_json(
        &log_in(addr, JOSE, "wrong"),
        401,
        r#"{"message":"wrong email or password"}"#,
    );
    let reply = log_in(addr, JOSE, "pw one");
    assert_json(
        &reply,
        200,
        &format!(r#"{{"email":"{JOSE_JSON}","message":"logged in"}}"#),
    );
    let session = reply.session();

    // The profile.
    let cookie = session_cookie(Profile::Dev, &session);
    assert_json(
        &call(addr, "GET", "/profile", &[("Cookie", &cookie)], b""),
        200,
        r#"{"email":"jos\u00e9@example.com"}"#,
    );
    assert_json(
        &call(addr, "GET", "/profile", &[], b""),
        403,
        r#"{"message":"no valid session"}"#,
    );
    assert_json(
        &call(
            addr,
            "GET",
            "/profile",
            &[("Cookie", &session_cookie(Profile::Dev, "nope"))],
            b"",
        ),
        403,
        r#"{"message":"no valid session"}"#,
    );

    // A reset token: keys sorted, email before reset_token.
    let reply = form(addr, "POST", "/reset_password", &[("email", JOSE)], &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.text();
    let token = body
        .strip_prefix(&format!(r#"{{"email":"{JOSE_JSON}","reset_token":""#))
        .and_then(|rest| rest.strip_suffix("\"}\n"))
        .unwrap_or_else(|| panic!("{reply:?}"));
    assert_eq!(token.len(), 43, "{reply:?}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{reply:?}"
    );
    assert_json(
        &reply,
        200,
        &format!(r#"{{"email":"{JOSE_JSON}","reset_token":"{token}"}}"#),
    );
    assert_json(
        &form(
            addr,
            "POST",
            "/reset_password",
            &[("email", "nobody@example.com")],
            &[],
        ),
        403,
        r#"{"message":"email not registered"}"#,
    );

    // Using it.
    let update = [
        ("email", JOSE),
        ("reset_token", token),
        ("new_password", "pw three"),
    ];
    assert_json(
        &form(addr, "PUT", "/reset_password", &update, &[]),
        200,
        r#"{"email":"jos\u00e9@example.com","message":"Password updated"}"#,
    );
    assert_json(
        &form(addr, "PUT", "/reset_password", &update, &[]),
        403,
        r#"{"message":"invalid reset token"}"#,
    );

    // Unknown routes and wrong methods.
    assert_json(
        &call(addr, "GET", "/nope", &[], b""),
        404,
        r#"{"message":"not found"}"#,
    );
    let reply = call(addr, "DELETE", "/", &[], b"");
    assert_json(
        &reply,
        405,
        r#"{"message":"method not allowed (allowed: GET)"}"#,
    );
    assert_eq!(reply.only("Allow"), Some("GET"), "{reply:?}");
    let reply = call(addr, "PATCH", "/reset_password", &[], b"");
    assert_json(
        &reply,
        405,
        r#"{"message":"method not allowed (allowed: POST, PUT)"}"#,
    );
    assert_eq!(reply.only("Allow"), Some("POST, PUT"), "{reply:?}");

    // Above the Basic Multilingual Plane: a surrogate pair, in every
    // answer that carries the address.
    let reply = register(addr, GRIN, "pw", &[]);
    assert_json(
        &reply,
        200,
        r#"{"email":"a\ud83d\ude00@example.com","message":"user created"}"#,
    );
    let reply = log_in(addr, GRIN, "pw");
    assert_json(
        &reply,
        200,
        &format!(r#"{{"email":"{GRIN_JSON}","message":"logged in"}}"#),
    );
    let cookie = session_cookie(Profile::Dev, &reply.session());
    assert_json(
        &call(addr, "GET", "/profile", &[("Cookie", &cookie)], b""),
        200,
        &format!(r#"{{"email":"{GRIN_JSON}"}}"#),
    );
    let reply = form(addr, "POST", "/reset_password", &[("email", GRIN)], &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .text()
            .starts_with(&format!(r#"{{"email":"{GRIN_JSON}","reset_token":""#)),
        "{reply:?}"
    );
    assert_flask_shaped(&reply);

    // The same through a JSON body written with escapes, as Python's
    // json.dumps would send it.
    let reply = call(
        addr,
        "POST",
        "/users",
        &[("Content-Type", "application/json")],
        br#"{"password": "pw", "email": "b\ud83d\ude00@example.com"}"#,
    );
    assert_json(
        &reply,
        200,
        r#"{"email":"b\ud83d\ude00@example.com","message":"user created"}"#,
    );
}

fn the_edge_answers_with_the_same_json_and_headers() {
    let app = TestApp::spawn();
    let addr = addr_of_app(&app);

    // A declared body over 65536 bytes: refused from the head alone.
    let reply = exchange(
        addr,
        format!(
            "POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n\
             Content-Length: 65537\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 413, "{reply:?}");
    let message = assert_flask_shaped(&reply)["message"].clone();
    assert!(
        message.as_str().is_some_and(|m| m.contains("65536")),
        "{reply:?}"
    );
    assert_eq!(reply.all("Content-Type").len(), 1);

    // A head over 16 KiB.
    let pad = "a".repeat(17 * 1024);
    let reply = exchange(
        addr,
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: {pad}\r\n\r\n").as_bytes(),
    );
    assert_eq!(reply.status, 431, "{reply:?}");
    let message = assert_flask_shaped(&reply)["message"].clone();
    assert!(
        message.as_str().is_some_and(|m| m.contains("16384")),
        "{reply:?}"
    );

    // A Content-Length that is not a number.
    for length in ["twelve", "-1", "99999999999999999999999"] {
        let reply = exchange(
            addr,
            format!(
                "POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: {FORM}\r\n\
                 Content-Length: {length}\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(reply.status, 400, "Content-Length {length}: {reply:?}");
        let value = assert_flask_shaped(&reply);
        assert_eq!(
            value
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect::<Vec<_>>()),
            Some(vec!["message"]),
            "{reply:?}"
        );
    }
    // The server is still there.
    assert_eq!(call(addr, "GET", "/", &[], b"").status, 200);
}

fn the_connection_cap_answers_with_the_same_json_and_headers() {
    let app = TestApp::spawn_with(|c| {
        c.edge.max_connections = 2;
        c.edge.max_connections_per_ip = 2;
        // The held connections must outlive the test's own steps.
        c.edge.keepalive_timeout = Duration::from_secs(60);
        c.edge.header_timeout = Duration::from_secs(60);
    });
    let addr = addr_of_app(&app);
    // Two kept-alive connections, each answered once, so the server has
    // surely counted them.
    let held: Vec<Raw> = (0..2)
        .map(|_| {
            let mut stream = Raw::connect_within(addr, IO_LIMIT).unwrap();
            stream
                .send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let reply = stream.answer(IO_LIMIT).unwrap_or_else(|e| panic!("{e}"));
            assert_json(&reply, 200, r#"{"message":"Bienvenue"}"#);
            stream
        })
        .collect();
    // The third gets 503 without sending anything, and is closed.
    let mut third = Raw::connect_within(addr, IO_LIMIT).unwrap();
    let reply = third
        .sole_answer(IO_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_error(&reply, 503, "too many connections");
    assert_eq!(reply.only("Retry-After"), Some("1"), "{reply:?}");
    drop(held);
}

// ---------------------------------------------------------------------------
// 2. An invalid address is an unknown one
// ---------------------------------------------------------------------------

fn lookups_answer_an_invalid_email_as_an_unknown_one() {
    let app = TestApp::spawn();
    let addr = addr_of_app(&app);
    // A registered account, so that "unknown" is not "the store is empty".
    assert_eq!(register(addr, "ann@example.com", "pw", &[]).status, 200);

    let long = format!("{}@example.com", "a".repeat(288));
    assert_eq!(long.chars().count(), 300);
    let token = "A".repeat(43);
    // Each route, with the `email` field given as `Some(value)` or left out.
    let answer = |route: &str, email: Option<&str>| -> Answer {
        let mut fields: Vec<(&str, &str)> = email.map(|e| ("email", e)).into_iter().collect();
        match route {
            "POST /sessions" => {
                fields.push(("password", "some password"));
                form(addr, "POST", "/sessions", &fields, &[])
            }
            "POST /reset_password" => form(addr, "POST", "/reset_password", &fields, &[]),
            "PUT /reset_password" => {
                fields.push(("reset_token", &token));
                fields.push(("new_password", "another password"));
                form(addr, "PUT", "/reset_password", &fields, &[])
            }
            _ => unreachable!(),
        }
    };
    for (route, status, message) in [
        ("POST /sessions", 401, "wrong email or password"),
        ("POST /reset_password", 403, "email not registered"),
        ("PUT /reset_password", 403, "invalid reset token"),
    ] {
        let unknown = answer(route, Some("nobody@example.com"));
        assert_error(&unknown, status, message);
        for email in [
            Some("nope"),
            Some("a@@b"),
            Some(long.as_str()),
            Some(""),
            None,
        ] {
            let reply = answer(route, email);
            assert_eq!(
                (reply.status, reply.text()),
                (unknown.status, unknown.text()),
                "{route} with email {email:?}: {reply:?}"
            );
            assert_eq!(
                reply.all("Content-Type"),
                unknown.all("Content-Type"),
                "{route} with email {email:?}"
            );
            assert_flask_headers(&reply);
        }
    }

    // Registration still says what is wrong with the address.
    for email in ["nope", "a@@b", long.as_str(), ""] {
        let reply = register(addr, email, "pw", &[]);
        assert_eq!(reply.status, 400, "{email:?}: {reply:?}");
        let message = assert_flask_shaped(&reply)["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with("email "), "{email:?}: {reply:?}");
    }
    assert_json(
        &form(addr, "POST", "/users", &[("password", "pw")], &[]),
        400,
        r#"{"message":"missing field \"email\""}"#,
    );
    assert_eq!(app.user_count(), 1);
}

// ---------------------------------------------------------------------------
// 3. A seed script on this machine is never throttled
// ---------------------------------------------------------------------------

fn a_seed_script_on_this_machine_is_never_throttled() {
    const ACCOUNTS: usize = 300;
    const THREADS: usize = 6;
    let (_tmp, dir) = store();
    // The dev profile with its default limits (10 requests free per IP and
    // per email), so the 300 registrations are 30 times the burst.
    let server = Proc::start(&dir, &["--no-access-log", "--no-audit-log"]);
    let addr = addr_of(&server);
    let refused: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut refused = Vec::new();
                    let mut note = |what: String, answer: &Answer| {
                        if answer.status != 200 {
                            refused.push(format!("{what}: {answer:?}"));
                        }
                    };
                    for i in (t..ACCOUNTS).step_by(THREADS) {
                        let email = format!("seed{i}@example.com");
                        note(
                            format!("register {email}"),
                            &register(addr, &email, "pw", &[]),
                        );
                        let login = log_in(addr, &email, "pw");
                        note(format!("log in {email}"), &login);
                        let session = login.session_in(Profile::Dev).unwrap_or_default();
                        let cookie = session_cookie(Profile::Dev, &session);
                        note(
                            format!("profile {email}"),
                            &call(addr, "GET", "/profile", &[("Cookie", &cookie)], b""),
                        );
                        note(
                            format!("reset token {email}"),
                            &form(addr, "POST", "/reset_password", &[("email", &email)], &[]),
                        );
                    }
                    refused
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let throttled = refused.iter().filter(|r| r.contains("status: 429")).count();
    assert!(
        refused.is_empty(),
        "{} of {} requests refused ({throttled} with 429), e.g. {:#?}",
        refused.len(),
        ACCOUNTS * 4,
        &refused[..refused.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// 4. Guessing passwords still meets 429, in both profiles
// ---------------------------------------------------------------------------

/// 40 wrong passwords for `email` from 127.0.0.1: the free failures get
/// 401, then the account backs off with 429.
fn forty_wrong_passwords(server: &Proc, email: &str) {
    let addr = addr_of(server);
    let statuses: Vec<u16> = (0..40)
        .map(|i| {
            let reply = log_in(addr, email, &format!("wrong guess {i}"));
            match reply.status {
                401 => assert_error(&reply, 401, "wrong email or password"),
                429 => {
                    assert_throttled(&reply);
                }
                _ => panic!("guess {i}: {reply:?}"),
            }
            reply.status
        })
        .collect();
    // The five free failures (--login-free-failures) are plain 401s.
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(throttled > 0, "40 wrong passwords, no 429: {statuses:?}");
    // Delays double from 1 s: ten failures would need half a minute.
    assert!(throttled >= 30, "{statuses:?}");
}

fn forty_wrong_passwords_meet_429_in_dev() {
    let (_tmp, dir) = store();
    let server = Proc::start(&dir, &["--no-access-log"]);
    let addr = addr_of(&server);
    assert_eq!(register(addr, "ann@example.com", "pw", &[]).status, 200);
    forty_wrong_passwords(&server, "ann@example.com");
    // Only the account backs off: another one from the same (local)
    // client still logs in.
    assert_eq!(register(addr, "bob@example.com", "pw", &[]).status, 200);
    assert_eq!(log_in(addr, "bob@example.com", "pw").status, 200);
}

fn forty_wrong_passwords_meet_429_in_production() {
    let (_tmp, dir) = store();
    let mut flags = PRODUCTION.to_vec();
    flags.push("--no-access-log");
    let server = Proc::start(&dir, &flags);
    let addr = addr_of(&server);
    let reply = register(addr, "ann@example.com", STRONG, &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    forty_wrong_passwords(&server, "ann@example.com");
}

// ---------------------------------------------------------------------------
// 5. Only a local client is exempt
// ---------------------------------------------------------------------------

/// What authd writes once when a forwarding header reaches a dev instance.
fn forwarded_warning(header: &str) -> String {
    format!(
        "authd: a request came with a {header} header: a proxy or tunnel on this host forwards \
         to this dev instance, so its clients get the request-rate limits a loopback client is \
         spared"
    )
}

const WARNING_START: &str = "authd: a request came with a ";

/// In the dev profile, from 127.0.0.1: plain requests are exempt, requests
/// carrying `header` (with `value`) are limited, and authd warns once.
fn a_forwarding_header_ends_the_exemption(header: &str, value: &str) {
    let (_tmp, dir) = store();
    // A refill far longer than the test: the limit cannot depend on speed.
    let server = Proc::start(
        &dir,
        &[
            "--request-free",
            "3",
            "--request-refill",
            "60",
            "--no-access-log",
        ],
    );
    let addr = addr_of(&server);

    // Four times the burst without the header: all pass, no warning.
    for i in 0..12 {
        let reply = register(addr, &format!("plain{i}@example.com"), "pw", &[]);
        assert_eq!(reply.status, 200, "plain registration {i}: {reply:?}");
    }
    assert!(
        !server.stderr().contains(WARNING_START),
        "{}",
        server.stderr()
    );

    // With the header: the burst, then 429.
    for i in 0..3 {
        let reply = register(
            addr,
            &format!("fwd{i}@example.com"),
            "pw",
            &[(header, value)],
        );
        assert_eq!(reply.status, 200, "{header} registration {i}: {reply:?}");
    }
    for i in 3..6 {
        let reply = register(
            addr,
            &format!("fwd{i}@example.com"),
            "pw",
            &[(header, value)],
        );
        assert_throttled(&reply);
    }
    // Reset requests too (a bucket of their own).
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            form(
                addr,
                "POST",
                "/reset_password",
                &[("email", &format!("plain{i}@example.com"))],
                &[(header, value)],
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429], "{header}");

    // More forwarded requests, with every forwarding header.
    for (name, value) in [
        ("X-Forwarded-For", "198.51.100.7"),
        ("X-Real-IP", "198.51.100.7"),
        ("Forwarded", "for=198.51.100.7"),
    ] {
        assert_eq!(call(addr, "GET", "/", &[(name, value)], b"").status, 200);
        let reply = register(addr, "late@example.com", "pw", &[(name, value)]);
        assert_throttled(&reply);
    }
    // Still exempt without one.
    assert_eq!(
        register(addr, "plain-late@example.com", "pw", &[]).status,
        200
    );

    let stderr = server.stderr();
    assert_eq!(
        stderr.matches(WARNING_START).count(),
        1,
        "one warning expected: {stderr}"
    );
    assert!(
        stderr.lines().any(|line| line == forwarded_warning(header)),
        "no warning naming {header}: {stderr}"
    );
}

fn x_forwarded_for_ends_the_exemption() {
    a_forwarding_header_ends_the_exemption("X-Forwarded-For", "198.51.100.7");
}

fn x_real_ip_ends_the_exemption() {
    a_forwarding_header_ends_the_exemption("X-Real-IP", "198.51.100.7");
}

fn forwarded_ends_the_exemption() {
    a_forwarding_header_ends_the_exemption("Forwarded", "for=198.51.100.7");
}

fn a_client_ip_header_ends_the_exemption() {
    let (_tmp, dir) = store();
    let server = Proc::start(
        &dir,
        &[
            "--request-free",
            "3",
            "--request-refill",
            "60",
            "--client-ip-header",
            "X-Forwarded-For",
            "--no-access-log",
        ],
    );
    let addr = addr_of(&server);
    // Without the header, the client is the loopback peer: limited.
    let statuses: Vec<u16> = (0..5)
        .map(|i| register(addr, &format!("direct{i}@example.com"), "pw", &[]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_throttled(&register(addr, "direct9@example.com", "pw", &[]));
    // With it, the address it names: a bucket of its own, limited too.
    let xff = [("X-Forwarded-For", "198.51.100.7")];
    let statuses: Vec<u16> = (0..5)
        .map(|i| register(addr, &format!("proxied{i}@example.com"), "pw", &xff).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_throttled(&register(addr, "proxied9@example.com", "pw", &xff));
}

// ---------------------------------------------------------------------------
// 6. Request rates are token buckets
// ---------------------------------------------------------------------------

fn request_rates_are_token_buckets_in_dev() {
    let (_tmp, dir) = store();
    let server = Proc::start(
        &dir,
        &[
            "--request-free",
            "3",
            "--request-refill",
            "0.5",
            "--no-access-log",
        ],
    );
    let addr = addr_of(&server);
    // From 127.0.0.1, but through a (pretend) proxy: not local.
    let xff = [("X-Forwarded-For", "198.51.100.7")];
    let mut n = 0;
    let mut next = || {
        n += 1;
        register(addr, &format!("bucket{n}@example.com"), "pw", &xff)
    };
    for i in 0..3 {
        let reply = next();
        assert_eq!(reply.status, 200, "burst {i}: {reply:?}");
    }
    let reply = next();
    assert_eq!(assert_throttled(&reply), 1, "{reply:?}");
    std::thread::sleep(Duration::from_millis(600));
    let reply = next();
    assert_eq!(reply.status, 200, "one token came back: {reply:?}");
    let reply = next();
    assert_eq!(assert_throttled(&reply), 1, "{reply:?}");
}

fn request_rates_are_token_buckets_in_production() {
    let (_tmp, dir) = store();
    let mut flags = PRODUCTION.to_vec();
    flags.extend(["--request-free", "3", "--no-access-log"]);
    let server = Proc::start(&dir, &flags);
    let addr = addr_of(&server);
    for i in 0..3 {
        let reply = register(addr, &format!("prod{i}@example.com"), STRONG, &[]);
        assert_eq!(reply.status, 200, "burst {i}: {reply:?}");
    }
    // The next token comes back 60 s after the burst (the production
    // refill), not after a growing delay that starts at 1 s.
    let retry_after = assert_throttled(&register(addr, "prod3@example.com", STRONG, &[]));
    assert!(
        (31..=60).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    // Reset requests: a bucket of their own, the same rule.
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            form(
                addr,
                "POST",
                "/reset_password",
                &[("email", &format!("prod{i}@example.com"))],
                &[],
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200]);
    let reply = form(
        addr,
        "POST",
        "/reset_password",
        &[("email", "prod0@example.com")],
        &[],
    );
    let retry_after = assert_throttled(&reply);
    assert!(
        (31..=60).contains(&retry_after),
        "Retry-After {retry_after}"
    );
}

crate::on_every_store!(
    every_route_answers_what_jsonify_sends,
    the_edge_answers_with_the_same_json_and_headers,
    the_connection_cap_answers_with_the_same_json_and_headers,
    lookups_answer_an_invalid_email_as_an_unknown_one,
    a_seed_script_on_this_machine_is_never_throttled,
    forty_wrong_passwords_meet_429_in_dev,
    forty_wrong_passwords_meet_429_in_production,
    x_forwarded_for_ends_the_exemption,
    x_real_ip_ends_the_exemption,
    forwarded_ends_the_exemption,
    a_client_ip_header_ends_the_exemption,
    request_rates_are_token_buckets_in_dev,
    request_rates_are_token_buckets_in_production,
);
