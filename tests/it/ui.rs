//! The hosted pages under `/ui/`, through the raw client: the headers
//! every page carries (a CSP without script, no framing, the referrer
//! policy, no caching), the checks every form passes first (its
//! anti-forgery token, this server's origin), that a mailed link's GET
//! spends nothing, `return_to` (no open redirect), the dev outbox page
//! for this machine only, throttling shown with `Retry-After`, and the
//! production profile (off by default; when on, no page tells whether an
//! address has an account). The flows themselves run in a real browser:
//! tests/it/ui_browser.rs.

use std::collections::BTreeMap;

use authd::config::{Config, Profile};
use authd::delivery::Channel;
use authd::policy::PasswordPolicy;

use crate::common::page_checks;
use crate::common::process::run;
use crate::common::raw::{self, Answer};
use crate::common::webdriver::find_program;
use crate::common::{encode, urlencode, Format, TestApp};

const PASSWORD: &str = "correct horse battery staple";

/// A browser's cookie jar against `app`, through the raw client.
struct Jar<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
    /// Extra headers sent with every request (`Origin`, `Host`...).
    extra: Vec<(&'static str, String)>,
}

impl<'a> Jar<'a> {
    fn new(app: &'a TestApp) -> Jar<'a> {
        Jar {
            app,
            cookies: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    fn keep(&mut self, answer: &Answer) {
        for header in answer.all("Set-Cookie") {
            let pair = header.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || header.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }

    fn headers(&self) -> Vec<(&str, String)> {
        let mut headers = self.extra.clone();
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.push(("Cookie", cookie));
        }
        headers
    }

    fn get(&mut self, path: &str) -> Answer {
        let answer = self.app.request_with("GET", path, &self.headers(), b"");
        self.keep(&answer);
        answer
    }

    /// Posts `fields` as a form, as is (no token added).
    fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let (content_type, body) = encode(Format::Form, fields);
        let mut headers = self.headers();
        headers.push(("Content-Type", content_type));
        let answer = self.app.request_with("POST", path, &headers, &body);
        self.keep(&answer);
        answer
    }

    /// Opens `page`, then posts `fields` to `action` with the token of
    /// the page's first form.
    fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
        let shown = self.get(page);
        let token = form_token(&shown);
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(action, &all)
    }
}

/// The anti-forgery token of the page's first form.
fn form_token(page: &Answer) -> String {
    let html = page.text();
    let start = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no form token: {page:?}"))
        + "name=\"csrf\" value=\"".len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The path of a 303's `Location`.
fn location(answer: &Answer) -> &str {
    assert_eq!(answer.status, 303, "{answer:?}");
    answer.header("Location").unwrap_or_default()
}

fn dev_with_outbox(c: &mut Config) {
    c.delivery = Some(Channel::Outbox);
    c.delivery_settings.links_to_listener = true;
}

fn production(c: &mut Config) {
    c.profile = Profile::Production;
    c.delivery = Some(Channel::Log);
    c.password_policy = PasswordPolicy::PRODUCTION;
    c.bcrypt_cost = 10;
}

#[test]
fn every_page_carries_the_security_headers_and_no_script() {
    let app = TestApp::spawn_with(dev_with_outbox);
    let tidy = find_program(&["tidy"], &[]);
    let mut jar = Jar::new(&app);
    for (path, status, referrer) in [
        ("/ui/sign-in", 200, "same-origin"),
        ("/ui/sign-up", 200, "same-origin"),
        ("/ui/forgot-password", 200, "same-origin"),
        (
            "/ui/reset-password?email=a%40b.io&token=x",
            200,
            "no-referrer",
        ),
        ("/ui/reset-password", 200, "no-referrer"),
        (
            "/ui/verify-email?email=a%40b.io&token=x",
            200,
            "no-referrer",
        ),
        ("/ui/outbox", 200, "same-origin"),
        ("/ui/nowhere", 404, "same-origin"),
        ("/ui/account/password", 405, "same-origin"),
        ("/ui/account", 303, "same-origin"),
        ("/ui", 303, "same-origin"),
    ] {
        let page = jar.get(path);
        assert_eq!(page.status, status, "{path}: {page:?}");
        let policy = page.only("Content-Security-Policy").unwrap_or_default();
        for part in [
            "default-src 'none'",
            "style-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{path}: {policy}");
        }
        assert!(!policy.contains("script"), "{path}: {policy}");
        assert_eq!(page.only("Referrer-Policy"), Some(referrer), "{path}");
        assert_eq!(page.only("X-Frame-Options"), Some("DENY"), "{path}");
        assert_eq!(page.only("Cache-Control"), Some("no-store"), "{path}");
        // Never readable from another origin.
        assert!(page.header("Access-Control-Allow-Origin").is_none());
        if status != 303 {
            assert_eq!(
                page.only("Content-Type"),
                Some("text/html; charset=utf-8"),
                "{path}"
            );
            assert!(!page.text().to_ascii_lowercase().contains("<script"));
            if let Some(tidy) = &tidy {
                page_checks::tidy_clean(tidy, path, page.text());
            }
        }
    }
    assert_eq!(
        jar.get("/ui/nowhere").header("Allow"),
        None,
        "a 404 has no Allow"
    );
    assert_eq!(
        jar.get("/ui/account/password").header("Allow"),
        Some("POST")
    );
    // The anti-forgery cookie: set once, HttpOnly, Lax.
    let fresh = app.request_with("GET", "/ui/sign-in", &[], b"");
    let cookie = fresh.set_cookie("authd_csrf").unwrap_or_default();
    assert!(
        cookie.ends_with("; HttpOnly; SameSite=Lax; Path=/"),
        "{cookie}"
    );
    assert!(jar.get("/ui/sign-in").set_cookie("authd_csrf").is_none());
    let style = jar.get("/ui/style.css");
    assert_eq!(style.status, 200);
    assert_eq!(style.only("Content-Type"), Some("text/css; charset=utf-8"));
}

/// HEAD of a page is its GET without a body: the same status and
/// headers, nothing spent.
#[test]
fn head_answers_a_page_without_its_body() {
    let app = TestApp::spawn();
    for path in [
        "/ui/sign-in",
        "/ui/style.css",
        "/ui/reset-password?email=a%40b.io&token=x",
    ] {
        let (answer, after) = raw::head(app.running.addr(), path, &[], raw::IO_LIMIT)
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert!(after.is_empty(), "HEAD {path} sent a body");
        assert!(answer.text().is_empty(), "{path}");
    }
    let (answer, _) = raw::head(app.running.addr(), "/ui/sign-out", &[], raw::IO_LIMIT).unwrap();
    assert_eq!(answer.status, 405);
}

#[test]
fn forms_pass_only_with_their_token_and_from_this_origin() {
    let app = TestApp::spawn();
    let email = "forms@example.com";
    let fields = [("email", email), ("password", PASSWORD)];
    // No cookie, no token: the form is shown again with a fresh one.
    let mut jar = Jar::new(&app);
    let refused = jar.post_raw("/ui/sign-up", &fields);
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.text().contains("This form has expired"));
    assert!(refused.text().contains(email), "what was typed is kept");
    // A token of another browser's cookie.
    let mut other = Jar::new(&app);
    let theirs = form_token(&other.get("/ui/sign-up"));
    jar.get("/ui/sign-up");
    let forged = jar.post_raw("/ui/sign-up", &[("csrf", &theirs), fields[0], fields[1]]);
    assert_eq!(forged.status, 403, "{forged:?}");
    // The right token from another site's page.
    jar.extra = vec![("Origin", "https://evil.example".to_owned())];
    let cross = jar.submit("/ui/sign-up", "/ui/sign-up", &fields);
    assert_eq!(cross.status, 403, "{cross:?}");
    assert!(cross.text().contains("sent from another site"));
    for origin in ["null", "http://localhost:1", "https://localhost"] {
        jar.extra = vec![("Origin", origin.to_owned())];
        let reply = jar.submit("/ui/sign-up", "/ui/sign-up", &fields);
        assert_eq!(reply.status, 403, "{origin}: {reply:?}");
    }
    assert_eq!(app.user_count(), 0);
    // This server's own origin (the raw client names Host: localhost).
    jar.extra = vec![("Origin", "http://localhost".to_owned())];
    let created = jar.submit("/ui/sign-up", "/ui/sign-up", &fields);
    assert_eq!(location(&created), "/ui/sign-in?notice=registered");
    assert_eq!(app.user_count(), 1);
    // A token bound to no session is worth nothing once signed in.
    let before = form_token(&jar.get("/ui/sign-in"));
    let signed_in = jar.post_raw("/ui/sign-in", &[("csrf", &before), fields[0], fields[1]]);
    assert_eq!(location(&signed_in), "/ui/account");
    let stale = jar.post_raw(
        "/ui/account/delete",
        &[("csrf", &before), ("password", PASSWORD)],
    );
    assert_eq!(stale.status, 403, "{stale:?}");
    assert_eq!(app.user_count(), 1);
    // Origin null passes only on a mailed link's page (no-referrer), and
    // only with the browser's word that the form is same-origin.
    jar.extra = vec![("Origin", "null".to_owned())];
    let reset = "/ui/reset-password?email=forms%40example.com&token=x";
    let spoofed = jar.submit(
        reset,
        "/ui/reset-password",
        &[("email", email), ("token", "x"), ("new_password", "x")],
    );
    assert!(
        spoofed.text().contains("sent from another site"),
        "{spoofed:?}"
    );
    jar.extra.push(("Sec-Fetch-Site", "same-origin".to_owned()));
    let own = jar.submit(
        reset,
        "/ui/reset-password",
        &[("email", email), ("token", "x"), ("new_password", "new-pw")],
    );
    assert_eq!(own.status, 403, "{own:?}");
    assert!(own.text().contains("This link is invalid"), "{own:?}");
    let elsewhere = jar.submit("/ui/account", "/ui/sign-out", &[]);
    assert!(
        elsewhere.text().contains("sent from another site"),
        "{elsewhere:?}"
    );
}

#[test]
fn a_mailed_link_spends_its_token_only_when_its_button_is_pressed() {
    let app = TestApp::spawn();
    let email = "links@example.com";
    assert_eq!(app.register(email, PASSWORD).status, 200);
    let mut jar = Jar::new(&app);

    // A reset link (the dev API hands the token back).
    let token = app.reset_token(email).json()["reset_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = format!(
        "/ui/reset-password?email={}&token={token}",
        urlencode(email)
    );
    for _ in 0..3 {
        let opened = jar.get(&link);
        assert_eq!(opened.status, 200);
        assert!(opened.text().contains(&token), "the form carries it");
    }
    let weak = jar.submit(
        &link,
        "/ui/reset-password",
        &[("email", email), ("token", &token), ("new_password", "")],
    );
    assert_eq!(weak.status, 400, "{weak:?}");
    assert!(weak.text().contains("Enter a password"));
    let reset = jar.submit(
        &link,
        "/ui/reset-password",
        &[
            ("email", email),
            ("token", &token),
            ("new_password", "new phrase"),
        ],
    );
    assert_eq!(location(&reset), "/ui/sign-in?notice=password-reset");
    assert_eq!(app.log_in(email, "new phrase").status, 200);
    let again = jar.submit(
        &link,
        "/ui/reset-password",
        &[
            ("email", email),
            ("token", &token),
            ("new_password", "third phrase"),
        ],
    );
    assert_eq!(again.status, 403, "{again:?}");
    assert!(again.text().contains("invalid, used or expired"));

    // A confirmation link.
    let token = app
        .send("POST", "/verify_email", Format::Form, &[("email", email)])
        .json()["verify_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = format!("/ui/verify-email?email={}&token={token}", urlencode(email));
    assert_eq!(jar.get(&link).status, 200);
    assert_eq!(jar.get(&link).status, 200);
    let confirmed = jar.submit(
        &link,
        "/ui/verify-email",
        &[("email", email), ("token", &token)],
    );
    assert_eq!(
        location(&confirmed),
        "/ui/verify-email?notice=email-verified"
    );
    let done = jar.get("/ui/verify-email?notice=email-verified");
    assert!(done.text().contains("Your email address is confirmed."));
    let used = jar.submit(
        &link,
        "/ui/verify-email",
        &[("email", email), ("token", &token)],
    );
    assert_eq!(used.status, 403);
}

#[test]
fn return_to_leads_only_to_paths_and_known_origins() {
    let app =
        TestApp::spawn_with(|c| c.allowed_origins = vec!["https://app.example.com".to_owned()]);
    let email = "back@example.com";
    assert_eq!(app.register(email, PASSWORD).status, 200);
    for (given, landing) in [
        ("/app/welcome?x=1", "/app/welcome?x=1"),
        (
            "https://app.example.com/welcome",
            "https://app.example.com/welcome",
        ),
        ("http://localhost/profile", "http://localhost/profile"),
        ("//evil.example/", "/ui/account"),
        ("/\\evil.example", "/ui/account"),
        ("https://evil.example/", "/ui/account"),
        ("http://app.example.com/", "/ui/account"),
        ("https://user@app.example.com/", "/ui/account"),
        ("javascript:alert(1)", "/ui/account"),
    ] {
        let mut jar = Jar::new(&app);
        let page = format!("/ui/sign-in?return_to={}", urlencode(given));
        let shown = jar.get(&page);
        assert!(shown.text().contains("name=\"return_to\""), "{given}");
        let reply = jar.submit(
            &page,
            "/ui/sign-in",
            &[
                ("email", email),
                ("password", PASSWORD),
                ("return_to", given),
            ],
        );
        assert_eq!(location(&reply), landing, "{given}");
        // The session is the cookie; nothing is added to the URL.
        assert!(reply.set_cookie("session_id").is_some());
        // Signed in already: the page goes straight on.
        assert_eq!(location(&jar.get(&page)), landing, "{given}");
    }
    // The sign-up page passes it on to the sign-in page.
    let mut jar = Jar::new(&app);
    let created = jar.submit(
        "/ui/sign-up?return_to=%2Fapp",
        "/ui/sign-up",
        &[
            ("email", "new@example.com"),
            ("password", PASSWORD),
            ("return_to", "/app"),
        ],
    );
    assert_eq!(
        location(&created),
        "/ui/sign-in?notice=registered&return_to=%2Fapp"
    );
}

#[test]
fn the_outbox_page_answers_this_machine_only() {
    let app = TestApp::spawn_with(dev_with_outbox);
    let page = |headers: &[(&str, String)]| app.request_with("GET", "/ui/outbox", headers, b"");
    assert_eq!(page(&[]).status, 200);
    // A DNS name rebound to 127.0.0.1: its Host is that name.
    let rebound = raw::exchange(
        app.running.addr(),
        &raw::request(
            "GET",
            "/ui/outbox",
            &[("Host", "rebound.example:5000"), ("Connection", "close")],
            b"",
        ),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(rebound.status, 403, "{rebound:?}");
    for refused in [
        vec![("X-Forwarded-For", "203.0.113.9".to_owned())],
        vec![("Forwarded", "for=203.0.113.9".to_owned())],
    ] {
        let reply = page(&refused);
        assert_eq!(reply.status, 403, "{refused:?}: {reply:?}");
        assert!(!reply.text().contains("<article"));
    }
    // Its messages, links clickable, never a token elsewhere on the page.
    assert_eq!(app.register("box@example.com", PASSWORD).status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let shown = page(&[]);
        if shown.text().contains("<a href=\"http://") {
            assert!(shown
                .text()
                .contains("/ui/verify-email?email=box%40example.com&amp;token="));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{shown:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_throttled_sign_in_says_when_to_try_again() {
    let app = TestApp::spawn_with(|c| c.limits.login_free_failures = 1);
    let email = "slow@example.com";
    assert_eq!(app.register(email, PASSWORD).status, 200);
    let mut jar = Jar::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = jar.submit(
            "/ui/sign-in",
            "/ui/sign-in",
            &[("email", email), ("password", "wrong")],
        );
        statuses.push(reply.status);
        if reply.status == 429 {
            let wait = reply.header("Retry-After").unwrap_or_default().to_owned();
            assert!(wait.parse::<u64>().is_ok_and(|s| s > 0), "{reply:?}");
            assert!(
                reply
                    .text()
                    .contains(&format!("Try again in {wait} seconds")),
                "{reply:?}"
            );
            assert!(reply.text().contains(email), "what was typed is kept");
            return;
        }
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    panic!("never throttled: {statuses:?}");
}

#[test]
fn production_serves_no_pages_unless_asked_and_then_tells_no_account_apart() {
    let off = TestApp::spawn_with(production);
    let reply = off.request("GET", "/ui/sign-in", None, b"", None);
    assert_eq!(
        (reply.status, reply.message()),
        (404, "not found".to_owned())
    );
    drop(off);

    let app = TestApp::spawn_with(|c| {
        production(c);
        c.ui = Some(true);
        c.limits.request_free = 1000;
    });
    let email = "prod@example.com";
    assert_eq!(app.register(email, PASSWORD).status, 200);
    let mut jar = Jar::new(&app);
    let page = jar.get("/ui/forgot-password");
    assert!(page
        .set_cookie("__Host-authd_csrf")
        .is_some_and(|c| c.contains("; Secure")));
    // A reset asked for an account and for no account: the same answer.
    let known = jar.submit(
        "/ui/forgot-password",
        "/ui/forgot-password",
        &[("email", email)],
    );
    let unknown = jar.submit(
        "/ui/forgot-password",
        "/ui/forgot-password",
        &[("email", "nobody@example.com")],
    );
    assert_eq!(location(&known), "/ui/forgot-password?notice=reset-sent");
    assert_eq!(location(&known), location(&unknown));
    let notice = jar.get(location(&known));
    assert!(notice.text().contains("If an account uses this address"));
    assert!(!notice.text().contains("outbox"));
    // A wrong password and an unknown address: one message.
    let wrong = jar.submit(
        "/ui/sign-in",
        "/ui/sign-in",
        &[("email", email), ("password", "nope")],
    );
    let nobody = jar.submit(
        "/ui/sign-in",
        "/ui/sign-in",
        &[("email", "nobody@example.com"), ("password", "nope")],
    );
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert!(wrong
        .text()
        .contains("The email address or password is wrong."));
    assert!(nobody
        .text()
        .contains("The email address or password is wrong."));
    // The dev outbox is not a production page.
    assert_eq!(jar.get("/ui/outbox").status, 404);
    // Signing in sets the production cookies.
    let signed_in = jar.submit(
        "/ui/sign-in",
        "/ui/sign-in",
        &[("email", email), ("password", PASSWORD)],
    );
    assert_eq!(location(&signed_in), "/ui/account");
    assert!(signed_in
        .set_cookie("__Host-session_id")
        .is_some_and(|c| c.contains("; Secure")));
    assert!(signed_in.set_cookie("__Host-authd_device").is_some());
    assert_eq!(jar.get("/ui/account").status, 200);
}

#[test]
fn the_ui_flag_reads_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, _, stderr) = run(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--ui",
        "maybe",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--ui"), "{stderr}");
    assert!(!std::path::Path::new(data).exists(), "a store was made");
    let off = TestApp::spawn_with(|c| c.ui = Some(false));
    assert_eq!(
        off.request("GET", "/ui/sign-in", None, b"", None).status,
        404
    );
}
