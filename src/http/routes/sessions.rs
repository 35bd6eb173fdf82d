//! `POST /sessions` (log in) and `DELETE /sessions` (log out).

use rouille::{Request, Response};

use crate::audit::Event;
use crate::auth::AuthError;
use crate::config::Profile;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::limits::Client;
use crate::http::{cookie, csrf, App};
use crate::user::{Email, Password};

/// Logs in: 200 `{"email", "message": "logged in"}` and a fresh session
/// cookie, 401 for any wrong email/password pair, 429 (before any bcrypt
/// work) while the account or the client IP is backing off.
///
/// As the reference looks up whatever it is given, an email that is
/// missing or cannot be an address, or a password no account can have, is
/// a wrong pair like any other: 401, after the same bcrypt work, counted
/// against what was typed.
pub fn post(app: &App, request: &Request, client: Client) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?;
    let password = fields.required("password")?;
    let typed = typed.unwrap_or("");
    app.throttled(
        app.limits.check_login(client, typed),
        client.ip,
        typed,
        "POST /sessions",
    )?;
    let outcome = match (Email::parse(typed), Password::parse(password)) {
        (Ok(email), Ok(password)) => app.auth.log_in(&email, &password),
        _ => app.auth.refuse_login(),
    };
    match outcome {
        Ok((user, token)) => {
            app.limits.account_recovered(typed);
            app.audit.record(
                Event::LoginSuccess,
                client.ip,
                Some(user.id),
                Some(user.email.as_str()),
                None,
            );
            let response =
                json::fields(&[("email", user.email.as_str()), ("message", "logged in")]);
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
                app.limits.login_failed(client, typed)?;
                app.audit
                    .record(Event::LoginFailure, client.ip, None, Some(typed), None);
            }
            Err(e.into())
        }
    }
}

/// Logs out: ends the session on the server, clears the cookie and
/// redirects (302) to `/`; 403 without a valid session, and in production
/// 403 for a cross-site request.
pub fn delete(app: &App, request: &Request, client: Client) -> Result<Response, ApiError> {
    if app.settings.profile == Profile::Production {
        csrf::check(request, &app.settings.allowed_origins)?;
    }
    let token = cookie::session_token(request, app.settings.cookie_name)
        .ok_or(ApiError::Forbidden("no valid session"))?;
    let user = app.auth.destroy_session(&token)?;
    app.audit.record(
        Event::Logout,
        client.ip,
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
