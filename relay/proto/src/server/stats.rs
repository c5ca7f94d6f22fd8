//! Counters the state machine keeps as plain integers. The shell publishes them as Prometheus
//! metrics every second, so counting a packet costs an increment, not a registry lookup.

use crate::policy::DenyClass;

macro_rules! reason_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const COUNT: usize = $name::ALL.len();
            /// The Prometheus label value.
            pub const fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

reason_enum!(
    /// Why a datagram was dropped without an answer.
    DropReason {
        Malformed => "malformed",
        NotTurn => "not_turn",
        RateLimited => "rate_limited",
        NoAllocation => "no_allocation",
        NoPermission => "no_permission",
        NoChannel => "no_channel",
        PeerDenied => "peer_denied",
        FamilyMismatch => "family_mismatch",
        Bandwidth => "bandwidth",
        UnknownAttribute => "unknown_attribute",
        UnexpectedClass => "unexpected_class",
        TooLarge => "too_large",
        Amplification => "amplification",
    }
);

reason_enum!(
    /// Why a TURN request failed authentication.
    AuthFailure {
        MissingAttributes => "missing_attributes",
        StaleNonce => "stale_nonce",
        BadUsername => "bad_username",
        Expired => "expired",
        LifetimeTooLong => "lifetime_too_long",
        BadIntegrity => "bad_integrity",
        BadPasswordAlgorithm => "bad_password_algorithm",
        WrongCredentials => "wrong_credentials",
        Revoked => "revoked",
    }
);

reason_enum!(
    /// Why an authenticated Allocate was refused.
    AllocFailure {
        BadRequest => "bad_request",
        Mismatch => "allocation_mismatch",
        UnsupportedTransport => "unsupported_transport",
        AddressFamily => "address_family",
        UserQuota => "user_quota",
        IpQuota => "ip_quota",
        Capacity => "capacity",
        UnknownAttribute => "unknown_attribute",
        Draining => "draining",
    }
);

/// Traffic in one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

impl Flow {
    #[inline]
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// Everything one shard counts. Monotonic except the `*_active` gauges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub drops: [u64; DropReason::COUNT],
    pub auth_failures: [u64; AuthFailure::COUNT],
    pub alloc_failures: [u64; AllocFailure::COUNT],
    pub peer_denied: [u64; DenyClass::ALL.len()],
    /// Successful authentications per key id, indexed by the key id's slot in the `SecretRing`
    /// (it grows when a rotation brings a new key id).
    pub auth_by_secret: Vec<u64>,
    pub challenges: u64,
    pub bindings: u64,
    pub allocations_created: u64,
    /// Relayed addresses granted, per family (indexed by `Family::index`): a dual allocation counts
    /// once in `allocations_created` and once in each family here.
    pub relayed_created: [u64; 2],
    pub allocations_expired: u64,
    pub allocations_deleted: u64,
    /// Allocations that ended because their client's TCP or TLS connection closed.
    pub allocations_closed: u64,
    /// Allocations ended because the control plane revoked their session.
    pub allocations_revoked: u64,
    pub permissions_created: u64,
    pub channels_bound: u64,
    pub client_to_peer: Flow,
    pub peer_to_client: Flow,
    pub allocations_active: u64,
    pub permissions_active: u64,
    pub channels_active: u64,
}

impl Stats {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// A credential verified against the secret in `slot`.
    pub fn count_auth_success(&mut self, slot: usize) {
        if self.auth_by_secret.len() <= slot {
            // Only when a rotation brought a key id this shard had not counted yet.
            self.auth_by_secret.resize(slot + 1, 0);
        }
        self.auth_by_secret[slot] += 1;
    }

    pub fn auth_failed(&mut self, reason: AuthFailure) {
        self.auth_failures[reason as usize] += 1;
    }

    pub fn alloc_failed(&mut self, reason: AllocFailure) {
        self.alloc_failures[reason as usize] += 1;
    }

    /// A peer refused by the policy: a 403 answer or, for a Send indication, a drop (which the
    /// caller counts as well).
    pub fn denied(&mut self, class: DenyClass) {
        self.peer_denied[class.index()] += 1;
    }
}
