//! IPv6 and dual allocations (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY) driven in memory: one
//! allocation with an IPv4 and an IPv6 relayed address, each family's peers relayed through its
//! own socket, both addresses refreshed and ended together, counted once by the quotas.

mod support;

use std::net::SocketAddr;
use support::*;
use teletip_turn_proto::codec::{self, Class, Message, MessageWriter, Method, attr};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::policy::PeerPolicy;
use teletip_turn_proto::server::{Action, AllocFailure, Payload, RelayId, Shard};

const PEER_V4: &str = "93.184.216.34:40000";
const PEER_V6: &str = "[2a00:1450:4001::1]:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A shard whose binder serves both families.
fn dual_shard_with(config: teletip_turn_proto::server::ServerConfig, quotas: SharedQuotas) -> Shard<FakeBinder> {
    let mut s = shard_with(config, quotas);
    s.binder_mut().v6 = true;
    s
}

fn dual_shard() -> Shard<FakeBinder> {
    dual_shard_with(config(), SharedQuotas::new(0, 0, 0))
}

fn additional_v6(w: &mut MessageWriter<'_>) {
    requested_udp(w);
    w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
}

fn requested_v6(w: &mut MessageWriter<'_>) {
    requested_udp(w);
    w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
}

/// Every XOR-RELAYED-ADDRESS of an answer, in order.
fn relayed_addresses(answer: &Answer) -> Vec<SocketAddr> {
    let m = answer.msg();
    m.get_all(attr::XOR_RELAYED_ADDRESS).map(|v| codec::decode_xor_address(v, &m.transaction_id()).unwrap()).collect()
}

/// ADDRESS-ERROR-CODE as (family, code).
fn address_error(answer: &Answer) -> Option<(u8, u16)> {
    let v = answer.msg().get(attr::ADDRESS_ERROR_CODE)?.to_vec();
    Some((v[0], u16::from(v[2] & 7) * 100 + u16::from(v[3])))
}

/// A dual allocation for `c`: its (IPv4, IPv6) relayed addresses.
fn allocate_dual(s: &mut Shard<FakeBinder>, c: &mut Client) -> (SocketAddr, SocketAddr) {
    let a = call(s, T0, c, Method::ALLOCATE, additional_v6);
    assert_eq!(a.class(), Class::Success, "{:?}", a.error_code());
    let relayed = relayed_addresses(&a);
    assert_eq!(relayed.len(), 2, "a dual allocation has two relayed addresses");
    assert!(relayed[0].is_ipv4() && relayed[1].is_ipv6());
    assert!(!a.msg().has(attr::ADDRESS_ERROR_CODE));
    (relayed[0], relayed[1])
}

fn relay_id_of(s: &Shard<FakeBinder>, relayed: SocketAddr) -> RelayId {
    *s.binder().bound.iter().find(|(_, a)| **a == relayed).expect("bound").0
}

/// ChannelData from the client on `channel`: where the shard sends it.
fn channel_data(s: &mut Shard<FakeBinder>, c: &Client, channel: u16, data: &[u8]) -> Action {
    let mut frame = vec![(channel >> 8) as u8, channel as u8, 0, data.len() as u8];
    frame.extend_from_slice(data);
    let mut out = [0u8; 2048];
    s.handle_client(T0, c.tuple, &frame, &mut out)
}

/// A datagram from `peer` arriving on relayed socket `relay`: what the client gets.
fn from_peer(s: &mut Shard<FakeBinder>, relay: RelayId, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4 + data.len()];
    buf[4..].copy_from_slice(data);
    let end = buf.len();
    let mut out = [0u8; 2048];
    match s.handle_peer(T0, relay, peer, &mut buf, 4..end, &mut out) {
        Action::None => None,
        Action::ToClient { payload: Payload::Input(r), .. } => Some(buf[r].to_vec()),
        Action::ToClient { payload: Payload::Output(n), .. } => Some(out[..n].to_vec()),
        other => panic!("peer data goes to the client, got {other:?}"),
    }
}

#[test]
fn a_dual_allocation_relays_each_family_through_its_own_relayed_address() {
    let mut s = dual_shard();
    let mut c = Client::new("198.51.100.20:5000", "dual");
    let (relay_v4, relay_v6) = allocate_dual(&mut s, &mut c);
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(s.stats().relayed_created, [1, 1]);
    let (p4, p6) = (addr(PEER_V4), addr(PEER_V6));
    assert_eq!(call(&mut s, T0, &mut c, Method::CHANNEL_BIND, channel_attrs(0x4001, p4)).class(), Class::Success);
    assert_eq!(call(&mut s, T0, &mut c, Method::CHANNEL_BIND, channel_attrs(0x4002, p6)).class(), Class::Success);
    let (id4, id6) = (relay_id_of(&s, relay_v4), relay_id_of(&s, relay_v6));
    match channel_data(&mut s, &c, 0x4001, b"four") {
        Action::ToPeer { relay, peer, .. } => assert_eq!((relay, peer), (id4, p4)),
        other => panic!("expected relaying over IPv4, got {other:?}"),
    }
    match channel_data(&mut s, &c, 0x4002, b"six") {
        Action::ToPeer { relay, peer, .. } => assert_eq!((relay, peer), (id6, p6)),
        other => panic!("expected relaying over IPv6, got {other:?}"),
    }
    // Back from each peer on its family's socket, framed on its channel.
    assert_eq!(from_peer(&mut s, id6, p6, b"v6").unwrap(), [&[0x40, 0x02, 0, 2][..], b"v6"].concat());
    assert_eq!(from_peer(&mut s, id4, p4, b"v4").unwrap(), [&[0x40, 0x01, 0, 2][..], b"v4"].concat());

    // Send indications and Data indications for a second IPv6 peer with a permission only.
    let p6b = addr("[2a00:1450:4001::2]:5");
    assert_eq!(call(&mut s, T0, &mut c, Method::CREATE_PERMISSION, peer_attr(p6b)).class(), Class::Success);
    let nonce = c.nonce.take();
    let txid = c.next_txid();
    let ind = c.build(Method::SEND, Class::Indication, txid, |w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, p6b).unwrap();
        w.bytes(attr::DATA, b"send").unwrap();
    });
    c.nonce = nonce;
    let mut out = [0u8; 2048];
    match s.handle_client(T0, c.tuple, &ind, &mut out) {
        Action::ToPeer { relay, peer, payload, .. } => {
            assert_eq!((relay, peer), (id6, p6b));
            assert_eq!(&ind[payload], b"send");
        }
        other => panic!("expected relaying over IPv6, got {other:?}"),
    }
    let data = from_peer(&mut s, id6, p6b, b"back").unwrap();
    let m = Message::decode(&data).unwrap();
    assert_eq!((m.method(), m.class()), (Method::DATA, Class::Indication));
    assert_eq!(codec::decode_xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap(), &m.transaction_id()), Some(p6b));
    // An IPv6 peer without a permission is dropped.
    assert!(from_peer(&mut s, id6, addr("[2a00:1450:4001::9]:5"), b"x").is_none());
}

#[test]
fn both_relayed_addresses_are_refreshed_and_ended_together() {
    let mut s = dual_shard();
    let mut c = Client::new("198.51.100.20:5000", "dual");
    let (relay_v4, relay_v6) = allocate_dual(&mut s, &mut c);
    let (id4, id6) = (relay_id_of(&s, relay_v4), relay_id_of(&s, relay_v6));
    // Naming either family in a Refresh refreshes the whole allocation.
    for family in [codec::FAMILY_IPV6, codec::FAMILY_IPV4] {
        let r = call(&mut s, T0, &mut c, Method::REFRESH, |w| {
            w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[family, 0, 0, 0]).unwrap();
            w.u32(attr::LIFETIME, 1200).unwrap();
        });
        assert_eq!(r.class(), Class::Success);
    }
    s.tick(T0.plus_secs(1199));
    assert_eq!(s.allocation_count(), 1, "the refresh extended the allocation");
    s.tick(T0.plus_secs(1201));
    assert_eq!(s.allocation_count(), 0);
    let mut released = s.binder().released.clone();
    released.sort();
    assert_eq!(released, [id4.min(id6), id4.max(id6)], "both sockets go back at expiry");

    // Deleting (lifetime 0) ends both as well.
    let mut c = Client::new("198.51.100.20:5001", "dual-2");
    let (relay_v4, relay_v6) = allocate_dual(&mut s, &mut c);
    let (id4, id6) = (relay_id_of(&s, relay_v4), relay_id_of(&s, relay_v6));
    let r = call(&mut s, T0, &mut c, Method::REFRESH, |w| {
        w.u32(attr::LIFETIME, 0).unwrap();
    });
    assert_eq!(r.class(), Class::Success);
    assert_eq!(s.allocation_count(), 0);
    assert!(s.binder().released.ends_with(&[id4, id6]) || s.binder().released.ends_with(&[id6, id4]));
    assert!(s.binder().bound.is_empty());
}

#[test]
fn a_dual_allocation_counts_once_against_the_quotas() {
    let mut s = dual_shard_with(config(), SharedQuotas::new(2, 0, 0));
    let mut first = Client::new("198.51.100.20:5000", "quota-user");
    allocate_dual(&mut s, &mut first);
    let mut second = Client::new("198.51.100.20:5001", "quota-user");
    allocate_dual(&mut s, &mut second);
    let mut third = Client::new("198.51.100.20:5002", "quota-user");
    assert_eq!(call(&mut s, T0, &mut third, Method::ALLOCATE, additional_v6).error_code(), Some(486));
    s.client_closed(&first.tuple);
    let mut fourth = Client::new("198.51.100.20:5003", "quota-user");
    allocate_dual(&mut s, &mut fourth);
}

#[test]
fn an_ipv6_allocation_from_an_ipv4_client_relays_over_ipv6_only() {
    let mut s = dual_shard();
    let mut c = Client::new("198.51.100.20:5000", "v6");
    let a = call(&mut s, T0, &mut c, Method::ALLOCATE, requested_v6);
    assert_eq!(a.class(), Class::Success);
    assert_eq!(relayed_addresses(&a), [addr("[2001:db8::1]:50000")]);
    assert_eq!(a.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(c.tuple.client));
    assert_eq!(call(&mut s, T0, &mut c, Method::CREATE_PERMISSION, peer_attr(addr(PEER_V4))).error_code(), Some(443));
    assert_eq!(call(&mut s, T0, &mut c, Method::CREATE_PERMISSION, peer_attr(addr(PEER_V6))).class(), Class::Success);
    let wrong = call(&mut s, T0, &mut c, Method::REFRESH, |w| {
        w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV4, 0, 0, 0]).unwrap();
    });
    assert_eq!(wrong.error_code(), Some(443), "an IPv6-only allocation has no IPv4 address to refresh");
    assert_eq!(s.stats().relayed_created, [0, 1]);
}

#[test]
fn an_ipv6_client_gets_an_ipv4_allocation_by_default_and_ipv6_when_asked() {
    let mut s = dual_shard();
    let mut c = Client::new("[2001:db8:1::20]:5000", "from-v6");
    let a = call(&mut s, T0, &mut c, Method::ALLOCATE, requested_udp);
    assert_eq!(relayed_addresses(&a), [addr("203.0.113.1:50000")]);
    assert_eq!(a.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(c.tuple.client));
    let mut c = Client::new("[2001:db8:1::20]:5001", "from-v6");
    let a = call(&mut s, T0, &mut c, Method::ALLOCATE, requested_v6);
    assert!(relayed_addresses(&a)[0].is_ipv6());
}

#[test]
fn a_family_the_relay_does_not_serve_is_440_or_an_address_error_in_a_dual_answer() {
    // IPv6-only relay: a dual request gets the IPv6 address and ADDRESS-ERROR-CODE 440 for IPv4.
    let mut s = dual_shard();
    s.binder_mut().no_v4 = true;
    let mut c = Client::new("198.51.100.20:5000", "x");
    let a = call(&mut s, T0, &mut c, Method::ALLOCATE, additional_v6);
    assert_eq!(a.class(), Class::Success);
    assert_eq!(relayed_addresses(&a), [addr("[2001:db8::1]:50000")]);
    assert_eq!(address_error(&a), Some((codec::FAMILY_IPV4, 440)));
    // A plain (IPv4) request there is 440, and counted.
    let mut c = Client::new("198.51.100.20:5001", "x");
    assert_eq!(call(&mut s, T0, &mut c, Method::ALLOCATE, requested_udp).error_code(), Some(440));
    assert_eq!(s.stats().alloc_failures[AllocFailure::AddressFamily as usize], 1);
    assert_eq!(s.allocation_count(), 1);

    // Neither family bindable (no ports at all): 508, nothing held.
    let mut s = dual_shard_with(config(), SharedQuotas::new(1, 0, 0));
    s.binder_mut().exhausted = true;
    let mut c = Client::new("198.51.100.20:5002", "y");
    assert_eq!(call(&mut s, T0, &mut c, Method::ALLOCATE, additional_v6).error_code(), Some(508));
    s.binder_mut().exhausted = false;
    allocate_dual(&mut s, &mut c);
}

#[test]
fn malformed_family_attributes_are_400_and_change_nothing() {
    let mut s = dual_shard_with(config(), SharedQuotas::new(1, 0, 0));
    let malformed: [&dyn Fn(&mut MessageWriter<'_>); 5] = [
        &|w| {
            requested_udp(w);
            w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0]).unwrap();
        },
        &|w| {
            requested_udp(w);
            w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[0x07, 0, 0, 0]).unwrap();
        },
        &|w| {
            requested_udp(w);
            w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0]).unwrap();
        },
        &|w| {
            requested_udp(w);
            w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
            w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
        },
        &|w| {
            additional_v6(w);
            w.bytes(attr::RESERVATION_TOKEN, &[1; 8]).unwrap();
        },
    ];
    for (i, attrs) in malformed.iter().enumerate() {
        let mut c = Client::new(&format!("198.51.100.20:{}", 6000 + i), "same-user");
        assert_eq!(call(&mut s, T0, &mut c, Method::ALLOCATE, attrs).error_code(), Some(400), "case {i}");
    }
    assert_eq!(s.allocation_count(), 0);
    assert!(s.binder().bound.is_empty());
    assert_eq!(s.stats().alloc_failures[AllocFailure::BadRequest as usize], malformed.len() as u64);
    // The user's one allocation is still available: no quota was taken.
    allocate_dual(&mut s, &mut Client::new("198.51.100.20:7000", "same-user"));
}

#[test]
fn a_retransmitted_dual_allocate_gets_both_addresses_again() {
    let mut s = dual_shard();
    s.binder_mut().no_v4 = true;
    let mut c = Client::new("198.51.100.20:5000", "x");
    learn_nonce(&mut s, T0, &mut c);
    let txid = c.next_txid();
    let req = c.build(Method::ALLOCATE, Class::Request, txid, additional_v6);
    let first = send(&mut s, T0, &c, &req).unwrap();
    let again = send(&mut s, T0, &c, &req).unwrap();
    assert_eq!(relayed_addresses(&again), relayed_addresses(&first));
    assert_eq!(address_error(&again), Some((codec::FAMILY_IPV4, 440)));

    let mut s = dual_shard();
    let mut c = Client::new("198.51.100.20:5000", "x");
    learn_nonce(&mut s, T0, &mut c);
    let txid = c.next_txid();
    let req = c.build(Method::ALLOCATE, Class::Request, txid, additional_v6);
    let first = send(&mut s, T0, &c, &req).unwrap();
    let again = send(&mut s, T0, &c, &req).unwrap();
    assert_eq!(relayed_addresses(&first).len(), 2);
    assert_eq!(relayed_addresses(&again), relayed_addresses(&first));
}

/// Two dual allocations on one shard whose relayed addresses the policy allows as peers (a
/// deployment's own relay addresses).
fn same_relay_dual_shard() -> Shard<FakeBinder> {
    let mut cfg = config();
    cfg.policy = PeerPolicy::new(vec!["203.0.113.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()], vec![]);
    dual_shard_with(cfg, SharedQuotas::new(0, 0, 0))
}

#[test]
fn same_relay_delivery_works_over_ipv6_between_dual_allocations() {
    let mut s = same_relay_dual_shard();
    let mut a = Client::new("198.51.100.20:5000", "leg-a");
    let mut b = Client::new("[2001:db8:1::30]:6000", "leg-b");
    let (a4, a6) = allocate_dual(&mut s, &mut a);
    let (_b4, b6) = allocate_dual(&mut s, &mut b);
    // A talks to B's IPv6 relayed address; B has a permission for A's IPv6 relayed address.
    assert_eq!(call(&mut s, T0, &mut a, Method::CHANNEL_BIND, channel_attrs(0x4001, b6)).class(), Class::Success);
    assert_eq!(call(&mut s, T0, &mut b, Method::CREATE_PERMISSION, peer_attr(a6)).class(), Class::Success);
    let mut out = [0u8; 2048];
    let frame = [0x40, 0x01, 0, 3, b'v', b'i', b'd'];
    let n = match s.handle_client(T0, a.tuple, &frame, &mut out) {
        Action::ToClient { tuple, payload: Payload::Output(n) } => {
            assert_eq!(tuple, b.tuple, "delivered straight to B's client");
            n
        }
        other => panic!("expected same-relay delivery, got {other:?}"),
    };
    let m = Message::decode(&out[..n]).unwrap();
    assert_eq!((m.method(), m.class()), (Method::DATA, Class::Indication));
    let from = codec::decode_xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap(), &m.transaction_id());
    assert_eq!(from, Some(a6), "B sees A's IPv6 relayed address, not {a4}");
    assert_eq!(m.get(attr::DATA), Some(&b"vid"[..]));
}

#[test]
fn coturns_pre_rfc_additional_address_family_code_point_is_read_too() {
    let mut s = dual_shard();
    let mut c = Client::new("198.51.100.20:5000", "coturn-client");
    let a = call(&mut s, T0, &mut c, Method::ALLOCATE, |w| {
        requested_udp(w);
        w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
    });
    assert_eq!(relayed_addresses(&a).len(), 2, "a dual allocation");
    let mut c = Client::new("198.51.100.20:5001", "coturn-client");
    let both = call(&mut s, T0, &mut c, Method::ALLOCATE, |w| {
        requested_v6(w);
        w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY_DRAFT, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
    });
    assert_eq!(both.error_code(), Some(400));
}

#[test]
fn the_default_family_can_follow_the_clients_as_coturns_keep_does() {
    let mut cfg = config();
    cfg.default_family = teletip_turn_proto::server::DefaultFamily::Keep;
    let mut s = dual_shard_with(cfg, SharedQuotas::new(0, 0, 0));
    let mut over_v6 = Client::new("[2001:db8:1::20]:5000", "chromium");
    let a = call(&mut s, T0, &mut over_v6, Method::ALLOCATE, requested_udp);
    assert!(relayed_addresses(&a)[0].is_ipv6(), "a client over IPv6 that names no family gets IPv6");
    let mut over_v4 = Client::new("198.51.100.20:5000", "chromium");
    let a = call(&mut s, T0, &mut over_v4, Method::ALLOCATE, requested_udp);
    assert!(relayed_addresses(&a)[0].is_ipv4());
    let mut dual = Client::new("[2001:db8:1::20]:5001", "chromium");
    allocate_dual(&mut s, &mut dual);
    // The default stays RFC 8656's: IPv4 for an IPv6 client that names no family.
    let mut s = dual_shard();
    let mut c = Client::new("[2001:db8:1::20]:5000", "rfc");
    assert!(relayed_addresses(&call(&mut s, T0, &mut c, Method::ALLOCATE, requested_udp))[0].is_ipv4());
}
