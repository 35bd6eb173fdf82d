//! `return_to`: where a page sends the browser once its user is signed in,
//! without ever being an open redirect.
//!
//! A prototype links to `/ui/sign-in?return_to=URL`. The value is honoured
//! only as
//!
//! - a path on this server, beginning with exactly one `/` (not `//` nor
//!   `/\`, which browsers read as another host), or
//! - an absolute `http(s)` URL without user information whose scheme,
//!   host and port are the server's own origin or one of
//!   `--allowed-origins`;
//!
//! anything else is ignored, and the user lands on `/ui/account`. The
//! check parses with the WHATWG URL parser (the `url` crate), the one
//! browsers follow, after refusing every character a browser would drop
//! or reinterpret first (controls, spaces, backslashes), so what is
//! checked is what the browser will open. authd appends nothing to the
//! URL: no token ever travels in it (the session is the cookie).

use url::Url;

/// Where a signed-in user lands when `return_to` is absent or refused.
pub const DEFAULT: &str = "/ui/account";

/// Longest `return_to` considered; a longer one is ignored.
const MAX_LEN: usize = 2048;

/// The origins a `return_to` may lead to.
#[derive(Debug, Clone, Copy)]
pub struct Allowed<'a> {
    /// The server's own origin (`--public-url`'s, or the request's scheme
    /// and `Host`), canonical; `None` when it cannot be told (no `Host`).
    pub own: Option<&'a str>,
    /// `--allowed-origins`, canonical.
    pub listed: &'a [String],
}

/// The URL to send the browser to for `raw`, if `raw` may be honoured: a
/// path (its query and fragment kept) or an absolute URL, each in the
/// parser's serialisation.
pub fn honoured(raw: &str, allowed: Allowed<'_>) -> Option<String> {
    if raw.is_empty()
        || raw.len() > MAX_LEN
        || raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    if raw.starts_with('/') {
        if raw.starts_with("//") {
            return None;
        }
        // Resolved against any base: it must stay on that base's origin.
        let base = Url::parse("http://authd.invalid/").ok()?;
        let joined = base.join(raw).ok()?;
        if joined.origin() != base.origin() {
            return None;
        }
        // Dot segments can collapse into a path the browser reads as
        // another host (`/a/..//evil.example` is `//evil.example`): what
        // is sent is checked again, not only what came in.
        let path = &joined[url::Position::BeforePath..];
        if path.starts_with("//") || path.starts_with("/\\") {
            return None;
        }
        return Some(path.to_owned());
    }
    let url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.host().is_none()
    {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    let known = allowed.own.is_some_and(|own| own == origin) || allowed.listed.contains(&origin);
    known.then(|| url.to_string())
}

/// [`honoured`], or [`DEFAULT`].
pub fn target(raw: Option<&str>, allowed: Allowed<'_>) -> String {
    raw.and_then(|raw| honoured(raw, allowed))
        .unwrap_or_else(|| DEFAULT.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Option<String> {
        let listed = vec!["https://app.example.com".to_owned()];
        honoured(
            raw,
            Allowed {
                own: Some("http://127.0.0.1:5000"),
                listed: &listed,
            },
        )
    }

    #[test]
    fn paths_on_this_server_are_honoured() {
        for (raw, to) in [
            ("/", "/"),
            ("/ui/account", "/ui/account"),
            ("/app?x=1&y=%2F#top", "/app?x=1&y=%2F#top"),
            ("/a/../b", "/b"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
        ] {
            assert_eq!(check(raw).as_deref(), Some(to), "{raw}");
        }
    }

    #[test]
    fn own_and_listed_origins_are_honoured() {
        for (raw, to) in [
            ("http://127.0.0.1:5000/x?y=1", "http://127.0.0.1:5000/x?y=1"),
            ("HTTP://127.0.0.1:5000", "http://127.0.0.1:5000/"),
            (
                "https://app.example.com/welcome",
                "https://app.example.com/welcome",
            ),
            ("https://APP.example.com:443/", "https://app.example.com/"),
        ] {
            assert_eq!(check(raw).as_deref(), Some(to), "{raw}");
        }
    }

    #[test]
    fn everything_else_is_ignored() {
        for raw in [
            "",
            "//evil.example",
            "//evil.example/ui/account",
            "/a/..//evil.example/x",
            "/.//evil.example",
            "/%2e//evil.example",
            "/./..//evil.example",
            "/ui/../..//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " /ui/account",
            "/ui/account ",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "http://127.0.0.1:5001/",
            "https://127.0.0.1:5000/",
            "http://user@127.0.0.1:5000/",
            "http://user:pw@127.0.0.1:5000/",
            "https://app.example.com@evil.example/",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "ftp://app.example.com/",
            "ui/account",
            "evil.example",
            "http:evil.example",
            "http:/evil.example",
            "https:\\\\evil.example",
            &format!("/{}", "a".repeat(MAX_LEN)),
        ] {
            assert_eq!(check(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn without_an_own_origin_only_paths_and_listed_origins_pass() {
        let allowed = Allowed {
            own: None,
            listed: &[],
        };
        assert_eq!(honoured("/x", allowed).as_deref(), Some("/x"));
        assert_eq!(honoured("http://127.0.0.1:5000/", allowed), None);
        assert_eq!(target(None, allowed), DEFAULT);
        assert_eq!(target(Some("//evil.example"), allowed), DEFAULT);
    }
}
