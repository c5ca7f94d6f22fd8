//! The relayed-socket pool (`relay-socket-pool`, `relay-socket-pool-at-start`): sockets stay open between allocations, so
//! the daemon must make sure that a reused relayed address carries nothing of its previous
//! allocation, and that holding sockets never costs an EVEN-PORT reservation its ports.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::*;
use teletip_turn_proto::codec::{self, Class, Method, attr};

fn relayed(a: &Answer) -> SocketAddr {
    assert_eq!(a.class(), Class::Success, "Allocate answered {:?}", a.error_code());
    a.xor_addr(attr::XOR_RELAYED_ADDRESS).expect("XOR-RELAYED-ADDRESS")
}

fn release(c: &mut TurnClient) {
    let a = c.call(Method::REFRESH, &|w| drop(w.u32(attr::LIFETIME, 0)));
    assert_eq!(a.class(), Class::Success, "Refresh(0) answered {:?}", a.error_code());
}

fn permit(c: &mut TurnClient, peer: SocketAddr) {
    let a = c.call(Method::CREATE_PERMISSION, &|w| drop(w.xor_address(attr::XOR_PEER_ADDRESS, peer)));
    assert_eq!(a.class(), Class::Success, "CreatePermission answered {:?}", a.error_code());
}

/// The DATA of the next Data indication the client receives, if one comes within `wait`.
fn next_data(c: &TurnClient, wait: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        c.socket
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = c.socket.recv_from(&mut buf) else { return None };
        let Ok(msg) = codec::Message::decode(&buf[..n]) else { continue };
        if msg.method() == Method::DATA && msg.class() == Class::Indication {
            return msg.get(attr::DATA).map(<[u8]>::to_vec);
        }
    }
    None
}

/// With a pool of one socket, the second allocation gets the first one's relayed address back.
/// What the old peer sent to it after the release, and what was queued when it was handed out,
/// must never reach the new client, even once the new client permits that same peer.
#[test]
fn a_reused_relayed_address_hears_nothing_meant_for_its_previous_allocation() {
    let relay = Relay::start(
        "127.0.0.1",
        &[
            "--workers",
            "1",
            "--relay-socket-pool",
            "1",
            "--allowed-peer-ip",
            "127.0.0.1",
            "--relay-socket-pool-at-start",
            "0",
        ],
    );
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let mut first = TurnClient::new(relay.addr, "first");
    let address = relayed(&first.allocate(&|_| {}));
    permit(&mut first, peer_addr);
    peer.send_to(b"to the first", address).unwrap();
    assert_eq!(next_data(&first, Duration::from_secs(2)).as_deref(), Some(&b"to the first"[..]));
    release(&mut first);
    for _ in 0..20 {
        peer.send_to(b"stale", address).unwrap();
    }

    let mut second = TurnClient::new(relay.addr, "second");
    assert_eq!(relayed(&second.allocate(&|_| {})), address, "the pooled socket is reused");
    permit(&mut second, peer_addr);
    peer.send_to(b"fresh", address).unwrap();
    assert_eq!(next_data(&second, Duration::from_secs(2)).as_deref(), Some(&b"fresh"[..]), "stale data came first");
    assert_eq!(next_data(&second, Duration::from_millis(300)), None, "nothing else arrives");
    assert!(relay.wait_metric("teletip_dropped_packets_total", "reason=\"no_allocation\"", 1.0) >= 1.0);
}

/// Every free port of the range sits in the pool; an Allocate with EVEN-PORT (R) needs two
/// adjacent free ports and must still get them, from ports the pool gives up.
#[test]
fn an_even_port_reservation_gets_ports_the_pool_was_holding() {
    // 40 ports, one worker: the pool may hold 20 (half the range).
    let relay = Relay::start("127.0.0.1", &["--workers", "1", "--relay-socket-pool", "20"]);
    let span = usize::from(relay.max_port - relay.min_port) + 1;
    let mut clients: Vec<TurnClient> = (0..span).map(|i| TurnClient::new(relay.addr, &format!("u{i}"))).collect();
    for c in &mut clients {
        relayed(&c.allocate(&|_| {}));
    }
    // The range is full: the next one is refused (508 Insufficient Capacity).
    let mut extra = TurnClient::new(relay.addr, "extra");
    assert_eq!(extra.allocate(&|_| {}).error_code(), Some(508));
    // Half of them end: their sockets go to the pool, which now holds every free port.
    for c in clients.iter_mut().take(span / 2) {
        release(c);
    }
    assert!(relay.wait_metric("teletip_relay_sockets_pooled", "", 20.0) >= 20.0);
    let mut even = TurnClient::new(relay.addr, "even");
    let a = even.allocate(&|w| drop(w.bytes(attr::EVEN_PORT, &[0x80])));
    let address = relayed(&a);
    assert_eq!(address.port() % 2, 0, "EVEN-PORT gives an even port");
    assert!(a.msg().get(attr::RESERVATION_TOKEN).is_some(), "R reserves the next port");
}

/// After a peak, the sockets released beyond the configured pool are kept for the next burst,
/// and then closed gradually: a relay gives a peak's descriptors back instead of holding them.
#[test]
fn released_sockets_beyond_the_pool_are_kept_after_a_peak_and_then_closed() {
    let relay =
        Relay::start("127.0.0.1", &["--workers", "1", "--relay-socket-pool", "2", "--relay-socket-pool-at-start", "0"]);
    assert_eq!(relay.wait_metric("teletip_relay_sockets_pooled", "", 2.0), 2.0);
    let mut clients: Vec<TurnClient> = (0..16).map(|i| TurnClient::new(relay.addr, &format!("peak-{i}"))).collect();
    for c in clients.iter_mut() {
        relayed(&c.allocate(&|_| {}));
    }
    for c in clients.iter_mut() {
        release(c);
    }
    // All 16 come back to the pool (the ceiling is half of the test relay's 40 ports), then a
    // 32nd of the surplus, rounded up (1 of 14), is closed each second; the gauge is published
    // after the tick's trim, so it shows 15 at most.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut most = 0.0f64;
    loop {
        let pooled = relay.metric("teletip_relay_sockets_pooled", "");
        most = most.max(pooled);
        if most >= 12.0 && pooled < most && pooled >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pooled after the peak: {pooled}, at most {most} (2 would mean only the configured pool was kept, \
             no decrease that the surplus was never closed)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And a new burst takes the kept sockets.
    let mut again = TurnClient::new(relay.addr, "after-peak");
    relayed(&again.allocate(&|_| {}));
}

/// Allocations that take the pool down to half make the worker open more sockets between
/// turns, ahead of the next allocations (each half taken again doubles what it refills to), so
/// that a burst's allocations find ready sockets; once calm, the surplus is given back.
#[test]
fn a_pool_that_a_burst_drains_grows_ahead_of_it_and_shrinks_when_calm() {
    let relay =
        Relay::start("127.0.0.1", &["--workers", "1", "--relay-socket-pool", "4", "--relay-socket-pool-at-start", "0"]);
    assert_eq!(relay.wait_metric("teletip_relay_sockets_pooled", "", 4.0), 4.0);
    let mut clients: Vec<TurnClient> = (0..12).map(|i| TurnClient::new(relay.addr, &format!("burst-{i}"))).collect();
    for c in clients.iter_mut() {
        relayed(&c.allocate(&|_| {}));
    }
    // All twelve are held: a pool refilled only by releases would be empty now (four taken,
    // eight opened by their Allocates). Refilled ahead of demand it holds 8 or more.
    let grown = relay.wait_metric("teletip_relay_sockets_pooled", "", 8.0);
    assert!(grown >= 8.0, "the pool did not grow ahead of the burst: {grown} pooled with 12 allocations held");
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let pooled = relay.metric("teletip_relay_sockets_pooled", "");
        if pooled < grown {
            assert!(pooled >= 4.0, "the configured pool stays: {pooled}");
            break;
        }
        assert!(Instant::now() < deadline, "the pool kept {pooled} after the burst (grown to {grown})");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(clients);
}

/// A relay that has just started opens its start-up pool before any client arrives (its
/// clients are about to come back at once), hands those sockets out, and gives the surplus
/// over `relay-socket-pool` back when calm.
#[test]
fn a_fresh_relay_opens_its_start_up_pool_and_gives_the_surplus_back_when_calm() {
    // 40 ports, one worker: the pools may hold 20.
    let relay = Relay::start(
        "127.0.0.1",
        &["--workers", "1", "--relay-socket-pool", "2", "--relay-socket-pool-at-start", "16"],
    );
    // The gauge is published after each tick's trim (a 32nd of the surplus, rounded up): the
    // first reading shows 15 of the 16.
    let opened = relay.wait_metric("teletip_relay_sockets_pooled", "", 14.0);
    assert!(opened >= 14.0, "a fresh relay opened {opened} sockets, not its start-up pool of 16");
    let mut first = TurnClient::new(relay.addr, "first-back");
    relayed(&first.allocate(&|_| {}));
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let pooled = relay.metric("teletip_relay_sockets_pooled", "");
        if pooled < opened - 1.0 {
            assert!(pooled >= 2.0, "the configured pool stays: {pooled}");
            break;
        }
        assert!(Instant::now() < deadline, "the start-up pool kept {pooled} sockets while calm");
        std::thread::sleep(Duration::from_millis(100));
    }
}
