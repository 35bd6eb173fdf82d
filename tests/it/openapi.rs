//! `/openapi.json` is a valid OpenAPI 3.1 document, and it tells the truth:
//! every answer the live server gives in the scenarios below is documented
//! for its route, method and status, with its body valid against the
//! documented schema and the documented headers present. Its request
//! schemas are never looser than the server's own rules (every email and
//! password they admit is accepted) and, on ASCII, exactly those rules.
//! `tests/schemathesis.sh` fuzzes a running server against the document.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use crate::common::raw::{exchange, head, Answer, IO_LIMIT};
use crate::common::{encode, Format, TestApp};
use authd::user::{Email, Password};
use proptest::prelude::*;
use serde_json::Value;

struct Spec {
    doc: Value,
    covered: BTreeSet<(String, String, u16)>,
}

impl Spec {
    fn load(app: &TestApp) -> Spec {
        let reply = app.request("GET", "/openapi.json", None, b"", None);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        oas3::from_json(reply.text()).expect("a valid OpenAPI 3.1 document");
        let doc: Value = serde_json::from_str(reply.text()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        Spec {
            doc,
            covered: BTreeSet::new(),
        }
    }

    /// Follows a local `$ref` if `value` is one.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self
                .doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
            None => value,
        }
    }

    /// Asserts `reply` is what the document says `method path` may answer.
    fn check(&mut self, method: &str, path: &str, reply: &Answer) {
        let item = &self.doc["paths"][path];
        assert!(item.is_object(), "{path} is not documented");
        let op = &item[method.to_lowercase()];
        if !op.is_object() {
            // An undocumented method: 405, naming exactly the documented ones.
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
            let mut allowed: Vec<String> = item
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            let mut allow: Vec<String> = reply
                .header("Allow")
                .unwrap()
                .split(", ")
                .map(str::to_owned)
                .collect();
            allowed.sort();
            allow.sort();
            assert_eq!(allow, allowed, "{method} {path}");
            let error = self.doc["components"]["responses"]["MethodNotAllowed"].clone();
            self.check_body(method, path, reply, &error);
            self.covered
                .insert((path.to_owned(), method.to_owned(), 405));
            return;
        }
        let documented = op["responses"]
            .get(reply.status.to_string())
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path} answered {} which is not documented: {}",
                    reply.status,
                    reply.text()
                )
            });
        let response = self.resolve(documented).clone();
        self.check_body(method, path, reply, &response);
        self.covered
            .insert((path.to_owned(), method.to_owned(), reply.status));
    }

    /// The documented headers are present (but those the document marks
    /// `required: false`), string-valued ones match their schema, every
    /// CORS header sent is documented for this answer, `Vary: Origin` is
    /// there as the description says, and the body matches the schema.
    fn check_body(&self, method: &str, path: &str, reply: &Answer, response: &Value) {
        let documented = response.get("headers").and_then(Value::as_object);
        for (name, header) in documented.into_iter().flatten() {
            let header = self.resolve(header);
            let Some(value) = reply.header(name) else {
                assert_eq!(
                    header["required"], false,
                    "{method} {path} {}: documented header {name} missing",
                    reply.status
                );
                continue;
            };
            if header["schema"]["type"] == "string" {
                let validator = jsonschema::draft202012::new(&header["schema"]).unwrap();
                assert!(
                    validator.is_valid(&Value::from(value)),
                    "{method} {path} {}: {name}: {value} does not match {}",
                    reply.status,
                    header["schema"]
                );
            }
        }
        for (name, _) in &reply.headers {
            if name.to_ascii_lowercase().starts_with("access-control-") {
                assert!(
                    documented.is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name))),
                    "{method} {path} {}: {name} sent but not documented",
                    reply.status
                );
            }
        }
        assert_eq!(
            reply.all("Vary"),
            ["Origin"],
            "{method} {path} {}",
            reply.status
        );
        if let Some(schema) = response.pointer("/content/application~1json/schema") {
            assert_eq!(
                reply.header("Content-Type"),
                Some("application/json"),
                "{method} {path} {}",
                reply.status
            );
            let body: Value = serde_json::from_str(reply.text()).unwrap();
            let mut wrapped = schema.clone();
            // Let local references resolve inside the wrapped schema.
            wrapped["components"] = self.doc["components"].clone();
            let validator = jsonschema::draft202012::new(&wrapped).expect("a valid schema");
            if let Err(error) = validator.validate(&body) {
                panic!(
                    "{method} {path} {}: {} does not match: {error}",
                    reply.status,
                    reply.text()
                );
            }
        }
    }
}

/// A page's origin the dev profile allows (a front end's dev server).
const PAGE: &str = "http://localhost:3000";

/// Sends `request` as it is on a new connection and reads the answer up to
/// the close: how the answers of the HTTP edge itself (which closes the
/// connection after each) are seen.
fn raw(app: &TestApp, request: &[u8]) -> Answer {
    exchange(app.running.addr(), request, IO_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

fn the_document_matches_the_live_server() {
    let app = TestApp::spawn_with(|c| {
        c.max_body_bytes = 1024;
        c.limits.request_free = 4;
        c.limits.login_free_failures = 2;
        c.edge.header_timeout = Duration::from_millis(300);
    });
    let mut spec = Spec::load(&app);
    let form = |method: &str, path: &str, fields: &[(&str, &str)]| {
        app.send(method, path, Format::Form, fields)
    };
    let mut hit = |method: &str, path: &str, reply: Answer| {
        spec.check(method, path, &reply);
        reply
    };
    let creds = [("email", "a@b.io"), ("password", "pw")];

    hit("GET", "/", app.request("GET", "/", None, b"", None));
    hit("POST", "/", app.request("POST", "/", None, b"", None));
    hit(
        "GET",
        "/healthz",
        app.request("GET", "/healthz", None, b"", None),
    );
    hit(
        "GET",
        "/openapi.json",
        app.request("GET", "/openapi.json", None, b"", None),
    );
    let metrics = hit(
        "GET",
        "/metrics",
        app.request("GET", "/metrics", None, b"", None),
    );
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    hit(
        "POST",
        "/metrics",
        app.request("POST", "/metrics", None, b"", None),
    );
    hit(
        "GET",
        "/dev/outbox",
        app.request("GET", "/dev/outbox", None, b"", None),
    );
    hit(
        "GET",
        "/dev/outbox",
        raw(
            &app,
            b"GET /dev/outbox HTTP/1.1\r\nHost: rebound.example\r\nConnection: close\r\n\r\n",
        ),
    );
    hit(
        "POST",
        "/dev/outbox",
        app.request("POST", "/dev/outbox", None, b"", None),
    );

    hit("POST", "/users", form("POST", "/users", &creds));
    // The reference's answer for a taken email, the one 400 a conforming
    // request gets.
    let taken = hit("POST", "/users", form("POST", "/users", &creds));
    assert_eq!(
        (taken.status, taken.message().as_str()),
        (400, "email already registered")
    );
    hit(
        "POST",
        "/users",
        form("POST", "/users", &[("email", "x@b.io")]),
    );
    let (ct, big) = encode(
        Format::Json,
        &[("email", "y@b.io"), ("password", &"p".repeat(2000))],
    );
    hit(
        "POST",
        "/users",
        app.request("POST", "/users", Some(&ct), &big, None),
    );
    hit(
        "POST",
        "/users",
        app.request("POST", "/users", Some("text/plain"), b"x", None),
    );
    hit(
        "GET",
        "/users",
        app.request("GET", "/users", None, b"", None),
    );
    let huge = "x".repeat(20_000);
    hit(
        "GET",
        "/profile",
        app.request("GET", "/profile", None, b"", Some(&huge)),
    );

    hit(
        "POST",
        "/sessions",
        form(
            "POST",
            "/sessions",
            &[("email", "a@b.io"), ("password", "no")],
        ),
    );
    hit(
        "POST",
        "/sessions",
        form("POST", "/sessions", &[("email", "a@b.io")]),
    );
    // Any email string, or none, is a wrong pair like any other.
    for fields in [
        &[("email", "not an email"), ("password", "pw")][..],
        &[("password", "pw")][..],
        &[("email", "e@b.io"), ("password", "")][..],
    ] {
        let reply = hit("POST", "/sessions", form("POST", "/sessions", fields));
        assert_eq!(reply.status, 401, "{fields:?}: {}", reply.text());
    }
    let session = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    hit("GET", "/profile", app.profile(Some(&session)));
    hit("GET", "/profile", app.profile(None));
    // Forward-auth: the session by cookie and by Bearer token, none; HEAD
    // (no body); another method.
    let verify = |headers: &[(&str, String)]| app.request_with("GET", "/auth/verify", headers, b"");
    hit("GET", "/auth/verify", verify(&[app.cookie(&session)]));
    hit(
        "GET",
        "/auth/verify",
        verify(&[("Authorization", format!("Bearer {session}"))]),
    );
    hit("GET", "/auth/verify", verify(&[]));
    let head_verify = |headers: &[(&str, &str)]| {
        let (answer, after) = head(app.running.addr(), "/auth/verify", headers, IO_LIMIT)
            .unwrap_or_else(|e| panic!("HEAD /auth/verify: {e}"));
        assert!(after.is_empty(), "HEAD /auth/verify sent a body");
        answer
    };
    let cookie = app.cookie(&session);
    hit(
        "HEAD",
        "/auth/verify",
        head_verify(&[(cookie.0, &cookie.1)]),
    );
    hit("HEAD", "/auth/verify", head_verify(&[]));
    hit(
        "POST",
        "/auth/verify",
        app.request("POST", "/auth/verify", None, b"", Some(&session)),
    );
    // The session list, and ending sessions by id and by scope.
    let other = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    let list = hit(
        "GET",
        "/sessions",
        app.request("GET", "/sessions", None, b"", Some(&session)),
    );
    hit(
        "GET",
        "/sessions",
        app.request("GET", "/sessions", None, b"", None),
    );
    let other_id = list.json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = |token: Option<&str>, id: &str| {
        app.request("DELETE", &format!("/sessions/{id}"), None, b"", token)
    };
    hit("DELETE", "/sessions/{id}", by_id(Some(&session), &other_id));
    hit("DELETE", "/sessions/{id}", by_id(Some(&session), &other_id));
    hit("DELETE", "/sessions/{id}", by_id(None, &other_id));
    assert_eq!(app.profile(Some(&other)).status, 403);
    let scoped = |scope: &str, token: &str| {
        app.request(
            "DELETE",
            &format!("/sessions?scope={scope}"),
            None,
            b"",
            Some(token),
        )
    };
    hit("DELETE", "/sessions", scoped("sideways", &session));
    hit("DELETE", "/sessions", scoped("others", &session));
    let third = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    hit("DELETE", "/sessions", scoped("global", &third));
    let session = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    let own = app
        .request("GET", "/sessions", None, b"", Some(&session))
        .json()["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    hit("DELETE", "/sessions/{id}", by_id(Some(&session), &own));
    let session = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    hit("DELETE", "/sessions", app.log_out(Some(&session)));
    hit("DELETE", "/sessions", app.log_out(Some(&session)));

    let reply = hit(
        "POST",
        "/reset_password",
        form("POST", "/reset_password", &[("email", "a@b.io")]),
    );
    let token = reply.json()["reset_token"].as_str().unwrap().to_owned();
    hit(
        "POST",
        "/reset_password",
        form("POST", "/reset_password", &[("email", "nobody@b.io")]),
    );
    hit(
        "POST",
        "/reset_password",
        form("POST", "/reset_password", &[]),
    );
    let reply = hit(
        "POST",
        "/reset_password",
        form("POST", "/reset_password", &[("email", "not an email")]),
    );
    assert_eq!(reply.status, 403, "{}", reply.text());
    let update = [
        ("email", "a@b.io"),
        ("reset_token", token.as_str()),
        ("new_password", "new"),
    ];
    hit(
        "PUT",
        "/reset_password",
        form("PUT", "/reset_password", &update),
    );
    hit(
        "PUT",
        "/reset_password",
        form("PUT", "/reset_password", &update),
    );
    hit(
        "PUT",
        "/reset_password",
        form("PUT", "/reset_password", &update[..2]),
    );
    // An empty token or a malformed email can own no token: 403, not 400.
    for (email, token) in [("a@b.io", ""), ("not an email", token.as_str())] {
        let fields = [
            ("email", email),
            ("reset_token", token),
            ("new_password", "new"),
        ];
        let reply = hit(
            "PUT",
            "/reset_password",
            form("PUT", "/reset_password", &fields),
        );
        assert_eq!(reply.status, 403, "{fields:?}: {}", reply.text());
    }
    hit(
        "PATCH",
        "/reset_password",
        app.request("PATCH", "/reset_password", None, b"", None),
    );

    // A signed-in user's own account (its own user: the rest uses a@b.io).
    let acct = [("email", "acct@b.io"), ("password", "pw")];
    hit("POST", "/users", form("POST", "/users", &acct));
    let session = hit("POST", "/sessions", form("POST", "/sessions", &acct)).session();
    let signed = |method: &str, path: &str, fields: &[(&str, &str)], token: Option<&str>| {
        let (content_type, body) = crate::common::encode(Format::Form, fields);
        app.request(method, path, Some(&content_type), &body, token)
    };
    let change = [("password", "pw"), ("new_password", "pw2")];
    let wrong = [("password", "no"), ("new_password", "pw2")];
    hit(
        "PUT",
        "/password",
        signed("PUT", "/password", &wrong, Some(&session)),
    );
    hit(
        "PUT",
        "/password",
        signed("PUT", "/password", &change[..1], Some(&session)),
    );
    hit(
        "PUT",
        "/password",
        signed("PUT", "/password", &change, None),
    );
    hit(
        "PUT",
        "/password",
        signed("PUT", "/password", &change, Some(&session)),
    );
    hit(
        "PATCH",
        "/password",
        app.request("PATCH", "/password", None, b"", None),
    );
    // The second factor of the same account (its password now pw2).
    hit("POST", "/totp", signed("POST", "/totp", &[], None));
    let enrolment = hit(
        "POST",
        "/totp",
        signed("POST", "/totp", &[], Some(&session)),
    );
    let secret = enrolment.json()["secret"].as_str().unwrap().to_owned();
    let step = crate::totp::now_step();
    let first = crate::totp::code(&secret, step);
    hit("PUT", "/totp", signed("PUT", "/totp", &[], Some(&session)));
    hit(
        "PUT",
        "/totp",
        signed("PUT", "/totp", &[("code", "12345")], Some(&session)),
    );
    let enabled = hit(
        "PUT",
        "/totp",
        signed("PUT", "/totp", &[("code", &first)], Some(&session)),
    );
    let recovery = enabled.json()["recovery_codes"][0]
        .as_str()
        .unwrap()
        .to_owned();
    hit(
        "POST",
        "/totp",
        signed("POST", "/totp", &[], Some(&session)),
    );
    let second = [("email", "acct@b.io"), ("password", "pw2")];
    let reply = hit("POST", "/sessions", form("POST", "/sessions", &second));
    assert_eq!(reply.message(), "totp required");
    let next = crate::totp::code(&secret, step + 1);
    let with_code = [("email", "acct@b.io"), ("password", "pw2"), ("totp", &next)];
    hit("POST", "/sessions", form("POST", "/sessions", &with_code));
    let off = |code: &str| [("password", "pw2"), ("code", code)].map(|(k, v)| (k, v.to_owned()));
    for code in ["000000", recovery.as_str(), recovery.as_str()] {
        let fields = off(code);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hit(
            "DELETE",
            "/totp",
            signed("DELETE", "/totp", &fields, Some(&session)),
        );
    }
    hit(
        "PATCH",
        "/totp",
        app.request("PATCH", "/totp", None, b"", None),
    );
    let gone = [("password", "pw2")];
    hit(
        "DELETE",
        "/account",
        signed("DELETE", "/account", &[("password", "pw")], Some(&session)),
    );
    hit(
        "DELETE",
        "/account",
        signed("DELETE", "/account", &[], Some(&session)),
    );
    hit(
        "DELETE",
        "/account",
        signed("DELETE", "/account", &gone, None),
    );
    hit(
        "DELETE",
        "/account",
        signed("DELETE", "/account", &gone, Some(&session)),
    );
    hit(
        "GET",
        "/account",
        app.request("GET", "/account", None, b"", None),
    );

    // Addresses: verification, the account view, an email change.
    let mail = [("email", "mail@b.io"), ("password", "pw")];
    hit("POST", "/users", form("POST", "/users", &mail));
    let session = hit("POST", "/sessions", form("POST", "/sessions", &mail)).session();
    let asked = hit(
        "POST",
        "/verify_email",
        form("POST", "/verify_email", &[("email", "mail@b.io")]),
    );
    let token = asked.json()["verify_token"].as_str().unwrap().to_owned();
    for fields in [&[("email", "nobody@b.io")][..], &[][..]] {
        let reply = hit(
            "POST",
            "/verify_email",
            form("POST", "/verify_email", fields),
        );
        assert_eq!(reply.status, 403, "{fields:?}: {}", reply.text());
    }
    let redeem = [("email", "mail@b.io"), ("verify_token", token.as_str())];
    for fields in [&[("email", "a@b.io"), redeem[1]][..], &redeem[..1], &redeem] {
        hit("PUT", "/verify_email", form("PUT", "/verify_email", fields));
    }
    let again = hit(
        "PUT",
        "/verify_email",
        form("PUT", "/verify_email", &redeem),
    );
    assert_eq!(again.status, 403, "{}", again.text());
    hit(
        "PATCH",
        "/verify_email",
        app.request("PATCH", "/verify_email", None, b"", None),
    );
    let view = hit(
        "GET",
        "/account",
        app.request("GET", "/account", None, b"", Some(&session)),
    );
    assert_eq!(view.json()["email_verified"], true, "{}", view.text());
    let mut moves = |fields: &[(&str, &str)], token: Option<&str>| {
        hit("PUT", "/account", signed("PUT", "/account", fields, token))
    };
    moves(
        &[("password", "no"), ("new_email", "moved@b.io")],
        Some(&session),
    );
    let taken = moves(
        &[("password", "pw"), ("new_email", "A@b.io")],
        Some(&session),
    );
    assert_eq!(taken.message(), "email already registered");
    moves(&[("password", "pw")], Some(&session));
    moves(&[("password", "pw"), ("new_email", "moved@b.io")], None);
    let moved = moves(
        &[("password", "pw"), ("new_email", "moved@b.io")],
        Some(&session),
    );
    let token = moved.json()["verify_token"].as_str().unwrap().to_owned();
    let done = hit(
        "PUT",
        "/verify_email",
        form(
            "PUT",
            "/verify_email",
            &[("email", "moved@b.io"), ("verify_token", token.as_str())],
        ),
    );
    assert_eq!(done.json()["email"], "moved@b.io", "{}", done.text());

    // What the HTTP edge answers on its own, on any route.
    hit(
        "GET",
        "/profile",
        raw(&app, b"GET /profile HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
    );
    hit(
        "GET",
        "/",
        raw(&app, b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
    );
    hit(
        "GET",
        "/healthz",
        raw(&app, b"GET /healthz HTTP/2.0\r\n\r\n"),
    );
    hit(
        "GET",
        "/openapi.json",
        raw(
            &app,
            b"GET /openapi.json HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
        ),
    );
    // A head that never ends: 408 after --header-timeout.
    hit("GET", "/", raw(&app, b"GET / HTTP/1.1\r\nHost: x\r\n"));

    // The same operations for a page of an allowed origin (the dev
    // profile allows local pages): the CORS headers each answer adds are
    // documented for it.
    let page = |method: &str, path: &str, fields: &[(&str, &str)], session: Option<&str>| {
        let (content_type, body) = encode(Format::Form, fields);
        let mut headers = vec![("Content-Type", content_type), ("Origin", PAGE.to_owned())];
        headers.extend(session.map(|token| app.cookie(token)));
        app.request_with(method, path, &headers, &body)
    };
    let mut cors = |method: &str, path: &str, reply: Answer| {
        assert_eq!(
            reply.header("Access-Control-Allow-Origin"),
            Some(PAGE),
            "{method} {path}: {reply:?}"
        );
        hit(method, path, reply)
    };
    cors("GET", "/", page("GET", "/", &[], None));
    cors("POST", "/", page("POST", "/", &[], None));
    cors("GET", "/healthz", page("GET", "/healthz", &[], None));
    cors(
        "GET",
        "/openapi.json",
        page("GET", "/openapi.json", &[], None),
    );
    // (a@b.io's password was reset above: a page's own account.)
    let creds = [("email", "c@b.io"), ("password", "pw")];
    cors("POST", "/users", page("POST", "/users", &creds, None));
    cors("POST", "/users", page("POST", "/users", &creds, None));
    let bad = [("email", "c@b.io"), ("password", "no")];
    cors("POST", "/sessions", page("POST", "/sessions", &bad, None));
    let session = cors("POST", "/sessions", page("POST", "/sessions", &creds, None)).session();
    cors(
        "GET",
        "/profile",
        page("GET", "/profile", &[], Some(&session)),
    );
    cors(
        "GET",
        "/sessions",
        page("GET", "/sessions", &[], Some(&session)),
    );
    cors(
        "DELETE",
        "/sessions/{id}",
        page("DELETE", "/sessions/0123456789abcdef", &[], Some(&session)),
    );
    cors(
        "DELETE",
        "/sessions",
        page("DELETE", "/sessions", &[], Some(&session)),
    );
    cors(
        "GET",
        "/profile",
        page("GET", "/profile", &[], Some(&session)),
    );
    let reply = page("POST", "/reset_password", &[("email", "c@b.io")], None);
    let token = cors("POST", "/reset_password", reply).json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = [
        ("email", "c@b.io"),
        ("reset_token", token.as_str()),
        ("new_password", "new"),
    ];
    cors(
        "PUT",
        "/reset_password",
        page("PUT", "/reset_password", &update, None),
    );
    cors(
        "PATCH",
        "/reset_password",
        page("PATCH", "/reset_password", &[], None),
    );
    let (ct, big) = encode(
        Format::Json,
        &[("email", "y@b.io"), ("password", &"p".repeat(2000))],
    );
    let big = app.request_with(
        "POST",
        "/users",
        &[("Content-Type", ct), ("Origin", PAGE.to_owned())],
        &big,
    );
    assert_eq!(big.status, 413, "{big:?}");
    hit("POST", "/users", big);

    // Throttled answers, last so they do not disturb the rest. A loopback
    // client of the dev profile is spared the request-rate limits unless a
    // forwarding header says it is relayed.
    let relayed = |method: &str, path: &str, fields: &[(&str, &str)]| {
        let (content_type, body) = encode(Format::Form, fields);
        let headers = [
            ("Content-Type", content_type),
            ("X-Forwarded-For", "198.51.100.7".to_owned()),
        ];
        app.request_with(method, path, &headers, &body)
    };
    for _ in 0..4 {
        hit(
            "POST",
            "/sessions",
            form(
                "POST",
                "/sessions",
                &[("email", "t@b.io"), ("password", "no")],
            ),
        );
    }
    for i in 0..6 {
        let email = format!("n{i}@b.io");
        hit(
            "POST",
            "/users",
            relayed("POST", "/users", &[("email", &email), ("password", "pw")]),
        );
    }
    for _ in 0..5 {
        hit(
            "POST",
            "/reset_password",
            relayed("POST", "/reset_password", &[("email", "a@b.io")]),
        );
    }
    // A throttled page may read how long to wait.
    let (content_type, body) = encode(Format::Form, &[("email", "t@b.io"), ("password", "no")]);
    let headers = [("Content-Type", content_type), ("Origin", PAGE.to_owned())];
    let reply = hit(
        "POST",
        "/sessions",
        app.request_with("POST", "/sessions", &headers, &body),
    );
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(PAGE));
    assert_eq!(
        reply.header("Access-Control-Expose-Headers"),
        Some("Retry-After")
    );

    // Every documented operation was exercised, and the statuses that
    // matter most were seen.
    let doc = spec.doc.clone();
    let taken = doc["paths"]["/users"]["post"]["responses"]["400"]["description"]
        .as_str()
        .unwrap();
    assert!(taken.contains("email already registered") && taken.contains("reference"));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // (405s are recorded under the undocumented method.)
            let method = method.to_uppercase();
            assert!(
                spec.covered
                    .iter()
                    .any(|(p, m, _)| p == path && *m == method),
                "{method} {path} never exercised"
            );
        }
    }
    for (path, method, status) in [
        ("/users", "POST", 200),
        ("/users", "POST", 400),
        ("/users", "POST", 413),
        ("/users", "POST", 415),
        ("/users", "POST", 429),
        ("/sessions", "POST", 200),
        ("/sessions", "POST", 401),
        ("/sessions", "POST", 429),
        ("/sessions", "DELETE", 302),
        ("/sessions", "DELETE", 403),
        ("/sessions", "DELETE", 204),
        ("/sessions", "DELETE", 400),
        ("/sessions", "GET", 200),
        ("/sessions", "GET", 403),
        ("/sessions/{id}", "DELETE", 204),
        ("/sessions/{id}", "DELETE", 404),
        ("/sessions/{id}", "DELETE", 403),
        ("/profile", "GET", 200),
        ("/profile", "GET", 403),
        ("/auth/verify", "GET", 200),
        ("/auth/verify", "GET", 401),
        ("/auth/verify", "HEAD", 200),
        ("/auth/verify", "HEAD", 401),
        ("/auth/verify", "POST", 405),
        ("/password", "PUT", 200),
        ("/password", "PUT", 400),
        ("/password", "PUT", 401),
        ("/password", "PUT", 403),
        ("/totp", "POST", 200),
        ("/totp", "POST", 403),
        ("/totp", "PUT", 200),
        ("/totp", "PUT", 400),
        ("/totp", "PUT", 403),
        ("/totp", "DELETE", 200),
        ("/totp", "DELETE", 401),
        ("/totp", "DELETE", 403),
        ("/account", "DELETE", 200),
        ("/account", "DELETE", 400),
        ("/account", "DELETE", 401),
        ("/account", "DELETE", 403),
        ("/profile", "GET", 431),
        ("/reset_password", "POST", 200),
        ("/reset_password", "POST", 403),
        ("/reset_password", "POST", 429),
        ("/reset_password", "PUT", 200),
        ("/reset_password", "PUT", 403),
        ("/reset_password", "PUT", 400),
        ("/reset_password", "PATCH", 405),
        ("/", "POST", 405),
        ("/", "GET", 408),
        ("/", "GET", 501),
        ("/profile", "GET", 400),
        ("/healthz", "GET", 505),
        ("/openapi.json", "GET", 413),
        ("/metrics", "GET", 200),
        ("/metrics", "POST", 405),
    ] {
        assert!(
            spec.covered
                .contains(&(path.to_owned(), method.to_owned(), status)),
            "{method} {path} {status} not seen"
        );
    }
}

fn healthz_reports_the_version() {
    let app = TestApp::spawn();
    let reply = app.request("GET", "/healthz", None, b"", None);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

fn the_document_matches_the_production_profile_too() {
    let app = TestApp::spawn_with(|c| {
        c.profile = authd::config::Profile::Production;
        c.delivery = Some(authd::delivery::Channel::Log);
        c.password_policy = authd::policy::PasswordPolicy::PRODUCTION;
        c.bcrypt_cost = 10;
        c.audit_log = false;
        c.allowed_origins = vec![LISTED.to_owned()];
    });
    let mut spec = Spec::load(&app);
    // No --metrics-public: not served here, as the document says.
    let metrics = app.request("GET", "/metrics", None, b"", None);
    assert_eq!(metrics.status, 404, "{metrics:?}");
    spec.check("GET", "/metrics", &metrics);
    let strong = [
        ("email", "a@b.io"),
        ("password", "correct horse battery staple"),
    ];
    spec.check(
        "POST",
        "/users",
        &app.send("POST", "/users", Format::Form, &strong),
    );
    let weak = [("email", "b@b.io"), ("password", "password1")];
    spec.check(
        "POST",
        "/users",
        &app.send("POST", "/users", Format::Form, &weak),
    );
    for email in ["a@b.io", "nobody@b.io"] {
        let reply = app.send("POST", "/reset_password", Format::Form, &[("email", email)]);
        spec.check("POST", "/reset_password", &reply);
    }
    let reply = app.send("POST", "/sessions", Format::Form, &strong);
    spec.check("POST", "/sessions", &reply);
    let forged = [
        app.cookie(&app.session_of(&reply)),
        ("Origin", "https://evil.example".to_owned()),
    ];
    let reply = app.request_with("DELETE", "/sessions", &forged, b"");
    assert_eq!(reply.status, 403);
    spec.check("DELETE", "/sessions", &reply);
    // Every state-changing route refuses a cross-site request first, with
    // the documented 403.
    let cross_site = [
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("Origin", "https://evil.example".to_owned()),
    ];
    for (method, path, body) in [
        (
            "POST",
            "/users",
            "email=c%40b.io&password=correct+horse+battery+staple",
        ),
        (
            "POST",
            "/sessions",
            "email=a%40b.io&password=correct+horse+battery+staple",
        ),
        ("POST", "/reset_password", "email=a%40b.io"),
        (
            "PUT",
            "/reset_password",
            "email=a%40b.io&reset_token=x&new_password=y",
        ),
    ] {
        let reply = app.request_with(method, path, &cross_site, body.as_bytes());
        assert_eq!(reply.status, 403, "{method} {path}: {reply:?}");
        assert_eq!(reply.message(), "cross-site request refused");
        assert_eq!(reply.header("Access-Control-Allow-Origin"), None);
        spec.check(method, path, &reply);
    }
    // A listed origin's page makes the writes, and reads the answers; a
    // local page is nothing special in production.
    let listed = |method: &str, path: &str, body: &str, origin: &str, session: Option<&str>| {
        let mut headers = vec![
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Origin", origin.to_owned()),
        ];
        headers.extend(session.map(|token| app.cookie(token)));
        app.request_with(method, path, &headers, body.as_bytes())
    };
    let login = "email=a%40b.io&password=correct+horse+battery+staple";
    let reply = listed("POST", "/sessions", login, LISTED, None);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(LISTED));
    spec.check("POST", "/sessions", &reply);
    let session = app.session_of(&reply);
    let reply = listed(
        "GET",
        "/profile",
        "",
        "http://localhost:3000",
        Some(&session),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Access-Control-Allow-Origin"), None);
    spec.check("GET", "/profile", &reply);
    // Forward-auth under the production cookie's name, read by a listed
    // origin's page.
    let verify = |headers: &[(&str, String)]| {
        let mut all = vec![("Origin", LISTED.to_owned())];
        all.extend_from_slice(headers);
        app.request_with("GET", "/auth/verify", &all, b"")
    };
    let reply = verify(&[app.cookie(&session)]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(LISTED));
    spec.check("GET", "/auth/verify", &reply);
    let reply = verify(&[("Cookie", format!("session_id={session}"))]);
    assert_eq!(reply.status, 401, "{reply:?}");
    spec.check("GET", "/auth/verify", &reply);
    let reply = listed("DELETE", "/sessions", "", LISTED, Some(&session));
    assert_eq!(reply.status, 302, "{reply:?}");
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some(LISTED));
    spec.check("DELETE", "/sessions", &reply);
}

/// The origin the production variant lists in --allowed-origins.
const LISTED: &str = "https://app.example.com";

/// A validator for `#/components/schemas/NAME` of the served document.
fn schema(name: &str) -> jsonschema::Validator {
    let doc: Value = serde_json::from_str(authd::http::routes::meta::OPENAPI).unwrap();
    let mut wrapped = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    wrapped["components"] = doc["components"].clone();
    jsonschema::draft202012::new(&wrapped).expect("a valid schema")
}

static EMAIL: LazyLock<jsonschema::Validator> = LazyLock::new(|| schema("RegistrationEmail"));
static PASSWORD: LazyLock<jsonschema::Validator> = LazyLock::new(|| schema("NewPassword"));

/// The pattern of `#/components/schemas/NAME`, without its anchors (for
/// proptest's generator, which has none).
fn unanchored_pattern(name: &str) -> String {
    let doc: Value = serde_json::from_str(authd::http::routes::meta::OPENAPI).unwrap();
    let pattern = doc["components"]["schemas"][name]["pattern"]
        .as_str()
        .unwrap();
    pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap()
        .to_owned()
}

/// Emails near the edges of the rules: printable and not, with and without
/// '@' and dots, short and long, ASCII and not.
fn email_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "[!-~]{1,70}@[!-~]{0,20}",
        "[a-z.]{0,66}@[a-z.]{0,12}",
        "[\\x00-\\x7f]{1,6}@[\\x00-\\x7f]{1,6}",
        "[a-z]{1,64}@[a-z]{1,63}(\\.[a-z]{1,63}){1,3}",
        "[a-zé]{1,64}@[a-zé.]{1,20}",
        "\\PC{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The registration email's schema is never looser than the server:
    /// every address its pattern generates (within maxLength) is accepted.
    #[test]
    fn every_email_the_schema_admits_is_accepted(
        email in proptest::string::string_regex(&unanchored_pattern("RegistrationEmail")).unwrap()
    ) {
        let valid = EMAIL.is_valid(&Value::from(email.as_str()));
        prop_assert_eq!(valid, email.len() <= 254, "{:?}", email);
        if valid {
            prop_assert!(Email::parse(&email).is_ok(), "{:?}", email);
        }
    }

    /// ...and on ASCII it is exact: an address without surrounding
    /// whitespace is accepted if and only if the schema admits it. (The
    /// server also trims whitespace and takes non-ASCII addresses; the
    /// schema, stricter, admits neither.)
    #[test]
    fn the_email_schema_is_the_server_rule_on_ascii(email in email_like()) {
        let valid = EMAIL.is_valid(&Value::from(email.as_str()));
        let accepted = Email::parse(&email).is_ok();
        if valid {
            prop_assert!(accepted, "{:?} admitted but refused", email);
        }
        if email.is_ascii() && email.trim() == email {
            prop_assert_eq!(valid, accepted, "{:?}", email);
        }
    }

    /// The new password's schema is never looser than the server (72 bytes,
    /// counted in characters), and exact on ASCII.
    #[test]
    fn the_password_schema_is_the_server_rule(
        password in prop_oneof!["[\\x00-\\x7f]{0,80}", "[\\x00-\\x{7ff}]{0,40}", "\\PC{0,30}", ".{0,80}"]
    ) {
        let valid = PASSWORD.is_valid(&Value::from(password.as_str()));
        let accepted = Password::parse(&password).is_ok();
        if valid {
            prop_assert!(accepted, "{:?} admitted but refused", password);
        }
        if password.is_ascii() {
            prop_assert_eq!(valid, accepted, "{:?}", password);
        }
    }
}

#[test]
fn the_schemas_know_the_edge_cases() {
    let email = schema("RegistrationEmail");
    for (address, valid) in [
        ("a@b", true),
        ("bob@example.com", true),
        (".a.@b-c.d", true),
        ("a@b.", false),
        ("a@.b", false),
        ("a@b..c", false),
        ("a b@c", false),
        ("@b", false),
        ("a@", false),
        ("a@b@c", false),
        (" a@b", false),
        ("a@b\u{7f}", false),
    ] {
        assert_eq!(email.is_valid(&Value::from(address)), valid, "{address:?}");
    }
    let local = "x".repeat(64);
    assert!(email.is_valid(&Value::from(format!("{local}@b"))));
    assert!(!email.is_valid(&Value::from(format!("x{local}@b"))));
    let password = schema("NewPassword");
    for (secret, valid) in [
        (String::new(), false),
        ("x".repeat(72), true),
        ("x".repeat(73), false),
        ("é".repeat(36), true),
        ("€".repeat(18), true),
        ("€".repeat(19), false),
        ("a\0b".to_owned(), false),
    ] {
        assert_eq!(
            password.is_valid(&Value::from(secret.as_str())),
            valid,
            "{secret:?}"
        );
    }
}

crate::on_every_store!(
    the_document_matches_the_live_server,
    healthz_reports_the_version,
    the_document_matches_the_production_profile_too,
);
