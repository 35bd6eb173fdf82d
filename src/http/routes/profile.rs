//! `GET /profile`: who the session (cookie or Bearer token) belongs to.

use rouille::{Request, Response};

use crate::http::credential::Credential;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// 200 `{"email"}` for a valid session, 403 otherwise.
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    let presented = Credential::of(request, app.settings.cookie_name);
    let token = presented
        .token()
        .ok_or(ApiError::Forbidden("no valid session"))?;
    let user = app.auth.get_user_from_session_id(token)?;
    Ok(json::fields(&[("email", user.email.as_str())]))
}
