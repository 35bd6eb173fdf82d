//! `/ui/forgot-password`: asks for a reset link, through the use case of
//! `POST /reset_password` (its throttles, the message, the audit line).
//!
//! The page never shows a token, not even in the dev profile whose API
//! answer carries one: the link goes by message (the dev outbox in dev).
//! In production the answer is the same whether or not the address has
//! an account; the dev profile says when none has, as its API does.

use maud::html;
use rouille::Response;

use super::{aside, text, text_of};
use crate::auth::AuthError;
use crate::http::ui::messages::Notice;
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view::{self, Field, Kind};
use crate::user::InvalidInput;

/// The form.
pub fn get(page: &Page<'_>) -> Response {
    show(page, "", None)
}

/// Asks for the link: 303 to this page with a notice; otherwise the form
/// again with the problem (429 while throttled, 503 when the delivery
/// queue is full; in dev, 403 for an address without an account).
pub fn post(page: &Page<'_>) -> Response {
    let fields = match page.read_form() {
        Ok(fields) => fields,
        Err(rejected) => {
            let typed = text_of(rejected.fields.as_ref(), "email");
            return show(page, typed, Some(&rejected.problem));
        }
    };
    let typed = text(&fields, "email");
    if typed.trim().is_empty() {
        let problem = Problem::invalid("email", InvalidInput::EmptyEmail, page.m);
        return show(page, typed, Some(&problem));
    }
    match page.app.auth.request_reset(page.caller, typed) {
        Ok(_) => page.redirect(&format!(
            "/ui/forgot-password?notice={}",
            Notice::ResetSent.key()
        )),
        Err(e) => {
            let unknown = matches!(e, AuthError::UnknownEmail);
            let problem = Problem::auth(e, page.m);
            let problem = if unknown {
                problem.on("email")
            } else {
                problem
            };
            show(page, typed, Some(&problem))
        }
    }
}

fn show(page: &Page<'_>, typed: &str, problem: Option<&Problem>) -> Response {
    let m = page.m;
    let token = page.form_token();
    let fields = html! {
        (view::field(Field {
            form: "forgot", name: "email", label: m.email, kind: Kind::Email,
            autocomplete: "email", value: Some(typed), hint: None,
        }, problem))
        (view::submit(m.forgot_button))
    };
    let main = html! {
        p { (m.forgot_intro) }
        (view::form("forgot", "/ui/forgot-password", &token, problem, fields))
        (aside("", m.back_to_sign_in, "/ui/sign-in"))
    };
    match problem {
        Some(problem) => page.problem_html(problem, m.forgot_title, main),
        None => page.html(200, m.forgot_title, None, main),
    }
}
