//! `POST /reset_password` (get a token) and `PUT /reset_password` (use it).

use rouille::{Request, Response};
use serde_json::json;

use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::App;
use crate::token::Token;
use crate::user::{Email, Password};

/// Issues a reset token: 200 `{"email", "reset_token"}`, 403 for an
/// unregistered email (the reference's behaviour).
pub fn post(app: &App, request: &Request) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let email = Email::parse(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let (user, token) = app.auth.get_reset_password_token(&email)?;
    Ok(Response::json(
        &json!({ "email": user.email.as_str(), "reset_token": token.as_str() }),
    ))
}

/// Sets a new password with a reset token: 200 `{"email", "message":
/// "Password updated"}`, 403 if the token is not the current one of that
/// email's owner.
pub fn put(app: &App, request: &Request) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let email = Email::parse(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let raw_token = fields.required("reset_token")?;
    let new_password = Password::parse(fields.required("new_password")?)
        .map_err(ApiError::invalid("new_password"))?;
    if raw_token.is_empty() {
        return Err(ApiError::BadRequest(
            "reset_token must not be empty".to_owned(),
        ));
    }
    // A value that is not shaped like our tokens cannot be valid: refuse it
    // without hashing or a lookup.
    let token = Token::parse(raw_token).ok_or(ApiError::Forbidden("invalid reset token"))?;
    let user = app.auth.update_password(&email, &token, &new_password)?;
    Ok(Response::json(
        &json!({ "email": user.email.as_str(), "message": "Password updated" }),
    ))
}
