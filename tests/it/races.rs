//! Concurrent requests that must not break uniqueness or single use.

use std::sync::Arc;

use authd::config::Config;

use crate::common::{all_at_once, TestApp};

/// The race, not the abuse limits, is under test: one address may send
/// every request at once, and log in at once as often as it likes (every
/// attempt in flight counts against an account's budget).
fn for_races(c: &mut Config) {
    c.limits.hashes_per_address = 64;
    c.limits.login_success_burst = 1000;
    c.limits.login_free_failures = 100;
}

fn thirty_two_registrations_of_one_email_make_one_account() {
    // The race, not the request-rate limit, is under test: 32 requests from
    // one IP would otherwise be throttled past the 10th.
    let app = Arc::new(TestApp::spawn_with(|c| {
        for_races(c);
        c.threads = 64;
        c.limits.request_free = 100;
    }));
    let client = Arc::clone(&app);
    let statuses = all_at_once(32, move |i| {
        // Different spellings of one address, different passwords.
        let email = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        client.register(email, &format!("password-{i}")).status
    });
    let created = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 400).count();
    assert_eq!((created, refused), (1, 31), "{statuses:?}");
    assert_eq!(app.user_count(), 1);
    assert!(app.store_problems().is_empty());
    // The one account logs in with the winner's password only.
    let winner = statuses.iter().position(|&s| s == 200).unwrap();
    assert_eq!(
        app.log_in("race@example.com", &format!("password-{winner}"))
            .status,
        200
    );
    let loser = (winner + 1) % 32;
    assert_eq!(
        app.log_in("race@example.com", &format!("password-{loser}"))
            .status,
        401
    );
}

fn a_reset_token_is_redeemed_once_under_concurrency() {
    // Fifteen wrong passwords are tried at the end; keep them under the
    // login backoff.
    let app = Arc::new(TestApp::spawn_with(|c| {
        for_races(c);
        c.limits.login_free_failures = 50;
    }));
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let reply = app.reset_token("a@b.io");
    let token = reply.json()["reset_token"].as_str().unwrap().to_owned();
    let client = Arc::clone(&app);
    let statuses = all_at_once(16, move |i| {
        client
            .update_password("a@b.io", &token, &format!("new-{i}"))
            .status
    });
    let ok: Vec<usize> = (0..16).filter(|&i| statuses[i] == 200).collect();
    assert_eq!(ok.len(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 403),
        "{statuses:?}"
    );
    assert_eq!(app.log_in("a@b.io", &format!("new-{}", ok[0])).status, 200);
    for i in (0..16).filter(|&i| i != ok[0]) {
        assert_eq!(app.log_in("a@b.io", &format!("new-{i}")).status, 401);
    }
    assert!(app.store_problems().is_empty());
}

/// With one session per user (the reference's behaviour), concurrent
/// logins leave exactly one; with a cap of three, exactly three.
fn concurrent_logins_leave_exactly_one_live_session() {
    for cap in [1, 3] {
        concurrent_logins_keep_to_the_cap(cap);
    }
}

fn concurrent_logins_keep_to_the_cap(cap: usize) {
    let app = Arc::new(TestApp::spawn_with(|c| {
        for_races(c);
        c.max_sessions_per_user = cap;
    }));
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let client = Arc::clone(&app);
    let sessions = all_at_once(8, move |_| client.log_in("a@b.io", "pw").session());
    let live = sessions
        .iter()
        .filter(|s| app.profile(Some(s)).status == 200)
        .count();
    assert_eq!(live, cap);
    assert_eq!(app.token_counts().0, cap);
    assert!(app.store_problems().is_empty());
}

fn a_login_racing_a_password_reset_never_outlives_it() {
    let app = Arc::new(TestApp::spawn_with(|c| {
        for_races(c);
        c.limits.login_free_failures = 100;
    }));
    for round in 0..8 {
        let email = format!("r{round}@b.io");
        assert_eq!(app.register(&email, "old").status, 200);
        let token = app.reset_token(&email).json()["reset_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let (a, b) = (Arc::clone(&app), Arc::clone(&app));
        let (e1, e2) = (email.clone(), email.clone());
        let results = all_at_once(2, move |i| {
            if i == 0 {
                let reply = a.log_in(&e1, "old");
                (reply.status, (reply.status == 200).then(|| reply.session()))
            } else {
                (b.update_password(&e2, &token, "new").status, None)
            }
        });
        let (login, session) = results[0].clone();
        assert_eq!(results[1].0, 200, "the reset always succeeds");
        assert!(login == 200 || login == 401, "{login}");
        // Whatever the order, no session made with the old password lives on.
        if let Some(session) = session {
            assert_eq!(app.profile(Some(&session)).status, 403, "round {round}");
        }
        assert_eq!(app.log_in(&email, "old").status, 401);
        assert_eq!(app.log_in(&email, "new").status, 200);
    }
    assert!(app.store_problems().is_empty());
}

fn logout_racing_profile_reads() {
    let app = Arc::new(TestApp::spawn_with(for_races));
    let session = app.signed_in("a@b.io", "pw");
    let client = Arc::clone(&app);
    let token = session.clone();
    let statuses = all_at_once(9, move |i| {
        if i == 0 {
            client.log_out(Some(&token)).status
        } else {
            client.profile(Some(&token)).status
        }
    });
    assert_eq!(statuses[0], 302);
    assert!(
        statuses[1..].iter().all(|&s| s == 200 || s == 403),
        "{statuses:?}"
    );
    // Once the logout has answered, the session is gone for good.
    assert_eq!(app.profile(Some(&session)).status, 403);
    assert!(app.store_problems().is_empty());
}

crate::on_every_store!(
    thirty_two_registrations_of_one_email_make_one_account,
    a_reset_token_is_redeemed_once_under_concurrency,
    concurrent_logins_leave_exactly_one_live_session,
    a_login_racing_a_password_reset_never_outlives_it,
    logout_racing_profile_reads,
);
