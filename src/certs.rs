//! The gateway's own TLS certificate (`server.tls`): read and checked here, and served
//! through a certificate resolver that a reload swaps. A new handshake gets the certificate
//! in force when it starts; an open connection keeps the one it was made with.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// Why a certificate and key pair cannot be served. Never carries the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "{cert} / {key}: no certificate and private key could be read (PEM, PKCS#1, PKCS#8 or SEC1)"
    )]
    Unreadable { cert: String, key: String },
    #[error("{key}: the private key is not usable, or does not match the certificate in {cert}")]
    Mismatch { cert: String, key: String },
}

/// Reads a certificate chain and its private key and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let unreadable = || CertError::Unreadable {
        cert: c.clone(),
        key: k.clone(),
    };
    let (chain, private) = pingora::tls::load_certs_and_key_files(&c, &k)
        .ok()
        .flatten()
        .ok_or_else(unreadable)?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or_else(unreadable)?;
    CertifiedKey::from_der(chain, private, provider)
        .map(Arc::new)
        .map_err(|_| CertError::Mismatch { cert: c, key: k })
}

/// The certificate new handshakes get; swapped whole by a reload.
#[derive(Debug)]
pub struct Certificates {
    current: ArcSwap<CertifiedKey>,
}

impl Certificates {
    pub fn new(first: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(first),
        }
    }

    /// From the next handshake on, `next` is served.
    pub fn replace(&self, next: Arc<CertifiedKey>) {
        self.current.store(next);
    }

    /// Whether `other` is the certificate chain served now (a reload without a change
    /// swaps nothing and says nothing).
    pub fn serves(&self, other: &CertifiedKey) -> bool {
        self.current.load().cert == other.cert
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
