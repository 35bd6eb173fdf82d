//! `POST /ui/sign-out`: ends this browser's session (the use case of
//! `DELETE /sessions`) and clears its cookie.

use maud::html;
use rouille::Response;

use crate::auth::AuthError;
use crate::http::ui::messages::Notice;
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;
use crate::http::ui::view;

/// Signs out: 303 to the sign-in form with a notice, the cookie
/// cleared, whether or not the session was still live. A form that does
/// not pass its checks gets a page with the button again.
pub fn post(page: &Page<'_>) -> Response {
    if let Err(rejected) = page.read_form() {
        return show(page, &rejected.problem);
    }
    if let Some(token) = &page.session {
        match page.app.auth.log_out(page.caller, token) {
            Ok(_) | Err(AuthError::InvalidSession) => {}
            Err(e) => return show(page, &Problem::auth(e, page.m)),
        }
    }
    let next = format!("/ui/sign-in?notice={}", Notice::SignedOut.key());
    page.clear_session(page.redirect(&next))
}

fn show(page: &Page<'_>, problem: &Problem) -> Response {
    let token = page.form_token();
    let main = html! {
        (view::form("sign-out", "/ui/sign-out", &token, Some(problem), view::submit(page.m.sign_out)))
    };
    page.problem_html(problem, page.m.sign_out, main)
}
