//! The markup every page shares: the layout (head, header, navigation,
//! notice) and the form parts (fields with their labels, the problem
//! above a form, buttons).
//!
//! Templates are `maud` macros, compiled into the binary and escaping
//! every value they splice. No page has a script: each one works with
//! JavaScript off, and the policy allows none ([`super::page`]).
//! Accessibility: every field has a `<label>`, a problem is announced
//! (`role="alert"`) and tied to its field (`aria-invalid`,
//! `aria-describedby`), the tab order is the reading order.

use maud::{html, Markup, DOCTYPE};

use super::messages::{fill, Messages};
use super::problem::Problem;

/// The path of the stylesheet.
pub const STYLESHEET: &str = "/ui/style.css";

/// The name of the hidden field that carries the anti-forgery token.
pub const FORM_TOKEN_FIELD: &str = "csrf";

/// What the header says about the visitor.
#[derive(Debug, Clone, Copy)]
pub struct Nav<'a> {
    /// The signed-in user's address.
    pub signed_in: Option<&'a str>,
    /// Whether the dev outbox page is served (the dev profile).
    pub outbox: bool,
    /// The token for the sign-out form.
    pub form_token: &'a str,
}

/// A notice shown above the page's content.
#[derive(Debug, Clone, Copy)]
pub struct NoticeView<'a> {
    pub text: &'a str,
    /// Point at the dev outbox after it (the message is there).
    pub outbox_hint: bool,
}

/// A whole page: `title` (also the `<h1>`), the header, an optional
/// notice, and `main`.
pub fn layout(
    m: &Messages,
    title: &str,
    nav: Nav<'_>,
    notice: Option<NoticeView<'_>>,
    main: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(m.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " \u{2013} " (m.site) }
                link rel="stylesheet" href=(STYLESHEET);
            }
            body {
                header.top {
                    a.site href="/ui/account" { (m.site) }
                    nav aria-label=(m.nav_label) {
                        ul {
                            @if let Some(email) = nav.signed_in {
                                li.who { (fill(m.signed_in_as, "email", email)) }
                                li { a href="/ui/account" { (m.nav_account) } }
                                li {
                                    form.inline method="post" action="/ui/sign-out" {
                                        (token_field(nav.form_token))
                                        button.link type="submit" { (m.sign_out) }
                                    }
                                }
                            } @else {
                                li { a href="/ui/sign-in" { (m.nav_sign_in) } }
                                li { a href="/ui/sign-up" { (m.nav_sign_up) } }
                            }
                            @if nav.outbox {
                                li { a href="/ui/outbox" { (m.nav_outbox) } }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = notice {
                        div.notice role="status" {
                            p {
                                (notice.text)
                                @if notice.outbox_hint {
                                    " " (m.dev_outbox_hint) " "
                                    a href="/ui/outbox" { (m.dev_outbox_link) } "."
                                }
                            }
                        }
                    }
                    (main)
                }
                @if nav.outbox {
                    footer { p { (m.dev_profile) } }
                }
            }
        }
    }
}

/// The hidden anti-forgery field every form carries.
pub fn token_field(token: &str) -> Markup {
    html! { input type="hidden" name=(FORM_TOKEN_FIELD) value=(token); }
}

/// A form posting to `action`: its token, the problem if it is the one
/// this form met, then `fields`.
pub fn form(
    id: &str,
    action: &str,
    token: &str,
    problem: Option<&Problem>,
    fields: Markup,
) -> Markup {
    html! {
        form method="post" action=(action) id=(id) novalidate {
            (token_field(token))
            @if let Some(problem) = problem {
                div.problem role="alert" id=(format!("{id}-problem")) {
                    p { (problem.text) }
                }
            }
            (fields)
        }
    }
}

/// What an input is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An email address: text (a browser's `type="email"` refuses
    /// addresses authd takes, such as non-ASCII local parts, and rewrites
    /// international domains).
    Email,
    Password,
    /// A one-time code (six digits, or a recovery code with letters):
    /// text, never required by the browser (a sign-in needs it only when
    /// two-step sign-in is on).
    Code,
}

/// One labelled input of form `form`.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub form: &'a str,
    pub name: &'static str,
    pub label: &'a str,
    pub kind: Kind,
    /// The `autocomplete` token: `email`, `current-password`,
    /// `new-password`, `username`.
    pub autocomplete: &'static str,
    /// What was typed, shown again (never a password).
    pub value: Option<&'a str>,
    pub hint: Option<&'a str>,
}

/// `field`, marked invalid and tied to `problem` when the problem is
/// about it.
pub fn field(field: Field<'_>, problem: Option<&Problem>) -> Markup {
    let id = format!("{}-{}", field.form, field.name);
    let hint_id = format!("{id}-hint");
    let invalid = problem.is_some_and(|p| p.field == Some(field.name));
    let mut described = Vec::new();
    if field.hint.is_some() {
        described.push(hint_id.clone());
    }
    if invalid {
        described.push(format!("{}-problem", field.form));
    }
    let described = (!described.is_empty()).then(|| described.join(" "));
    html! {
        div.field {
            label for=(id) { (field.label) }
            @if let Some(hint) = field.hint {
                p.hint id=(hint_id) { (hint) }
            }
            @match field.kind {
                Kind::Email => {
                    input id=(id) type="text" name=(field.name)
                        autocomplete=(field.autocomplete) spellcheck="false"
                        required value=[field.value] aria-invalid=[invalid.then_some("true")]
                        aria-describedby=[described.as_deref()];
                }
                Kind::Password => {
                    input id=(id) type="password" name=(field.name)
                        autocomplete=(field.autocomplete) required
                        aria-invalid=[invalid.then_some("true")]
                        aria-describedby=[described.as_deref()];
                }
                Kind::Code => {
                    input id=(id) type="text" name=(field.name)
                        autocomplete=(field.autocomplete) spellcheck="false"
                        maxlength="32"
                        aria-invalid=[invalid.then_some("true")]
                        aria-describedby=[described.as_deref()];
                }
            }
        }
    }
}

/// A hidden field.
pub fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(name) value=(value); }
}

/// The form's button.
pub fn submit(label: &str) -> Markup {
    html! { button type="submit" { (label) } }
}

/// A button that ends or deletes something.
pub fn danger(label: &str) -> Markup {
    html! { button.danger type="submit" { (label) } }
}
