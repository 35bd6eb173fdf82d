//! An account's address over HTTP: `POST`/`PUT /verify_email`, `GET
//! /account`, `PUT /account` (an email change that applies once the new
//! address answers) and `--require-verified-email`, in the dev profile
//! (tokens in the answers). The production profile's deliveries are in
//! `production.rs`.

use crate::common::raw::Answer;
use crate::common::{Format, TestApp};

fn form(app: &TestApp, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    app.send(method, path, Format::Form, fields)
}

fn account(app: &TestApp, session: &str) -> serde_json::Value {
    let reply = app.request("GET", "/account", None, b"", Some(session));
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

fn verify_token(app: &TestApp, email: &str) -> String {
    let reply = form(app, "POST", "/verify_email", &[("email", email)]);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["verify_token"].as_str().unwrap().to_owned()
}

fn an_address_is_verified_by_its_token_once() {
    let app = TestApp::spawn();
    let session = app.signed_in("Ann@Example.com", "pw-ann-1");
    let before = account(&app, &session);
    assert_eq!(before["email"], "Ann@Example.com");
    assert_eq!(before["email_verified"], false);
    assert_eq!(before["session_count"], 1);
    let created = before["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    // The reference's profile is unchanged.
    assert_eq!(
        app.profile(Some(&session)).text(),
        "{\"email\":\"Ann@Example.com\"}\n"
    );

    let unknown = form(&app, "POST", "/verify_email", &[("email", "nobody@x.io")]);
    assert_eq!(
        (unknown.status, unknown.message()),
        (403, "email not registered".to_owned())
    );
    let older = verify_token(&app, "ann@example.com");
    let token = verify_token(&app, "ann@example.com");
    assert_eq!(app.register("bob@x.io", "pw-bob-1").status, 200);
    for (email, token) in [
        ("ann@example.com", older.as_str()),
        ("bob@x.io", token.as_str()),
        ("ann@example.com", ""),
        ("not an address", token.as_str()),
    ] {
        let reply = form(
            &app,
            "PUT",
            "/verify_email",
            &[("email", email), ("verify_token", token)],
        );
        assert_eq!(
            (reply.status, reply.message()),
            (403, "invalid verify token".to_owned()),
            "{email} {token}"
        );
    }
    let redeem = [
        ("email", "ANN@example.com"),
        ("verify_token", token.as_str()),
    ];
    let done = form(&app, "PUT", "/verify_email", &redeem);
    assert_eq!(
        done.text(),
        "{\"email\":\"Ann@Example.com\",\"message\":\"email verified\"}\n"
    );
    assert_eq!(account(&app, &session)["email_verified"], true);
    assert_eq!(form(&app, "PUT", "/verify_email", &redeem).status, 403);
    assert!(app.store_problems().is_empty());
}

fn an_email_change_applies_when_the_new_address_answers() {
    let app = TestApp::spawn();
    let session = app.signed_in("old@x.io", "pw-old-1");
    assert_eq!(app.register("taken@x.io", "pw-taken-1").status, 200);
    let change = |fields: &[(&str, &str)]| app.send_in(&session, "PUT", "/account", fields);

    let wrong = change(&[("password", "nope"), ("new_email", "new@x.io")]);
    assert_eq!(
        (wrong.status, wrong.message()),
        (401, "wrong password".to_owned())
    );
    for taken in ["Taken@x.io", "old@x.io"] {
        let reply = change(&[("password", "pw-old-1"), ("new_email", taken)]);
        assert_eq!(
            (reply.status, reply.message()),
            (400, "email already registered".to_owned()),
            "{taken}"
        );
    }
    let bad = change(&[("password", "pw-old-1"), ("new_email", "no-at-sign")]);
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.message().starts_with("new_email "), "{bad:?}");
    let missing = change(&[("password", "pw-old-1")]);
    assert_eq!(missing.status, 400, "{missing:?}");
    let anonymous = form(
        &app,
        "PUT",
        "/account",
        &[("password", "pw-old-1"), ("new_email", "new@x.io")],
    );
    assert_eq!(anonymous.status, 403);

    let started = change(&[("password", "pw-old-1"), ("new_email", "New@x.io")]);
    assert_eq!(started.status, 200, "{started:?}");
    let answer = started.json();
    assert_eq!(
        (&answer["email"], &answer["new_email"]),
        (&"old@x.io".into(), &"New@x.io".into())
    );
    let token = answer["verify_token"].as_str().unwrap().to_owned();
    // Nothing has changed yet, and the new address is nobody's.
    assert_eq!(account(&app, &session)["email"], "old@x.io");
    assert_eq!(app.log_in("old@x.io", "pw-old-1").status, 200);
    assert_eq!(app.log_in("new@x.io", "pw-old-1").status, 401);
    // The token answers only for the new address.
    let wrong_address = [("email", "old@x.io"), ("verify_token", token.as_str())];
    assert_eq!(
        form(&app, "PUT", "/verify_email", &wrong_address).status,
        403
    );
    let redeem = [("email", "new@x.io"), ("verify_token", token.as_str())];
    let done = form(&app, "PUT", "/verify_email", &redeem);
    assert_eq!(
        done.text(),
        "{\"email\":\"New@x.io\",\"message\":\"email verified\"}\n"
    );
    let view = account(&app, &session);
    assert_eq!(
        (&view["email"], &view["email_verified"]),
        (&"New@x.io".into(), &true.into())
    );
    assert_eq!(app.log_in("new@x.io", "pw-old-1").status, 200);
    assert_eq!(app.log_in("old@x.io", "pw-old-1").status, 401);
    assert_eq!(form(&app, "PUT", "/verify_email", &redeem).status, 403);
    // The old address is free for a new account.
    assert_eq!(app.register("old@x.io", "pw-other-1").status, 200);
    assert!(app.store_problems().is_empty());
}

fn a_change_to_an_address_taken_meanwhile_is_refused() {
    let app = TestApp::spawn();
    let session = app.signed_in("old@x.io", "pw-old-1");
    let started = app.send_in(
        &session,
        "PUT",
        "/account",
        &[("password", "pw-old-1"), ("new_email", "new@x.io")],
    );
    let token = started.json()["verify_token"].as_str().unwrap().to_owned();
    assert_eq!(app.register("NEW@x.io", "pw-new-1").status, 200);
    let reply = form(
        &app,
        "PUT",
        "/verify_email",
        &[("email", "new@x.io"), ("verify_token", token.as_str())],
    );
    assert_eq!(
        (reply.status, reply.message()),
        (400, "email already registered".to_owned())
    );
    assert_eq!(account(&app, &session)["email"], "old@x.io");
    assert!(app.store_problems().is_empty());
}

fn a_password_change_ends_pending_verifications() {
    let app = TestApp::spawn();
    let session = app.signed_in("ann@x.io", "pw-ann-1");
    let token = verify_token(&app, "ann@x.io");
    let started = app.send_in(
        &session,
        "PUT",
        "/account",
        &[("password", "pw-ann-1"), ("new_email", "new@x.io")],
    );
    let change = started.json()["verify_token"].as_str().unwrap().to_owned();
    let reply = app.send_in(
        &session,
        "PUT",
        "/password",
        &[("password", "pw-ann-1"), ("new_password", "pw-ann-2")],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    for (email, token) in [("ann@x.io", &token), ("new@x.io", &change)] {
        let reply = form(
            &app,
            "PUT",
            "/verify_email",
            &[("email", email), ("verify_token", token)],
        );
        assert_eq!(reply.status, 403, "{email}: {reply:?}");
    }
    assert_eq!(app.token_counts().1, 0);
}

fn logins_can_require_a_verified_address() {
    let app = TestApp::spawn_with(|c| c.require_verified_email = true);
    assert_eq!(app.register("ann@x.io", "pw-ann-1").status, 200);
    assert_eq!(app.register("bob@x.io", "pw-bob-1").status, 200);
    // The wrong password learns nothing; the right one hears why.
    assert_eq!(app.log_in("ann@x.io", "wrong").status, 401);
    let refused = app.log_in("ann@x.io", "pw-ann-1");
    assert_eq!(
        (refused.status, refused.message()),
        (403, "email not verified".to_owned())
    );
    assert!(refused.set_cookie("session_id").is_none());
    let token = verify_token(&app, "ann@x.io");
    let redeem = [("email", "ann@x.io"), ("verify_token", token.as_str())];
    assert_eq!(form(&app, "PUT", "/verify_email", &redeem).status, 200);
    assert_eq!(app.log_in("ann@x.io", "pw-ann-1").status, 200);
    // A reset token came to the address too: redeeming it verifies.
    let reset = app.reset_token("bob@x.io").json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.update_password("bob@x.io", &reset, "pw-bob-2").status,
        200
    );
    assert_eq!(app.log_in("bob@x.io", "pw-bob-2").status, 200);
}

fn only_the_latest_change_applies_and_a_reset_ends_it() {
    let app = TestApp::spawn();
    let session = app.signed_in("ann@x.io", "pw-ann-1");
    let change = |to: &str| {
        let reply = app.send_in(
            &session,
            "PUT",
            "/account",
            &[("password", "pw-ann-1"), ("new_email", to)],
        );
        reply.json()["verify_token"].as_str().unwrap().to_owned()
    };
    // A change to an address of one's own, then to someone else's: the
    // first token applies neither (it is bound to the address it went to,
    // and ended by the newer change).
    let mine = change("mine@x.io");
    let theirs = change("victim@x.io");
    for (email, token) in [("victim@x.io", &mine), ("mine@x.io", &mine)] {
        let reply = form(
            &app,
            "PUT",
            "/verify_email",
            &[("email", email), ("verify_token", token)],
        );
        assert_eq!(reply.status, 403, "{email}: {reply:?}");
    }
    // A reset ends the pending change: its token applies nothing after.
    let reset = app.reset_token("ann@x.io").json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.update_password("ann@x.io", &reset, "pw-ann-2").status,
        200
    );
    let late = form(
        &app,
        "PUT",
        "/verify_email",
        &[("email", "victim@x.io"), ("verify_token", theirs.as_str())],
    );
    assert_eq!(late.status, 403, "{late:?}");
    let session = app.session_of(&app.log_in("ann@x.io", "pw-ann-2"));
    assert_eq!(account(&app, &session)["email"], "ann@x.io");
    assert_eq!(app.token_counts().1, 0);
}

crate::on_every_store!(
    only_the_latest_change_applies_and_a_reset_ends_it,
    an_address_is_verified_by_its_token_once,
    an_email_change_applies_when_the_new_address_answers,
    a_change_to_an_address_taken_meanwhile_is_refused,
    a_password_change_ends_pending_verifications,
    logins_can_require_a_verified_address,
);
