//! Web Push message encryption (RFC 8291) in the `aes128gcm` content coding (RFC 8188): what
//! only the subscribed browser can read, whatever push service carries it.
//!
//! Why written here rather than taken from the `web-push` or `ece` crates: both reach the
//! primitives through OpenSSL (`ece`'s default and only complete backend), which this
//! workspace does not link (it builds with a C compiler alone), and `web-push` brings its own
//! HTTP client beside our reqwest. The scheme is short: one P-256 ECDH with a fresh key per
//! message (ring), two HKDF-SHA256 steps (hkdf), one AES-128-GCM record (aes-gcm). The RFC's
//! own test vector (Appendix A) pins the derivation below, and tests/signaling/push.test.js
//! decrypts real deliveries with an independent implementation (the `http_ece` npm package).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use ring::agreement;
use sha2::Sha256;

/// An uncompressed P-256 point: 0x04 ‖ x ‖ y.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The subscription's authentication secret (RFC 8291 section 3.2).
pub const AUTH_SECRET_LEN: usize = 16;
/// The record size announced in the header: one record holds the whole message.
const RECORD_SIZE: u32 = 4096;
const TAG_LEN: usize = 16;
/// The largest plaintext one record carries: the record size less the tag and the delimiter.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - TAG_LEN - 1 - 86;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("the subscription's p256dh is not a P-256 public key")]
    BadPublicKey,
    #[error("the subscription's auth secret is not {AUTH_SECRET_LEN} bytes")]
    BadAuthSecret,
    #[error("the message is longer than {MAX_PLAINTEXT} bytes")]
    TooLong,
    #[error("no randomness from the operating system")]
    Random,
}

/// Checks that `ua_public` is a point on P-256 a key agreement accepts (an ECDH with a
/// throwaway key: ring validates the point there and only there).
pub fn check_public_key(ua_public: &[u8]) -> Result<(), EceError> {
    if ua_public.len() != PUBLIC_KEY_LEN || ua_public[0] != 0x04 {
        return Err(EceError::BadPublicKey);
    }
    let rng = ring::rand::SystemRandom::new();
    let private =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).map_err(|_| EceError::Random)?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    agreement::agree_ephemeral(private, &peer, |_| ()).map_err(|_| EceError::BadPublicKey)
}

/// Encrypts `plaintext` for the browser holding the private half of `ua_public` and `auth`:
/// a fresh key pair and salt for every message, as the RFC requires.
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, EceError> {
    if auth.len() != AUTH_SECRET_LEN {
        return Err(EceError::BadAuthSecret);
    }
    if ua_public.len() != PUBLIC_KEY_LEN {
        return Err(EceError::BadPublicKey);
    }
    let rng = ring::rand::SystemRandom::new();
    let private =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).map_err(|_| EceError::Random)?;
    let as_public = private.compute_public_key().map_err(|_| EceError::Random)?;
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| EceError::Random)?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let ecdh = agreement::agree_ephemeral(private, &peer, |secret| zeroize::Zeroizing::new(secret.to_vec()))
        .map_err(|_| EceError::BadPublicKey)?;
    encrypt_with(plaintext, ua_public, auth, as_public.as_ref(), &ecdh, &salt)
}

/// The deterministic rest of [`encrypt`], given the application server's public key, the
/// ECDH secret and the salt (RFC 8291 section 3.4, RFC 8188 section 2).
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    as_public: &[u8],
    ecdh_secret: &[u8],
    salt: &[u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLong);
    }
    // IKM = HKDF(salt = auth_secret, ikm = ecdh_secret, info = "WebPush: info" ‖ 0 ‖ ua ‖ as, 32)
    let mut key_info = Vec::with_capacity(14 + 2 * PUBLIC_KEY_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = zeroize::Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(auth), ecdh_secret).expand(&key_info, &mut ikm[..]).expect("32 bytes is a valid length");
    // The content-encryption key and nonce of RFC 8188, salted with the message's salt.
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm[..]);
    let mut cek = zeroize::Zeroizing::new([0u8; 16]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek[..]).expect("16 bytes is a valid length");
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).expect("12 bytes is a valid length");
    // One record, the last: the plaintext, then the delimiter 0x02, no padding.
    let mut record = zeroize::Zeroizing::new(Vec::with_capacity(plaintext.len() + 1));
    record.extend_from_slice(plaintext);
    record.push(0x02);
    let cipher = Aes128Gcm::new_from_slice(&cek[..]).expect("16-byte key");
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), record.as_slice()).map_err(|_| EceError::TooLong)?;
    // Header: salt ‖ record size ‖ key id length ‖ key id (the server's public key).
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn b(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// RFC 8291 Appendix A, byte for byte.
    #[test]
    fn the_rfc_8291_example_encrypts_to_the_rfc_s_bytes() {
        let ua_public = b("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let as_public = b("BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");
        let auth = b("BTBZMqHH6r4Tts7J_aSIgg");
        let ecdh = b("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
        let salt: [u8; 16] = b("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body =
            encrypt_with(b"When I grow up, I want to be a watermelon", &ua_public, &auth, &as_public, &ecdh, &salt)
                .unwrap();
        assert_eq!(
            B64.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn keys_that_are_not_p256_points_are_refused() {
        let ua_public = b("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        assert_eq!(check_public_key(&ua_public), Ok(()));
        let mut off_curve = ua_public.clone();
        off_curve[64] ^= 1;
        assert_eq!(check_public_key(&off_curve), Err(EceError::BadPublicKey));
        assert_eq!(check_public_key(&ua_public[..33]), Err(EceError::BadPublicKey));
        assert_eq!(encrypt(b"x", &ua_public, &[0; 15]), Err(EceError::BadAuthSecret));
        let fresh = encrypt(b"x", &ua_public, &[0; 16]).unwrap();
        assert_eq!(fresh.len(), 16 + 4 + 1 + 65 + 1 + 1 + 16);
        assert_ne!(fresh, encrypt(b"x", &ua_public, &[0; 16]).unwrap(), "a fresh key and salt per message");
    }
}
