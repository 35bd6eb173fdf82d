//! The credential lifecycle rules against the real server, with short
//! lifetimes and low limits: expiry, throttling, lockout, rehash, limits.

use std::thread::sleep;
use std::time::{Duration, Instant};

use authd::config::Profile;

use crate::common::raw::session_cookie_name;
use crate::common::TestApp;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn verifies(app: &TestApp) -> u64 {
    app.running.app().auth.hasher().stats().verifies()
}

fn hashes(app: &TestApp) -> u64 {
    app.running.app().auth.hasher().stats().hashes()
}

fn reset_token(app: &TestApp, email: &str) -> String {
    let reply = app.reset_token(email);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["reset_token"].as_str().unwrap().to_owned()
}

fn a_session_dies_at_its_absolute_lifetime_despite_activity() {
    let app = TestApp::spawn_with(|c| {
        c.lifetimes.session = secs(2);
        c.lifetimes.session_idle = secs(1);
    });
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let reply = app.log_in("a@b.io", "pw");
    let started = Instant::now();
    let cookie = reply.set_cookie(session_cookie_name(Profile::Dev)).unwrap();
    assert!(cookie.contains("Max-Age=2;"), "{cookie}");
    let session = reply.session();
    // Active every 400 ms: the idle timeout never strikes...
    while started.elapsed() < ms(1700) {
        assert_eq!(app.profile(Some(&session)).status, 200);
        sleep(ms(400));
    }
    // ...but the absolute lifetime does.
    sleep(secs(2).saturating_sub(started.elapsed()) + ms(200));
    let reply = app.profile(Some(&session));
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "no valid session");
    // The expired session was removed, not just refused.
    assert_eq!(app.token_counts().0, 0);
    assert!(app.store_problems().is_empty());
}

fn a_session_dies_after_idling() {
    let app = TestApp::spawn_with(|c| c.lifetimes.session_idle = secs(1));
    let session = app.signed_in("a@b.io", "pw");
    for _ in 0..5 {
        sleep(ms(500));
        assert_eq!(app.profile(Some(&session)).status, 200);
    }
    sleep(ms(1300));
    assert_eq!(app.profile(Some(&session)).status, 403);
    assert_eq!(app.log_out(Some(&session)).status, 403);
}

fn a_reset_token_dies_at_its_lifetime_and_is_removed() {
    let app = TestApp::spawn_with(|c| c.lifetimes.reset_token = secs(1));
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let token = reset_token(&app, "a@b.io");
    assert_eq!(app.token_counts().1, 1);
    sleep(ms(1200));
    let reply = app.update_password("a@b.io", &token, "new");
    assert_eq!(reply.status, 403);
    assert_eq!(reply.message(), "invalid reset token");
    assert_eq!(app.token_counts().1, 0);
    assert_eq!(app.log_in("a@b.io", "pw").status, 200);
    // A fresh token works.
    let token = reset_token(&app, "a@b.io");
    assert_eq!(app.update_password("a@b.io", &token, "new").status, 200);
}

fn the_sweep_removes_tokens_nobody_comes_back_for() {
    let app = TestApp::spawn_with(|c| {
        c.lifetimes.session = secs(1);
        c.lifetimes.reset_token = secs(1);
        c.sweep_interval = ms(300);
    });
    for i in 0..3 {
        let email = format!("u{i}@b.io");
        let _ = app.signed_in(&email, "pw");
        let _ = reset_token(&app, &email);
    }
    assert_eq!(app.token_counts(), (3, 3));
    let deadline = Instant::now() + secs(5);
    while app.token_counts() != (0, 0) {
        assert!(Instant::now() < deadline, "{:?}", app.token_counts());
        sleep(ms(100));
    }
    assert!(app.store_problems().is_empty());
}

fn failed_logins_back_off_without_bcrypt_work_and_the_user_gets_back_in() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 2);
    assert_eq!(app.register("a@b.io", "right").status, 200);
    assert_eq!(app.log_in("a@b.io", "wrong").status, 401);
    assert_eq!(app.log_in("a@b.io", "wrong").status, 401);
    let before = verifies(&app);
    let reply = app.log_in("a@b.io", "right");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert!(
        reply.message().contains("retry in 1 s"),
        "{}",
        reply.message()
    );
    // Refused before any bcrypt work, even with the right password.
    assert_eq!(verifies(&app), before);
    sleep(ms(1100));
    assert_eq!(app.log_in("a@b.io", "right").status, 200);
    // Success reset the account's count: two free failures again.
    assert_eq!(app.log_in("a@b.io", "wrong").status, 401);
    assert_eq!(app.log_in("a@b.io", "wrong").status, 401);
    assert_eq!(app.log_in("a@b.io", "wrong").status, 429);
}

fn unknown_accounts_are_throttled_alike() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 1);
    assert_eq!(app.log_in("ghost@b.io", "x").status, 401);
    let reply = app.log_in("GHOST@b.io", "x");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("Retry-After"), Some("1"));
}

/// A client that is not the developer's own machine: with a client-IP
/// header configured (and not sent), the address is still the loopback
/// peer, but the dev profile's exemption for local clients is off.
fn remote(c: &mut authd::config::Config) {
    c.client_ip_header = Some("X-Forwarded-For".to_owned());
}

fn one_ip_guessing_many_accounts_is_throttled() {
    // Per IP, the allowance is ten times the per-account one.
    let app = TestApp::spawn_with(|c| {
        remote(c);
        c.limits.login_free_failures = 1;
    });
    for i in 0..10 {
        assert_eq!(
            app.log_in(&format!("u{i}@b.io"), "x").status,
            401,
            "attempt {i}"
        );
    }
    let before = verifies(&app);
    assert_eq!(app.log_in("fresh@b.io", "x").status, 429);
    assert_eq!(verifies(&app), before);
}

fn the_lockout_is_bounded_and_a_password_reset_lifts_it() {
    let app = TestApp::spawn_with(|c| {
        c.limits.login_free_failures = 1;
        c.limits.lockout_failures = 3;
        c.limits.max_delay = secs(1);
    });
    assert_eq!(app.register("a@b.io", "right").status, 200);
    for attempt in 0..3 {
        if attempt > 0 {
            sleep(ms(1050));
        }
        assert_eq!(
            app.log_in("a@b.io", "wrong").status,
            401,
            "attempt {attempt}"
        );
    }
    // Locked: even the right password waits for the window (an hour).
    sleep(ms(1050));
    let reply = app.log_in("a@b.io", "right");
    assert_eq!(reply.status, 429);
    let retry: u64 = reply.header("Retry-After").unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    // The owner resets the password and is back in at once.
    let token = reset_token(&app, "a@b.io");
    assert_eq!(app.update_password("a@b.io", &token, "fresh").status, 200);
    assert_eq!(app.log_in("a@b.io", "fresh").status, 200);
}

fn registration_and_reset_requests_are_rate_limited() {
    // Two at once, then one a second (the dev profile's refill).
    let app = TestApp::spawn_with(|c| {
        remote(c);
        c.limits.request_free = 2;
    });
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    assert_eq!(app.register("b@b.io", "pw").status, 200);
    let before = hashes(&app);
    let reply = app.register("c@b.io", "pw");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(hashes(&app), before);
    assert_eq!(app.user_count(), 2);
    sleep(ms(1100));
    assert_eq!(app.register("c@b.io", "pw").status, 200);

    assert_eq!(app.reset_token("a@b.io").status, 200);
    assert_eq!(app.reset_token("a@b.io").status, 200);
    let reply = app.reset_token("a@b.io");
    assert_eq!(reply.status, 429);
    assert!(reply.header("Retry-After").is_some());
}

fn a_low_cost_hash_is_upgraded_at_login() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let stored = |app: &TestApp| {
        authd::store::keyword::find_user_by(app.running.store(), "email", "a@b.io")
            .unwrap()
            .hashed_password
    };
    assert!(stored(&app).starts_with("$2b$04$"));
    let app = app.restart_with(|c| c.bcrypt_cost = 6);
    // A failed login changes nothing.
    assert_eq!(app.log_in("a@b.io", "nope").status, 401);
    assert!(stored(&app).starts_with("$2b$04$"));
    let session = app.log_in("a@b.io", "pw").session();
    assert!(stored(&app).starts_with("$2b$06$"), "{}", stored(&app));
    // The session of that login is valid, and the new hash verifies.
    assert_eq!(app.profile(Some(&session)).status, 200);
    let before = hashes(&app);
    assert_eq!(app.log_in("a@b.io", "pw").status, 200);
    assert_eq!(
        hashes(&app),
        before,
        "no rehash once at the configured cost"
    );
}

fn oversized_headers_are_refused() {
    let app = TestApp::spawn();
    let session = app.signed_in("a@b.io", "pw");
    let huge = format!("{session}; pad={}", "x".repeat(20_000));
    let reply = app.profile(Some(&huge));
    assert_eq!(reply.status, 431);
    assert!(reply.message().contains("headers"));
    assert_eq!(app.profile(Some(&session)).status, 200);
}

crate::on_every_store!(
    a_session_dies_at_its_absolute_lifetime_despite_activity,
    a_session_dies_after_idling,
    a_reset_token_dies_at_its_lifetime_and_is_removed,
    the_sweep_removes_tokens_nobody_comes_back_for,
    failed_logins_back_off_without_bcrypt_work_and_the_user_gets_back_in,
    unknown_accounts_are_throttled_alike,
    one_ip_guessing_many_accounts_is_throttled,
    the_lockout_is_bounded_and_a_password_reset_lifts_it,
    registration_and_reset_requests_are_rate_limited,
    a_low_cost_hash_is_upgraded_at_login,
    oversized_headers_are_refused,
);
