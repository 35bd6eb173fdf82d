//! Delivery by SMTP (`--delivery smtp://...` or `smtps://...`), through
//! lettre's blocking transport on rustls.
//!
//! TLS is required unless the server is this machine: a password or a
//! reset link sent in clear across a network is as good as published.
//! `smtp://` upgrades with STARTTLS (port 587), `smtps://` starts in TLS
//! (port 465). On loopback, `smtp://` uses STARTTLS if the server offers
//! it and sends in clear otherwise, for a local relay.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport as _};
use percent_encoding::percent_decode_str;

use super::{is_loopback_host, scrub, SendError};
use crate::message::Message;

/// Time allowed for each step of an SMTP conversation (connect, every
/// command), so a stalled server cannot hold the worker.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://` to another machine: STARTTLS or no delivery.
    StartTlsRequired,
    /// `smtp://` to loopback: STARTTLS when the server offers it.
    StartTlsIfOffered,
}

/// A validated `--delivery smtp(s)://...` with its `--mail-from`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    host: String,
    port: u16,
    security: Security,
    user: Option<String>,
    password: Option<String>,
    mail_from: Mailbox,
}

impl SmtpConfig {
    /// Parses `smtp://[user:pass@]host[:port]` (default port 587) or
    /// `smtps://...` (465); user and password are percent-decoded, so
    /// `p%40ss` is `p@ss`. `mail_from` is `addr@host` or `Name <addr@host>`.
    /// Errors never quote the password.
    pub fn parse(url: &str, mail_from: &str) -> Result<SmtpConfig, String> {
        let (rest, implicit) = if let Some(rest) = url.strip_prefix("smtps://") {
            (rest, true)
        } else if let Some(rest) = url.strip_prefix("smtp://") {
            (rest, false)
        } else {
            return Err(
                "SMTP delivery must be smtp://[USER:PASSWORD@]HOST[:PORT] or smtps://..."
                    .to_owned(),
            );
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // The last `@` ends the credentials: a password may hold an
        // unencoded `@`, a host never does.
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let shown = redacted_url(url, userinfo);
        if hostport.contains(['/', '?', '#']) {
            return Err(format!(
                "SMTP URL {shown} must have no path, query or fragment"
            ));
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            format!("SMTP URL {shown} must name a host and at most a numeric port")
        })?;
        let port = port.unwrap_or(if implicit { 465 } else { 587 });
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').ok_or_else(|| {
                    format!("SMTP URL {shown}: credentials must be USER:PASSWORD")
                })?;
                let decode = |s: &str, what: &str| {
                    percent_decode_str(s)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| {
                            format!(
                                "SMTP URL {shown}: the {what} is not UTF-8 once percent-decoded"
                            )
                        })
                };
                let user = decode(user, "user")?;
                let password = decode(password, "password")?;
                if user.is_empty() || password.is_empty() {
                    return Err(format!(
                        "SMTP URL {shown}: credentials must be USER:PASSWORD, both non-empty"
                    ));
                }
                (Some(user), Some(password))
            }
        };
        let security = if implicit {
            Security::ImplicitTls
        } else if is_loopback_host(&host) {
            Security::StartTlsIfOffered
        } else {
            Security::StartTlsRequired
        };
        let mail_from: Mailbox = mail_from
            .parse()
            .map_err(|e| format!("--mail-from {mail_from:?} is not an address: {e}"))?;
        Ok(SmtpConfig {
            host,
            port,
            security,
            user,
            password,
            mail_from,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn security(&self) -> Security {
        self.security
    }

    pub fn mail_from(&self) -> &Mailbox {
        &self.mail_from
    }

    /// This configuration with STARTTLS required even on loopback. Only
    /// makes the policy stricter (an implicit-TLS configuration stays so):
    /// for an operator whose local relay must encrypt, and for tests of
    /// the "required" rule against a server on this machine.
    pub fn require_tls(mut self) -> SmtpConfig {
        if self.security == Security::StartTlsIfOffered {
            self.security = Security::StartTlsRequired;
        }
        self
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (v6.to_owned(), port)
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (s.to_owned(), None),
        }
    };
    let valid_name = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !valid_name {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
    };
    Some((host, port))
}

/// `url` with the password replaced, for error messages.
fn redacted_url(url: &str, userinfo: Option<&str>) -> String {
    match userinfo.and_then(|u| u.split_once(':')) {
        Some((_, password)) if !password.is_empty() => {
            format!("{:?}", url.replacen(&format!(":{password}@"), ":***@", 1))
        }
        _ => format!("{url:?}"),
    }
}

impl fmt::Display for SmtpConfig {
    /// The URL as given, password replaced by `***`: for start-up lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == Security::ImplicitTls {
            "smtps"
        } else {
            "smtp"
        };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}:***@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("mail_from", &self.mail_from.to_string())
            .finish()
    }
}

/// A connection recipe to one SMTP server: a new connection per message
/// (deliveries are rare; a pooled connection would go stale between them).
pub struct Smtp {
    config: SmtpConfig,
    transport: SmtpTransport,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("config", &self.config)
            .finish()
    }
}

impl Smtp {
    /// The transport for `config`. Certificates are checked against the
    /// webpki (Mozilla) roots compiled in, or, when `ca_file` is given,
    /// against the certificates of that PEM file only (as `curl --cacert`
    /// does: a private relay's own CA, or a test's).
    pub fn new(config: SmtpConfig, ca_file: Option<&Path>) -> Result<Smtp, String> {
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            // lettre accepts a file without a certificate, which would
            // leave no root at all: every handshake failing later.
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "CA file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            let certificate = Certificate::from_pem(&pem)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("TLS set-up for {}: {e}", config.host))?;
        let tls = match config.security {
            Security::ImplicitTls => Tls::Wrapper(tls),
            Security::StartTlsRequired => Tls::Required(tls),
            Security::StartTlsIfOffered => Tls::Opportunistic(tls),
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.clone())
            .port(config.port)
            .tls(tls)
            .timeout(Some(TIMEOUT));
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            builder = builder
                .credentials(Credentials::new(user.clone(), password.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Smtp {
            transport: builder.build(),
            config,
        })
    }

    pub fn config(&self) -> &SmtpConfig {
        &self.config
    }

    /// Sends `message` as multipart/alternative (text, then html) from
    /// `--mail-from` to `message.to`, in one connection.
    pub fn send(&self, message: &Message) -> Result<(), SendError> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|e| SendError::Permanent(format!("recipient {:?}: {e}", message.to)))?;
        let email = lettre::Message::builder()
            .from(self.config.mail_from.clone())
            .to(to)
            .subject(message.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        self.transport
            .send(&email)
            .map(|_| ())
            .map_err(|e| self.classify(&e))
    }

    /// A lettre error as transient or permanent, its text scrubbed of the
    /// password (plain, and as the AUTH PLAIN and LOGIN exchanges carry it,
    /// in case a server echoes them).
    fn classify(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let text = format!("SMTP {}:{}: {e}", self.config.host, self.config.port);
        let text = match (&self.config.user, &self.config.password) {
            (Some(user), Some(password)) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let plain = b64.encode(format!("\0{user}\0{password}"));
                let login = b64.encode(password);
                scrub(text, &[password, &plain, &login])
            }
            _ => text,
        };
        // 4xx replies, network trouble and timeouts pass; 5xx replies,
        // policy (STARTTLS missing where required, bad address) and
        // certificates that do not verify stay as they are.
        if e.is_transient() || e.is_timeout() {
            SendError::Transient(text)
        } else if e.is_permanent() || e.is_client() || e.is_tls() || untrusted_peer(e) {
            SendError::Permanent(text)
        } else {
            SendError::Transient(text)
        }
    }
}

/// Whether `e` comes from a TLS handshake that refused the server's
/// certificate: lettre reports it as a network error, with rustls's
/// refusal as an `InvalidData` I/O error underneath.
fn untrusted_peer(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "authd <noreply@example.com>";

    #[test]
    fn urls_parse_with_defaults_and_policy() {
        let c = SmtpConfig::parse("smtp://mail.example.com", FROM).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.security()),
            ("mail.example.com", 587, Security::StartTlsRequired)
        );
        let c = SmtpConfig::parse("smtps://mail.example.com", FROM).unwrap();
        assert_eq!((c.port(), c.security()), (465, Security::ImplicitTls));
        let c = SmtpConfig::parse("smtp://127.0.0.1:2525", FROM).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.security()),
            ("127.0.0.1", 2525, Security::StartTlsIfOffered)
        );
        let c = SmtpConfig::parse("smtp://localhost/", FROM).unwrap();
        assert_eq!(c.security(), Security::StartTlsIfOffered);
        let c = SmtpConfig::parse("smtp://[::1]:25", FROM).unwrap();
        assert_eq!(
            (c.host(), c.port(), c.security()),
            ("::1", 25, Security::StartTlsIfOffered)
        );
        let c = SmtpConfig::parse("smtp://10.0.0.5", FROM).unwrap();
        assert_eq!(
            c.security(),
            Security::StartTlsRequired,
            "private is not loopback"
        );
        assert_eq!(c.mail_from().email.to_string(), "noreply@example.com");
        // require_tls only tightens.
        let c = SmtpConfig::parse("smtp://127.0.0.1", FROM)
            .unwrap()
            .require_tls();
        assert_eq!(c.security(), Security::StartTlsRequired);
        let c = SmtpConfig::parse("smtps://127.0.0.1", FROM)
            .unwrap()
            .require_tls();
        assert_eq!(c.security(), Security::ImplicitTls);
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let c = SmtpConfig::parse(
            "smtp://me%40example.com:p%40ss:w%2Frd@mail.example.com:2525",
            FROM,
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("me@example.com"));
        assert_eq!(c.password.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(c.port(), 2525);
        // An unencoded @ in the password: the last @ ends the credentials.
        let c = SmtpConfig::parse("smtp://me:p@ss@mail.example.com", FROM).unwrap();
        assert_eq!(
            (c.password.as_deref(), c.host()),
            (Some("p@ss"), "mail.example.com")
        );
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp://",
            "smtp://:25",
            "smtp://mail.example.com:0",
            "smtp://mail.example.com:99999",
            "smtp://mail.example.com:x",
            "smtp://mail example.com",
            "smtp://mail.example.com/path",
            "smtp://mail.example.com?x=1",
            "smtp://[::1",
            "smtp://[nothex]:25",
            "smtp://useronly@mail.example.com",
            "smtp://user:@mail.example.com",
            "smtp://:S3cretPass@mail.example.com",
            "smtp://user:S3cretPass@mail.example.com/x",
            "smtp://user:S3cret%ffPass@mail.example.com",
        ] {
            let err = SmtpConfig::parse(bad, FROM).unwrap_err();
            assert!(!err.contains("S3cret"), "{bad}: {err}");
        }
        for from in ["", "not an address", "a@b@c"] {
            assert!(
                SmtpConfig::parse("smtp://mail.example.com", from).is_err(),
                "{from:?}"
            );
        }
    }

    #[test]
    fn display_and_debug_redact_the_password() {
        let c = SmtpConfig::parse("smtp://me:S3cretPass@mail.example.com", FROM).unwrap();
        assert_eq!(c.to_string(), "smtp://me:***@mail.example.com:587");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("S3cretPass") && debug.contains("***"),
            "{debug}"
        );
        let smtp = Smtp::new(c, None).unwrap();
        assert!(!format!("{smtp:?}").contains("S3cretPass"));
        let v6 = SmtpConfig::parse("smtps://[::1]", FROM).unwrap();
        assert_eq!(v6.to_string(), "smtps://[::1]:465");
    }

    #[test]
    fn a_bad_ca_file_is_an_error() {
        let c = SmtpConfig::parse("smtps://mail.example.com", FROM).unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert!(Smtp::new(c.clone(), Some(&dir.path().join("missing.pem"))).is_err());
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(Smtp::new(c.clone(), Some(&junk)).is_err());
        std::fs::write(&junk, "").unwrap();
        assert!(Smtp::new(c, Some(&junk)).is_err());
    }
}
