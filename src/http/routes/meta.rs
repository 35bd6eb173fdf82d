//! `GET /healthz` and `GET /openapi.json`: for load balancers and for
//! client generators.

use rouille::Response;
use serde_json::json;

use crate::http::error::ApiError;
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
        return Ok(Response::json(&json!({
            "status": "unavailable",
            "reason": "not accepting connections",
            "version": version,
        }))
        .with_status_code(503));
    }
    match app.auth.ping() {
        Ok(()) => Ok(Response::json(
            &json!({ "status": "ok", "version": version }),
        )),
        Err(e) => {
            eprintln!("authd: health check failed: {e}");
            Ok(
                Response::json(&json!({ "status": "unavailable", "version": version }))
                    .with_status_code(503),
            )
        }
    }
}

/// The OpenAPI document.
pub fn openapi() -> Result<Response, ApiError> {
    Ok(Response::from_data(
        "application/json; charset=utf-8",
        OPENAPI,
    ))
}
