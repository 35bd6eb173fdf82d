//! HTTPS on current rustls (fork addition, see PATCHES.md section 9).
//!
//! Upstream's `ssl-rustls` pinned rustls 0.20 and ring 0.16 (end of life,
//! with a published advisory) and panicked on a key it did not expect.
//! Here certificates and keys are parsed with `rustls-pki-types` (PKCS#8,
//! PKCS#1 and SEC1 keys), every problem is an error that names the file,
//! and the server's certificate comes from a resolver that can be swapped
//! while the server runs ([`SwappableCert`]): a new certificate serves the
//! next handshake, and connections already open keep the one they began
//! with. Only the ring provider is compiled in.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use rustls;
pub use rustls::ServerConfig;

/// Why a certificate and key cannot serve: one line, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The process's crypto provider when one is installed (an application
/// installs one at start), else ring's: the only one this crate compiles.
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Reads a PEM certificate chain (the server's certificate first) and its
/// PEM private key from files, and checks that they belong together.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            TlsError(format!(
                "cannot read the {what} file {}: {e}",
                path.display()
            ))
        })
    };
    let cert_pem = read(cert, "certificate")?;
    let key_pem = read(key, "private key")?;
    certified_key(
        &cert_pem,
        &cert.display().to_string(),
        &key_pem,
        &key.display().to_string(),
    )
}

/// [`load_pem_files`] on PEM text already in memory; `cert_name` and
/// `key_name` name the sources in errors.
pub fn certified_key(
    cert_pem: &[u8],
    cert_name: &str,
    key_pem: &[u8],
    key_name: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{cert_name} is not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{cert_name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError(format!(
            "{key_name} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
        ))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("{key_name}: unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // A key type whose public half the provider cannot show: nothing
        // to compare, and the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError(format!(
            "the private key in {key_name} does not match the certificate in {cert_name}"
        ))),
        Err(e) => Err(TlsError(format!("{cert_name}: unusable certificate: {e}"))),
    }
}

/// A certificate resolver whose certificate can be replaced while the
/// server runs (a renewed certificate, re-read on a signal): each
/// handshake takes the current one, so new connections get the new
/// certificate and open ones keep theirs.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    pub fn new(key: CertifiedKey) -> SwappableCert {
        SwappableCert {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: CertifiedKey) {
        // The lock guards one pointer store: a poisoned lock holds a whole
        // value all the same.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server configuration that takes its certificate from `resolver`:
/// TLS 1.2 and 1.3 with the provider's safe defaults, no client
/// certificates, HTTP/1.1 offered by ALPN (all this server speaks).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("cannot configure TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Upstream's [`crate::SslConfig`] (PEM bytes) as a configuration with a
/// fixed certificate.
pub(crate) fn from_ssl_config(ssl: &crate::SslConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let key = certified_key(
        &ssl.certificate,
        "the certificate",
        &ssl.private_key,
        "the private key",
    )?;
    server_config(Arc::new(SwappableCert::new(key)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A certificate authority, for certificates the tests trust.
    pub(crate) struct Ca {
        pub(crate) cert: rcgen::Certificate,
        pub(crate) issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Ca {
        pub(crate) fn new() -> Ca {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            Ca {
                cert,
                issuer: rcgen::Issuer::new(params, key),
            }
        }

        /// A certificate for localhost signed with `key`: (cert PEM, DER).
        pub(crate) fn leaf(&self, key: &rcgen::KeyPair) -> (String, Vec<u8>) {
            let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            let cert = params.signed_by(key, &self.issuer).unwrap();
            (cert.pem(), cert.der().to_vec())
        }
    }

    /// The private key inside a PKCS#8 DER (RSA: PKCS#1; EC: SEC1).
    fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
        // Tag, length (short or long form), and where the contents start.
        fn tlv(der: &[u8], at: usize) -> (u8, usize, usize) {
            let tag = der[at];
            let first = der[at + 1] as usize;
            if first < 0x80 {
                (tag, first, at + 2)
            } else {
                let n = first & 0x7f;
                let len = der[at + 2..at + 2 + n]
                    .iter()
                    .fold(0, |acc, b| (acc << 8) | *b as usize);
                (tag, len, at + 2 + n)
            }
        }
        let (_, _, mut at) = tlv(pkcs8, 0); // SEQUENCE
        for _ in 0..2 {
            // version INTEGER, AlgorithmIdentifier SEQUENCE
            let (_, len, start) = tlv(pkcs8, at);
            at = start + len;
        }
        let (tag, len, start) = tlv(pkcs8, at);
        assert_eq!(tag, 0x04, "privateKey OCTET STRING");
        pkcs8[start..start + len].to_vec()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = pem_base64(der);
        format!("-----BEGIN {label}-----\n{body}-----END {label}-----\n")
    }

    /// rcgen has no SEC1 or PKCS#1 writer; a tiny base64 for PEM.
    fn pem_base64(der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in der.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        let mut lines = String::new();
        for line in out.as_bytes().chunks(64) {
            lines.push_str(std::str::from_utf8(line).unwrap());
            lines.push('\n');
        }
        lines
    }

    #[test]
    fn pkcs8_pkcs1_and_sec1_keys_load() {
        let ca = Ca::new();
        // PKCS#8 and SEC1: an ECDSA P-256 key.
        let ec = rcgen::KeyPair::generate().unwrap();
        let (cert, _) = ca.leaf(&ec);
        let pkcs8 = ec.serialize_pem();
        assert!(pkcs8.contains("BEGIN PRIVATE KEY"));
        certified_key(cert.as_bytes(), "c", pkcs8.as_bytes(), "k").unwrap();
        let sec1 = pem("EC PRIVATE KEY", &inner_key(&ec.serialize_der()));
        certified_key(cert.as_bytes(), "c", sec1.as_bytes(), "k").unwrap();
        // PKCS#1: an RSA key (ring cannot make one; the fixture is PKCS#8).
        let rsa =
            rcgen::KeyPair::from_pem(include_str!("../tests/fixtures/rsa-2048.pkcs8.pem")).unwrap();
        let (cert, _) = ca.leaf(&rsa);
        let pkcs1 = pem("RSA PRIVATE KEY", &inner_key(&rsa.serialize_der()));
        certified_key(cert.as_bytes(), "c", pkcs1.as_bytes(), "k").unwrap();
    }

    #[test]
    fn bad_and_mismatched_pairs_are_one_line_errors() {
        let ca = Ca::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let (cert, _) = ca.leaf(&key);
        let error = |c: &str, k: &str| {
            let e = certified_key(c.as_bytes(), "cert.pem", k.as_bytes(), "key.pem")
                .unwrap_err()
                .to_string();
            assert!(!e.contains('\n'), "{e}");
            e
        };
        let mismatch = error(&cert, &other.serialize_pem());
        assert_eq!(
            mismatch,
            "the private key in key.pem does not match the certificate in cert.pem"
        );
        assert!(error(&cert, "not a key").contains("key.pem holds no PEM private key"));
        assert!(error("", &key.serialize_pem()).contains("cert.pem holds no PEM certificate"));
        // A key block whose contents are no key.
        let junk = pem("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(error(&cert, &junk).starts_with("key.pem: unusable private key"));
        // A certificate block whose contents are no certificate.
        let junk = pem("CERTIFICATE", b"\x30\x03\x02\x01\x00");
        assert!(error(&junk, &key.serialize_pem()).starts_with("cert.pem"));
        // Files: a missing one is named.
        let e = load_pem_files(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("cannot read the certificate file /nonexistent/c.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_swap_serves_the_next_handshake() {
        let ca = Ca::new();
        let (k1, k2) = (
            rcgen::KeyPair::generate().unwrap(),
            rcgen::KeyPair::generate().unwrap(),
        );
        let ((c1, d1), (c2, d2)) = (ca.leaf(&k1), ca.leaf(&k2));
        let load = |c: &str, k: &rcgen::KeyPair| {
            certified_key(c.as_bytes(), "c", k.serialize_pem().as_bytes(), "k").unwrap()
        };
        let resolver = SwappableCert::new(load(&c1, &k1));
        assert_eq!(resolver.current().cert[0].as_ref(), d1.as_slice());
        resolver.swap(load(&c2, &k2));
        assert_eq!(resolver.current().cert[0].as_ref(), d2.as_slice());
    }

    /// A real server over TLS on loopback, and rustls clients that trust
    /// the tests' authority.
    mod served {
        use super::*;
        use crate::{Hooks, Limits, Request, Response, Server};
        use rustls::pki_types::ServerName;
        use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
        use std::io::{Read, Write};
        use std::net::{SocketAddr, TcpListener, TcpStream};
        use std::time::{Duration, Instant};

        type Tls = StreamOwned<ClientConnection, TcpStream>;

        fn pair(ca: &Ca) -> (CertifiedKey, Vec<u8>) {
            let key = rcgen::KeyPair::generate().unwrap();
            let (cert, der) = ca.leaf(&key);
            let pair =
                certified_key(cert.as_bytes(), "c", key.serialize_pem().as_bytes(), "k").unwrap();
            (pair, der)
        }

        /// Answers "secure" or "plain", as the request says it came.
        fn start(resolver: Arc<SwappableCert>, limits: Limits) -> (Server, SocketAddr) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let hooks = Hooks {
                handler: Some(Arc::new(|request: Request| {
                    let body = if request.secure() { "secure" } else { "plain" };
                    let _ = request.respond(Response::from_string(body));
                })),
                ..Hooks::default()
            };
            let config = server_config(resolver).unwrap();
            let server = Server::from_listener_tls(listener, config, limits, hooks).unwrap();
            (server, addr)
        }

        fn connect(ca: &Ca, addr: SocketAddr) -> Tls {
            let mut roots = RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(Arc::new(config), name).unwrap();
            let sock = TcpStream::connect(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            StreamOwned::new(conn, sock)
        }

        /// GET / on a kept-alive connection; the answer's body.
        fn get(tls: &mut Tls) -> std::io::Result<String> {
            tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
            tls.flush()?;
            let mut bytes = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = tls.read(&mut buf)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                bytes.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                        return Ok(body.to_owned());
                    }
                }
            }
        }

        fn served_cert(tls: &Tls) -> Vec<u8> {
            tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
        }

        #[test]
        fn https_is_served_and_a_swap_reaches_new_connections_only() {
            let ca = Ca::new();
            let ((first, first_der), (second, second_der)) = (pair(&ca), pair(&ca));
            let resolver = Arc::new(SwappableCert::new(first));
            let (_server, addr) = start(Arc::clone(&resolver), Limits::default());
            let mut before = connect(&ca, addr);
            assert_eq!(get(&mut before).unwrap(), "secure");
            assert_eq!(served_cert(&before), first_der);
            resolver.swap(second);
            let mut after = connect(&ca, addr);
            assert_eq!(get(&mut after).unwrap(), "secure");
            assert_eq!(served_cert(&after), second_der);
            // The connection made before the swap goes on, on its own.
            assert_eq!(get(&mut before).unwrap(), "secure");
            assert_eq!(served_cert(&before), first_der);
        }

        #[test]
        fn a_silent_client_is_dropped_after_the_head_timeout() {
            let ca = Ca::new();
            let limits = Limits {
                header_timeout: Duration::from_millis(300),
                ..Limits::default()
            };
            let (_server, addr) = start(Arc::new(SwappableCert::new(pair(&ca).0)), limits);
            let mut silent = TcpStream::connect(addr).unwrap();
            silent
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let started = Instant::now();
            // Meanwhile others are served.
            assert_eq!(get(&mut connect(&ca, addr)).unwrap(), "secure");
            // No ClientHello: closed after the head timeout, without a byte.
            let n = silent.read(&mut [0u8; 64]).unwrap_or(0);
            let took = started.elapsed();
            assert_eq!(n, 0);
            assert!(
                took >= Duration::from_millis(250) && took < Duration::from_secs(3),
                "{took:?}"
            );
            // A handshake begun and left unfinished is cut off the same way.
            let mut half = TcpStream::connect(addr).unwrap();
            half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            half.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).unwrap();
            let started = Instant::now();
            let mut rest = Vec::new();
            let _ = half.read_to_end(&mut rest);
            assert!(started.elapsed() < Duration::from_secs(3));
        }

        #[test]
        fn plain_http_on_the_tls_port_is_closed_and_harms_nothing() {
            let ca = Ca::new();
            let (_server, addr) =
                start(Arc::new(SwappableCert::new(pair(&ca).0)), Limits::default());
            for _ in 0..3 {
                let mut plain = TcpStream::connect(addr).unwrap();
                plain
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                plain
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut answer = Vec::new();
                let _ = plain.read_to_end(&mut answer);
                // At most a TLS alert; never an HTTP answer.
                assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
            }
            assert_eq!(get(&mut connect(&ca, addr)).unwrap(), "secure");
        }

        #[test]
        fn over_the_cap_a_tls_connection_is_closed_unanswered() {
            let ca = Ca::new();
            let limits = Limits {
                max_connections: 1,
                ..Limits::default()
            };
            let (_server, addr) = start(Arc::new(SwappableCert::new(pair(&ca).0)), limits);
            let mut held = connect(&ca, addr);
            assert_eq!(get(&mut held).unwrap(), "secure");
            let mut over = connect(&ca, addr);
            assert!(get(&mut over).is_err());
            // The one held is still served.
            assert_eq!(get(&mut held).unwrap(), "secure");
        }

        #[test]
        fn upstreams_pem_config_serves_https() {
            let ca = Ca::new();
            let key = rcgen::KeyPair::generate().unwrap();
            let (cert, _) = ca.leaf(&key);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let ssl = crate::SslConfig {
                certificate: cert.into_bytes(),
                private_key: key.serialize_pem().into_bytes(),
            };
            let server = Server::from_listener(listener, Some(ssl)).unwrap();
            let client = std::thread::spawn(move || get(&mut connect(&ca, addr)).unwrap());
            let request = server.recv().unwrap();
            assert!(request.secure());
            request.respond(Response::from_string("queued")).unwrap();
            assert_eq!(client.join().unwrap(), "queued");
            // A bad pair is an error, not a panic.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let bad = crate::SslConfig {
                certificate: b"junk".to_vec(),
                private_key: b"junk".to_vec(),
            };
            assert!(Server::from_listener(listener, Some(bad)).is_err());
        }
    }
}
