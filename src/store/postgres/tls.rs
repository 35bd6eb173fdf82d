//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` on rustls.
//!
//! The `postgres` crate knows only `sslmode=disable`, `prefer` and
//! `require`, refuses `verify-ca`, `verify-full` and `sslrootcert`, and
//! leaves the handshake to a connector it is given. So both options are
//! taken out of the URL here ([`configure`]), the crate gets the mode it
//! understands, and the connector ([`MakeRustls`]) verifies what the mode
//! asks for, as libpq does:
//!
//! | `sslmode` | encrypted | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it, else plain text | unchecked, or chained to `sslrootcert` when given |
//! | `require` | always | unchecked, or chained to `sslrootcert` when given |
//! | `verify-ca` | always | chained to `sslrootcert` |
//! | `verify-full` | always | chained to `sslrootcert` and valid for the host name |
//!
//! "Unchecked" still checks the handshake's signatures: the connection is
//! encrypted to whoever holds the certificate's key, only who that is goes
//! unverified. Over a Unix socket `sslmode` is ignored, as in libpq (the
//! server offers no TLS there). Channel binding (`SCRAM-SHA-256-PLUS`) is
//! not offered: SCRAM without it still never sends the password.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::config::{Host, SslMode as CrateSslMode};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// libpq's `sslmode` values; the `postgres` crate has only the first three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            // libpq's `allow` tries plain text first: with the client
            // library's modes it cannot be had, and it protects nothing.
            other => Err(format!(
                "sslmode={other:?} is not supported (one of disable, prefer, require, \
                 verify-ca, verify-full)"
            )),
        }
    }
}

/// The TLS options of a database URL, and the URL without them.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    rest: String,
    mode: Option<String>,
    root_cert: Option<String>,
}

/// The database URL (`postgres://...?...` or libpq's `key=value ...`)
/// with `sslmode` and `sslrootcert` taken out, and their values. The rest
/// is kept byte for byte (`options=`, timeouts...), for the `postgres`
/// crate to parse. A string this cannot take apart is returned whole:
/// the crate's parser then says what is wrong with it.
fn split(url: &str) -> Split {
    let whole = || Split {
        rest: url.to_owned(),
        mode: None,
        root_cert: None,
    };
    let parsed = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_values(url)
    };
    parsed.unwrap_or_else(whole)
}

/// [`split`] for the URL form. The query starts at the first `?` after
/// the credentials, as the crate reads it; keys and values are
/// percent-decoded.
fn split_url(url: &str) -> Option<Split> {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return Some(Split {
            rest: url.to_owned(),
            mode: None,
            root_cert: None,
        });
    };
    let (head, query) = url.split_at(after_credentials + question);
    let query = &query[1..];
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    };
    let mut kept = Vec::new();
    let (mut mode, mut root_cert) = (None, None);
    if !query.is_empty() {
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=')?;
            match decode(key)?.as_str() {
                "sslmode" => mode = Some(decode(value)?),
                "sslrootcert" => root_cert = Some(decode(value)?),
                _ => kept.push(pair),
            }
        }
    }
    let rest = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Some(Split {
        rest,
        mode,
        root_cert,
    })
}

/// [`split`] for libpq's `key=value` form: values bare or in single
/// quotes, a backslash escaping the next character, spaces allowed around
/// `=`; the kept pairs are copied as written.
fn split_key_values(url: &str) -> Option<Split> {
    let chars: Vec<(usize, char)> = url.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(url.len(), |&(o, _)| o);
    let skip_ws = |mut i: usize| {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    };
    let mut kept = Vec::new();
    let (mut mode, mut root_cert) = (None, None);
    let mut i = skip_ws(0);
    while i < chars.len() {
        let start = i;
        while at(i).is_some_and(|c| !c.is_whitespace() && c != '=') {
            i += 1;
        }
        let key = &url[offset(start)..offset(i)];
        i = skip_ws(i);
        if key.is_empty() || at(i) != Some('=') {
            return None;
        }
        i = skip_ws(i + 1);
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i)? {
                    '\'' => break,
                    '\\' => {
                        value.push(at(i + 1)?);
                        i += 2;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(at(i + 1)?);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root_cert = Some(value),
            _ => kept.push(&url[offset(start)..offset(i)]),
        }
        i = skip_ws(i);
    }
    Some(Split {
        rest: kept.join(" "),
        mode,
        root_cert,
    })
}

/// The database URL without `sslmode` and `sslrootcert`, as the
/// `postgres` crate parses it (for messages that name the database).
pub(super) fn parse_config(url: &str) -> Result<postgres::Config, postgres::Error> {
    postgres::Config::from_str(&split(url).rest)
}

/// Reads the database URL: the client's configuration, with the mode it
/// knows, and the connector that verifies what `sslmode` asks for. Errors
/// are one line for the start-up message (a bad `sslmode`, an unreadable
/// `sslrootcert`, a verifying mode without one).
pub(super) fn configure(url: &str) -> Result<(postgres::Config, MakeRustls), String> {
    let Split {
        rest,
        mode,
        root_cert,
    } = split(url);
    let mut config = postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
    let mode = match mode {
        Some(value) => SslMode::parse(&value)?,
        None => SslMode::Prefer,
    };
    let root_cert = root_cert.filter(|path| !path.is_empty()).map(PathBuf::from);
    let only_unix = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| !matches!(host, Host::Tcp(_)));
    config.ssl_mode(match mode {
        _ if only_unix => CrateSslMode::Disable,
        SslMode::Disable => CrateSslMode::Disable,
        SslMode::Prefer => CrateSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => CrateSslMode::Require,
    });
    let tls = if mode == SslMode::Disable || only_unix {
        MakeRustls::new(Check::Nothing, None)?
    } else {
        MakeRustls::for_mode(mode, root_cert.as_deref())?
    };
    Ok((config, tls))
}

/// What the connector checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Only the handshake's signatures (`prefer`, `require`).
    Nothing,
    /// The chain up to `sslrootcert` (`verify-ca`; `prefer` and `require`
    /// given a root certificate, libpq's rule).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// Makes rustls connections for the `postgres` client, verifying the
/// server's certificate as the URL's `sslmode` says. Cheap to clone (the
/// pool makes one connection at a time with a clone).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
    check: Check,
    root_cert: Option<Arc<Path>>,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls")
            .field("check", &self.check)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl MakeRustls {
    fn for_mode(mode: SslMode, root_cert: Option<&Path>) -> Result<MakeRustls, String> {
        let check = match (mode, root_cert) {
            (SslMode::VerifyFull, _) => Check::ChainAndName,
            (SslMode::VerifyCa, _) | (_, Some(_)) => Check::Chain,
            _ => Check::Nothing,
        };
        if check == Check::Nothing {
            return MakeRustls::new(check, None);
        }
        let Some(path) = root_cert else {
            let name = if mode == SslMode::VerifyFull {
                "verify-full"
            } else {
                "verify-ca"
            };
            return Err(format!(
                "sslmode={name} needs sslrootcert=<file of the CA certificates, PEM> \
                 in the database URL"
            ));
        };
        let roots = read_roots(path)?;
        MakeRustls::new(check, Some((path, roots)))
    }

    fn new(check: Check, roots: Option<(&Path, RootCertStore)>) -> Result<MakeRustls, String> {
        let provider = provider();
        let algorithms = provider.signature_verification_algorithms;
        let (root_cert, roots) = match roots {
            Some((path, roots)) => (Some(Arc::from(path)), Arc::new(roots)),
            None => (None, Arc::new(RootCertStore::empty())),
        };
        let verifier = Arc::new(Verifier {
            check,
            roots,
            algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17's direct TLS (`sslnegotiation=direct`) requires
        // this protocol name; servers negotiating the classic way ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustls {
            config: Arc::new(config),
            check,
            root_cert,
        })
    }
}

/// The CA certificates of `sslrootcert`, a PEM file with one or more.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: a certificate is unusable: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown}: no certificate in the file"));
    }
    Ok(roots)
}

/// The server certificate check for every mode ([`Check`]); the
/// handshake's signatures are always verified.
#[derive(Debug)]
struct Verifier {
    check: Check,
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check == Check::ChainAndName {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsError> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| TlsError(format!("{domain:?} is not a host name TLS can check")))?;
        Ok(RustlsConnect {
            make: self.clone(),
            name,
        })
    }
}

/// One TLS handshake to the host named.
pub struct RustlsConnect {
    make: MakeRustls,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, TlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.make.config));
        Box::pin(async move {
            match connector.connect(self.name.clone(), stream).await {
                Ok(stream) => Ok(RustlsStream(Box::new(stream))),
                Err(e) => Err(explain(&e, &self.make, &self.name)),
            }
        })
    }
}

/// A failed handshake in words: not trusted, not for this host, expired;
/// the client library puts "error performing TLS handshake" before it.
fn explain(e: &io::Error, make: &MakeRustls, name: &ServerName<'_>) -> TlsError {
    let root_cert = make
        .root_cert
        .as_ref()
        .map_or_else(String::new, |p| format!(" ({})", p.display()));
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let host = name.to_str();
    TlsError(match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the server's certificate is not trusted: no CA in sslrootcert{root_cert} \
                 signed it"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate does not name the host {host:?} \
                     (sslmode=verify-full checks the name; connect by a name the \
                     certificate holds, or use verify-ca)"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_owned()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        Some(other) => format!("TLS with {host:?} failed: {other}"),
        None => format!("TLS with {host:?} failed: {e}"),
    })
}

/// Why a TLS connection to the database failed, in words.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for TlsError {}

/// The encrypted connection (boxed: the rustls state is large, and the
/// client holds it for the connection's life).
pub struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// None offered: see the module's documentation.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, Option<String>, Option<String>) {
        let s = split(url);
        (s.rest, s.mode, s.root_cert)
    }

    #[test]
    fn url_form_loses_only_the_tls_options() {
        assert_eq!(
            parts(
                "postgres://u:p%3F@db:5432/app?sslmode=verify-full&options=-c%20search_path%3Dx\
                 &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3"
            ),
            (
                "postgres://u:p%3F@db:5432/app?options=-c%20search_path%3Dx&connect_timeout=3"
                    .to_owned(),
                Some("verify-full".to_owned()),
                Some("/etc/ca.pem".to_owned())
            )
        );
        assert_eq!(
            parts("postgresql://db/app?sslmode=require"),
            (
                "postgresql://db/app".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            parts("postgres://db/app"),
            ("postgres://db/app".to_owned(), None, None)
        );
        // A `?` in the password is not the query.
        assert_eq!(
            parts("postgres://u:a?b@db/app?sslmode=disable"),
            (
                "postgres://u:a?b@db/app".to_owned(),
                Some("disable".to_owned()),
                None
            )
        );
    }

    #[test]
    fn key_value_form_loses_only_the_tls_options() {
        assert_eq!(
            parts(
                "host=db sslmode = verify-ca  sslrootcert='/a b/ca.pem' \
                 options='-c search_path=x' user=u"
            ),
            (
                "host=db options='-c search_path=x' user=u".to_owned(),
                Some("verify-ca".to_owned()),
                Some("/a b/ca.pem".to_owned())
            )
        );
        assert_eq!(
            parts(r"sslrootcert=/a\ b.pem dbname=app"),
            ("dbname=app".to_owned(), None, Some("/a b.pem".to_owned()))
        );
        // Malformed: handed on whole, for the client library to refuse.
        assert_eq!(
            parts("host=db sslmode"),
            ("host=db sslmode".to_owned(), None, None)
        );
    }

    #[test]
    fn modes_map_to_what_the_client_library_knows() {
        let mode =
            |url: &str| configure(url).map(|(config, tls)| (config.get_ssl_mode(), tls.check));
        assert_eq!(
            mode("postgres://db/app?sslmode=disable"),
            Ok((CrateSslMode::Disable, Check::Nothing))
        );
        assert_eq!(
            mode("postgres://db/app"),
            Ok((CrateSslMode::Prefer, Check::Nothing))
        );
        assert_eq!(
            mode("host=db sslmode=require"),
            Ok((CrateSslMode::Require, Check::Nothing))
        );
        // Over a Unix socket sslmode is ignored, as in libpq.
        assert_eq!(
            mode("host=/run/postgresql sslmode=require"),
            Ok((CrateSslMode::Disable, Check::Nothing))
        );
        let err = |url: &str| configure(url).err().unwrap_or_default();
        assert!(err("postgres://db/app?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("postgres://db/app?sslmode=verify-ca").contains("needs sslrootcert"));
        assert!(err("postgres://db/app?sslmode=allow").contains("not supported"));
        assert!(
            err("postgres://db/app?sslmode=require&sslrootcert=/nonexistent.pem")
                .contains("sslrootcert /nonexistent.pem")
        );
    }
}
