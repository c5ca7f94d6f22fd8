//! The relay on IPv4 and IPv6 in one process, against the real daemon: the `turn` crate
//! (webrtc-rs) talking to the relay over `::1`; coturn's `turnutils_uclient` against `[::1]`
//! over UDP, TCP and TLS with IPv6 relayed addresses and zero loss, and with dual allocations;
//! one dual allocation (ADDITIONAL-ADDRESS-FAMILY) relaying to an IPv4 and an IPv6 peer, both
//! ways, with Send/Data indications and channels; and the family errors (440, 400).
//!
//! The dual allocation test drives the relay with the test-side client of `support`: neither
//! the `turn` crate nor another Rust client sends ADDITIONAL-ADDRESS-FAMILY, and uclient's `-Z`
//! reports only totals, not which relayed address carried what.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use support::*;
use teletip_turn_proto::codec::{self, Class, Message, MessageWriter, Method, attr};
use teletip_turn_proto::credentials::issue;

/// Whether this machine has an IPv6 loopback. In CI its absence is an error; elsewhere the
/// test says why it skips.
fn have_ipv6(test: &str) -> bool {
    let ok = UdpSocket::bind("[::1]:0").is_ok();
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "::1 is required in CI (sysctl -w net.ipv6.conf.lo.disable_ipv6=0)");
        eprintln!("SKIPPED {test}: no IPv6 loopback here (sysctl -w net.ipv6.conf.lo.disable_ipv6=0 enables it)");
    }
    ok
}

/// A relay listening on `::1` and 127.0.0.1, relaying on both (the default relay-ip: the first
/// listening address of each family).
fn dual_relay(extra: &[&str]) -> Relay {
    let flags = [&["--listening-ip", "127.0.0.1", "--allow-loopback-peers", "true"][..], extra].concat();
    Relay::start("::1", &flags)
}

/// Every XOR-RELAYED-ADDRESS of an answer, in order.
fn relayed_addresses(answer: &Answer) -> Vec<SocketAddr> {
    let m = answer.msg();
    m.get_all(attr::XOR_RELAYED_ADDRESS).map(|v| codec::decode_xor_address(v, &m.transaction_id()).unwrap()).collect()
}

fn address_error(answer: &Answer) -> Option<(u8, u16)> {
    let v = answer.msg().get(attr::ADDRESS_ERROR_CODE)?.to_vec();
    Some((v[0], u16::from(v[2] & 7) * 100 + u16::from(v[3])))
}

fn additional_v6(w: &mut MessageWriter<'_>) {
    w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
}

fn requested_v6(w: &mut MessageWriter<'_>) {
    w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0]).unwrap();
}

/// What `client` receives next: (peer, data) of a Data indication or of ChannelData on
/// `channel`.
fn receive_relayed(client: &TurnClient, channel: Option<u16>) -> (Option<SocketAddr>, Vec<u8>) {
    let mut buf = [0u8; 2048];
    let (n, _) = client.socket.recv_from(&mut buf).expect("relayed data reaches the client");
    let packet = &buf[..n];
    if codec::is_channel_data(packet) {
        let number = u16::from_be_bytes([packet[0], packet[1]]);
        assert_eq!(Some(number), channel, "ChannelData on the bound channel");
        let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        return (None, packet[4..4 + len].to_vec());
    }
    let m = Message::decode(packet).unwrap();
    assert_eq!((m.method(), m.class()), (Method::DATA, Class::Indication));
    let peer = codec::decode_xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap(), &m.transaction_id());
    (peer, m.get(attr::DATA).unwrap().to_vec())
}

fn peer_receives(peer: &UdpSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = [0u8; 2048];
    let (n, from) = peer.recv_from(&mut buf).expect("the peer receives the relayed datagram");
    (from, buf[..n].to_vec())
}

/// One dual allocation, made over IPv6, relays to an IPv4 peer through its IPv4 relayed address
/// and to an IPv6 peer through its IPv6 one: Send indications out, Data indications back,
/// then channels both ways; a Refresh with lifetime 0 ends both addresses.
#[test]
fn a_dual_allocation_relays_to_an_ipv4_and_an_ipv6_peer() {
    if !have_ipv6("a_dual_allocation_relays_to_an_ipv4_and_an_ipv6_peer") {
        return;
    }
    let relay = dual_relay(&[]);
    let mut client = TurnClient::new(relay.addr, "dual-session");
    let granted = client.allocate(&additional_v6);
    assert_eq!(granted.class(), Class::Success, "{:?}", granted.error_code());
    let relayed = relayed_addresses(&granted);
    assert_eq!(relayed.len(), 2, "an IPv4 and an IPv6 relayed address: {relayed:?}");
    let (relayed_v4, relayed_v6) = (relayed[0], relayed[1]);
    assert_eq!(relayed_v4.ip().to_string(), "127.0.0.1");
    assert_eq!(relayed_v6.ip().to_string(), "::1");
    assert!((relay.min_port..=relay.max_port).contains(&relayed_v6.port()));
    assert_eq!(granted.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(client.socket.local_addr().unwrap()));

    let peer_v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_v6 = UdpSocket::bind("[::1]:0").unwrap();
    for p in [&peer_v4, &peer_v6] {
        p.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (p4, p6) = (peer_v4.local_addr().unwrap(), peer_v6.local_addr().unwrap());
    let permitted = client.call(Method::CREATE_PERMISSION, &|w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, p4).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, p6).unwrap();
    });
    assert_eq!(permitted.class(), Class::Success, "one CreatePermission for peers of both families");

    client.send_indication(p4, b"to four");
    assert_eq!(peer_receives(&peer_v4), (relayed_v4, b"to four".to_vec()), "sent from the IPv4 relayed address");
    client.send_indication(p6, b"to six");
    assert_eq!(peer_receives(&peer_v6), (relayed_v6, b"to six".to_vec()), "sent from the IPv6 relayed address");
    peer_v6.send_to(b"from six", relayed_v6).unwrap();
    assert_eq!(receive_relayed(&client, None), (Some(p6), b"from six".to_vec()));
    peer_v4.send_to(b"from four", relayed_v4).unwrap();
    assert_eq!(receive_relayed(&client, None), (Some(p4), b"from four".to_vec()));

    for (number, peer) in [(0x4001u16, p4), (0x4002, p6)] {
        let bound = client.call(Method::CHANNEL_BIND, &|w| {
            w.bytes(attr::CHANNEL_NUMBER, &[(number >> 8) as u8, number as u8, 0, 0]).unwrap();
            w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        });
        assert_eq!(bound.class(), Class::Success);
    }
    for (number, peer, relayed, payload) in
        [(0x4001u16, &peer_v4, relayed_v4, &b"chan4"[..]), (0x4002, &peer_v6, relayed_v6, &b"chan6"[..])]
    {
        let mut frame = vec![(number >> 8) as u8, number as u8, 0, payload.len() as u8];
        frame.extend_from_slice(payload);
        client.socket.send_to(&frame, relay.addr).unwrap();
        assert_eq!(peer_receives(peer), (relayed, payload.to_vec()));
        peer.send_to(payload, relayed).unwrap();
        assert_eq!(receive_relayed(&client, Some(number)), (None, payload.to_vec()));
    }
    let created = relay.wait_metric("teletip_relayed_addresses_created_total", "family=\"ipv6\"", 1.0);
    assert_eq!(created, 1.0, "the dual allocation's IPv6 address is counted by family");
    assert_eq!(relay.metric("teletip_relayed_addresses_created_total", "family=\"ipv4\""), 1.0);
    assert_eq!(relay.metric("teletip_allocations_created_total", ""), 1.0, "one allocation");

    let deleted = client.call(Method::REFRESH, &|w| {
        w.u32(attr::LIFETIME, 0).unwrap();
    });
    assert_eq!(deleted.class(), Class::Success);
    for (peer, relayed) in [(&peer_v4, relayed_v4), (&peer_v6, relayed_v6)] {
        peer.send_to(b"late", relayed).unwrap();
    }
    client.socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 64];
    assert!(client.socket.recv_from(&mut buf).is_err(), "both relayed addresses ended with the allocation");
}

/// On a relay whose only relay-ip is IPv4, an IPv6 allocation gets 440 and a dual one gets its
/// IPv4 address with ADDRESS-ERROR-CODE 440 for IPv6; a malformed family attribute gets 400,
/// and the client's next, valid Allocate is granted as if nothing had happened.
#[test]
fn a_family_the_relay_does_not_serve_is_440_and_a_malformed_one_400() {
    let relay = Relay::start("127.0.0.1", &[]);
    let mut client = TurnClient::new(relay.addr, "family-errors");
    assert_eq!(client.allocate(&requested_v6).error_code(), Some(440));
    let malformed = client.allocate(&|w| {
        w.bytes(attr::ADDITIONAL_ADDRESS_FAMILY, &[codec::FAMILY_IPV6]).unwrap();
    });
    assert_eq!(malformed.error_code(), Some(400));
    let both = client.allocate(&|w| {
        requested_v6(w);
        additional_v6(w);
    });
    assert_eq!(both.error_code(), Some(400), "REQUESTED- and ADDITIONAL-ADDRESS-FAMILY together");
    let dual = client.allocate(&additional_v6);
    assert_eq!(dual.class(), Class::Success);
    assert_eq!(relayed_addresses(&dual).len(), 1);
    assert!(relayed_addresses(&dual)[0].is_ipv4());
    assert_eq!(address_error(&dual), Some((codec::FAMILY_IPV6, 440)));
    assert_eq!(relay.wait_metric("teletip_allocations_failed_total", "reason=\"address_family\"", 1.0), 1.0);
    assert_eq!(relay.metric("teletip_allocations_failed_total", "reason=\"bad_request\""), 2.0);
}

/// Two `turn` crate clients reach the relay over `::1` and talk to each other through their
/// relayed addresses (IPv4: the crate sends no REQUESTED-ADDRESS-FAMILY, and RFC 8656 then
/// gives IPv4), both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_crate_clients_over_ipv6_relay_to_each_other() {
    use webrtc_util::Conn;

    if !have_ipv6("turn_crate_clients_over_ipv6_relay_to_each_other") {
        return;
    }
    let relay = dual_relay(&[]);
    let mut conns = Vec::new();
    let mut clients = Vec::new();
    for id in ["practitioner-v6", "patient-v6"] {
        let client = turn_crate_client(&relay, issue(SECRET.as_bytes(), id, unix_now() + 600)).await;
        let mapped = client.send_binding_request().await.unwrap();
        assert_eq!(mapped.ip().to_string(), "::1", "the client speaks IPv6 to the relay");
        conns.push(client.allocate().await.unwrap());
        clients.push(client);
    }
    let a_addr = conns[0].local_addr().unwrap();
    let b_addr = conns[1].local_addr().unwrap();
    let mut buf = vec![0u8; 1500];
    let mut delivered = 0;
    for round in 0..20u8 {
        let msg = [b"a->b ".as_slice(), &[round]].concat();
        conns[1].send_to(b"open", a_addr).await.unwrap();
        conns[0].send_to(&msg, b_addr).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), conns[1].recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                assert_eq!(from, a_addr);
                if round >= 2 {
                    assert_eq!(&buf[..n], &msg[..]);
                    delivered += 1;
                }
            }
            _ if round < 2 => continue,
            other => panic!("round {round}: nothing relayed a->b: {other:?}"),
        }
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(20), conns[0].recv_from(&mut buf)).await
        {
            assert_eq!((from, &buf[..n]), (b_addr, &b"open"[..]));
        }
    }
    assert_eq!(delivered, 18);
    let relayed = relay.wait_metric("teletip_relayed_bytes_total", "client_to_peer", 100.0);
    assert!(relayed >= 100.0, "relayed bytes counted: {relayed}");
    for c in &clients {
        c.close().await.unwrap();
    }
}

/// coturn's uclient against `[::1]`: ten clients, 50 messages each, to each other's relayed
/// addresses; `flags` picks the transport and the relayed family.
/// One uclient run at a time: five runs of ten clients at once on a two-core machine starve
/// each other, and a datagram the kernel drops then would not be the relay's loss.
static ONE_UCLIENT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn uclient_over_ipv6_loses_nothing(transport: &str, flags: &[&str], family_label: &str) {
    let _alone = ONE_UCLIENT_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    let tls_port = std::net::TcpListener::bind("[::1]:0").unwrap().local_addr().unwrap().port().to_string();
    let mut extra = vec!["--user-quota", "0", "--max-bps", "0"];
    if transport == "tls" {
        extra.extend(["--cert", &cert, "--pkey", &key, "--tls-listening-port", &tls_port]);
    }
    let relay = dual_relay(&extra);
    let port = if transport == "tls" { tls_port.clone() } else { relay.addr.port().to_string() };
    let mut args = vec!["-y", "-W", SECRET, "-u", "uclient-v6", "-p", &port, "-n", "50", "-m", "10", "-l", "160"];
    args.extend_from_slice(&["-z", "5", "-L", "::1", "-e", "::1"]);
    match transport {
        "tcp" => args.push("-t"),
        "tls" => args.extend(["-t", "-S"]),
        _ => {}
    }
    args.extend_from_slice(flags);
    args.push("::1");
    let out = Command::new("timeout").arg("120").arg("turnutils_uclient").args(&args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "uclient failed:\n{text}");
    let (sent, received, lost) = uclient_summary(&text);
    println!("uclient over [::1] {transport} {flags:?}: sent {sent}, received {received}, lost {lost}");
    assert!(sent >= 500, "at least 10 clients x 50 messages, got {sent}");
    assert_eq!((received, lost), (sent, 0), "{text}");
    let label = format!("family=\"{family_label}\"");
    let created = relay.wait_metric("teletip_relayed_addresses_created_total", &label, 10.0);
    assert!(created >= 10.0, "uclient's allocations got {family_label} relayed addresses: {created}");
}

fn uclient_v6(test: &str, transport: &str, flags: &[&str], family_label: &str) {
    if have_ipv6(test) && have_tool("turnutils_uclient", test) {
        uclient_over_ipv6_loses_nothing(transport, flags, family_label);
    }
}

#[test]
fn uclient_over_ipv6_udp_with_ipv6_relayed_addresses_loses_nothing() {
    uclient_v6("uclient_over_ipv6_udp", "udp", &["-x"], "ipv6");
}

#[test]
fn uclient_over_ipv6_udp_send_indications_loses_nothing() {
    uclient_v6("uclient_over_ipv6_udp_send", "udp", &["-x", "-s"], "ipv6");
}

#[test]
fn uclient_over_ipv6_tcp_with_ipv6_relayed_addresses_loses_nothing() {
    uclient_v6("uclient_over_ipv6_tcp", "tcp", &["-x"], "ipv6");
}

#[test]
fn uclient_over_ipv6_tls_with_ipv6_relayed_addresses_loses_nothing() {
    uclient_v6("uclient_over_ipv6_tls", "tls", &["-x"], "ipv6");
}

#[test]
fn uclient_dual_allocations_over_ipv6_lose_nothing() {
    uclient_v6("uclient_dual_allocations", "udp", &["-Z"], "ipv6");
}
