//! What went wrong with a form, as a page says it.
//!
//! The status comes from the API's one mapping ([`ApiError`], from
//! [`AuthError`] for the use cases' outcomes), with its `Retry-After` or
//! `Allow`; only the words differ: plain English from [`Messages`] instead
//! of the API's fixed JSON messages. A page answers with the form again,
//! filled in where it can be, the problem above it.

use rouille::Response;

use super::messages::{fill, Messages};
use crate::auth::AuthError;
use crate::http::error::ApiError;
use crate::user::InvalidInput;

/// A problem with what was sent, to show above the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status of the page that shows it.
    pub status: u16,
    /// What the person reads.
    pub text: String,
    /// The field it is about (its name in the form), if one.
    pub field: Option<&'static str>,
    /// `Retry-After` or `Allow`, as the API sends them.
    header: Option<(&'static str, String)>,
}

impl Problem {
    fn new(api: &ApiError, text: impl Into<String>) -> Problem {
        Problem {
            status: api.status(),
            text: text.into(),
            field: None,
            header: api.extra_header(),
        }
    }

    /// The problem is about field `name`.
    pub fn on(self, name: &'static str) -> Problem {
        Problem {
            field: Some(name),
            ..self
        }
    }

    /// A use case's refusal or failure.
    pub fn auth(e: AuthError, m: &Messages) -> Problem {
        let text = match &e {
            AuthError::EmailTaken => m.email_taken.to_owned(),
            AuthError::InvalidCredentials => m.wrong_credentials.to_owned(),
            AuthError::WrongPassword => m.wrong_password.to_owned(),
            AuthError::InvalidSession => m.notice_sign_in_again.to_owned(),
            AuthError::SessionNotFound => m.session_not_found.to_owned(),
            AuthError::UnknownEmail => m.unknown_email.to_owned(),
            AuthError::InvalidResetToken => m.reset_link_invalid.to_owned(),
            AuthError::InvalidVerifyToken => m.verify_link_invalid.to_owned(),
            AuthError::EmailNotVerified => m.email_not_verified.to_owned(),
            AuthError::TotpRequired => m.totp_required.to_owned(),
            AuthError::WrongTotp => m.totp_wrong.to_owned(),
            AuthError::TotpCodeRefused => m.totp_code_refused.to_owned(),
            AuthError::TotpAlreadyEnabled => m.totp_already_enabled.to_owned(),
            AuthError::TotpNotEnabled => m.totp_not_enabled.to_owned(),
            AuthError::WeakPassword(reason) => fill(m.weak_password, "reason", reason),
            // The seconds are the Retry-After's, filled in below.
            AuthError::Throttled(_) => String::new(),
            AuthError::Busy | AuthError::QueueFull => m.busy.to_owned(),
            AuthError::ThrottleUnavailable(_) | AuthError::Store(_) | AuthError::Internal(_) => {
                m.our_fault.to_owned()
            }
        };
        // The API's mapping, which also logs what is our fault.
        let api = ApiError::from(e);
        if let ApiError::Internal(detail) = &api {
            eprintln!("authd: internal error: {detail}");
        }
        let mut problem = Problem::new(&api, text);
        if let ApiError::TooManyRequests(_) = api {
            let seconds = problem.retry_after().unwrap_or("1").to_owned();
            problem.text = fill(m.throttled, "seconds", &seconds);
        }
        problem
    }

    /// A request the API would refuse before any use case: a body too
    /// large or not a form, a missing field (a form tampered with), a
    /// method the page does not take.
    pub fn api(e: ApiError, m: &Messages) -> Problem {
        let text = match &e {
            ApiError::PayloadTooLarge(_) => m.form_too_large,
            ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_) => m.form_incomplete,
            ApiError::Forbidden(_) => m.cross_site,
            ApiError::NotFound(_) => m.not_found_text,
            ApiError::MethodNotAllowed(_) => m.not_allowed_text,
            ApiError::TooManyRequests(_) | ApiError::Unavailable(_) => m.busy,
            ApiError::Unauthorized(_) => m.wrong_password,
            ApiError::Edge { .. } => m.form_incomplete,
            ApiError::Internal(detail) => {
                eprintln!("authd: internal error: {detail}");
                m.our_fault
            }
        };
        Problem::new(&e, text)
    }

    /// A value of field `name` that cannot be what it should: 400, as the
    /// API answers it.
    pub fn invalid(name: &'static str, e: InvalidInput, m: &Messages) -> Problem {
        let text = match e {
            InvalidInput::EmptyEmail => m.email_empty,
            InvalidInput::EmailTooLong => m.email_too_long,
            InvalidInput::EmailShape
            | InvalidInput::EmailCharacters
            | InvalidInput::EmailDomain => m.email_invalid,
            InvalidInput::EmailInvisible
            | InvalidInput::EmailUnassigned
            | InvalidInput::EmailMixedScripts
            | InvalidInput::EmailNormalised => m.email_deceptive,
            InvalidInput::EmptyPassword => m.password_empty,
            InvalidInput::PasswordTooLong => m.password_too_long_bcrypt,
            InvalidInput::PasswordTooLongLong => m.password_too_long,
            InvalidInput::PasswordNul => m.password_nul,
        };
        Problem::new(&ApiError::BadRequest(String::new()), text).on(name)
    }

    /// A form whose anti-forgery token does not match this browser (it
    /// expired, or came from elsewhere): 403, shown again with a fresh one.
    pub fn form_expired(m: &Messages) -> Problem {
        Problem::new(&ApiError::Forbidden("form expired"), m.form_expired)
    }

    /// The `Retry-After` seconds, if the page must carry it.
    pub fn retry_after(&self) -> Option<&str> {
        match &self.header {
            Some(("Retry-After", value)) => Some(value),
            _ => None,
        }
    }

    /// `response` with this problem's status and header.
    pub fn apply(&self, response: Response) -> Response {
        let response = response.with_status_code(self.status);
        match &self.header {
            Some((name, value)) => response.with_additional_header(*name, value.clone()),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::ui::messages::en::EN;

    #[test]
    fn statuses_and_headers_are_the_apis() {
        let throttled = Problem::auth(AuthError::Throttled(Duration::from_millis(2500)), &EN);
        assert_eq!(throttled.status, 429);
        assert_eq!(throttled.retry_after(), Some("3"));
        assert_eq!(throttled.text, "Too many attempts. Try again in 3 seconds.");
        let wrong = Problem::auth(AuthError::InvalidCredentials, &EN);
        assert_eq!((wrong.status, wrong.retry_after()), (401, None));
        assert_eq!(Problem::auth(AuthError::EmailTaken, &EN).status, 400);
        assert_eq!(Problem::auth(AuthError::InvalidResetToken, &EN).status, 403);
        let busy = Problem::auth(AuthError::Busy, &EN);
        assert_eq!((busy.status, busy.retry_after()), (503, Some("1")));
        let weak = Problem::auth(AuthError::WeakPassword("is too short".to_owned()), &EN);
        assert_eq!(weak.text, "Choose another password: this one is too short.");
        let internal = Problem::auth(AuthError::Internal("secret detail".to_owned()), &EN);
        assert_eq!(internal.status, 500);
        assert!(!internal.text.contains("secret"));
        let invalid = Problem::invalid("email", InvalidInput::EmailShape, &EN);
        assert_eq!((invalid.status, invalid.field), (400, Some("email")));
        assert_eq!(Problem::form_expired(&EN).status, 403);
        assert_eq!(Problem::api(ApiError::PayloadTooLarge(9), &EN).status, 413);
    }
}
