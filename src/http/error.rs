//! The one place where errors become HTTP statuses.
//!
//! Every failure a handler can meet converts into [`ApiError`], whose
//! response is always JSON `{"message": ...}`. Internal details are logged,
//! never sent.

use std::time::Duration;

use rouille::Response;

use super::body::BodyError;
use crate::auth::AuthError;
use crate::store::StoreError;
use crate::user::InvalidInput;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request's content is wrong.
    BadRequest(String),
    /// 401: a login failed, or a signed-in user's password check did (the
    /// message says which).
    Unauthorized(&'static str),
    /// 403: no valid session, unknown email or invalid reset token.
    Forbidden(&'static str),
    /// 404: no such route, or no such resource (the message says which).
    NotFound(&'static str),
    /// 405: the route exists, the method does not; lists the allowed ones.
    MethodNotAllowed(&'static str),
    /// 413: the body is over the limit.
    PayloadTooLarge(usize),
    /// 415: a body in a format we do not read.
    UnsupportedMediaType(String),
    /// 429: throttled; retry after the given time.
    TooManyRequests(Duration),
    /// An answer the connection layer gives on its own (400 malformed,
    /// 408 too slow, 413, 431, 501, 503 over the connection cap...), with
    /// its message.
    Edge { status: u16, message: String },
    /// 503: overloaded or storage unavailable; the client may retry.
    Unavailable(&'static str),
    /// 500: our fault. The detail goes to the log only.
    Internal(String),
}

impl ApiError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Edge { status, .. } => *status,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The message for the client.
    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::UnsupportedMediaType(m) => m.clone(),
            ApiError::Unauthorized(message) => (*message).to_owned(),
            ApiError::Forbidden(m) | ApiError::Unavailable(m) | ApiError::NotFound(m) => {
                (*m).to_owned()
            }
            ApiError::MethodNotAllowed(allow) => format!("method not allowed (allowed: {allow})"),
            ApiError::PayloadTooLarge(limit) => {
                format!("request body is larger than {limit} bytes")
            }
            ApiError::TooManyRequests(wait) => {
                format!("too many attempts, retry in {} s", retry_after_secs(*wait))
            }
            ApiError::Edge { message, .. } => message.clone(),
            ApiError::Internal(_) => "internal server error".to_owned(),
        }
    }

    /// The JSON response, with `Allow` or `Retry-After` where they apply.
    pub fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            eprintln!("authd: internal error: {detail}");
        }
        let response =
            super::json::fields(&[("message", &self.message())]).with_status_code(self.status());
        match self.extra_header() {
            Some((name, value)) => response.with_additional_header(name, value),
            None => response,
        }
    }

    /// The header that goes with the status, whatever the body's format
    /// (the JSON here, the pages' HTML): `Allow` for a 405, `Retry-After`
    /// for a 429 or a 503.
    pub fn extra_header(&self) -> Option<(&'static str, String)> {
        match self {
            ApiError::MethodNotAllowed(allow) => Some(("Allow", (*allow).to_owned())),
            ApiError::Unavailable(_) => Some(("Retry-After", "1".to_owned())),
            ApiError::TooManyRequests(wait) => {
                Some(("Retry-After", retry_after_secs(*wait).to_string()))
            }
            _ => None,
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
            BodyError::UnsupportedType(_) => ApiError::UnsupportedMediaType(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// Whole seconds to wait, rounded up so a client that waits exactly that
/// long is not refused again.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl ApiError {
    /// A 400 for field `name`, whose value `e` refused: "email must ...".
    pub fn invalid(name: &'static str) -> impl Fn(InvalidInput) -> ApiError {
        move |e| ApiError::BadRequest(format!("{name} {e}"))
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::EmailTaken => ApiError::BadRequest("email already registered".to_owned()),
            AuthError::InvalidCredentials => ApiError::Unauthorized("wrong email or password"),
            AuthError::WrongPassword => ApiError::Unauthorized("wrong password"),
            AuthError::InvalidSession => ApiError::Forbidden("no valid session"),
            AuthError::SessionNotFound => ApiError::NotFound("session not found"),
            AuthError::UnknownEmail => ApiError::Forbidden("email not registered"),
            AuthError::InvalidResetToken => ApiError::Forbidden("invalid reset token"),
            AuthError::InvalidVerifyToken => ApiError::Forbidden("invalid verify token"),
            AuthError::EmailNotVerified => ApiError::Forbidden("email not verified"),
            AuthError::TotpRequired => ApiError::Unauthorized("totp required"),
            AuthError::WrongTotp => ApiError::Unauthorized("invalid totp code"),
            AuthError::TotpCodeRefused => ApiError::Forbidden("invalid totp code"),
            AuthError::TotpAlreadyEnabled => ApiError::Forbidden("totp already enabled"),
            AuthError::TotpNotEnabled => ApiError::Forbidden("totp not enabled"),
            AuthError::WeakPassword(reason) => ApiError::BadRequest(format!("password {reason}")),
            AuthError::Throttled(wait) => ApiError::TooManyRequests(wait),
            AuthError::Busy => ApiError::Unavailable("server busy, retry shortly"),
            AuthError::QueueFull => {
                ApiError::Unavailable("too many messages queued, retry shortly")
            }
            AuthError::ThrottleUnavailable(detail) => {
                eprintln!("authd: storage failure: {detail}");
                ApiError::Unavailable("storage unavailable, retry shortly")
            }
            AuthError::Store(StoreError::Backend(detail)) => {
                eprintln!("authd: storage failure: {detail}");
                ApiError::Unavailable("storage unavailable, retry shortly")
            }
            AuthError::Store(other) => ApiError::Internal(other.to_string()),
            AuthError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}
