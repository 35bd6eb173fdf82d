//! CORS: which pages on other origins may read authd's answers.
//!
//! A browser lets a page read an answer from another origin only when the
//! answer names the page's origin in `Access-Control-Allow-Origin`; with
//! `fetch(url, {credentials: "include"})` the answer must also say
//! `Access-Control-Allow-Credentials: true`. Requests other than simple
//! ones (a JSON body, `PUT`, `DELETE`) are first asked about with a
//! preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
//!
//! The origins allowed are those of `--allowed-origins` (checked at start:
//! [`parse_allowed_origins`]) and, in the dev profile only, any page served
//! from this machine over plain HTTP: `http://localhost`, `http://127.0.0.1`
//! and `http://[::1]`, on any port. `null` (sandboxed frames, `data:`
//! pages: any site can make one) never matches. For those origins:
//!
//! - every answer of the API, errors, 404 and 405 included, carries
//!   `Access-Control-Allow-Origin: <origin>`,
//!   `Access-Control-Allow-Credentials: true` and
//!   `Access-Control-Expose-Headers: Retry-After` (so a throttled page can
//!   read how long to wait);
//! - a preflight on any path answers 204 with
//!   `Access-Control-Allow-Methods`, `Access-Control-Allow-Headers` and
//!   `Access-Control-Max-Age` besides.
//!
//! A preflight from any other origin gets a bare 204, which the browser
//! reads as a refusal; other answers to it carry no CORS headers. Every
//! answer carries `Vary: Origin` (added with the common headers), so no
//! cache hands one origin's answer to another. An `OPTIONS` without
//! `Access-Control-Request-Method` is not a preflight: it is routed like
//! any other method, and the API's routes answer it 405 with `Allow`.
//!
//! Never on the operator's and developer's own pages, `/metrics`, `/dev/*`
//! and `/ui/*` ([`applies_to`]): they are answered as if no `Origin` had
//! been sent, so no other site's page can read them.
//!
//! CORS decides who may *read* an answer. Which writes a page on another
//! site may *make* is the cross-site rule's business ([`super::csrf`]).

use rouille::{Request, Response};

use super::csrf;
use crate::config::Profile;

/// `Access-Control-Allow-Methods` of a preflight: the API's methods.
pub const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE";
/// `Access-Control-Allow-Headers` of a preflight: a JSON body, and the
/// bearer token a cross-site front end will send.
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization";
/// `Access-Control-Max-Age` of a preflight, in seconds: how long the
/// browser may skip asking again.
pub const MAX_AGE: &str = "600";
/// `Access-Control-Expose-Headers`: the headers beyond the safelisted ones
/// a page may read.
pub const EXPOSE_HEADERS: &str = "Retry-After";

/// First path segments CORS never applies to: the metrics, the dev-only
/// pages and the bundled UI.
const EXCLUDED: [&str; 3] = ["metrics", "dev", "ui"];

/// Hosts whose plain-HTTP pages the dev profile allows, on any port.
const DEV_LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Parses `--allowed-origins` into canonical origins (lower case, no
/// default port, no trailing `/`), without duplicates; empty values are
/// skipped. Each must be `scheme://host[:port]`, http or https; the error
/// names the value that is not, and why.
pub fn parse_allowed_origins(values: &[String]) -> Result<Vec<String>, String> {
    let mut origins: Vec<String> = Vec::with_capacity(values.len());
    for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let origin = parse_origin(value)
            .map_err(|why| format!("--allowed-origins (AUTHD_ALLOWED_ORIGINS): {why}"))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// One origin of `--allowed-origins`, canonical; the error names the
/// value and says why (fit for a command-line value parser as it is).
pub fn parse_origin(value: &str) -> Result<String, String> {
    if value.eq_ignore_ascii_case("null") {
        return Err(format!(
            "{value:?} is the origin of sandboxed frames and data: pages, which any site can \
             make, so it is never allowed"
        ));
    }
    if value.contains('*') {
        return Err(format!(
            "{value:?}: wildcards are not accepted (a page allowed here acts as the signed-in \
             user): list each origin as scheme://host[:port]"
        ));
    }
    if !value.contains("://") {
        return Err(format!(
            "{value:?} has no scheme: an origin is scheme://host[:port], e.g. https://{value} \
             or http://{value}"
        ));
    }
    csrf::parse_public_url(value).map_err(|why| format!("{why} (an origin: scheme://host[:port])"))
}

/// Whether CORS applies to `path` (percent-decoded, without the query):
/// everywhere but `/metrics`, `/dev/*` and `/ui/*`, however spelt
/// (`//dev/`, `/UI`).
pub fn applies_to(path: &str) -> bool {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    !EXCLUDED.iter().any(|e| first.eq_ignore_ascii_case(e))
}

/// Whether `request` is a CORS preflight: `OPTIONS` with
/// `Access-Control-Request-Method`.
pub fn is_preflight(request: &Request) -> bool {
    request.method() == "OPTIONS" && request.header("Access-Control-Request-Method").is_some()
}

/// The request's `Origin` as sent, when pages of that origin may read
/// authd's answers: one of `allowed` (canonical, from
/// [`parse_allowed_origins`]), or in the dev profile a local plain-HTTP
/// page. `None` without an `Origin`, with more than one, or for `null`.
pub fn allowed_origin<'r>(
    request: &'r Request,
    allowed: &[String],
    profile: Profile,
) -> Option<&'r str> {
    let mut lines = request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Origin"))
        .map(|(_, value)| value.trim());
    let sent = lines.next()?;
    if lines.next().is_some() {
        // A browser sends one: two is no browser's, and which to echo?
        return None;
    }
    let origin = csrf::canonical(sent);
    if origin == "null" || origin.is_empty() {
        return None;
    }
    let listed = allowed.contains(&origin);
    (listed || (profile == Profile::Dev && is_dev_local(&origin))).then_some(sent)
}

/// `http://localhost`, `http://127.0.0.1` or `http://[::1]`, on any port
/// (`origin` canonical).
fn is_dev_local(origin: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    csrf::split_port(authority).is_some_and(|(host, _)| DEV_LOCAL_HOSTS.contains(&host))
}

/// The answer to a preflight: 204, with the preflight's headers when
/// `origin` is allowed (the headers of every answer to it are added by
/// [`allow`]).
pub fn preflight(origin: Option<&str>) -> Response {
    let response = Response::empty_204();
    match origin {
        Some(_) => response
            .with_additional_header("Access-Control-Allow-Methods", ALLOW_METHODS)
            .with_additional_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            .with_additional_header("Access-Control-Max-Age", MAX_AGE),
        None => response,
    }
}

/// `response` with the headers that let a page of the allowed `origin`
/// read it, credentials included.
pub fn allow(response: Response, origin: &str) -> Response {
    response
        .with_additional_header("Access-Control-Allow-Origin", origin.to_owned())
        .with_additional_header("Access-Control-Allow-Credentials", "true")
        .with_additional_header("Access-Control-Expose-Headers", EXPOSE_HEADERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::fake_http(method, "/sessions", headers, vec![])
    }

    fn allowed_in(profile: Profile, listed: &[&str], origin: &str) -> bool {
        let listed: Vec<String> = listed.iter().map(|o| (*o).to_owned()).collect();
        let listed = parse_allowed_origins(&listed).unwrap();
        let request = request("GET", &[("Origin", origin)]);
        allowed_origin(&request, &listed, profile) == Some(origin.trim())
    }

    #[test]
    fn listed_origins_are_parsed_strictly_and_canonically() {
        let given: Vec<String> = [
            "https://App.Example.com:443/",
            " http://localhost:3000 ",
            "",
            "https://app.example.com",
            "http://[::1]:8080",
        ]
        .iter()
        .map(|o| (*o).to_owned())
        .collect();
        assert_eq!(
            parse_allowed_origins(&given).unwrap(),
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]
        );
        for (bad, why) in [
            ("localhost:3000", "has no scheme"),
            ("app.example.com", "https://app.example.com"),
            ("null", "never allowed"),
            ("NULL", "never allowed"),
            ("*", "wildcards"),
            ("https://*.example.com", "wildcards"),
            ("http://localhost:*", "wildcards"),
            ("ftp://app.example.com", "https:// or http://"),
            ("https://app.example.com/login", "no path"),
            ("https://app.example.com:99999", "host[:port]"),
            ("https://user@app.example.com", "user name"),
            ("https://app example.com", "valid host"),
        ] {
            let error = parse_allowed_origins(&[bad.to_owned()]).unwrap_err();
            assert!(error.starts_with("--allowed-origins"), "{bad}: {error}");
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn listed_origins_match_in_every_profile() {
        for profile in [Profile::Dev, Profile::Production] {
            let listed = ["https://app.example.com", "http://localhost:3000"];
            assert!(allowed_in(profile, &listed, "https://app.example.com"));
            assert!(allowed_in(profile, &listed, "http://localhost:3000"));
            // Browsers serialise origins lower case without a default
            // port; a client that does not is still recognised.
            assert!(allowed_in(profile, &listed, "https://APP.example.com:443"));
            for other in [
                "https://evil.example",
                "http://app.example.com",
                "https://app.example.com:8443",
                "https://app.example.com.evil.example",
                "null",
                "",
            ] {
                assert!(!allowed_in(profile, &listed, other), "{profile:?} {other}");
            }
        }
    }

    #[test]
    fn dev_allows_local_plain_http_pages_on_any_port() {
        for origin in [
            "http://localhost",
            "http://localhost:3000",
            "http://127.0.0.1:5173",
            "http://[::1]:8080",
            "http://LOCALHOST:1",
        ] {
            assert!(allowed_in(Profile::Dev, &[], origin), "{origin}");
            assert!(!allowed_in(Profile::Production, &[], origin), "{origin}");
        }
        for origin in [
            "https://localhost:3000",
            "http://127.0.0.2:3000",
            "http://localhost.evil.example",
            "http://evil.example#localhost",
            "http://[::2]:8080",
            "http://0.0.0.0:3000",
            "http://localhost:notaport",
            "null",
            "file://",
        ] {
            assert!(!allowed_in(Profile::Dev, &[], origin), "{origin}");
        }
    }

    #[test]
    fn two_origin_lines_match_nothing() {
        let request = request(
            "GET",
            &[
                ("Origin", "http://localhost:3000"),
                ("Origin", "http://localhost:3000"),
            ],
        );
        assert_eq!(allowed_origin(&request, &[], Profile::Dev), None);
    }

    #[test]
    fn metrics_dev_and_ui_are_never_cors() {
        for path in ["/", "/users", "/sessions/abc", "/healthz", "/openapi.json"] {
            assert!(applies_to(path), "{path}");
        }
        for path in [
            "/metrics",
            "/dev",
            "/dev/",
            "/dev/mail",
            "/ui",
            "/ui/app.js",
            "//dev/x",
            "/UI/",
            "/Metrics",
        ] {
            assert!(!applies_to(path), "{path}");
        }
        // Only the first segment counts.
        assert!(applies_to("/users/ui"));
        assert!(applies_to("/devices"));
    }

    #[test]
    fn a_preflight_is_options_with_a_requested_method() {
        assert!(is_preflight(&request(
            "OPTIONS",
            &[("Access-Control-Request-Method", "POST")]
        )));
        assert!(!is_preflight(&request("OPTIONS", &[])));
        assert!(!is_preflight(&request(
            "POST",
            &[("Access-Control-Request-Method", "POST")]
        )));
    }
}
