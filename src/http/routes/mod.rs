//! One file per resource of the reference API.

pub mod index;
pub mod meta;
pub mod profile;
pub mod reset_password;
pub mod sessions;
pub mod users;
