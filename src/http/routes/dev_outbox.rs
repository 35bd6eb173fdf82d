//! `GET /dev/outbox`: the messages the dev outbox caught, so a prototype
//! needs no mail server. The dev profile only, and only to a loopback peer
//! that named a loopback host: a page elsewhere cannot read it through a
//! DNS name rebound to 127.0.0.1 (its `Host` would be that name).

use rouille::{Request, Response};

use crate::auth::AuthError;
use crate::config::Profile;
use crate::http::error::ApiError;
use crate::http::json;
use crate::http::App;

/// 200 `{"messages": [{"created_at", "id", "kind", "subject", "text",
/// "to"}]}`, newest first; 404 outside the dev profile; 403 to anyone but
/// this machine.
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    if app.settings.profile != Profile::Dev {
        return Err(ApiError::NotFound("not found"));
    }
    if !from_this_machine(request) {
        return Err(ApiError::Forbidden(
            "the dev outbox answers only on this machine (a loopback address and Host)",
        ));
    }
    let caught = app
        .auth
        .store()
        .caught()
        .map_err(|e| ApiError::from(AuthError::Store(e)))?;
    let messages: Vec<serde_json::Value> = caught
        .iter()
        .rev()
        .map(|c| {
            serde_json::json!({
                "created_at": crate::clock::rfc3339(c.created_at),
                "id": c.id,
                "kind": c.message.kind.name(),
                "subject": c.message.subject,
                "text": c.message.text,
                "to": c.message.to,
            })
        })
        .collect();
    Ok(json::response(&serde_json::json!({ "messages": messages })))
}

/// Whether `request` comes from this machine: a loopback peer that named
/// a loopback `Host`, through no proxy (a reverse proxy on this machine
/// would pass both checks for anyone it serves). The dev outbox page
/// (`/ui/outbox`) asks the same.
pub(crate) fn from_this_machine(request: &Request) -> bool {
    let forwarded = ["Forwarded", "X-Forwarded-For", "X-Real-IP"]
        .iter()
        .any(|name| request.header(name).is_some());
    !forwarded
        && request.remote_addr().ip().is_loopback()
        && request.header("Host").is_some_and(loopback_host)
}

/// Whether a `Host` header names this machine: `localhost`, a loopback
/// address, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_hosts_pass() {
        for host in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "rebound.example:5000",
            "10.0.0.1",
            "[fd00::1]:80",
            "localhost.example",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
