//! One request to a page: who asks, the browser's cookies, the form it
//! sent, and the headers every answer of the pages carries.
//!
//! A handler makes a [`Page`], reads a form through [`Page::read_form`]
//! (the Origin check, the body limit and the anti-forgery token, in that
//! order, before any use case runs), calls the use case, and answers
//! with [`Page::html`] or [`Page::redirect`] (303 after a change, so a
//! reload never sends a form twice).

use std::cell::OnceCell;

use maud::Markup;
use rouille::{Request, Response};

use super::form_token::{self, Binding, FormKeys};
use super::messages::{en, Messages, Notice};
use super::problem::Problem;
use super::return_to;
use super::view::{self, Nav, NoticeView, FORM_TOKEN_FIELD};
use crate::auth::{AuthError, Caller};
use crate::config::Profile;
use crate::http::body::{read_fields, Fields};
use crate::http::error::ApiError;
use crate::http::{cookie, csrf, App};
use crate::session::Session;
use crate::token::Token;
use crate::user::User;

/// What the pages need beyond the API's settings.
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// The keys forms are signed with, from the server key.
    pub form_keys: FormKeys,
}

/// The anti-forgery cookie's name: with the `__Host-` prefix wherever
/// cookies are `Secure` (no other host or path can then set it).
fn form_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-authd_csrf"
    } else {
        "authd_csrf"
    }
}

/// A form refused before its use case ran, with what it held when it
/// could be read (to fill the form in again).
#[derive(Debug)]
pub struct Rejected {
    pub problem: Problem,
    pub fields: Option<Fields>,
}

/// One request to one of the pages.
pub struct Page<'a> {
    pub app: &'a App,
    pub request: &'a Request,
    pub caller: &'a Caller,
    /// The texts, in the one language there is.
    pub m: &'static Messages,
    keys: &'a FormKeys,
    /// The browser's anti-forgery cookie, or the one this answer sets.
    form_cookie: String,
    /// Whether [`Page::form_cookie`] is new (set by this answer).
    new_form_cookie: bool,
    /// The session cookie the browser sent, if it has our shape.
    pub session: Option<Token>,
    /// The signed-in session and its user, looked up once.
    viewer: OnceCell<Option<(Session, User)>>,
}

impl<'a> Page<'a> {
    /// The page for `request`; fails only if the random source does.
    pub fn new(
        app: &'a App,
        request: &'a Request,
        caller: &'a Caller,
        settings: &'a UiSettings,
    ) -> Result<Page<'a>, ApiError> {
        let secure = app.settings.secure_cookies;
        let sent = rouille::input::cookies(request)
            .find(|(name, _)| *name == form_cookie_name(secure))
            .and_then(|(_, value)| Token::parse(value));
        let (form_cookie, new_form_cookie) = match sent {
            Some(token) => (token.as_str().to_owned(), false),
            None => {
                let token =
                    form_token::new_form_cookie().map_err(|e| ApiError::Internal(e.to_string()))?;
                (token.as_str().to_owned(), true)
            }
        };
        Ok(Page {
            app,
            request,
            caller,
            m: &en::EN,
            keys: &settings.form_keys,
            form_cookie,
            new_form_cookie,
            session: cookie::session_token(request, app.settings.cookie_name),
            viewer: OnceCell::new(),
        })
    }

    fn binding(&self) -> Binding<'_> {
        Binding {
            form_cookie: &self.form_cookie,
            session: self.session.as_ref().map(Token::as_str),
        }
    }

    /// A token for a form on this page.
    pub fn form_token(&self) -> String {
        self.keys.issue(self.binding(), now_secs())
    }

    /// The signed-in session and its user, if the browser holds a live
    /// one; an error of the store is a problem to show.
    pub fn viewer(&self) -> Result<Option<&(Session, User)>, Problem> {
        if let Some(found) = self.viewer.get() {
            return Ok(found.as_ref());
        }
        let found = match &self.session {
            None => None,
            Some(token) => match self.app.auth.authenticate(token) {
                Ok(found) => Some(found),
                Err(AuthError::InvalidSession) => None,
                Err(e) => return Err(Problem::auth(e, self.m)),
            },
        };
        Ok(self.viewer.get_or_init(|| found).as_ref())
    }

    /// The dev outbox page is served (dev profile only).
    pub fn outbox_served(&self) -> bool {
        self.app.settings.profile == Profile::Dev
    }

    /// The scheme browsers reach authd with: `https` in production (behind
    /// TLS) and wherever cookies are `Secure`, else `http`.
    fn scheme(&self) -> &'static str {
        if self.app.settings.profile == Profile::Production || self.app.settings.secure_cookies {
            "https"
        } else {
            "http"
        }
    }

    /// The server's own origin: `--public-url`'s, else the scheme and the
    /// `Host` the browser named.
    pub fn own_origin(&self) -> Option<String> {
        if let Some(public) = &self.app.settings.public_origin {
            return Some(public.clone());
        }
        let host = self.request.header("Host")?.trim();
        (!host.is_empty()).then(|| csrf::canonical(&format!("{}://{host}", self.scheme())))
    }

    /// Where to send the browser once signed in, for `raw` ([`return_to`]).
    pub fn return_to(&self, raw: Option<&str>) -> String {
        let own = self.own_origin();
        return_to::target(
            raw,
            return_to::Allowed {
                own: own.as_deref(),
                listed: &self.app.settings.allowed_origins,
            },
        )
    }

    /// The first value of `name` in the query string, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.request.raw_query_string().as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The notice the query names, if it names one.
    pub fn notice(&self) -> Option<Notice> {
        self.query("notice").as_deref().and_then(Notice::from_key)
    }

    /// The form a POST sent, once it passed, in order: the Origin check
    /// (a browser's own word on where the form comes from; this server's
    /// origin only), the body limit, and the anti-forgery token bound to
    /// this browser's cookies.
    pub fn read_form(&self) -> Result<Fields, Box<Rejected>> {
        let origins = csrf::Origins {
            public: self.app.settings.public_origin.as_deref(),
            scheme: self.scheme(),
            allowed: &[],
        };
        let refused = |problem| {
            Box::new(Rejected {
                problem,
                fields: None,
            })
        };
        check_origin(self.request, origins).map_err(|e| refused(Problem::api(e, self.m)))?;
        let fields = read_fields(self.request, self.app.settings.max_body_bytes)
            .map_err(|e| refused(Problem::api(e.into(), self.m)))?;
        let token = fields.optional(FORM_TOKEN_FIELD).ok().flatten();
        let genuine = !self.new_form_cookie
            && token.is_some_and(|token| self.keys.verify(token, self.binding(), now_secs()));
        if !genuine {
            return Err(Box::new(Rejected {
                problem: Problem::form_expired(self.m),
                fields: Some(fields),
            }));
        }
        Ok(fields)
    }

    /// A page: `title`, the notice the query names (or `notice`), and
    /// `main`, with status `status`.
    pub fn html(&self, status: u16, title: &str, notice: Option<Notice>, main: Markup) -> Response {
        let notice = notice.or_else(|| self.notice());
        let viewer = self.viewer().ok().flatten();
        let token = self.form_token();
        let nav = Nav {
            signed_in: viewer.map(|(_, user)| user.email.as_str()),
            outbox: self.outbox_served(),
            form_token: &token,
        };
        let notice = notice.map(|notice| NoticeView {
            text: self.m.notice(notice),
            outbox_hint: notice.sent_a_message() && self.outbox_served(),
        });
        let markup = view::layout(self.m, title, nav, notice, main);
        self.finish(Response::html(markup.into_string()).with_status_code(status))
    }

    /// [`Page::html`] with a problem's status and header.
    pub fn problem_html(&self, problem: &Problem, title: &str, main: Markup) -> Response {
        problem.apply(self.html(problem.status, title, None, main))
    }

    /// A 303 to `to`: the answer to a form that changed something.
    pub fn redirect(&self, to: &str) -> Response {
        self.finish(Response::redirect_303(to.to_owned()))
    }

    /// `response` with the session cookie for `token` set.
    pub fn set_session(&self, response: Response, token: &Token) -> Response {
        cookie::set_session(
            response,
            self.app.settings.cookie_name,
            token,
            self.app.auth.lifetimes().session,
            self.app.settings.secure_cookies,
        )
    }

    /// `response` with the session cookie cleared.
    pub fn clear_session(&self, response: Response) -> Response {
        cookie::clear_session(
            response,
            self.app.settings.cookie_name,
            self.app.settings.secure_cookies,
        )
    }

    /// The pages' headers, and the anti-forgery cookie when it is new.
    fn finish(&self, response: Response) -> Response {
        let response = with_page_headers(response, self.app, &self.request.url());
        if !self.new_form_cookie {
            return response;
        }
        let secure = self.app.settings.secure_cookies;
        let mut value = format!(
            "{}={}; HttpOnly; SameSite=Lax; Path=/",
            form_cookie_name(secure),
            self.form_cookie
        );
        if secure {
            value.push_str("; Secure");
        }
        response.with_additional_header("Set-Cookie", value)
    }
}

/// The Origin check of a form: [`csrf::check`] against this server's
/// origin, with one addition. A page served with `Referrer-Policy:
/// no-referrer` (those a mailed link opens, [`carries_token`]) makes the
/// browser send `Origin: null` with its own forms (the Fetch standard
/// serialises the origin as null under that policy); such a form passes
/// when the browser also says, in `Sec-Fetch-Site` (a header no page can
/// set), that the request is same-origin. Its anti-forgery token is
/// checked all the same.
fn check_origin(request: &Request, origins: csrf::Origins<'_>) -> Result<(), ApiError> {
    let lines = |name: &'static str| {
        request
            .headers()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    };
    let null_origin = lines("Origin").next().is_some() && lines("Origin").all(|o| o == "null");
    let same_origin = lines("Sec-Fetch-Site").next().is_some()
        && lines("Sec-Fetch-Site").all(|site| site.eq_ignore_ascii_case("same-origin"));
    if null_origin && same_origin && carries_token(&request.url()) {
        return Ok(());
    }
    csrf::check(request, origins)
}

/// Whether the page at `path` may hold a token in its URL: the pages a
/// mailed link opens.
pub fn carries_token(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/ui/reset-password" | "/ui/verify-email"
    )
}

/// The headers of every answer under `/ui/`: a strict content security
/// policy (no script at all, styles and images from this server only,
/// forms posting here, no framing: `frame-ancestors 'none'` and
/// `X-Frame-Options` for older browsers), and a `Referrer-Policy`: no
/// `Referer` at all from the pages a mailed link opens (their URL holds
/// its token), none to other sites from the rest (`same-origin`, under
/// which a browser still sends the `Origin` the form check reads).
/// `Cache-Control: no-store` and `nosniff` come with every answer of
/// authd's.
///
/// `form-action` also names `--public-url` and `--allowed-origins`: a
/// browser checks the redirect that follows a sign-in (to `return_to`)
/// against it.
pub fn with_page_headers(response: Response, app: &App, path: &str) -> Response {
    let mut form_action = String::from("'self'");
    for origin in app
        .settings
        .public_origin
        .iter()
        .chain(&app.settings.allowed_origins)
    {
        form_action.push(' ');
        form_action.push_str(origin);
    }
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    response
        .with_additional_header("Content-Security-Policy", policy)
        .with_additional_header(
            "Referrer-Policy",
            if carries_token(path) {
                "no-referrer"
            } else {
                "same-origin"
            },
        )
        .with_additional_header("X-Frame-Options", "DENY")
}

fn now_secs() -> u64 {
    crate::clock::unix_millis() / 1000
}
