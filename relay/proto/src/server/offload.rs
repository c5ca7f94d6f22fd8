//! What a kernel fast path (the relay's XDP offload) needs from the state machine: the
//! allocations whose permissions, channels or lifetime changed, or that ended, since the shell
//! last asked, and read access to what they grant. The shard stays the only authority: the
//! shell copies exactly this state into the kernel's maps and removes it when the allocation
//! ends, so the kernel relays nothing the shard would refuse. Off (no journal, no cost) unless
//! the shell turns it on.

use std::net::{IpAddr, SocketAddr};

use super::{Allocation, FiveTuple, Flow, RelayBinder, Shard};
use crate::time::Millis;

/// A channel binding as the offload sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelGrant {
    pub number: u16,
    pub peer: SocketAddr,
    pub expires: Millis,
}

impl Allocation {
    /// The permissions (peer IP, expiry), expired ones not yet pruned included.
    pub fn permission_grants(&self) -> impl Iterator<Item = (IpAddr, Millis)> + '_ {
        self.permissions.iter().map(|p| (p.ip, p.expires))
    }

    /// The channel bindings, expired ones in their cooldown included.
    pub fn channel_grants(&self) -> impl Iterator<Item = ChannelGrant> + '_ {
        self.channels.iter().map(|c| ChannelGrant { number: c.number, peer: c.peer, expires: c.expires })
    }

    /// Whether a bandwidth cap (a token bucket) limits this allocation.
    pub fn has_bandwidth_cap(&self) -> bool {
        self.bucket.is_some()
    }
}

impl<B: RelayBinder> Shard<B> {
    /// Starts recording changed allocations for [`Shard::take_offload_changes`].
    pub fn enable_offload_journal(&mut self) {
        self.offload_journal.get_or_insert_with(Vec::new);
    }

    /// Moves the client 5-tuples of the allocations changed or ended since the last call into
    /// `into` (a tuple may repeat). [`Shard::allocation_for`] then says what each holds now:
    /// `None` when it ended.
    pub fn take_offload_changes(&mut self, into: &mut Vec<FiveTuple>) {
        if let Some(journal) = &mut self.offload_journal {
            into.append(journal);
        }
    }

    #[inline]
    pub(crate) fn offload_changed(&mut self, tuple: FiveTuple) {
        if let Some(journal) = &mut self.offload_journal {
            journal.push(tuple);
        }
    }

    /// Leases bandwidth to the kernel path for the allocation of `tuple`: takes up to `want`
    /// bytes from its token bucket (the bytes are then spent, whichever path relays them) and
    /// returns how many it took; `None` when the allocation has no cap (or is gone). The lease
    /// the kernel holds plus what the bucket holds never exceed what the cap allows.
    pub fn lease_bandwidth(&mut self, tuple: &FiveTuple, now: Millis, want: impl Fn(u64) -> u64) -> Option<u64> {
        let &index = self.by_client.get(tuple)?;
        let bucket = self.allocations[index].bucket.as_mut()?;
        let want = want(bucket.burst());
        Some(bucket.take_up_to(now, want))
    }

    /// Adds what the kernel relayed for this shard's allocations to its counters, so that the
    /// metrics count both paths alike.
    pub fn count_offloaded(&mut self, client_to_peer: Flow, peer_to_client: Flow) {
        let stats = &mut self.stats;
        stats.client_to_peer.packets += client_to_peer.packets;
        stats.client_to_peer.bytes += client_to_peer.bytes;
        stats.peer_to_client.packets += peer_to_client.packets;
        stats.peer_to_client.bytes += peer_to_client.bytes;
    }
}
