//! `/ui/sign-up`: the registration form, through the use case of
//! `POST /users` (the password policy, its throttles, the verification
//! message, the audit line). A new account then signs in: the next page
//! is the sign-in form, `return_to` kept.

use maud::html;
use rouille::Response;

use super::{aside, text, with_return_to, Typed};
use crate::http::ui::messages::Notice;
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view::{self, Field, Kind};
use crate::user::{Email, Password};

/// The form.
pub fn get(page: &Page<'_>) -> Response {
    let return_to = page.query("return_to");
    let typed = Typed::fresh(return_to.as_deref());
    show(page, &typed, None)
}

/// Registers: 303 to the sign-in form with a notice; otherwise the form
/// again with the problem (400 for a taken or invalid address or a
/// password the policy refuses, 429 while throttled).
pub fn post(page: &Page<'_>) -> Response {
    let fields = match page.read_form() {
        Ok(fields) => fields,
        Err(rejected) => {
            let typed = Typed::of(rejected.fields.as_ref());
            return show(page, &typed, Some(&rejected.problem));
        }
    };
    let typed = Typed::of(Some(&fields));
    let m = page.m;
    let email = match Email::parse_new(typed.email) {
        Ok(email) => email,
        Err(e) => return show(page, &typed, Some(&Problem::invalid("email", e, m))),
    };
    let limit = page.app.auth.password_limit();
    let password = match Password::parse_for(text(&fields, "password"), limit) {
        Ok(password) => password,
        Err(e) => return show(page, &typed, Some(&Problem::invalid("password", e, m))),
    };
    match page.app.auth.register(page.caller, &email, &password) {
        Ok(_) => {
            let next = format!("/ui/sign-in?notice={}", Notice::Registered.key());
            page.redirect(&with_return_to(&next, typed.return_to))
        }
        Err(e) => {
            let field = match &e {
                crate::auth::AuthError::EmailTaken => Some("email"),
                crate::auth::AuthError::WeakPassword(_) => Some("password"),
                _ => None,
            };
            let problem = Problem::auth(e, m);
            let problem = match field {
                Some(field) => problem.on(field),
                None => problem,
            };
            show(page, &typed, Some(&problem))
        }
    }
}

fn show(page: &Page<'_>, typed: &Typed<'_>, problem: Option<&Problem>) -> Response {
    let m = page.m;
    let token = page.form_token();
    let fields = html! {
        (view::field(Field {
            form: "sign-up", name: "email", label: m.email, kind: Kind::Email,
            autocomplete: "username", value: Some(typed.email), hint: None,
        }, problem))
        (view::field(Field {
            form: "sign-up", name: "password", label: m.password, kind: Kind::Password,
            autocomplete: "new-password", value: None, hint: Some(m.new_password_hint),
        }, problem))
        @if let Some(target) = typed.return_to {
            (view::hidden("return_to", target))
        }
        (view::submit(m.sign_up_button))
    };
    let main = html! {
        (view::form("sign-up", "/ui/sign-up", &token, problem, fields))
        (aside(m.sign_up_have_account, m.sign_up_sign_in, &with_return_to("/ui/sign-in", typed.return_to)))
    };
    match problem {
        Some(problem) => page.problem_html(problem, m.sign_up_title, main),
        None => page.html(200, m.sign_up_title, None, main),
    }
}
