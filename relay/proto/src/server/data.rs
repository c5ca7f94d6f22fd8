//! Relaying: Send indications and ChannelData from clients, datagrams from peers.
//!
//! These run for every media packet, so they allocate nothing: lookups go through the
//! per-shard hash maps and the allocation's short permission and channel lists, and payloads
//! stay where they were received (ranges of the caller's buffer).

use std::net::SocketAddr;
use std::ops::Range;

use super::{Action, DropReason, Family, FiveTuple, Payload, RelayBinder, RelayId, Shard};
use crate::codec::{self, Class, Message, MessageWriter, Method, attr, decode_xor_address};
use crate::time::Millis;

impl<B: RelayBinder> Shard<B> {
    pub(crate) fn send_indication(
        &mut self,
        now: Millis,
        tuple: &FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Action {
        let Some(&index) = self.by_client.get(tuple) else {
            self.stats.drop(DropReason::NoAllocation);
            return Action::None;
        };
        if msg.unknown_required().next().is_some() {
            self.stats.drop(DropReason::UnknownAttribute);
            return Action::None;
        }
        let peer = msg.get(attr::XOR_PEER_ADDRESS).and_then(|v| decode_xor_address(v, &msg.transaction_id()));
        let data = msg.attributes().iter().find(|a| a.attr_type == attr::DATA);
        let (Some(peer), Some(data)) = (peer, data) else {
            self.stats.drop(DropReason::Malformed);
            return Action::None;
        };
        let a = &mut self.allocations[index];
        let Some(relayed) = a.relayed(Family::of(&peer)) else {
            self.stats.drop(DropReason::FamilyMismatch);
            return Action::None;
        };
        if let Err(class) = self.config.policy.check(peer.ip()) {
            self.stats.denied(class);
            self.stats.drop(DropReason::PeerDenied);
            return Action::None;
        }
        let len = data.len as usize;
        if let Err(reason) = a.admit(peer.ip(), now, len) {
            self.stats.drop(reason);
            return Action::None;
        }
        let start = data.offset as usize;
        let dont_fragment = a.dont_fragment || msg.has(attr::DONT_FRAGMENT);
        let relay = relayed.id;
        if let Some(action) = self.deliver_local(now, index, peer, &msg.bytes()[start..start + len], out) {
            return action;
        }
        self.stats.client_to_peer.add(len);
        Action::ToPeer { relay, peer, payload: start..start + len, dont_fragment }
    }

    pub(crate) fn peer_data(
        &mut self,
        now: Millis,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        data: Range<usize>,
        out: &mut [u8],
    ) -> Action {
        let Some(&index) = self.by_relay.get(&relay) else {
            self.stats.drop(DropReason::NoAllocation);
            return Action::None;
        };
        let a = &mut self.allocations[index];
        if a.expires <= now {
            self.stats.drop(DropReason::NoAllocation);
            return Action::None;
        }
        let len = data.len();
        if let Err(reason) = a.admit(peer.ip(), now, len) {
            self.stats.drop(reason);
            return Action::None;
        }
        let tuple = a.tuple;
        if let Some(channel) = a.channel_for_peer(peer, now) {
            debug_assert!(data.start >= codec::CHANNEL_DATA_HEADER_LEN, "caller leaves header room");
            let start = data.start - codec::CHANNEL_DATA_HEADER_LEN;
            codec::ChannelData::write_header(channel, len, &mut buf[start..data.start]);
            self.stats.peer_to_client.add(len);
            return Action::ToClient { tuple, payload: Payload::Input(start..data.end) };
        }
        match write_data_indication(out, now, self.stats.peer_to_client.packets, peer, &buf[data]) {
            Ok(n) => {
                self.stats.peer_to_client.add(len);
                Action::ToClient { tuple, payload: Payload::Output(n) }
            }
            Err(_) => {
                self.stats.drop(DropReason::TooLarge);
                Action::None
            }
        }
    }
}

/// A Data indication carrying `data` from `peer` (RFC 8656 §11.6).
pub(crate) fn write_data_indication(
    out: &mut [u8],
    now: Millis,
    counter: u64,
    peer: SocketAddr,
    data: &[u8],
) -> Result<usize, codec::EncodeError> {
    let mut w = MessageWriter::new(out, Method::DATA, Class::Indication, data_indication_txid(now, counter))?;
    w.xor_address(attr::XOR_PEER_ADDRESS, peer)?;
    w.bytes(attr::DATA, data)?;
    Ok(w.finish())
}

/// Indications need a transaction id but nobody matches on it (RFC 8489 §6); a counter mixed
/// with the time is unique enough and keeps the core free of a random source.
fn data_indication_txid(now: Millis, counter: u64) -> codec::TransactionId {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&(now.0 as u32).to_be_bytes());
    id[4..].copy_from_slice(&counter.to_be_bytes());
    id
}
