//! `/ui/account`: the signed-in user's account, and its forms, each
//! posting to `/ui/account/<action>` and each through the use case of
//! the API route that does the same: the address and whether it is
//! confirmed (a new confirmation link: `POST /verify_email`), a new
//! password (`PUT /password`), a new address (`PUT /account`), the
//! sessions with "sign out" for each and for all others (`DELETE
//! /sessions/<id>`, `?scope=others`), and deleting the account (`DELETE
//! /account`).
//!
//! Two-step sign-in (TOTP: `POST /totp`, `PUT /totp`, `DELETE /totp`)
//! has a section of its own: a key with its QR code (drawn here as inline
//! SVG) while one is pending, the recovery codes once, when it is
//! confirmed.
//!
//! The page is a list of sections, one per [`Action`]; another section
//! is another variant, its form and its branch in [`post`].

use maud::{html, Markup, PreEscaped};
use rouille::Response;

use super::{text, text_of};
use crate::auth::{AuthError, Scope, TotpEnrolment};
use crate::http::body::Fields;
use crate::http::ui::messages::{fill, Notice};
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view::{self, Field, Kind};
use crate::session::{Session, SessionId};
use crate::user::{Email, Password, User};

/// A form of the account page, and the path it posts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a new confirmation link to the address.
    Verify,
    Password,
    Email,
    /// End one session (`end` = its id) or all others (`end=others`).
    Sessions,
    Delete,
    /// A new TOTP key, pending (or a new one in place of the pending one).
    TotpBegin,
    /// The pending key's first code.
    TotpConfirm,
    /// Turn two-step sign-in off (password and code).
    TotpDisable,
}

impl Action {
    const ALL: [Action; 8] = [
        Action::Verify,
        Action::Password,
        Action::Email,
        Action::Sessions,
        Action::Delete,
        Action::TotpBegin,
        Action::TotpConfirm,
        Action::TotpDisable,
    ];

    /// The last part of the path the form posts to.
    fn name(self) -> &'static str {
        match self {
            Action::Verify => "verify",
            Action::Password => "password",
            Action::Email => "email",
            Action::Sessions => "sessions",
            Action::Delete => "delete",
            Action::TotpBegin => "totp-begin",
            Action::TotpConfirm => "totp-confirm",
            Action::TotpDisable => "totp-disable",
        }
    }

    /// The action of `/ui/account/<name>`.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.name() == name)
    }

    fn path(self) -> String {
        format!("/ui/account/{}", self.name())
    }
}

/// What the page shows besides the account: the problem one form met,
/// and what was typed in it.
#[derive(Debug, Default)]
struct Outcome<'a> {
    problem: Option<(Action, Problem)>,
    new_email: &'a str,
    /// Recovery codes just made, shown this once.
    recovery: Option<Vec<String>>,
}

/// The account; without a live session, the sign-in form (coming back
/// here).
pub fn get(page: &Page<'_>) -> Response {
    show(page, &Outcome::default())
}

/// One of the account's forms: 303 back to the account with a notice
/// (to the sign-in form once the session or the account is gone);
/// otherwise the page again with the problem beside that form.
pub fn post(page: &Page<'_>, action: Action) -> Response {
    let fields = match page.read_form() {
        Ok(fields) => fields,
        Err(rejected) => {
            let outcome = Outcome {
                new_email: text_of(rejected.fields.as_ref(), "new_email"),
                problem: Some((action, rejected.problem)),
                recovery: None,
            };
            return show(page, &outcome);
        }
    };
    let Some(token) = page.session.clone() else {
        return signed_out(page);
    };
    let failed = |e: AuthError, field: Option<&'static str>| {
        if matches!(e, AuthError::InvalidSession) {
            return signed_out(page);
        }
        let problem = Problem::auth(e, page.m);
        let problem = match field {
            Some(field) => problem.on(field),
            None => problem,
        };
        let outcome = Outcome {
            new_email: text(&fields, "new_email"),
            problem: Some((action, problem)),
            recovery: None,
        };
        show(page, &outcome)
    };
    let done = |notice: Notice| page.redirect(&format!("/ui/account?notice={}", notice.key()));
    let auth = &page.app.auth;
    let caller = page.caller;
    match action {
        Action::Verify => {
            let user = match auth.authenticate(&token) {
                Ok((_, user)) => user,
                Err(e) => return failed(e, None),
            };
            match auth.request_verification(caller, user.email.as_str()) {
                Ok(_) => done(Notice::VerificationSent),
                Err(e) => failed(e, None),
            }
        }
        Action::Password => {
            let limit = auth.password_limit();
            let new = match Password::parse_for(text(&fields, "new_password"), limit) {
                Ok(password) => password,
                Err(e) => return invalid(page, action, &fields, "new_password", e),
            };
            match auth.change_password(caller, &token, text(&fields, "password"), &new) {
                Ok(_) => done(Notice::PasswordChanged),
                Err(e @ AuthError::WeakPassword(_)) => failed(e, Some("new_password")),
                Err(e) => failed(e, Some("password")),
            }
        }
        Action::Email => {
            let new_email = match Email::parse_new(text(&fields, "new_email")) {
                Ok(email) => email,
                Err(e) => return invalid(page, action, &fields, "new_email", e),
            };
            match auth.change_email(caller, &token, text(&fields, "password"), &new_email) {
                Ok(_) => done(Notice::EmailChangeSent),
                Err(e @ AuthError::EmailTaken) => failed(e, Some("new_email")),
                Err(e) => failed(e, Some("password")),
            }
        }
        Action::Sessions => match text(&fields, "end") {
            "others" => match auth.end_sessions(caller, &token, Scope::Others) {
                Ok(_) => done(Notice::OthersEnded),
                Err(e) => failed(e, None),
            },
            id => match auth.end_session(caller, &token, id) {
                Ok(true) => {
                    let next = format!("/ui/sign-in?notice={}", Notice::SignedOut.key());
                    page.clear_session(page.redirect(&next))
                }
                Ok(false) => done(Notice::SessionEnded),
                Err(e) => failed(e, None),
            },
        },
        Action::Delete => match auth.delete_account(caller, &token, text(&fields, "password")) {
            Ok(_) => {
                let next = format!("/ui/sign-in?notice={}", Notice::AccountDeleted.key());
                page.clear_session(page.redirect(&next))
            }
            Err(e) => failed(e, Some("password")),
        },
        Action::TotpBegin => match auth.begin_totp(caller, &token) {
            // The page shows the pending key (and shows it again on reload).
            Ok(_) => page.redirect("/ui/account#totp-heading"),
            Err(e) => failed(e, None),
        },
        Action::TotpConfirm => match auth.confirm_totp(caller, &token, text(&fields, "code")) {
            // Shown once: an answer, not a redirect to a page that has them.
            Ok(codes) => show(
                page,
                &Outcome {
                    recovery: Some(codes),
                    ..Outcome::default()
                },
            ),
            Err(e) => failed(e, Some("code")),
        },
        Action::TotpDisable => {
            match auth.disable_totp(
                caller,
                &token,
                text(&fields, "password"),
                text(&fields, "code"),
            ) {
                Ok(_) => done(Notice::TotpDisabled),
                Err(e @ AuthError::WrongPassword) => failed(e, Some("password")),
                Err(e) => failed(e, Some("code")),
            }
        }
    }
}

/// The page again, a value of `field` refused before any use case ran.
fn invalid(
    page: &Page<'_>,
    action: Action,
    fields: &Fields,
    field: &'static str,
    e: crate::user::InvalidInput,
) -> Response {
    let outcome = Outcome {
        new_email: text(fields, "new_email"),
        problem: Some((action, Problem::invalid(field, e, page.m))),
        recovery: None,
    };
    show(page, &outcome)
}

/// To the sign-in form, which comes back here; a stale cookie is
/// cleared.
fn signed_out(page: &Page<'_>) -> Response {
    let next = match &page.session {
        Some(_) => format!(
            "/ui/sign-in?notice={}&return_to=%2Fui%2Faccount",
            Notice::SignInAgain.key()
        ),
        None => "/ui/sign-in?return_to=%2Fui%2Faccount".to_owned(),
    };
    let response = page.redirect(&next);
    match &page.session {
        Some(_) => page.clear_session(response),
        None => response,
    }
}

fn show(page: &Page<'_>, outcome: &Outcome<'_>) -> Response {
    let (session, user) = match page.viewer() {
        Ok(Some((session, user))) => (session, user),
        Ok(None) => return signed_out(page),
        Err(problem) => return error_page(page, &problem),
    };
    let sessions = match page
        .session
        .as_ref()
        .map(|t| page.app.auth.list_sessions(t))
    {
        Some(Ok((_, sessions))) => sessions,
        Some(Err(AuthError::InvalidSession)) | None => return signed_out(page),
        Some(Err(e)) => return error_page(page, &Problem::auth(e, page.m)),
    };
    let pending = match (&user.totp, &page.session) {
        (Some(totp), Some(token)) if !totp.enabled => match page.app.auth.pending_totp(token) {
            Ok(pending) => pending,
            Err(e) => return error_page(page, &Problem::auth(e, page.m)),
        },
        _ => None,
    };
    let view = View {
        page,
        token: page.form_token(),
        user,
        current: session.id,
        sessions: &sessions,
        outcome,
        pending,
    };
    let main = html! {
        (view.email_section())
        (view.password_section())
        (view.email_change_section())
        (view.sessions_section())
        (view.totp_section())
        (view.delete_section())
    };
    match &outcome.problem {
        Some((_, problem)) => page.problem_html(problem, page.m.account_title, main),
        None => page.html(200, page.m.account_title, None, main),
    }
}

/// A page with only a problem (the store failed while showing the
/// account).
fn error_page(page: &Page<'_>, problem: &Problem) -> Response {
    let main = html! { div.problem role="alert" { p { (problem.text) } } };
    page.problem_html(problem, page.m.error_title, main)
}

/// Everything the sections are drawn from.
struct View<'p, 'a> {
    page: &'p Page<'a>,
    token: String,
    user: &'p User,
    current: SessionId,
    sessions: &'p [Session],
    outcome: &'p Outcome<'p>,
    /// The pending TOTP key, when one waits for its first code.
    pending: Option<TotpEnrolment>,
}

impl View<'_, '_> {
    /// The problem `action`'s form met, if it is the one that met one.
    fn problem(&self, action: Action) -> Option<&Problem> {
        match &self.outcome.problem {
            Some((a, problem)) if *a == action => Some(problem),
            _ => None,
        }
    }

    fn form(&self, action: Action, fields: Markup) -> Markup {
        let id = format!("account-{}", action.name());
        view::form(
            &id,
            &action.path(),
            &self.token,
            self.problem(action),
            fields,
        )
    }

    fn password_field(&self, action: Action) -> Markup {
        view::field(
            Field {
                form: &format!("account-{}", action.name()),
                name: "password",
                label: self.page.m.current_password,
                kind: Kind::Password,
                autocomplete: "current-password",
                value: None,
                hint: None,
            },
            self.problem(action),
        )
    }

    fn email_section(&self) -> Markup {
        let m = self.page.m;
        let user = self.user;
        html! {
            section aria-labelledby="email-heading" {
                h2 #email-heading { (m.account_email_heading) }
                p.email { (user.email.as_str()) " " }
                @if user.email_verified {
                    p { span.badge.ok { (m.account_verified) } }
                } @else {
                    p { span.badge.warn { (m.account_unverified) } }
                    (self.form(Action::Verify, view::submit(m.account_send_verification)))
                }
                @if let Some(pending) = &user.pending_email {
                    p { (fill(m.account_pending_email, "email", pending.as_str())) }
                }
                @if let Some(created) = user.created_at {
                    p.meta { (fill(m.account_created, "date", &day(created))) }
                }
            }
        }
    }

    fn password_section(&self) -> Markup {
        let m = self.page.m;
        let action = Action::Password;
        let fields = html! {
            (self.password_field(action))
            (view::field(Field {
                form: "account-password", name: "new_password", label: m.new_password,
                kind: Kind::Password, autocomplete: "new-password", value: None,
                hint: Some(m.new_password_hint),
            }, self.problem(action)))
            (view::submit(m.password_button))
        };
        html! {
            section aria-labelledby="password-heading" {
                h2 #password-heading { (m.password_heading) }
                (self.form(action, fields))
            }
        }
    }

    fn email_change_section(&self) -> Markup {
        let m = self.page.m;
        let action = Action::Email;
        let fields = html! {
            (view::field(Field {
                form: "account-email", name: "new_email", label: m.new_email, kind: Kind::Email,
                autocomplete: "email", value: Some(self.outcome.new_email), hint: None,
            }, self.problem(action)))
            (self.password_field(action))
            (view::submit(m.email_change_button))
        };
        html! {
            section aria-labelledby="email-change-heading" {
                h2 #email-change-heading { (m.email_change_heading) }
                p { (m.email_change_intro) }
                (self.form(action, fields))
            }
        }
    }

    fn sessions_section(&self) -> Markup {
        let m = self.page.m;
        let action = Action::Sessions;
        let others = self.sessions.iter().any(|s| s.id != self.current);
        html! {
            section aria-labelledby="sessions-heading" {
                h2 #sessions-heading { (m.sessions_heading) }
                p { (m.sessions_intro) }
                @if let Some(problem) = self.problem(action) {
                    div.problem role="alert" id="account-sessions-problem" { p { (problem.text) } }
                }
                ul.sessions {
                    @for (i, session) in self.sessions.iter().enumerate() {
                        li {
                            (self.describe(session, i))
                            @if session.id == self.current {
                                p { span.badge.ok { (m.session_current) } }
                            } @else {
                                form method="post" action=(action.path()) {
                                    (view::token_field(&self.token))
                                    (view::hidden("end", &session.id.to_string()))
                                    button.secondary type="submit"
                                        aria-describedby=(format!("session-{i}")) { (m.session_end) }
                                }
                            }
                        }
                    }
                }
                @if others {
                    form method="post" action=(action.path()) {
                        (view::token_field(&self.token))
                        (view::hidden("end", "others"))
                        button.secondary type="submit" { (m.sessions_end_others) }
                    }
                }
            }
        }
    }

    /// One session: its browser, when it began and was last used, and
    /// where from.
    fn describe(&self, session: &Session, i: usize) -> Markup {
        let m = self.page.m;
        let agent = session
            .user_agent
            .as_deref()
            .map_or(m.session_unknown_browser, |ua| ua);
        html! {
            div id=(format!("session-{i}")) {
                p.agent { (agent) }
                p.meta {
                    (fill(m.session_started, "time", &minute(session.created_at)))
                    ", " (fill(m.session_last_seen, "time", &minute(session.last_seen)))
                    @if let Some(ip) = &session.ip {
                        ", " (fill(m.session_from, "ip", ip))
                    }
                }
            }
        }
    }

    fn code_field(&self, action: Action) -> Markup {
        view::field(
            Field {
                form: &format!("account-{}", action.name()),
                name: "code",
                label: self.page.m.totp_code,
                kind: Kind::Code,
                autocomplete: "one-time-code",
                value: None,
                hint: None,
            },
            self.problem(action),
        )
    }

    fn totp_section(&self) -> Markup {
        let m = self.page.m;
        let enabled = self.user.totp_enabled().is_some();
        html! {
            section aria-labelledby="totp-heading" {
                h2 #totp-heading { (m.totp_heading) }
                @if let Some(codes) = &self.outcome.recovery {
                    p { span.badge.ok { (m.totp_on_intro) } }
                    p { (m.totp_recovery_intro) }
                    ul.recovery-codes {
                        @for code in codes { li { code { (code) } } }
                    }
                } @else if enabled {
                    p { span.badge.ok { (m.totp_on_intro) } }
                    p { (m.totp_disable_intro) }
                    (self.form(Action::TotpDisable, html! {
                        (self.password_field(Action::TotpDisable))
                        (self.code_field(Action::TotpDisable))
                        (view::submit(m.totp_disable_button))
                    }))
                } @else if let Some(pending) = &self.pending {
                    p { (m.totp_scan) }
                    @if let Some(svg) = qr_svg(&pending.otpauth_uri, m.totp_qr_label) {
                        div.qr { (PreEscaped(svg)) }
                    }
                    p { (m.totp_key) ": " code.key { (pending.secret) } }
                    p { (m.totp_uri) ": " code.uri { (pending.otpauth_uri) } }
                    (self.form(Action::TotpConfirm, html! {
                        (self.code_field(Action::TotpConfirm))
                        (view::submit(m.totp_confirm_button))
                    }))
                    (self.form(Action::TotpBegin, html! {
                        button.secondary type="submit" { (m.totp_restart_button) }
                    }))
                } @else {
                    p { (m.totp_off_intro) }
                    (self.form(Action::TotpBegin, view::submit(m.totp_begin_button)))
                }
            }
        }
    }

    fn delete_section(&self) -> Markup {
        let m = self.page.m;
        let action = Action::Delete;
        let fields = html! {
            (self.password_field(action))
            (view::danger(m.delete_button))
        };
        html! {
            section.danger-zone aria-labelledby="delete-heading" {
                h2 #delete-heading { (m.delete_heading) }
                p { (m.delete_intro) }
                (self.form(action, fields))
            }
        }
    }
}

/// The QR code of `uri` as an inline SVG element labelled `label`
/// (no image request: the page's policy allows images from itself only).
fn qr_svg(uri: &str, label: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // The XML declaration has no place inside HTML.
    let element = svg.get(svg.find("<svg")?..)?;
    let label = maud::html! { (label) }.into_string();
    Some(element.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" "),
        1,
    ))
}

/// `2026-11-25 23:47 UTC`.
fn minute(ms: u64) -> String {
    let text = crate::clock::rfc3339(ms);
    format!("{} UTC", text.get(..16).unwrap_or(&text).replace('T', " "))
}

/// `2026-11-25`.
fn day(ms: u64) -> String {
    let text = crate::clock::rfc3339(ms);
    text.get(..10).unwrap_or(&text).to_owned()
}
