//! `GET /`: the reference's greeting, also where logout redirects to.

use rouille::Response;
use serde_json::json;

use crate::http::error::ApiError;

/// `200 {"message": "Bienvenue"}`.
pub fn get() -> Result<Response, ApiError> {
    Ok(Response::json(&json!({ "message": "Bienvenue" })))
}
