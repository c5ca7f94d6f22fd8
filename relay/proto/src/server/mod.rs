//! The TURN server state machine, one shard of it.
//!
//! A [`Shard`] owns a set of allocations and everything about them. The network layer runs one
//! shard per worker thread and routes each client 5-tuple to a fixed worker, so a shard is
//! never shared and the per-packet path takes no lock. It is driven by three calls:
//! [`Shard::handle_client`] (a datagram from a client), [`Shard::handle_peer`] (a datagram that
//! arrived on a relayed address) and [`Shard::tick`] (expire what is due). Each returns an
//! [`Action`] for the shell to carry out. Relayed sockets are bound through the [`RelayBinder`]
//! the shell provides.

mod allocation;
mod auth;
mod config;
mod controls;
mod data;
mod local;
mod offload;
mod reply;
mod requests;
mod stats;

pub use allocation::{Allocation, RelayId, Relayed};
pub use config::{DefaultFamily, ServerConfig};
pub use controls::Controls;
pub use offload::ChannelGrant;
pub use stats::{AllocFailure, AuthFailure, DropReason, Flow, Stats};

use rustc_hash::FxHashMap;
use slab::Slab;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use crate::codec::{self, ChannelData, Class, Message, Method};
use crate::limits::SharedQuotas;
use crate::time::Millis;

/// No answer to a request that has not passed message integrity (Binding, 400, 401, 420, 438)
/// is more than this many times the size of the request: such a request may come from a
/// spoofed source, and the answer then goes to a third party (reflection). Answers to requests
/// that passed integrity are not bounded: their nonce proved the source receives at its address.
pub const AMPLIFICATION_BOUND: usize = 3;

/// The smallest request that draws a 401: an Allocate with REQUESTED-TRANSPORT and nothing
/// else (header 20 + attribute 8).
pub const SMALLEST_CHALLENGED_REQUEST: usize = 28;

/// The longest realm (bytes) whose 401 to the smallest Allocate stays within the bound: the
/// 401 is the header (20), ERROR-CODE without reason phrase (8), NONCE without the cookie
/// (4 + 16) and REALM (4 + the realm padded to a multiple of 4). 84 - 52 = 32.
pub const MAX_REALM_LEN: usize =
    AMPLIFICATION_BOUND * SMALLEST_CHALLENGED_REQUEST - (codec::HEADER_LEN + 8 + 4 + crate::nonce::PLAIN_NONCE_LEN + 4);

/// Whether an answer of `len` bytes to `request` keeps within [`AMPLIFICATION_BOUND`].
pub(crate) fn within_amplification_bound(request: &Message<'_>, len: usize) -> bool {
    len <= AMPLIFICATION_BOUND * request.bytes().len()
}

/// The client transport of a 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The value mixed into nonces.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Transport::Udp => 17,
            Transport::Tcp => 6,
            Transport::Tls => 56,
        }
    }
}

/// A client's 5-tuple: its address, the server address it talks to, and the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
}

/// Where the bytes of an [`Action`] are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A range of the buffer that was handed in (relayed data, sent without copying).
    Input(Range<usize>),
    /// The first `n` bytes of the output buffer (a response or a Data indication).
    Output(usize),
}

/// What the shell must do after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Nothing to send (the datagram was consumed or dropped and counted).
    None,
    /// Send to the client of `tuple`, from the server address of `tuple`.
    ToClient { tuple: FiveTuple, payload: Payload },
    /// Send from the relayed socket `relay` to `peer`.
    ToPeer { relay: RelayId, peer: SocketAddr, payload: Range<usize>, dont_fragment: bool },
}

/// The address family of a relayed transport address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// 0 for IPv4, 1 for IPv6: the slot of per-family counters.
    pub const fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    /// The metrics label value.
    pub const fn label(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// What an Allocate asks of the binder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    pub now: Millis,
    pub family: Family,
    /// EVEN-PORT: the relayed port must be even.
    pub even_port: bool,
    /// EVEN-PORT with R: also hold the next port for a later Allocate and return a token.
    pub reserve_next: bool,
    /// RESERVATION-TOKEN: take the port held under this token.
    pub reservation: Option<u64>,
    pub dont_fragment: bool,
}

/// A relayed socket the binder opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRelay {
    pub id: RelayId,
    pub addr: SocketAddr,
    pub reservation_token: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("no relay address of that family is configured")]
    FamilyUnsupported,
    #[error("no free port in the relay port range")]
    NoPorts,
    #[error("reservation token unknown or expired")]
    UnknownReservation,
}

/// Opens and closes relayed sockets for the state machine.
pub trait RelayBinder {
    fn bind(&mut self, request: &BindRequest) -> Result<BoundRelay, BindError>;
    fn release(&mut self, relay: RelayId);
}

/// One shard of the server: its allocations, indexed by client 5-tuple and by relayed socket.
pub struct Shard<B: RelayBinder> {
    config: Arc<ServerConfig>,
    controls: Controls,
    quotas: Arc<SharedQuotas>,
    binder: B,
    allocations: Slab<Allocation>,
    by_client: FxHashMap<FiveTuple, usize>,
    by_relay: FxHashMap<RelayId, usize>,
    /// Relayed transport addresses (as advertised) of this shard's allocations, for same-relay
    /// delivery.
    by_relay_addr: FxHashMap<SocketAddr, usize>,
    stats: Stats,
    /// The most allocations held at once since `take_allocation_peak` last ran: a burst that
    /// comes and goes between two ticks still counts as a peak.
    allocation_peak: usize,
    /// The revocations generation this shard has applied ([`Shard::apply_revocations`]).
    revocations_applied: u64,
    /// Allocations changed or ended since the shell last asked, when a kernel fast path
    /// mirrors them (`offload.rs`); `None` when none does.
    offload_journal: Option<Vec<FiveTuple>>,
}

impl<B: RelayBinder> Shard<B> {
    pub fn new(config: Arc<ServerConfig>, controls: Controls, quotas: Arc<SharedQuotas>, binder: B) -> Self {
        let stats = Stats { auth_by_secret: vec![0; controls.secrets.current().key_ids.len()], ..Stats::default() };
        Shard {
            config,
            controls,
            quotas,
            binder,
            allocations: Slab::new(),
            by_client: FxHashMap::default(),
            by_relay: FxHashMap::default(),
            by_relay_addr: FxHashMap::default(),
            stats,
            allocation_peak: 0,
            revocations_applied: 0,
            offload_journal: None,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    pub fn binder(&self) -> &B {
        &self.binder
    }

    pub fn binder_mut(&mut self) -> &mut B {
        &mut self.binder
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// The most allocations held at once since the last call (or since the shard began), and
    /// starts a new period from the current count.
    pub fn take_allocation_peak(&mut self) -> usize {
        std::mem::replace(&mut self.allocation_peak, self.allocations.len()).max(self.allocations.len())
    }

    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.iter().map(|(_, a)| a)
    }

    /// The allocation serving a client 5-tuple.
    pub fn allocation_for(&self, tuple: &FiveTuple) -> Option<&Allocation> {
        self.by_client.get(tuple).map(|&i| &self.allocations[i])
    }

    /// A datagram from a client. `packet` is the whole datagram; a response or Data
    /// indication is written into `out` (which should hold 1500 bytes or more).
    pub fn handle_client(&mut self, now: Millis, tuple: FiveTuple, packet: &[u8], out: &mut [u8]) -> Action {
        if codec::is_channel_data(packet) {
            return self.client_channel_data(now, &tuple, packet, out);
        }
        let msg = match Message::decode(packet) {
            Ok(m) => m,
            Err(_) => {
                let reason = if codec::is_stun(packet) { DropReason::Malformed } else { DropReason::NotTurn };
                self.stats.drop(reason);
                return Action::None;
            }
        };
        match msg.class() {
            Class::Request => self.request(now, tuple, &msg, out),
            Class::Indication if msg.method() == Method::SEND => self.send_indication(now, &tuple, &msg, out),
            Class::Indication if msg.method() == Method::BINDING => Action::None, // keepalive
            _ => {
                self.stats.drop(DropReason::UnexpectedClass);
                Action::None
            }
        }
    }

    /// A datagram from `peer` on the relayed socket `relay`. The datagram occupies
    /// `buf[start..end]` and `start` must be at least 4: the ChannelData header is written in
    /// front of it so that it goes back to the client without a copy.
    pub fn handle_peer(
        &mut self,
        now: Millis,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        data: Range<usize>,
        out: &mut [u8],
    ) -> Action {
        self.peer_data(now, relay, peer, buf, data, out)
    }

    /// Ends this shard's allocations of sessions revoked since the last call, if the control
    /// plane revoked any (one atomic load when it did not); returns how many ended. The shell
    /// calls it at every turn of its loop, before handling the turn's datagrams, so that no
    /// packet of a revoked session is relayed once the turn that saw the order began; `tick`
    /// calls it too. The relayed ports are released at once.
    pub fn apply_revocations(&mut self, now: Millis) -> usize {
        let generation = self.controls.revocations.generation();
        if generation == self.revocations_applied {
            return 0;
        }
        self.revocations_applied = generation;
        let revoked = self.controls.revocations.current();
        let now_secs = now.unix_secs();
        let ended: Vec<usize> = self
            .allocations
            .iter()
            .filter(|(_, a)| !a.user_id.is_empty() && revoked.contains(&a.user_id, now_secs))
            .map(|(i, _)| i)
            .collect();
        for &index in &ended {
            self.remove_allocation(index);
        }
        self.stats.allocations_revoked += ended.len() as u64;
        ended.len()
    }

    /// Expires allocations, permissions and channels that are due. Call about once a second.
    pub fn tick(&mut self, now: Millis) {
        self.apply_revocations(now);
        let expired: Vec<usize> = self.allocations.iter().filter(|(_, a)| a.expires <= now).map(|(i, _)| i).collect();
        for index in expired {
            self.remove_allocation(index);
            self.stats.allocations_expired += 1;
        }
        let (mut permissions, mut channels) = (0u64, 0u64);
        let journal = &mut self.offload_journal;
        for (_, a) in self.allocations.iter_mut() {
            // Removed grants leave the kernel's maps too (they had stopped relaying there at
            // their expiry already: the kernel compares it).
            if a.prune(now) != (0, 0)
                && let Some(journal) = journal.as_mut()
            {
                journal.push(a.tuple);
            }
            permissions += a.permissions.iter().filter(|p| p.expires > now).count() as u64;
            channels += a.channels.iter().filter(|c| c.expires > now).count() as u64;
        }
        self.stats.permissions_active = permissions;
        self.stats.channels_active = channels;
        self.compact();
    }

    /// Gives back table memory once most allocations are gone (after a peak, a quarter or
    /// less of the capacity in use), so that a relay returns to its idle footprint after a
    /// busy hour instead of keeping the peak's tables for ever. Only shrinks: a slab keeps its
    /// keys, so the allocation table shrinks as far as its highest live entry allows.
    fn compact(&mut self) {
        const MIN_CAPACITY: usize = 64;
        let sparse = |len: usize, capacity: usize| capacity > MIN_CAPACITY && len * 4 <= capacity;
        if sparse(self.allocations.len(), self.allocations.capacity()) {
            self.allocations.shrink_to_fit();
        }
        if sparse(self.by_client.len(), self.by_client.capacity()) {
            self.by_client.shrink_to_fit();
        }
        if sparse(self.by_relay.len(), self.by_relay.capacity()) {
            self.by_relay.shrink_to_fit();
        }
        if sparse(self.by_relay_addr.len(), self.by_relay_addr.capacity()) {
            self.by_relay_addr.shrink_to_fit();
        }
    }

    fn remove_allocation(&mut self, index: usize) {
        let a = self.allocations.remove(index);
        self.by_client.remove(&a.tuple);
        self.offload_changed(a.tuple);
        for relayed in a.relayed_addresses() {
            self.by_relay.remove(&relayed.id);
            self.by_relay_addr.remove(&relayed.addr);
            self.binder.release(relayed.id);
        }
        // A dual allocation took one quota unit: it gives back one.
        self.quotas.release(&a.user_id, a.tuple.client.ip());
        self.stats.allocations_active = self.allocations.len() as u64;
    }

    /// The client's stream (TCP or TLS) closed: its allocation, if it has one, ends with it
    /// (RFC 8656 §3.1: an allocation over a stream lives as long as the connection). Returns
    /// whether there was one.
    pub fn client_closed(&mut self, tuple: &FiveTuple) -> bool {
        let Some(&index) = self.by_client.get(tuple) else { return false };
        self.remove_allocation(index);
        self.stats.allocations_closed += 1;
        true
    }

    /// Removes every allocation (shutdown), releasing sockets and quotas.
    pub fn clear(&mut self) {
        let all: Vec<usize> = self.allocations.iter().map(|(i, _)| i).collect();
        for index in all {
            self.remove_allocation(index);
        }
    }

    fn client_channel_data(&mut self, now: Millis, tuple: &FiveTuple, packet: &[u8], out: &mut [u8]) -> Action {
        let Some(&index) = self.by_client.get(tuple) else {
            self.stats.drop(DropReason::NoAllocation);
            return Action::None;
        };
        let Some(frame) = ChannelData::decode(packet) else {
            self.stats.drop(DropReason::Malformed);
            return Action::None;
        };
        let a = &mut self.allocations[index];
        let Some(peer) = a.channel_peer(frame.channel, now) else {
            self.stats.drop(DropReason::NoChannel);
            return Action::None;
        };
        if let Err(reason) = a.admit(peer.ip(), now, frame.data.len()) {
            self.stats.drop(reason);
            return Action::None;
        }
        // The permission admitted the peer, and permissions exist only for the families of the
        // allocation's relayed addresses: one comparison picks the socket.
        let Some(relayed) = a.relayed(Family::of(&peer)) else {
            self.stats.drop(DropReason::FamilyMismatch);
            return Action::None;
        };
        let (relay, dont_fragment) = (relayed.id, a.dont_fragment);
        if let Some(action) = self.deliver_local(now, index, peer, frame.data, out) {
            return action;
        }
        self.stats.client_to_peer.add(frame.data.len());
        let start = codec::CHANNEL_DATA_HEADER_LEN;
        Action::ToPeer { relay, peer, payload: start..start + frame.data.len(), dont_fragment }
    }
}
