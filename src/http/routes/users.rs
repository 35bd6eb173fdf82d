//! `POST /users`: registration.

use rouille::{Request, Response};

use crate::auth::Caller;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// Registers `email` with `password`: 200 `{"email", "message": "user
/// created"}`, 400 `{"message": "email already registered"}`, 429 past the
/// request rate per IP or per email; in production 403 first for a
/// cross-site request (a page elsewhere must not register accounts from
/// its visitors' addresses).
pub fn post(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let (email, password) = super::credentials(&fields, app.auth.password_limit())?;
    let user = app.auth.register(caller, &email, &password)?;
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("message", "user created"),
    ]))
}
