//! The TLS side of TURN over TLS (`turns:`, RFC 8656 §3.1): the server configuration built at
//! start from the operator's PEM certificate chain and key, whose certificate can be replaced
//! while the relay runs (SIGHUP: a renewed certificate must not cost the calls in progress a
//! restart). rustls does the protocol; the worker drives it over its non-blocking sockets
//! (`stream.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {0}: {1}")]
    Certificates(PathBuf, rustls::pki_types::pem::Error),
    #[error("{0} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks, leaf first)")]
    NoCertificate(PathBuf),
    #[error("cannot read the private key {0}: {1} (expected a PEM PKCS#8, RSA or EC key)")]
    Key(PathBuf, rustls::pki_types::pem::Error),
    #[error("the key {key} does not fit the certificate {cert}: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The certificate and key served, read from their files at start and again on [`reload`].
/// Each handshake takes the current one (a read lock per handshake, none per packet);
/// connections already open keep the one they began with.
///
/// [`reload`]: ServedCertificate::reload
#[derive(Debug)]
pub struct ServedCertificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServedCertificate {
    fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Certificates(cert.to_owned(), e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert.to_owned()));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.to_owned(), e))?;
        CertifiedKey::from_der(chain, private, provider).map_err(|source| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })
    }

    /// Reads the files again and serves what they hold from the next handshake on. On an error
    /// the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Self::load(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    pub fn files(&self) -> (&Path, &Path) {
        (&self.cert, &self.key)
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

/// A rustls server configuration for `cert` (PEM chain, leaf first) and `key` (PEM), with the
/// handle that replaces its certificate. TLS 1.2 and 1.3 with rustls's safe defaults (no RC4,
/// CBC or renegotiation, forward secrecy only); no client certificates, since clients
/// authenticate with TURN credentials inside. No ALPN is required: browsers do not send RFC
/// 7443's "stun.turn", and a mismatch would fail the call.
pub fn server_config(cert: &Path, key: &Path) -> Result<(Arc<rustls::ServerConfig>, Arc<ServedCertificate>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let first = ServedCertificate::load(cert, key, &provider)?;
    let served = Arc::new(ServedCertificate {
        cert: cert.to_owned(),
        key: key.to_owned(),
        provider: provider.clone(),
        current: RwLock::new(Arc::new(first)),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(served.clone());
    // No TLS 1.3 session tickets: a TURN connection lives as long as its call, so resumption
    // would save one handshake per call at the cost of ticket records on every connection.
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), served))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A self-signed certificate and key made by the openssl command line, or `None` (with a
    /// message) where it is missing.
    pub(crate) fn self_signed(dir: &Path, name: &str, key_args: &[&str]) -> Option<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=relay.test"])
            .args(key_args)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output();
        match made {
            Ok(out) if out.status.success() => Some((cert, key)),
            _ => {
                eprintln!("SKIPPED: openssl is not installed (apt-get install openssl)");
                None
            }
        }
    }

    #[test]
    fn rsa_and_ec_certificates_load_and_mismatches_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let Some((rsa_cert, rsa_key)) = self_signed(dir.path(), "rsa", &["-newkey", "rsa:2048"]) else { return };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let (ec_cert, ec_key) = self_signed(dir.path(), "ec", &ec).expect("openssl made the RSA one");
        assert!(server_config(&rsa_cert, &rsa_key).is_ok());
        let (_, served) = server_config(&ec_cert, &ec_key).unwrap();
        let err = server_config(&rsa_cert, &ec_key).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        // A reload that fails keeps what was served; one that succeeds serves the new files.
        let before = served.current.read().unwrap().cert.clone();
        std::fs::write(&ec_key, std::fs::read(&rsa_key).unwrap()).unwrap();
        assert!(matches!(served.reload(), Err(TlsError::Mismatch { .. })));
        assert_eq!(served.current.read().unwrap().cert, before);
        std::fs::write(&ec_cert, std::fs::read(&rsa_cert).unwrap()).unwrap();
        served.reload().unwrap();
        assert_ne!(served.current.read().unwrap().cert, before);
    }

    #[test]
    fn missing_or_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(server_config(&missing, &empty), Err(TlsError::Certificates(..))));
        assert!(matches!(server_config(&empty, &empty), Err(TlsError::NoCertificate(_))));
        let err = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(err.contains("empty.pem"), "{err}");
    }
}
