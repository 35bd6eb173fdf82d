//! The hosted pages in a real browser: headless Chromium driven through
//! ChromeDriver (both Debian's, paths given explicitly), one test running
//! every flow in turn (one browser at a time).
//!
//! Each flow end to end, as a person would click it: sign up, confirm
//! the address from the dev outbox's link, sign in (a wrong password
//! first), change the password, sign out everywhere else, change the
//! address, sign out, reset the password from the outbox's link, sign in
//! with `return_to` (ignored when foreign, followed when a path), delete
//! the account. Every page met is checked on the way: tidy on the bytes
//! served, axe-core in the browser (its CSP bypassed for this session
//! only), no horizontal scrolling at 320 px, and a screenshot under
//! `target/ui-screenshots/`. Then the whole sign-in flow again with
//! JavaScript off in the browser: the pages have no script to need.

use std::time::{Duration, Instant};

use serde_json::json;

use authd::delivery::Channel;

use crate::common::page_checks::{self, Tools};
use crate::common::webdriver::{Driver, Session};
use crate::common::TestApp;

const EMAIL: &str = "ann@example.com";
const NEW_EMAIL: &str = "ann.b@example.com";
const FIRST: &str = "first secret phrase";
const SECOND: &str = "second secret phrase";
const THIRD: &str = "third secret phrase";

/// The window the pages are seen in, and the phone width they must fit.
const WINDOW: (u32, u32) = (1000, 900);
const PHONE: u32 = 320;

/// The browser, the server, and what every page is checked with.
struct Visit<'a> {
    app: &'a TestApp,
    tools: &'a Tools,
    session: &'a Session<'a>,
    base: String,
    /// Screenshots taken, for the final count.
    shots: usize,
}

impl Visit<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn goto(&self, path: &str) {
        self.session.goto(&self.url(path));
    }

    /// The current page's path and query.
    fn path(&self) -> String {
        let url = self.session.url();
        url.strip_prefix(&self.base).unwrap_or(&url).to_owned()
    }

    fn assert_at(&self, path: &str) {
        assert_eq!(self.path(), path, "{}", self.session.text("main"));
    }

    /// Every check of the page the browser is on, named `name`: axe,
    /// tidy on the bytes a GET of its URL is served as (with the
    /// browser's cookies), no scrolling sideways at 320 px, a
    /// screenshot.
    fn check(&mut self, name: &str) {
        let what = format!("{name} ({})", self.path());
        page_checks::axe_clean(self.session, &self.tools.axe, &what);
        if self.session.url().starts_with(&self.base) {
            let cookies = self.session.cookie_header();
            let served = self
                .app
                .request_with("GET", &self.path(), &[("Cookie", cookies)], b"");
            if served.header("Content-Type") == Some("text/html; charset=utf-8") {
                page_checks::tidy_clean(&self.tools.tidy, &what, served.text());
            }
        }
        self.fits_a_phone(&what);
        self.shots += 1;
        page_checks::screenshot(self.session, &format!("{:02}-{name}", self.shots), WINDOW.0);
    }

    /// At 320 CSS pixels wide the page scrolls only down.
    fn fits_a_phone(&self, what: &str) {
        self.session.emulate_width(PHONE, 640);
        let width = self
            .session
            .execute("return document.documentElement.scrollWidth;", json!([]));
        self.session.reset_viewport();
        assert!(
            width.as_u64().is_some_and(|w| w <= u64::from(PHONE)),
            "{what} is {width} px wide at {PHONE} px"
        );
    }

    /// Submits the form `form` (its id) after filling `fields` (name,
    /// value).
    fn submit(&self, form: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            self.session
                .fill(&format!("#{form} [name=\"{name}\"]"), value);
        }
        self.session
            .click_on(&format!("#{form} button[type=\"submit\"]"));
    }

    /// The text of the page's notice or problem.
    fn said(&self) -> String {
        format!(
            "{}{}",
            self.session.text(".notice"),
            self.session.text(".problem")
        )
    }

    /// Opens the dev outbox until a link for `to` containing `path`
    /// shows (the delivery worker catches messages a moment after the
    /// request), and follows the newest.
    fn follow_outbox_link(&mut self, to: &str, path: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let needle = format!("{path}?email={}", crate::common::urlencode(to));
        loop {
            self.goto("/ui/outbox");
            let links = self.session.find_all("article.message pre a");
            let found = links.into_iter().find(|link| {
                self.session
                    .attribute(link, "href")
                    .is_some_and(|href| href.contains(&needle))
            });
            if let Some(link) = found {
                self.check(name);
                self.session.click(&link);
                return;
            }
            assert!(Instant::now() < deadline, "no {needle} link in the outbox");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sign_in(&self, email: &str, password: &str) {
        self.submit("sign-in", &[("email", email), ("password", password)]);
    }
}

#[test]
fn a_real_browser_goes_through_every_flow_of_the_pages() {
    let Some(tools) = page_checks::tools_or_skip(
        "ui_browser::a_real_browser_goes_through_every_flow_of_the_pages",
    ) else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        c.delivery = Some(Channel::Outbox);
        c.delivery_settings.links_to_listener = true;
    });
    let driver = Driver::start(&tools.chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let session = driver.session(&tools.chromium, profile.path(), WINDOW);
    // The accessibility checker is a script: this session only may run
    // it despite the pages' policy.
    page_checks::bypass_csp(&session);
    let mut visit = Visit {
        app: &app,
        tools: &tools,
        session: &session,
        base: format!("http://{}", app.running.addr()),
        shots: 0,
    };

    // Sign up: a slip first (nothing typed), then the account.
    visit.goto("/ui/sign-up?return_to=%2Fui%2Faccount");
    visit.check("sign-up");
    visit.submit("sign-up", &[]);
    assert!(
        visit.said().contains("Enter your email address"),
        "{}",
        visit.said()
    );
    visit.check("sign-up-problem");
    visit.submit("sign-up", &[("email", EMAIL), ("password", FIRST)]);
    visit.assert_at("/ui/sign-in?notice=registered&return_to=%2Fui%2Faccount");
    assert!(
        visit.said().contains("Your account is ready"),
        "{}",
        visit.said()
    );
    visit.check("sign-in-registered");
    // As a phone shows it (README's first screenshot).
    page_checks::screenshot(&session, "phone-sign-in", 360);

    // The tab order is the reading order: email, password, the code (two-step
    // sign-in), the button.
    let order = tab_order(&session, "#sign-in-email", 3);
    assert_eq!(
        order,
        ["sign-in-password", "sign-in-totp", "BUTTON"],
        "tab order"
    );

    // Confirm the address from the outbox's link: the link opens a page
    // with a button; only the button confirms.
    visit.follow_outbox_link(EMAIL, "/ui/verify-email", "outbox");
    assert!(visit.path().starts_with("/ui/verify-email?email="));
    visit.check("verify-email");
    visit.session.click_on("#verify button[type=\"submit\"]");
    visit.assert_at("/ui/verify-email?notice=email-verified");
    visit.check("email-verified");

    // Sign in: a wrong password, then the right one, back to return_to.
    visit.goto("/ui/sign-in?return_to=%2Fui%2Faccount");
    visit.sign_in(EMAIL, "not my password");
    assert!(
        visit.said().contains("email address or password is wrong"),
        "{}",
        visit.said()
    );
    visit.check("sign-in-problem");
    visit.sign_in(EMAIL, FIRST);
    visit.assert_at("/ui/account");
    assert!(session.text("main").contains("Confirmed"));
    visit.check("account");

    // Change the password (the current one asked again).
    visit.submit(
        "account-password",
        &[("password", FIRST), ("new_password", SECOND)],
    );
    visit.assert_at("/ui/account?notice=password-changed");
    visit.check("password-changed");

    // Another device signs in through the API; sign it out from here.
    let elsewhere = app.log_in(EMAIL, SECOND);
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
    let elsewhere = app.session_of(&elsewhere);
    visit.goto("/ui/account");
    assert_eq!(session.find_all("ul.sessions li").len(), 2);
    visit.check("account-two-sessions");
    session.click_on("form[action=\"/ui/account/sessions\"] input[value=\"others\"] ~ button");
    visit.assert_at("/ui/account?notice=others-ended");
    assert_eq!(session.find_all("ul.sessions li").len(), 1);
    assert_eq!(app.profile(Some(&elsewhere)).status, 403);

    // Change the address: it applies once the new address's link is
    // confirmed.
    visit.submit(
        "account-email",
        &[("new_email", NEW_EMAIL), ("password", SECOND)],
    );
    visit.assert_at("/ui/account?notice=email-change-sent");
    visit.check("email-change-sent");
    visit.follow_outbox_link(NEW_EMAIL, "/ui/verify-email", "outbox-email-change");
    session.click_on("#verify button[type=\"submit\"]");
    visit.assert_at("/ui/verify-email?notice=email-verified");
    visit.goto("/ui/account");
    assert!(session.text(".email").contains(NEW_EMAIL));

    // Sign out: the account page then sends to the sign-in form.
    session.click_on("header form[action=\"/ui/sign-out\"] button");
    visit.assert_at("/ui/sign-in?notice=signed-out");
    visit.check("signed-out");
    visit.goto("/ui/account");
    assert!(visit.path().starts_with("/ui/sign-in"), "{}", visit.path());

    // Forgot the password: a link by message, a new password with it.
    visit.goto("/ui/forgot-password");
    visit.check("forgot-password");
    visit.submit("forgot", &[("email", NEW_EMAIL)]);
    visit.assert_at("/ui/forgot-password?notice=reset-sent");
    visit.check("reset-sent");
    visit.follow_outbox_link(NEW_EMAIL, "/ui/reset-password", "outbox-reset");
    visit.check("reset-password");
    visit.submit("reset", &[("new_password", THIRD)]);
    visit.assert_at("/ui/sign-in?notice=password-reset");
    visit.check("password-reset");

    // return_to: another site's URL is ignored, a path is followed.
    visit.goto("/ui/sign-in?return_to=https%3A%2F%2Fevil.example%2F");
    visit.sign_in(NEW_EMAIL, THIRD);
    visit.assert_at("/ui/account");
    session.click_on("header form[action=\"/ui/sign-out\"] button");
    visit.goto("/ui/sign-in?return_to=%2Fprofile");
    visit.sign_in(NEW_EMAIL, THIRD);
    visit.assert_at("/profile");
    assert!(session.text("body").contains(NEW_EMAIL));

    // Two-step sign-in: enrol from the account page (the key as text and
    // as a QR code), then sign in with a code computed here (RFC 6238 in
    // tests/it/totp.rs, not the server's library).
    visit.goto("/ui/account");
    visit.submit("account-totp-begin", &[]);
    assert!(session.try_find(".qr svg").is_some(), "no QR code");
    visit.check("totp-enrol");
    let key = session.text("code.key");
    let uri = session.text("code.uri");
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={key}")),
        "{uri}"
    );
    let step = crate::totp::now_step();
    let first = crate::totp::code(&key, step);
    visit.submit("account-totp-confirm", &[("code", &first)]);
    assert_eq!(session.find_all(".recovery-codes li").len(), 10);
    visit.check("totp-recovery-codes");
    session.click_on("header form[action=\"/ui/sign-out\"] button");
    visit.goto("/ui/sign-in");
    visit.sign_in(NEW_EMAIL, THIRD);
    assert!(
        visit.said().contains("authenticator app"),
        "{}",
        visit.said()
    );
    visit.check("sign-in-totp-required");
    let next = crate::totp::code(&key, step + 1);
    visit.submit(
        "sign-in",
        &[("email", NEW_EMAIL), ("password", THIRD), ("totp", &next)],
    );
    visit.assert_at("/ui/account");
    assert!(session.text("#totp-heading").contains("Two-step"));

    // Delete the account.
    visit.goto("/ui/account");
    visit.submit("account-delete", &[("password", THIRD)]);
    visit.assert_at("/ui/sign-in?notice=account-deleted");
    visit.check("account-deleted");
    assert_eq!(app.log_in(NEW_EMAIL, THIRD).status, 401);

    // Nothing found: an HTML page too.
    visit.goto("/ui/nowhere");
    visit.check("not-found");
    let shots = visit.shots;
    drop(visit);
    drop(session);

    without_javascript(&app, &driver, &tools);
    eprintln!(
        "ui_browser: {shots} screenshots in {}",
        page_checks::screenshot_dir().display()
    );
}

/// The ids (or tag names) of the elements focus moves to from `start`,
/// pressing Tab `presses` times.
fn tab_order(session: &Session<'_>, start: &str, presses: usize) -> Vec<String> {
    session.focus(start);
    (0..presses)
        .map(|_| {
            session.press_tab();
            let focused = session.execute(
                "const e = document.activeElement; return e.id || e.tagName;",
                json!([]),
            );
            focused.as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Signs up and in again with JavaScript off in a fresh browser: the
/// forms post and the redirects land without any script.
fn without_javascript(app: &TestApp, driver: &Driver, tools: &Tools) {
    let profile = tempfile::tempdir().unwrap();
    let session = driver.session(&tools.chromium, profile.path(), WINDOW);
    session.cdp(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    // Scripts are off indeed: this page's would have said "on".
    session.goto("data:text/html,<p id=p>off</p><script>p.textContent='on'</script>");
    assert_eq!(session.text("#p"), "off");
    let base = format!("http://{}", app.running.addr());
    session.goto(&format!("{base}/ui/sign-up"));
    session.fill("#sign-up [name=\"email\"]", "nojs@example.com");
    session.fill("#sign-up [name=\"password\"]", FIRST);
    session.click_on("#sign-up button[type=\"submit\"]");
    assert_eq!(
        session.url(),
        format!("{base}/ui/sign-in?notice=registered")
    );
    session.fill("#sign-in [name=\"email\"]", "nojs@example.com");
    session.fill("#sign-in [name=\"password\"]", FIRST);
    session.click_on("#sign-in button[type=\"submit\"]");
    assert_eq!(session.url(), format!("{base}/ui/account"));
    assert!(session.text(".email").contains("nojs@example.com"));
}
