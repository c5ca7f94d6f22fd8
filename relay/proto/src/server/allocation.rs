//! One allocation: its relayed address, lifetime, permissions and channel bindings.

use std::net::{IpAddr, SocketAddr};

use super::{DropReason, Family, FiveTuple};
use crate::IntegrityKey;
use crate::codec::TransactionId;
use crate::credentials::PasswordAlgorithm;
use crate::limits::TokenBucket;
use crate::time::Millis;

/// Opaque handle of a relayed socket, chosen by the network layer's binder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Permission {
    pub ip: IpAddr,
    pub expires: Millis,
}

/// A channel binding. After `expires` it relays nothing, but for five more minutes neither its
/// number nor its peer may be bound to anything else (RFC 8656 §12).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Millis,
}

/// After a channel expires, its number and peer stay reserved this long.
pub(crate) const CHANNEL_COOLDOWN_SECS: u64 = 300;

/// A relayed transport address and the socket behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub id: RelayId,
    /// As clients and peers see it (external-ip applied).
    pub addr: SocketAddr,
}

#[derive(Debug)]
pub struct Allocation {
    pub tuple: FiveTuple,
    /// The first relayed address: of the requested family (IPv4 unless REQUESTED-ADDRESS-FAMILY
    /// said otherwise), or IPv6 when a dual request could only be granted for IPv6.
    pub relay: RelayId,
    /// The relayed transport address as clients and peers see it (external-ip applied).
    pub relay_addr: SocketAddr,
    /// The IPv6 relayed address of a dual allocation (ADDITIONAL-ADDRESS-FAMILY, RFC 8656
    /// §7.2). It lives and ends with the allocation; peers of its family are relayed through it.
    pub additional: Option<Relayed>,
    /// The family a dual request asked for but did not get, and the error code of its
    /// ADDRESS-ERROR-CODE, repeated when the Allocate is retransmitted.
    pub(crate) address_error: Option<(Family, u16)>,
    pub username: Box<str>,
    /// The REST username's id part: the per-user quota key.
    pub user_id: Box<str>,
    /// The long-term key that authenticated the Allocate, reused for this username's later
    /// requests on the same 5-tuple so that a Refresh costs one HMAC, not a derivation per
    /// secret.
    pub(crate) key: (PasswordAlgorithm, IntegrityKey),
    /// The counter slot of the key id whose secret signed the Allocate. The key above stays
    /// valid for this allocation after that secret is rotated out; the credential's own
    /// expiry still ends it.
    pub(crate) secret_slot: usize,
    pub expires: Millis,
    /// The Allocate transaction, so that its retransmission gets the same success again.
    pub(crate) txid: TransactionId,
    pub(crate) lifetime: u32,
    pub(crate) reservation_token: Option<u64>,
    pub(crate) permissions: Vec<Permission>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) bucket: Option<TokenBucket>,
    pub dont_fragment: bool,
}

impl Allocation {
    /// The relayed address that talks to peers of `family`, if the allocation has one.
    #[inline]
    pub fn relayed(&self, family: Family) -> Option<Relayed> {
        if Family::of(&self.relay_addr) == family {
            return Some(Relayed { id: self.relay, addr: self.relay_addr });
        }
        self.additional.filter(|r| Family::of(&r.addr) == family)
    }

    /// Every relayed address of the allocation: one, or two for a dual allocation.
    pub fn relayed_addresses(&self) -> impl Iterator<Item = Relayed> + '_ {
        std::iter::once(Relayed { id: self.relay, addr: self.relay_addr }).chain(self.additional)
    }

    #[inline]
    pub(crate) fn permits(&self, ip: IpAddr, now: Millis) -> bool {
        self.permissions.iter().any(|p| p.ip == ip && p.expires > now)
    }

    /// Installs or refreshes the permission for `ip`. Returns whether it was new.
    pub(crate) fn permit(&mut self, ip: IpAddr, expires: Millis) -> bool {
        match self.permissions.iter_mut().find(|p| p.ip == ip) {
            Some(p) => {
                p.expires = expires;
                false
            }
            None => {
                self.permissions.push(Permission { ip, expires });
                true
            }
        }
    }

    pub(crate) fn has_permission_entry(&self, ip: IpAddr) -> bool {
        self.permissions.iter().any(|p| p.ip == ip)
    }

    /// The peer a live channel number is bound to.
    #[inline]
    pub(crate) fn channel_peer(&self, number: u16, now: Millis) -> Option<SocketAddr> {
        self.channels.iter().find(|c| c.number == number && c.expires > now).map(|c| c.peer)
    }

    /// The live channel bound to `peer`, if any.
    #[inline]
    pub(crate) fn channel_for_peer(&self, peer: SocketAddr, now: Millis) -> Option<u16> {
        self.channels.iter().find(|c| c.peer == peer && c.expires > now).map(|c| c.number)
    }

    /// Whether `bytes` of data to or from `peer_ip` may be relayed now: the peer needs a live
    /// permission and the allocation's bandwidth bucket (if any) must hold the bytes.
    #[inline]
    pub(crate) fn admit(&mut self, peer_ip: IpAddr, now: Millis, bytes: usize) -> Result<(), DropReason> {
        if !self.permits(peer_ip, now) {
            return Err(DropReason::NoPermission);
        }
        match &mut self.bucket {
            Some(b) => {
                if b.take(now, bytes as u64) {
                    Ok(())
                } else {
                    Err(DropReason::Bandwidth)
                }
            }
            None => Ok(()),
        }
    }

    /// Drops expired permissions and channels past their cooldown. Returns how many of each
    /// were removed.
    pub(crate) fn prune(&mut self, now: Millis) -> (usize, usize) {
        let perms = self.permissions.len();
        self.permissions.retain(|p| p.expires > now);
        let chans = self.channels.len();
        self.channels.retain(|c| c.expires.plus_secs(CHANNEL_COOLDOWN_SECS) > now);
        (perms - self.permissions.len(), chans - self.channels.len())
    }
}
