//! VAPID (RFC 8292): the control plane's P-256 key pair, which identifies it to push services,
//! and the short-lived ES256 JWT every push request carries.
//!
//! The key is the operator's (`vapid-key-file`, PKCS#8 PEM) or generated on first start and
//! kept in the data directory (`vapid.key`, mode 0600) like the other generated keys
//! (keys.rs): browsers subscribe against its public half, so it must survive restarts, and a
//! new key orphans every subscription.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

/// How long a VAPID JWT is valid: RFC 8292 allows at most 24 hours; 12 leaves room for
/// clock skew between us and the push service.
pub const JWT_LIFETIME_SECONDS: i64 = 12 * 3600;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("vapid key {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "vapid key {path}: not a PKCS#8 P-256 private key in PEM ({reason}); \
         `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes one"
    )]
    Format { path: String, reason: &'static str },
    #[error("vapid: no randomness from the operating system")]
    Random,
}

/// The application server's key pair.
pub struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid").field("public_key", &self.public_key_b64()).finish_non_exhaustive()
    }
}

impl Vapid {
    /// Reads the key at `path`; with `generate`, writes a new one there first if the file is
    /// missing.
    pub fn load(path: &Path, generate: bool) -> Result<Vapid, VapidError> {
        let shown = path.display().to_string();
        let io = |source| VapidError::Io { path: shown.clone(), source };
        if generate && !path.exists() {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| VapidError::Random)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(path).map_err(io)?;
            f.write_all(pem(pkcs8.as_ref()).as_bytes()).map_err(io)?;
            tracing::info!("generated {}", path.display());
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Vapid::from_pem(&text).map_err(|reason| VapidError::Format { path: shown.clone(), reason })
    }

    pub fn from_pem(text: &str) -> Result<Vapid, &'static str> {
        let start = text.find(PEM_BEGIN).ok_or("no BEGIN PRIVATE KEY line")? + PEM_BEGIN.len();
        let end = text[start..].find(PEM_END).ok_or("no END PRIVATE KEY line")? + start;
        let b64: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = zeroize::Zeroizing::new(STANDARD.decode(b64).map_err(|_| "the PEM body is not base64")?);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|_| "not an EC P-256 key with its public key")?;
        Ok(Vapid { key, rng })
    }

    /// The uncompressed public key (65 bytes): a browser's `applicationServerKey`.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// The JWT for a push to a service at `audience` (its origin, `https://host[:port]`),
    /// naming the operator's `subject` (`mailto:` or `https:`), valid until `now` + 12 h.
    pub fn jwt(&self, audience: &str, subject: &str, now: i64) -> Result<String, VapidError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": now + JWT_LIFETIME_SECONDS, "sub": subject});
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        // FIXED_SIGNING: r ‖ s, 64 bytes, the form JWS ES256 wants (RFC 7518 section 3.4).
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).map_err(|_| VapidError::Random)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }

    /// The `Authorization` header of RFC 8292 section 3: the JWT and the public key.
    pub fn authorization(&self, audience: &str, subject: &str, now: i64) -> Result<String, VapidError> {
        Ok(format!("vapid t={}, k={}", self.jwt(audience, subject, now)?, self.public_key_b64()))
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("{PEM_BEGIN}\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn a_generated_key_is_kept_private_and_signs_verifiable_jwts() {
        let dir = std::env::temp_dir().join(format!("vapid-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("vapid.key");
        let first = Vapid::load(&path, true).unwrap();
        let again = Vapid::load(&path, true).unwrap();
        assert_eq!(first.public_key(), again.public_key(), "kept, not regenerated");
        assert_eq!(first.public_key().len(), 65);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let jwt = first.jwt("https://push.example.net", "mailto:ops@example.org", 1_800_000_000).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, first.public_key())
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .expect("the signature verifies with the public key");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["exp"], 1_800_000_000 + JWT_LIFETIME_SECONDS);
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        assert!(Vapid::load(&dir.join("missing.key"), false).is_err(), "given, not generated");
        std::fs::write(dir.join("bad.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(matches!(Vapid::load(&dir.join("bad.key"), false), Err(VapidError::Format { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
