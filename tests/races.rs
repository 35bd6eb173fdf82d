//! Concurrent requests that must not break uniqueness or single use.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use common::TestApp;

/// Runs `n` copies of `f` released at the same moment; returns their
/// results in thread order.
fn all_at_once<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let f = Arc::clone(&f);
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn thirty_two_registrations_of_one_email_make_one_account() {
    // The race, not the request-rate limit, is under test: 32 requests from
    // one IP would otherwise be throttled past the 10th.
    let app = Arc::new(TestApp::spawn_with(|c| {
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

#[test]
fn a_reset_token_is_redeemed_once_under_concurrency() {
    // Fifteen wrong passwords are tried at the end; keep them under the
    // login backoff.
    let app = Arc::new(TestApp::spawn_with(|c| c.limits.login_free_failures = 50));
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

#[test]
fn concurrent_logins_leave_exactly_one_live_session() {
    let app = Arc::new(TestApp::spawn());
    assert_eq!(app.register("a@b.io", "pw").status, 200);
    let client = Arc::clone(&app);
    let sessions = all_at_once(8, move |_| client.log_in("a@b.io", "pw").session());
    let live = sessions
        .iter()
        .filter(|s| app.profile(Some(s)).status == 200)
        .count();
    assert_eq!(live, 1);
    assert!(app.store_problems().is_empty());
}
