//! Device cookies (production): a browser that logged in before keeps its
//! own failure budget, so guesses from elsewhere never lock it out.
//!
//! Every server here allows two free failures and locks out at two, so a
//! lockout takes two wrong passwords; clients come from distinct 127.0.0.x
//! source addresses (the owner's browser, an attacker, a new browser).

use std::net::SocketAddr;

use crate::common::raw::{self, connect_with, Answer, Raw, FORM, IO_LIMIT};
use crate::common::{urlencode, TestApp};
use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

/// The device cookie's name, written out so that a renamed cookie fails.
const DEVICE: &str = "__Host-authd_device";
const STRONG: &str = "correct horse battery staple";
const OTHER_STRONG: &str = "another quite long passphrase";
const OWNER: &str = "127.0.0.2";
const ATTACKER: &str = "127.0.0.3";
const NEW_BROWSER: &str = "127.0.0.4";

/// The production profile, with two free failures and a lockout at two.
fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.delivery = Some(Channel::Log);
    c.password_policy = PasswordPolicy::PRODUCTION;
    // The production minimum.
    c.bcrypt_cost = 10;
    c.limits.login_free_failures = 2;
    c.limits.lockout_failures = 2;
}

/// POSTs the url-encoded `form` to `path` from `from` (a 127.0.0.x
/// address) on a connection of its own, presenting the device cookie
/// `device` if given.
fn post_from(addr: SocketAddr, from: &str, path: &str, form: &str, device: Option<&str>) -> Answer {
    let length = form.len().to_string();
    let cookie = device.map(|value| format!("{DEVICE}={value}"));
    let mut headers = vec![
        ("Host", "x"),
        ("Content-Type", FORM),
        ("Content-Length", length.as_str()),
        ("Connection", "close"),
    ];
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie));
    }
    let stream = connect_with(from.parse().unwrap(), addr, None, IO_LIMIT).unwrap();
    let mut raw = Raw::from(stream);
    raw.send(&raw::request("POST", path, &headers, form.as_bytes()))
        .unwrap();
    raw.answer(IO_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// `POST /sessions` from `from`, with the device cookie `device` if given.
fn log_in_at(
    addr: SocketAddr,
    from: &str,
    email: &str,
    password: &str,
    device: Option<&str>,
) -> Answer {
    let form = format!(
        "email={}&password={}",
        urlencode(email),
        urlencode(password)
    );
    post_from(addr, from, "/sessions", &form, device)
}

/// `POST /sessions` to `app`.
fn log_in(app: &TestApp, from: &str, email: &str, password: &str, device: Option<&str>) -> Answer {
    log_in_at(app.running.addr(), from, email, password, device)
}

/// The status of a login, for compact assertions.
fn status(app: &TestApp, from: &str, email: &str, password: &str, device: Option<&str>) -> u16 {
    log_in(app, from, email, password, device).status
}

/// The device cookie `reply` sets (fails the test without one).
fn device_of(reply: &Answer) -> String {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .cookie(DEVICE)
        .unwrap_or_else(|| panic!("no device cookie: {reply:?}"))
}

/// `value` with its character at `at` replaced by another of the alphabet.
fn altered(value: &str, at: usize) -> String {
    let mut bytes = value.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// A production server with `ann@x.io` registered and logged in once from
/// the owner's browser; returns the server and that browser's cookie.
fn with_owner() -> (TestApp, String) {
    let app = TestApp::spawn_with(production);
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let mine = device_of(&log_in(&app, OWNER, "ann@x.io", STRONG, None));
    (app, mine)
}

/// An attacker's guesses from elsewhere lock the account out for every
/// unknown device, the right password included, but not for the browser
/// the owner logged in with before.
fn the_owners_browser_logs_in_while_guesses_lock_out_unknown_devices() {
    let (app, mine) = with_owner();
    for _ in 0..2 {
        assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", None), 401);
    }
    let locked = log_in(&app, ATTACKER, "ann@x.io", "guess", None);
    assert_eq!(locked.status, 429, "{locked:?}");
    // A lockout, not a short delay: the whole window.
    let retry: u64 = locked.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry > 60, "{locked:?}");
    // Every unknown device is locked out, whatever its address or password.
    assert_eq!(status(&app, ATTACKER, "ann@x.io", STRONG, None), 429);
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, None), 429);
    assert_eq!(status(&app, NEW_BROWSER, "ann@x.io", STRONG, None), 429);
    // The owner's browser is not: its cookie is renewed (the same device).
    let reply = log_in(&app, OWNER, "ann@x.io", STRONG, Some(&mine));
    assert_eq!(device_of(&reply), mine);
    let session = app.session_of(&reply);
    assert_eq!(app.profile(Some(&session)).status, 200);
    // As without device cookies, a success ends the account's backoff.
    assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", None), 401);
}

/// A known device's failures count against its own budget: they back that
/// device off (and a success there clears them), while the account's
/// budget for unknown devices, and every other device, are untouched.
fn a_devices_own_failures_back_off_that_device_only() {
    let (app, mine) = with_owner();
    // A failure, then a success: the device's count starts again...
    assert_eq!(status(&app, OWNER, "ann@x.io", "typo", Some(&mine)), 401);
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&mine)), 200);
    // ...so two more failures are free, and then it is locked out.
    for _ in 0..2 {
        assert_eq!(status(&app, OWNER, "ann@x.io", "typo", Some(&mine)), 401);
    }
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&mine)), 429);
    // An unknown device still has the account's whole budget.
    assert_eq!(status(&app, NEW_BROWSER, "ann@x.io", "typo", None), 401);
    let reply = log_in(&app, NEW_BROWSER, "ann@x.io", STRONG, None);
    let theirs = device_of(&reply);
    assert_ne!(theirs, mine);
    // A success on another device does not lift this one's lockout...
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&mine)), 429);
    // ...and the new device has a budget of its own.
    for _ in 0..2 {
        assert_eq!(
            status(&app, NEW_BROWSER, "ann@x.io", "typo", Some(&theirs)),
            401
        );
    }
    assert_eq!(
        status(&app, NEW_BROWSER, "ann@x.io", STRONG, Some(&theirs)),
        429
    );
    // The account's budget for unknown devices was never touched.
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, None), 200);
}

/// The attacker's own device cookie (for their own account) is an
/// unknown device on anyone else's: it spends that account's shared
/// budget, and buys nothing.
fn a_cookie_for_another_account_is_an_unknown_device() {
    let (app, mine) = with_owner();
    assert_eq!(app.register("eve@x.io", OTHER_STRONG).status, 200);
    let eves = device_of(&log_in(&app, ATTACKER, "eve@x.io", OTHER_STRONG, None));
    for _ in 0..2 {
        assert_eq!(
            status(&app, ATTACKER, "ann@x.io", "guess", Some(&eves)),
            401
        );
    }
    assert_eq!(
        status(&app, ATTACKER, "ann@x.io", "guess", Some(&eves)),
        429
    );
    // ann's account is locked out for unknown devices...
    assert_eq!(status(&app, NEW_BROWSER, "ann@x.io", STRONG, None), 429);
    // ...and eve's device still has its own budget on eve's account.
    assert_eq!(
        status(&app, ATTACKER, "eve@x.io", OTHER_STRONG, Some(&eves)),
        200
    );
    // ann's own browser was never affected.
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&mine)), 200);
}

/// A cookie changed anywhere, made up, or of the wrong shape is an
/// unknown device: its failures spend the account's shared budget, not
/// the genuine device's, and a success with it gets a new device.
fn tampered_and_forged_cookies_are_unknown_devices() {
    let (app, mine) = with_owner();
    assert_eq!(mine.len(), 64);
    // Its first character (in the nonce) and its last (in the tag).
    let (nonce, tag) = (altered(&mine, 0), altered(&mine, 63));
    let made_up = "A".repeat(64);
    let misshapen = format!("{mine}A");
    assert_eq!(
        status(&app, ATTACKER, "ann@x.io", "guess", Some(&nonce)),
        401
    );
    assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", Some(&tag)), 401);
    for other in [&nonce, &tag, &made_up, &misshapen] {
        assert_eq!(
            status(&app, ATTACKER, "ann@x.io", STRONG, Some(other)),
            429,
            "{other}"
        );
    }
    // The genuine device had nothing counted against it.
    let reply = log_in(&app, OWNER, "ann@x.io", STRONG, Some(&mine));
    assert_eq!(device_of(&reply), mine);
    // A success with a tampered cookie is an unknown device's: a new one.
    let fresh = device_of(&log_in(&app, NEW_BROWSER, "ann@x.io", STRONG, Some(&tag)));
    assert_ne!(fresh, mine);
    assert_ne!(fresh, tag);
}

/// Production sets the device cookie on every successful login, with the
/// `__Host-` prefix, for a year; never on a failure. The dev profile, on
/// the same store (so the same server key), neither sets nor reads it.
fn the_cookie_is_issued_in_production_only() {
    let (app, mine) = with_owner();
    let reply = log_in(&app, OWNER, "ann@x.io", STRONG, None);
    let cookies = reply.all("Set-Cookie");
    assert_eq!(cookies.len(), 2, "{reply:?}");
    let header = reply.set_cookie(DEVICE).unwrap();
    let value = device_of(&reply);
    assert_ne!(value, mine);
    assert_eq!(value.len(), 64);
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(
        header,
        format!("{DEVICE}={value}; Max-Age=31536000; HttpOnly; SameSite=Lax; Path=/; Secure")
    );
    let failed = log_in(&app, OWNER, "ann@x.io", "typo", Some(&mine));
    assert_eq!(failed.status, 401);
    assert!(failed.all("Set-Cookie").is_empty(), "{failed:?}");

    let app = app.restart_with(|c| {
        c.limits.login_free_failures = 2;
        c.limits.lockout_failures = 2;
    });
    let with = log_in(&app, OWNER, "ann@x.io", STRONG, Some(&mine));
    let without = log_in(&app, OWNER, "ann@x.io", STRONG, None);
    for reply in [&with, &without] {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.all("Set-Cookie").len(), 1, "{reply:?}");
        assert!(reply.session_in(Profile::Dev).is_some(), "{reply:?}");
        assert!(
            reply
                .headers
                .iter()
                .all(|(_, v)| !v.contains("authd_device")),
            "{reply:?}"
        );
    }
    // The same answer with the cookie as without, but for the session.
    let names =
        |reply: &Answer| -> Vec<String> { reply.headers.iter().map(|(k, _)| k.clone()).collect() };
    assert_eq!(names(&with), names(&without));
    assert_eq!(with.body, without.body);
    // Nor is the cookie read: it does not spare its holder the lockout.
    for _ in 0..2 {
        assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", None), 401);
    }
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&mine)), 429);
}

/// During a key rotation a cookie signed with the previous key is still
/// the owner's device, and a login renews it under the current key; once
/// the previous key is retired, a cookie that was not renewed is unknown.
fn a_cookie_outlives_a_key_rotation_until_the_old_key_is_retired() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("key");
    let with_key = |text: String| {
        std::fs::write(&key_file, text).unwrap();
        let key_file = key_file.clone();
        move |c: &mut Config| {
            production(c);
            c.secret_key_file = Some(key_file);
        }
    };
    let (old_key, new_key) = ("11".repeat(32), "22".repeat(32));
    let app = TestApp::spawn_with(with_key(format!("{old_key}\n")));
    assert_eq!(app.register("ann@x.io", STRONG).status, 200);
    let old = device_of(&log_in(&app, OWNER, "ann@x.io", STRONG, None));

    let app = app.restart_with(with_key(format!("{new_key}\n{old_key}\n")));
    for _ in 0..2 {
        assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", None), 401);
    }
    assert_eq!(status(&app, ATTACKER, "ann@x.io", STRONG, None), 429);
    let renewed = device_of(&log_in(&app, OWNER, "ann@x.io", STRONG, Some(&old)));
    assert_ne!(renewed, old);

    let app = app.restart_with(with_key(format!("{new_key}\n")));
    for _ in 0..2 {
        assert_eq!(status(&app, ATTACKER, "ann@x.io", "guess", None), 401);
    }
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&old)), 429);
    assert_eq!(status(&app, OWNER, "ann@x.io", STRONG, Some(&renewed)), 200);
}

crate::on_every_store!(
    the_owners_browser_logs_in_while_guesses_lock_out_unknown_devices,
    a_devices_own_failures_back_off_that_device_only,
    a_cookie_for_another_account_is_an_unknown_device,
    tampered_and_forged_cookies_are_unknown_devices,
    the_cookie_is_issued_in_production_only,
    a_cookie_outlives_a_key_rotation_until_the_old_key_is_retired,
);

/// Several instances on one PostgreSQL database: a cookie one issued is
/// known to the others (the server key is shared), and a device's
/// failures are counted across them (its budget lives in the database).
mod instances {
    use super::*;
    use authd::server::{self, Running};

    fn a_device_is_one_device_on_every_instance() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        let start = || -> Running {
            let mut config = crate::common::test_config(&dir);
            production(&mut config);
            server::start(&config).expect("server starts")
        };
        let servers = [start(), start()];
        let (one, two) = (servers[0].addr(), servers[1].addr());
        let form = format!("email=ann%40x.io&password={}", urlencode(STRONG));
        assert_eq!(post_from(one, OWNER, "/users", &form, None).status, 200);
        let mine = device_of(&log_in_at(one, OWNER, "ann@x.io", STRONG, None));
        // The account is locked out for unknown devices on both...
        assert_eq!(log_in_at(one, ATTACKER, "ann@x.io", "a", None).status, 401);
        assert_eq!(log_in_at(two, ATTACKER, "ann@x.io", "b", None).status, 401);
        assert_eq!(
            log_in_at(one, ATTACKER, "ann@x.io", STRONG, None).status,
            429
        );
        // ...and the owner's browser logs in on the other instance.
        let reply = log_in_at(two, OWNER, "ann@x.io", STRONG, Some(&mine));
        assert_eq!(device_of(&reply), mine);
        // Its own failures on one instance count on the other.
        assert_eq!(
            log_in_at(one, OWNER, "ann@x.io", "c", Some(&mine)).status,
            401
        );
        assert_eq!(
            log_in_at(two, OWNER, "ann@x.io", "d", Some(&mine)).status,
            401
        );
        let locked = log_in_at(one, OWNER, "ann@x.io", STRONG, Some(&mine));
        assert_eq!(locked.status, 429, "{locked:?}");
        let locked = log_in_at(two, OWNER, "ann@x.io", STRONG, Some(&mine));
        assert_eq!(locked.status, 429, "{locked:?}");
    }

    crate::only_on_postgres!(a_device_is_one_device_on_every_instance);
}
