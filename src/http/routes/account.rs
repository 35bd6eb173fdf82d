//! A signed-in user's own account: `GET /account`, `PUT /account` (a new
//! address), `PUT /password` and `DELETE /account`. Not in the reference;
//! every change asks for the current password again.

use rouille::{Request, Response};

use crate::auth::Caller;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::{cookie, json, App};
use crate::user::{Email, Password};

/// `PUT /password` (`password`, `new_password`): 200 `{"email", "message":
/// "Password updated"}`; 401 `wrong password` (counted as a failed login,
/// so 429 while the account backs off); 400 for a new password the rules
/// refuse. The caller's session stays; every other one ends, with a
/// pending reset token.
pub fn put_password(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let current = fields.required("password")?;
    let new = Password::parse_for(fields.required("new_password")?, app.auth.password_limit())
        .map_err(ApiError::invalid("new_password"))?;
    let user = app.auth.change_password(caller, &token, current, &new)?;
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("message", "Password updated"),
    ]))
}

/// `DELETE /account` (`password`): 200 `{"message": "account deleted"}` and
/// the session cookie cleared; the user, every session and one-time token
/// of it gone in one transaction. 401 `wrong password` as above.
pub fn delete(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let password = fields.required("password")?;
    app.auth.delete_account(caller, &token, password)?;
    Ok(cookie::clear_session(
        json::fields(&[("message", "account deleted")]),
        app.settings.cookie_name,
        app.settings.secure_cookies,
    ))
}

/// `GET /account`: 200 `{"created_at", "email", "email_verified",
/// "session_count", "totp_enabled"}` for a valid session (`created_at`
/// RFC 3339, `null` for an account older than the record of it), 403
/// otherwise.
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    let token = super::session(app, request)?;
    let view = app.auth.account(&token)?;
    let user = &view.user;
    Ok(json::response(&serde_json::json!({
        "created_at": user.created_at.map(crate::clock::rfc3339),
        "email": user.email.as_str(),
        "email_verified": user.email_verified,
        "session_count": view.session_count,
        "totp_enabled": user.totp_enabled().is_some(),
    })))
}

/// `PUT /account` (`password`, `new_email`): 200 `{"email", "message",
/// "new_email"}` (with `verify_token` in the dev profile): a verification
/// goes to the new address, which becomes the account's when it is
/// redeemed with `PUT /verify_email`, and a notice to the current one.
/// 400 `email already registered` for a taken address (the current one
/// included) or one a new account could not have; 401 `wrong password`
/// as above.
pub fn put(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let password = fields.required("password")?;
    let new_email =
        Email::parse_new(fields.required("new_email")?).map_err(ApiError::invalid("new_email"))?;
    let answer = app
        .auth
        .change_email(caller, &token, password, &new_email)?;
    let message = "a verification token was sent to the new address";
    let mut pairs = vec![
        ("email", answer.user.email.as_str()),
        ("message", message),
        ("new_email", answer.new_email.as_str()),
    ];
    if let Some(token) = &answer.token {
        pairs.push(("verify_token", token.as_str()));
    }
    Ok(json::fields(&pairs))
}
