//! `/ui/outbox` (dev profile): the messages the dev outbox caught, newest
//! first, their links clickable, so a prototype needs no mail server to
//! confirm an address or reset a password. Like `GET /dev/outbox`, only a
//! loopback peer that named a loopback `Host` may read it: a page
//! elsewhere cannot reach it through a DNS name rebound to 127.0.0.1.

use maud::{html, Markup};
use rouille::Response;

use crate::auth::AuthError;
use crate::http::error::ApiError;
use crate::http::routes::dev_outbox::from_this_machine;
use crate::http::ui::page::Page;
use crate::http::ui::problem::Problem;

/// The caught messages; 403 to anyone but this machine.
pub fn get(page: &Page<'_>) -> Response {
    let m = page.m;
    if !from_this_machine(page.request) {
        let problem = Problem::api(ApiError::Forbidden("not this machine"), m);
        let main = html! { div.problem role="alert" { p { (m.outbox_intro) } } };
        return page.problem_html(&problem, m.outbox_title, main);
    }
    let caught = match page.app.auth.store().caught() {
        Ok(caught) => caught,
        Err(e) => {
            let problem = Problem::auth(AuthError::Store(e), m);
            let main = html! { div.problem role="alert" { p { (problem.text) } } };
            return page.problem_html(&problem, m.outbox_title, main);
        }
    };
    let main = html! {
        p { (m.outbox_intro) }
        @if caught.is_empty() {
            p { (m.outbox_empty) }
        }
        @for caught in caught.iter().rev() {
            article.message aria-labelledby=(format!("message-{}", caught.id)) {
                h2 id=(format!("message-{}", caught.id)) { (caught.message.subject) }
                dl {
                    dt { (m.outbox_to) }
                    dd { (caught.message.to) }
                    dt { (m.outbox_caught) }
                    dd { (crate::clock::rfc3339(caught.created_at)) }
                }
                pre { (linked(&caught.message.text)) }
            }
        }
    };
    page.html(200, m.outbox_title, None, main)
}

/// `text` with each `http://` or `https://` URL made a link (up to the
/// next space, quote or angle bracket, a final `.`, `,`, `;` or `)` left
/// out); everything escaped.
fn linked(text: &str) -> Markup {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = [rest.find("http://"), rest.find("https://")]
        .into_iter()
        .flatten()
        .min()
    {
        let (before, from) = rest.split_at(at);
        let end = from
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
            .unwrap_or(from.len());
        let url = from[..end].trim_end_matches(['.', ',', ';', ')']);
        parts.push((before, None));
        parts.push(("", Some(url)));
        rest = &from[url.len()..];
    }
    html! {
        @for (plain, url) in parts {
            (plain)
            @if let Some(url) = url { a href=(url) { (url) } }
        }
        (rest)
    }
}

#[cfg(test)]
mod tests {
    use super::linked;

    #[test]
    fn urls_become_links_and_the_rest_is_escaped() {
        let text = "Open http://127.0.0.1:5000/ui/verify-email?email=a%40b.io&token=x.\n<b>hi</b> (https://x.io)";
        assert_eq!(
            linked(text).into_string(),
            "Open <a href=\"http://127.0.0.1:5000/ui/verify-email?email=a%40b.io&amp;token=x\">\
             http://127.0.0.1:5000/ui/verify-email?email=a%40b.io&amp;token=x</a>.\n\
             &lt;b&gt;hi&lt;/b&gt; (<a href=\"https://x.io\">https://x.io</a>)"
        );
        assert_eq!(linked("no links").into_string(), "no links");
        assert_eq!(
            linked("http://").into_string(),
            "<a href=\"http://\">http://</a>"
        );
    }
}
