//! The TOTP second factor (#18): enrolment, logins that need a code, a
//! code accepted once per step, recovery codes, turning it off, its
//! secret sealed in the store, and an export that keeps it. Codes are
//! computed here by RFC 6238's algorithm on this crate's own HMAC-SHA-1,
//! not by the library the server uses.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit as _, Mac as _};

use crate::common::process::Proc;
use crate::common::stores::run_authd;
use crate::common::{all_at_once, urlencode, TestApp};

/// RFC 4648 base32 (upper case, no padding) to bytes.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base32") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// RFC 6238 with HMAC-SHA-1, 6 digits: the code of time step `step`.
pub fn code(secret: &str, step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&base32_decode(secret)).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

pub fn now_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

#[test]
fn the_code_function_follows_rfc_6238() {
    // Appendix B: the ASCII secret "12345678901234567890", the last six
    // of the eight digits printed there.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(code(secret, 59 / 30), "287082");
    assert_eq!(code(secret, 1_111_111_109 / 30), "081804");
    assert_eq!(code(secret, 2_000_000_000 / 30), "279037");
}

fn log_in_with(app: &TestApp, email: &str, password: &str, totp: Option<&str>) -> (u16, String) {
    let mut fields = vec![("email", email), ("password", password)];
    if let Some(totp) = totp {
        fields.push(("totp", totp));
    }
    let reply = app.send("POST", "/sessions", crate::common::Format::Form, &fields);
    let message = reply.json()["message"].as_str().unwrap_or("").to_owned();
    (reply.status, message)
}

/// An account with a confirmed second factor: its session, secret, the
/// step its confirmation used, and its recovery codes.
struct Enrolled {
    session: String,
    secret: String,
    step: u64,
    recovery: Vec<String>,
}

fn enrol(app: &TestApp, email: &str, password: &str) -> Enrolled {
    let session = app.signed_in(email, password);
    let reply = app.send_in(&session, "POST", "/totp", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let secret = reply.json()["secret"].as_str().unwrap().to_owned();
    let step = now_step();
    let reply = app.send_in(&session, "PUT", "/totp", &[("code", &code(&secret, step))]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let recovery = reply.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Enrolled {
        session,
        secret,
        step,
        recovery,
    }
}

fn enrolment_asks_a_first_code_then_every_login_asks_one() {
    let app = TestApp::spawn();
    let session = app.signed_in("ann@x.io", "pw");
    let account = |app: &TestApp| app.send_in(&session, "GET", "/account", &[]).json();
    assert_eq!(account(&app)["totp_enabled"], false);

    let reply = app.send_in(&session, "POST", "/totp", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert_eq!(base32_decode(&secret).len(), 20);
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/authd:ann%40x.io?"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=authd"), "{uri}");

    // Pending: logins ask nothing yet, and a wrong code enables nothing.
    assert_eq!(log_in_with(&app, "ann@x.io", "pw", None).0, 200);
    let step = now_step();
    let wrong = format!(
        "{:06}",
        (code(&secret, step).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let reply = app.send_in(&session, "PUT", "/totp", &[("code", &wrong)]);
    assert_eq!(
        (reply.status, reply.message()),
        (403, "invalid totp code".into())
    );
    assert_eq!(account(&app)["totp_enabled"], false);

    let reply = app.send_in(&session, "PUT", "/totp", &[("code", &code(&secret, step))]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let codes = reply.json()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10);
    for c in &codes {
        let c = c.as_str().unwrap();
        assert_eq!(c.len(), 19, "{c}");
        assert!(
            c.split('-').all(|g| g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))),
            "{c}"
        );
    }
    assert_eq!(account(&app)["totp_enabled"], true);
    let reply = app.send_in(&session, "POST", "/totp", &[]);
    assert_eq!(
        (reply.status, reply.message()),
        (403, "totp already enabled".into())
    );
    // Nothing pending any more: a code confirms nothing.
    let reply = app.send_in(
        &session,
        "PUT",
        "/totp",
        &[("code", &code(&secret, step + 1))],
    );
    assert_eq!(
        (reply.status, reply.message()),
        (403, "invalid totp code".into())
    );

    // The password first: a wrong one says nothing of the second factor.
    assert_eq!(
        log_in_with(&app, "ann@x.io", "nope", None),
        (401, "wrong email or password".into())
    );
    assert_eq!(
        log_in_with(&app, "ann@x.io", "pw", None),
        (401, "totp required".into())
    );
    // The confirmation's step is spent; the next one (one step of drift)
    // works, once.
    assert_eq!(
        log_in_with(&app, "ann@x.io", "pw", Some(&code(&secret, step))),
        (401, "invalid totp code".into())
    );
    let next = code(&secret, step + 1);
    assert_eq!(log_in_with(&app, "ann@x.io", "pw", Some(&next)).0, 200);
    assert_eq!(
        log_in_with(&app, "ann@x.io", "pw", Some(&next)),
        (401, "invalid totp code".into())
    );
    // A code far from now never works.
    assert_eq!(
        log_in_with(&app, "ann@x.io", "pw", Some(&code(&secret, step + 5))).0,
        401
    );
}

fn recovery_codes_work_once_each_in_any_spelling() {
    let app = TestApp::spawn_with(|c| {
        c.delivery = Some(authd::delivery::Channel::Outbox);
        c.delivery_settings.links_to_listener = true;
    });
    let enrolled = enrol(&app, "ann@x.io", "pw");
    let first = &enrolled.recovery[0];
    assert_eq!(log_in_with(&app, "ann@x.io", "pw", Some(first)).0, 200);
    assert_eq!(
        log_in_with(&app, "ann@x.io", "pw", Some(first)),
        (401, "invalid totp code".into())
    );
    let loose = enrolled.recovery[1].replace('-', "").to_uppercase();
    assert_eq!(log_in_with(&app, "ann@x.io", "pw", Some(&loose)).0, 200);
    let user =
        authd::store::keyword::find_user_by(app.running.store(), "email", "ann@x.io").unwrap();
    assert_eq!(user.totp.unwrap().recovery.len(), 8);
    // Each use is told to the address.
    let kinds = caught_kinds(&app, &["recovery_code_used"]);
    let used = kinds.iter().filter(|k| *k == "recovery_code_used").count();
    assert!(used >= 1, "{kinds:?}");
}

/// "totp required" is no failed attempt (the password was right), so it
/// never backs the account off; wrong codes are, and do.
fn wrong_codes_count_as_failed_logins_and_a_missing_one_does_not() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 2);
    let enrolled = enrol(&app, "ann@x.io", "pw");
    for _ in 0..6 {
        assert_eq!(
            log_in_with(&app, "ann@x.io", "pw", None),
            (401, "totp required".into())
        );
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(log_in_with(&app, "ann@x.io", "pw", Some("000000")).0);
    }
    assert_eq!(statuses[..2], [401, 401], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    drop(enrolled);
}

/// A right password without a code lifts no backoff on an account with a
/// second factor: otherwise a session holder who knows the password could
/// wipe the failures wrong codes count (`PUT /password` between guesses)
/// and guess codes without end.
fn the_password_alone_does_not_clear_failed_codes() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 2);
    let enrolled = enrol(&app, "ann@x.io", "pw");
    let session = &enrolled.session;
    let guess = |password: &str| {
        app.send_in(
            session,
            "DELETE",
            "/totp",
            &[("password", password), ("code", "000000")],
        )
        .status
    };
    assert_eq!(guess("pw"), 401);
    let change = [("password", "pw"), ("new_password", "pw2")];
    assert_eq!(
        app.send_in(session, "PUT", "/password", &change).status,
        200
    );
    assert_eq!(guess("pw2"), 401);
    assert_eq!(guess("pw2"), 429);
}

/// Racing logins with one code: exactly one gets a session.
fn one_code_opens_one_session_under_a_race() {
    let app = Arc::new(TestApp::spawn_with(|c| {
        c.threads = 16;
        c.limits.hashes_per_address = 16;
        c.limits.login_success_burst = 100;
        c.limits.login_free_failures = 100;
    }));
    let enrolled = enrol(&app, "ann@x.io", "pw");
    let next = code(&enrolled.secret, enrolled.step + 1);
    let client = Arc::clone(&app);
    let statuses = all_at_once(8, move |_| {
        log_in_with(&client, "ann@x.io", "pw", Some(&next)).0
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 401),
        "{statuses:?}"
    );
}

/// The kinds of the messages the dev outbox caught, once `want` are
/// among them (the delivery worker catches them a moment after).
fn caught_kinds(app: &TestApp, want: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = app
            .running
            .store()
            .caught()
            .unwrap()
            .iter()
            .map(|c| c.message.kind.name().to_owned())
            .collect();
        if want.iter().all(|w| kinds.iter().any(|k| k == w)) {
            return kinds;
        }
        assert!(std::time::Instant::now() < deadline, "{kinds:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn turning_it_off_takes_the_password_and_a_code() {
    let app = TestApp::spawn_with(|c| {
        c.delivery = Some(authd::delivery::Channel::Outbox);
        c.delivery_settings.links_to_listener = true;
    });
    let enrolled = enrol(&app, "ann@x.io", "pw");
    let session = &enrolled.session;
    let next = code(&enrolled.secret, enrolled.step + 1);
    let turn_off = |fields: &[(&str, &str)]| {
        let reply = app.send_in(session, "DELETE", "/totp", fields);
        (reply.status, reply.message())
    };
    let wrong_password = (401, "wrong password".to_owned());
    let wrong_code = (401, "invalid totp code".to_owned());
    assert_eq!(
        turn_off(&[("password", "nope"), ("code", &next)]),
        wrong_password
    );
    assert_eq!(turn_off(&[("password", "pw"), ("code", "123")]), wrong_code);
    assert_eq!(turn_off(&[("password", "pw")]), wrong_code);
    let off = [("password", "pw"), ("code", next.as_str())];
    assert_eq!(turn_off(&off), (200, "totp disabled".to_owned()));
    // The address is told of both changes.
    caught_kinds(&app, &["totp_enabled", "totp_disabled"]);
    assert_eq!(log_in_with(&app, "ann@x.io", "pw", None).0, 200);
    assert_eq!(turn_off(&off), (403, "totp not enabled".to_owned()));
    // Without a session: 403, as every signed-in route.
    let reply = app.send("POST", "/totp", crate::common::Format::Json, &[]);
    assert_eq!(reply.status, 403);
}

/// The secret rests sealed: the stored bytes are not the secret, and a
/// store copied without its key (another server key) cannot check codes.
fn the_secret_is_sealed_in_the_store() {
    let app = TestApp::spawn();
    let enrolled = enrol(&app, "ann@x.io", "pw");
    let user =
        authd::store::keyword::find_user_by(app.running.store(), "email", "ann@x.io").unwrap();
    let sealed = user.totp.unwrap().sealed_secret;
    let secret = base32_decode(&enrolled.secret);
    assert!(sealed.len() > secret.len());
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
}

/// An export carries the second factor (its secret in the clear, the step
/// used, the unused recovery codes) and an import into a store with
/// another server key seals it again: the same codes keep working, the
/// spent ones stay spent. `authd user totp-disable` turns it off.
fn export_and_import_keep_the_second_factor() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    let server = Proc::start(&old, &[]);
    let form = "email=ann%40x.io&password=pw";
    assert_eq!(server.post("/users", form).0, 200);
    let session = server.log_in("ann@x.io", "pw").unwrap();
    let reply = server.send("POST", "/totp", "", Some(&session));
    assert_eq!(reply.status, 200, "{reply:?}");
    let secret = reply.json()["secret"].as_str().unwrap().to_owned();
    let step = now_step();
    let form = format!("code={}", code(&secret, step));
    let reply = server.send("PUT", "/totp", &form, Some(&session));
    assert_eq!(reply.status, 200, "{reply:?}");
    let recovery: Vec<String> = reply.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let with_recovery =
        |code: &str| format!("email=ann%40x.io&password=pw&totp={}", urlencode(code));
    assert_eq!(
        server.post("/sessions", &with_recovery(&recovery[0])).0,
        200
    );
    drop(server);

    let (code_, text, err) = run_authd(&old, &["export"], None);
    assert_eq!(code_, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["password_normalized"], true, "{text}");
    assert_eq!(line["totp"]["secret"], secret.as_str(), "{text}");
    assert_eq!(line["totp"]["enabled"], true);
    assert_eq!(line["totp"]["last_step"], step);
    assert_eq!(line["totp"]["recovery"].as_array().unwrap().len(), 9);

    let new = tmp.path().join("new");
    let (code_, _, err) = run_authd(&new, &["import", "-"], Some(&text));
    assert_eq!(code_, 0, "{err}");
    let server = Proc::start(&new, &[]);
    let form = "email=ann%40x.io&password=pw";
    let (status, body) = server.post("/sessions", form);
    assert!(status == 401 && body.contains("totp required"), "{body}");
    assert_eq!(
        server
            .post("/sessions", &with_recovery(&code(&secret, step)))
            .0,
        401
    );
    assert_eq!(
        server.post("/sessions", &with_recovery(&recovery[0])).0,
        401
    );
    assert_eq!(
        server.post("/sessions", &with_recovery(&recovery[1])).0,
        200
    );
    assert_eq!(
        server
            .post("/sessions", &with_recovery(&code(&secret, step + 1)))
            .0,
        200
    );
    drop(server);

    let (code_, out, err) = run_authd(&new, &["user", "totp-disable", "ann@x.io"], None);
    assert_eq!(code_, 0, "{err}");
    assert!(out.contains("second factor turned off"), "{out}");
    let (code_, _, err) = run_authd(&new, &["user", "totp-disable", "ann@x.io"], None);
    assert_eq!(code_, 1, "{err}");
    assert!(err.contains("has no second factor"), "{err}");
    let server = Proc::start(&new, &[]);
    assert_eq!(server.post("/sessions", form).0, 200);
}

/// A bad second factor in an import line is refused with its line
/// number, and nothing is imported.
fn a_bad_second_factor_is_refused_at_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let hash = "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie";
    let input = format!(
        "{{\"email\":\"a@x.io\",\"hashed_password\":\"{hash}\"}}\n\
         {{\"email\":\"b@x.io\",\"hashed_password\":\"{hash}\",\"totp\":{{\"secret\":\"SHORT\",\"enabled\":true}}}}\n\
         {{\"email\":\"c@x.io\",\"hashed_password\":\"{hash}\",\"totp\":{{\"secret\":\"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\",\"enabled\":true,\"recovery\":[\"zz\"]}}}}\n"
    );
    let (code_, _, err) = run_authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code_, 1, "{err}");
    assert!(err.contains("line 2: totp.secret is not base32"), "{err}");
    assert!(err.contains("line 3: totp.recovery holds a value"), "{err}");
}

/// New passwords are hashed in NFC: one typed composed logs in typed
/// decomposed, and the other way round.
fn passwords_are_one_whatever_their_unicode_form() {
    let app = TestApp::spawn();
    assert_eq!(app.register("a@x.io", "caf\u{e9}-au-lait").status, 200);
    assert_eq!(app.log_in("a@x.io", "cafe\u{301}-au-lait").status, 200);
    assert_eq!(app.log_in("a@x.io", "caf\u{e9}-au-lait").status, 200);
    assert_eq!(app.log_in("a@x.io", "cafe-au-lait").status, 401);
    let user = authd::store::keyword::find_user_by(app.running.store(), "email", "a@x.io").unwrap();
    assert!(user.password_normalized);
}

/// A hash of a password as typed (imported, or made before authd
/// normalised) is checked against the password as typed, once, and
/// replaced by a hash of its NFC form at the next login.
fn hashes_of_the_typed_form_move_to_nfc_at_login() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let typed = "cafe\u{301}";
    let hash = bcrypt::hash(typed, 4).unwrap();
    let input = format!("{{\"email\":\"a@x.io\",\"hashed_password\":\"{hash}\"}}\n");
    let (code_, _, err) = run_authd(&dir, &["import", "-"], Some(&input));
    assert_eq!(code_, 0, "{err}");
    let server = Proc::start(&dir, &[]);
    // Not normalised: the composed spelling is another password.
    assert_eq!(server.log_in("a@x.io", "caf\u{e9}"), Err(401));
    assert!(server.log_in("a@x.io", typed).is_ok());
    // Rehashed normalised: both spellings now.
    assert!(server.log_in("a@x.io", "caf\u{e9}").is_ok());
    assert!(server.log_in("a@x.io", typed).is_ok());
    drop(server);
    let (_, text, _) = run_authd(&dir, &["export"], None);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["password_normalized"], true, "{text}");
    assert_ne!(line["hashed_password"], hash.as_str());
}

/// `authd key rotate` drops the previous server key: a secret still
/// sealed under it is sealed again first, so two rotations in a row leave
/// every second factor working.
fn second_factors_survive_key_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let server = Proc::start(&dir, &[]);
    assert_eq!(server.post("/users", "email=ann%40x.io&password=pw").0, 200);
    let session = server.log_in("ann@x.io", "pw").unwrap();
    let reply = server.send("POST", "/totp", "", Some(&session));
    let secret = reply.json()["secret"].as_str().unwrap().to_owned();
    let step = now_step();
    let form = format!("code={}", code(&secret, step));
    assert_eq!(
        server.send("PUT", "/totp", &form, Some(&session)).status,
        200
    );
    drop(server);
    let (status, out, err) = run_authd(&dir, &["key", "rotate"], None);
    assert_eq!(status, 0, "{err}");
    assert!(!out.contains("sealed again"), "{out}");
    let (status, out, err) = run_authd(&dir, &["key", "rotate"], None);
    assert_eq!(status, 0, "{err}");
    assert!(
        out.contains("1 second-factor secrets sealed under the key it drops"),
        "{out}"
    );
    let server = Proc::start(&dir, &[]);
    let login = format!(
        "email=ann%40x.io&password=pw&totp={}",
        code(&secret, step + 1)
    );
    let (status, body) = server.post("/sessions", &login);
    assert_eq!(status, 200, "{body}");
}

crate::on_every_store!(
    second_factors_survive_key_rotations,
    the_password_alone_does_not_clear_failed_codes,
    enrolment_asks_a_first_code_then_every_login_asks_one,
    recovery_codes_work_once_each_in_any_spelling,
    wrong_codes_count_as_failed_logins_and_a_missing_one_does_not,
    one_code_opens_one_session_under_a_race,
    turning_it_off_takes_the_password_and_a_code,
    the_secret_is_sealed_in_the_store,
    export_and_import_keep_the_second_factor,
    a_bad_second_factor_is_refused_at_import,
    passwords_are_one_whatever_their_unicode_form,
    hashes_of_the_typed_form_move_to_nfc_at_login,
);
