//! Which peers a client may reach through the relay.
//!
//! Deny by default everything that is not public unicast, so that a relay on an operator's edge
//! never becomes a proxy into the operator's own network or a cloud metadata endpoint. Addresses
//! are canonicalised first: an IPv4 address written in an IPv6 form (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`) is judged as the IPv4 address
//! it names. Gaps there are how coturn's CVE-2020-26262 and CVE-2026-27624 happened.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a peer was refused: a metric label, so a small closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyClass {
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    Multicast,
    Broadcast,
    Reserved,
    Documentation,
    Translation,
    Configured,
}

impl DenyClass {
    pub const ALL: [DenyClass; 11] = [
        DenyClass::Unspecified,
        DenyClass::Loopback,
        DenyClass::Private,
        DenyClass::SharedCgnat,
        DenyClass::LinkLocal,
        DenyClass::Multicast,
        DenyClass::Broadcast,
        DenyClass::Reserved,
        DenyClass::Documentation,
        DenyClass::Translation,
        DenyClass::Configured,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            DenyClass::Unspecified => "unspecified",
            DenyClass::Loopback => "loopback",
            DenyClass::Private => "private",
            DenyClass::SharedCgnat => "cgnat",
            DenyClass::LinkLocal => "link_local",
            DenyClass::Multicast => "multicast",
            DenyClass::Broadcast => "broadcast",
            DenyClass::Reserved => "reserved",
            DenyClass::Documentation => "documentation",
            DenyClass::Translation => "translation",
            DenyClass::Configured => "configured",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The built-in deny list for IPv4, with why each range is there.
const DENIED_V4: &[(&str, DenyClass)] = &[
    ("0.0.0.0/8", DenyClass::Unspecified),      // "this network", incl. 0.0.0.0
    ("10.0.0.0/8", DenyClass::Private),         // RFC 1918
    ("100.64.0.0/10", DenyClass::SharedCgnat),  // RFC 6598 carrier-grade NAT
    ("127.0.0.0/8", DenyClass::Loopback),       // the relay host itself
    ("169.254.0.0/16", DenyClass::LinkLocal),   // incl. 169.254.169.254 cloud metadata
    ("172.16.0.0/12", DenyClass::Private),      // RFC 1918
    ("192.0.0.0/24", DenyClass::Reserved),      // IETF protocol assignments
    ("192.0.2.0/24", DenyClass::Documentation), // TEST-NET-1
    ("192.88.99.0/24", DenyClass::Translation), // 6to4 relay anycast
    ("192.168.0.0/16", DenyClass::Private),     // RFC 1918
    ("198.18.0.0/15", DenyClass::Reserved),     // benchmarking
    ("198.51.100.0/24", DenyClass::Documentation),
    ("203.0.113.0/24", DenyClass::Documentation),
    ("224.0.0.0/4", DenyClass::Multicast),
    ("255.255.255.255/32", DenyClass::Broadcast), // listed before 240/4 so it gets its own label
    ("240.0.0.0/4", DenyClass::Reserved),
];

/// The built-in deny list for IPv6 (after IPv4-in-IPv6 forms were turned into IPv4).
const DENIED_V6: &[(&str, DenyClass)] = &[
    ("::/128", DenyClass::Unspecified),
    ("::1/128", DenyClass::Loopback),
    ("64:ff9b::/96", DenyClass::Translation), // NAT64 well-known prefix: reaches IPv4 space
    ("64:ff9b:1::/48", DenyClass::Translation), // NAT64 local-use (RFC 8215)
    ("100::/64", DenyClass::Reserved),        // discard-only
    ("2001::/32", DenyClass::Translation),    // Teredo
    ("2001:db8::/32", DenyClass::Documentation),
    ("3fff::/20", DenyClass::Documentation), // RFC 9637
    ("2002::/16", DenyClass::Translation),   // 6to4
    ("fc00::/7", DenyClass::Private),        // unique local
    ("fe80::/10", DenyClass::LinkLocal),
    ("fec0::/10", DenyClass::Private), // deprecated site-local
    ("ff00::/8", DenyClass::Multicast),
];

/// The peer policy: built-in denies, operator denies, and operator allows that override both.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
    builtin_v4: Vec<(Ipv4Net, DenyClass)>,
    builtin_v6: Vec<(Ipv6Net, DenyClass)>,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy::new(Vec::new(), Vec::new())
    }
}

impl PeerPolicy {
    /// `allowed` ranges (coturn's `allowed-peer-ip`) override every deny; `denied` ranges
    /// (`denied-peer-ip`) add to the built-in list.
    pub fn new(allowed: Vec<IpNet>, denied: Vec<IpNet>) -> Self {
        let builtin_v4 = DENIED_V4.iter().map(|(n, c)| (n.parse().expect("built-in range"), *c)).collect();
        let builtin_v6 = DENIED_V6.iter().map(|(n, c)| (n.parse().expect("built-in range"), *c)).collect();
        PeerPolicy { allowed, denied, builtin_v4, builtin_v6 }
    }

    pub fn allowed_ranges(&self) -> &[IpNet] {
        &self.allowed
    }

    /// `Ok` if a client may reach `ip`; else the class of the refusal.
    pub fn check(&self, ip: IpAddr) -> Result<(), DenyClass> {
        let canonical = canonicalize(ip);
        let matches = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&canonical) || n.contains(&ip));
        if matches(&self.allowed) {
            return Ok(());
        }
        if matches(&self.denied) {
            return Err(DenyClass::Configured);
        }
        match canonical {
            IpAddr::V4(v4) => match self.builtin_v4.iter().find(|(n, _)| n.contains(&v4)) {
                Some((_, class)) => Err(*class),
                None => Ok(()),
            },
            IpAddr::V6(v6) => match self.builtin_v6.iter().find(|(n, _)| n.contains(&v6)) {
                Some((_, class)) => Err(*class),
                None => Ok(()),
            },
        }
    }
}

/// The address a packet to `ip` would really reach, as far as the relay host's own stack is
/// concerned: IPv4 written in any IPv6 form becomes that IPv4 address.
pub fn canonicalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v4_inside(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
    }
}

fn v4_inside(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s[..6] {
        // ::ffff:a.b.c.d IPv4-mapped
        [0, 0, 0, 0, 0, 0xffff] => Some(tail),
        // ::ffff:0:a.b.c.d IPv4-translated (RFC 2765 SIIT)
        [0, 0, 0, 0, 0xffff, 0] => Some(tail),
        // ::a.b.c.d IPv4-compatible (deprecated, still routed by some stacks). :: and ::1 are
        // judged as IPv6 (unspecified, loopback).
        [0, 0, 0, 0, 0, 0] if u32::from(tail) > 1 => Some(tail),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(policy: &PeerPolicy, ip: &str) -> Option<DenyClass> {
        policy.check(ip.parse().unwrap()).err()
    }

    #[test]
    fn every_listed_class_is_denied_by_default() {
        let p = PeerPolicy::default();
        let cases = [
            ("0.0.0.0", DenyClass::Unspecified),
            ("0.1.2.3", DenyClass::Unspecified),
            ("127.0.0.1", DenyClass::Loopback),
            ("127.255.255.254", DenyClass::Loopback),
            ("10.1.2.3", DenyClass::Private),
            ("172.16.0.1", DenyClass::Private),
            ("172.31.255.255", DenyClass::Private),
            ("192.168.1.1", DenyClass::Private),
            ("100.64.0.1", DenyClass::SharedCgnat),
            ("100.127.255.255", DenyClass::SharedCgnat),
            ("169.254.169.254", DenyClass::LinkLocal),
            ("192.0.0.8", DenyClass::Reserved),
            ("198.18.0.1", DenyClass::Reserved),
            ("198.19.255.255", DenyClass::Reserved),
            ("240.0.0.1", DenyClass::Reserved),
            ("224.0.0.251", DenyClass::Multicast),
            ("239.255.255.250", DenyClass::Multicast),
            ("255.255.255.255", DenyClass::Broadcast),
            ("::", DenyClass::Unspecified),
            ("::1", DenyClass::Loopback),
            ("fc00::1", DenyClass::Private),
            ("fd12:3456::1", DenyClass::Private),
            ("fe80::1", DenyClass::LinkLocal),
            ("ff02::1", DenyClass::Multicast),
            ("64:ff9b::7f00:1", DenyClass::Translation),
            ("64:ff9b::808:808", DenyClass::Translation),
            ("2001:0:4136:e378::1", DenyClass::Translation),
            ("2002:7f00:1::1", DenyClass::Translation),
            ("192.0.2.10", DenyClass::Documentation),
            ("198.51.100.10", DenyClass::Documentation),
            ("203.0.113.10", DenyClass::Documentation),
            ("192.88.99.1", DenyClass::Translation),
            ("64:ff9b:1::1", DenyClass::Translation),
            ("100::1", DenyClass::Reserved),
            ("2001:db8::1", DenyClass::Documentation),
            ("3fff::1", DenyClass::Documentation),
            ("fec0::1", DenyClass::Private),
        ];
        for (ip, class) in cases {
            assert_eq!(denied(&p, ip), Some(class), "{ip}");
        }
    }

    #[test]
    fn ipv4_in_ipv6_forms_are_judged_as_ipv4() {
        let p = PeerPolicy::default();
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
        ] {
            assert!(denied(&p, ip).is_some(), "{ip} must be denied");
        }
        assert_eq!(denied(&p, "::ffff:127.0.0.1"), Some(DenyClass::Loopback));
        assert_eq!(denied(&p, "::ffff:8.8.8.8"), None);
    }

    #[test]
    fn public_unicast_is_allowed() {
        let p = PeerPolicy::default();
        for ip in ["8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "2a00:1450:4001::1", "2606:4700::1111"] {
            assert_eq!(denied(&p, ip), None, "{ip}");
        }
    }

    #[test]
    fn operator_ranges_allow_and_deny() {
        let p = PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], vec!["8.8.8.0/24".parse().unwrap()]);
        assert_eq!(denied(&p, "127.0.0.1"), None);
        assert_eq!(denied(&p, "::ffff:127.0.0.1"), None);
        assert_eq!(denied(&p, "8.8.8.8"), Some(DenyClass::Configured));
        assert_eq!(denied(&p, "::ffff:8.8.8.8"), Some(DenyClass::Configured));
        assert_eq!(denied(&p, "10.0.0.1"), Some(DenyClass::Private));
    }
}
