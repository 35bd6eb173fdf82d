//! `/ui/verify-email?email=..&token=..`: the page a confirmation link
//! opens (an account's address, or the new address of an email change).
//!
//! As with a reset link, opening it (GET) changes nothing; its button
//! (POST) redeems the token through the use case of `PUT /verify_email`.
//! The page sends no `Referer` (the token is in its URL).

use maud::html;
use rouille::Response;

use super::{aside, Link};
use crate::http::ui::messages::{fill, Notice};
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view;

/// The button for the link's address; once confirmed (`?notice=`), a
/// page that says so.
pub fn get(page: &Page<'_>) -> Response {
    if page.notice() == Some(Notice::EmailVerified) {
        let main = html! {
            (aside("", page.m.continue_to_account, "/ui/account"))
        };
        return page.html(200, page.m.verified_title, None, main);
    }
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

/// Confirms the address: 303 to the confirmation page; otherwise this
/// page again with the problem (403 for a token that is used, replaced,
/// expired or sent elsewhere; 400 if an email change's new address was
/// registered meanwhile).
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
    match page
        .app
        .auth
        .redeem_verification(page.caller, link.email, link.token)
    {
        Ok(_) => page.redirect(&format!(
            "/ui/verify-email?notice={}",
            Notice::EmailVerified.key()
        )),
        Err(e) => show(page, &link, Some(&Problem::auth(e, page.m))),
    }
}

fn show(page: &Page<'_>, link: &Link<'_>, problem: Option<&Problem>) -> Response {
    let m = page.m;
    let main = if link.email.is_empty() || link.token.is_empty() {
        html! { div.problem role="alert" { p { (problem.map_or(m.verify_incomplete, |p| p.text.as_str())) } } }
    } else {
        let token = page.form_token();
        let fields = html! {
            (view::hidden("email", link.email))
            (view::hidden("token", link.token))
            (view::submit(m.verify_button))
        };
        html! {
            p { (fill(m.verify_intro, "email", link.email)) }
            (view::form("verify", "/ui/verify-email", &token, problem, fields))
        }
    };
    match problem {
        Some(problem) => page.problem_html(problem, m.verify_title, main),
        None => page.html(200, m.verify_title, None, main),
    }
}
