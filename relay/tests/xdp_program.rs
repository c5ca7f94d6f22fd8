//! The XDP program on crafted packets (BPF_PROG_TEST_RUN): what it relays, how it rewrites
//! addresses, ports, the channel header and both checksums, and that everything it does not
//! own comes back XDP_PASS byte for byte. The maps are written here directly, as the relay's
//! mirror writes them (`relay/src/xdp/mirror.rs`; the daemon tests in `xdp_netns.rs` cover that
//! path). The FIB lookups resolve in a network namespace of the test's own with permanent
//! neighbours, so the program's whole path runs. Root only: skipped with a message otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

mod support;
use support::xdp::{can_run, channel_data, ip, padded_channel_data, padding_for};

use teletip_relay::xdp::Offload;
use teletip_relay::xdp::maps::{
    Addr, AllocVal, C2pKey, C2pVal, Counters, MAX_ALLOCS, Maps, P2cKey, P2cVal, PermKey, PermVal, UNLIMITED, bytes_of,
};
use teletip_relay::xdp::mirror::monotonic_ns;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const CLIENT2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Forwarding on for every interface of namespace `ns`, both families.
fn forwarding(ns: &str) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv6.conf.all.forwarding=1",
        ])
        .output()
        .expect("sysctl is installed (procps)");
    assert!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace that the calling thread enters, with x0 (10.99.0.1/24, fd99::1/64)
/// and permanent neighbours: .2 / ::2 the peer, .3 / ::3 the client, .4 / ::4 a second client.
/// Deleted on drop.
struct Namespace(String);

impl Namespace {
    fn enter(test: &str) -> Namespace {
        let name = format!("ttxdp-{}-{test}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(std::process::Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Namespace(name.clone());
        let n = name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        // bpf_fib_lookup answers only where forwarding is on (BPF_PROG_TEST_RUN's packets come
        // in on lo).
        forwarding(n);
        ip(&["-n", n, "link", "add", "x0", "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", "x1"]);
        ip(&["-n", n, "addr", "add", "10.99.0.1/24", "dev", "x0"]);
        ip(&["-n", n, "addr", "add", "fd99::1/64", "dev", "x0", "nodad"]);
        ip(&["-n", n, "link", "set", "x0", "up"]);
        ip(&["-n", n, "link", "set", "x1", "up"]);
        for (v4, v6, mac) in [
            ("10.99.0.2", "fd99::2", "02:00:00:00:00:02"),
            ("10.99.0.3", "fd99::3", "02:00:00:00:00:03"),
            ("10.99.0.4", "fd99::4", "02:00:00:00:00:04"),
        ] {
            for addr in [v4, v6] {
                ip(&["-n", n, "neigh", "add", addr, "lladdr", mac, "dev", "x0", "nud", "permanent"]);
            }
        }
        let file = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
        // SAFETY: a valid namespace descriptor; setns changes only this thread's namespace,
        // and each test runs on a thread of its own.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

// ---- packets -------------------------------------------------------------------------------

fn sum16(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn pseudo(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, 17]);
            p.extend((udp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend((udp_len as u32).to_be_bytes());
            p.extend([0, 0, 0, 17]);
        }
        _ => unreachable!(),
    }
    p
}

/// Ethernet + IPv4 or IPv6 + UDP with correct checksums, from `src` to `dst`.
fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::new();
    udp.extend(src.port().to_be_bytes());
    udp.extend(dst.port().to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut c = !fold(sum16(&pseudo(src.ip(), dst.ip(), udp_len)) + sum16(&udp));
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut p = Vec::new();
    p.extend(IF_MAC);
    p.extend([0x02, 0, 0, 0, 0, 0x99]);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend([0x08, 0x00]);
            let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 61, 17, 0, 0];
            h[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            h.extend(s.octets());
            h.extend(d.octets());
            let hc = !fold(sum16(&h));
            h[10..12].copy_from_slice(&hc.to_be_bytes());
            p.extend(h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend([0x86, 0xdd]);
            p.extend([0x60, 0, 0, 0]);
            p.extend((udp_len as u16).to_be_bytes());
            p.extend([17, 61]);
            p.extend(s.octets());
            p.extend(d.octets());
        }
        _ => unreachable!(),
    }
    p.extend(udp);
    p
}

/// A parsed output packet, its checksums verified from scratch (independently of the
/// program's incremental arithmetic).
#[derive(Debug)]
struct Parsed {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    tos: u8,
    payload: Vec<u8>,
    udp_checksum: u16,
}

fn parse(p: &[u8]) -> Parsed {
    let dst_mac: [u8; 6] = p[0..6].try_into().unwrap();
    let src_mac: [u8; 6] = p[6..12].try_into().unwrap();
    let (src_ip, dst_ip, l4, ttl, tos): (IpAddr, IpAddr, usize, u8, u8) = match u16::from_be_bytes([p[12], p[13]]) {
        0x0800 => {
            let h = &p[14..34];
            assert_eq!(fold(sum16(h)), 0xffff, "IPv4 header checksum");
            let tot = u16::from_be_bytes([h[2], h[3]]) as usize;
            assert_eq!(tot, p.len() - 14, "IPv4 total length");
            let s = Ipv4Addr::from(<[u8; 4]>::try_from(&h[12..16]).unwrap());
            let d = Ipv4Addr::from(<[u8; 4]>::try_from(&h[16..20]).unwrap());
            (s.into(), d.into(), 34, h[8], h[1])
        }
        0x86dd => {
            let h = &p[14..54];
            assert_eq!(u16::from_be_bytes([h[4], h[5]]) as usize, p.len() - 54, "IPv6 payload length");
            let s = Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).unwrap());
            let d = Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap());
            let tc = (h[0] << 4) | (h[1] >> 4);
            (s.into(), d.into(), 54, h[7], tc)
        }
        other => panic!("ethertype {other:#x}"),
    };
    let udp = &p[l4..];
    let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    assert_eq!(ulen, udp.len(), "UDP length");
    let udp_checksum = u16::from_be_bytes([udp[6], udp[7]]);
    if udp_checksum != 0 {
        assert_eq!(fold(sum16(&pseudo(src_ip, dst_ip, ulen)) + sum16(udp)), 0xffff, "UDP checksum");
    }
    Parsed {
        dst_mac,
        src_mac,
        src: SocketAddr::new(src_ip, u16::from_be_bytes([udp[0], udp[1]])),
        dst: SocketAddr::new(dst_ip, u16::from_be_bytes([udp[2], udp[3]])),
        ttl,
        tos,
        payload: udp[8..].to_vec(),
        udp_checksum,
    }
}

// ---- the maps, as the mirror writes them ----------------------------------------------------

const SECOND: u64 = 1_000_000_000;
const TOS_EF: u8 = 46 << 2;

struct Grant {
    slot: u32,
    client: SocketAddr,
    server: SocketAddr,
    relay: SocketAddr,
}

fn allocation(maps: &Maps, slot: u32, expires_ns: u64, budget: u64) {
    Maps::put(&maps.allocs, &slot, &AllocVal { expires_ns, granted: budget, tos: TOS_EF, pad: [0; 7] }).unwrap();
}

fn permission(maps: &Maps, slot: u32, peer: IpAddr, expires_ns: u64) {
    Maps::put(&maps.perms, &PermKey { alloc: slot, ip: Addr::ip_bytes(peer) }, &PermVal { expires_ns }).unwrap();
}

fn channel(maps: &Maps, g: &Grant, number: u16, peer: SocketAddr, expires_ns: u64) {
    let key = C2pKey { client: Addr::new(g.client), server: Addr::new(g.server), channel: number, pad: 0 };
    let value = C2pVal {
        peer: Addr::new(peer),
        relay: Addr::new(g.relay),
        relay_seen: Addr::new(g.relay),
        alloc: g.slot,
        pad: [0; 2],
        expires_ns,
    };
    Maps::put(&maps.c2p, &key, &value).unwrap();
    let key = P2cKey { relay: Addr::new(g.relay), peer: Addr::new(peer) };
    let value = P2cVal {
        client: Addr::new(g.client),
        server: Addr::new(g.server),
        channel: number,
        pad: 0,
        alloc: g.slot,
        expires_ns,
    };
    Maps::put(&maps.p2c, &key, &value).unwrap();
}

/// One allocation with a live channel 0x4001 to `peer` and a permission for it.
fn granted(maps: &Maps, g: &Grant, peer: SocketAddr) {
    let later = monotonic_ns() + 60 * SECOND;
    allocation(maps, g.slot, later, UNLIMITED);
    permission(maps, g.slot, peer.ip(), later);
    channel(maps, g, 0x4001, peer, later);
}

fn v4_grant() -> (Grant, SocketAddr) {
    let g =
        Grant { slot: 7, client: sa("10.99.0.3:40000"), server: sa("10.99.0.1:3478"), relay: sa("10.99.0.1:50000") };
    (g, sa("10.99.0.2:7000"))
}

fn v6_grant() -> (Grant, SocketAddr) {
    let g =
        Grant { slot: 9, client: sa("[fd99::3]:40000"), server: sa("[fd99::1]:3478"), relay: sa("[fd99::1]:50000") };
    (g, sa("[fd99::2]:7000"))
}

fn assert_passed(offload: &Offload, packet: &[u8], why: &str) {
    let (verdict, out) = offload.test_run(packet).unwrap();
    assert_eq!(verdict, XDP_PASS, "{why}: passed up");
    assert_eq!(out, packet, "{why}: unchanged");
}

// ---- the tests ------------------------------------------------------------------------------

fn client_to_peer_and_back(g: Grant, peer: SocketAddr) {
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    granted(&maps, &g, peer);
    // Odd and even lengths: the checksum's last word is padded differently.
    for data in [&b"hello"[..], &b"media!"[..], &[0u8; 1200][..], &b""[..]] {
        let (verdict, out) = offload.test_run(&udp_packet(g.client, g.server, &channel_data(0x4001, data))).unwrap();
        assert_eq!(verdict, XDP_REDIRECT, "relayed out of x0");
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (g.relay, peer), "from the relayed address to the peer");
        assert_eq!(p.payload, data, "the channel header is stripped");
        assert_eq!((p.dst_mac, p.src_mac), (PEER_MAC, IF_MAC), "the FIB's neighbour and x0's address");
        assert_eq!((p.ttl, p.tos), (64, TOS_EF), "as the relay's own sockets send");
        assert_ne!(p.udp_checksum, 0);

        let (verdict, out) = offload.test_run(&udp_packet(peer, g.relay, data)).unwrap();
        assert_eq!(verdict, XDP_REDIRECT);
        let p = parse(&out);
        assert_eq!((p.src, p.dst), (g.server, g.client), "from the listener to the client");
        assert_eq!(p.payload, channel_data(0x4001, data), "in ChannelData on the bound channel");
        assert_eq!(p.dst_mac, CLIENT_MAC);
    }
    let total = 5 + 6 + 1200;
    assert_eq!(
        maps.counters(g.slot).unwrap(),
        Counters { c2p_packets: 4, c2p_bytes: total, p2c_packets: 4, p2c_bytes: total },
        "counted as user space counts: application bytes"
    );
}

#[test]
fn ipv4_channel_data_is_relayed_both_ways_with_valid_checksums() {
    if !can_run("ipv4_channel_data_is_relayed_both_ways_with_valid_checksums", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("v4");
    let (g, peer) = v4_grant();
    client_to_peer_and_back(g, peer);
}

#[test]
fn ipv6_channel_data_is_relayed_both_ways_with_valid_checksums() {
    if !can_run("ipv6_channel_data_is_relayed_both_ways_with_valid_checksums", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("v6");
    let (g, peer) = v6_grant();
    client_to_peer_and_back(g, peer);
}

#[test]
fn an_ipv4_datagram_without_udp_checksum_keeps_none() {
    if !can_run("an_ipv4_datagram_without_udp_checksum_keeps_none", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("nocsum");
    let offload = Offload::load().unwrap();
    let (g, peer) = v4_grant();
    granted(&offload.maps(), &g, peer);
    let mut packet = udp_packet(g.client, g.server, &channel_data(0x4001, b"abc"));
    packet[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let (verdict, out) = offload.test_run(&packet).unwrap();
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(parse(&out).udp_checksum, 0);
}

#[test]
fn the_same_relay_short_circuit_swaps_channel_and_addresses() {
    if !can_run("the_same_relay_short_circuit_swaps_channel_and_addresses", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("short");
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    let a =
        Grant { slot: 1, client: sa("10.99.0.3:40000"), server: sa("10.99.0.1:3478"), relay: sa("10.99.0.1:50000") };
    let b =
        Grant { slot: 2, client: sa("10.99.0.4:41000"), server: sa("10.99.0.1:3478"), relay: sa("10.99.0.1:50002") };
    let later = monotonic_ns() + 60 * SECOND;
    for (from, to, number) in [(&a, &b, 0x4001), (&b, &a, 0x4abc)] {
        allocation(&maps, from.slot, later, UNLIMITED);
        permission(&maps, from.slot, to.relay.ip(), later);
        channel(&maps, from, number, to.relay, later);
    }
    let (verdict, out) = offload.test_run(&udp_packet(a.client, a.server, &channel_data(0x4001, b"to b"))).unwrap();
    assert_eq!(verdict, XDP_REDIRECT);
    let p = parse(&out);
    assert_eq!((p.src, p.dst), (b.server, b.client), "straight to B's client");
    assert_eq!(p.payload, channel_data(0x4abc, b"to b"), "on B's channel for A's relayed address");
    assert_eq!(p.dst_mac, CLIENT2_MAC);
    assert_eq!(maps.counters(a.slot).unwrap().c2p_bytes, 4, "A sent");
    assert_eq!(maps.counters(b.slot).unwrap().p2c_bytes, 4, "B received");

    // B without a permission for A: user space decides (it drops, as the kernel path would).
    Maps::remove(&maps.perms, &PermKey { alloc: b.slot, ip: Addr::ip_bytes(a.relay.ip()) }).unwrap();
    assert_passed(
        &offload,
        &udp_packet(a.client, a.server, &channel_data(0x4001, b"to b")),
        "receiver lacks permission",
    );
}

#[test]
fn nothing_user_space_would_refuse_is_relayed() {
    if !can_run("nothing_user_space_would_refuse_is_relayed", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("refuse");
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    let (g, peer) = v4_grant();
    let to_peer = udp_packet(g.client, g.server, &channel_data(0x4001, b"x"));
    let from_peer = udp_packet(peer, g.relay, b"y");
    let now = monotonic_ns();
    let later = now + 60 * SECOND;

    assert_passed(&offload, &to_peer, "nothing written yet");
    granted(&maps, &g, peer);
    assert_eq!(offload.test_run(&to_peer).unwrap().0, XDP_REDIRECT, "granted");

    permission(&maps, g.slot, peer.ip(), now.saturating_sub(1));
    assert_passed(&offload, &to_peer, "expired permission, client to peer");
    assert_passed(&offload, &from_peer, "expired permission, peer to client");
    Maps::remove(&maps.perms, &PermKey { alloc: g.slot, ip: Addr::ip_bytes(peer.ip()) }).unwrap();
    assert_passed(&offload, &to_peer, "no permission");
    permission(&maps, g.slot, peer.ip(), later);

    channel(&maps, &g, 0x4001, peer, now.saturating_sub(1));
    assert_passed(&offload, &to_peer, "expired channel");
    assert_passed(&offload, &from_peer, "expired channel, peer side (user space sends a Data indication)");
    channel(&maps, &g, 0x4001, peer, later);

    allocation(&maps, g.slot, now.saturating_sub(1), UNLIMITED);
    assert_passed(&offload, &to_peer, "expired allocation");
    allocation(&maps, g.slot, 0, UNLIMITED);
    assert_passed(&offload, &from_peer, "ended allocation");

    allocation(&maps, g.slot, later, 0);
    assert_passed(&offload, &to_peer, "bandwidth cap, no lease: user space's bucket decides");
    allocation(&maps, g.slot, later, 3);
    assert_eq!(offload.test_run(&to_peer).unwrap().0, XDP_REDIRECT, "1 byte of a 3-byte lease");
    assert_passed(&offload, &udp_packet(g.client, g.server, &channel_data(0x4001, b"xyz")), "3 bytes of 2 left");
    assert_eq!(maps.spent(g.slot).unwrap(), 1, "what failed is not drawn");
    assert_eq!(
        offload.test_run(&udp_packet(g.client, g.server, &channel_data(0x4001, b"xy"))).unwrap().0,
        XDP_REDIRECT
    );
    assert_passed(&offload, &to_peer, "the lease is used up");
    allocation(&maps, g.slot, later, UNLIMITED);

    assert_passed(&offload, &udp_packet(g.client, g.server, &channel_data(0x4002, b"x")), "unknown channel");
    assert_passed(
        &offload,
        &udp_packet(sa("10.99.0.4:40000"), g.server, &channel_data(0x4001, b"x")),
        "another client",
    );
    assert_passed(&offload, &udp_packet(sa("10.99.0.2:7001"), g.relay, b"y"), "a port without a channel");
    let counted = maps.counters(g.slot).unwrap();
    assert_eq!((counted.c2p_packets, counted.p2c_packets), (3, 0), "only what was relayed is counted");
}

#[test]
fn what_the_program_does_not_own_passes_up_unchanged() {
    if !can_run("what_the_program_does_not_own_passes_up_unchanged", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("notours");
    let offload = Offload::load().unwrap();
    let (g, peer) = v4_grant();
    granted(&offload.maps(), &g, peer);
    let cd = channel_data(0x4001, b"hello");

    // STUN (a Refresh, a Send indication) from the client.
    let mut stun = vec![0x00, 0x04, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    assert_passed(&offload, &udp_packet(g.client, g.server, &stun), "STUN");
    let mut send = vec![0x00, 0x16, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    send.extend([7u8; 12]);
    assert_passed(&offload, &udp_packet(g.client, g.server, &send), "Send indication");
    // Surplus bytes that are not the padding RFC 8656 allows: user space reads the length
    // (padded_channel_data_is_relayed_without_its_padding for the padding it allows).
    assert_passed(
        &offload,
        &udp_packet(g.client, g.server, &padded_channel_data(0x4001, b"hello", 1, 0)),
        "1 byte of surplus after 5",
    );
    // A length that claims more than the datagram holds.
    let mut short = cd.clone();
    short.truncate(6);
    assert_passed(&offload, &udp_packet(g.client, g.server, &short), "truncated ChannelData");

    let good = udp_packet(g.client, g.server, &cd);
    let mut fragment = good.clone();
    fragment[14 + 6] |= 0x20; // More Fragments
    assert_passed(&offload, &fragment, "a first fragment");
    let mut later_fragment = good.clone();
    later_fragment[14 + 7] = 0x10; // fragment offset
    assert_passed(&offload, &later_fragment, "a later fragment");
    let mut options = good.clone();
    options[14] = 0x46; // IHL 6: one word of options
    assert_passed(&offload, &options, "IP options");
    let mut tcp = good.clone();
    tcp[14 + 9] = 6;
    assert_passed(&offload, &tcp, "TCP");
    let mut vlan = good.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_passed(&offload, &vlan, "a VLAN tag");
    assert_passed(&offload, &good[..good.len() - 2], "a frame shorter than its IP length");

    let (g6, peer6) = v6_grant();
    granted(&offload.maps(), &g6, peer6);
    let good6 = udp_packet(g6.client, g6.server, &cd);
    assert_eq!(offload.test_run(&good6).unwrap().0, XDP_REDIRECT);
    let mut ext = good6.clone();
    ext[14 + 6] = 44; // a Fragment extension header
    assert_passed(&offload, &ext, "an IPv6 extension header");
    let mut zero = good6.clone();
    zero[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]);
    assert_passed(&offload, &zero, "IPv6 without UDP checksum");
    // A leg that changes family (IPv6 client, IPv4 peer) is user space's.
    channel(&offload.maps(), &g6, 0x4002, peer, monotonic_ns() + 60 * SECOND);
    permission(&offload.maps(), g6.slot, peer.ip(), monotonic_ns() + 60 * SECOND);
    assert_passed(&offload, &udp_packet(g6.client, g6.server, &channel_data(0x4002, b"x")), "IPv6 to IPv4");
}

/// ChannelData with the padding RFC 8656 §12.5 allows over UDP (to a multiple of 4), relayed
/// by the kernel without it, its bytes ignored whatever they hold; checksums verified from
/// scratch by `parse`.
fn padded_client_to_peer(g: Grant, peer: SocketAddr) {
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    granted(&maps, &g, peer);
    let mut total = 0;
    // Lengths 1, 2 and 3 mod 4 (3, 2 and 1 bytes of padding), odd and even, a full-size one and
    // a multiple of 4 (no padding: as before).
    for (n, len) in [1usize, 2, 3, 5, 6, 7, 8, 1199].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + n) as u8).collect();
        for fill in [0x00, 0xff, 0xa5] {
            let sent = padded_channel_data(0x4001, &data, padding_for(len), fill);
            assert_eq!(sent.len() % 4, 0);
            let (verdict, out) = offload.test_run(&udp_packet(g.client, g.server, &sent)).unwrap();
            assert_eq!(verdict, XDP_REDIRECT, "{len} bytes padded with {fill:#x}: relayed");
            let p = parse(&out);
            assert_eq!((p.src, p.dst), (g.relay, peer));
            assert_eq!(p.payload, data, "{len} bytes padded with {fill:#x}: header and padding gone");
            assert_ne!(p.udp_checksum, 0);
            total += len as u64;
        }
    }
    assert_eq!(
        maps.counters(g.slot).unwrap(),
        Counters { c2p_packets: 24, c2p_bytes: total, p2c_packets: 0, p2c_bytes: 0 },
        "the data counted, not the padding"
    );

    // Not the padding the RFC allows: up, byte for byte.
    for (len, pad, why) in [
        (5, 1, "too little padding after 5"),
        (5, 2, "too little padding after 5"),
        (5, 4, "too much padding after 5"),
        (6, 1, "too little padding after 6"),
        (6, 3, "too much padding after 6"),
        (7, 2, "too much padding after 7"),
        (8, 4, "4 bytes of padding after 8"),
        (8, 1, "padding after 8"),
        (0, 4, "4 bytes of padding after nothing"),
        (1, 7, "3 bytes of padding and 4 more after 1"),
    ] {
        let sent = padded_channel_data(0x4001, &vec![9u8; len], pad, 0);
        assert_passed(&offload, &udp_packet(g.client, g.server, &sent), why);
    }
    assert_eq!(maps.counters(g.slot).unwrap().c2p_packets, 24, "nothing of those counted");
}

#[test]
fn ipv4_padded_channel_data_is_relayed_without_its_padding() {
    if !can_run("ipv4_padded_channel_data_is_relayed_without_its_padding", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("pad4");
    let (g, peer) = v4_grant();
    padded_client_to_peer(g, peer);
}

#[test]
fn ipv6_padded_channel_data_is_relayed_without_its_padding() {
    if !can_run("ipv6_padded_channel_data_is_relayed_without_its_padding", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("pad6");
    let (g, peer) = v6_grant();
    padded_client_to_peer(g, peer);
}

#[test]
fn padded_channel_data_without_udp_checksum_and_short_circuited() {
    if !can_run("padded_channel_data_without_udp_checksum_and_short_circuited", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("padmore");
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    let (g, peer) = v4_grant();
    granted(&maps, &g, peer);
    let mut packet = udp_packet(g.client, g.server, &padded_channel_data(0x4001, b"abcde", 3, 0xee));
    packet[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let (verdict, out) = offload.test_run(&packet).unwrap();
    assert_eq!(verdict, XDP_REDIRECT);
    let p = parse(&out);
    assert_eq!((p.payload.as_slice(), p.udp_checksum), (&b"abcde"[..], 0), "trimmed, still no checksum");

    // Client to client on one relay: the channel swapped, the padding dropped (the socket path
    // does not pad over UDP either), both families.
    let later = monotonic_ns() + 60 * SECOND;
    let pairs = [
        (
            Grant {
                slot: 1,
                client: sa("10.99.0.3:40000"),
                server: sa("10.99.0.1:3478"),
                relay: sa("10.99.0.1:50000"),
            },
            Grant {
                slot: 2,
                client: sa("10.99.0.4:41000"),
                server: sa("10.99.0.1:3478"),
                relay: sa("10.99.0.1:50002"),
            },
        ),
        (
            Grant {
                slot: 3,
                client: sa("[fd99::3]:40000"),
                server: sa("[fd99::1]:3478"),
                relay: sa("[fd99::1]:50000"),
            },
            Grant {
                slot: 4,
                client: sa("[fd99::4]:41000"),
                server: sa("[fd99::1]:3478"),
                relay: sa("[fd99::1]:50002"),
            },
        ),
    ];
    for (a, b) in &pairs {
        for (from, to, number) in [(a, b, 0x4001), (b, a, 0x4abc)] {
            allocation(&maps, from.slot, later, UNLIMITED);
            permission(&maps, from.slot, to.relay.ip(), later);
            channel(&maps, from, number, to.relay, later);
        }
        for data in [&b"to b!"[..], b"to b!!", b"to b!!!"] {
            let sent = padded_channel_data(0x4001, data, padding_for(data.len()), 0x5a);
            let (verdict, out) = offload.test_run(&udp_packet(a.client, a.server, &sent)).unwrap();
            assert_eq!(verdict, XDP_REDIRECT);
            let p = parse(&out);
            assert_eq!((p.src, p.dst), (b.server, b.client), "straight to B's client");
            assert_eq!(p.payload, channel_data(0x4abc, data), "on B's channel, unpadded");
            assert_eq!(p.dst_mac, CLIENT2_MAC);
        }
        assert_eq!(maps.counters(a.slot).unwrap().c2p_bytes, 18, "A sent the data, not the padding");
        assert_eq!(maps.counters(b.slot).unwrap().p2c_bytes, 18, "B received the data");
        assert_passed(
            &offload,
            &udp_packet(a.client, a.server, &padded_channel_data(0x4001, b"to b!", 1, 0)),
            "short circuit, too little padding",
        );
    }
}

/// A NIC delivers a short frame padded to Ethernet's 60 bytes: the bytes after the IP packet
/// are not the ChannelData's padding. The program trims by the IP length, so what it sends is
/// right by its IP and UDP lengths, whatever trailer is left behind them.
#[test]
fn padded_channel_data_in_a_frame_with_an_ethernet_trailer() {
    if !can_run("padded_channel_data_in_a_frame_with_an_ethernet_trailer", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("trailer");
    let offload = Offload::load().unwrap();
    let (g, peer) = v4_grant();
    granted(&offload.maps(), &g, peer);
    let mut frame = udp_packet(g.client, g.server, &padded_channel_data(0x4001, b"z", 3, 0x77));
    assert_eq!(frame.len(), 50);
    frame.resize(60, 0);
    let (verdict, out) = offload.test_run(&frame).unwrap();
    assert_eq!(verdict, XDP_REDIRECT);
    let tot = usize::from(u16::from_be_bytes([out[16], out[17]]));
    assert_eq!(tot, 20 + 8 + 1, "the IP packet: headers and the one byte of data");
    assert!(out.len() >= 14 + tot, "the frame holds the IP packet");
    let p = parse(&out[..14 + tot]);
    assert_eq!((p.src, p.dst, p.payload.as_slice()), (g.relay, peer, &b"z"[..]));
}

#[test]
fn a_destination_without_a_resolved_neighbour_goes_up() {
    if !can_run("a_destination_without_a_resolved_neighbour_goes_up", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("noneigh");
    let offload = Offload::load().unwrap();
    let g =
        Grant { slot: 3, client: sa("10.99.0.3:40000"), server: sa("10.99.0.1:3478"), relay: sa("10.99.0.1:50000") };
    // 10.99.0.77 is on x0's subnet but has no neighbour entry: the socket path resolves it.
    let peer = sa("10.99.0.77:7000");
    granted(&offload.maps(), &g, peer);
    assert_passed(&offload, &udp_packet(g.client, g.server, &channel_data(0x4001, b"x")), "unresolved neighbour");
    assert_eq!(offload.maps().counters(g.slot).unwrap(), Counters::default(), "nothing counted");
}

/// The program's own cost per datagram (BPF_PROG_TEST_RUN, 200,000 runs timed in the kernel:
/// neither the receive path before it nor the transmit after), for docs/performance.md: `cargo test --release -p teletip-relay --test
/// xdp_program -- --ignored --nocapture program_cost`.
#[test]
#[ignore = "a measurement, not a check: run by hand (docs/performance.md, The XDP offload)"]
fn program_cost() {
    if !can_run("program_cost", "BPF_PROG_TEST_RUN needs root") {
        return;
    }
    let _ns = Namespace::enter("cost");
    let offload = Offload::load().unwrap();
    let (g, peer) = v4_grant();
    granted(&offload.maps(), &g, peer);
    let (g6, peer6) = v6_grant();
    granted(&offload.maps(), &g6, peer6);
    let payload = [0u8; 160];
    let cases = [
        ("ipv4 client to peer", udp_packet(g.client, g.server, &channel_data(0x4001, &payload))),
        ("ipv4 peer to client", udp_packet(peer, g.relay, &payload)),
        ("ipv6 client to peer", udp_packet(g6.client, g6.server, &channel_data(0x4001, &payload))),
        // 161 bytes padded to 164, as pion sends it: the tail read and bpf_xdp_adjust_tail on top.
        (
            "ipv4 client to peer, padded",
            udp_packet(g.client, g.server, &padded_channel_data(0x4001, &[0u8; 161], 3, 0)),
        ),
        (
            "ipv6 client to peer, padded",
            udp_packet(g6.client, g6.server, &padded_channel_data(0x4001, &[0u8; 161], 3, 0)),
        ),
        ("ipv4 not ours (STUN)", udp_packet(g.client, g.server, &[0u8; 20])),
    ];
    for (name, packet) in cases {
        let (verdict, _) = offload.test_run(&packet).unwrap();
        let mean = offload.mean_run_time(&packet, 200_000).unwrap();
        println!("RESULT xdp-program {name}: verdict {verdict}, {} ns per datagram", mean.as_nanos());
    }
}

/// The relay's once-a-second fold reads a worker's counters in one batch (`Maps::counters_of`,
/// used by `Mirror::collect`): the same sums over the CPUs as one lookup per slot, for a span in
/// the middle of the map, from slot 0 and up to its last slot. The time both ways take for 100,
/// 1,000 and 10,000 slots is printed (`--nocapture`).
#[test]
fn counters_read_in_one_batch_equal_those_read_slot_by_slot() {
    if !can_run("counters_read_in_one_batch_equal_those_read_slot_by_slot", "loading the program needs root") {
        return;
    }
    let offload = Offload::load().unwrap();
    let maps = offload.maps();
    let cpus = libbpf_rs::num_possible_cpus().unwrap();
    let count = |slot: u32, cpu: usize, field: u64| u64::from(slot) * 1000 + cpu as u64 * 10 + field;
    let written: Vec<u32> = (0..10_000).chain(MAX_ALLOCS - 3..MAX_ALLOCS).collect();
    for &slot in &written {
        let per_cpu: Vec<Vec<u8>> = (0..cpus)
            .map(|cpu| {
                let c = Counters {
                    c2p_packets: count(slot, cpu, 1),
                    c2p_bytes: count(slot, cpu, 2),
                    p2c_packets: count(slot, cpu, 3),
                    p2c_bytes: count(slot, cpu, 4),
                };
                bytes_of(&c).to_vec()
            })
            .collect();
        libbpf_rs::MapCore::update_percpu(&maps.counters, &slot.to_ne_bytes(), &per_cpu, libbpf_rs::MapFlags::ANY)
            .unwrap();
    }
    let summed = |slot: u32, field: u64| (0..cpus).map(|cpu| count(slot, cpu, field)).sum::<u64>();
    for span in [0..10, 4321..5000, MAX_ALLOCS - 3..MAX_ALLOCS] {
        let batch = maps.counters_of(span.clone()).unwrap();
        assert_eq!(batch.len(), span.len());
        for (slot, got) in span.clone().zip(&batch) {
            assert_eq!(*got, maps.counters(slot).unwrap(), "slot {slot}: batch and single lookup agree");
            assert_eq!(got.c2p_packets, summed(slot, 1), "slot {slot}: summed over the CPUs");
            assert_eq!(got.p2c_bytes, summed(slot, 4), "slot {slot}");
        }
    }
    assert_eq!(maps.counters_of(10..10).unwrap(), Vec::new());
    for n in [100u32, 1000, 10_000] {
        let started = std::time::Instant::now();
        let one_by_one: Vec<Counters> = (0..n).map(|slot| maps.counters(slot).unwrap()).collect();
        let singles = started.elapsed();
        let started = std::time::Instant::now();
        let batch = maps.counters_of(0..n).unwrap();
        let batched = started.elapsed();
        assert_eq!(batch, one_by_one);
        println!(
            "RESULT counter fold of {n} slots ({cpus} CPUs): one lookup per slot {singles:?}, one batch {batched:?}"
        );
    }
}
