//! The control link, whole: real `teletip-relay` processes dial a real `teletip-control` over
//! QUIC with certificates made by openssl, register, report their load, are handed out least
//! loaded first, drain on an admin's order, leave at once when they stop, keep relaying while
//! the control plane is down and register again when it is back. A relay whose certificate
//! the relay CA did not sign is refused.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::pki::{free_udp_port, link_config, make_ca, make_cert};
use support::redis_server::redis_server;
use support::relay::{LinkedRelay, allocate_and_hold, eventually, turn_allocate};
use support::{Control, Engine};

async fn nodes(e: &Env, admin: &str) -> Vec<Value> {
    let (s, body) = e.get("/v1/relays", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

fn node<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|n| n["node"] == name)
}

/// The TURN URLs' ports of an ICE answer, in order, and its first credential.
async fn offered(e: &Env, token: &str) -> (Vec<String>, String, String) {
    let (s, body) = e.post("/v1/ice/credentials", Some(token), json!({"relayOnly": true})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let servers = body["iceServers"].as_array().unwrap();
    let urls = servers.iter().map(|s| s["urls"][0].as_str().unwrap().to_owned()).collect();
    (urls, servers[0]["username"].as_str().unwrap().into(), servers[0]["credential"].as_str().unwrap().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_register_report_load_drain_on_order_and_outlive_the_control_plane() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    make_cert(pki, "ca", "relay-a.test", "clientAuth");
    make_cert(pki, "ca", "relay-b.test", "clientAuth");
    make_ca(pki, "rogue-ca");
    make_cert(pki, "rogue-ca", "relay-rogue.test", "clientAuth");
    // The rogue node trusts the real control plane; only its own certificate is wrong.
    let link_port = free_udp_port();
    let e = env_with(Engine::Sqlite, &link_config(pki, link_port)).await;
    let admin = e.admin().await;
    let (patient, _) = e.user_token(&admin, "patient.link@example.org", "patient").await;

    // No relay yet: the static list.
    let (urls, _, _) = offered(&e, &patient).await;
    assert_eq!(urls, ["turn:static.invalid:3478?transport=udp"]);

    let secret = e.control.dir.join("data/relay.secret");
    let mut a = LinkedRelay::start(pki, "relay-a.test", link_port, &secret, (24100, 24139));
    // B has a secret file of its own: it accepts the control plane's credentials only because
    // the control plane pushes its secrets over the link.
    let b_secret = pki.join("relay-b.secrets");
    std::fs::write(&b_secret, "b-own=b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0\n").unwrap();
    let mut b = LinkedRelay::start(pki, "relay-b.test", link_port, &b_secret, (24140, 24179));
    let rogue = LinkedRelay::start(pki, "relay-rogue.test", link_port, &secret, (24180, 24199));
    eventually(Duration::from_secs(20), "both relays registered and healthy", || async {
        let list = nodes(&e, &admin).await;
        ["relay-a.test", "relay-b.test"].iter().all(|n| node(&list, n).is_some_and(|n| n["healthy"] == true))
    })
    .await;
    let list = nodes(&e, &admin).await;
    assert_eq!(list.len(), 2, "the rogue node is not listed: {list:?}");
    let listed_a = node(&list, "relay-a.test").unwrap();
    assert_eq!(listed_a["region"], "istanbul-1");
    assert_eq!(listed_a["host"], "127.0.0.1");
    assert_eq!(listed_a["udpPort"], a.port);
    assert_eq!(listed_a["tcpPort"], a.port, "TCP is served on the UDP port by default");
    assert_eq!(listed_a["capacity"], 100);
    assert_eq!(listed_a["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(a.metric("teletip_control_link_up").await, Some(1.0));
    eventually(Duration::from_secs(10), "the rogue relay's link stays down and is counted as refused", || async {
        let refused = e.http.get(e.control.url("/metrics")).send().await.unwrap().text().await.unwrap();
        rogue.metric("teletip_control_link_up").await == Some(0.0)
            && refused.contains("teletip_relay_link_refused_total{reason=\"handshake\"}")
    })
    .await;

    // Admins only; an unknown node is a 404 problem.
    assert_eq!(e.get("/v1/relays", Some(&patient)).await.0, StatusCode::FORBIDDEN);
    let (s, p) = e.post("/v1/relays/relay-a.test/drain", Some(&patient), json!({})).await;
    assert_problem(s, &p, StatusCode::FORBIDDEN, "a patient cannot drain a relay");
    let (s, p) = e.post("/v1/relays/relay-zz.test/drain", Some(&admin), json!({})).await;
    assert_problem(s, &p, StatusCode::NOT_FOUND, "unknown node");

    // An allocation on A: once reported, B (idle) is offered first.
    let (_, user, pass) = offered(&e, &patient).await;
    let held = allocate_and_hold(a.addr(), &user, &pass).await.expect("the issued credential allocates on A");
    eventually(Duration::from_secs(10), "A reports its allocation", || async {
        node(&nodes(&e, &admin).await, "relay-a.test").unwrap()["allocations"] == 1
    })
    .await;
    let (urls, _, _) = offered(&e, &patient).await;
    let (port_a, port_b) = (format!(":{}?", a.port), format!(":{}?", b.port));
    assert!(urls.len() == 2 && urls[0].contains(&port_b) && urls[1].contains(&port_a), "least loaded first: {urls:?}");
    let (_, user, pass) = offered(&e, &patient).await;
    let pushed = turn_allocate(b.addr(), &user, &pass).await;
    assert!(pushed.is_ok(), "B accepts the control plane's credential through the pushed secret: {pushed:?}");
    // A SIGHUP re-reads B's own secret file and keeps the pushed secret.
    b.signal(1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_reload = turn_allocate(b.addr(), &user, &pass).await;
    assert!(after_reload.is_ok(), "after a SIGHUP B still accepts it: {after_reload:?}");
    eventually(Duration::from_secs(5), "B counts the successes under the pushed key id", || async {
        b.metric("teletip_auth_success_total{key_id=\"local\"}").await.is_some_and(|n| n >= 2.0)
    })
    .await;

    // Drain A from the control plane: the relay drains (its own metric), refuses a new
    // allocation, keeps the one in place, and is no longer offered.
    let (s, drained) = e.post("/v1/relays/relay-a.test/drain", Some(&admin), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{drained}");
    assert_eq!(drained["drainRequested"], true);
    eventually(Duration::from_secs(5), "A drains", || async { a.metric("teletip_draining").await == Some(1.0) }).await;
    let (urls, user, pass) = offered(&e, &patient).await;
    assert!(urls.len() == 1 && urls[0].contains(&port_b), "a draining relay is not offered: {urls:?}");
    let refused = turn_allocate(a.addr(), &user, &pass).await;
    assert!(refused.is_err(), "a draining relay without an alternate refuses new allocations: {refused:?}");
    eventually(Duration::from_secs(5), "A reports draining, its allocation still in place", || async {
        let list = nodes(&e, &admin).await;
        let a = node(&list, "relay-a.test").unwrap();
        a["draining"] == true && a["allocations"] == 1
    })
    .await;
    let (_, audit) = e.get("/v1/audit?action=relay.drain", Some(&admin)).await;
    let events = audit["events"].as_array().unwrap();
    assert!(events.len() == 1 && events[0]["target"] == "relay:relay-a.test", "{audit}");

    let (s, resumed) = e.post("/v1/relays/relay-a.test/resume", Some(&admin), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    eventually(Duration::from_secs(5), "A's drain ends", || async { a.metric("teletip_draining").await == Some(0.0) })
        .await;
    let (_, user, pass) = offered(&e, &patient).await;
    assert!(turn_allocate(a.addr(), &user, &pass).await.is_ok(), "A takes allocations again");

    // B stops: it says so on its way out, so it leaves the offer at once, not after
    // stale-after.
    b.terminate();
    eventually(Duration::from_secs(2), "B is no longer connected", || async {
        node(&nodes(&e, &admin).await, "relay-b.test").unwrap()["connected"] == false
    })
    .await;
    let (urls, user, pass) = offered(&e, &patient).await;
    assert!(urls.len() == 1 && urls[0].contains(&port_a), "only A is left: {urls:?}");

    // The control plane goes away: A keeps relaying (a credential issued before allocates),
    // and registers again when the control plane is back.
    let config = e.control.config_path.clone();
    let Env { control, http, _dir, .. } = e;
    let (dir, database_url) = (control.dir.clone(), control.database_url.clone());
    control.stop();
    // It closes the link on its way out: A knows at once, not after the 15 s idle timeout.
    eventually(Duration::from_secs(5), "A notices the control plane is gone", || async {
        a.metric("teletip_control_link_up").await == Some(0.0)
    })
    .await;
    assert!(turn_allocate(a.addr(), &user, &pass).await.is_ok(), "A relays without the control plane");
    held.close().await;
    let control = restart(&dir, &database_url, &config);
    let e = Env { control, http, engine: Engine::Sqlite, _dir };
    let admin = e.admin().await;
    eventually(Duration::from_secs(40), "A registers with the new control plane", || async {
        nodes(&e, &admin).await.iter().any(|n| n["node"] == "relay-a.test" && n["healthy"] == true)
    })
    .await;
    a.terminate();
}

/// Issue 18 item 7: a control plane that dies without a word (SIGKILL, a host lost, a cut
/// path) closes nothing, so only the link's keep-alives and idle timeout (1 s and 3 s,
/// `teletip_link::tls`) tell the relay. It knows within 5 s, not after a 15 s idle timeout,
/// and an idle link does not drop meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_notices_a_killed_control_plane_within_five_seconds() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    make_cert(pki, "ca", "relay-a.test", "clientAuth");
    let link_port = free_udp_port();
    let e = env_with(Engine::Sqlite, &link_config(pki, link_port)).await;
    let secret = e.control.dir.join("data/relay.secret");
    let mut a = LinkedRelay::start(pki, "relay-a.test", link_port, &secret, (24240, 24279));
    eventually(Duration::from_secs(20), "A's link is up", || async {
        a.metric("teletip_control_link_up").await == Some(1.0)
    })
    .await;
    // Longer than the idle timeout: keep-alives (and the load reports) hold the link up.
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(6) {
        assert_eq!(a.metric("teletip_control_link_up").await, Some(1.0), "the link stays up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let Env { control, .. } = e;
    let killed = Instant::now();
    // Dropping a Control kills its process with SIGKILL (std's Child::kill): no QUIC close
    // reaches the relay.
    drop(control);
    eventually(Duration::from_secs(5), "A notices the killed control plane", || async {
        a.metric("teletip_control_link_up").await == Some(0.0)
    })
    .await;
    eprintln!("control plane killed: link_up read 0 after {:?}", killed.elapsed());
    a.terminate();
}

/// The same control plane again (same configuration file, database and data directory).
fn restart(dir: &Path, database_url: &str, config: &PathBuf) -> Control {
    let extra = std::fs::read_to_string(config).unwrap();
    // Control::start writes listen, database-url and data-dir itself, first.
    let extra: String = extra.lines().skip(3).map(|l| format!("{l}\n")).collect();
    Control::start(dir, database_url, &extra)
}

/// Two control instances sharing one Redis: a relay connected to the first is named in the
/// second's ICE answers and drained through the second's API; the drain request outlives the
/// relay's restart (it is kept in Redis, not in an instance's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_any_instance_names_and_drains_a_relay_connected_to_another() {
    let Some(redis) = redis_server() else { return };
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    make_cert(pki, "ca", "relay-a.test", "clientAuth");
    // One ICE secret for both instances, as a deployment behind a load balancer has.
    let secret = pki.join("ice.secret");
    std::fs::write(&secret, "shared=5ba5ba5ba5ba5ba5ba5ba5ba5ba5ba5ba5\n").unwrap();
    let shared = format!(
        "redis-url = \"{}\"\n[[ice.secrets]]\nkey-id = \"shared\"\nsecret-file = \"{}\"\n",
        redis.url,
        secret.display()
    );
    let (port_1, port_2) = (free_udp_port(), free_udp_port());
    // Top-level keys before the tables of link_config.
    let one = env_with(Engine::Sqlite, &format!("{shared}{}", link_config(pki, port_1))).await;
    let two = env_with(Engine::Sqlite, &format!("{shared}{}", link_config(pki, port_2))).await;
    let admin_1 = one.admin().await;
    let admin_2 = two.admin().await;
    let (patient_2, _) = two.user_token(&admin_2, "patient.two@example.org", "patient").await;

    let mut a = LinkedRelay::start(pki, "relay-a.test", port_1, &secret, (24200, 24239));
    eventually(Duration::from_secs(20), "the second instance lists A, connected to the first, as healthy", || async {
        nodes(&two, &admin_2).await.iter().any(|n| n["node"] == "relay-a.test" && n["healthy"] == true)
    })
    .await;
    let (urls, user, pass) = offered(&two, &patient_2).await;
    let port_a = format!(":{}?", a.port);
    assert!(urls.len() == 1 && urls[0].contains(&port_a), "the second instance names A: {urls:?}");
    assert!(turn_allocate(a.addr(), &user, &pass).await.is_ok(), "its credential allocates on A");

    // Drained through the second instance: A gets the order from the first at its next report.
    let (s, drained) = two.post("/v1/relays/relay-a.test/drain", Some(&admin_2), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{drained}");
    assert_eq!(drained["drainRequested"], true);
    eventually(Duration::from_secs(5), "A drains", || async { a.metric("teletip_draining").await == Some(1.0) }).await;
    let (urls, _, _) = offered(&two, &patient_2).await;
    assert_eq!(urls, ["turn:static.invalid:3478?transport=udp"], "a drained relay is not named");

    // A restarts (not draining any more) and registers again: the request, kept in Redis, is
    // applied at once.
    a.terminate();
    let mut a = LinkedRelay::start(pki, "relay-a.test", port_1, &secret, (24200, 24239));
    eventually(Duration::from_secs(20), "the restarted A drains again", || async {
        a.metric("teletip_control_link_up").await == Some(1.0) && a.metric("teletip_draining").await == Some(1.0)
    })
    .await;

    // Resumed through the first instance.
    let (s, resumed) = one.post("/v1/relays/relay-a.test/resume", Some(&admin_1), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    eventually(Duration::from_secs(5), "A's drain ends", || async { a.metric("teletip_draining").await == Some(0.0) })
        .await;
    let port_a = format!(":{}?", a.port); // the restarted A listens on another port
    eventually(Duration::from_secs(5), "the second instance names A again", || async {
        offered(&two, &patient_2).await.0.iter().any(|u| u.contains(&port_a))
    })
    .await;
    a.terminate();
}

/// A relay listening and relaying on IPv4 and IPv6 registers its IPv6 address too: the ICE answer
/// lists its URLs on the bracketed IPv6 literal after the IPv4 ones, and the credential it carries
/// allocates through that URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_relay_is_offered_on_its_ipv6_address_too() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        assert!(std::env::var_os("CI").is_none(), "::1 is required in CI");
        eprintln!("SKIPPED a_dual_stack_relay_is_offered_on_its_ipv6_address_too: no IPv6 loopback here");
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = pki_dir.path();
    make_ca(pki, "ca");
    make_cert(pki, "ca", "control.test", "serverAuth");
    make_cert(pki, "ca", "relay-a.test", "clientAuth");
    let link_port = free_udp_port();
    let e = env_with(Engine::Sqlite, &link_config(pki, link_port)).await;
    let admin = e.admin().await;
    let (patient, _) = e.user_token(&admin, "patient.v6@example.org", "patient").await;
    let secret = e.control.dir.join("data/relay.secret");
    let dual = ["--listening-ip", "127.0.0.1,::1", "--allow-loopback-peers", "true"];
    let a = LinkedRelay::start_with(pki, "relay-a.test", link_port, &secret, (24420, 24459), &dual);
    eventually(Duration::from_secs(20), "A registered and healthy", || async {
        node(&nodes(&e, &admin).await, "relay-a.test").is_some_and(|n| n["healthy"] == true)
    })
    .await;
    let (s, body) = e.post("/v1/ice/credentials", Some(&patient), json!({"relayOnly": true})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let server = &body["iceServers"][0];
    let urls: Vec<&str> = server["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    let p = a.port;
    assert_eq!(
        urls,
        [
            format!("turn:127.0.0.1:{p}?transport=udp"),
            format!("turn:127.0.0.1:{p}?transport=tcp"),
            format!("turn:[::1]:{p}?transport=udp"),
            format!("turn:[::1]:{p}?transport=tcp"),
        ]
    );
    let (user, pass) = (server["username"].as_str().unwrap(), server["credential"].as_str().unwrap());
    let over_v6 = format!("[::1]:{p}").parse().unwrap();
    let relayed = turn_allocate(over_v6, user, pass).await.expect("the credential allocates over the IPv6 URL");
    assert!((24420..=24459).contains(&relayed.port()), "{relayed}");
}
