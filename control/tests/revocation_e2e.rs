//! Issue 20's acceptance test, end to end with real processes: the real `teletip-control` and
//! two real `teletip-relay`s registered over the control link, ICE credentials issued over
//! HTTP, TURN sessions held by the `turn` crate (a client we did not write) sending to a UDP
//! peer every 5 ms. An admin revokes one session (`POST /v1/ice/sessions/{id}/revoke`): its
//! last datagram reaches the peer at most 1 s after the call (measured and printed), the other
//! sessions flow on, its credential's new Allocate fails on both relays, the relay counts the
//! allocation ended `how="revoked"`, and a third relay that registers afterwards refuses the
//! credential too. On SQLite and PostgreSQL.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::pki::{free_tcp_port, free_udp_port, link_config, make_ca, make_cert};
use support::relay::{allocate_and_hold, relay_binary};
use support::{Engine, engines};

/// The target: from the API call to the revoked session's last relayed packet.
const TARGET: Duration = Duration::from_secs(1);

/// A running teletip-relay with a control link, relaying to loopback peers.
struct Relay {
    child: Child,
    port: u16,
    metrics: u16,
}

impl Relay {
    fn start(pki: &Path, node: &str, link_port: u16, secret_file: &Path, ports: (u16, u16)) -> Relay {
        let (port, metrics) = (free_udp_port(), free_tcp_port());
        let child = Command::new(relay_binary())
            .args(["--realm", "teletip.test", "--static-auth-secret-file", secret_file.to_str().unwrap()])
            .args(["--listening-port", &port.to_string(), "--prometheus-port", &metrics.to_string()])
            .args(["--min-port", &ports.0.to_string(), "--max-port", &ports.1.to_string(), "--workers", "1"])
            .args(["--region", "istanbul-1", "--total-quota", "100", "--allow-loopback-peers", "true"])
            .args(["--control-server", &format!("127.0.0.1:{link_port}"), "--control-server-name", "control.test"])
            .arg("--control-ca")
            .arg(pki.join("ca.pem"))
            .arg("--control-cert")
            .arg(pki.join(format!("{node}.pem")))
            .arg("--control-key")
            .arg(pki.join(format!("{node}.key")))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start teletip-relay");
        Relay { child, port, metrics }
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// One value of the relay's own metrics, `name` with its labels (None while the endpoint
    /// is not up or the series does not exist yet).
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics)).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it is true, or fails saying `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn healthy(e: &Env, admin: &str, names: &[&str]) -> bool {
    let (s, body) = e.get("/v1/relays", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let list = body.as_array().unwrap();
    names.iter().all(|name| list.iter().any(|n| n["node"] == *name && n["healthy"] == true))
}

/// A fresh ICE credential of `token`'s account (the same on every relay named): username and
/// password.
async fn credential(e: &Env, token: &str) -> (String, String) {
    let (s, body) = e.post("/v1/ice/credentials", Some(token), json!({"relayOnly": true})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let servers: &Vec<Value> = body["iceServers"].as_array().unwrap();
    let turn = servers.last().unwrap();
    (turn["username"].as_str().unwrap().into(), turn["credential"].as_str().unwrap().into())
}

/// Arrivals at the peer: which relayed address sent, and when.
type Arrivals = Arc<Mutex<Vec<(SocketAddr, Instant)>>>;

fn count(arrivals: &Arrivals, from: SocketAddr, after: Instant) -> usize {
    arrivals.lock().unwrap().iter().filter(|(f, at)| *f == from && *at >= after).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_stops_within_a_second_on_every_relay_and_on_one_that_registers_later() {
    for engine in engines() {
        revoke_mid_call(engine).await;
    }
}

async fn revoke_mid_call(engine: Engine) {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    for node in ["relay-a.test", "relay-b.test", "relay-c.test"] {
        make_cert(pki, "ca", node, "clientAuth");
    }
    let link_port = free_udp_port();
    let e = env_with(engine, &link_config(pki, link_port)).await;
    let admin = e.admin().await;
    let (patient, _) = e.user_token(&admin, "patient.e2e@example.org", "patient").await;
    let secret = e.control.dir.join("data/relay.secret");
    let a = Relay::start(pki, "relay-a.test", link_port, &secret, (24300, 24339));
    let b = Relay::start(pki, "relay-b.test", link_port, &secret, (24340, 24379));
    eventually(Duration::from_secs(20), "both relays registered and healthy", || {
        healthy(&e, &admin, &["relay-a.test", "relay-b.test"])
    })
    .await;

    // The peer: every datagram's relayed source and arrival time.
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let arrivals: Arrivals = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
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
        })
    };

    // Three sessions, each its own credential: the one to revoke and one kept on A, one kept
    // on B. Each sends to the peer every 5 ms.
    let revoked = credential(&e, &patient).await;
    let kept_a = credential(&e, &patient).await;
    let kept_b = credential(&e, &patient).await;
    let mut held = Vec::new();
    let mut senders = Vec::new();
    for (relay, (user, pass)) in [(&a, &revoked), (&a, &kept_a), (&b, &kept_b)] {
        let h = allocate_and_hold(relay.addr(), user, pass).await.expect("the issued credential allocates");
        let conn = h.conn();
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.send_to(b"media", peer_addr)).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
        held.push(h);
    }
    let (revoked_relayed, kept_a_relayed, kept_b_relayed) = (held[0].relayed, held[1].relayed, held[2].relayed);
    let started = Instant::now();
    eventually(Duration::from_secs(10), "all three sessions reach the peer", || async {
        [revoked_relayed, kept_a_relayed, kept_b_relayed].iter().all(|r| count(&arrivals, *r, started) >= 20)
    })
    .await;

    // The admin revokes the first session; the call's time is taken before the request.
    let (revoked_user, revoked_pass) = &revoked;
    let (_, session_id) = revoked_user.split_once(':').unwrap();
    let called = Instant::now();
    let (s, body) = e.post(&format!("/v1/ice/sessions/{session_id}/revoke"), Some(&admin), json!({})).await;
    let answered = called.elapsed();
    assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
    // Watch well past the target: nothing of the revoked session after it, the others flow.
    tokio::time::sleep(TARGET + Duration::from_millis(1500)).await;
    let last = arrivals.lock().unwrap().iter().filter(|(f, _)| *f == revoked_relayed).map(|(_, at)| *at).max();
    let delay = last.map_or(Duration::ZERO, |at| at.saturating_duration_since(called));
    let after_call = count(&arrivals, revoked_relayed, called);
    eprintln!(
        "{engine:?}: revoke call answered in {answered:?}; the revoked session's last datagram reached the peer \
         {delay:?} after the call ({after_call} datagrams after it)"
    );
    assert!(delay <= TARGET, "{engine:?}: the revoked session was relayed {delay:?} after the call");
    let window = Instant::now() - Duration::from_secs(1);
    assert_eq!(count(&arrivals, revoked_relayed, called + TARGET), 0, "{engine:?}: nothing relayed after 1 s");
    assert!(count(&arrivals, kept_a_relayed, window) >= 20, "{engine:?}: the other session on A flows on");
    assert!(count(&arrivals, kept_b_relayed, window) >= 20, "{engine:?}: the session on B flows on");

    // The relay counts the allocation ended by revocation.
    eventually(Duration::from_secs(5), "A counts the allocation ended how=\"revoked\"", || async {
        a.metric("teletip_allocations_ended_total{how=\"revoked\"}").await == Some(1.0)
    })
    .await;

    // The revoked credential's new Allocate fails on both relays, for that reason; a fresh
    // credential still allocates on both.
    for (relay, name) in [(&a, "A"), (&b, "B")] {
        let refused = allocate_and_hold(relay.addr(), revoked_user, revoked_pass).await;
        assert!(refused.is_err(), "{engine:?}: {name} refuses the revoked credential");
        eventually(Duration::from_secs(5), "the refusal is counted as revoked", || async {
            relay.metric("teletip_auth_failures_total{reason=\"revoked\"}").await.is_some_and(|n| n >= 1.0)
        })
        .await;
        let (user, pass) = credential(&e, &patient).await;
        let fresh = allocate_and_hold(relay.addr(), &user, &pass).await;
        assert!(fresh.is_ok(), "{engine:?}: {name} still allocates a fresh credential: {:?}", fresh.err());
        fresh.unwrap().close().await;
    }

    // A third relay registers afterwards: it is sent the revocation and refuses the credential.
    let c = Relay::start(pki, "relay-c.test", link_port, &secret, (24380, 24419));
    eventually(Duration::from_secs(20), "C registered and healthy", || healthy(&e, &admin, &["relay-c.test"])).await;
    eventually(Duration::from_secs(5), "C holds the revocation", || async {
        c.metric("teletip_revoked_sessions").await.is_some_and(|n| n >= 1.0)
    })
    .await;
    let refused = allocate_and_hold(c.addr(), revoked_user, revoked_pass).await;
    assert!(refused.is_err(), "{engine:?}: C, registered later, refuses the revoked credential");
    eventually(Duration::from_secs(5), "C counts the refusal as revoked", || async {
        c.metric("teletip_auth_failures_total{reason=\"revoked\"}").await.is_some_and(|n| n >= 1.0)
    })
    .await;
    let (user, pass) = credential(&e, &patient).await;
    let fresh = allocate_and_hold(c.addr(), &user, &pass).await;
    assert!(fresh.is_ok(), "{engine:?}: C allocates a fresh credential: {:?}", fresh.err());
    fresh.unwrap().close().await;

    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    let _ = receiver.await;
    for h in held {
        h.close().await;
    }
}
