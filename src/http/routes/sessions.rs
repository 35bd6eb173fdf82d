//! `POST /sessions` (log in) and `DELETE /sessions` (log out).

use std::net::IpAddr;

use rouille::{Request, Response};
use serde_json::json;

use crate::audit::Event;
use crate::auth::AuthError;
use crate::config::Profile;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::{cookie, csrf, App};

/// Logs in: 200 `{"email", "message": "logged in"}` and a fresh session
/// cookie, 401 for any wrong email/password pair, 429 (before any bcrypt
/// work) while the account or the client IP is backing off.
pub fn post(app: &App, request: &Request, ip: IpAddr) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let (email, password) = super::credentials(&fields)?;
    app.throttled(
        app.limits.check_login(ip, email.key()),
        ip,
        &email,
        "POST /sessions",
    )?;
    match app.auth.log_in(&email, &password) {
        Ok((user, token)) => {
            app.limits.account_recovered(email.key());
            app.audit.record(
                Event::LoginSuccess,
                ip,
                Some(user.id),
                Some(user.email.as_str()),
                None,
            );
            let response =
                Response::json(&json!({ "email": user.email.as_str(), "message": "logged in" }));
            Ok(cookie::set_session(
                response,
                app.settings.cookie_name,
                &token,
                app.auth.lifetimes().session,
                app.settings.secure_cookies,
            ))
        }
        Err(e) => {
            if matches!(e, AuthError::InvalidCredentials) {
                app.limits.login_failed(ip, email.key())?;
                app.audit
                    .record(Event::LoginFailure, ip, None, Some(email.as_str()), None);
            }
            Err(e.into())
        }
    }
}

/// Logs out: ends the session on the server, clears the cookie and
/// redirects (302) to `/`; 403 without a valid session, and in production
/// 403 for a cross-site request.
pub fn delete(app: &App, request: &Request, ip: IpAddr) -> Result<Response, ApiError> {
    if app.settings.profile == Profile::Production {
        csrf::check(request, &app.settings.allowed_origins)?;
    }
    let token = cookie::session_token(request, app.settings.cookie_name)
        .ok_or(ApiError::Forbidden("no valid session"))?;
    let user = app.auth.destroy_session(&token)?;
    app.audit.record(
        Event::Logout,
        ip,
        Some(user.id),
        Some(user.email.as_str()),
        None,
    );
    Ok(cookie::clear_session(
        Response::redirect_302("/"),
        app.settings.cookie_name,
        app.settings.secure_cookies,
    ))
}
