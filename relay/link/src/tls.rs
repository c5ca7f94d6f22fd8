//! QUIC endpoints with mutual TLS: the control plane trusts relay certificates signed by its
//! relay CA, and relays trust the control plane's certificate by their own CA file. TLS 1.3
//! only (QUIC has nothing else), ring as the provider like the rest of the workspace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::ALPN;

/// The connection closes after this long without a packet from the peer (RFC 9000 §10.1).
/// Both ends set it, so it is what they negotiate. A dead link (the peer killed, its host gone,
/// the path cut) is therefore noticed within this plus [`KEEP_ALIVE_INTERVAL`], 4 s: the timer
/// also restarts at the first packet an end sends after the last one it received, which comes
/// at most one keep-alive later. A relay reports `teletip_control_link_up 0` and redials then;
/// the control plane marks the relay disconnected at the same time.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Each end sends a PING this often when it has sent nothing else, and the peer acknowledges
/// it, so a live link carries a packet each way every second even when idle (about 50 bytes a
/// second). Three of them fit in the idle timeout, and a lost one is probed again after a probe
/// timeout (RFC 9002 §6.2), so a link is only declared dead after three seconds without a
/// single packet getting through, not after one lost packet; and quinn never lets the timeout
/// fall below three probe timeouts (`3 × PTO`, RFC 9000 §10.1), so a slow, loaded path with a
/// long round-trip time gets longer before it is dropped.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, rustls::pki_types::pem::Error),
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("{0}: {1}")]
    Rustls(PathBuf, rustls::Error),
    #[error("CA {0}: {1}")]
    Verifier(PathBuf, rustls::server::VerifierBuilderError),
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(String),
    #[error("{0}: not an X.509 certificate: {1}")]
    Parse(PathBuf, String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Read(path.to_owned(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(path.to_owned(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read(path.to_owned(), e))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| TlsError::Rustls(ca.to_owned(), e))?;
    }
    Ok(roots)
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("3 s is a valid idle timeout")));
    // One stream per connection is the whole protocol.
    t.max_concurrent_uni_streams(0u8.into());
    t.max_concurrent_bidi_streams(1u8.into());
    Arc::new(t)
}

/// The control plane's side: its certificate and key, and the CA relay certificates must chain
/// to (a client without one is refused in the handshake).
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider())
        .build()
        .map_err(|e| TlsError::Verifier(client_ca.to_owned(), e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(cert.to_owned(), e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| TlsError::Rustls(cert.to_owned(), e))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// A relay's side: its node certificate and key, and the CA the control plane's certificate
/// must chain to.
pub fn client_config(cert: &Path, key: &Path, server_ca: &Path) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(cert.to_owned(), e))?
        .with_root_certificates(roots(server_ca)?)
        .with_client_auth_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| TlsError::Rustls(cert.to_owned(), e))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// When the first certificate of a PEM file (the one a server or client presents) expires, in
/// Unix seconds: both daemons export it so that an expiring certificate alerts in time.
pub fn certificate_expiry(path: &Path) -> Result<i64, TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let certs = certificates(path)?;
    let (_, parsed) =
        X509Certificate::from_der(certs[0].as_ref()).map_err(|e| TlsError::Parse(path.to_owned(), e.to_string()))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// The node name in a verified client certificate: its first DNS subject alternative name,
/// else its subject common name. `None` if it has neither (such a node is refused).
pub fn node_identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let from_san = parsed.subject_alternative_name().ok().flatten().and_then(|san| {
        san.value.general_names.iter().find_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_string()),
            _ => None,
        })
    });
    let name = from_san.or_else(|| parsed.subject().iter_common_name().next()?.as_str().ok().map(str::to_owned))?;
    // It ends up in logs, metrics labels and URLs: keep it to what a host name may hold.
    let sane = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    sane.then_some(name)
}

/// The node name of an established connection's peer.
pub fn peer_node(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_identity(chain.first()?)
}
