//! XOR-obfuscated transport addresses (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS,
//! XOR-RELAYED-ADDRESS; RFC 8489 §14.2).

use super::{FAMILY_IPV4, FAMILY_IPV6, MAGIC_COOKIE, TransactionId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Decodes an XOR address value. `None` for a wrong length or an unknown family: the caller
/// answers 400 for a request.
pub fn decode_xor_address(value: &[u8], txid: &TransactionId) -> Option<SocketAddr> {
    // The first byte is reserved: RFC 8489 §14.1 says receivers ignore it.
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match value[1] {
        FAMILY_IPV4 if value.len() == 8 => {
            let raw = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(raw)), port))
        }
        FAMILY_IPV6 if value.len() == 20 => {
            let mut raw = [0u8; 16];
            let key = xor_key_v6(txid);
            for i in 0..16 {
                raw[i] = value[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(raw)), port))
        }
        _ => None,
    }
}

/// Writes the value of an XOR address attribute into `out` and returns its length (8 or 20).
/// `out` must hold at least 20 bytes.
pub fn encode_xor_address_value(addr: SocketAddr, txid: &TransactionId, out: &mut [u8]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_IPV4;
            out[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_IPV6;
            let key = xor_key_v6(txid);
            let octets = ip.octets();
            for i in 0..16 {
                out[4 + i] = octets[i] ^ key[i];
            }
            20
        }
    }
}

/// Writes a plain (not XOR-ed) address value, the MAPPED-ADDRESS form that ALTERNATE-SERVER
/// uses (RFC 8489 §14.1, §14.15), into `out` and returns its length (8 or 20). `out` must hold
/// at least 20 bytes.
pub fn encode_address_value(addr: SocketAddr, out: &mut [u8]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_IPV4;
            out[4..8].copy_from_slice(&ip.octets());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_IPV6;
            out[4..20].copy_from_slice(&ip.octets());
            20
        }
    }
}

fn xor_key_v6(txid: &TransactionId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(txid);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        let txid = [7u8; 12];
        for addr in ["192.0.2.1:32853", "[2001:db8:1234:5678:11:2233:4455:6677]:32853", "0.0.0.0:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut buf = [0u8; 20];
            let n = encode_xor_address_value(addr, &txid, &mut buf);
            assert_eq!(decode_xor_address(&buf[..n], &txid), Some(addr));
        }
    }

    #[test]
    fn rejects_bad_family_and_length() {
        let txid = [0u8; 12];
        assert_eq!(decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &txid), None);
        assert!(decode_xor_address(&[0xFF, 1, 0, 0, 1, 2, 3, 4], &txid).is_some(), "reserved byte ignored");
        assert_eq!(decode_xor_address(&[0, 1, 0, 0, 1, 2, 3], &txid), None);
        assert_eq!(decode_xor_address(&[0, 2, 0, 0, 1, 2, 3, 4], &txid), None);
    }
}
