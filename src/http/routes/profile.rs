//! `GET /profile`: who the session cookie belongs to.

use rouille::{Request, Response};

use crate::http::cookie;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// 200 `{"email"}` for a valid session, 403 otherwise.
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    let token = cookie::session_token(request, app.settings.cookie_name)
        .ok_or(ApiError::Forbidden("no valid session"))?;
    let user = app.auth.get_user_from_session_id(&token)?;
    Ok(json::fields(&[("email", user.email.as_str())]))
}
