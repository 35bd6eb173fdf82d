//! One file per page: its form, and its handlers (GET shows, POST reads
//! the form and calls the same use case as the API route that does the
//! same thing, then redirects or shows the form again with the problem).

pub mod account;
pub mod forgot_password;
pub mod outbox;
pub mod reset_password;
pub mod sign_in;
pub mod sign_out;
pub mod sign_up;
pub mod verify_email;

use maud::{html, Markup};

use crate::http::body::Fields;

/// The text of field `name`, or `""` when absent or not text (the use
/// cases and parsers then say what is missing).
fn text<'f>(fields: &'f Fields, name: &'static str) -> &'f str {
    fields.optional(name).ok().flatten().unwrap_or("")
}

/// [`text`] of a form that may not have been read.
fn text_of<'f>(fields: Option<&'f Fields>, name: &'static str) -> &'f str {
    fields.map_or("", |fields| text(fields, name))
}

/// What the sign-in and sign-up forms show again: what was typed (never
/// the password) and where to go afterwards.
#[derive(Debug, Default)]
struct Typed<'a> {
    email: &'a str,
    return_to: Option<&'a str>,
}

impl<'a> Typed<'a> {
    /// Nothing typed yet: the form as a GET shows it.
    fn fresh(return_to: Option<&'a str>) -> Typed<'a> {
        Typed {
            email: "",
            return_to,
        }
    }

    /// What a posted form (read, or refused with what could be read of
    /// it) held.
    fn of(fields: Option<&'a Fields>) -> Typed<'a> {
        Typed {
            email: text_of(fields, "email"),
            return_to: fields.and_then(|f| f.optional("return_to").ok().flatten()),
        }
    }
}

/// A mailed link's address and token, as its page's form posts them back
/// (the reset and the confirmation pages).
#[derive(Debug)]
struct Link<'a> {
    email: &'a str,
    token: &'a str,
}

impl<'a> Link<'a> {
    /// What a posted form (read, or refused with what could be read of
    /// it) held.
    fn of(fields: Option<&'a Fields>) -> Link<'a> {
        Link {
            email: text_of(fields, "email"),
            token: text_of(fields, "token"),
        }
    }
}

/// A URL of `path` with `return_to` kept in its query, when there is
/// one.
fn with_return_to(path: &str, return_to: Option<&str>) -> String {
    match return_to.filter(|r| !r.is_empty()) {
        Some(target) => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", target)
                .finish();
            let separator = if path.contains('?') { '&' } else { '?' };
            format!("{path}{separator}{query}")
        }
        None => path.to_owned(),
    }
}

/// A short paragraph with a link, under a form.
fn aside(before: &str, link: &str, href: &str) -> Markup {
    html! {
        p.aside {
            @if !before.is_empty() { (before) " " }
            a href=(href) { (link) }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn return_to_is_kept_encoded() {
        assert_eq!(super::with_return_to("/ui/sign-in", None), "/ui/sign-in");
        assert_eq!(
            super::with_return_to("/ui/sign-in", Some("")),
            "/ui/sign-in"
        );
        assert_eq!(
            super::with_return_to("/ui/sign-in?notice=registered", Some("/app?a=1&b=2")),
            "/ui/sign-in?notice=registered&return_to=%2Fapp%3Fa%3D1%26b%3D2"
        );
    }
}
