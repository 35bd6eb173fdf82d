//! `/totp`: a signed-in user's TOTP second factor. `POST` makes a secret
//! (pending), `PUT` confirms it with a first code, `DELETE` turns it off.
//! Not in the reference; a login then asks for the code
//! ([`super::sessions::post`]).

use rouille::{Request, Response};

use crate::auth::Caller;
use crate::http::body::read_fields;
use crate::http::error::ApiError;
use crate::http::{json, App};

/// `POST /totp`: 200 `{"otpauth_uri", "secret"}`, a new secret (base32)
/// waiting for its first code, replacing any pending one; 403 `totp
/// already enabled` while one is enabled; 403 without a valid session.
pub fn post(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let enrolment = app.auth.begin_totp(caller, &token)?;
    Ok(json::fields(&[
        ("otpauth_uri", enrolment.otpauth_uri.as_str()),
        ("secret", enrolment.secret.as_str()),
    ]))
}

/// `PUT /totp` (`code`): 200 `{"message": "totp enabled",
/// "recovery_codes": [...]}`, ten single-use codes shown this once; 403
/// `invalid totp code` for a wrong code or nothing pending.
pub fn put(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let code = fields.required("code")?;
    let recovery_codes = app.auth.confirm_totp(caller, &token, code)?;
    Ok(json::response(&serde_json::json!({
        "message": "totp enabled",
        "recovery_codes": recovery_codes,
    })))
}

/// `DELETE /totp` (`password`, `code`: a current code or a recovery
/// code): 200 `{"message": "totp disabled"}`; 401 `wrong password` or
/// `invalid totp code` (each counted as a failed login); 403 `totp not
/// enabled`. A pending secret is cancelled with the password alone.
pub fn delete(app: &App, request: &Request, caller: &Caller) -> Result<Response, ApiError> {
    let token = super::state_change(app, request)?;
    let fields = read_fields(request, app.settings.max_body_bytes)?;
    let password = fields.required("password")?;
    let code = fields.optional("code")?.unwrap_or("");
    app.auth.disable_totp(caller, &token, password, code)?;
    Ok(json::fields(&[("message", "totp disabled")]))
}
