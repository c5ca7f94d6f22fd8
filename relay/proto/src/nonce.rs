//! Stateless nonces (RFC 8489 §9.2): nothing is stored per client, so a flood of
//! unauthenticated requests costs the relay no memory.
//!
//! A nonce is `base64(expiry ‖ MAC)` (16 characters), optionally after the RFC 8489 §9.2
//! nonce cookie with the "password algorithms" feature bit (`"obMatJos2AAAB"`, 29 characters
//! in all). The cookie goes only into answers that also carry PASSWORD-ALGORITHMS (SHA-256
//! offered): the server decides per answer, because the cookie and PASSWORD-ALGORITHMS cost 28
//! bytes that do not fit in a 401 to the smallest Allocate within the amplification bound
//! (docs/relay-security.md §5). Without the cookie the client treats the server as an RFC 5389
//! one and uses MD5 (RFC 8489 §9.2.4).
//!
//! The MAC is HMAC-SHA256, cut to 64 bits, over the expiry, whether the cookie was sent, and
//! the client's transport, source address and (over UDP) port, keyed with a per-process random
//! key, or one the relays share (nonce-key-file). It therefore expires (438 Stale Nonce), cannot
//! be used from another client address or transport, nor over UDP from another port (the
//! server address is not bound: one relay process answers on all of its listening addresses
//! with the same key), and the cookie cannot be stripped or added on the way (a bid-down from
//! SHA-256 to MD5 fails the MAC). Over TCP and TLS the port is left out: a client redirected by
//! a draining relay (300) opens a new connection, from a new port, to the alternate and brings
//! the nonce the 300 gave it (libwebrtc does not retry a 438 there).
//!
//! Why 64 bits of MAC are enough: forging a nonce gives no credentials (the request still needs
//! MESSAGE-INTEGRITY with the user's key); it would only let a holder of credentials use a
//! source address it cannot receive at. Each guess is one request that the relay answers with a
//! 438 (and rate-limits per source), and a nonce lives `stale-nonce` seconds (600 by default):
//! even at a million guesses a second for the whole lifetime (6·10^8, under 2^30) the chance of
//! one forgery is below 2^-34, and a new expiry starts the search again.

use base64::Engine;
use hmac::{Hmac, Mac};
use std::net::SocketAddr;

use crate::time::Millis;

/// The RFC 8489 nonce cookie followed by the base64 of the 24 security-feature bits with
/// "password algorithms" (bit 0) set. Bit numbering follows the RFC's own example in Appendix
/// B.1 (`obMatJos2AAAC` for bit 1).
pub const NONCE_PREFIX: &str = "obMatJos2AAAB";
/// 64 bits: see the module documentation for why that is enough.
const MAC_LEN: usize = 8;
/// The length of a nonce without the cookie: base64 of 4 + 8 bytes, no padding needed.
pub const PLAIN_NONCE_LEN: usize = 16;
/// The length of a nonce with the cookie.
pub const COOKIE_NONCE_LEN: usize = NONCE_PREFIX.len() + PLAIN_NONCE_LEN;
/// The transport code (IP protocol number) of UDP, whose nonces are bound to the port.
const UDP: u8 = 17;
const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// Issues and checks nonces.
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceIssuer {{ key: <redacted>, lifetime_secs: {} }}", self.lifetime_secs)
    }
}

/// Whether a nonce that checked out was sent with the cookie, i.e. with PASSWORD-ALGORITHMS
/// (the MAC covers it, so the prefix of a valid nonce can be trusted).
pub fn offered_password_algorithms(nonce: &[u8]) -> bool {
    nonce.starts_with(NONCE_PREFIX.as_bytes())
}

/// What a presented nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but expired: answer 438 with a fresh one.
    Expired,
    /// Not ours, damaged, or issued to another 5-tuple: also 438, the client retries.
    Invalid,
}

impl NonceIssuer {
    /// `key` must be random and secret (the daemon draws it at start).
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        NonceIssuer { key, lifetime_secs }
    }

    /// A nonce for this client, written into `out`; returns the length (16 bytes, or 29 with
    /// the cookie). `cookie`: the answer carrying it also offers PASSWORD-ALGORITHMS.
    pub fn issue(&self, now: Millis, transport: u8, client: SocketAddr, cookie: bool, out: &mut [u8; 64]) -> usize {
        let expiry = now.unix_secs() + self.lifetime_secs;
        let expiry = u32::try_from(expiry).unwrap_or(u32::MAX);
        let mut raw = [0u8; 4 + MAC_LEN];
        raw[..4].copy_from_slice(&expiry.to_be_bytes());
        raw[4..].copy_from_slice(&self.mac(expiry, cookie, transport, client));
        let prefix = if cookie { NONCE_PREFIX.as_bytes() } else { b"" };
        out[..prefix.len()].copy_from_slice(prefix);
        let n = ENGINE.encode_slice(raw, &mut out[prefix.len()..]).expect("64 bytes hold a nonce");
        prefix.len() + n
    }

    pub fn check(&self, now: Millis, transport: u8, client: SocketAddr, nonce: &[u8]) -> NonceCheck {
        let (cookie, encoded) = match nonce.strip_prefix(NONCE_PREFIX.as_bytes()) {
            Some(rest) => (true, rest),
            None => (false, nonce),
        };
        if encoded.len() != PLAIN_NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; 4 + MAC_LEN + 3];
        match ENGINE.decode_slice(encoded, &mut raw) {
            Ok(n) if n == 4 + MAC_LEN => {}
            _ => return NonceCheck::Invalid,
        }
        let expiry = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
        let expected = self.mac(expiry, cookie, transport, client);
        if expected.iter().zip(&raw[4..4 + MAC_LEN]).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
            return NonceCheck::Invalid;
        }
        if now.unix_secs() >= u64::from(expiry) { NonceCheck::Expired } else { NonceCheck::Valid }
    }

    fn mac(&self, expiry: u32, cookie: bool, transport: u8, client: SocketAddr) -> [u8; MAC_LEN] {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&expiry.to_be_bytes());
        // Whether the cookie (and so PASSWORD-ALGORITHMS) was sent: RFC 8489 §9.2.4 has the
        // server check the client echoes what "the response that sent this NONCE" offered.
        mac.update(&[u8::from(cookie)]);
        mac.update(&[transport]);
        match client.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        // UDP (17): the 5-tuple's port too. A stream's port changes with each connection.
        let port = if transport == UDP { client.port() } else { 0 };
        mac.update(&port.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> NonceIssuer {
        NonceIssuer::new([9; 32], 600)
    }

    #[test]
    fn nonce_is_valid_for_its_client_until_it_expires() {
        let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut buf = [0u8; 64];
        let now = Millis::from_secs(1_700_000_000);
        let n = issuer().issue(now, 17, client, true, &mut buf);
        let nonce = &buf[..n];
        assert!(nonce.starts_with(b"obMatJos2AAAB"));
        assert!(n <= 64 && nonce.iter().all(|b| b.is_ascii_graphic()));
        assert_eq!(issuer().check(now.plus_secs(599), 17, client, nonce), NonceCheck::Valid);
        assert_eq!(issuer().check(now.plus_secs(600), 17, client, nonce), NonceCheck::Expired);
    }

    #[test]
    fn nonce_is_bound_to_the_five_tuple_and_the_key() {
        let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut buf = [0u8; 64];
        let now = Millis::from_secs(1_700_000_000);
        let n = issuer().issue(now, 17, client, true, &mut buf);
        let nonce = &buf[..n];
        let other_port: SocketAddr = "198.51.100.7:40001".parse().unwrap();
        assert_eq!(issuer().check(now, 17, other_port, nonce), NonceCheck::Invalid);
        assert_eq!(issuer().check(now, 6, client, nonce), NonceCheck::Invalid);
        assert_eq!(NonceIssuer::new([8; 32], 600).check(now, 17, client, nonce), NonceCheck::Invalid);
        assert_eq!(issuer().check(now, 17, client, b"obMatJos2AAABgarbage"), NonceCheck::Invalid);
        assert_eq!(issuer().check(now, 17, client, b"f//499k954d6OL34oL9FSTvy64sA"), NonceCheck::Invalid);
    }

    #[test]
    fn over_tcp_and_tls_a_nonce_holds_for_a_new_connection_from_the_same_address() {
        let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let next_connection: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        let other_host: SocketAddr = "198.51.100.8:40000".parse().unwrap();
        let now = Millis::from_secs(1_700_000_000);
        for transport in [6, 56] {
            let mut buf = [0u8; 64];
            let n = issuer().issue(now, transport, client, true, &mut buf);
            let nonce = &buf[..n];
            assert_eq!(issuer().check(now, transport, next_connection, nonce), NonceCheck::Valid);
            assert_eq!(issuer().check(now, transport, other_host, nonce), NonceCheck::Invalid);
            assert_eq!(issuer().check(now, 17, client, nonce), NonceCheck::Invalid, "not over UDP");
        }
    }

    #[test]
    fn without_the_cookie_a_nonce_is_16_characters_and_the_cookie_cannot_be_added_or_stripped() {
        let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let now = Millis::from_secs(1_700_000_000);
        let mut plain = [0u8; 64];
        let n = issuer().issue(now, 17, client, false, &mut plain);
        assert_eq!(n, PLAIN_NONCE_LEN);
        assert!(!offered_password_algorithms(&plain[..n]));
        assert_eq!(issuer().check(now, 17, client, &plain[..n]), NonceCheck::Valid);
        let mut with = [0u8; 64];
        let m = issuer().issue(now, 17, client, true, &mut with);
        assert_eq!(m, COOKIE_NONCE_LEN);
        assert!(offered_password_algorithms(&with[..m]));
        // A bid-down (cookie stripped, so PASSWORD-ALGORITHMS need not be echoed) and the
        // reverse both fail the MAC.
        assert_eq!(issuer().check(now, 17, client, &with[NONCE_PREFIX.len()..m]), NonceCheck::Invalid);
        let added = [NONCE_PREFIX.as_bytes(), &plain[..n]].concat();
        assert_eq!(issuer().check(now, 17, client, &added), NonceCheck::Invalid);
    }
}
