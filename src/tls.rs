//! HTTPS from the binary (`--tls-cert`, `--tls-key`): the certificate and
//! key the server presents, re-read on SIGHUP.
//!
//! The connection layer (the vendored tiny_http, PATCHES.md section 9)
//! does the TLS; this module loads the operator's files, checks them, and
//! swaps a renewed pair in without a restart, so that renewing a
//! certificate (certbot, an internal CA) drops no connection: new
//! handshakes get the new pair, open connections keep theirs.

use std::path::PathBuf;
use std::sync::{Arc, Once};

use tiny_http::tls::{self, SwappableCert};

/// The certificate chain and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// Installs ring as the process's one crypto provider. Called at start
/// (by the command line, and by [`crate::server::start`] for embedders and
/// tests); later calls do nothing. Every rustls user in the build is
/// compiled without default features, so ring is the only provider there
/// is, and installing it means no library picks one of its own.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is installed already: then it is
        // ring too (no other one is compiled in).
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificate being served, and the files it came from, to re-read
/// them. Clones share the certificate: a reload through one is seen by
/// every handshake after it.
#[derive(Debug, Clone)]
pub struct Certificate {
    files: TlsFiles,
    resolver: Arc<SwappableCert>,
}

impl Certificate {
    /// Reads and checks the pair; the error is one line naming the file.
    pub fn load(files: &TlsFiles) -> Result<Certificate, String> {
        install_crypto_provider();
        let pair = tls::load_pem_files(&files.cert, &files.key).map_err(|e| e.to_string())?;
        Ok(Certificate {
            files: files.clone(),
            resolver: Arc::new(SwappableCert::new(pair)),
        })
    }

    /// The rustls configuration for the listener, serving whatever pair is
    /// current.
    pub fn server_config(&self) -> Result<Arc<tls::ServerConfig>, String> {
        tls::server_config(Arc::clone(&self.resolver) as _).map_err(|e| e.to_string())
    }

    /// Re-reads the files and serves the new pair from the next handshake
    /// on. On an error nothing changes: the pair being served stays, so a
    /// half-copied renewal cannot take HTTPS down.
    pub fn reload(&self) -> Result<(), String> {
        let pair =
            tls::load_pem_files(&self.files.cert, &self.files.key).map_err(|e| e.to_string())?;
        self.resolver.swap(pair);
        Ok(())
    }

    /// The files of the pair.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}
