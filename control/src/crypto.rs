//! Field-level encryption of patient identifying data (national id, phone, email, free-text
//! notes) and keyed blind indexes for the lookups that need equality.
//!
//! # Stored form
//!
//! [`FieldKeys::encrypt`] produces self-describing text:
//!
//! ```text
//! v1:<key id>:<base64url, no padding, of nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)>
//! ```
//!
//! The cipher is AES-256-GCM with a fresh random nonce from the operating system for every
//! encryption. The associated data binds the format version, the key id and the field name, so
//! a value copied into another column, or relabelled with another key id, fails to decrypt
//! instead of yielding a plausible plaintext.
//!
//! # Rotation
//!
//! A [`FieldKeys`] holds one or more data-encryption keys, each with an id. The first one
//! encrypts; all of them decrypt. To rotate, put the new key first and keep the old ones after
//! it; rows for which [`FieldKeys::needs_reencryption`] is true can be rewritten with
//! [`FieldKeys::reencrypt`], after which the old key can be dropped from the configuration.
//!
//! # Blind indexes
//!
//! [`FieldKeys::blind_index`] is `HMAC-SHA256(index key, field ‖ 0x00 ‖ normalized value)` in
//! lowercase hex. The index key is separate from the data keys and **must stay the same across
//! data-key rotations**: every stored index depends on it, so changing it means recomputing
//! every blind index (a reindex, which needs the data keys to recover the plaintexts).
//! [`FieldKeys::index_key_check`] gives a non-secret value that can be stored to notice an
//! index key changed by mistake.

use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Length of every key, data or index: 256 bits.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const VERSION: &str = "v1";
const AAD_CONTEXT: &[u8] = b"teletip/field/v1\0";
const MAX_KEY_ID_LEN: usize = 64;

/// Field names for the patient identifying fields. The field name is bound into every
/// ciphertext and blind index, so it must never change for existing data. [`FieldKeys::blind_index`]
/// picks its normalization from the name's last `.`-separated segment (`email`, `phone`,
/// `national_id`); these constants follow that convention.
pub mod field {
    pub const NATIONAL_ID: &str = "patient.national_id";
    pub const PHONE: &str = "patient.phone";
    pub const EMAIL: &str = "patient.email";
    pub const NOTES: &str = "patient.notes";
}

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("no data-encryption key configured")]
    NoDataKey,
    #[error("invalid key id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 - _ .")]
    InvalidKeyId(String),
    #[error("duplicate data-encryption key id {0:?}")]
    DuplicateKeyId(String),
    /// `key` is the key id, or `blind-index` for the index key. Never carries key material.
    #[error("key {key}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("the blind-index key must differ from every data-encryption key")]
    IndexKeyReused,
    #[error("unsupported encrypted-field version (expected {VERSION})")]
    UnsupportedVersion,
    #[error("malformed encrypted field")]
    Malformed,
    #[error("encrypted field uses unknown key id {0:?}")]
    UnknownKeyId(String),
    #[error("encrypted field failed authentication: tampered with, or stored for another field")]
    Decryption,
}

#[derive(Clone)]
struct DataKey {
    id: String,
    cipher: Aes256Gcm,
}

/// Data-encryption keys (the first encrypts, all decrypt) and the blind-index key. Neither
/// `Debug` nor any error ever shows key material.
#[derive(Clone)]
pub struct FieldKeys {
    data: Vec<DataKey>,
    index: HmacSha256,
}

impl fmt::Debug for FieldKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldKeys")
            .field("data_key_ids", &self.key_ids().collect::<Vec<_>>())
            .field("index_key", &"<redacted>")
            .finish()
    }
}

impl FieldKeys {
    /// Builds the key set from configuration entries: `(key id, key)` with the current
    /// (encrypting) key first, and the blind-index key. Each key is the text of 32 bytes in
    /// hex (64 digits) or base64 (standard or URL-safe alphabet, padding optional); surrounding
    /// whitespace, such as a file's trailing newline, is ignored. Raw bytes are deliberately not
    /// accepted here, so a short passphrase cannot pass for a key; use [`FieldKeys::from_bytes`].
    pub fn from_config(data_keys: &[(String, Vec<u8>)], mut index_key: Vec<u8>) -> Result<Self, CryptoError> {
        let index = decode_key("blind-index", &index_key);
        index_key.zeroize();
        let index = index?;
        let data = data_keys
            .iter()
            .map(|(id, text)| {
                validate_key_id(id)?;
                Ok((id.clone(), decode_key(id, text)?))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Self::build(data, index)
    }

    /// Builds the key set from raw 32-byte keys, current (encrypting) key first.
    pub fn from_bytes(data_keys: Vec<(String, [u8; KEY_LEN])>, index_key: [u8; KEY_LEN]) -> Result<Self, CryptoError> {
        let index = Zeroizing::new(index_key);
        let data = data_keys
            .into_iter()
            .map(|(id, key)| {
                let key = Zeroizing::new(key);
                validate_key_id(&id)?;
                Ok((id, key))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        Self::build(data, index)
    }

    /// Fresh random keys (one data key with id `local`, and an index key), for tests and local
    /// defaults. Data encrypted under them is lost with them: production needs configured keys.
    pub fn generate() -> Self {
        let mut data = Zeroizing::new([0u8; KEY_LEN]);
        let mut index = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(data.as_mut());
        OsRng.fill_bytes(index.as_mut());
        Self::build(vec![("local".to_string(), data)], index).expect("freshly generated keys are valid")
    }

    fn build(
        data: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>,
        index: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<Self, CryptoError> {
        if data.is_empty() {
            return Err(CryptoError::NoDataKey);
        }
        for (i, (id, key)) in data.iter().enumerate() {
            if data[..i].iter().any(|(other, _)| other == id) {
                return Err(CryptoError::DuplicateKeyId(id.clone()));
            }
            if key.as_slice() == index.as_slice() {
                return Err(CryptoError::IndexKeyReused);
            }
        }
        let index = <HmacSha256 as Mac>::new_from_slice(index.as_slice()).expect("HMAC accepts keys of any length");
        let data = data
            .into_iter()
            .map(|(id, key)| DataKey { id, cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_slice())) })
            .collect();
        Ok(Self { data, index })
    }

    /// Id of the key new encryptions use.
    pub fn current_key_id(&self) -> &str {
        &self.data[0].id
    }

    /// Ids of all data keys, current first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.data.iter().map(|k| k.id.as_str())
    }

    /// Encrypts `plaintext` for column `field` under the current key, as
    /// `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`.
    pub fn encrypt(&self, field: &str, plaintext: &str) -> String {
        let key = &self.data[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(&key.id, field);
        let sealed = key
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: &aad })
            .expect("AES-GCM encrypts any field-sized plaintext");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        format!("{VERSION}:{}:{}", key.id, URL_SAFE_NO_PAD.encode(raw))
    }

    /// Decrypts a value [`FieldKeys::encrypt`] produced for the same `field`, under any of the
    /// configured data keys.
    pub fn decrypt(&self, field: &str, stored: &str) -> Result<String, CryptoError> {
        let (key_id, payload) = parse(stored)?;
        let key =
            self.data.iter().find(|k| k.id == key_id).ok_or_else(|| CryptoError::UnknownKeyId(key_id.to_string()))?;
        let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let aad = associated_data(key_id, field);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| CryptoError::Decryption)?;
        // Authentic data came from `encrypt`, which only takes UTF-8.
        String::from_utf8(plain).map_err(|e| {
            let mut bytes = e.into_bytes();
            bytes.zeroize();
            CryptoError::Malformed
        })
    }

    /// True when `stored` is not a `v1` value under the current key: it should be rewritten
    /// with [`FieldKeys::reencrypt`] before the key it uses is retired. Only looks at the
    /// label; it does not authenticate the value.
    pub fn needs_reencryption(&self, stored: &str) -> bool {
        !matches!(parse(stored), Ok((key_id, _)) if key_id == self.current_key_id())
    }

    /// Decrypts `stored` and encrypts it again under the current key (with a new nonce).
    pub fn reencrypt(&self, field: &str, stored: &str) -> Result<String, CryptoError> {
        let plain = Zeroizing::new(self.decrypt(field, stored)?);
        Ok(self.encrypt(field, &plain))
    }

    /// Keyed blind index for equality lookups: lowercase hex of
    /// `HMAC-SHA256(index key, field ‖ 0x00 ‖ normalized value)`.
    ///
    /// The normalization follows the last `.`-separated segment of `field`: `email` →
    /// [`normalize_email`], `phone` → [`normalize_phone`], `national_id` →
    /// [`normalize_national_id`], anything else → surrounding whitespace trimmed. The
    /// normalizations are idempotent, so normalizing before calling this is harmless.
    ///
    /// The index key must stay the same across data-key rotations; changing it invalidates
    /// every stored index (reindex needed). `field` is a code constant and must not contain NUL.
    pub fn blind_index(&self, field: &str, value: &str) -> String {
        debug_assert!(!field.contains('\0'), "field names must not contain NUL");
        let normalized = Zeroizing::new(normalize_for_field(field, value));
        let mut mac = self.index.clone();
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A non-secret check value of the index key (hex HMAC of a fixed label), to store once and
    /// compare at start-up: a mismatch means the index key changed and every blind index is
    /// stale.
    pub fn index_key_check(&self) -> String {
        let mut mac = self.index.clone();
        mac.update(b"teletip/blind-index/key-check/v1");
        hex(&mac.finalize().into_bytes()[..16])
    }
}

/// Email normalization for blind indexes: surrounding whitespace trimmed, lowercased.
pub fn normalize_email(value: &str) -> String {
    value.trim().to_lowercase()
}

/// Phone normalization for blind indexes: ASCII digits only, plus a `+` kept when it is the
/// first non-whitespace character. No country-code rewriting: `+90 532…` and `0532…` differ.
pub fn normalize_phone(value: &str) -> String {
    let trimmed = value.trim_start();
    let mut out = String::with_capacity(trimmed.len());
    if trimmed.starts_with('+') {
        out.push('+');
    }
    out.extend(trimmed.chars().filter(char::is_ascii_digit));
    out
}

/// National id normalization for blind indexes: whitespace and dashes removed, uppercased.
pub fn normalize_national_id(value: &str) -> String {
    value.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

fn normalize_for_field(field: &str, value: &str) -> String {
    match field.rsplit('.').next().unwrap_or(field) {
        "email" => normalize_email(value),
        "phone" => normalize_phone(value),
        "national_id" => normalize_national_id(value),
        _ => value.trim().to_string(),
    }
}

fn associated_data(key_id: &str, field: &str) -> Vec<u8> {
    // Key ids never contain NUL, so the boundary between key id and field is unambiguous.
    let mut aad = Vec::with_capacity(AAD_CONTEXT.len() + key_id.len() + 1 + field.len());
    aad.extend_from_slice(AAD_CONTEXT);
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// Splits `v1:<key id>:<payload>`. Errors never echo the input, which may be a plaintext
/// stored by mistake.
fn parse(stored: &str) -> Result<(&str, &str), CryptoError> {
    let (version, rest) = stored.split_once(':').ok_or(CryptoError::Malformed)?;
    if version != VERSION {
        return Err(CryptoError::UnsupportedVersion);
    }
    let (key_id, payload) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
    if validate_key_id(key_id).is_err() {
        return Err(CryptoError::Malformed);
    }
    Ok((key_id, payload))
}

fn validate_key_id(id: &str) -> Result<(), CryptoError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(CryptoError::InvalidKeyId(id.to_string())) }
}

/// Decodes the text of a 32-byte key: 64 hex digits, or base64 (either alphabet, padding
/// optional).
fn decode_key(name: &str, text: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let invalid = |reason| CryptoError::InvalidKey { key: name.to_string(), reason };
    let text = text.trim_ascii();
    let decoded: Zeroizing<Vec<u8>> = if text.len() == 2 * KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        Zeroizing::new(text.chunks_exact(2).map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1])).collect())
    } else {
        let unpadded = text.strip_suffix(b"=").unwrap_or(text);
        let engine = if unpadded.iter().any(|b| matches!(b, b'-' | b'_')) { URL_SAFE_NO_PAD } else { STANDARD_NO_PAD };
        Zeroizing::new(
            engine
                .decode(unpadded)
                .map_err(|_| invalid("not hex or base64 text (expected 64 hex digits or base64 of 32 bytes)"))?,
        )
    };
    let key: [u8; KEY_LEN] =
        decoded.as_slice().try_into().map_err(|_| invalid("must be exactly 32 bytes (256 bits)"))?;
    Ok(Zeroizing::new(key))
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => unreachable!("checked by is_ascii_hexdigit"),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const K1: [u8; KEY_LEN] = [0x11; KEY_LEN];
    const K2: [u8; KEY_LEN] = [0x22; KEY_LEN];
    const IDX: [u8; KEY_LEN] = [0x33; KEY_LEN];

    fn keys(data: &[(&str, [u8; KEY_LEN])], index: [u8; KEY_LEN]) -> FieldKeys {
        FieldKeys::from_bytes(data.iter().map(|(id, k)| (id.to_string(), *k)).collect(), index).unwrap()
    }

    /// `stored` with its base64 payload replaced by `f(raw payload)`.
    fn with_payload(stored: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
        let (prefix, payload) = stored.rsplit_once(':').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        f(&mut raw);
        format!("{prefix}:{}", URL_SAFE_NO_PAD.encode(raw))
    }

    #[test]
    fn round_trip() {
        let k = FieldKeys::generate();
        for text in ["", "+90 532 123 45 67", "şüğıöç İ — 診察 🩺", &"x".repeat(10_000)] {
            let stored = k.encrypt(field::NOTES, text);
            assert_eq!(k.decrypt(field::NOTES, &stored).unwrap(), text);
        }
    }

    #[test]
    fn stored_form_is_versioned_and_labelled() {
        let k = keys(&[("2025-01", K1)], IDX);
        let stored = k.encrypt(field::EMAIL, "a@example.com");
        let parts: Vec<&str> = stored.splitn(3, ':').collect();
        assert_eq!(parts[..2], ["v1", "2025-01"]);
        let raw = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + "a@example.com".len() + TAG_LEN);
    }

    #[test]
    fn two_encryptions_of_same_text_differ() {
        let k = FieldKeys::generate();
        let a = k.encrypt(field::PHONE, "+905321234567");
        let b = k.encrypt(field::PHONE, "+905321234567");
        assert_ne!(a, b);
        let nonce = |s: &str| URL_SAFE_NO_PAD.decode(s.rsplit_once(':').unwrap().1).unwrap()[..NONCE_LEN].to_vec();
        assert_ne!(nonce(&a), nonce(&b));
    }

    #[test]
    fn tampering_any_byte_fails() {
        let k = FieldKeys::generate();
        let stored = k.encrypt(field::NATIONAL_ID, "12345678901");
        let len = URL_SAFE_NO_PAD.decode(stored.rsplit_once(':').unwrap().1).unwrap().len();
        for i in 0..len {
            for bit in [0x01, 0x80] {
                let tampered = with_payload(&stored, |raw| raw[i] ^= bit);
                assert_eq!(
                    k.decrypt(field::NATIONAL_ID, &tampered),
                    Err(CryptoError::Decryption),
                    "byte {i} bit {bit:#x}"
                );
            }
        }
        let truncated = with_payload(&stored, |raw| raw.truncate(raw.len() - 1));
        assert_eq!(k.decrypt(field::NATIONAL_ID, &truncated), Err(CryptoError::Decryption));
        let extended = with_payload(&stored, |raw| raw.push(0));
        assert_eq!(k.decrypt(field::NATIONAL_ID, &extended), Err(CryptoError::Decryption));
        let too_short = with_payload(&stored, |raw| raw.truncate(NONCE_LEN + TAG_LEN - 1));
        assert_eq!(k.decrypt(field::NATIONAL_ID, &too_short), Err(CryptoError::Malformed));
    }

    #[test]
    fn wrong_field_fails() {
        let k = FieldKeys::generate();
        let stored = k.encrypt(field::PHONE, "+905321234567");
        assert_eq!(k.decrypt(field::EMAIL, &stored), Err(CryptoError::Decryption));
        assert_eq!(k.decrypt("patient.phone ", &stored), Err(CryptoError::Decryption));
    }

    #[test]
    fn relabelled_key_id_fails() {
        // Same key bytes under both ids: only the key id bound as associated data can
        // reject the relabelled value.
        let same = keys(&[("a", K1), ("b", K1)], IDX);
        let stored = same.encrypt(field::EMAIL, "a@example.com");
        assert!(stored.starts_with("v1:a:"));
        let relabelled = stored.replacen("v1:a:", "v1:b:", 1);
        assert_eq!(same.decrypt(field::EMAIL, &relabelled), Err(CryptoError::Decryption));
        // Different keys: rejected as well.
        let two = keys(&[("a", K1), ("b", K2)], IDX);
        let stored = two.encrypt(field::EMAIL, "a@example.com");
        let relabelled = stored.replacen("v1:a:", "v1:b:", 1);
        assert_eq!(two.decrypt(field::EMAIL, &relabelled), Err(CryptoError::Decryption));
    }

    #[test]
    fn rotated_key_set_decrypts_old_values_and_flags_reencryption() {
        let old = keys(&[("k1", K1)], IDX);
        let stored = old.encrypt(field::NOTES, "allergic to penicillin");
        assert!(!old.needs_reencryption(&stored));

        let rotated = keys(&[("k2", K2), ("k1", K1)], IDX);
        assert_eq!(rotated.current_key_id(), "k2");
        assert_eq!(rotated.decrypt(field::NOTES, &stored).unwrap(), "allergic to penicillin");
        assert!(rotated.needs_reencryption(&stored));

        let fresh = rotated.reencrypt(field::NOTES, &stored).unwrap();
        assert!(fresh.starts_with("v1:k2:"));
        assert!(!rotated.needs_reencryption(&fresh));
        assert_eq!(rotated.decrypt(field::NOTES, &fresh).unwrap(), "allergic to penicillin");

        // Once k1 is retired, the re-encrypted value still decrypts; the old one does not.
        let retired = keys(&[("k2", K2)], IDX);
        assert!(retired.decrypt(field::NOTES, &fresh).is_ok());
        assert_eq!(retired.decrypt(field::NOTES, &stored), Err(CryptoError::UnknownKeyId("k1".into())));
        assert!(retired.needs_reencryption("not encrypted at all"));
    }

    #[test]
    fn unknown_key_id_is_a_typed_error() {
        let a = keys(&[("a", K1)], IDX);
        let b = keys(&[("b", K1)], IDX);
        let stored = a.encrypt(field::PHONE, "+905321234567");
        assert_eq!(b.decrypt(field::PHONE, &stored), Err(CryptoError::UnknownKeyId("a".into())));
    }

    #[test]
    fn unsupported_version_and_malformed_values_are_typed_errors() {
        let k = keys(&[("a", K1)], IDX);
        let stored = k.encrypt(field::PHONE, "+905321234567");
        let v2 = stored.replacen("v1:", "v2:", 1);
        assert_eq!(k.decrypt(field::PHONE, &v2), Err(CryptoError::UnsupportedVersion));
        for bad in ["", "+905321234567", "v1:a", "v1::AAAA", "v1:a b:AAAA", "v1:a:not*base64", "v1:a:"] {
            assert_eq!(k.decrypt(field::PHONE, bad), Err(CryptoError::Malformed), "{bad:?}");
        }
        // Errors never echo what was stored.
        let err = k.decrypt(field::PHONE, "secret:stuff").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn ciphertext_contains_no_plaintext() {
        let k = FieldKeys::generate();
        for text in ["12345678901", "+905321234567", "ayse.yilmaz@example.com", "Diabetes type 2, insulin"] {
            let stored = k.encrypt(field::NOTES, text);
            let raw = URL_SAFE_NO_PAD.decode(stored.rsplit_once(':').unwrap().1).unwrap();
            // No plaintext run of 6 bytes in the text or the decoded bytes (short enough to catch
            // a leak, long enough that random base64 never matches by chance).
            for w in text.as_bytes().windows(6) {
                let w_str = std::str::from_utf8(w).unwrap();
                assert!(!stored.contains(w_str), "{stored} contains {w_str:?}");
                assert!(!raw.windows(6).any(|r| r == w), "raw contains {w_str:?}");
            }
        }
    }

    #[test]
    fn blind_index_equal_for_differently_formatted_equal_phones() {
        let k = keys(&[("a", K1)], IDX);
        let a = k.blind_index(field::PHONE, "+90 532 123 45 67");
        let b = k.blind_index(field::PHONE, "+90 (532) 123-45-67");
        let c = k.blind_index(field::PHONE, " +905321234567\n");
        let d = k.blind_index(field::PHONE, &normalize_phone("+90.532.123.45.67"));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Without the leading + it is another number.
        assert_ne!(a, k.blind_index(field::PHONE, "90 532 123 45 67"));
        assert_ne!(a, k.blind_index(field::PHONE, "+90 532 123 45 68"));
    }

    #[test]
    fn blind_index_normalizes_email_and_national_id() {
        let k = keys(&[("a", K1)], IDX);
        assert_eq!(
            k.blind_index(field::EMAIL, " Ayse.Yilmaz@Example.COM "),
            k.blind_index(field::EMAIL, "ayse.yilmaz@example.com")
        );
        assert_eq!(k.blind_index(field::NATIONAL_ID, "ab-123 456"), k.blind_index(field::NATIONAL_ID, "AB123456"));
    }

    #[test]
    fn blind_index_differs_across_fields() {
        let k = keys(&[("a", K1)], IDX);
        let value = "12345678901";
        let phone = k.blind_index(field::PHONE, value);
        let national = k.blind_index(field::NATIONAL_ID, value);
        let other = k.blind_index("practitioner.phone", value);
        assert_eq!(normalize_phone(value), normalize_national_id(value));
        assert_ne!(phone, national);
        assert_ne!(phone, other);
        assert_ne!(national, other);
    }

    #[test]
    fn blind_index_differs_across_index_keys_and_survives_data_key_rotation() {
        let a = keys(&[("a", K1)], IDX);
        let other_index = keys(&[("a", K1)], K2);
        let rotated = keys(&[("b", K2), ("a", K1)], IDX);
        let v = "+905321234567";
        assert_ne!(a.blind_index(field::PHONE, v), other_index.blind_index(field::PHONE, v));
        assert_eq!(a.blind_index(field::PHONE, v), rotated.blind_index(field::PHONE, v));
        assert_ne!(a.index_key_check(), other_index.index_key_check());
        assert_eq!(a.index_key_check(), rotated.index_key_check());
        assert_eq!(a.blind_index(field::PHONE, v), keys(&[("a", K1)], IDX).blind_index(field::PHONE, v));
    }

    #[test]
    fn normalizers() {
        assert_eq!(normalize_phone(" +90 (532) 123-45-67 "), "+905321234567");
        assert_eq!(normalize_phone("0532 123 45 67"), "05321234567");
        assert_eq!(normalize_phone("12+34"), "1234");
        assert_eq!(normalize_phone("++90"), "+90");
        assert_eq!(normalize_email("  John.Doe@Example.ORG\t"), "john.doe@example.org");
        assert_eq!(normalize_national_id(" 123 456-789 01 "), "12345678901");
        assert_eq!(normalize_national_id("ab-12 cd"), "AB12CD");
        for (f, v) in [
            (normalize_phone as fn(&str) -> String, "+90 (532) 1"),
            (normalize_email, " A@B.c "),
            (normalize_national_id, "a-b c"),
        ] {
            assert_eq!(f(&f(v)), f(v), "idempotent");
        }
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let data_hex = "a1".repeat(KEY_LEN);
        let index_hex = "b2".repeat(KEY_LEN);
        let k = FieldKeys::from_config(
            &[("main".to_string(), data_hex.clone().into_bytes())],
            index_hex.clone().into_bytes(),
        )
        .unwrap();
        for out in [format!("{k:?}"), format!("{k:#?}")] {
            assert!(out.contains("main"), "{out}");
            for secret in [
                data_hex.clone(),
                index_hex.clone(),
                data_hex.to_uppercase(),
                STANDARD.encode([0xa1; KEY_LEN]),
                STANDARD.encode([0xb2; KEY_LEN]),
                "161".to_string(), // 0xa1 as a decimal byte
                "178".to_string(), // 0xb2 as a decimal byte
                "a1a1".to_string(),
                "b2b2".to_string(),
            ] {
                assert!(!out.contains(&secret), "{out} contains {secret}");
            }
        }
    }

    #[test]
    fn from_config_accepts_hex_and_base64() {
        let data = [7u8; KEY_LEN];
        let index = [9u8; KEY_LEN];
        let reference = keys(&[("k", data)], index);
        let sample = reference.encrypt(field::EMAIL, "x@example.com");
        let forms: [fn(&[u8]) -> String; 5] = [
            |k| hex(k),
            |k| hex(k).to_uppercase(),
            |k| STANDARD.encode(k),
            |k| URL_SAFE_NO_PAD.encode(k),
            |k| format!("  {}\n", URL_SAFE.encode(k)),
        ];
        for form in forms {
            let k = FieldKeys::from_config(&[("k".to_string(), form(&data).into_bytes())], form(&index).into_bytes())
                .unwrap();
            assert_eq!(k.decrypt(field::EMAIL, &sample).unwrap(), "x@example.com");
            assert_eq!(
                k.blind_index(field::EMAIL, "x@example.com"),
                reference.blind_index(field::EMAIL, "x@example.com")
            );
        }
    }

    #[test]
    fn from_config_validates() {
        let good = || hex(&K1).into_bytes();
        let index = || hex(&IDX).into_bytes();
        let entry = |id: &str, key: Vec<u8>| (id.to_string(), key);

        assert_eq!(FieldKeys::from_config(&[], index()).unwrap_err(), CryptoError::NoDataKey);
        for short in [hex(&K1[..31]), STANDARD.encode(&K1[..31]), STANDARD.encode([1u8; 33])] {
            assert!(matches!(
                FieldKeys::from_config(&[entry("a", short.into_bytes())], index()),
                Err(CryptoError::InvalidKey { ref key, .. }) if key == "a"
            ));
        }
        // Raw bytes or a passphrase are not key text.
        for not_text in [K1.to_vec(), b"correct horse battery staple!!!!".to_vec()] {
            assert!(matches!(
                FieldKeys::from_config(&[entry("a", not_text)], index()),
                Err(CryptoError::InvalidKey { .. })
            ));
        }
        assert!(matches!(
            FieldKeys::from_config(&[entry("a", good())], b"short".to_vec()),
            Err(CryptoError::InvalidKey { ref key, .. }) if key == "blind-index"
        ));
        for bad_id in ["", "a:b", "a b", "a\0", &"x".repeat(65)] {
            assert_eq!(
                FieldKeys::from_config(&[entry(bad_id, good())], index()).unwrap_err(),
                CryptoError::InvalidKeyId(bad_id.to_string())
            );
        }
        assert_eq!(
            FieldKeys::from_config(&[entry("a", good()), entry("a", hex(&K2).into_bytes())], index()).unwrap_err(),
            CryptoError::DuplicateKeyId("a".into())
        );
        assert_eq!(FieldKeys::from_config(&[entry("a", good())], good()).unwrap_err(), CryptoError::IndexKeyReused);
        // Error messages carry no key material.
        let err = FieldKeys::from_config(&[entry("a", hex(&K1[..31]).into_bytes())], index()).unwrap_err().to_string();
        assert!(!err.contains("1111"), "{err}");
    }

    #[test]
    fn generated_keys_are_random_and_independent() {
        let a = FieldKeys::generate();
        let b = FieldKeys::generate();
        assert_eq!(a.current_key_id(), "local");
        let stored = a.encrypt(field::EMAIL, "x@example.com");
        assert_eq!(b.decrypt(field::EMAIL, &stored), Err(CryptoError::Decryption));
        assert_ne!(a.blind_index(field::EMAIL, "x@example.com"), b.blind_index(field::EMAIL, "x@example.com"));
    }
}
