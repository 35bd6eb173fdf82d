//! Bearer tokens: `POST /sessions` with `token` hands the session token
//! over, and `Authorization: Bearer TOKEN` works wherever the session cookie
//! does; when present it alone counts, and only it skips the production
//! cross-site check.

use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

use crate::common::{Format, TestApp, FORMATS};

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Logs in asking for the token; returns it (and checks the cookie is the
/// same session).
fn token_login(app: &TestApp, format: Format, email: &str, password: &str) -> String {
    let (content_type, body) = crate::common::encode(
        format,
        &[("email", email), ("password", password), ("token", "true")],
    );
    let answer = app.request("POST", "/sessions", Some(&content_type), &body, None);
    assert_eq!(answer.status, 200, "{answer:?}");
    let token = answer.json()["session_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.session_of(&answer),
        token,
        "the cookie carries the same session"
    );
    token
}

fn bearer_tokens_work_wherever_the_cookie_does() {
    let app = TestApp::spawn();
    assert_eq!(app.register("bob@example.com", "pw-bob-1").status, 200);
    // Without `token`, the reference's bytes exactly.
    let plain = app.log_in("bob@example.com", "pw-bob-1");
    assert_eq!(
        plain.text(),
        "{\"email\":\"bob@example.com\",\"message\":\"logged in\"}\n"
    );
    for format in FORMATS {
        let token = token_login(&app, format, "bob@example.com", "pw-bob-1");
        let me = app.request_with("GET", "/profile", &[bearer(&token)], b"");
        assert_eq!(me.text(), "{\"email\":\"bob@example.com\"}\n", "{format:?}");
    }
    // JSON `true`, and `1` in a form, ask too; anything else does not.
    let json = app.request(
        "POST",
        "/sessions",
        Some("application/json"),
        br#"{"email": "bob@example.com", "password": "pw-bob-1", "token": true}"#,
        None,
    );
    assert!(json.json()["session_token"].is_string(), "{json:?}");
    let off = app.send(
        "POST",
        "/sessions",
        Format::Form,
        &[
            ("email", "bob@example.com"),
            ("password", "pw-bob-1"),
            ("token", "no"),
        ],
    );
    assert!(off.json().get("session_token").is_none(), "{off:?}");
    let bad = app.request(
        "POST",
        "/sessions",
        Some("application/json"),
        br#"{"email": "bob@example.com", "password": "pw-bob-1", "token": 7}"#,
        None,
    );
    assert_eq!(bad.status, 400, "{bad:?}");

    // The session list, ending one session, logging out: all by Bearer.
    let token = token_login(&app, Format::Form, "bob@example.com", "pw-bob-1");
    let other = token_login(&app, Format::Form, "bob@example.com", "pw-bob-1");
    let list = app.request_with("GET", "/sessions", &[bearer(&token)], b"");
    assert_eq!(list.status, 200);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let other_id = app
        .request_with("GET", "/sessions", &[bearer(&other)], b"")
        .json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = app.request_with(
        "DELETE",
        &format!("/sessions/{other_id}"),
        &[bearer(&token)],
        b"",
    );
    assert_eq!(ended.status, 204, "{ended:?}");
    assert_eq!(
        app.request_with("GET", "/profile", &[bearer(&other)], b"")
            .status,
        403
    );
    let out = app.request_with("DELETE", "/sessions", &[bearer(&token)], b"");
    assert_eq!(out.status, 302, "{out:?}");
    assert_eq!(
        app.request_with("GET", "/profile", &[bearer(&token)], b"")
            .status,
        403
    );
}

fn a_bearer_header_alone_counts() {
    let app = TestApp::spawn();
    assert_eq!(app.register("ann@example.com", "pw-ann-1").status, 200);
    let cookie_token = app.session_of(&app.log_in("ann@example.com", "pw-ann-1"));
    let cookie = app.cookie(&cookie_token);
    // A bad or unknown Bearer token is 403 even with a good cookie.
    let unknown = "A".repeat(43);
    for value in [
        "Bearer nope".to_owned(),
        format!("Bearer {unknown}"),
        "Bearer".to_owned(),
    ] {
        let answer = app.request_with(
            "GET",
            "/profile",
            &[cookie.clone(), ("Authorization", value.clone())],
            b"",
        );
        assert_eq!(answer.status, 403, "{value}: {answer:?}");
        assert_eq!(answer.message(), "no valid session");
    }
    // Another scheme is not authd's: the cookie counts.
    let basic = app.request_with(
        "GET",
        "/profile",
        &[cookie, ("Authorization", "Basic YW5uOnB3".to_owned())],
        b"",
    );
    assert_eq!(basic.status, 200, "{basic:?}");
    // A logout by a bad Bearer token ends nothing.
    let refused = app.request_with(
        "DELETE",
        "/sessions",
        &[
            app.cookie(&cookie_token),
            ("Authorization", "Bearer nope".to_owned()),
        ],
        b"",
    );
    assert_eq!(refused.status, 403);
    assert_eq!(app.profile(Some(&cookie_token)).status, 200);
}

fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.delivery = Some(Channel::Log);
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
}

/// Only a Bearer request skips the production cross-site check.
fn only_bearer_requests_skip_the_cross_site_check() {
    let app = TestApp::spawn_with(production);
    let password = "a long and unusual passphrase 7";
    assert_eq!(app.register("cat@example.com", password).status, 200);
    let token = token_login(&app, Format::Json, "cat@example.com", password);
    let elsewhere = [
        ("Origin", "https://evil.example".to_owned()),
        ("Sec-Fetch-Site", "cross-site".to_owned()),
    ];
    let mut by_cookie = elsewhere.to_vec();
    by_cookie.push(app.cookie(&token));
    let refused = app.request_with("DELETE", "/sessions?scope=others", &by_cookie, b"");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.message(), "cross-site request refused");
    let mut by_bearer = elsewhere.to_vec();
    by_bearer.push(bearer(&token));
    let done = app.request_with("DELETE", "/sessions?scope=others", &by_bearer, b"");
    assert_eq!(done.status, 204, "{done:?}");
    // The production cookie name, and the Bearer token, are one session.
    assert_eq!(
        app.request_with("GET", "/profile", &[bearer(&token)], b"")
            .status,
        200
    );
}

crate::on_every_store!(
    bearer_tokens_work_wherever_the_cookie_does,
    a_bearer_header_alone_counts,
    only_bearer_requests_skip_the_cross_site_check,
);
