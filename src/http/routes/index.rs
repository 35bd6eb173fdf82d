//! `GET /`: the reference's greeting, also where logout redirects to.

use crate::http::json;
use rouille::Response;

use crate::http::error::ApiError;

/// `200 {"message": "Bienvenue"}`.
pub fn get() -> Result<Response, ApiError> {
    Ok(json::fields(&[("message", "Bienvenue")]))
}
