//! Revocation over the real control link: the real daemon registers with a stand-in control
//! plane (the link's own QUIC endpoint and frames, certificates made by openssl), two `turn`
//! crate (webrtc-rs) clients of two sessions relay to a peer, and the control plane revokes one
//! of them mid-call; and a relay that registers is sent every revocation in force.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::link::*;
use support::*;
use teletip_link::{ControlToRelay, RevokedSession, write_frame};
use teletip_turn_proto::credentials::issue;
use webrtc_util::Conn;

/// A relay with its control link registered with a stand-in control plane, which is returned
/// with the certificates' folder (removed when dropped).
async fn linked_relay() -> (Relay, ControlEnd, tempfile::TempDir) {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let endpoint = control_endpoint(pki.path(), "control");
    let accepted = tokio::spawn(accept_relay(endpoint.clone()));
    let flags = link_flags(pki.path(), endpoint.local_addr().unwrap());
    let relay = tokio::task::spawn_blocking(move || {
        Relay::start("127.0.0.1", &flags.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let control = tokio::time::timeout(Duration::from_secs(10), accepted).await.expect("registered").unwrap();
    (relay, control, pki)
}

/// Arrivals at the peer: which relayed address sent, and when.
type Arrivals = Arc<Mutex<Vec<(SocketAddr, Instant)>>>;

/// Two sessions relay to one peer, a datagram every 5 ms each. The control plane revokes one:
/// its last datagram reaches the peer well within a second of the order (the delay is printed),
/// none after; the other keeps flowing. The revoked session's credentials then get 401, also
/// after the relay is cut off from the control plane, and the relay counts the allocation as
/// ended `how="revoked"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_stops_at_once_and_others_relay_on() {
    let (relay, mut control, _pki) = linked_relay().await;

    // Opaque ids as the control plane issues them (URL-safe base64 of 12 random bytes).
    let (revoked_id, kept_id) = ("q8Zs0bX1m2c9LkPw", "Xk3pQ9aLm0Rt7VbN");
    let expires = unix_now() + 600;
    let revoked_credentials = issue(SECRET.as_bytes(), revoked_id, expires);
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let arrivals: Arrivals = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (arrivals, stop) = (arrivals.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok((_, from))) =
                    tokio::time::timeout(Duration::from_millis(50), peer.recv_from(&mut buf)).await
                {
                    arrivals.lock().unwrap().push((from, Instant::now()));
                }
            }
        });
    }
    let mut clients = Vec::new();
    let mut relayed = Vec::new();
    for credentials in [revoked_credentials.clone(), issue(SECRET.as_bytes(), kept_id, expires)] {
        let client = turn_crate_client(&relay, credentials).await;
        let conn = client.allocate().await.unwrap();
        relayed.push(conn.local_addr().unwrap());
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.send_to(b"media", peer_addr)).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        clients.push(client);
    }
    let (revoked_relayed, kept_relayed) = (relayed[0], relayed[1]);
    let count = |from: SocketAddr, after: Instant| {
        arrivals.lock().unwrap().iter().filter(|(f, at)| *f == from && *at >= after).count()
    };
    let started = Instant::now();
    while count(revoked_relayed, started) < 20 || count(kept_relayed, started) < 20 {
        assert!(started.elapsed() < Duration::from_secs(10), "both sessions relay to the peer before the order");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let order = ControlToRelay::Revoke {
        sessions: vec![
            RevokedSession { id: revoked_id.into(), expires },
            RevokedSession { id: "never-issued-session".into(), expires },
        ],
    };
    let sent = Instant::now();
    write_frame(&mut control.send, &order).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let last_revoked = arrivals.lock().unwrap().iter().filter(|(f, _)| *f == revoked_relayed).map(|(_, at)| *at).max();
    let delay = last_revoked.map_or(Duration::ZERO, |at| at.saturating_duration_since(sent));
    eprintln!("revocation: last datagram of the revoked session reached the peer {delay:?} after the order was sent");
    assert!(delay < Duration::from_millis(500), "the revoked session was relayed {delay:?} after the order");
    let window = sent + Duration::from_millis(500);
    assert_eq!(count(revoked_relayed, window), 0, "nothing of the revoked session relayed after its order");
    assert!(count(kept_relayed, window) >= 50, "the other session relays on: {}", count(kept_relayed, window));

    let refused = TurnClient::with_credentials(relay.addr, revoked_credentials.clone()).allocate(&|_| {});
    assert_eq!(refused.error_code(), Some(401), "the revoked session's credentials are refused");
    assert!(TurnClient::new(relay.addr, "another-session").allocate(&|_| {}).error_code().is_none());
    assert_eq!(relay.wait_metric("teletip_allocations_ended_total", "how=\"revoked\"", 1.0), 1.0);
    assert!(relay.wait_metric("teletip_auth_failures_total", "reason=\"revoked\"", 1.0) >= 1.0);
    assert_eq!(relay.metric("teletip_revoked_sessions", ""), 2.0, "an unknown session is kept until it expires");

    // Cut off from the control plane, the relay keeps the revocations it has.
    control.connection.close(0u32.into(), b"control plane gone");
    control.endpoint.close(0u32.into(), b"control plane gone");
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.metric("teletip_control_link_up", "") != 0.0 {
        assert!(Instant::now() < deadline, "the relay noticed the link closing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = TurnClient::with_credentials(relay.addr, revoked_credentials).allocate(&|_| {});
    assert_eq!(refused.error_code(), Some(401), "still refused without the control plane");
    for c in &clients {
        let _ = c.close().await;
    }
}

/// What a relay that registers is sent: every revocation in force, in orders of at most
/// `REVOKE_BATCH` (2,500 sessions in three frames, each frame within the link's frame limit).
/// Each is refused from then on, a session revoked twice counts once, entries already expired
/// are ignored, and a session that was not revoked allocates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_registers_refuses_every_revocation_in_force() {
    let (relay, mut control, _pki) = linked_relay().await;
    let expires = unix_now() + 600;
    let ids: Vec<String> = (0..2500).map(|i| format!("revoked-{i:09}")).collect();
    for batch in ids.chunks(teletip_link::REVOKE_BATCH) {
        let mut sessions: Vec<RevokedSession> =
            batch.iter().map(|id| RevokedSession { id: id.clone(), expires }).collect();
        sessions.push(RevokedSession { id: ids[0].clone(), expires });
        sessions.push(RevokedSession { id: "long-expired".into(), expires: unix_now() - 60 });
        write_frame(&mut control.send, &ControlToRelay::Revoke { sessions }).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.metric("teletip_revoked_sessions", "") != 2500.0 {
        assert!(Instant::now() < deadline, "2,500 sessions revoked: {}", relay.metric("teletip_revoked_sessions", ""));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [&ids[0], &ids[1234], &ids[2499]] {
        let mut client = TurnClient::with_credentials(relay.addr, issue(SECRET.as_bytes(), id, expires));
        assert_eq!(client.allocate(&|_| {}).error_code(), Some(401), "{id} refused");
    }
    assert!(TurnClient::new(relay.addr, "revoked-000002500").allocate(&|_| {}).error_code().is_none());
    assert_eq!(relay.wait_metric("teletip_auth_failures_total", "reason=\"revoked\"", 3.0), 3.0);
}
