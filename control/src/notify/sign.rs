//! The webhook signature: `v1=` and the hex HMAC-SHA256, under the endpoint's secret, of the
//! Unix timestamp in seconds, a dot, and the exact body bytes. A receiver recomputes it over
//! what it received, compares in constant time, and rejects a timestamp more than five
//! minutes from its own clock (docs/notifications.md).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header naming the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "teletip-timestamp";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "teletip-signature";
/// The event id: a receiver that has seen it already ignores the request.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `v1=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // Computed with Python's hmac module: hmac.new(b"Jefe", b"1.x", hashlib.sha256).
        assert_eq!(signature(b"Jefe", 1, b"x"), "v1=2f7ccbd0f043456ad29514b2d24a8aa345ec6673a5db1b44e91c8ac99d1841e3");
        assert_ne!(signature(b"Jefe", 2, b"x"), signature(b"Jefe", 1, b"x"), "the timestamp is signed");
    }
}
