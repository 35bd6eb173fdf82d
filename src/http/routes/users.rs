//! `POST /users`: registration.

use rouille::{Request, Response};
use serde_json::json;

use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::App;
use crate::user::{Email, Password};

/// Registers `email` with `password`: 200 `{"email", "message": "user
/// created"}`, or 400 `{"message": "email already registered"}`.
pub fn post(app: &App, request: &Request) -> Result<Response, ApiError> {
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let email = Email::parse(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let password =
        Password::parse(fields.required("password")?).map_err(ApiError::invalid("password"))?;
    let user = app.auth.register_user(&email, &password)?;
    Ok(Response::json(
        &json!({ "email": user.email.as_str(), "message": "user created" }),
    ))
}
