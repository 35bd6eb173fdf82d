//! Delivery by webhook (`--delivery webhook:https://...`): one JSON POST
//! per message, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>), so the receiver can check that
//! authd sent it and that it is fresh (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`).
//!
//! HTTPS always; plain HTTP only to this machine or a private address
//! literal, where earlier releases' configurations point (a local relay),
//! with a start-up warning. Redirects are not followed: a body with a
//! reset token goes to the configured URL or nowhere.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::{is_private_host, scrub, SendError};

/// Time allowed for one POST, connection to last byte of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";
/// Key sizes the specification allows: 24 to 64 bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// The key webhooks are signed with (`--webhook-secret-file` or
/// `AUTHD_WEBHOOK_SECRET`). Debug shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// `whsec_` and the key in standard base64, 24 to 64 bytes once
    /// decoded, as the specification has it. Surrounding whitespace (a
    /// file's final newline) is ignored. Errors never quote the input.
    pub fn parse(s: &str) -> Result<WebhookSecret, String> {
        let s = s.trim();
        let encoded = s
            .strip_prefix(SECRET_PREFIX)
            .ok_or("the webhook secret must start with whsec_ (Standard Webhooks)")?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| "the webhook secret after whsec_ is not standard base64")?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(format!(
                "the webhook secret is {} bytes once decoded; Standard Webhooks wants 24 to 64",
                key.len()
            ));
        }
        Ok(WebhookSecret(key))
    }

    /// The key as it may appear in text (scrubbed from error messages).
    fn encoded(&self) -> String {
        BASE64.encode(&self.0)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `{msg_id}.{timestamp}.{body}`
/// under `secret`: the value of `webhook-signature`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp_secs: u64, body: &[u8]) -> String {
    // A key of any length is accepted by HMAC; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return String::new();
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// A validated webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    url: String,
}

impl WebhookTarget {
    /// `https://HOST/...`, or `http://` to `localhost`, a loopback or a
    /// private address literal (127/8, 10/8, 172.16/12, 192.168/16, ::1,
    /// fc00::/7), which comes back with a warning to print at start-up.
    /// No user or password in the URL: the URL is printed at start-up, and
    /// the signature authenticates authd instead.
    pub fn parse(url: &str) -> Result<(WebhookTarget, Option<String>), String> {
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| format!("webhook URL {url:?} is not a URL: {e}"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("webhook URL {url:?} has no host"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(
                "a webhook URL must not carry a user or password (it is printed at start-up; use --webhook-secret-file)".to_owned(),
            );
        }
        let warning = match uri.scheme_str() {
            Some("https") => None,
            Some("http") if is_private_host(host) => Some(format!(
                "webhook {url} is plain HTTP: tokens cross the network unencrypted; use https:// unless {host} is this machine or a trusted relay"
            )),
            Some("http") => {
                return Err(format!(
                    "webhook URL {url:?} must be https:// (plain http:// only to localhost or a private address literal)"
                ))
            }
            _ => return Err(format!("webhook URL {url:?} must be https://HOST/PATH")),
        };
        Ok((
            WebhookTarget {
                url: url.to_owned(),
            },
            warning,
        ))
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// A client for one webhook URL.
pub struct Webhook {
    target: WebhookTarget,
    secret: Option<WebhookSecret>,
    agent: ureq::Agent,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("target", &self.target)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Webhook {
    /// A client for `target`, signing with `secret` when there is one.
    /// Certificates are checked against the webpki (Mozilla) roots
    /// compiled in, or, when `ca_file` is given, against the certificates
    /// of that PEM file only (as `curl --cacert` does).
    pub fn new(
        target: WebhookTarget,
        secret: Option<WebhookSecret>,
        ca_file: Option<&Path>,
    ) -> Result<Webhook, String> {
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            let mut certificates = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(certificate)) => {
                        certificates.push(certificate)
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("CA file {}: {e}", path.display())),
                }
            }
            if certificates.is_empty() {
                return Err(format!(
                    "CA file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certificates));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // 0: the 3xx comes back as an answer, never followed.
            .max_redirects(0)
            // Statuses are classified below, not turned into errors.
            .http_status_as_error(false)
            .tls_config(tls.build())
            .user_agent("authd")
            .build()
            .into();
        Ok(Webhook {
            target,
            secret,
            agent,
        })
    }

    pub fn target(&self) -> &WebhookTarget {
        &self.target
    }

    /// One POST of `body` (JSON) with `webhook-id: msg_id`,
    /// `webhook-timestamp` (now, in seconds) and, with a secret,
    /// `webhook-signature`. `msg_id` must stay the same across retries of
    /// one message, so the receiver can drop duplicates. 2xx is success;
    /// the rest is classified for the worker: 5xx, 408 and 429 and
    /// network trouble are transient; 3xx (not followed) and other 4xx,
    /// and certificates that do not verify, are permanent.
    pub fn send(&self, msg_id: &str, body: &[u8]) -> Result<(), SendError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = self
            .agent
            .post(self.target.url())
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = &self.secret {
            request = request.header("webhook-signature", sign(secret, msg_id, timestamp, body));
        }
        let scrubbed = |text: String| match &self.secret {
            Some(secret) => scrub(text, &[&secret.encoded()]),
            None => text,
        };
        match request.send(body) {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = || scrubbed(format!("webhook {}: HTTP {status}", self.target));
                match status {
                    200..=299 => Ok(()),
                    300..=399 => Err(SendError::Permanent(format!(
                        "{} (redirects are not followed)",
                        text()
                    ))),
                    408 | 429 | 500..=599 => Err(SendError::Transient(text())),
                    _ => Err(SendError::Permanent(text())),
                }
            }
            Err(e) => {
                let text = scrubbed(format!("webhook {}: {e}", self.target));
                Err(classify(&e, text))
            }
        }
    }
}

/// A ureq error as transient (the network, the server's state) or
/// permanent (what authd sent or the certificate: the same next time).
fn classify(e: &ureq::Error, text: String) -> SendError {
    use ureq::Error as E;
    match e {
        // rustls reports a certificate it does not trust as InvalidData.
        E::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => SendError::Permanent(text),
        E::Tls(_)
        | E::Pem(_)
        | E::Rustls(_)
        | E::TlsRequired
        | E::BadUri(_)
        | E::Http(_)
        | E::RequireHttpsOnly(_) => SendError::Permanent(text),
        _ => SendError::Transient(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference libraries' own test vector.
    #[test]
    fn signature_matches_the_specification_test_vector() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        // Any change to id, time or body changes the signature.
        let base = sign(&secret, "msg_1", 1, b"{}");
        assert_ne!(base, sign(&secret, "msg_2", 1, b"{}"));
        assert_ne!(base, sign(&secret, "msg_1", 2, b"{}"));
        assert_ne!(base, sign(&secret, "msg_1", 1, b"{ }"));
    }

    #[test]
    fn secrets_parse_strictly_and_never_show() {
        let key = BASE64.encode([7u8; 32]);
        let secret = WebhookSecret::parse(&format!("  whsec_{key}\n")).unwrap();
        assert_eq!(secret.0, vec![7u8; 32]);
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
        for bad in [
            String::new(),
            key.clone(),
            format!("whsec{key}"),
            format!("whsec_{key}!"),
            format!("whsec_{}", BASE64.encode([1u8; 23])),
            format!("whsec_{}", BASE64.encode([1u8; 65])),
        ] {
            let err = WebhookSecret::parse(&bad).unwrap_err();
            assert!(key.is_empty() || !err.contains(&key[..8]), "{err}");
        }
        assert!(WebhookSecret::parse(&format!("whsec_{}", BASE64.encode([1u8; 24]))).is_ok());
        assert!(WebhookSecret::parse(&format!("whsec_{}", BASE64.encode([1u8; 64]))).is_ok());
    }

    #[test]
    fn targets_https_anywhere_http_only_nearby() {
        for url in ["https://hooks.example.com/authd", "https://10.0.0.1:8443/x"] {
            let (target, warning) = WebhookTarget::parse(url).unwrap();
            assert_eq!((target.url(), warning), (url, None));
        }
        for url in [
            "http://127.0.0.1:8025/reset",
            "http://localhost/reset",
            "http://10.1.2.3/x",
            "http://172.20.0.1/x",
            "http://192.168.0.10:8080/x",
            "http://[::1]:8080/x",
            "http://[fd00::5]/x",
        ] {
            let (target, warning) = WebhookTarget::parse(url).unwrap();
            assert_eq!(target.url(), url);
            assert!(warning.unwrap().contains("plain HTTP"), "{url}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "http://8.8.8.8/x",
            "http://172.32.0.1/x",
            "http://localhost.example.com/x",
            "ftp://127.0.0.1/x",
            "hooks.example.com/x",
            "https:///x",
            "https://user:S3cret@hooks.example.com/x",
            "not a url",
            "",
        ] {
            let err = WebhookTarget::parse(bad).unwrap_err();
            assert!(!err.contains("S3cret"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let (target, _) = WebhookTarget::parse("https://hooks.example.com/x").unwrap();
        let key = BASE64.encode([9u8; 32]);
        let secret = WebhookSecret::parse(&format!("whsec_{key}")).unwrap();
        let webhook = Webhook::new(target, Some(secret), None).unwrap();
        assert!(!format!("{webhook:?}").contains(&key));
    }
}
