//! The production profile against the real server: no reset token in any
//! response, delivery by webhook (to a listener of the test's own) or log,
//! the password policy, the `__Host-` cookie, cross-site refusal, and the
//! start-up rules. The dev profile keeps the reference behaviour.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::{run, Proc, BIN};
use crate::common::raw::{session_cookie, session_cookie_name, Answer};
use crate::common::{Format, TestApp};
use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;
use serde_json::Value;

const STRONG: &str = "correct horse battery staple";

/// A mailer stand-in: records every JSON body POSTed to it, failing the
/// first `fail_first` calls with 500.
struct Mailer {
    url: String,
    received: Arc<Mutex<Vec<Value>>>,
    calls: Arc<AtomicUsize>,
    _stop: std::sync::mpsc::Sender<()>,
}

impl Mailer {
    fn start(fail_first: usize) -> Mailer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (r, c) = (Arc::clone(&received), Arc::clone(&calls));
        let server = rouille::Server::new("127.0.0.1:0", move |request| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n < fail_first {
                return rouille::Response::text("down").with_status_code(500);
            }
            let body: Value = rouille::input::json_input(request).unwrap();
            r.lock().unwrap().push(body);
            rouille::Response::text("ok")
        })
        .unwrap();
        let url = format!("http://{}/reset", server.server_addr());
        let (_handle, stop) = server.stoppable();
        Mailer {
            url,
            received,
            calls,
            _stop: stop,
        }
    }

    /// Waits (up to 20 s) for `n` deliveries of `kind` (their `type`:
    /// `reset`, `verify`...) and returns those.
    fn wait_for_kind(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Value> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter(|body| body["type"] == kind)
                .cloned()
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn production(c: &mut Config, channel: Channel) {
    c.profile = Profile::Production;
    c.delivery = Some(channel);
    c.password_policy = PasswordPolicy::PRODUCTION;
    // The production minimum; fast enough for a handful of hashes.
    c.bcrypt_cost = 10;
    c.allowed_origins = vec!["https://app.example.com".to_owned()];
}

fn form(app: &TestApp, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    app.send(method, path, Format::Form, fields)
}

fn reset_tokens_go_to_the_webhook_and_never_into_a_response() {
    let mailer = Mailer::start(0);
    let app = TestApp::spawn_with(|c| production(c, Channel::Webhook(mailer.url.clone())));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);

    let known = form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]);
    let unknown = form(&app, "POST", "/reset_password", &[("email", "nobody@x.io")]);
    assert_eq!((known.status, unknown.status), (200, 200));
    // The same answer either way, but for the email echoed back.
    assert_eq!(
        known.text(),
        unknown.text().replace("nobody@x.io", "ann@x.io")
    );
    assert!(!known.text().contains("reset_token"), "{known:?}");

    let delivered = mailer.wait_for_kind("reset", 1);
    assert_eq!(delivered[0]["email"], "ann@x.io");
    let token = delivered[0]["reset_token"].as_str().unwrap().to_owned();
    let expires = delivered[0]["expires_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );
    // Nothing is sent for the unknown email.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mailer.wait_for_kind("reset", 1).len(), 1);

    let update = [
        ("email", "ann@x.io"),
        ("reset_token", token.as_str()),
        ("new_password", "another strong passphrase"),
    ];
    let reply = form(&app, "PUT", "/reset_password", &update);
    assert_eq!(reply.status, 200, "{reply:?}");
    for reply in [&known, &unknown, &reply] {
        assert!(!reply.text().contains(&token));
        assert!(reply.headers.iter().all(|(_, v)| !v.contains(&token)));
    }
    assert_eq!(form(&app, "PUT", "/reset_password", &update).status, 403);
}

fn a_failing_mailer_is_retried() {
    let mailer = Mailer::start(1);
    let app = TestApp::spawn_with(|c| production(c, Channel::Webhook(mailer.url.clone())));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    // The verification a registration sends takes the failure and the
    // retry; the reset comes after it.
    mailer.wait_for_kind("verify", 1);
    let started = Instant::now();
    assert_eq!(
        form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]).status,
        200
    );
    // The request did not wait for the retry.
    let answered = started.elapsed();
    let delivered = mailer.wait_for_kind("reset", 1);
    assert_eq!(delivered[0]["email"], "ann@x.io");
    assert_eq!(mailer.calls.load(Ordering::SeqCst), 3);
    assert!(answered < started.elapsed());
}

fn the_password_policy_refuses_weak_passwords_with_a_reason() {
    let mailer = Mailer::start(0);
    let app = TestApp::spawn_with(|c| production(c, Channel::Webhook(mailer.url.clone())));
    let reply = app.register("ann@x.io", "Xq7#");
    assert_eq!(reply.status, 400);
    assert!(
        reply.message().contains("at least 8 characters"),
        "{}",
        reply.message()
    );
    let reply = app.register("ann@x.io", "password1");
    assert_eq!(reply.status, 400);
    assert!(
        reply.message().starts_with("password is too easy to guess"),
        "{}",
        reply.message()
    );
    let reply = app.register("ann@x.io", "ann@x.io!");
    assert_eq!(reply.status, 400, "the email itself is no password");
    // 64 characters are allowed (up to bcrypt's 72 bytes).
    let long = "a long passphrase nobody would guess, with sixty-four characters";
    assert_eq!(long.chars().count(), 64);
    assert_eq!(app.register("ann@x.io", long).status, 200);
    assert_eq!(app.user_count(), 1);

    // A weak new password is refused without consuming the token.
    assert_eq!(
        form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]).status,
        200
    );
    let token = mailer.wait_for_kind("reset", 1)[0]["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let weak = [
        ("email", "ann@x.io"),
        ("reset_token", token.as_str()),
        ("new_password", "qwertyuiop"),
    ];
    let reply = form(&app, "PUT", "/reset_password", &weak);
    assert_eq!(reply.status, 400);
    assert!(reply.message().contains("too easy to guess"));
    let strong = [
        ("email", "ann@x.io"),
        ("reset_token", token.as_str()),
        ("new_password", STRONG),
    ];
    assert_eq!(form(&app, "PUT", "/reset_password", &strong).status, 200);
}

fn the_session_cookie_is_host_prefixed_and_secure() {
    let app = TestApp::spawn_with(|c| production(c, Channel::Log));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let reply = app.log_in("ann@x.io", STRONG);
    assert_eq!(reply.status, 200);
    // The prefixed name, and not the dev profile's.
    let header = reply
        .set_cookie(session_cookie_name(Profile::Production))
        .unwrap_or_else(|| panic!("no __Host-session_id cookie: {reply:?}"));
    assert!(
        reply
            .set_cookie(session_cookie_name(Profile::Dev))
            .is_none(),
        "{reply:?}"
    );
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(header.contains(attribute), "{header} lacks {attribute}");
    }
    assert!(!header.contains("Domain"), "{header}");
    let token = app.session_of(&reply);
    assert_eq!(app.profile(Some(&token)).status, 200);
    // The unprefixed name is not read in production.
    let unprefixed = ("Cookie", session_cookie(Profile::Dev, &token));
    let profile = app.request_with("GET", "/profile", &[unprefixed], b"");
    assert_eq!(profile.status, 403);
}

fn cross_site_logouts_are_refused() {
    let app = TestApp::spawn_with(|c| production(c, Channel::Log));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let token = app.session_of(&app.log_in("ann@x.io", STRONG));
    let logout = |extra: Option<(&'static str, &str)>| {
        let mut headers = vec![app.cookie(&token)];
        if let Some((k, v)) = extra {
            headers.push((k, v.to_owned()));
        }
        app.request_with("DELETE", "/sessions", &headers, b"")
    };
    for refused in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let reply = logout(Some(refused));
        assert_eq!(reply.status, 403, "{refused:?}");
        assert_eq!(reply.message(), "cross-site request refused");
    }
    // The session survived the forged requests.
    assert_eq!(app.profile(Some(&token)).status, 200);
    assert_eq!(
        logout(Some(("Origin", "https://app.example.com"))).status,
        302
    );
    let token = app.session_of(&app.log_in("ann@x.io", STRONG));
    let plain = app.request_with(
        "DELETE",
        "/sessions",
        &[
            app.cookie(&token),
            ("Sec-Fetch-Site", "same-origin".to_owned()),
        ],
        b"",
    );
    assert_eq!(plain.status, 302);
}

fn the_log_channel_writes_the_token_to_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Proc::start(
        &tmp.path().join("store"),
        &[
            "--profile",
            "production",
            "--reset-delivery",
            "log",
            "--bcrypt-cost",
            "10",
        ],
    );
    let (status, _) = server.post(
        "/users",
        &format!(
            "email=ann%40x.io&password={}",
            crate::common::urlencode(STRONG)
        ),
    );
    assert_eq!(status, 200);
    let (status, body) = server.post("/reset_password", "email=ann%40x.io");
    assert_eq!(status, 200);
    assert!(!body.contains("reset_token"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let stderr = server.stderr();
        if let Some(line) = stderr.lines().find(|l| l.contains("reset_token_delivery")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no delivery line in {stderr}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let line: Value = serde_json::from_str(&line).unwrap();
    let token = line["reset_token"].as_str().unwrap();
    let form =
        format!("email=ann%40x.io&reset_token={token}&new_password=another%20strong%20passphrase");
    assert_eq!(
        server.send("PUT", "/reset_password", &form, None).status,
        200
    );
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(15)).success());
}

fn an_unreachable_mailer_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens there.
    let server = Proc::start(
        &tmp.path().join("store"),
        &[
            "--profile",
            "production",
            "--reset-delivery",
            "webhook:http://127.0.0.1:9/x",
            "--bcrypt-cost",
            "10",
        ],
    );
    let (status, _) = server.post(
        "/users",
        &format!(
            "email=ann%40x.io&password={}",
            crate::common::urlencode(STRONG)
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(server.post("/reset_password", "email=ann%40x.io").0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr().contains("failed (attempt 2 of 8)") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !server.stderr().contains("reset_token\""),
        "no token in the failure log"
    );
}

fn start_up_rules_of_the_production_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir = dir.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--profile", "production"], "--delivery"),
        (
            &[
                "--profile",
                "production",
                "--delivery",
                "log",
                "--bcrypt-cost",
                "9",
            ],
            "--bcrypt-cost 10",
        ),
        (
            &["--delivery", "webhook:http://mailer.example/x"],
            "must be https://",
        ),
        (&["--delivery", "email"], "none of"),
        (
            &["--profile", "production", "--delivery", "outbox"],
            "for the dev profile",
        ),
        (
            &["--delivery", "log", "--reset-delivery", "log"],
            "cannot be used with",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["--addr", "127.0.0.1:0", "--data-dir", dir];
        all.extend(args);
        let (code, _, err) = run(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["--help"]);
    assert_eq!(code, 0, "{err}");
    let _ = BIN;
}

fn dev_warns_loudly_when_bound_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Proc::start_at(&tmp.path().join("store"), "0.0.0.0:0", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("WARNING") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stderr().contains("not a loopback address"));
    assert!(server.stderr().contains("--profile production"));
    let quiet = Proc::start(&tmp.path().join("other"), &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!quiet.stderr().contains("WARNING"));
}

fn dev_with_a_channel_answers_the_reference_way_and_delivers_too() {
    let mailer = Mailer::start(0);
    let app = TestApp::spawn_with(|c| c.delivery = Some(Channel::Webhook(mailer.url.clone())));
    assert_eq!(app.register("ann@x.io", "b4l0u").status, 200);
    let reply = form(&app, "POST", "/reset_password", &[("email", "ann@x.io")]);
    assert_eq!(reply.status, 200);
    let token = reply.json()["reset_token"].as_str().unwrap().to_owned();
    assert_eq!(
        mailer.wait_for_kind("reset", 1)[0]["reset_token"],
        token.as_str()
    );
    assert_eq!(
        form(&app, "POST", "/reset_password", &[("email", "nobody@x.io")]).status,
        403
    );
}

fn verifications_and_notices_go_to_the_webhook() {
    let mailer = Mailer::start(0);
    let app = TestApp::spawn_with(|c| production(c, Channel::Webhook(mailer.url.clone())));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    // A registration sends its verification on its own.
    let sent = mailer.wait_for_kind("verify", 1);
    assert_eq!(sent[0]["email"], "ann@x.io");
    let token = sent[0]["verify_token"].as_str().unwrap().to_owned();
    let redeem = [("email", "ann@x.io"), ("verify_token", token.as_str())];
    assert_eq!(form(&app, "PUT", "/verify_email", &redeem).status, 200);

    // Asking again: the same answer whether or not the address exists.
    let known = form(&app, "POST", "/verify_email", &[("email", "ann@x.io")]);
    let unknown = form(&app, "POST", "/verify_email", &[("email", "nobody@x.io")]);
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(
        known.text(),
        unknown.text().replace("nobody@x.io", "ann@x.io")
    );
    assert!(!known.text().contains("verify_token"), "{known:?}");
    assert_eq!(mailer.wait_for_kind("verify", 2).len(), 2);

    let session = app.session_of(&app.log_in("ann@x.io", STRONG));
    let started = app.send_in(
        &session,
        "PUT",
        "/account",
        &[("password", STRONG), ("new_email", "new@x.io")],
    );
    assert_eq!(started.status, 200, "{started:?}");
    assert!(started.json().get("verify_token").is_none(), "{started:?}");
    let change = &mailer.wait_for_kind("email_change", 1)[0];
    assert_eq!(change["email"], "new@x.io");
    let notice = &mailer.wait_for_kind("email_changed", 1)[0];
    assert_eq!(
        (&notice["email"], &notice["new_email"]),
        (&"ann@x.io".into(), &"new@x.io".into())
    );
    assert!(notice.get("verify_token").is_none());
    let token = change["verify_token"].as_str().unwrap();
    let redeem = [("email", "new@x.io"), ("verify_token", token)];
    let done = form(&app, "PUT", "/verify_email", &redeem);
    assert_eq!(done.json()["email"], "new@x.io", "{done:?}");

    let changed = app.send_in(
        &session,
        "PUT",
        "/password",
        &[
            ("password", STRONG),
            ("new_password", "another strong passphrase"),
        ],
    );
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        mailer.wait_for_kind("password_changed", 1)[0]["email"],
        "new@x.io"
    );
    let deleted = app.send_in(
        &session,
        "DELETE",
        "/account",
        &[("password", "another strong passphrase")],
    );
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(
        mailer.wait_for_kind("account_deleted", 1)[0]["email"],
        "new@x.io"
    );
}

crate::on_every_store!(
    verifications_and_notices_go_to_the_webhook,
    reset_tokens_go_to_the_webhook_and_never_into_a_response,
    a_failing_mailer_is_retried,
    the_password_policy_refuses_weak_passwords_with_a_reason,
    the_session_cookie_is_host_prefixed_and_secure,
    cross_site_logouts_are_refused,
    the_log_channel_writes_the_token_to_the_audit_log,
    an_unreachable_mailer_is_logged,
    start_up_rules_of_the_production_profile,
    dev_warns_loudly_when_bound_beyond_loopback,
    dev_with_a_channel_answers_the_reference_way_and_delivers_too,
);
