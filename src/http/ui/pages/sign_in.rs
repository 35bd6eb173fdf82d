//! `/ui/sign-in`: the sign-in form, signing in through the use case of
//! `POST /sessions` (its throttles, device cookie, audit lines), then
//! back to `return_to` ([`crate::http::ui::return_to`]).
//!
//! The form has a field for the authentication code of two-step sign-in
//! (TOTP), left empty by everyone else: when the use case answers that
//! the account needs a code (or that the code was wrong), the form comes
//! back with the problem on that field, the email and `return_to` kept
//! and the password asked again (a page never echoes a password).

use maud::html;
use rouille::Response;

use super::{aside, text, with_return_to, Typed};
use crate::auth::{AuthError, Caller};
use crate::http::cookie;
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view::{self, Field, Kind};
use crate::user::InvalidInput;

/// The form; an already signed-in browser goes straight on to
/// `return_to`.
pub fn get(page: &Page<'_>) -> Response {
    let return_to = page.query("return_to");
    if let Ok(Some(_)) = page.viewer() {
        return page.redirect(&page.return_to(return_to.as_deref()));
    }
    let typed = Typed::fresh(return_to.as_deref());
    show(page, &typed, None)
}

/// Signs in: 303 to `return_to` (or `/ui/account`) with the session
/// cookie; otherwise the form again with the problem, under the status
/// the API gives it (401 for a wrong pair, 429 with `Retry-After` while
/// throttled, 403 for an unverified address under
/// `--require-verified-email`).
pub fn post(page: &Page<'_>) -> Response {
    let fields = match page.read_form() {
        Ok(fields) => fields,
        Err(rejected) => {
            let typed = Typed::of(rejected.fields.as_ref());
            return show(page, &typed, Some(&rejected.problem));
        }
    };
    let typed = Typed::of(Some(&fields));
    let password = text(&fields, "password");
    // Nothing typed is a slip, not an attempt: said before any work.
    if typed.email.trim().is_empty() {
        let problem = Problem::invalid("email", InvalidInput::EmptyEmail, page.m);
        return show(page, &typed, Some(&problem));
    }
    if password.is_empty() {
        let problem = Problem::invalid("password", InvalidInput::EmptyPassword, page.m);
        return show(page, &typed, Some(&problem));
    }
    let caller = Caller {
        user_agent: page.request.header("User-Agent").map(str::to_owned),
        ..page.caller.clone()
    };
    let device = cookie::device_cookie(page.request);
    // The session this browser held, if any, ends with the login that
    // replaces its cookie (as `POST /sessions` does).
    let login = page.app.auth.log_in_from_device(
        &caller,
        typed.email,
        password,
        Some(text(&fields, "totp")).filter(|code| !code.trim().is_empty()),
        page.session.as_ref(),
        device.as_ref(),
    );
    match login {
        Ok(login) => {
            let response = page.redirect(&page.return_to(typed.return_to));
            let response = page.set_session(response, &login.token);
            match &login.device {
                Some(device) => cookie::set_device(response, device),
                None => response,
            }
        }
        Err(e @ (AuthError::TotpRequired | AuthError::WrongTotp)) => {
            show(page, &typed, Some(&Problem::auth(e, page.m).on("totp")))
        }
        Err(e) => show(page, &typed, Some(&Problem::auth(e, page.m))),
    }
}

fn show(page: &Page<'_>, typed: &Typed<'_>, problem: Option<&Problem>) -> Response {
    let m = page.m;
    let token = page.form_token();
    let fields = html! {
        (view::field(Field {
            form: "sign-in", name: "email", label: m.email, kind: Kind::Email,
            autocomplete: "username", value: Some(typed.email), hint: None,
        }, problem))
        (view::field(Field {
            form: "sign-in", name: "password", label: m.password, kind: Kind::Password,
            autocomplete: "current-password", value: None, hint: None,
        }, problem))
        (view::field(Field {
            form: "sign-in", name: "totp", label: m.totp_code, kind: Kind::Code,
            autocomplete: "one-time-code", value: None, hint: Some(m.totp_code_hint),
        }, problem))
        @if let Some(target) = typed.return_to {
            (view::hidden("return_to", target))
        }
        (view::submit(m.sign_in_button))
    };
    let main = html! {
        (view::form("sign-in", "/ui/sign-in", &token, problem, fields))
        (aside("", m.sign_in_forgot, "/ui/forgot-password"))
        (aside(m.sign_in_no_account, m.sign_in_create, &with_return_to("/ui/sign-up", typed.return_to)))
    };
    match problem {
        Some(problem) => page.problem_html(problem, m.sign_in_title, main),
        None => page.html(200, m.sign_in_title, None, main),
    }
}
