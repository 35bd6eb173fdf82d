//! `POST /reset_password` (get a token) and `PUT /reset_password` (use it).

use rouille::{Request, Response};

use crate::auth::{Caller, TokenAnswer};
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;
use crate::user::Password;

/// Asks for a reset token.
///
/// Dev (the reference): 200 `{"email", "reset_token"}`, 403 for an
/// unregistered email (or one that cannot be an address). Production: the
/// same 200 `{"email", "message"}` whether or not the email is registered,
/// in the same time. 429 past the request rate per IP or per email; 503 if
/// the delivery queue is full. In production 403 first for a cross-site
/// request.
pub fn post(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    Ok(match app.auth.request_reset(caller, typed)? {
        TokenAnswer::Token { email, token } => {
            json::fields(&[("email", &email), ("reset_token", token.as_str())])
        }
        TokenAnswer::Queued { shown } => json::fields(&[
            ("email", &shown),
            (
                "message",
                "if this email is registered, a reset token is on its way",
            ),
        ]),
    })
}

/// Sets a new password with a reset token: 200 `{"email", "message":
/// "Password updated"}`, 403 if the token is not the current, unexpired one
/// of that email's owner; in production 403 first for a cross-site request
/// (a page elsewhere must not set a password it chose).
pub fn put(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    let raw_token = fields.required("reset_token")?;
    let new_password =
        Password::parse_for(fields.required("new_password")?, app.auth.password_limit())
            .map_err(ApiError::invalid("new_password"))?;
    let user = app
        .auth
        .redeem_reset(caller, typed, raw_token, &new_password)?;
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("message", "Password updated"),
    ]))
}
