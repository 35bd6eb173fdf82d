//! `GET` and `HEAD /auth/verify`: forward-auth for reverse proxies (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth), which ask it
//! before every request to the app they protect.
//!
//! A live session (the cookie, or `Authorization: Bearer TOKEN`, which alone
//! counts when present: [`Credential`]) answers 200 with an empty body and
//! two headers the proxy copies onto the request it forwards:
//! `X-Auth-User-Id` (the user's id, decimal: the stable key for the app)
//! and `X-Auth-Email` (the address as registered, percent-encoded:
//! [`email_header`]). Anything else answers 401 `{"message": "no valid
//! session"}` with `WWW-Authenticate: Bearer`: 401, not the 403 of
//! `/profile`, because a proxy reads 401 as "send the user to log in".
//!
//! The 200 body is empty because proxies drop it; a client that wants the
//! profile asks `GET /profile`. Being asked for every request of another
//! app, this route does one session lookup (plus the idle-window write the
//! session check already makes when it is due) and reads no body; it
//! changes nothing, so it needs no cross-site check.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use rouille::{Request, Response, ResponseBody};

use crate::auth::AuthError;
use crate::http::credential::Credential;
use crate::http::error::ApiError;
use crate::http::App;

/// Bytes of the email written as `%XX` in `X-Auth-Email`: controls, the
/// space, `%` itself, and (always, by [`utf8_percent_encode`]) everything
/// outside ASCII.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// The challenge of the 401 (RFC 9110 requires one).
const CHALLENGE: &str = "Bearer realm=\"authd\"";

/// 200 with `X-Auth-User-Id` and `X-Auth-Email` for a live session, 401
/// otherwise; for `HEAD` too (the connection layer sends no body then).
pub fn get(app: &App, request: &Request) -> Result<Response, ApiError> {
    let presented = Credential::of(request, app.settings.cookie_name);
    let Some(token) = presented.token() else {
        return Ok(no_session());
    };
    let user = match app.auth.get_user_from_session_id(token) {
        Ok(user) => user,
        Err(AuthError::InvalidSession) => return Ok(no_session()),
        Err(other) => return Err(other.into()),
    };
    Ok(Response {
        status_code: 200,
        headers: vec![
            ("X-Auth-User-Id".into(), user.id.to_string().into()),
            (
                "X-Auth-Email".into(),
                email_header(user.email.as_str()).into(),
            ),
        ],
        data: ResponseBody::empty(),
        upgrade: None,
    })
}

/// 401 `{"message": "no valid session"}` with its challenge.
fn no_session() -> Response {
    ApiError::Unauthorized("no valid session")
        .into_response()
        .with_additional_header("WWW-Authenticate", CHALLENGE)
}

/// `email` as `X-Auth-Email` carries it: an ASCII address (without `%`) as
/// it is, any other with its UTF-8 bytes outside printable ASCII, and every
/// `%`, as `%XX`. Percent-decoding the value (as UTF-8) always gives the
/// address back, and no two addresses share a value.
pub fn email_header(email: &str) -> String {
    utf8_percent_encode(email, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::email_header;

    #[test]
    fn the_email_header_is_ascii_and_reversible() {
        assert_eq!(email_header("bob@example.com"), "bob@example.com");
        assert_eq!(email_header("Bob+x@Example.com"), "Bob+x@Example.com");
        assert_eq!(email_header("zoë@exämple.de"), "zo%C3%AB@ex%C3%A4mple.de");
        // A literal `%` is escaped too, so an ASCII address cannot take
        // the value of an encoded one.
        assert_eq!(email_header("%C3%AB@x.io"), "%25C3%25AB@x.io");
        for email in [
            "zoë@exämple.de",
            "a%b@c.d",
            "用户@例子.广告",
            "bob@example.com",
        ] {
            let value = email_header(email);
            assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value}");
            let back = percent_encoding::percent_decode_str(&value)
                .decode_utf8()
                .unwrap();
            assert_eq!(back, email);
        }
    }
}
