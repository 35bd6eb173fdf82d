//! `POST /users`: registration.

use rouille::{Request, Response};

use crate::audit::Event;
use crate::auth::AuthError;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::limits::Client;
use crate::http::App;

/// Registers `email` with `password`: 200 `{"email", "message": "user
/// created"}`, 400 `{"message": "email already registered"}`, 429 past the
/// request rate per IP or per email.
pub fn post(app: &App, request: &Request, client: Client) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let (email, password) = super::credentials(&fields)?;
    let ip = client.ip;
    app.throttled(
        app.limits.register(client, email.key()),
        ip,
        email.as_str(),
        "POST /users",
    )?;
    match app.auth.register_user(&email, &password) {
        Ok(user) => {
            app.audit.record(
                Event::Register,
                ip,
                Some(user.id),
                Some(user.email.as_str()),
                None,
            );
            Ok(json::fields(&[
                ("email", user.email.as_str()),
                ("message", "user created"),
            ]))
        }
        Err(e) => {
            if matches!(e, AuthError::EmailTaken) {
                app.audit
                    .record(Event::RegisterRefused, ip, None, Some(email.as_str()), None);
            }
            Err(e.into())
        }
    }
}
