//! `POST /reset_password` (get a token) and `PUT /reset_password` (use it).

use rouille::{Request, Response};

use crate::audit::Event;
use crate::auth::AuthError;
use crate::config::Profile;
use crate::delivery::{expires_at, Job};
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::limits::Client;
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
///
/// An email that is missing or cannot be an address is answered as an
/// unregistered one, as the reference does when its lookup finds nothing.
pub fn post(app: &App, request: &Request, client: Client) -> Result<Response, ApiError> {
    let ip = client.ip;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    app.throttled(
        app.limits.reset_request(client, typed),
        ip,
        typed,
        "POST /reset_password",
    )?;
    let queue_full = |_| ApiError::Unavailable("too many reset requests queued, retry shortly");
    let email = Email::parse(typed);
    if app.settings.profile == Profile::Production {
        let outbox = app.settings.outbox.as_ref().ok_or(ApiError::Internal(
            "production profile without a delivery channel".to_owned(),
        ))?;
        let shown = email
            .as_ref()
            .map_or(typed.trim(), |email| email.as_str())
            .to_owned();
        match email {
            Ok(email) => outbox.send(Job::Issue { email, ip }).map_err(queue_full)?,
            Err(_) => app
                .audit
                .record(Event::ResetRefused, ip, None, Some(typed), None),
        }
        return Ok(json::fields(&[
            ("email", &shown),
            (
                "message",
                "if this email is registered, a reset token is on its way",
            ),
        ]));
    }
    let Ok(email) = email else {
        app.audit
            .record(Event::ResetRefused, ip, None, Some(typed), None);
        return Err(AuthError::UnknownEmail.into());
    };
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
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("reset_token", token.as_str()),
    ]))
}

/// Sets a new password with a reset token: 200 `{"email", "message":
/// "Password updated"}`, 403 if the token is not the current, unexpired one
/// of that email's owner. Success also lifts the account's login backoff.
///
/// A missing or malformed email, or a token that is empty or not shaped
/// like ours, can own no token: 403 like any other wrong pair.
pub fn put(app: &App, request: &Request, client: Client) -> Result<Response, ApiError> {
    let ip = client.ip;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let typed = fields.optional("email")?.unwrap_or("");
    let raw_token = fields.required("reset_token")?;
    let new_password = Password::parse(fields.required("new_password")?)
        .map_err(ApiError::invalid("new_password"))?;
    let refused = || {
        app.audit
            .record(Event::ResetRefused, ip, None, Some(typed), None);
        ApiError::from(AuthError::InvalidResetToken)
    };
    // A value that is not shaped like our tokens cannot be valid: refuse it
    // without hashing or a lookup.
    let (Ok(email), Some(token)) = (Email::parse(typed), Token::parse(raw_token)) else {
        return Err(refused());
    };
    let user = app
        .auth
        .update_password(&email, &token, &new_password)
        .map_err(|e| match e {
            AuthError::InvalidResetToken => refused(),
            other => other.into(),
        })?;
    app.limits.account_recovered(email.key());
    app.audit.record(
        Event::PasswordChanged,
        ip,
        Some(user.id),
        Some(user.email.as_str()),
        None,
    );
    Ok(json::fields(&[
        ("email", user.email.as_str()),
        ("message", "Password updated"),
    ]))
}
