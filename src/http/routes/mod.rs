//! One file per resource of the reference API.

pub mod account;
pub mod dev_outbox;
pub mod index;
pub mod meta;
pub mod metrics;
pub mod profile;
pub mod reset_password;
pub mod sessions;
pub mod totp;
pub mod users;
pub mod verify;
pub mod verify_email;

use rouille::Request;

use super::body::Fields;
use super::credential::Credential;
use super::error::ApiError;
use super::App;
use crate::token::Token;
use crate::user::{Email, Password, PasswordLimit};

/// The token of the session the request presents (a Bearer header, else
/// the cookie: [`Credential`]); 403 without one.
fn session(app: &App, request: &Request) -> Result<Token, ApiError> {
    Credential::of(request, app.settings.cookie_name)
        .token()
        .cloned()
        .ok_or(ApiError::Forbidden("no valid session"))
}

/// The session a state change is made in: in production, a cross-site
/// request authenticated by the cookie is refused (403) first; a Bearer
/// token is not something a page elsewhere can make a browser send, so it
/// is not checked.
fn state_change(app: &App, request: &Request) -> Result<Token, ApiError> {
    let presented = Credential::of(request, app.settings.cookie_name);
    if !presented.is_bearer() {
        app.refuse_cross_site(request)?;
    }
    presented
        .token()
        .cloned()
        .ok_or(ApiError::Forbidden("no valid session"))
}

/// The `email` and `password` fields of a registration, parsed by the
/// rules for a new account's address.
/// The password's length limit is the configured algorithm's.
fn credentials(fields: &Fields, limit: PasswordLimit) -> Result<(Email, Password), ApiError> {
    let email = Email::parse_new(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let password = Password::parse_for(fields.required("password")?, limit)
        .map_err(ApiError::invalid("password"))?;
    Ok((email, password))
}
