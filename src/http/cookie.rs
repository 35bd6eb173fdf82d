//! The cookies: `session_id` (reading the token and writing the header),
//! and the device cookie of the production profile ([`crate::device`]).

use std::time::Duration;

use rouille::{Request, Response};

use crate::device::{self, DeviceCookie};
use crate::token::Token;

/// The device cookie's name. It is issued in the production profile only,
/// always `Secure`, so it always has the `__Host-` prefix (no `Domain`,
/// `Path=/`): no other host, subdomain or path can set it.
pub const DEVICE_COOKIE: &str = "__Host-authd_device";

/// The session token from the request's cookie `name`, if one is present
/// and shaped like a token we issue. A malformed value is treated as absent.
pub fn session_token(request: &Request, name: &str) -> Option<Token> {
    rouille::input::cookies(request)
        .find(|(cookie, _)| *cookie == name)
        .and_then(|(_, value)| Token::parse(value))
}

/// The device cookie the request presents, if it has the shape of one
/// authd issues; anything else is treated as absent (an unknown device).
pub fn device_cookie(request: &Request) -> Option<DeviceCookie> {
    rouille::input::cookies(request)
        .find(|(cookie, _)| *cookie == DEVICE_COOKIE)
        .and_then(|(_, value)| DeviceCookie::parse(value))
}

/// Adds the device cookie carrying `value`, for a year
/// ([`device::LIFETIME`]), renewed at every successful login.
pub fn set_device(response: Response, value: &DeviceCookie) -> Response {
    let header = format!(
        "{DEVICE_COOKIE}={}; Max-Age={}; {}",
        value.as_str(),
        device::LIFETIME.as_secs(),
        attributes(true)
    );
    response.with_additional_header("Set-Cookie", header)
}

/// Attributes shared by setting and clearing, so both address one cookie.
fn attributes(secure: bool) -> &'static str {
    if secure {
        "HttpOnly; SameSite=Lax; Path=/; Secure"
    } else {
        "HttpOnly; SameSite=Lax; Path=/"
    }
}

/// Adds the cookie that carries `token`; it lives as long as the session
/// may (`Max-Age`), so the browser drops it when the server would refuse it.
pub fn set_session(
    response: Response,
    name: &str,
    token: &Token,
    lifetime: Duration,
    secure: bool,
) -> Response {
    let value = format!(
        "{name}={}; Max-Age={}; {}",
        token.as_str(),
        lifetime.as_secs(),
        attributes(secure)
    );
    response.with_additional_header("Set-Cookie", value)
}

/// Adds a header that makes the browser drop the cookie.
pub fn clear_session(response: Response, name: &str, secure: bool) -> Response {
    let value = format!(
        "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {}",
        attributes(secure)
    );
    response.with_additional_header("Set-Cookie", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> Request {
        Request::fake_http("GET", "/", vec![("Cookie".into(), value.into())], vec![])
    }

    #[test]
    fn reads_a_well_formed_token_only() {
        let token = Token::generate().unwrap();
        let request = with_cookie(&format!("a=b; session_id={}", token.as_str()));
        assert_eq!(session_token(&request, "session_id"), Some(token.clone()));
        let read = |header: &str| session_token(&with_cookie(header), "session_id");
        assert_eq!(read("session_id=short"), None);
        assert_eq!(read("other=x"), None);
        let long = format!("session_id={}", "a".repeat(10_000));
        assert_eq!(read(&long), None);
        // The production name is another cookie.
        let prefixed = format!("__Host-session_id={}", token.as_str());
        assert_eq!(read(&prefixed), None);
        assert!(session_token(&with_cookie(&prefixed), "__Host-session_id").is_some());
    }

    #[test]
    fn cookie_attributes() {
        let token = Token::generate().unwrap();
        let day = Duration::from_secs(86400);
        let response = set_session(Response::empty_204(), "session_id", &token, day, false);
        let header = response
            .headers
            .iter()
            .find(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.to_string())
            .unwrap();
        assert_eq!(
            header,
            format!(
                "session_id={}; Max-Age=86400; HttpOnly; SameSite=Lax; Path=/",
                token.as_str()
            )
        );
        let secure = set_session(Response::empty_204(), "session_id", &token, day, true);
        assert!(secure.headers.iter().any(|(_, v)| v.ends_with("; Secure")));
    }

    #[test]
    fn the_device_cookie_is_host_prefixed_and_lasts_a_year() {
        let keys = device::DeviceKeys::new([1; 32], None);
        let (_, value) = keys.issue(b"a@x.io").unwrap();
        let response = set_device(Response::empty_204(), &value);
        let headers: Vec<_> = response
            .headers
            .iter()
            .filter(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.to_string())
            .collect();
        assert_eq!(
            headers,
            [format!(
                "__Host-authd_device={}; Max-Age=31536000; HttpOnly; SameSite=Lax; Path=/; Secure",
                value.as_str()
            )]
        );
        // Read back among other cookies; only its own name, only its shape.
        let header = format!("session_id=x; __Host-authd_device={}; y=z", value.as_str());
        assert_eq!(device_cookie(&with_cookie(&header)), Some(value.clone()));
        let unprefixed = format!("authd_device={}", value.as_str());
        assert_eq!(device_cookie(&with_cookie(&unprefixed)), None);
        let long = format!("__Host-authd_device={}A", value.as_str());
        assert_eq!(device_cookie(&with_cookie(&long)), None);
        assert_eq!(device_cookie(&with_cookie("__Host-authd_device=")), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any Cookie header: no panic, and only a 43-character URL-safe
        /// value named session_id is ever taken as a token.
        #[test]
        fn cookie_parsing_is_total_and_strict(header in "\\PC{0,200}") {
            let request = Request::fake_http("GET", "/", vec![("Cookie".into(), header)], vec![]);
            if let Some(token) = session_token(&request, "session_id") {
                prop_assert_eq!(token.as_str().len(), 43);
                prop_assert!(token.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }

        /// A token we issue is always found again, whatever cookies surround it.
        #[test]
        fn an_issued_token_is_read_back(before in "[a-z]{1,5}=[a-z0-9]{0,10}", after in "[a-z]{1,5}=[a-z0-9]{0,10}") {
            let token = Token::generate().unwrap();
            let header = format!("{before}; session_id={}; {after}", token.as_str());
            prop_assume!(!before.starts_with("session_id="));
            let request = Request::fake_http("GET", "/", vec![("Cookie".into(), header)], vec![]);
            prop_assert_eq!(session_token(&request, "session_id"), Some(token));
        }
    }
}
