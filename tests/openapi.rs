//! `/openapi.json` is a valid OpenAPI 3.1 document, and it tells the truth:
//! every answer the live server gives in the scenarios below is documented
//! for its route, method and status, with its body valid against the
//! documented schema and the documented headers present.

mod common;

use std::collections::BTreeSet;

use common::{encode, Format, Reply, TestApp};
use serde_json::Value;

struct Spec {
    doc: Value,
    covered: BTreeSet<(String, String, u16)>,
}

impl Spec {
    fn load(app: &TestApp) -> Spec {
        let reply = app.request("GET", "/openapi.json", None, b"", None);
        assert_eq!(reply.status, 200);
        assert!(reply
            .header("Content-Type")
            .unwrap()
            .starts_with("application/json"));
        oas3::from_json(&reply.body).expect("a valid OpenAPI 3.1 document");
        let doc: Value = serde_json::from_str(&reply.body).unwrap();
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
    fn check(&mut self, method: &str, path: &str, reply: &Reply) {
        let item = &self.doc["paths"][path];
        assert!(item.is_object(), "{path} is not documented");
        let op = &item[method.to_lowercase()];
        if !op.is_object() {
            // An undocumented method: 405, naming exactly the documented ones.
            assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
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
                    reply.status, reply.body
                )
            });
        let response = self.resolve(documented).clone();
        self.check_body(method, path, reply, &response);
        self.covered
            .insert((path.to_owned(), method.to_owned(), reply.status));
    }

    /// The documented headers are present and the body matches the schema.
    fn check_body(&self, method: &str, path: &str, reply: &Reply, response: &Value) {
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                assert!(
                    reply.header(name).is_some(),
                    "{method} {path} {}: documented header {name} missing",
                    reply.status
                );
            }
        }
        if let Some(schema) = response.pointer("/content/application~1json/schema") {
            assert!(reply
                .header("Content-Type")
                .unwrap()
                .starts_with("application/json"));
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            let mut wrapped = schema.clone();
            // Let local references resolve inside the wrapped schema.
            wrapped["components"] = self.doc["components"].clone();
            let validator = jsonschema::draft202012::new(&wrapped).expect("a valid schema");
            if let Err(error) = validator.validate(&body) {
                panic!(
                    "{method} {path} {}: {} does not match: {error}",
                    reply.status, reply.body
                );
            }
        }
    }
}

fn the_document_matches_the_live_server() {
    let app = TestApp::spawn_with(|c| {
        c.max_body_bytes = 1024;
        c.limits.request_free = 4;
        c.limits.login_free_failures = 2;
    });
    let mut spec = Spec::load(&app);
    let form = |method: &str, path: &str, fields: &[(&str, &str)]| {
        app.send(method, path, Format::Form, fields)
    };
    let mut hit = |method: &str, path: &str, reply: Reply| {
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

    hit("POST", "/users", form("POST", "/users", &creds));
    hit("POST", "/users", form("POST", "/users", &creds));
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
    let session = hit("POST", "/sessions", form("POST", "/sessions", &creds)).session();
    hit("GET", "/profile", app.profile(Some(&session)));
    hit("GET", "/profile", app.profile(None));
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
    hit(
        "PATCH",
        "/reset_password",
        app.request("PATCH", "/reset_password", None, b"", None),
    );

    // Throttled answers, last so they do not disturb the rest.
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
            form("POST", "/users", &[("email", &email), ("password", "pw")]),
        );
    }
    for _ in 0..5 {
        hit(
            "POST",
            "/reset_password",
            form("POST", "/reset_password", &[("email", "a@b.io")]),
        );
    }

    // Every documented operation was exercised, and the statuses that
    // matter most were seen.
    let doc = spec.doc.clone();
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
        ("/profile", "GET", 200),
        ("/profile", "GET", 403),
        ("/profile", "GET", 431),
        ("/reset_password", "POST", 200),
        ("/reset_password", "POST", 403),
        ("/reset_password", "POST", 429),
        ("/reset_password", "PUT", 200),
        ("/reset_password", "PUT", 403),
        ("/reset_password", "PATCH", 405),
        ("/", "POST", 405),
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
        c.reset_delivery = Some(authd::delivery::Channel::Log);
        c.password_policy = authd::policy::PasswordPolicy::PRODUCTION;
        c.bcrypt_cost = 10;
        c.audit_log = false;
    });
    let mut spec = Spec::load(&app);
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
    let cookie = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .unwrap();
    let forged = [
        ("Cookie", cookie),
        ("Origin", "https://evil.example".to_owned()),
    ];
    let reply = app.request_with("DELETE", "/sessions", &forged, b"");
    assert_eq!(reply.status, 403);
    spec.check("DELETE", "/sessions", &reply);
}

crate::on_every_store!(
    the_document_matches_the_live_server,
    healthz_reports_the_version,
    the_document_matches_the_production_profile_too,
);
