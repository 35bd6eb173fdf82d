//! `GET /metrics`: the Prometheus metrics ([`crate::metrics`]), on the
//! main listener where the configuration allows it, or on the listener of
//! `--metrics-addr`.

use rouille::{Request, Response};

use crate::http::error::ApiError;
use crate::http::App;

/// 200 with the metrics: OpenMetrics text to a scraper whose `Accept`
/// names it (Prometheus does), else the classic text format (curl).
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    let openmetrics = request
        .header("Accept")
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (content_type, text) = app.metrics.render(openmetrics);
    Ok(Response::from_data(content_type, text))
}
