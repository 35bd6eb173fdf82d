//! One file per resource of the reference API.

pub mod account;
pub mod dev_outbox;
pub mod index;
pub mod meta;
pub mod metrics;
pub mod profile;
pub mod reset_password;
pub mod sessions;
pub mod users;
pub mod verify;
pub mod verify_email;

use super::body::Fields;
use super::error::ApiError;
use crate::user::{Email, Password, PasswordLimit};

/// The `email` and `password` fields of a registration, parsed by the
/// rules for a new account's address.
/// The password's length limit is the configured algorithm's.
fn credentials(fields: &Fields, limit: PasswordLimit) -> Result<(Email, Password), ApiError> {
    let email = Email::parse_new(fields.required("email")?).map_err(ApiError::invalid("email"))?;
    let password = Password::parse_for(fields.required("password")?, limit)
        .map_err(ApiError::invalid("password"))?;
    Ok((email, password))
}
