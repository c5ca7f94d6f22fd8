//! Revocation in memory: an order published once on the shared `Controls` ends the revoked
//! session's allocations in every shard that applies it, frees their relayed sockets, stops
//! their data both ways, and refuses the session's credentials like expired ones, while other
//! sessions relay on.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use support::*;
use teletip_turn_proto::codec::{Class, Method, attr};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{Action, AuthFailure, Controls, DropReason, Payload, RelayId, Shard};
use teletip_turn_proto::time::Millis;

const PEER: &str = "93.184.216.34:40000";

fn shard_sharing(controls: &Controls) -> Shard<FakeBinder> {
    Shard::new(Arc::new(config()), controls.clone(), Arc::new(SharedQuotas::new(0, 0, 0)), FakeBinder::default())
}

/// An allocation of session `id` from `client`, with channel 0x4000 bound to [`PEER`].
fn allocated(s: &mut Shard<FakeBinder>, client: &str, id: &str) -> (Client, RelayId) {
    let mut c = Client::new(client, id);
    allocate(s, T0, &mut c);
    let peer: SocketAddr = PEER.parse().unwrap();
    assert_eq!(call(s, T0, &mut c, Method::CHANNEL_BIND, channel_attrs(0x4000, peer)).class(), Class::Success);
    let relay = s.allocation_for(&c.tuple).unwrap().relay;
    (c, relay)
}

/// ChannelData from the client: relayed to the peer?
fn client_sends(s: &mut Shard<FakeBinder>, now: Millis, c: &Client) -> bool {
    let frame = [0x40, 0x00, 0x00, 0x04, b'v', b'i', b'd', b'e'];
    let mut out = [0u8; 2048];
    matches!(s.handle_client(now, c.tuple, &frame, &mut out), Action::ToPeer { .. })
}

/// A datagram from the peer on the relayed socket: relayed to the client?
fn peer_sends(s: &mut Shard<FakeBinder>, now: Millis, relay: RelayId) -> bool {
    let mut buf = *b"\0\0\0\0media";
    let mut out = [0u8; 2048];
    let end = buf.len();
    matches!(
        s.handle_peer(now, relay, PEER.parse().unwrap(), &mut buf, 4..end, &mut out),
        Action::ToClient { payload: Payload::Input(_), .. }
    )
}

#[test]
fn a_revoked_session_ends_in_every_shard_and_its_credentials_are_refused() {
    let controls = controls();
    let mut shards = [shard_sharing(&controls), shard_sharing(&controls)];
    // The revoked session has an allocation on each shard (two clients of one session, as a
    // browser's two candidates), the kept session one on the first.
    let (mut revoked_a, relay_a) = allocated(&mut shards[0], "198.51.100.20:5000", "revoked-session");
    let (revoked_b, relay_b) = allocated(&mut shards[1], "198.51.100.21:5000", "revoked-session");
    let (kept, relay_kept) = allocated(&mut shards[0], "198.51.100.22:5000", "kept-session");
    let now = T0.plus_secs(1);
    assert!(client_sends(&mut shards[0], now, &revoked_a) && client_sends(&mut shards[1], now, &revoked_b));

    let expires = T0.unix_secs() + 3600;
    let applied =
        controls.revocations.revoke([("revoked-session", expires), ("unknown-session", expires)], now.unix_secs());
    assert_eq!(applied.added, 2, "an unknown session is accepted and expires harmlessly");

    // Published but not yet applied by the shards: new credentials are refused already.
    let before = shards[1].stats().auth_failures[AuthFailure::Revoked as usize];
    let mut again = Client::new("198.51.100.23:5000", "revoked-session");
    let answer = call(&mut shards[1], now, &mut again, Method::ALLOCATE, requested_udp);
    assert_eq!(answer.error_code(), Some(401), "refused like an expired credential");
    assert!(answer.msg().get(attr::NONCE).is_some(), "with a fresh nonce");
    assert_eq!(shards[1].stats().auth_failures[AuthFailure::Revoked as usize], before + 1);

    for (shard, ended) in shards.iter_mut().zip([1, 1]) {
        assert_eq!(shard.apply_revocations(now), ended);
        assert_eq!(shard.apply_revocations(now), 0, "applied once per order");
        assert_eq!(shard.stats().allocations_revoked, 1);
        assert_eq!(shard.stats().allocations_active, shard.allocation_count() as u64);
    }
    assert_eq!(shards[0].binder().released, vec![relay_a], "the relayed port is freed");
    assert_eq!(shards[1].binder().released, vec![relay_b]);
    assert_eq!(shards[0].allocation_count(), 1);

    // Nothing of the revoked session is relayed either way; the kept session relays on.
    let dropped = shards[0].stats().dropped(DropReason::NoAllocation);
    assert!(!client_sends(&mut shards[0], now, &revoked_a) && !peer_sends(&mut shards[0], now, relay_a));
    assert!(!client_sends(&mut shards[1], now, &revoked_b) && !peer_sends(&mut shards[1], now, relay_b));
    assert_eq!(shards[0].stats().dropped(DropReason::NoAllocation), dropped + 2);
    assert!(client_sends(&mut shards[0], now, &kept) && peer_sends(&mut shards[0], now, relay_kept));

    // Its client cannot refresh or allocate again, even with the nonce it holds.
    let refresh = call(&mut shards[0], now, &mut revoked_a, Method::REFRESH, |_| {});
    assert_eq!(refresh.error_code(), Some(401));
    assert_eq!(call(&mut shards[0], now, &mut revoked_a, Method::ALLOCATE, requested_udp).error_code(), Some(401));
    assert_eq!(shards[0].stats().auth_failures[AuthFailure::Revoked as usize], 2);
}

#[test]
fn a_shard_applies_an_order_at_its_tick_and_a_revocation_lapses_with_its_credentials() {
    let controls = controls();
    let mut s = shard_sharing(&controls);
    let (_c, _) = allocated(&mut s, "198.51.100.20:5000", "session-1");
    let expires = T0.unix_secs() + 120;
    controls.revocations.revoke([("session-1", expires)], T0.unix_secs());
    s.tick(T0.plus_secs(1));
    assert_eq!((s.allocation_count(), s.stats().allocations_revoked), (0, 1));

    // Past the revocation's expiry, the same credentials (expiring then too) are refused as
    // expired, not as revoked: the revocation no longer matters.
    let later = Millis::from_secs(expires);
    assert_eq!(controls.revocations.prune(later.unix_secs()), 0);
    let mut c = Client::with_secret("198.51.100.20:5001", "session-1", SECRET, expires);
    assert_eq!(call(&mut s, later, &mut c, Method::ALLOCATE, requested_udp).error_code(), Some(401));
    assert_eq!(s.stats().auth_failures[AuthFailure::Expired as usize], 1);
    assert_eq!(s.stats().auth_failures[AuthFailure::Revoked as usize], 0);
}

#[test]
fn credentials_without_a_session_id_are_never_revoked_by_an_empty_id() {
    let controls = controls();
    let mut s = shard_sharing(&controls);
    let (_c, _) = allocated(&mut s, "198.51.100.20:5000", "");
    assert_eq!(controls.revocations.revoke([("", T0.unix_secs() + 60)], T0.unix_secs()).ignored, 1);
    assert_eq!(s.apply_revocations(T0), 0);
    assert_eq!(s.allocation_count(), 1);
}
