//! Cross-site request refusal for state-changing routes (production).
//!
//! A browser sends the session cookie with a cross-site request too
//! (`SameSite=Lax` still allows top-level navigations and form posts to
//! log a browser into an attacker's account), and a page on any site can
//! make a browser register accounts or ask for resets from its user's
//! address. So in the production profile every state-changing route
//! checks where a browser request comes from, before it reads the body or
//! hashes anything:
//!
//! - an `Origin` header (browsers send it with every non-GET request,
//!   same-origin ones included) must be the server's own origin or one of
//!   `--allowed-origins`;
//! - without `Origin`, `Sec-Fetch-Site: cross-site` is refused.
//!
//! The server's own origin is `--public-url`'s, or else the scheme the
//! profile implies (`https`) and the `Host` header (which a browser sets to
//! the site it is talking to, so a page elsewhere cannot choose it). A
//! production instance reached over plain HTTP (no TLS proxy in front, as
//! on a test machine) is `http://` and its `Host` to the browser: that
//! origin is its own too when the browser says so itself, with
//! `Sec-Fetch-Site: same-origin` (a header no page can set, and that a
//! page on the `http://` twin of an `https://` site never gets, since the
//! scheme makes it another origin). Without `--public-url` only: with it,
//! the URL alone is authd's origin. Requests with neither header (curl,
//! server-side clients) are not browser requests made on someone's
//! behalf, and pass.

use std::net::Ipv6Addr;

use rouille::Request;

use super::error::ApiError;

/// Which origins count as the server's own.
#[derive(Debug, Clone, Copy)]
pub struct Origins<'a> {
    /// `--public-url`'s origin, canonical; `None` derives it from `Host`.
    pub public: Option<&'a str>,
    /// The scheme a derived origin has: `https` behind TLS.
    pub scheme: &'static str,
    /// `--allowed-origins`: other sites whose pages may make these
    /// requests.
    pub allowed: &'a [String],
}

/// `Err(403)` for a request a browser made on behalf of another site.
pub fn check(request: &Request, origins: Origins<'_>) -> Result<(), ApiError> {
    let refused = Err(ApiError::Forbidden("cross-site request refused"));
    let mut sent = request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Origin"))
        .map(|(_, value)| value)
        .peekable();
    if sent.peek().is_some() {
        // Every line must pass: a second Origin line must not smuggle
        // another site past a check of the first.
        let own = own_origins(request, origins);
        let known = |origin: &str| {
            let origin = canonical(origin);
            // An opaque origin (sandboxed frames, `data:` pages) is
            // `null`, whoever made it: never one we know.
            origin != "null"
                && (own.contains(&origin) || origins.allowed.iter().any(|a| canonical(a) == origin))
        };
        return if sent.all(known) { Ok(()) } else { refused };
    }
    if fetch_site(request).any(|site| site.eq_ignore_ascii_case("cross-site")) {
        return refused;
    }
    Ok(())
}

/// The values of the request's `Sec-Fetch-Site` lines, trimmed.
fn fetch_site(request: &Request) -> impl Iterator<Item = &str> {
    request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-Fetch-Site"))
        .map(|(_, value)| value.trim())
}

/// The server's own origins, canonical: `--public-url`'s; else the
/// profile's scheme and the `Host` header, and also `http://` and `Host`
/// when the browser says the request is same-origin (authd served over
/// plain HTTP). Empty without a `Host`.
fn own_origins(request: &Request, origins: Origins<'_>) -> Vec<String> {
    if let Some(public) = origins.public {
        return vec![canonical(public)];
    }
    let Some(host) = request
        .header("Host")
        .map(str::trim)
        .filter(|host| !host.is_empty())
    else {
        return Vec::new();
    };
    let mut own = vec![canonical(&format!("{}://{host}", origins.scheme))];
    // Every line must say so: a browser sends one.
    let mut sites = fetch_site(request).peekable();
    let same_origin =
        sites.peek().is_some() && sites.all(|site| site.eq_ignore_ascii_case("same-origin"));
    if same_origin && origins.scheme != "http" {
        own.push(canonical(&format!("http://{host}")));
    }
    own
}

/// An origin in one spelling, so equal origins compare equal: lower case,
/// no trailing `/`, no default port (`https://A.example:443/` is
/// `https://a.example`), as browsers serialise an `Origin`.
pub(super) fn canonical(origin: &str) -> String {
    let origin = origin.trim();
    let origin = origin
        .strip_suffix('/')
        .unwrap_or(origin)
        .to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(port) {
                return bare.to_owned();
            }
        }
    }
    origin
}

/// Parses `--public-url` (`https://auth.example.com`, an optional port,
/// nothing after the host but `/`) into its canonical origin. Strict, as
/// a refusal of every browser request would be the price of a typo that
/// only showed later: the scheme is http or https, the host a DNS name,
/// IPv4 address or bracketed IPv6 address, no user, path, query or
/// fragment.
pub fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim();
    let bad = |why: &str| Err(format!("{url:?} {why}"));
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("is not a URL (scheme://host[:port])");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return bad("must start with https:// or http://");
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return bad("must be an origin: no path, query or fragment other than a final /");
    }
    if authority.contains('@') {
        return bad("must not hold a user name or password");
    }
    let (host, port) = match split_port(authority) {
        Some(parts) => parts,
        None => return bad("has no valid host[:port]"),
    };
    if !valid_host(host) {
        return bad("has no valid host (a DNS name, IPv4 address or [IPv6] address)");
    }
    let origin = match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    Ok(canonical(&origin))
}

/// `host` and the port, if one is given (1-65535, decimal); `None` when
/// the port is not a number.
pub(super) fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|n| *n != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A DNS name (letters, digits, `-` and `.`, labels not empty), or an
/// IPv6 address in brackets; dotted IPv4 addresses are DNS-name shaped.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::fake_http("POST", "/sessions", headers, vec![])
    }

    const ALLOWED: &[&str] = &["https://app.example.com"];

    fn origins<'a>(public: Option<&'a str>, allowed: &'a [String]) -> Origins<'a> {
        Origins {
            public,
            scheme: "https",
            allowed,
        }
    }

    fn passes(headers: &[(&str, &str)], public: Option<&str>) -> bool {
        let allowed: Vec<String> = ALLOWED.iter().map(|a| (*a).to_owned()).collect();
        check(&request(headers), origins(public, &allowed)).is_ok()
    }

    #[test]
    fn browser_requests_from_other_sites_are_refused() {
        let host = ("Host", "auth.example.com");
        assert!(passes(&[host], None));
        assert!(passes(&[host, ("Sec-Fetch-Site", "same-origin")], None));
        assert!(passes(&[host, ("Sec-Fetch-Site", "same-site")], None));
        assert!(passes(&[host, ("Sec-Fetch-Site", "none")], None));
        assert!(!passes(&[host, ("Sec-Fetch-Site", "cross-site")], None));
        assert!(!passes(&[host, ("Sec-Fetch-Site", " Cross-Site ")], None));
        assert!(!passes(&[host, ("Origin", "https://evil.example")], None));
        assert!(!passes(&[host, ("Origin", "null")], None));
        assert!(!passes(&[host, ("Origin", "")], None));
        // Another scheme or port is another origin.
        assert!(!passes(
            &[host, ("Origin", "http://auth.example.com")],
            None
        ));
        assert!(!passes(
            &[host, ("Origin", "https://auth.example.com:8443")],
            None
        ));
    }

    #[test]
    fn same_origin_and_listed_origins_pass() {
        let host = ("Host", "auth.example.com");
        assert!(passes(
            &[host, ("Origin", "https://auth.example.com")],
            None
        ));
        assert!(passes(
            &[host, ("Origin", "https://Auth.Example.com:443")],
            None
        ));
        assert!(passes(
            &[
                ("Host", "auth.example.com:443"),
                ("Origin", "https://auth.example.com")
            ],
            None
        ));
        assert!(passes(
            &[
                ("Host", "localhost:8443"),
                ("Origin", "https://localhost:8443")
            ],
            None
        ));
        assert!(passes(&[host, ("Origin", "https://app.example.com")], None));
        // An allowed Origin decides: Sec-Fetch-Site is not asked then.
        assert!(passes(
            &[
                host,
                ("Origin", "https://app.example.com"),
                ("Sec-Fetch-Site", "cross-site")
            ],
            None
        ));
        // Every Origin line must pass.
        assert!(!passes(
            &[
                host,
                ("Origin", "https://app.example.com"),
                ("Origin", "https://evil.example")
            ],
            None
        ));
        // No Host: only the listed origins.
        assert!(!passes(&[("Origin", "https://auth.example.com")], None));
        assert!(passes(&[("Origin", "https://app.example.com")], None));
    }

    #[test]
    fn plain_http_is_the_own_origin_when_the_browser_says_same_origin() {
        // A production instance reached without TLS: the browser's Origin
        // is http:// and Host, and it says the request is same-origin.
        let host = ("Host", "127.0.0.1:5000");
        let origin = ("Origin", "http://127.0.0.1:5000");
        assert!(passes(
            &[host, origin, ("Sec-Fetch-Site", "same-origin")],
            None
        ));
        assert!(passes(
            &[host, origin, ("Sec-Fetch-Site", " Same-Origin ")],
            None
        ));
        // Without the browser's word, http:// is another origin (the
        // plain-HTTP twin of an https:// site)...
        assert!(!passes(&[host, origin], None));
        for site in ["same-site", "cross-site", "none"] {
            assert!(
                !passes(&[host, origin, ("Sec-Fetch-Site", site)], None),
                "{site}"
            );
        }
        // ...every line must say so...
        assert!(!passes(
            &[
                host,
                origin,
                ("Sec-Fetch-Site", "same-origin"),
                ("Sec-Fetch-Site", "cross-site")
            ],
            None
        ));
        // ...it must be this host...
        assert!(!passes(
            &[
                host,
                ("Origin", "http://127.0.0.1:5001"),
                ("Sec-Fetch-Site", "same-origin")
            ],
            None
        ));
        assert!(!passes(
            &[
                host,
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "same-origin")
            ],
            None
        ));
        // ...and a --public-url is the only own origin.
        assert!(!passes(
            &[host, origin, ("Sec-Fetch-Site", "same-origin")],
            Some("https://auth.example.com")
        ));
    }

    #[test]
    fn a_public_url_replaces_the_host_derived_origin() {
        let public = Some("https://auth.example.com");
        let behind = ("Host", "127.0.0.1:5000");
        assert!(passes(
            &[behind, ("Origin", "https://auth.example.com")],
            public
        ));
        assert!(!passes(
            &[behind, ("Origin", "https://127.0.0.1:5000")],
            public
        ));
        assert!(passes(
            &[behind, ("Origin", "https://app.example.com")],
            public
        ));
        assert!(passes(&[behind], public));
    }

    #[test]
    fn public_urls_are_parsed_strictly() {
        for (given, origin) in [
            ("https://auth.example.com", "https://auth.example.com"),
            ("https://auth.example.com/", "https://auth.example.com"),
            ("HTTPS://Auth.Example.COM:443/", "https://auth.example.com"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
            ("https://auth.example.com.", "https://auth.example.com."),
        ] {
            assert_eq!(parse_public_url(given).as_deref(), Ok(origin), "{given}");
        }
        for bad in [
            "",
            "auth.example.com",
            "ftp://auth.example.com",
            "https://",
            "https:///",
            "https://auth.example.com/login",
            "https://auth.example.com/?x=1",
            "https://auth.example.com#top",
            "https://user:pw@auth.example.com",
            "https://auth.example.com:",
            "https://auth.example.com:0",
            "https://auth.example.com:65536",
            "https://auth.example.com:+80",
            "https://auth_example.com",
            "https://auth..example.com",
            "https://-auth.example.com",
            "https://[2001:db8::1",
            "https://[not-v6]",
            "https://2001:db8::1",
            "https://exa mple.com",
        ] {
            let error = parse_public_url(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}
