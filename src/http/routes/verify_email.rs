//! `POST /verify_email` (send a verification token) and `PUT
//! /verify_email` (redeem it): proof that an account's address, or the
//! new address of an email change, reaches its owner.

use rouille::{Request, Response};

use crate::auth::{Caller, TokenAnswer};
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// Asks for a verification token, as `POST /reset_password` asks for a
/// reset token.
///
/// Dev: 200 `{"email", "verify_token"}`, 403 `email not registered` for
/// an unregistered email. Production: the same 200 `{"email", "message"}`
/// whether or not the email is registered, the token on its way by the
/// delivery channel. 429 past the request rate per IP or per email; 503
/// if the delivery queue is full; in production 403 first for a
/// cross-site request.
pub fn post(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    Ok(match app.auth.request_verification(caller, typed)? {
        TokenAnswer::Token { email, token } => {
            json::fields(&[("email", &email), ("verify_token", token.as_str())])
        }
        TokenAnswer::Queued { shown } => json::fields(&[
            ("email", &shown),
            (
                "message",
                "if this email is registered, a verification token is on its way",
            ),
        ]),
    })
}

/// Redeems a verification token: 200 `{"email", "message": "email
/// verified"}` (the account's address, the new one after an email
/// change); 403 `invalid verify token` for a token that is used,
/// replaced, expired or sent to another address; 400 `email already
/// registered` if an email change's new address was taken meanwhile. In
/// production 403 first for a cross-site request.
pub fn put(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    app.refuse_cross_site(request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    let token = fields.optional("verify_token")?.unwrap_or("");
    let user = app.auth.redeem_verification(caller, typed, token)?;
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("message", "email verified"),
    ]))
}
