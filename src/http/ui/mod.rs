//! The hosted pages under `/ui/` (`--ui on|off`, on by default in the dev
//! profile): sign up, sign in, sign out, forgot and reset a password,
//! confirm an address, the account, and in the dev profile the outbox.
//!
//! A prototype gets working account pages with nothing else to run. They
//! are server-rendered HTML ([`view`], maud templates compiled into the
//! binary), one small stylesheet, no script and no external asset, so
//! they work with JavaScript off. Each handler is thin: it reads the
//! form ([`page`]: the Origin check, the body limit and the anti-forgery
//! token of [`form_token`]), calls the same use case as the API route
//! that does the same (so the same throttles, audit lines and messages),
//! and answers with a redirect or the form again, the problem in plain
//! English ([`problem`], [`messages`]) under the status the API gives it.
//! Anything else under `/ui/` is an HTML 404 or 405.

pub mod form_token;
pub mod messages;
pub mod page;
pub mod pages;
pub mod problem;
pub mod return_to;
pub mod view;

use maud::html;
use rouille::{Request, Response};

use crate::auth::Caller;
use crate::config::Profile;
use crate::http::error::ApiError;
use crate::http::App;
use page::Page;
pub use page::UiSettings;
use pages::account::Action;

/// The stylesheet, compiled in.
const STYLE: &str = include_str!("style.css");

/// Whether `path` (normalized: no trailing `/`) is one of the pages'.
pub fn owns(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Answers a request for `path` under `/ui/`; never an error: problems are
/// pages too.
pub fn handle(
    app: &App,
    settings: &UiSettings,
    request: &Request,
    caller: &Caller,
    path: &str,
) -> Response {
    // A page's HEAD is its GET without the body (tiny_http leaves the
    // body out): GET changes nothing on any page.
    let method = match request.method() {
        "HEAD" => "GET",
        other => other,
    };
    if path == "/ui/style.css" {
        return match method {
            "GET" => page::with_page_headers(
                Response::from_data("text/css; charset=utf-8", STYLE),
                app,
                path,
            ),
            _ => bare_error(app, path, ApiError::MethodNotAllowed("GET")),
        };
    }
    let page = match Page::new(app, request, caller, settings) {
        Ok(page) => page,
        Err(e) => return bare_error(app, path, e),
    };
    let get_post = "GET, POST";
    match (path, method) {
        ("/ui", "GET") => page.redirect(return_to::DEFAULT),
        ("/ui/sign-in", "GET") => pages::sign_in::get(&page),
        ("/ui/sign-in", "POST") => pages::sign_in::post(&page),
        ("/ui/sign-up", "GET") => pages::sign_up::get(&page),
        ("/ui/sign-up", "POST") => pages::sign_up::post(&page),
        ("/ui/sign-out", "POST") => pages::sign_out::post(&page),
        ("/ui/forgot-password", "GET") => pages::forgot_password::get(&page),
        ("/ui/forgot-password", "POST") => pages::forgot_password::post(&page),
        ("/ui/reset-password", "GET") => pages::reset_password::get(&page),
        ("/ui/reset-password", "POST") => pages::reset_password::post(&page),
        ("/ui/verify-email", "GET") => pages::verify_email::get(&page),
        ("/ui/verify-email", "POST") => pages::verify_email::post(&page),
        ("/ui/account", "GET") => pages::account::get(&page),
        ("/ui/outbox", "GET") if app.settings.profile == Profile::Dev => pages::outbox::get(&page),
        (
            "/ui/sign-in"
            | "/ui/sign-up"
            | "/ui/forgot-password"
            | "/ui/reset-password"
            | "/ui/verify-email",
            _,
        ) => error(&page, ApiError::MethodNotAllowed(get_post)),
        ("/ui" | "/ui/account", _) => error(&page, ApiError::MethodNotAllowed("GET")),
        ("/ui/outbox", _) if app.settings.profile == Profile::Dev => {
            error(&page, ApiError::MethodNotAllowed("GET"))
        }
        ("/ui/sign-out", _) => error(&page, ApiError::MethodNotAllowed("POST")),
        _ => match path
            .strip_prefix("/ui/account/")
            .and_then(Action::from_name)
        {
            Some(action) if method == "POST" => pages::account::post(&page, action),
            Some(_) => error(&page, ApiError::MethodNotAllowed("POST")),
            None => error(&page, ApiError::NotFound("not found")),
        },
    }
}

/// An error page (404, 405...) in the pages' layout.
fn error(page: &Page<'_>, e: ApiError) -> Response {
    let m = page.m;
    let title = match e {
        ApiError::NotFound(_) => m.not_found_title,
        ApiError::MethodNotAllowed(_) => m.not_allowed_title,
        _ => m.error_title,
    };
    let problem = problem::Problem::api(e, m);
    let main = html! {
        p { (problem.text) }
        p { a href="/ui/sign-in" { (m.back_to_sign_in) } }
    };
    page.problem_html(&problem, title, main)
}

/// An error page without the layout, for when no [`Page`] can be made
/// (the random source failed) or none is needed (the stylesheet).
fn bare_error(app: &App, path: &str, e: ApiError) -> Response {
    let m = &messages::en::EN;
    let problem = problem::Problem::api(e, m);
    let markup = html! {
        (maud::DOCTYPE)
        html lang=(m.lang) {
            head { meta charset="utf-8"; title { (m.error_title) } }
            body { main { h1 { (m.error_title) } p { (problem.text) } } }
        }
    };
    page::with_page_headers(
        problem.apply(Response::html(markup.into_string())),
        app,
        path,
    )
}
