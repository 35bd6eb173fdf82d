//! `POST /sessions` (log in) and `DELETE /sessions` (log out).

use rouille::{Request, Response};
use serde_json::json;

use crate::http::body::read_fields;
use crate::http::cookie;
use crate::http::error::ApiError;
use crate::http::App;
use crate::user::{Email, Password};

/// Logs in: 200 `{"email", "message": "logged in"}` and a fresh
/// `session_id` cookie, or 401 for any wrong email/password pair.
pub fn post(app: &App, request: &Request) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let email = Email::parse(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let password =
        Password::parse(fields.required("password")?).map_err(ApiError::invalid("password"))?;
    let (user, token) = app.auth.log_in(&email, &password)?;
    let response = Response::json(&json!({ "email": user.email.as_str(), "message": "logged in" }));
    Ok(cookie::set_session(
        response,
        &token,
        app.settings.secure_cookies,
    ))
}

/// Logs out: ends the session on the server, clears the cookie and
/// redirects (302) to `/`; 403 without a valid session.
pub fn delete(app: &App, request: &Request) -> Result<Response, ApiError> {
    let token = cookie::session_token(request).ok_or(ApiError::Forbidden("no valid session"))?;
    app.auth.destroy_session(&token)?;
    Ok(cookie::clear_session(
        Response::redirect_302("/"),
        app.settings.secure_cookies,
    ))
}
