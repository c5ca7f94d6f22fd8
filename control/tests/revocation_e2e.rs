//! Issue 20's acceptance test, end to end with real processes: the real `teletip-control` and
//! two real `teletip-relay`s registered over the control link, ICE credentials issued over
//! HTTP, TURN sessions held by the `turn` crate (a client we did not write) sending to a UDP
//! peer every 5 ms. An admin revokes one session (`POST /v1/ice/sessions/{id}/revoke`): its
//! last datagram reaches the peer at most 1 s after the call (measured and printed), the other
//! sessions flow on, its credential's new Allocate fails on both relays, the relay counts the
//! allocation ended `how="revoked"`, and a third relay that registers afterwards refuses the
//! credential too. Across instances: two control instances on one Redis, each with a relay
//! registered; a revocation made through one ends, within the same second, a session on the
//! relay registered with the other. On SQLite and PostgreSQL.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::pki::{free_udp_port, link_config, link_pki};
use support::redis_server::redis_server;
use support::relay::{Held, LinkedRelay, allocate_and_hold, eventually};
use support::{Control, Engine, engines};

/// The target: from the API call to the revoked session's last relayed packet.
const TARGET: Duration = Duration::from_secs(1);

/// The peer is on this host: the relays must allow loopback peers.
const LOOPBACK_PEERS: &[&str] = &["--allow-loopback-peers", "true"];

/// A control plane with the control link on a free port, the certificates of `nodes`, and
/// the tokens of its admin and of a patient.
struct Linked {
    pki: tempfile::TempDir,
    e: Env,
    admin: String,
    patient: String,
    link_port: u16,
}

async fn linked(engine: Engine, nodes: &[&str]) -> Linked {
    let pki = link_pki(nodes);
    let link_port = free_udp_port();
    let e = env_with(engine, &link_config(pki.path(), link_port)).await;
    let admin = e.admin().await;
    let (patient, _) = e.user_token(&admin, "patient.e2e@example.org", "patient").await;
    Linked { pki, e, admin, patient, link_port }
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

/// A UDP peer on this host that records every datagram's relayed source and arrival time, and
/// the allocations sending to it every 5 ms, until `finish`.
struct Peer {
    addr: SocketAddr,
    arrivals: Arrivals,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Peer {
    async fn start() -> Peer {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let arrivals: Arrivals = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (arrivals, stop) = (arrivals.clone(), stop.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Ok((_, from))) =
                        tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await
                    {
                        arrivals.lock().unwrap().push((from, Instant::now()));
                    }
                }
            })
        };
        Peer { addr, arrivals, stop, tasks: vec![receiver] }
    }

    /// `held` sends to this peer every 5 ms from now on.
    fn send_from(&mut self, held: &Held) {
        let (conn, stop, to) = (held.conn(), self.stop.clone(), self.addr);
        self.tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.send_to(b"media", to)).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    /// Datagrams relayed from `from` that arrived at or after `after`.
    fn count(&self, from: SocketAddr, after: Instant) -> usize {
        self.arrivals.lock().unwrap().iter().filter(|(f, at)| *f == from && *at >= after).count()
    }

    /// When the last datagram relayed from `from` arrived.
    fn last_from(&self, from: SocketAddr) -> Option<Instant> {
        self.arrivals.lock().unwrap().iter().filter(|(f, _)| *f == from).map(|(_, at)| *at).max()
    }

    /// Waits until every one of `relayed` has reached the peer 20 times.
    async fn until_all_flow(&self, relayed: &[SocketAddr]) {
        let started = Instant::now();
        eventually(Duration::from_secs(10), "every session reaches the peer", || async {
            relayed.iter().all(|r| self.count(*r, started) >= 20)
        })
        .await;
    }

    /// Watches well past the target after a revocation `called` at that instant: the revoked
    /// allocation `relayed`'s last datagram reached the peer at most `TARGET` after the call,
    /// nothing after that, and each of `kept` flowed on in the last second. Returns the delay.
    async fn assert_revoked_within_target(
        &self,
        relayed: SocketAddr,
        called: Instant,
        kept: &[SocketAddr],
    ) -> Duration {
        tokio::time::sleep(TARGET + Duration::from_millis(1500)).await;
        let delay = self.last_from(relayed).map_or(Duration::ZERO, |at| at.saturating_duration_since(called));
        assert!(delay <= TARGET, "the revoked session was relayed {delay:?} after the call");
        assert_eq!(self.count(relayed, called + TARGET), 0, "nothing relayed after 1 s");
        let window = Instant::now() - Duration::from_secs(1);
        for k in kept {
            assert!(self.count(*k, window) >= 20, "the kept session relayed at {k} flows on");
        }
        delay
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Revokes one session, named by its credential's username, through `e`'s admin API; the
/// call's instant is taken before the request. Returns it and how long the answer took.
async fn revoke_session(e: &Env, admin: &str, username: &str) -> (Instant, Duration) {
    let (_, session_id) = username.split_once(':').unwrap();
    let called = Instant::now();
    let (s, body) = e.post(&format!("/v1/ice/sessions/{session_id}/revoke"), Some(admin), json!({})).await;
    let answered = called.elapsed();
    assert_eq!(s, StatusCode::OK, "{:?}: {body}", e.engine);
    (called, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_stops_within_a_second_on_every_relay_and_on_one_that_registers_later() {
    for engine in engines() {
        revoke_mid_call(engine).await;
    }
}

async fn revoke_mid_call(engine: Engine) {
    let Linked { pki: pki_dir, e, admin, patient, link_port } =
        linked(engine, &["relay-a.test", "relay-b.test", "relay-c.test"]).await;
    let pki = pki_dir.path();
    let secret = e.control.dir.join("data/relay.secret");
    let a = LinkedRelay::start_with(pki, "relay-a.test", link_port, &secret, (24300, 24339), LOOPBACK_PEERS);
    let b = LinkedRelay::start_with(pki, "relay-b.test", link_port, &secret, (24340, 24379), LOOPBACK_PEERS);
    eventually(Duration::from_secs(20), "both relays registered and healthy", || {
        healthy(&e, &admin, &["relay-a.test", "relay-b.test"])
    })
    .await;

    let mut peer = Peer::start().await;

    // Three sessions, each its own credential: the one to revoke and one kept on A, one kept
    // on B. Each sends to the peer every 5 ms.
    let revoked = credential(&e, &patient).await;
    let kept_a = credential(&e, &patient).await;
    let kept_b = credential(&e, &patient).await;
    let mut held = Vec::new();
    for (relay, (user, pass)) in [(&a, &revoked), (&a, &kept_a), (&b, &kept_b)] {
        let h = allocate_and_hold(relay.addr(), user, pass).await.expect("the issued credential allocates");
        peer.send_from(&h);
        held.push(h);
    }
    let (revoked_relayed, kept_a_relayed, kept_b_relayed) = (held[0].relayed, held[1].relayed, held[2].relayed);
    peer.until_all_flow(&[revoked_relayed, kept_a_relayed, kept_b_relayed]).await;

    // The admin revokes the first session: nothing of it after the target, the others flow.
    let (revoked_user, revoked_pass) = &revoked;
    let (called, answered) = revoke_session(&e, &admin, revoked_user).await;
    let delay = peer.assert_revoked_within_target(revoked_relayed, called, &[kept_a_relayed, kept_b_relayed]).await;
    eprintln!(
        "{engine:?}: revoke call answered in {answered:?}; the revoked session's last datagram reached the peer \
         {delay:?} after the call ({} datagrams after it)",
        peer.count(revoked_relayed, called)
    );

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
    let c = LinkedRelay::start_with(pki, "relay-c.test", link_port, &secret, (24380, 24419), LOOPBACK_PEERS);
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

    peer.finish().await;
    for h in held {
        h.close().await;
    }
}

/// Issue 20 across instances: control instances one and two share a Redis (on PostgreSQL one
/// database too; on SQLite each has its own, as in the other Redis tests, and the session is
/// unknown to the instance that revokes it); relay A is registered with one, relay B with two.
/// A session issued by two and allocated on B is revoked by an admin through one: B's last
/// datagram of it reaches the peer within 1 s of the call, another session on B flows on, and
/// both relays refuse the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_instance_ends_the_session_on_a_relay_registered_with_another() {
    for engine in engines() {
        // A Redis of its own per engine: the relay registry kept there would name the previous
        // round's relays.
        let Some(redis) = redis_server() else { return };
        revoke_across_instances(engine, &redis.url).await;
    }
}

async fn revoke_across_instances(engine: Engine, redis_url: &str) {
    let pki_dir = link_pki(&["relay-a.test", "relay-b.test"]);
    let pki = pki_dir.path();
    // One ICE secret for both instances, as a deployment behind a load balancer has.
    let secret = pki.join("ice.secret");
    std::fs::write(&secret, "shared=5ba5ba5ba5ba5ba5ba5ba5ba5ba5ba5ba5\n").unwrap();
    let shared = format!(
        "redis-url = \"{redis_url}\"\n[[ice.secrets]]\nkey-id = \"shared\"\nsecret-file = \"{}\"\n",
        secret.display()
    );
    let (port_one, port_two) = (free_udp_port(), free_udp_port());
    // Top-level keys before the tables of link_config.
    let one = env_with(engine, &format!("{shared}{}", link_config(pki, port_one))).await;
    let two_config = format!("{shared}{}", link_config(pki, port_two));
    let two = match engine {
        Engine::Sqlite => env_with(engine, &two_config).await,
        Engine::Postgres => {
            let dir = tempfile::tempdir().unwrap();
            let control = Control::start(dir.path(), &one.control.database_url, &two_config);
            Env { control, http: reqwest::Client::new(), engine, _dir: dir }
        }
    };
    let admin_one = one.admin().await;
    let admin_two = two.admin().await;
    let (patient, _) = two.user_token(&admin_two, "patient.instances@example.org", "patient").await;
    let a = LinkedRelay::start_with(pki, "relay-a.test", port_one, &secret, (24420, 24459), LOOPBACK_PEERS);
    let b = LinkedRelay::start_with(pki, "relay-b.test", port_two, &secret, (24460, 24499), LOOPBACK_PEERS);
    eventually(Duration::from_secs(20), "instance one lists both relays as healthy", || {
        healthy(&one, &admin_one, &["relay-a.test", "relay-b.test"])
    })
    .await;

    // Two sessions issued by instance two, both on B; one is revoked.
    let mut peer = Peer::start().await;
    let (revoked_user, revoked_pass) = credential(&two, &patient).await;
    let (kept_user, kept_pass) = credential(&two, &patient).await;
    let revoked = allocate_and_hold(b.addr(), &revoked_user, &revoked_pass).await.expect("allocates on B");
    let kept = allocate_and_hold(b.addr(), &kept_user, &kept_pass).await.expect("allocates on B");
    peer.send_from(&revoked);
    peer.send_from(&kept);
    peer.until_all_flow(&[revoked.relayed, kept.relayed]).await;

    // An admin revokes it through instance one, which B is not registered with.
    let (called, answered) = revoke_session(&one, &admin_one, &revoked_user).await;
    let delay = peer.assert_revoked_within_target(revoked.relayed, called, &[kept.relayed]).await;
    eprintln!(
        "{engine:?}, across instances: revoke call answered in {answered:?}; the revoked session's last datagram \
         reached the peer {delay:?} after the call ({} datagrams after it)",
        peer.count(revoked.relayed, called)
    );
    eventually(Duration::from_secs(5), "B counts the allocation ended how=\"revoked\"", || async {
        b.metric("teletip_allocations_ended_total{how=\"revoked\"}").await == Some(1.0)
    })
    .await;

    // Both relays refuse the credential, counted as revoked.
    for (relay, name) in [(&b, "B"), (&a, "A")] {
        let refused = allocate_and_hold(relay.addr(), &revoked_user, &revoked_pass).await;
        assert!(refused.is_err(), "{engine:?}: {name} refuses the revoked credential");
        eventually(Duration::from_secs(5), "the refusal is counted as revoked", || async {
            relay.metric("teletip_auth_failures_total{reason=\"revoked\"}").await.is_some_and(|n| n >= 1.0)
        })
        .await;
    }

    peer.finish().await;
    revoked.close().await;
    kept.close().await;
}

/// Whether coturn's `turnutils_uclient` is installed; in CI it must be (`.ci/install`).
fn have_uclient() -> bool {
    let found = std::process::Command::new("turnutils_uclient").output().is_ok();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "turnutils_uclient is required in CI (apt-get install coturn)");
        eprintln!("SKIPPED: turnutils_uclient is not installed (apt-get install coturn)");
    }
    found
}

/// Runs coturn's `turnutils_uclient` client to client (`-y`: its sessions send to each other's
/// relayed addresses) through `relay` with the control plane's credential, `messages` messages
/// of 160 bytes every 20 ms, plus `extra` flags (`-t`: over TCP), under a 120 s timeout.
fn uclient(relay: SocketAddr, (user, pass): &(String, String), messages: u32, extra: &[&str]) -> std::process::Child {
    let port = relay.port().to_string();
    let count = messages.to_string();
    std::process::Command::new("timeout")
        .args([
            "120",
            "turnutils_uclient",
            "-y",
            "-u",
            user.as_str(),
            "-w",
            pass.as_str(),
            "-p",
            port.as_str(),
            "-n",
            count.as_str(),
        ])
        .args(["-m", "1", "-l", "160", "-z", "20", "-L", "127.0.0.1", "-e", "127.0.0.1"])
        .args(extra)
        .arg("127.0.0.1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run turnutils_uclient")
}

/// Waits for a uclient run: its whole output, and whether it exited with success.
async fn uclient_output(child: std::process::Child) -> (String, bool) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    (format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)), out.status.success())
}

/// (sent, received) from uclient's last "tot_send_msgs=N, tot_recv_msgs=M" line.
fn uclient_totals(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().rfind(|l| l.contains("tot_send_msgs="))?;
    let num = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
    };
    Some((num("tot_send_msgs=")?, num("tot_recv_msgs=")?))
}

/// Both directions of the relay's relayed datagrams.
async fn relayed_packets(relay: &LinkedRelay) -> f64 {
    let mut total = 0.0;
    for direction in ["client_to_peer", "peer_to_client"] {
        let name = format!("teletip_relayed_packets_total{{direction=\"{direction}\"}}");
        total += relay.metric(&name).await.unwrap_or(0.0);
    }
    total
}

/// coturn's `turnutils_uclient` (a client we did not write) relays through a registered relay
/// with a credential the control plane issued, over UDP; revoked mid-run by an admin, its
/// allocations end (`how="revoked"`), the relay relays nothing more of it while it keeps
/// sending, uclient receives fewer messages than it sent, and a new run with the same
/// credential cannot allocate (the relay answers 401, counted as revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_uclient_revoked_mid_run_is_relayed_no_more_and_refused_after() {
    if have_uclient() {
        uclient_revoked_mid_run(&[], (24500, 24539)).await;
    }
}

/// The same over TCP (`-t`): the relay also closes uclient's connections at once when their
/// allocations are revoked, instead of leaving them open until the 30 s unallocated timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_uclient_over_tcp_revoked_mid_run_has_its_connections_closed_at_once() {
    if have_uclient() {
        uclient_revoked_mid_run(&["-t"], (24540, 24579)).await;
    }
}

async fn uclient_revoked_mid_run(flags: &[&str], ports: (u16, u16)) {
    let over_tcp = flags.contains(&"-t");
    // The database plays no part here: SQLite.
    let l = linked(Engine::Sqlite, &["relay-a.test"]).await;
    let secret = l.e.control.dir.join("data/relay.secret");
    let relay_args = ["--allow-loopback-peers", "true", "--max-bps", "0", "--user-quota", "0"];
    let relay = LinkedRelay::start_with(l.pki.path(), "relay-a.test", l.link_port, &secret, ports, &relay_args);
    eventually(Duration::from_secs(20), "the relay registered and healthy", || {
        healthy(&l.e, &l.admin, &["relay-a.test"])
    })
    .await;
    let issued = credential(&l.e, &l.patient).await;

    // 500 messages each way, every 20 ms: about 10 s; revoked once it is well under way.
    let run = uclient(relay.addr(), &issued, 500, flags);
    eventually(Duration::from_secs(30), "uclient's messages relayed", || async {
        relay.metric("teletip_relayed_packets_total{direction=\"client_to_peer\"}").await.is_some_and(|n| n >= 50.0)
    })
    .await;
    let allocations = relay.metric("teletip_allocations_active").await.unwrap();
    assert!(allocations >= 2.0, "uclient's two sessions hold allocations: {allocations}");
    let (called, _) = revoke_session(&l.e, &l.admin, &issued.0).await;
    eventually(Duration::from_secs(5), "every uclient allocation ended how=\"revoked\"", || async {
        relay.metric("teletip_allocations_ended_total{how=\"revoked\"}").await == Some(allocations)
    })
    .await;
    if over_tcp {
        // Closed with their allocations, long before the unallocated timeout (30 s).
        eventually(Duration::from_secs(5), "uclient's connections closed as revoked", || async {
            relay.metric("teletip_stream_connections_closed_total{reason=\"revoked\"}").await.is_some_and(|n| n >= 1.0)
                && relay.metric("teletip_stream_connections{transport=\"tcp\"}").await == Some(0.0)
        })
        .await;
        eprintln!("uclient over TCP: its connections closed {:?} after the revoke call", called.elapsed());
    }
    let relayed_at_revocation = relayed_packets(&relay).await;
    let (text, _) = uclient_output(run).await;
    assert_eq!(
        relayed_packets(&relay).await,
        relayed_at_revocation,
        "nothing of uclient relayed after its revocation:\n{text}"
    );
    if let Some((sent, received)) = uclient_totals(&text) {
        eprintln!("uclient {flags:?}, revoked mid-run: sent {sent}, received {received}");
        assert!(received < sent, "uclient received less than it sent: {sent} sent, {received} received");
    } else {
        assert!(over_tcp, "uclient over UDP reports its totals:\n{text}");
    }

    // A new run with the same credential is refused.
    let refusals = relay.metric("teletip_auth_failures_total{reason=\"revoked\"}").await.unwrap_or(0.0);
    let (text, success) = uclient_output(uclient(relay.addr(), &issued, 5, flags)).await;
    assert!(!success, "uclient with the revoked credential fails:\n{text}");
    assert!(text.contains("Cannot complete Allocation"), "uclient reports the refused Allocate:\n{text}");
    // The relay answered 401 for that reason.
    eventually(Duration::from_secs(5), "the relay counts the refusal as revoked", || async {
        relay.metric("teletip_auth_failures_total{reason=\"revoked\"}").await.is_some_and(|n| n > refusals)
    })
    .await;
}
