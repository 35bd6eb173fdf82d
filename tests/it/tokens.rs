//! Sessions and reset tokens against the real server: replacement, logout,
//! binding to the owner's email, single use, and what a reset ends.

use crate::common::TestApp;

fn reset_token(app: &TestApp, email: &str) -> String {
    let reply = app.reset_token(email);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["reset_token"].as_str().unwrap().to_owned()
}

fn a_new_login_keeps_the_other_sessions() {
    let app = TestApp::spawn();
    let first = app.signed_in("a@b.io", "pw");
    let second = app.log_in("a@b.io", "pw").session();
    assert_ne!(first, second);
    assert_eq!(app.profile(Some(&first)).status, 200);
    assert_eq!(app.profile(Some(&second)).status, 200);
    // Logging out of one leaves the other.
    assert_eq!(app.log_out(Some(&first)).status, 302);
    assert_eq!(app.profile(Some(&first)).status, 403);
    assert_eq!(app.profile(Some(&second)).status, 200);
    assert!(app.store_problems().is_empty());
}

/// `--max-sessions-per-user 1` is the reference's behaviour: a login ends
/// the previous session.
fn with_one_session_per_user_a_new_login_replaces_the_session() {
    let app = TestApp::spawn_with(|c| c.max_sessions_per_user = 1);
    let first = app.signed_in("a@b.io", "pw");
    let second = app.log_in("a@b.io", "pw").session();
    assert_ne!(first, second);
    assert_eq!(app.profile(Some(&first)).status, 403);
    assert_eq!(app.profile(Some(&second)).status, 200);
    // Logging out with the replaced token fails and leaves the new one.
    assert_eq!(app.log_out(Some(&first)).status, 403);
    assert_eq!(app.profile(Some(&second)).status, 200);
}

/// Past the cap, the oldest session ends first.
fn past_the_cap_the_oldest_session_ends() {
    let app = TestApp::spawn_with(|c| c.max_sessions_per_user = 3);
    let first = app.signed_in("a@b.io", "pw");
    let rest: Vec<String> = (0..3)
        .map(|_| app.log_in("a@b.io", "pw").session())
        .collect();
    assert_eq!(app.profile(Some(&first)).status, 403);
    for session in &rest {
        assert_eq!(app.profile(Some(session)).status, 200);
    }
    assert_eq!(app.token_counts().0, 3);
}

fn logout_ends_the_session_on_the_server() {
    let app = TestApp::spawn();
    let session = app.signed_in("a@b.io", "pw");
    assert_eq!(app.log_out(Some(&session)).status, 302);
    // A client that kept the cookie gets nothing from it.
    assert_eq!(app.profile(Some(&session)).status, 403);
    let again = app.log_out(Some(&session));
    assert_eq!(again.status, 403);
    assert_eq!(again.message(), "no valid session");
    assert_eq!(app.log_out(None).status, 403);
    assert!(app.store_problems().is_empty());
}

fn forged_and_malformed_cookies_are_403() {
    let app = TestApp::spawn();
    let _ = app.signed_in("a@b.io", "pw");
    let long = "a".repeat(5000);
    let forged = "A".repeat(43);
    for cookie in ["", "x", "../../etc", long.as_str(), forged.as_str(), "%00"] {
        assert_eq!(app.profile(Some(cookie)).status, 403, "{cookie:?}");
        assert_eq!(app.log_out(Some(cookie)).status, 403, "{cookie:?}");
    }
}

fn reset_for_an_unknown_email_is_403() {
    let app = TestApp::spawn();
    let reply = app.reset_token("nobody@b.io");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "email not registered");
}

fn a_reset_token_works_only_with_its_owners_email() {
    let app = TestApp::spawn();
    assert_eq!(app.register("victim@b.io", "pw").status, 200);
    assert_eq!(app.register("attacker@b.io", "pw").status, 200);
    let token = reset_token(&app, "attacker@b.io");
    // The reference accepts any user's email with any token; we do not.
    let reply = app.update_password("victim@b.io", &token, "owned");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "invalid reset token");
    assert_eq!(app.log_in("victim@b.io", "pw").status, 200);
    assert_eq!(app.log_in("victim@b.io", "owned").status, 401);
    // The refusal did not consume the token for its real owner.
    assert_eq!(
        app.update_password("attacker@b.io", &token, "new").status,
        200
    );
}

fn a_reset_token_is_single_use() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let token = reset_token(&app, "a@b.io");
    assert_eq!(app.update_password("a@b.io", &token, "first").status, 200);
    assert_eq!(app.update_password("a@b.io", &token, "second").status, 403);
    assert_eq!(app.log_in("a@b.io", "first").status, 200);
    assert_eq!(app.log_in("a@b.io", "second").status, 401);
}

fn a_newer_reset_request_replaces_the_older_token() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let older = reset_token(&app, "a@b.io");
    let newer = reset_token(&app, "a@b.io");
    assert_ne!(older, newer);
    assert_eq!(app.update_password("a@b.io", &older, "x").status, 403);
    assert_eq!(app.update_password("a@b.io", &newer, "y").status, 200);
    assert_eq!(app.log_in("a@b.io", "y").status, 200);
}

fn a_password_reset_ends_the_session() {
    let app = TestApp::spawn();
    let session = app.signed_in("a@b.io", "pw");
    let token = reset_token(&app, "a@b.io");
    // Asking for a token alone changes nothing for the session.
    assert_eq!(app.profile(Some(&session)).status, 200);
    assert_eq!(app.update_password("a@b.io", &token, "new").status, 200);
    assert_eq!(app.profile(Some(&session)).status, 403);
    assert!(app.store_problems().is_empty());
}

fn malformed_reset_tokens_are_refused_without_work() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let _ = reset_token(&app, "a@b.io");
    let hashes = app.running.app().auth.hasher().stats().hashes();
    let long = "t".repeat(10_000);
    for token in [
        "abc",
        long.as_str(),
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    ] {
        assert_eq!(
            app.update_password("a@b.io", token, "new").status,
            403,
            "{token:?}"
        );
    }
    // No new password was hashed for any of them.
    assert_eq!(app.running.app().auth.hasher().stats().hashes(), hashes);
    // An empty token is a wrong one, as for the reference.
    let reply = app.update_password("a@b.io", "", "new");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "invalid reset token");
}

fn unknown_email_and_wrong_password_cost_the_same_bcrypt_work() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let stats = || app.running.app().auth.hasher().stats().verifies();
    let before = stats();
    let wrong = app.log_in("a@b.io", "nope");
    assert_eq!(stats(), before + 1);
    let unknown = app.log_in("nobody@b.io", "nope");
    assert_eq!(stats(), before + 2);
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.text(), unknown.text());
}

crate::on_every_store!(
    a_new_login_keeps_the_other_sessions,
    with_one_session_per_user_a_new_login_replaces_the_session,
    past_the_cap_the_oldest_session_ends,
    logout_ends_the_session_on_the_server,
    forged_and_malformed_cookies_are_403,
    reset_for_an_unknown_email_is_403,
    a_reset_token_works_only_with_its_owners_email,
    a_reset_token_is_single_use,
    a_newer_reset_request_replaces_the_older_token,
    a_password_reset_ends_the_session,
    malformed_reset_tokens_are_refused_without_work,
    unknown_email_and_wrong_password_cost_the_same_bcrypt_work,
);
