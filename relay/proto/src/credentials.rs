//! Long-term credentials in the TURN REST API form (draft-uberti-behave-turn-rest-00):
//! `username = "<expiry unix seconds>:<opaque id>"`, `password = base64(HMAC-SHA1(secret,
//! username))`. The relay needs no user database: it recomputes the password from a shared
//! secret. Several secrets are accepted at once so that they rotate without dropping calls.

use crate::codec::{IntegrityKey, PASSWORD_ALGORITHM_MD5, PASSWORD_ALGORITHM_SHA256};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Digest;
use thiserror::Error;

/// One shared secret with the key id operators and the control plane know it by. The value
/// never appears in Debug output, logs or metrics.
#[derive(Clone)]
pub struct Secret {
    pub key_id: String,
    value: Vec<u8>,
}

impl Secret {
    pub fn new(key_id: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Secret { key_id: key_id.into(), value: value.into() }
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret {{ key_id: {:?}, value: <redacted> }}", self.key_id)
    }
}

/// The parts of a REST API username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestUsername<'a> {
    /// Unix seconds after which the credential is refused.
    pub expiry: u64,
    /// The opaque, pseudonymous session id (may be empty for `"<expiry>"` usernames, which
    /// coturn also accepts).
    pub id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UsernameError {
    #[error("username does not start with a Unix expiry timestamp")]
    NoExpiry,
    #[error("username is longer than 509 bytes (RFC 8489 §14.3)")]
    TooLong,
}

/// Splits `"<expiry>:<id>"` (or `"<expiry>"`).
pub fn parse_rest_username(username: &str) -> Result<RestUsername<'_>, UsernameError> {
    if username.len() > 509 {
        return Err(UsernameError::TooLong);
    }
    let (expiry, id) = match username.split_once(':') {
        Some((e, id)) => (e, id),
        None => (username, ""),
    };
    if expiry.is_empty() || expiry.len() > 12 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsernameError::NoExpiry);
    }
    let expiry = expiry.parse().map_err(|_| UsernameError::NoExpiry)?;
    Ok(RestUsername { expiry, id })
}

/// The REST API password for `username` under `secret`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A username/password pair valid until `expiry` (Unix seconds) for session `id`.
pub fn issue(secret: &[u8], id: &str, expiry: u64) -> (String, String) {
    let username = format!("{expiry}:{id}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// The password algorithms of RFC 8489 §18.5 that this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAlgorithm {
    Md5,
    Sha256,
}

impl PasswordAlgorithm {
    pub fn from_wire(value: u16) -> Option<Self> {
        match value {
            PASSWORD_ALGORITHM_MD5 => Some(PasswordAlgorithm::Md5),
            PASSWORD_ALGORITHM_SHA256 => Some(PasswordAlgorithm::Sha256),
            _ => None,
        }
    }
}

/// The long-term key (RFC 8489 §9.2.2): the hash of `username ":" realm ":" password`. The
/// REST passwords are ASCII, so OpaqueString processing leaves them unchanged.
pub fn long_term_key(algorithm: PasswordAlgorithm, username: &str, realm: &str, password: &str) -> IntegrityKey {
    match algorithm {
        PasswordAlgorithm::Md5 => {
            let mut h = md5::Md5::new();
            feed_key_material(&mut h, username, realm, password);
            IntegrityKey::Md5(h.finalize().into())
        }
        PasswordAlgorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            feed_key_material(&mut h, username, realm, password);
            IntegrityKey::Sha256(h.finalize().into())
        }
    }
}

fn feed_key_material<D: Digest>(h: &mut D, username: &str, realm: &str, password: &str) {
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest_usernames() {
        assert_eq!(parse_rest_username("1700000000:abc").unwrap(), RestUsername { expiry: 1_700_000_000, id: "abc" });
        assert_eq!(parse_rest_username("1700000000:a:b").unwrap().id, "a:b");
        assert_eq!(parse_rest_username("1700000000").unwrap().id, "");
        assert_eq!(parse_rest_username("alice:1700000000"), Err(UsernameError::NoExpiry));
        assert_eq!(parse_rest_username(":x"), Err(UsernameError::NoExpiry));
        assert_eq!(parse_rest_username("99999999999999999999:x"), Err(UsernameError::NoExpiry));
        assert_eq!(parse_rest_username(&"1:".repeat(300)), Err(UsernameError::TooLong));
    }

    /// The example of draft-uberti-behave-turn-rest-00 §2.2 shape, cross-checked against
    /// coturn's own computation (`turnutils_uclient -W` builds the same string).
    #[test]
    fn rest_password_is_base64_hmac_sha1() {
        let p = rest_password(b"secret", "1700000000:abc");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&p).unwrap().len(), 20);
        assert_ne!(p, rest_password(b"secret2", "1700000000:abc"));
        assert_eq!(issue(b"secret", "abc", 1_700_000_000), ("1700000000:abc".into(), p));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("k1", b"hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
