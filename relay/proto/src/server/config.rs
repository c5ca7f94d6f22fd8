//! What the state machine needs to know: realm, lifetimes, limits, peer policy.

use std::net::SocketAddr;

use crate::nonce::NonceIssuer;
use crate::policy::PeerPolicy;
use crate::source_budget::UnauthLimits;

/// Protocol settings shared by every shard, fixed at start. What changes while the relay runs
/// (secrets, the drain flag) is in [`Controls`](super::Controls).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub realm: String,
    pub nonces: NonceIssuer,
    pub policy: PeerPolicy,
    /// Allocation lifetime when the client asks for none or for less (RFC 8656: 600 s).
    pub default_lifetime: u32,
    /// The longest allocation lifetime granted (RFC 8656 recommends 3600 s).
    pub max_lifetime: u32,
    /// Permission lifetime (RFC 8656 fixes 300 s).
    pub permission_lifetime: u32,
    /// Channel binding lifetime (RFC 8656 fixes 600 s).
    pub channel_lifetime: u32,
    /// Highest channel number a client may bind: RFC 5766's 0x7FFF by default, because Chrome
    /// (libwebrtc) and coturn's client pick numbers up to there; RFC 8656's 0x4FFF when strict.
    pub max_channel_number: u16,
    pub max_permissions_per_allocation: usize,
    pub max_channels_per_allocation: usize,
    /// Per-allocation relayed bandwidth in bytes per second, both directions together; 0 = no
    /// limit. Bursts of one second are allowed.
    pub max_bps: u64,
    /// A credential whose expiry lies further ahead than this is refused (0 = no limit): a
    /// leaked credential then stays useful for a bounded time.
    pub max_credential_lifetime: u64,
    /// Unauthenticated answers per second per source IP, and the burst; 0 disables the limit.
    pub unauth_rate: u64,
    pub unauth_burst: u64,
    /// The most answers a source earns by authenticated requests (`source_budget.rs`); 0: none.
    pub unauth_earned_burst: u64,
    /// Deliver a datagram addressed to another allocation of the same shard straight to that
    /// allocation's client (see `local.rs`). Off only to measure or debug the kernel path.
    pub same_relay_delivery: bool,
    /// The family of an Allocate that names none (RFC 8656: IPv4).
    pub default_family: DefaultFamily,
    /// Where a draining relay sends new clients over UDP and TCP (ALTERNATE-SERVER), the first
    /// of the client's address family.
    pub alternate_servers: Vec<SocketAddr>,
    /// The same for clients over TLS.
    pub tls_alternate_servers: Vec<SocketAddr>,
}

/// What an Allocate without REQUESTED-ADDRESS-FAMILY (or ADDITIONAL-ADDRESS-FAMILY) gets:
/// coturn's `allocation-default-address-family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultFamily {
    /// RFC 8656's rule.
    Ipv4,
    Ipv6,
    /// The family the client speaks to the relay: for clients such as Chromium, which reach an
    /// IPv6 TURN server without asking for an IPv6 relayed address.
    Keep,
}

impl ServerConfig {
    /// The RFC's lifetimes and conservative limits; callers fill in realm and nonce key.
    pub fn new(realm: impl Into<String>, nonce_key: [u8; 32]) -> Self {
        ServerConfig {
            realm: realm.into(),
            nonces: NonceIssuer::new(nonce_key, 600),
            policy: PeerPolicy::default(),
            default_lifetime: 600,
            max_lifetime: 3600,
            permission_lifetime: 300,
            channel_lifetime: 600,
            max_channel_number: crate::codec::RFC5766_MAX_CHANNEL,
            max_permissions_per_allocation: 32,
            max_channels_per_allocation: 32,
            max_bps: 0,
            max_credential_lifetime: 86_400,
            unauth_rate: 50,
            unauth_burst: 1024,
            unauth_earned_burst: 4096,
            same_relay_delivery: true,
            default_family: DefaultFamily::Ipv4,
            alternate_servers: Vec::new(),
            tls_alternate_servers: Vec::new(),
        }
    }

    /// The limits of the unauthenticated-answer budgets.
    pub fn unauth_limits(&self) -> UnauthLimits {
        UnauthLimits { rate: self.unauth_rate, burst: self.unauth_burst, earned_burst: self.unauth_earned_burst }
    }

    /// The lifetime granted for a requested one (RFC 8656 §7.2, §7.3): at least the default,
    /// at most the maximum.
    pub fn granted_lifetime(&self, requested: Option<u32>) -> u32 {
        match requested {
            None => self.default_lifetime,
            Some(r) => r.min(self.max_lifetime).max(self.default_lifetime),
        }
    }
}
