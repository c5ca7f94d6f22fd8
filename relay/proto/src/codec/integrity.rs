//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (RFC 8489 §14.5-14.7).

use super::{HEADER_LEN, Message};
use hmac::{Hmac, Mac};

/// The long-term key of RFC 8489 §9.2.2: MD5 or SHA-256 of `username:realm:password`,
/// depending on the PASSWORD-ALGORITHM in use. Both MESSAGE-INTEGRITY (HMAC-SHA1) and
/// MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256) are keyed with it.
#[derive(Clone, PartialEq, Eq)]
pub enum IntegrityKey {
    Md5([u8; 16]),
    Sha256([u8; 32]),
    /// A short-term password used as the key directly (RFC 5769 vectors, ICE).
    ShortTerm(Vec<u8>),
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.write_str("IntegrityKey(..)")
    }
}

impl IntegrityKey {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IntegrityKey::Md5(k) => k,
            IntegrityKey::Sha256(k) => k,
            IntegrityKey::ShortTerm(k) => k,
        }
    }
}

const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// CRC-32 of `bytes` XOR 0x5354554e: the FINGERPRINT value for a message whose bytes before the
/// FINGERPRINT attribute are `bytes` (with the header length already covering FINGERPRINT).
pub fn fingerprint_of(bytes: &[u8]) -> u32 {
    // The length field must count the FINGERPRINT attribute, which the caller's header already
    // does when decoding. The CRC runs over the header as it stands.
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

/// HMAC over `prefix` as if the header's length field said `adjusted_len`. The RFC defines the
/// MAC over the message with its length adjusted to end right after the integrity attribute,
/// which differs from the received header when FINGERPRINT follows.
pub(crate) fn hmac_sha1_with_length(key: &[u8], prefix: &[u8], adjusted_len: u16) -> [u8; 20] {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    feed_with_length(&mut mac, prefix, adjusted_len);
    mac.finalize().into_bytes().into()
}

pub(crate) fn hmac_sha256_with_length(key: &[u8], prefix: &[u8], adjusted_len: u16) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    feed_with_length(&mut mac, prefix, adjusted_len);
    mac.finalize().into_bytes().into()
}

fn feed_with_length<M: Mac>(mac: &mut M, prefix: &[u8], adjusted_len: u16) {
    mac.update(&prefix[..2]);
    mac.update(&adjusted_len.to_be_bytes());
    mac.update(&prefix[4..]);
}

/// Which integrity attribute authenticated a request; the response uses the same one
/// (RFC 8489 §9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    Sha1,
    Sha256,
}

impl<'a> Message<'a> {
    /// Checks MESSAGE-INTEGRITY-SHA256 if present (preferred), else MESSAGE-INTEGRITY, with
    /// `key`. Returns which one matched, or `None` if the message has neither or it does not
    /// match. Constant-time comparison.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Option<IntegrityKind> {
        if let Some(a) = self.integrity_sha256_attr() {
            let start = a.offset as usize - 4;
            let value = &self.bytes()[a.offset as usize..a.offset as usize + a.len as usize];
            // RFC 8489 §14.6: at least 16 bytes, a multiple of 4, at most 32.
            if value.len() < 16 || value.len() > 32 || value.len() % 4 != 0 {
                return None;
            }
            let adjusted = (start + 4 + a.len as usize - HEADER_LEN) as u16;
            let mac = hmac_sha256_with_length(key.as_bytes(), &self.bytes()[..start], adjusted);
            return constant_time_eq(&mac[..value.len()], value).then_some(IntegrityKind::Sha256);
        }
        if let Some(a) = self.integrity_attr() {
            if a.len != 20 {
                return None;
            }
            let start = a.offset as usize - 4;
            let value = &self.bytes()[a.offset as usize..a.offset as usize + 20];
            let adjusted = (start + 24 - HEADER_LEN) as u16;
            let mac = hmac_sha1_with_length(key.as_bytes(), &self.bytes()[..start], adjusted);
            return constant_time_eq(&mac, value).then_some(IntegrityKind::Sha1);
        }
        None
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
