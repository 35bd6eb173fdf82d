//! The messages authd sends (reset, verification, notices) and the
//! templates that word them.
//!
//! Every channel renders the same [`Message`] from the same [`Templates`],
//! so an operator words a message once. Templates are checked whole at
//! start-up ([`Templates::load`]): a typo such as `{{linnk}}` is a start-up
//! error naming the file, never an email with a hole in it found by a
//! user. Links come only from the operator's public URL ([`PublicUrl`]),
//! never from a request's `Host`, which an attacker chooses (the classic
//! reset-poisoning attack).

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a message is about; names its template files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A password reset link, to the account's address.
    Reset,
    /// A link that proves the address of a new account.
    Verify,
    /// A link that proves a new address, sent to that new address.
    EmailChange,
    /// Notice: the password was changed.
    PasswordChanged,
    /// Notice to the old address: the address was changed.
    EmailChanged,
    /// Notice: the account was deleted.
    AccountDeleted,
    /// Notice: two-step sign-in (TOTP) was turned on.
    TotpEnabled,
    /// Notice: two-step sign-in was turned off.
    TotpDisabled,
    /// Notice: a recovery code was used to sign in.
    RecoveryCodeUsed,
}

impl Kind {
    /// Every kind, in the order of their template files.
    pub const ALL: [Kind; 9] = [
        Kind::Reset,
        Kind::Verify,
        Kind::EmailChange,
        Kind::PasswordChanged,
        Kind::EmailChanged,
        Kind::AccountDeleted,
        Kind::TotpEnabled,
        Kind::TotpDisabled,
        Kind::RecoveryCodeUsed,
    ];

    /// The name of the kind's template files and of its webhook `type`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reset => "reset",
            Kind::Verify => "verify",
            Kind::EmailChange => "email_change",
            Kind::PasswordChanged => "password_changed",
            Kind::EmailChanged => "email_changed",
            Kind::AccountDeleted => "account_deleted",
            Kind::TotpEnabled => "totp_enabled",
            Kind::TotpDisabled => "totp_disabled",
            Kind::RecoveryCodeUsed => "recovery_code_used",
        }
    }

    /// The kind named `name` (the inverse of [`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether messages of this kind carry a link (and so need
    /// `--public-url`): the ones that carry a token.
    pub fn sends_link(self) -> bool {
        self.link_path().is_some()
    }

    /// The page of the UI a link of this kind opens.
    fn link_path(self) -> Option<&'static str> {
        match self {
            Kind::Reset => Some("/ui/reset-password"),
            Kind::Verify | Kind::EmailChange => Some("/ui/verify-email"),
            Kind::PasswordChanged
            | Kind::EmailChanged
            | Kind::AccountDeleted
            | Kind::TotpEnabled
            | Kind::TotpDisabled
            | Kind::RecoveryCodeUsed => None,
        }
    }

    /// The placeholders a template of this kind may use: those that
    /// [`Vars`] fills for it. `{{link}}` in a notice would always render
    /// empty, so it is refused at load like a typo.
    fn placeholders(self) -> &'static [Var] {
        match self {
            Kind::Reset | Kind::Verify => &[Var::Email, Var::Link, Var::Token, Var::ExpiresAt],
            Kind::EmailChange => &[
                Var::Email,
                Var::Link,
                Var::Token,
                Var::ExpiresAt,
                Var::NewEmail,
                Var::OldEmail,
            ],
            Kind::PasswordChanged
            | Kind::AccountDeleted
            | Kind::TotpEnabled
            | Kind::TotpDisabled
            | Kind::RecoveryCodeUsed => &[Var::Email],
            Kind::EmailChanged => &[Var::Email, Var::NewEmail, Var::OldEmail],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rendered message, ready for any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// The recipient's address.
    pub to: String,
    /// One line, no CR or LF (header injection).
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The values a template's placeholders take. Fields a kind does not use
/// stay `None` (rendered empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// The recipient (for `email_change`, the new address).
    pub email: String,
    pub token: Option<String>,
    /// Built by [`PublicUrl::link`].
    pub link: Option<String>,
    /// When the token expires, RFC 3339.
    pub expires_at: Option<String>,
    pub new_email: Option<String>,
    pub old_email: Option<String>,
}

/// The operator's `--public-url`: the only base links are built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

/// What a query value may hold unencoded: the unreserved characters of
/// RFC 3986, so `+`, `&`, `=`, `#` and `%` in an address or token never
/// change the link's meaning.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl PublicUrl {
    /// `http(s)://HOST[:PORT][/PREFIX]`, without query or fragment (links
    /// append their own path and query); a trailing `/` is dropped.
    pub fn parse(s: &str) -> Result<PublicUrl, String> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| format!("public URL {s:?} must start with https:// or http://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("public URL {s:?} must name a host (and no user)"));
        }
        if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "public URL {s:?} must have no query, fragment, spaces or control characters"
            ));
        }
        Ok(PublicUrl(s.trim_end_matches('/').to_owned()))
    }

    /// The link a message of `kind` carries for `email` and `token`, or
    /// `None` for kinds without one (notices).
    pub fn link(&self, kind: Kind, email: &str, token: &str) -> Option<String> {
        let path = kind.link_path()?;
        Some(format!(
            "{}{path}?email={}&token={}",
            self.0,
            utf8_percent_encode(email, QUERY_VALUE),
            utf8_percent_encode(token, QUERY_VALUE)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A placeholder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Email,
    Link,
    Token,
    ExpiresAt,
    NewEmail,
    OldEmail,
}

impl Var {
    const ALL: [Var; 6] = [
        Var::Email,
        Var::Link,
        Var::Token,
        Var::ExpiresAt,
        Var::NewEmail,
        Var::OldEmail,
    ];

    fn name(self) -> &'static str {
        match self {
            Var::Email => "email",
            Var::Link => "link",
            Var::Token => "token",
            Var::ExpiresAt => "expires_at",
            Var::NewEmail => "new_email",
            Var::OldEmail => "old_email",
        }
    }

    fn value(self, vars: &Vars) -> &str {
        match self {
            Var::Email => &vars.email,
            Var::Link => vars.link.as_deref().unwrap_or_default(),
            Var::Token => vars.token.as_deref().unwrap_or_default(),
            Var::ExpiresAt => vars.expires_at.as_deref().unwrap_or_default(),
            Var::NewEmail => vars.new_email.as_deref().unwrap_or_default(),
            Var::OldEmail => vars.old_email.as_deref().unwrap_or_default(),
        }
    }
}

/// The three parts of a message; the extension of their files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Subject,
    Text,
    Html,
}

impl Part {
    const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    fn extension(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "txt",
            Part::Html => "html",
        }
    }
}

/// Largest template file accepted: a template is a few hundred bytes; a
/// large file is a mistake (a wrong directory), not a message.
pub const MAX_TEMPLATE_BYTES: u64 = 64 * 1024;

/// Why the templates could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {}: cannot read it: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {}: not UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("template {}: {size} bytes, more than the {MAX_TEMPLATE_BYTES} allowed", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("template {}: unknown placeholder {{{{{name}}}}} (known: email, link, token, expires_at, new_email, old_email)", path.display())]
    UnknownPlaceholder { path: PathBuf, name: String },
    #[error("template {}: placeholder {{{{{name}}}}} has no value in a {kind} message (it may use: {allowed})", path.display())]
    NotAvailable {
        path: PathBuf,
        name: String,
        kind: Kind,
        allowed: String,
    },
    #[error("template {}: `{{{{` without its closing `}}}}`", path.display())]
    Unclosed { path: PathBuf },
    #[error("template {}: a subject is one line", path.display())]
    MultilineSubject { path: PathBuf },
    #[error("template {}: unknown template file (expected KIND.subject, KIND.txt or KIND.html with KIND one of reset, verify, email_change, password_changed, email_changed, account_deleted)", path.display())]
    UnknownFile { path: PathBuf },
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed template file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

impl Template {
    /// Parses `source` (from `path`, for errors) as a `part` of `kind`.
    fn parse(source: &str, path: &Path, kind: Kind, part: Part) -> Result<Template, TemplateError> {
        let source = if part == Part::Subject {
            let line = source.trim_end_matches(['\r', '\n']);
            if line.contains(['\r', '\n']) {
                return Err(TemplateError::MultilineSubject {
                    path: path.to_owned(),
                });
            }
            line
        } else {
            source
        };
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError::Unclosed {
                    path: path.to_owned(),
                });
            };
            let name = after[..close].trim();
            let Some(var) = Var::ALL.into_iter().find(|v| v.name() == name) else {
                return Err(TemplateError::UnknownPlaceholder {
                    path: path.to_owned(),
                    name: name.to_owned(),
                });
            };
            if !kind.placeholders().contains(&var) {
                return Err(TemplateError::NotAvailable {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    kind,
                    allowed: kind
                        .placeholders()
                        .iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            pieces.push(Piece::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template(pieces))
    }

    /// The template with `vars` in, each value passed through `escape`.
    fn render(&self, vars: &Vars, escape: fn(&str) -> String) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(var) => out.push_str(&escape(var.value(vars))),
            }
        }
        out
    }
}

/// A value as HTML text or attribute content (the html bodies quote
/// attributes with `"`; `'` is escaped too for templates that use it).
fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value for a subject line: control characters (CR and LF above all,
/// which would start a new header) become spaces.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn as_is(value: &str) -> String {
    value.to_owned()
}

/// The built-in templates, compiled in: (kind, part, text).
const BUILT_IN: [(Kind, Part, &str); 27] = [
    (
        Kind::Reset,
        Part::Subject,
        include_str!("templates/reset.subject"),
    ),
    (Kind::Reset, Part::Text, include_str!("templates/reset.txt")),
    (
        Kind::Reset,
        Part::Html,
        include_str!("templates/reset.html"),
    ),
    (
        Kind::Verify,
        Part::Subject,
        include_str!("templates/verify.subject"),
    ),
    (
        Kind::Verify,
        Part::Text,
        include_str!("templates/verify.txt"),
    ),
    (
        Kind::Verify,
        Part::Html,
        include_str!("templates/verify.html"),
    ),
    (
        Kind::EmailChange,
        Part::Subject,
        include_str!("templates/email_change.subject"),
    ),
    (
        Kind::EmailChange,
        Part::Text,
        include_str!("templates/email_change.txt"),
    ),
    (
        Kind::EmailChange,
        Part::Html,
        include_str!("templates/email_change.html"),
    ),
    (
        Kind::PasswordChanged,
        Part::Subject,
        include_str!("templates/password_changed.subject"),
    ),
    (
        Kind::PasswordChanged,
        Part::Text,
        include_str!("templates/password_changed.txt"),
    ),
    (
        Kind::PasswordChanged,
        Part::Html,
        include_str!("templates/password_changed.html"),
    ),
    (
        Kind::EmailChanged,
        Part::Subject,
        include_str!("templates/email_changed.subject"),
    ),
    (
        Kind::EmailChanged,
        Part::Text,
        include_str!("templates/email_changed.txt"),
    ),
    (
        Kind::EmailChanged,
        Part::Html,
        include_str!("templates/email_changed.html"),
    ),
    (
        Kind::AccountDeleted,
        Part::Subject,
        include_str!("templates/account_deleted.subject"),
    ),
    (
        Kind::AccountDeleted,
        Part::Text,
        include_str!("templates/account_deleted.txt"),
    ),
    (
        Kind::AccountDeleted,
        Part::Html,
        include_str!("templates/account_deleted.html"),
    ),
    (
        Kind::TotpEnabled,
        Part::Subject,
        include_str!("templates/totp_enabled.subject"),
    ),
    (
        Kind::TotpEnabled,
        Part::Text,
        include_str!("templates/totp_enabled.txt"),
    ),
    (
        Kind::TotpEnabled,
        Part::Html,
        include_str!("templates/totp_enabled.html"),
    ),
    (
        Kind::TotpDisabled,
        Part::Subject,
        include_str!("templates/totp_disabled.subject"),
    ),
    (
        Kind::TotpDisabled,
        Part::Text,
        include_str!("templates/totp_disabled.txt"),
    ),
    (
        Kind::TotpDisabled,
        Part::Html,
        include_str!("templates/totp_disabled.html"),
    ),
    (
        Kind::RecoveryCodeUsed,
        Part::Subject,
        include_str!("templates/recovery_code_used.subject"),
    ),
    (
        Kind::RecoveryCodeUsed,
        Part::Text,
        include_str!("templates/recovery_code_used.txt"),
    ),
    (
        Kind::RecoveryCodeUsed,
        Part::Html,
        include_str!("templates/recovery_code_used.html"),
    ),
];

/// The subject, text and html templates of every kind.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Indexed like [`BUILT_IN`]: kind * 3 + part.
    parsed: Vec<Template>,
}

impl Templates {
    /// The built-in templates, each replaced by `DIR/KIND.PART` when that
    /// file exists. Every file is checked here, so a broken template stops
    /// the start, not a delivery: unreadable, not UTF-8, over
    /// [`MAX_TEMPLATE_BYTES`], an unknown placeholder or one the kind
    /// cannot fill, a subject of several lines. A file that looks like a
    /// template (`.subject`, `.txt`, `.html`) but names no kind is refused
    /// too: `reset_password.txt` would otherwise be silently ignored.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        if let Some(dir) = dir {
            check_names(dir)?;
        }
        let mut parsed = Vec::with_capacity(BUILT_IN.len());
        for (kind, part, built_in) in BUILT_IN {
            let file = format!("{}.{}", kind.name(), part.extension());
            let override_path = dir.map(|d| d.join(&file));
            let template = match override_path.as_deref().map(read_template).transpose()? {
                Some(Some(source)) => {
                    let path = override_path.unwrap_or_default();
                    Template::parse(&source, &path, kind, part)?
                }
                _ => Template::parse(built_in, &Path::new("built-in").join(&file), kind, part)?,
            };
            parsed.push(template);
        }
        Ok(Templates { parsed })
    }

    fn get(&self, kind: Kind, part: Part) -> Option<&Template> {
        let k = Kind::ALL.iter().position(|k| *k == kind)?;
        let p = Part::ALL.iter().position(|p| *p == part)?;
        self.parsed.get(k * Part::ALL.len() + p)
    }

    /// The message of `kind` for `vars`: values escaped for HTML in the
    /// html body, made one line in the subject, as they are in the text.
    pub fn render(&self, kind: Kind, vars: &Vars) -> Message {
        let render = |part: Part, escape: fn(&str) -> String| {
            self.get(kind, part)
                .map(|t| t.render(vars, escape))
                .unwrap_or_default()
        };
        Message {
            kind,
            to: vars.email.clone(),
            subject: render(Part::Subject, one_line),
            text: render(Part::Text, as_is),
            html: render(Part::Html, escape_html),
        }
    }
}

/// Refuses files in `dir` that look like templates but are none of the 18.
fn check_names(dir: &Path) -> Result<(), TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TemplateError::Directory {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| TemplateError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, extension)) = name.rsplit_once('.') else {
            continue;
        };
        let looks_like_template = Part::ALL.iter().any(|p| p.extension() == extension);
        if looks_like_template && Kind::from_name(stem).is_none() {
            return Err(TemplateError::UnknownFile { path: entry.path() });
        }
    }
    Ok(())
}

/// The text of the template file at `path`, `None` if there is none.
fn read_template(path: &Path) -> Result<Option<String>, TemplateError> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TemplateError::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    // One byte past the limit tells a file at the limit from a larger one
    // without trusting the size metadata (a FIFO or /proc file has none).
    file.take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TemplateError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(TemplateError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| TemplateError::NotUtf8 {
            path: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            email: "ann@example.com".to_owned(),
            token: Some("tok-123".to_owned()),
            link: Some(
                "https://auth.example.com/ui/reset-password?email=ann%40example.com&token=tok-123"
                    .to_owned(),
            ),
            expires_at: Some("2030-01-01T00:00:00Z".to_owned()),
            new_email: Some("new@example.com".to_owned()),
            old_email: Some("old@example.com".to_owned()),
        }
    }

    fn write(dir: &Path, name: &str, text: &[u8]) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::from_name("Reset"), None);
        assert_eq!(Kind::from_name(""), None);
        let links: Vec<_> = Kind::ALL.iter().filter(|k| k.sends_link()).collect();
        assert_eq!(links, [&Kind::Reset, &Kind::Verify, &Kind::EmailChange]);
    }

    #[test]
    fn built_in_templates_load_and_use_their_values() {
        let templates = Templates::load(None).unwrap();
        let vars = vars();
        for kind in Kind::ALL {
            let message = templates.render(kind, &vars);
            assert_eq!(message.to, "ann@example.com");
            assert!(!message.subject.is_empty(), "{kind}");
            assert!(!message.subject.contains('\n'), "{kind}");
            assert!(message.html.starts_with("<!DOCTYPE html>"), "{kind}");
            assert!(!message.text.contains("{{"), "{kind}");
            assert!(!message.html.contains("{{"), "{kind}");
            // No external assets: nothing is fetched when the mail is opened.
            assert!(!message.html.contains("src="), "{kind}");
            if kind.sends_link() {
                assert!(
                    message.text.contains(vars.link.as_deref().unwrap()),
                    "{kind}"
                );
                assert!(message.text.contains("2030-01-01T00:00:00Z"), "{kind}");
            }
        }
        let changed = templates.render(Kind::EmailChanged, &vars);
        assert!(
            changed.text.contains("old@example.com") && changed.text.contains("new@example.com")
        );
    }

    #[test]
    fn links_come_from_the_public_url_with_encoded_values() {
        let base = PublicUrl::parse("https://auth.example.com/").unwrap();
        assert_eq!(
            base.link(Kind::Reset, "a+b@example.com", "x&y=z"),
            Some("https://auth.example.com/ui/reset-password?email=a%2Bb%40example.com&token=x%26y%3Dz".to_owned())
        );
        assert_eq!(
            base.link(Kind::Verify, "a@b.c", "t").as_deref(),
            Some("https://auth.example.com/ui/verify-email?email=a%40b.c&token=t")
        );
        assert_eq!(
            base.link(Kind::EmailChange, "a@b.c", "t").as_deref(),
            Some("https://auth.example.com/ui/verify-email?email=a%40b.c&token=t")
        );
        assert_eq!(base.link(Kind::PasswordChanged, "a@b.c", "t"), None);
        let prefixed = PublicUrl::parse("http://127.0.0.1:5000/auth").unwrap();
        assert!(prefixed
            .link(Kind::Reset, "a@b.c", "t")
            .unwrap()
            .starts_with("http://127.0.0.1:5000/auth/ui/reset-password?"));
        for bad in [
            "",
            "auth.example.com",
            "ftp://auth.example.com",
            "https://",
            "https:///path",
            "https://user@auth.example.com",
            "https://auth.example.com/?next=1",
            "https://auth.example.com/#x",
            "https://auth.example.com/a b",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_escaped_in_html_and_one_line_in_subjects() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "reset.subject", b"Reset for {{email}}\n");
        write(
            dir.path(),
            "reset.html",
            b"<a href=\"{{link}}\">{{email}}</a>",
        );
        write(dir.path(), "reset.txt", b"{{email}}");
        let templates = Templates::load(Some(dir.path())).unwrap();
        let hostile = Vars {
            email: "<b>\"x\"&'y'@example.com\r\nBcc: victim@example.com".to_owned(),
            link: Some("https://a.example/?a=1&b=<2>".to_owned()),
            ..Vars::default()
        };
        let message = templates.render(Kind::Reset, &hostile);
        assert_eq!(
            message.html,
            "<a href=\"https://a.example/?a=1&amp;b=&lt;2&gt;\">&lt;b&gt;&quot;x&quot;&amp;&#39;y&#39;@example.com\r\nBcc: victim@example.com</a>"
        );
        assert_eq!(
            message.subject,
            "Reset for <b>\"x\"&'y'@example.com  Bcc: victim@example.com"
        );
        // The text body is plain text: values as they are.
        assert_eq!(message.text, hostile.email);
    }

    #[test]
    fn overrides_replace_only_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "verify.txt",
            b"Hello {{ email }}, open {{link}}",
        );
        let templates = Templates::load(Some(dir.path())).unwrap();
        let built_in = Templates::load(None).unwrap();
        let vars = vars();
        let message = templates.render(Kind::Verify, &vars);
        assert_eq!(
            message.text,
            format!(
                "Hello ann@example.com, open {}",
                vars.link.as_deref().unwrap()
            )
        );
        let original = built_in.render(Kind::Verify, &vars);
        assert_eq!(message.subject, original.subject);
        assert_eq!(message.html, original.html);
        assert_eq!(
            templates.render(Kind::Reset, &vars),
            built_in.render(Kind::Reset, &vars)
        );
    }

    #[test]
    fn a_typo_in_a_placeholder_names_file_and_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "reset.txt", b"Open {{linnk}} now");
        let err = Templates::load(Some(dir.path())).unwrap_err();
        assert!(
            matches!(err, TemplateError::UnknownPlaceholder { ref name, .. } if name == "linnk")
        );
        let text = err.to_string();
        assert!(
            text.contains("reset.txt") && text.contains("{{linnk}}"),
            "{text}"
        );
    }

    #[test]
    fn a_placeholder_the_kind_cannot_fill_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "password_changed.html",
            b"<a href=\"{{link}}\">x</a>",
        );
        let err = Templates::load(Some(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(matches!(
            err,
            TemplateError::NotAvailable {
                kind: Kind::PasswordChanged,
                ..
            }
        ));
        assert!(
            text.contains("password_changed.html") && text.contains("{{link}}"),
            "{text}"
        );
    }

    #[test]
    fn broken_files_are_start_up_errors() {
        type Expected = fn(&TemplateError) -> bool;
        let cases: [(&str, &[u8], Expected); 5] = [
            ("reset.txt", b"Open {{link", |e| {
                matches!(e, TemplateError::Unclosed { .. })
            }),
            ("reset.txt", b"caf\xe9", |e| {
                matches!(e, TemplateError::NotUtf8 { .. })
            }),
            ("reset.subject", b"Line one\nLine two\n", |e| {
                matches!(e, TemplateError::MultilineSubject { .. })
            }),
            ("reset_password.txt", b"hello", |e| {
                matches!(e, TemplateError::UnknownFile { .. })
            }),
            (
                "verify.html",
                &[b'x'; MAX_TEMPLATE_BYTES as usize + 1],
                |e| matches!(e, TemplateError::TooLarge { size, .. } if *size == MAX_TEMPLATE_BYTES + 1),
            ),
        ];
        for (name, text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), name, text);
            let err = Templates::load(Some(dir.path())).unwrap_err();
            assert!(expected(&err), "{name}: {err:?}");
            assert!(err.to_string().contains(name), "{err}");
        }
        // Exactly at the limit is fine; other files are ignored.
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "verify.html",
            &[b'x'; MAX_TEMPLATE_BYTES as usize],
        );
        write(dir.path(), "README", b"notes");
        Templates::load(Some(dir.path())).unwrap();
        // A missing directory is an error, not the built-ins.
        assert!(matches!(
            Templates::load(Some(&dir.path().join("missing"))),
            Err(TemplateError::Directory { .. })
        ));
    }

    #[test]
    fn an_unreadable_template_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where a file is expected cannot be read as one
        // (works as root too, unlike file permissions).
        std::fs::create_dir(dir.path().join("reset.txt")).unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err();
        assert!(matches!(err, TemplateError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("reset.txt"));
    }
}
