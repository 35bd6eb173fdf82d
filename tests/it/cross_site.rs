//! One cross-site rule for every state-changing route, against the real
//! server. In the production profile, `POST /users`, `POST /sessions`,
//! `POST /reset_password`, `PUT /reset_password`, `DELETE /sessions` (every
//! scope) and `DELETE /sessions/<id>` refuse a browser request made on
//! behalf of another site (an `Origin` that is neither authd's own nor
//! listed; without `Origin`, `Sec-Fetch-Site: cross-site`) with 403 before
//! they do anything, and answer as usual a same-origin request (the origin
//! of `Host`, or `--public-url`'s), one from a listed origin, and one
//! without `Origin` (curl). The dev profile answers every one of them the
//! reference's way.
//!
//! Regressions of issue #16 (point 7): a same-origin logout (`Origin` the
//! server's own, `Sec-Fetch-Site: same-origin`) was refused with 403 in
//! production when authd was reached over plain HTTP (its own origin was
//! taken to be `https://` and `Host` only); a logout from a listed origin
//! passes however the operator spells the origin; and a value of
//! `--allowed-origins` without a scheme, once accepted silently and never
//! matched, stops the start with an error naming it.

use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

use crate::common::process::{run, Proc};
use crate::common::raw::{exchange, request, Answer, IO_LIMIT};
use crate::common::{encode, Format, TestApp};

const STRONG: &str = "correct horse battery staple";
const REFUSED: &str = "cross-site request refused";
/// The origin of the `Host` the test client sends (`localhost`) in the
/// production profile, which runs behind TLS.
const OWN: &str = "https://localhost";
const LISTED: &str = "https://app.example.com";
const PUBLIC: &str = "https://auth.example.com";

/// Extra request headers: what a browser would add.
type Headers<'a> = &'a [(&'static str, &'static str)];

fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.delivery = Some(Channel::Log);
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
    c.allowed_origins = vec![LISTED.to_owned()];
    // Every variant registers and asks for resets from one address.
    c.limits.request_free = 1000;
}

/// `method path` with the form `fields`, the session cookie `session` and
/// the `extra` headers.
fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    session: Option<&str>,
    extra: Headers<'_>,
) -> Answer {
    let (content_type, body) = encode(Format::Form, fields);
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(token) = session {
        headers.push(app.cookie(token));
    }
    headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    app.request_with(method, path, &headers, &body)
}

/// A fresh session of `email`, from a plain (curl-like) login.
fn session(app: &TestApp, email: &str) -> String {
    let reply = app.log_in(email, STRONG);
    assert_eq!(reply.status, 200, "{reply:?}");
    app.session_of(&reply)
}

/// Asserts `reply` is the cross-site refusal, and sets no cookie.
fn assert_refused(reply: &Answer, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {reply:?}");
    assert_eq!(reply.message(), REFUSED, "{what}");
    assert!(reply.all("Set-Cookie").is_empty(), "{what}: {reply:?}");
}

/// Asserts `reply` has `status` and is not the cross-site refusal.
fn assert_answered(reply: &Answer, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {reply:?}");
    let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|body| body["message"].as_str().map(str::to_owned));
    assert_ne!(message.as_deref(), Some(REFUSED), "{what}");
}

/// Sends every state-changing route with the `extra` headers and asserts
/// they are all refused: nothing registered, no login, no reset asked for,
/// no session ended.
fn all_refused(app: &TestApp, extra: Headers<'_>, tag: &str) {
    let email = format!("{tag}@example.com");
    let users = app.user_count();
    let what = |route: &str| format!("{route} with {extra:?}");
    let fields = [("email", email.as_str()), ("password", STRONG)];
    assert_refused(
        &call(app, "POST", "/users", &fields, None, extra),
        &what("POST /users"),
    );
    assert_eq!(app.user_count(), users, "{}", what("POST /users"));
    // Refused before the body is read: a malformed one makes no 400.
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let garbage = app.request_with("POST", "/users", &headers, b"{not json");
    assert_refused(&garbage, &what("POST /users (bad JSON)"));

    // The account exists (registered by a curl-like client) for the rest.
    assert_eq!(app.register(&email, STRONG).status, 200);
    assert_refused(
        &call(app, "POST", "/sessions", &fields, None, extra),
        &what("POST /sessions"),
    );
    let reset = [("email", email.as_str())];
    assert_refused(
        &call(app, "POST", "/reset_password", &reset, None, extra),
        &what("POST /reset_password"),
    );
    let update = [
        ("email", email.as_str()),
        ("reset_token", "not-a-token"),
        ("new_password", "another strong passphrase"),
    ];
    assert_refused(
        &call(app, "PUT", "/reset_password", &update, None, extra),
        &what("PUT /reset_password"),
    );

    let token = session(app, &email);
    let other = session(app, &email);
    for path in [
        "/sessions",
        "/sessions?scope=others",
        "/sessions?scope=global",
        "/sessions/0123456789abcdef",
    ] {
        let reply = call(app, "DELETE", path, &[], Some(&token), extra);
        assert_refused(&reply, &what(&format!("DELETE {path}")));
    }
    // Both sessions outlived the forged requests.
    assert_eq!(app.profile(Some(&token)).status, 200, "{tag}");
    assert_eq!(app.profile(Some(&other)).status, 200, "{tag}");
}

/// Sends every state-changing route with the `extra` headers and asserts
/// each gets its usual answer.
fn all_answered(app: &TestApp, extra: Headers<'_>, tag: &str) {
    let email = format!("{tag}@example.com");
    let what = |route: &str| format!("{route} with {extra:?}");
    let fields = [("email", email.as_str()), ("password", STRONG)];
    assert_answered(
        &call(app, "POST", "/users", &fields, None, extra),
        200,
        &what("POST /users"),
    );
    let login = call(app, "POST", "/sessions", &fields, None, extra);
    assert_answered(&login, 200, &what("POST /sessions"));
    let token = app.session_of(&login);
    let reset = [("email", email.as_str())];
    assert_answered(
        &call(app, "POST", "/reset_password", &reset, None, extra),
        200,
        &what("POST /reset_password"),
    );
    let update = [
        ("email", email.as_str()),
        ("reset_token", "not-a-token"),
        ("new_password", "another strong passphrase"),
    ];
    let reply = call(app, "PUT", "/reset_password", &update, None, extra);
    assert_eq!(reply.status, 403, "{}", what("PUT /reset_password"));
    assert_eq!(reply.message(), "invalid reset token");

    let reply = call(
        app,
        "DELETE",
        "/sessions/0123456789abcdef",
        &[],
        Some(&token),
        extra,
    );
    assert_answered(&reply, 404, &what("DELETE /sessions/<id>"));
    let other = session(app, &email);
    let reply = call(
        app,
        "DELETE",
        "/sessions?scope=others",
        &[],
        Some(&token),
        extra,
    );
    assert_answered(&reply, 204, &what("DELETE /sessions?scope=others"));
    assert_eq!(app.profile(Some(&other)).status, 403, "{tag}");
    let reply = call(app, "DELETE", "/sessions", &[], Some(&token), extra);
    assert_answered(&reply, 302, &what("DELETE /sessions"));
    assert_eq!(app.profile(Some(&token)).status, 403, "{tag}");
    let token = session(app, &email);
    let reply = call(
        app,
        "DELETE",
        "/sessions?scope=global",
        &[],
        Some(&token),
        extra,
    );
    assert_answered(&reply, 302, &what("DELETE /sessions?scope=global"));
    assert_eq!(app.profile(Some(&token)).status, 403, "{tag}");
}

fn production_refuses_every_cross_site_write() {
    let app = TestApp::spawn_with(production);
    let forged: [(&str, Headers<'_>); 8] = [
        ("evil", &[("Origin", "https://evil.example")]),
        ("fetch", &[("Sec-Fetch-Site", "cross-site")]),
        (
            "both",
            &[
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
        // A page that claims to be same-origin but names another origin.
        (
            "liar",
            &[
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        ),
        ("opaque", &[("Origin", "null")]),
        // authd's host over plain HTTP is another origin.
        ("scheme", &[("Origin", "http://localhost")]),
        ("port", &[("Origin", "https://localhost:8443")]),
        // Over plain HTTP, only the browser's own word makes http:// and
        // Host authd's origin.
        (
            "plain-same-site",
            &[
                ("Origin", "http://localhost"),
                ("Sec-Fetch-Site", "same-site"),
            ],
        ),
    ];
    for (tag, extra) in forged {
        all_refused(&app, extra, tag);
    }
}

fn production_answers_same_origin_listed_and_non_browser_writes() {
    let app = TestApp::spawn_with(production);
    let fine: [(&str, Headers<'_>); 7] = [
        // curl and server-side clients send neither header.
        ("curl", &[]),
        ("own", &[("Origin", OWN)]),
        (
            "own-fetch",
            &[("Origin", OWN), ("Sec-Fetch-Site", "same-origin")],
        ),
        ("own-port", &[("Origin", "https://LOCALHOST:443")]),
        // A listed origin decides, whatever Sec-Fetch-Site says.
        (
            "listed",
            &[("Origin", LISTED), ("Sec-Fetch-Site", "cross-site")],
        ),
        ("same-site", &[("Sec-Fetch-Site", "same-site")]),
        // authd reached over plain HTTP (no TLS proxy in front): the
        // browser's Origin is http:// and Host, and it says same-origin.
        (
            "own-plain",
            &[
                ("Origin", "http://localhost"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        ),
    ];
    for (tag, extra) in fine {
        all_answered(&app, extra, tag);
    }
}

fn a_public_url_is_the_own_origin() {
    let app = TestApp::spawn_with(|c| {
        production(c);
        c.public_origin = Some(authd::http::csrf::parse_public_url(&format!("{PUBLIC}/")).unwrap());
    });
    all_answered(&app, &[("Origin", PUBLIC)], "public");
    all_answered(&app, &[("Origin", LISTED)], "listed");
    all_answered(&app, &[], "curl");
    // The Host-derived origin is not authd's own once the URL is given,
    // over TLS or not.
    all_refused(&app, &[("Origin", OWN)], "host");
    all_refused(
        &app,
        &[
            ("Origin", "http://localhost"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "host-plain",
    );
}

/// Issue #16: the logouts that were refused, each on its own, with the
/// headers a browser sends: same-origin over TLS and over plain HTTP, and
/// from a listed origin (another site, so `cross-site`).
fn issue_16_same_origin_and_listed_logouts_pass() {
    let app = TestApp::spawn_with(production);
    let email = "logout@example.com";
    assert_eq!(app.register(email, STRONG).status, 200);
    for (tag, extra) in [
        (
            "same-origin over TLS",
            &[("Origin", OWN), ("Sec-Fetch-Site", "same-origin")],
        ),
        (
            "same-origin over plain HTTP",
            &[
                ("Origin", "http://localhost"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        ),
        (
            "listed origin",
            &[("Origin", LISTED), ("Sec-Fetch-Site", "cross-site")],
        ),
    ] {
        let token = session(&app, email);
        let reply = call(&app, "DELETE", "/sessions", &[], Some(&token), extra);
        assert_answered(&reply, 302, tag);
        assert_eq!(app.profile(Some(&token)).status, 403, "{tag}: not ended");
    }
}

/// The same through the real binary, as the issue tried it: production on
/// plain HTTP, the browser's `Host` and `Origin` the address it printed,
/// and `--allowed-origins` (or `AUTHD_ALLOWED_ORIGINS`) in an operator's
/// spelling.
#[test]
fn issue_16_logouts_pass_through_the_binary() {
    for (how, env) in [
        ("flag", None),
        (
            "environment",
            Some("https://other.example, HTTPS://App.Example.com:443/"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let mut args = vec![
            "--profile",
            "production",
            "--reset-delivery",
            "log",
            "--bcrypt-cost",
            "10",
            "--no-access-log",
            "--no-audit-log",
        ];
        let server = match env {
            None => {
                args.extend(["--allowed-origins", "HTTPS://App.Example.com:443/"]);
                Proc::start(&store, &args)
            }
            Some(value) => {
                let mut command = std::process::Command::new(crate::common::process::BIN);
                command
                    .env("AUTHD_ALLOWED_ORIGINS", value)
                    .args(["serve", "--addr", "127.0.0.1:0"])
                    .args(crate::common::stores::store_args(&store))
                    .args(&args);
                Proc::spawn(command, &store.with_extension("stderr"))
            }
        };
        let addr = server.addr();
        let own = format!("http://{addr}");
        let email = format!("{how}@example.com");
        let form = format!(
            "email={}&password={}",
            crate::common::urlencode(&email),
            crate::common::urlencode(STRONG)
        );
        assert_eq!(server.post("/users", &form).0, 200, "{how}");
        for (tag, origin, site) in [
            ("same-origin", own.as_str(), "same-origin"),
            ("listed", LISTED, "cross-site"),
        ] {
            let token = server.log_in(&email, STRONG).expect("a login");
            let cookie = format!("__Host-session_id={token}");
            let host = addr.to_string();
            let headers = [
                ("Host", host.as_str()),
                ("Origin", origin),
                ("Sec-Fetch-Site", site),
                ("Cookie", cookie.as_str()),
                ("Connection", "close"),
            ];
            let reply = exchange(
                addr,
                &request("DELETE", "/sessions", &headers, b""),
                IO_LIMIT,
            )
            .unwrap_or_else(|e| panic!("{how} {tag}: {e}"));
            assert_answered(&reply, 302, &format!("{how}: {tag} logout"));
            assert_eq!(server.profile(&token), 403, "{how} {tag}: not ended");
        }
    }
}

/// Issue #16: `--allowed-origins app.example.com` (no scheme) was accepted
/// and never matched; now authd does not start, and says which value and
/// why.
#[test]
fn an_allowed_origin_without_a_scheme_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, stdout, stderr) = run(&[
        "serve",
        "--profile",
        "production",
        "--reset-delivery",
        "log",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--allowed-origins",
        "app.example.com",
    ]);
    // A usage error (exit 2), before anything starts: no store is made.
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!data.exists(), "a store was made");
    assert!(
        stderr.contains("--allowed-origins")
            && stderr.contains("\"app.example.com\" has no scheme")
            && stderr.contains("https://app.example.com"),
        "{stderr}"
    );
}

fn dev_answers_cross_site_writes_the_reference_way() {
    let app = TestApp::spawn();
    let email = "ann@example.com";
    let cross: Headers<'_> = &[
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let fields = [("email", email), ("password", STRONG)];
    assert_eq!(
        call(&app, "POST", "/users", &fields, None, cross).status,
        200
    );
    let login = call(&app, "POST", "/sessions", &fields, None, cross);
    assert_eq!(login.status, 200, "{login:?}");
    let token = app.session_of(&login);
    let reply = call(
        &app,
        "POST",
        "/reset_password",
        &[("email", email)],
        None,
        cross,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let reset = reply.json()["reset_token"].as_str().unwrap().to_owned();
    let update = [
        ("email", email),
        ("reset_token", reset.as_str()),
        ("new_password", "another strong passphrase"),
    ];
    assert_eq!(
        call(&app, "PUT", "/reset_password", &update, None, cross).status,
        200
    );
    let fields = [("email", email), ("password", "another strong passphrase")];
    let token2 = app.session_of(&call(&app, "POST", "/sessions", &fields, None, cross));
    assert_ne!(token, token2);
    let reply = call(
        &app,
        "DELETE",
        "/sessions/0123456789abcdef",
        &[],
        Some(&token2),
        cross,
    );
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = call(
        &app,
        "DELETE",
        "/sessions?scope=others",
        &[],
        Some(&token2),
        cross,
    );
    assert_eq!(reply.status, 204, "{reply:?}");
    let reply = call(&app, "DELETE", "/sessions", &[], Some(&token2), cross);
    assert_eq!(reply.status, 302, "{reply:?}");
    let token3 = app.session_of(&call(&app, "POST", "/sessions", &fields, None, cross));
    let reply = call(
        &app,
        "DELETE",
        "/sessions?scope=global",
        &[],
        Some(&token3),
        cross,
    );
    assert_eq!(reply.status, 302, "{reply:?}");
}

crate::on_every_store!(
    production_refuses_every_cross_site_write,
    production_answers_same_origin_listed_and_non_browser_writes,
    a_public_url_is_the_own_origin,
    dev_answers_cross_site_writes_the_reference_way,
    issue_16_same_origin_and_listed_logouts_pass,
);
