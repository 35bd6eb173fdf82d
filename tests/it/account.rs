//! A signed-in user's own account: `PUT /password` and `DELETE /account`,
//! each with the current password given again.

use crate::common::{Format, TestApp};

fn put_password(
    app: &TestApp,
    session: &str,
    current: &str,
    new: &str,
) -> crate::common::raw::Answer {
    let (content_type, body) = crate::common::encode(
        Format::Form,
        &[("password", current), ("new_password", new)],
    );
    app.request(
        "PUT",
        "/password",
        Some(&content_type),
        &body,
        Some(session),
    )
}

fn delete_account(app: &TestApp, session: &str, password: &str) -> crate::common::raw::Answer {
    let (content_type, body) = crate::common::encode(Format::Json, &[("password", password)]);
    app.request(
        "DELETE",
        "/account",
        Some(&content_type),
        &body,
        Some(session),
    )
}

fn a_password_change_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn();
    let mine = app.signed_in("ann@example.com", "pw-old-1");
    let other = app.session_of(&app.log_in("ann@example.com", "pw-old-1"));
    let reset = app.reset_token("ann@example.com").json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let wrong = put_password(&app, &mine, "not it", "pw-new-1");
    assert_eq!(
        (wrong.status, wrong.message()),
        (401, "wrong password".to_owned())
    );
    let empty = put_password(&app, &mine, "pw-old-1", "");
    assert_eq!(empty.status, 400, "{empty:?}");
    assert!(empty.message().starts_with("new_password"), "{empty:?}");
    assert_eq!(put_password(&app, "x", "pw-old-1", "pw-new-1").status, 403);

    let done = put_password(&app, &mine, "pw-old-1", "pw-new-1");
    assert_eq!(
        done.text(),
        "{\"email\":\"ann@example.com\",\"message\":\"Password updated\"}\n"
    );
    assert_eq!(
        app.profile(Some(&mine)).status,
        200,
        "the caller's session stays"
    );
    assert_eq!(
        app.profile(Some(&other)).status,
        403,
        "the other session ended"
    );
    assert_eq!(
        app.update_password("ann@example.com", &reset, "pw-reset-1")
            .status,
        403,
        "a reset token asked for before the change cannot undo it"
    );
    assert_eq!(app.log_in("ann@example.com", "pw-old-1").status, 401);
    assert_eq!(app.log_in("ann@example.com", "pw-new-1").status, 200);
    assert!(app.store_problems().is_empty());
}

fn wrong_current_passwords_are_throttled_like_logins() {
    let app = TestApp::spawn();
    let session = app.signed_in("bob@example.com", "pw-bob-1");
    // The account's free failures (5), then 429 before any bcrypt work,
    // even with the right password.
    for attempt in 0..5 {
        let answer = put_password(&app, &session, &format!("guess {attempt}"), "pw-new-1");
        assert_eq!(answer.status, 401, "attempt {attempt}: {answer:?}");
    }
    let refused = put_password(&app, &session, "pw-bob-1", "pw-new-1");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.header("Retry-After").is_some());
    let delete = delete_account(&app, &session, "pw-bob-1");
    assert_eq!(delete.status, 429, "{delete:?}");
}

fn deleting_the_account_takes_everything_with_it() {
    let app = TestApp::spawn();
    let session = app.signed_in("cat@example.com", "pw-cat-1");
    let other = app.session_of(&app.log_in("cat@example.com", "pw-cat-1"));
    assert_eq!(app.reset_token("cat@example.com").status, 200);
    let wrong = delete_account(&app, &session, "nope");
    assert_eq!(
        (wrong.status, wrong.message()),
        (401, "wrong password".to_owned())
    );
    assert_eq!(app.user_count(), 1);

    let done = delete_account(&app, &session, "pw-cat-1");
    assert_eq!(done.text(), "{\"message\":\"account deleted\"}\n");
    let cleared = done.set_cookie("session_id").unwrap_or_default().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.user_count(), 0);
    assert_eq!(
        app.token_counts(),
        (0, 0),
        "sessions and tokens went with it"
    );
    assert_eq!(app.profile(Some(&other)).status, 403);
    assert_eq!(app.log_in("cat@example.com", "pw-cat-1").status, 401);
    // The address is free again.
    assert_eq!(app.register("cat@example.com", "pw-cat-2").status, 200);
    assert!(app.store_problems().is_empty());
}

fn bearer_tokens_change_and_delete_too() {
    let app = TestApp::spawn();
    assert_eq!(app.register("dan@example.com", "pw-dan-1").status, 200);
    let login = app.send(
        "POST",
        "/sessions",
        Format::Form,
        &[
            ("email", "dan@example.com"),
            ("password", "pw-dan-1"),
            ("token", "1"),
        ],
    );
    let token = login.json()["session_token"].as_str().unwrap().to_owned();
    let bearer = ("Authorization", format!("Bearer {token}"));
    let (content_type, body) = crate::common::encode(
        Format::Json,
        &[("password", "pw-dan-1"), ("new_password", "pw-dan-2")],
    );
    let changed = app.request_with(
        "PUT",
        "/password",
        &[("Content-Type", content_type), bearer.clone()],
        &body,
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    let (content_type, body) = crate::common::encode(Format::Form, &[("password", "pw-dan-2")]);
    let deleted = app.request_with(
        "DELETE",
        "/account",
        &[("Content-Type", content_type), bearer],
        &body,
    );
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(app.user_count(), 0);
}

crate::on_every_store!(
    a_password_change_keeps_this_session_and_ends_the_others,
    wrong_current_passwords_are_throttled_like_logins,
    deleting_the_account_takes_everything_with_it,
    bearer_tokens_change_and_delete_too,
);
