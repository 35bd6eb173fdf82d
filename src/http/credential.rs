//! How a request presents its session: `Authorization: Bearer TOKEN` (API
//! clients, front ends on another site), or the session cookie (browsers,
//! the reference).
//!
//! When a Bearer header is present it alone counts: the cookie is not
//! looked at, and a Bearer token that is malformed or unknown answers 403
//! with no fallback to the cookie, so a client never acts as a session it
//! did not name. Other schemes (`Basic ...`) are not authd's and are
//! ignored. Only a Bearer request is exempt from the production cross-site
//! check: a browser never adds that header to a request on its own, so a
//! page elsewhere cannot make one carry a token it does not know.

use rouille::Request;

use super::cookie;
use crate::token::Token;

/// The session a request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An `Authorization: Bearer` header; `None` when its token is not one
    /// authd issues (or the header came twice).
    Bearer(Option<Token>),
    /// No Bearer header: the session cookie, if any.
    Cookie(Option<Token>),
}

impl Credential {
    /// What `request` presents; the cookie is `cookie_name`.
    pub fn of(request: &Request, cookie_name: &str) -> Credential {
        let mut bearer: Option<Option<Token>> = None;
        for (name, value) in request.headers() {
            if !name.eq_ignore_ascii_case("authorization") {
                continue;
            }
            let value = value.trim();
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                // Two Bearer headers: which one is meant? Neither.
                bearer = Some(match bearer {
                    None => Token::parse(token.trim()),
                    Some(_) => None,
                });
            }
        }
        match bearer {
            Some(token) => Credential::Bearer(token),
            None => Credential::Cookie(cookie::session_token(request, cookie_name)),
        }
    }

    /// The token presented, if it has the shape of one authd issues.
    pub fn token(&self) -> Option<&Token> {
        match self {
            Credential::Bearer(token) | Credential::Cookie(token) => token.as_ref(),
        }
    }

    /// Whether the session came in an `Authorization: Bearer` header.
    pub fn is_bearer(&self) -> bool {
        matches!(self, Credential::Bearer(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request::fake_http(
            "GET",
            "/profile",
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            Vec::new(),
        )
    }

    #[test]
    fn bearer_alone_counts_when_present() {
        let (a, b) = (Token::generate().unwrap(), Token::generate().unwrap());
        let cookie = format!("session_id={}", a.as_str());
        let bearer = format!("Bearer {}", b.as_str());
        let of = |h: &[(&str, &str)]| Credential::of(&request(h), "session_id");
        assert_eq!(
            of(&[("Cookie", &cookie)]),
            Credential::Cookie(Some(a.clone()))
        );
        assert_eq!(
            of(&[("Cookie", &cookie), ("Authorization", &bearer)]),
            Credential::Bearer(Some(b.clone()))
        );
        let lower = format!("bearer  {}", b.as_str());
        assert_eq!(
            of(&[("authorization", &lower)]),
            Credential::Bearer(Some(b.clone()))
        );
        // A bad Bearer token does not fall back to the cookie.
        assert_eq!(
            of(&[("Cookie", &cookie), ("Authorization", "Bearer nope")]),
            Credential::Bearer(None)
        );
        assert_eq!(of(&[("Authorization", "Bearer")]), Credential::Bearer(None));
        assert_eq!(
            of(&[("Authorization", &bearer), ("Authorization", &bearer)]),
            Credential::Bearer(None)
        );
        // Another scheme is not ours: the cookie counts.
        assert_eq!(
            of(&[("Cookie", &cookie), ("Authorization", "Basic dXNlcjpwdw==")]),
            Credential::Cookie(Some(a))
        );
    }
}
