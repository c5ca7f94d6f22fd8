//! Same-relay delivery: a client sends to a peer address that is another allocation's relayed
//! address on this same shard (both legs of a call on one relay, the common case for a
//! hospital's relay). Instead of sending from one relayed socket to the other through the
//! kernel (two receives and two sends per packet), the datagram goes straight to the other
//! allocation's client (one receive, one send).
//!
//! The RFC semantics are exactly those of the kernel path: the sender's permission and
//! bandwidth were checked by the caller; here the receiving allocation must be alive, must
//! have a permission for the sender's relayed address and bandwidth left, and its client sees
//! ChannelData on the channel bound to that address or else a Data indication whose
//! XOR-PEER-ADDRESS is the sender's relayed address. The same counters move as on the kernel
//! path (client_to_peer at the sender, peer_to_client or a drop reason at the receiver).
//! Allocations on other shards (other workers) are not visible here and still go through the
//! kernel.

use std::net::SocketAddr;

use super::data::write_data_indication;
use super::{Action, DropReason, Family, Payload, RelayBinder, Shard};
use crate::codec::{self, CHANNEL_DATA_HEADER_LEN};
use crate::time::Millis;

impl<B: RelayBinder> Shard<B> {
    /// Delivers `data` from allocation `from` to `peer` if `peer` is a relayed address of this
    /// shard; `None` if it is not (the caller sends it through the kernel). The caller has
    /// already admitted the datagram on the sender's side.
    #[inline]
    pub(crate) fn deliver_local(
        &mut self,
        now: Millis,
        from: usize,
        peer: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Option<Action> {
        if !self.config.same_relay_delivery {
            return None;
        }
        let &to = self.by_relay_addr.get(&peer)?;
        // The sender's relayed address of the peer's family: what the receiver's permission and
        // channel name (the caller has checked that the sender has one of that family).
        let source = self.allocations[from].relayed(Family::of(&peer))?.addr;
        self.stats.client_to_peer.add(data.len());
        Some(self.receive_local(now, to, source, data, out))
    }

    /// What `peer_data` does for a datagram from `source` arriving on allocation `to`'s relayed
    /// address, with the bytes copied into `out` instead of framed in place.
    fn receive_local(&mut self, now: Millis, to: usize, source: SocketAddr, data: &[u8], out: &mut [u8]) -> Action {
        let b = &mut self.allocations[to];
        if b.expires <= now {
            self.stats.drop(DropReason::NoAllocation);
            return Action::None;
        }
        if let Err(reason) = b.admit(source.ip(), now, data.len()) {
            self.stats.drop(reason);
            return Action::None;
        }
        let tuple = b.tuple;
        if let Some(channel) = b.channel_for_peer(source, now) {
            let n = CHANNEL_DATA_HEADER_LEN + data.len();
            if n > out.len() {
                self.stats.drop(DropReason::TooLarge);
                return Action::None;
            }
            codec::ChannelData::write_header(channel, data.len(), &mut out[..CHANNEL_DATA_HEADER_LEN]);
            out[CHANNEL_DATA_HEADER_LEN..n].copy_from_slice(data);
            self.stats.peer_to_client.add(data.len());
            return Action::ToClient { tuple, payload: Payload::Output(n) };
        }
        match write_data_indication(out, now, self.stats.peer_to_client.packets, source, data) {
            Ok(n) => {
                self.stats.peer_to_client.add(data.len());
                Action::ToClient { tuple, payload: Payload::Output(n) }
            }
            Err(_) => {
                self.stats.drop(DropReason::TooLarge);
                Action::None
            }
        }
    }
}
