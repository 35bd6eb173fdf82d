//! `POST /reset_password` (get a token) and `PUT /reset_password` (use it).

use std::net::IpAddr;

use rouille::{Request, Response};
use serde_json::json;

use crate::audit::Event;
use crate::config::Profile;
use crate::delivery::{expires_at, Job};
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::App;
use crate::token::Token;
use crate::user::{Email, Password};

/// Issues a reset token.
///
/// Dev (the reference): 200 `{"email", "reset_token"}`, 403 for an
/// unregistered email; the token also goes to the delivery channel if one
/// is set. Production: the same 200 `{"email", "message"}` whether or not
/// the email is registered, in the same time: the request only enqueues,
/// and the delivery worker issues and sends the token. 429 past the request
/// rate per IP or per email; 503 if the delivery queue is full.
pub fn post(app: &App, request: &Request, ip: IpAddr) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let email = Email::parse(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    app.throttled(
        app.limits.reset_request(ip, email.key()),
        ip,
        &email,
        "POST /reset_password",
    )?;
    let queue_full = |_| ApiError::Unavailable("too many reset requests queued, retry shortly");
    if app.settings.profile == Profile::Production {
        let outbox = app.settings.outbox.as_ref().ok_or(ApiError::Internal(
            "production profile without a delivery channel".to_owned(),
        ))?;
        let shown = email.as_str().to_owned();
        outbox.send(Job::Issue { email, ip }).map_err(queue_full)?;
        return Ok(Response::json(&json!({
            "email": shown,
            "message": "if this email is registered, a reset token is on its way",
        })));
    }
    let (user, token) = app.issue_reset_token(&email, ip)?;
    if let Some(outbox) = &app.settings.outbox {
        outbox
            .send(Job::Deliver {
                email: user.email.as_str().to_owned(),
                token: token.clone(),
                expires_at: expires_at(app),
            })
            .map_err(queue_full)?;
    }
    Ok(Response::json(
        &json!({ "email": user.email.as_str(), "reset_token": token.as_str() }),
    ))
}

/// Sets a new password with a reset token: 200 `{"email", "message":
/// "Password updated"}`, 403 if the token is not the current, unexpired one
/// of that email's owner. Success also lifts the account's login backoff.
pub fn put(app: &App, request: &Request, ip: IpAddr) -> Result<Response, ApiError> {
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
    let refused = || {
        app.audit
            .record(Event::ResetRefused, ip, None, Some(email.as_str()), None);
    };
    // A value that is not shaped like our tokens cannot be valid: refuse it
    // without hashing or a lookup.
    let Some(token) = Token::parse(raw_token) else {
        refused();
        return Err(ApiError::Forbidden("invalid reset token"));
    };
    let user = app
        .auth
        .update_password(&email, &token, &new_password)
        .inspect_err(|_| refused())?;
    app.limits.account_recovered(email.key());
    app.audit.record(
        Event::PasswordChanged,
        ip,
        Some(user.id),
        Some(user.email.as_str()),
        None,
    );
    Ok(Response::json(
        &json!({ "email": user.email.as_str(), "message": "Password updated" }),
    ))
}
