//! `GET /healthz` and `GET /openapi.json`: for load balancers and for
//! client generators.

use std::sync::OnceLock;

use rouille::Response;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// The OpenAPI 3.1 description of this API, served as is. A test checks it
/// against the live server's answers.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// 200 `{"status": "ok", "version"}` when the store answers a read and
/// the listener accepts connections, else 503 `{"status": "unavailable",
/// "version"}` (with `"reason"` when the listener is the problem), so a
/// load balancer takes a broken instance out.
pub fn healthz(app: &App) -> Result<Response, ApiError> {
    let version = env!("CARGO_PKG_VERSION");
    if app
        .settings
        .listener
        .as_ref()
        .is_some_and(|listener| !listener.is_accepting())
    {
        return Ok(json::response(&json!({
            "status": "unavailable",
            "reason": "not accepting connections",
            "version": version,
        }))
        .with_status_code(503));
    }
    match app.auth.ping() {
        Ok(()) => Ok(json::fields(&[("status", "ok"), ("version", version)])),
        Err(e) => {
            eprintln!("authd: health check failed: {e}");
            Ok(
                json::fields(&[("status", "unavailable"), ("version", version)])
                    .with_status_code(503),
            )
        }
    }
}

/// The OpenAPI document.
pub fn openapi() -> Result<Response, ApiError> {
    // Written like every other answer (compact, sorted, ASCII), once.
    static WRITTEN: OnceLock<Result<String, String>> = OnceLock::new();
    let written = WRITTEN.get_or_init(|| {
        serde_json::from_str(OPENAPI)
            .map(|doc| json::to_flask(&doc))
            .map_err(|e| e.to_string())
    });
    match written {
        Ok(text) => Ok(Response::from_data("application/json", text.clone())),
        Err(e) => Err(ApiError::Internal(format!("openapi.json: {e}"))),
    }
}
