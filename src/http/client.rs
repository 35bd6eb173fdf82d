//! Who a request comes from: the client address the throttles and the
//! audit log key on.

use std::net::IpAddr;

use rouille::Request;

/// The client's address: the socket peer, or, behind a reverse proxy that
/// is configured to set it, the last address in `header` (the one the proxy
/// itself added; earlier ones are whatever the client claimed).
pub fn client_ip(request: &Request, header: Option<&str>) -> IpAddr {
    header
        .and_then(|name| request.header(name))
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or_else(|| request.remote_addr().ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: Vec<(String, String)>) -> Request {
        Request::fake_http_from(
            "10.0.0.1:4000".parse().unwrap(),
            "GET",
            "/",
            headers,
            vec![],
        )
    }

    #[test]
    fn client_ip_uses_the_configured_header_only() {
        let xff = vec![(
            "X-Forwarded-For".to_owned(),
            "6.6.6.6, 192.0.2.7".to_owned(),
        )];
        assert_eq!(
            client_ip(&request(xff.clone()), None),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&request(xff), Some("X-Forwarded-For")),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        let junk = vec![("X-Forwarded-For".to_owned(), "not an ip".to_owned())];
        assert_eq!(
            client_ip(&request(junk), Some("X-Forwarded-For")),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
