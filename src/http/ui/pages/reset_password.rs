//! `/ui/reset-password?email=..&token=..`: the page a reset link opens.
//!
//! Opening the link (GET) changes nothing: mail scanners fetch links,
//! and a token spent by one would leave its owner with a dead link. The
//! page shows a form that carries the email and token in hidden fields;
//! sending it with a new password (POST) redeems the token through the
//! use case of `PUT /reset_password`, which ends every session of the
//! account. The page sends no `Referer` (the token is in its URL).

use maud::html;
use rouille::Response;

use super::{aside, text, Link};
use crate::http::ui::messages::{fill, Notice};
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view::{self, Field, Kind};
use crate::user::Password;

/// The form for the link's email and token; a link without both gets a
/// page that says so.
pub fn get(page: &Page<'_>) -> Response {
    let email = page.query("email").unwrap_or_default();
    let token = page.query("token").unwrap_or_default();
    show(
        page,
        &Link {
            email: &email,
            token: &token,
        },
        None,
    )
}

/// Sets the new password: 303 to the sign-in form with a notice;
/// otherwise the page again with the problem (403 for a token that is
/// not the current one of that address, 400 for a password the policy
/// refuses).
pub fn post(page: &Page<'_>) -> Response {
    let fields = match page.read_form() {
        Ok(fields) => fields,
        Err(rejected) => {
            return show(
                page,
                &Link::of(rejected.fields.as_ref()),
                Some(&rejected.problem),
            );
        }
    };
    let link = Link::of(Some(&fields));
    let limit = page.app.auth.password_limit();
    let new = match Password::parse_for(text(&fields, "new_password"), limit) {
        Ok(password) => password,
        Err(e) => {
            let problem = Problem::invalid("new_password", e, page.m);
            return show(page, &link, Some(&problem));
        }
    };
    match page
        .app
        .auth
        .redeem_reset(page.caller, link.email, link.token, &new)
    {
        Ok(_) => page.redirect(&format!(
            "/ui/sign-in?notice={}",
            Notice::PasswordReset.key()
        )),
        Err(e) => {
            let weak = matches!(e, crate::auth::AuthError::WeakPassword(_));
            let problem = Problem::auth(e, page.m);
            let problem = if weak {
                problem.on("new_password")
            } else {
                problem
            };
            show(page, &link, Some(&problem))
        }
    }
}

fn show(page: &Page<'_>, link: &Link<'_>, problem: Option<&Problem>) -> Response {
    let m = page.m;
    let main = if link.email.is_empty() || link.token.is_empty() {
        html! {
            div.problem role="alert" { p { (problem.map_or(m.reset_incomplete, |p| p.text.as_str())) } }
            (aside("", m.reset_ask_again, "/ui/forgot-password"))
        }
    } else {
        let token = page.form_token();
        let fields = html! {
            (view::hidden("email", link.email))
            (view::hidden("token", link.token))
            (view::field(Field {
                form: "reset", name: "new_password", label: m.new_password, kind: Kind::Password,
                autocomplete: "new-password", value: None, hint: Some(m.new_password_hint),
            }, problem))
            (view::submit(m.reset_button))
        };
        html! {
            p { (fill(m.reset_intro, "email", link.email)) }
            (view::form("reset", "/ui/reset-password", &token, problem, fields))
            (aside("", m.reset_ask_again, "/ui/forgot-password"))
        }
    };
    match problem {
        Some(problem) => page.problem_html(problem, m.reset_title, main),
        None => page.html(200, m.reset_title, None, main),
    }
}
