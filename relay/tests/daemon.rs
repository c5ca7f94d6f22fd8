//! The real daemon over real sockets: an independent TURN client (the `turn` crate), the
//! security properties an operator relies on, the command line, metrics and shutdown.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use support::*;
use teletip_turn_proto::codec::{self, Class, Method, attr};
use teletip_turn_proto::credentials::issue;

/// Two `turn` crate (webrtc-rs) clients allocate on the relay and talk to each other through
/// their relayed addresses, both ways; the relay counts the bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_crate_clients_relay_to_each_other() {
    use webrtc_util::Conn;

    let relay = Relay::start("127.0.0.1", &["--allow-loopback-peers", "true"]);
    let mut conns = Vec::new();
    let mut clients = Vec::new();
    for id in ["practitioner-session", "patient-session"] {
        let client = turn_crate_client(&relay, issue(SECRET.as_bytes(), id, unix_now() + 600)).await;
        let mapped = client.send_binding_request().await.unwrap();
        assert_eq!(mapped.ip().to_string(), "127.0.0.1");
        conns.push(client.allocate().await.unwrap());
        clients.push(client);
    }
    let a_addr = conns[0].local_addr().unwrap();
    let b_addr = conns[1].local_addr().unwrap();
    assert!((relay.min_port..=relay.max_port).contains(&a_addr.port()), "relayed port {a_addr} in range");
    let mut buf = vec![0u8; 1500];
    for round in 0..20u8 {
        // Each send installs a permission (and, after the first, a channel) on the sender's
        // allocation; the first round in each direction may race the other side's permission.
        let msg = [b"a->b ".as_slice(), &[round]].concat();
        conns[1].send_to(b"open", a_addr).await.unwrap();
        conns[0].send_to(&msg, b_addr).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), conns[1].recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                assert_eq!(from, a_addr, "the receiver sees the sender's relayed address");
                if round >= 2 {
                    assert_eq!(&buf[..n], &msg[..]);
                }
            }
            _ if round < 2 => continue,
            other => panic!("round {round}: nothing relayed a->b: {other:?}"),
        }
        // Drain what came the other way.
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(20), conns[0].recv_from(&mut buf)).await
        {
            assert_eq!((from, &buf[..n]), (b_addr, &b"open"[..]));
        }
    }
    let relayed = relay.wait_metric("teletip_relayed_bytes_total", "client_to_peer", 100.0);
    assert!(relayed >= 100.0, "relayed bytes counted: {relayed}");
    assert!(relay.metric("teletip_channels_bound_total", "") >= 1.0, "the turn crate binds channels");
    for c in &clients {
        c.close().await.unwrap();
    }
}

fn sink(bind: &str) -> (UdpSocket, u16) {
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

fn received(s: &UdpSocket) -> bool {
    let mut buf = [0u8; 1500];
    s.recv_from(&mut buf).is_ok()
}

/// Every denied IPv4 peer class is refused on CreatePermission and ChannelBind, and a Send
/// indication to the relay host's own loopback (directly or as 0.0.0.0) never arrives, while
/// the same send with loopback explicitly allowed does (so the test can fail).
#[test]
fn denied_ipv4_peers_are_refused_and_never_reached() {
    let relay = Relay::start("127.0.0.1", &[]);
    let mut c = TurnClient::new(relay.addr, "x");
    assert_eq!(c.allocate(&|_| {}).class(), Class::Success);
    let denied = [
        "0.0.0.0",
        "0.1.2.3",
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "192.0.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ];
    for (i, ip) in denied.iter().enumerate() {
        let peer: SocketAddr = format!("{ip}:9").parse().unwrap();
        let a = c.call(Method::CREATE_PERMISSION, &|w| drop(w.xor_address(attr::XOR_PEER_ADDRESS, peer)));
        assert_eq!(a.error_code(), Some(403), "CreatePermission {ip}");
        let number = 0x4000 + i as u16;
        let a = c.call(Method::CHANNEL_BIND, &|w| {
            w.bytes(attr::CHANNEL_NUMBER, &[(number >> 8) as u8, number as u8, 0, 0]).unwrap();
            w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        });
        assert_eq!(a.error_code(), Some(403), "ChannelBind {ip}");
    }
    let (s, port) = sink("127.0.0.1:0");
    let (any, any_port) = sink("0.0.0.0:0");
    c.send_indication(format!("127.0.0.1:{port}").parse().unwrap(), b"leak?");
    c.send_indication(format!("0.0.0.0:{any_port}").parse().unwrap(), b"leak?");
    assert!(!received(&s) && !received(&any), "a denied peer was reached");
    let denials = relay.wait_metric("teletip_peer_denied_total", "", (denied.len() * 2 + 2) as f64);
    assert_eq!(denials, (denied.len() * 2 + 2) as f64);
    assert!(relay.metric("teletip_peer_denied_total", "class=\"loopback\"") >= 3.0);

    // Control: with loopback allowed the very same sends arrive.
    let open = Relay::start("127.0.0.1", &["--allowed-peer-ip", "127.0.0.1"]);
    let mut c = TurnClient::new(open.addr, "x");
    assert_eq!(c.allocate(&|_| {}).class(), Class::Success);
    let peer: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        c.call(Method::CREATE_PERMISSION, &|w| drop(w.xor_address(attr::XOR_PEER_ADDRESS, peer))).class(),
        Class::Success
    );
    c.send_indication(peer, b"allowed");
    assert!(received(&s), "the allowed send arrives");
}

/// The IPv6 classes (`::` and `::1` were coturn's CVE-2020-26262), including IPv4 loopback
/// written as an IPv4-mapped address (CVE-2026-27624), on a relay whose relayed addresses are
/// IPv6.
#[test]
fn denied_ipv6_peers_and_mapped_ipv4_are_refused() {
    let relay = Relay::start("::1", &[]);
    let mut c = TurnClient::new(relay.addr, "x");
    let a = c.allocate(&|w| drop(w.bytes(attr::REQUESTED_ADDRESS_FAMILY, &[codec::FAMILY_IPV6, 0, 0, 0])));
    assert_eq!(a.class(), Class::Success, "{:?}", a.error_code());
    assert!(a.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap().is_ipv6());
    let denied = [
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "::127.0.0.1",
        "::ffff:169.254.169.254",
        "fe80::1",
        "fc00::1",
        "fd00::1",
        "ff02::1",
        "64:ff9b::7f00:1",
        "2001::1",
        "2002:7f00:1::1",
    ];
    for (i, ip) in denied.iter().enumerate() {
        let peer: SocketAddr = format!("[{ip}]:9").parse().unwrap();
        let a = c.call(Method::CREATE_PERMISSION, &|w| drop(w.xor_address(attr::XOR_PEER_ADDRESS, peer)));
        assert_eq!(a.error_code(), Some(403), "CreatePermission {ip}");
        let number = 0x4100 + i as u16;
        let a = c.call(Method::CHANNEL_BIND, &|w| {
            w.bytes(attr::CHANNEL_NUMBER, &[(number >> 8) as u8, number as u8, 0, 0]).unwrap();
            w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        });
        assert_eq!(a.error_code(), Some(403), "ChannelBind {ip}");
    }
    let (s6, port6) = sink("[::1]:0");
    let (s4, port4) = sink("127.0.0.1:0");
    c.send_indication(format!("[::1]:{port6}").parse().unwrap(), b"leak?");
    c.send_indication(format!("[::ffff:127.0.0.1]:{port4}").parse().unwrap(), b"leak?");
    c.send_indication(format!("[::]:{port6}").parse().unwrap(), b"leak?");
    assert!(!received(&s6) && !received(&s4), "a denied peer was reached");
    // IPv4 peers never reach an IPv6 allocation (443), mapped or not.
    let v4: SocketAddr = "93.184.216.34:9".parse().unwrap();
    assert_eq!(
        c.call(Method::CREATE_PERMISSION, &|w| drop(w.xor_address(attr::XOR_PEER_ADDRESS, v4))).error_code(),
        Some(443)
    );
}

#[test]
fn wrong_expired_and_tampered_credentials_are_refused() {
    let relay = Relay::start("127.0.0.1", &[]);
    let now = unix_now();
    let cases = [
        ("wrong secret", issue(b"some-other-secret-entirely", "x", now + 600)),
        ("expired", issue(SECRET.as_bytes(), "x", now - 5)),
        ("password of another username", (format!("{}:x", now + 600), issue(SECRET.as_bytes(), "y", now + 600).1)),
    ];
    for (what, creds) in cases {
        let mut c = TurnClient::with_credentials(relay.addr, creds);
        assert_eq!(c.allocate(&|_| {}).error_code(), Some(401), "{what}");
    }
    // A valid request whose HMAC was altered after signing.
    let mut c = TurnClient::new(relay.addr, "x");
    let _ = c.allocate(&|_| {}); // learn the nonce, allocate
    let mut req = c.build(Method::REFRESH, Class::Request, &|_| {});
    let mi = req.len() - 8 - 5; // inside MESSAGE-INTEGRITY, before FINGERPRINT
    req[mi] ^= 0x01;
    // Fix FINGERPRINT so that only the HMAC is wrong.
    let fp_at = req.len() - 4;
    let fp = teletip_turn_proto::codec::fingerprint_of(&req[..req.len() - 8]);
    req[fp_at..].copy_from_slice(&fp.to_be_bytes());
    assert_eq!(c.exchange(&req).unwrap().error_code(), Some(401));
    assert!(relay.wait_metric("teletip_auth_failures_total", "", 4.0) >= 4.0);
}

/// 2,000 malformed datagrams of many shapes: none is answered, all are counted, and the relay
/// still serves a real request afterwards.
#[test]
fn malformed_datagrams_are_dropped_counted_and_survived() {
    let relay = Relay::start("127.0.0.1", &["--unauth-rate", "100000", "--unauth-burst", "100000"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut valid = [0u8; 64];
    let mut w = codec::MessageWriter::new(&mut valid, Method::BINDING, Class::Request, [3; 12]).unwrap();
    let vlen = w.finish_with_fingerprint().unwrap();
    let valid = &valid[..vlen];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut sent = 0;
    for i in 0..2000 {
        let len = (next() % 200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 5 {
            0 => {}                                // random bytes
            1 => d = valid[..(i % vlen)].to_vec(), // truncated STUN
            2 => {
                d = valid.to_vec(); // bad fingerprint
                let last = d.len() - 1;
                d[last] ^= (i as u8) | 1;
            }
            3 => {
                d = valid.to_vec(); // length field lies
                d[3] = d[3].wrapping_add(4 + (i as u8 % 8) * 4);
            }
            _ => {
                if d.len() < 4 {
                    d.resize(4, 0);
                }
                d[0] = 0x40 | (d[0] & 0x3F); // ChannelData without an allocation
            }
        }
        if d.is_empty() {
            d.push(0xFF);
        }
        socket.send_to(&d, relay.addr).unwrap();
        sent += 1;
    }
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 2048];
    let answered = std::iter::from_fn(|| socket.recv_from(&mut buf).ok()).count();
    assert_eq!(answered, 0, "malformed datagrams must get no answer");
    socket.send_to(valid, relay.addr).unwrap();
    let (n, _) = socket.recv_from(&mut buf).expect("still answering");
    assert_eq!(codec::Message::decode(&buf[..n]).unwrap().class(), Class::Success);
    let dropped = relay.wait_metric("teletip_dropped_packets_total", "", sent as f64);
    assert_eq!(dropped, sent as f64, "every malformed datagram is counted");
}

#[test]
fn metrics_never_name_users_and_sigterm_stops_cleanly() {
    let relay = Relay::start("127.0.0.1", &[]);
    let mut c = TurnClient::new(relay.addr, "pseudonymous-session-4711");
    assert_eq!(c.allocate(&|_| {}).class(), Class::Success);
    relay.wait_metric("teletip_allocations_created_total", "", 1.0);
    let text = relay.metrics_text();
    assert!(text.contains("teletip_allocations_active 1"), "{text}");
    assert!(text.contains("teletip_auth_success_total{key_id=\"default\"} 1"));
    assert!(!text.contains("4711"), "usernames never become labels");
    assert!(!text.contains(SECRET));
    let status = relay.stop();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn check_config_redacts_secrets_and_credential_prints_a_working_pair() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("relay.toml");
    std::fs::write(
        &conf,
        format!("listening-ip = [\"127.0.0.1\"]\nrealm = \"{REALM}\"\nstatic-auth-secret = \"{SECRET}\"\nallow-loopback-peers = true\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["-c", conf.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("realm = \"teletip.test\"") && !stdout.contains(SECRET), "{stdout}");
    assert!(stderr.contains("UNSAFE SETTING: allow-loopback-peers"), "{stderr}");

    let bad = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--static-auth-secret", "short", "check-config"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("shorter than 16 bytes"));
    // A realm whose 401 could not keep within three times the smallest Allocate.
    let long_realm = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--static-auth-secret", SECRET, "--realm", "turn.kantonsspital-example.ch.local", "check-config"])
        .output()
        .unwrap();
    assert!(!long_realm.status.success());
    assert!(String::from_utf8_lossy(&long_realm.stderr).contains("realm is 35 bytes: at most 32"), "{long_realm:?}");

    let relay = Relay::start("127.0.0.1", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--static-auth-secret", SECRET, "credential", "--user", "cli-user", "--ttl", "120"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let username = text.lines().find_map(|l| l.strip_prefix("username: ")).unwrap().to_string();
    let password = text.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().to_string();
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!((unix_now() + 110..=unix_now() + 121).contains(&expiry));
    let mut c = TurnClient::with_credentials(relay.addr, (username, password));
    assert_eq!(c.allocate(&|_| {}).class(), Class::Success);
}

/// Secret rotation without a restart: the operator rewrites the secret file and sends SIGHUP.
/// New credentials under the retired secret are refused from then on, the allocation made
/// under it keeps refreshing (its call goes on), the new secret works for an independent client
/// (the `turn` crate), and a file that no longer validates changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_secrets_without_ending_allocations() {
    const RETIRED: &str = "k1-secret-rotated-out-0123456789";
    const NEXT: &str = "k2-secret-rotated-in-9876543210";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    std::fs::write(&file, format!("k1={RETIRED}\n")).unwrap();
    let relay = Relay::start("127.0.0.1", &["--static-auth-secret-file", file.to_str().unwrap()]);
    let under = |secret: &str, id: &str| issue(secret.as_bytes(), id, unix_now() + 600);

    let mut in_call = TurnClient::with_credentials(relay.addr, under(RETIRED, "in-call"));
    assert_eq!(in_call.allocate(&|_| {}).class(), Class::Success, "k1 accepted at start");
    let mut early = TurnClient::with_credentials(relay.addr, under(NEXT, "early"));
    assert_eq!(early.allocate(&|_| {}).error_code(), Some(401), "k2 not yet accepted");

    std::fs::write(&file, format!("k2={NEXT}\n")).unwrap();
    relay.signal(libc::SIGHUP);
    // The signal is handled asynchronously: wait until a k2 credential is accepted (the set is
    // swapped as a whole, so k1 is gone from then on).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = TurnClient::with_credentials(relay.addr, under(NEXT, "probe"));
        if probe.allocate(&|_| {}).class() == Class::Success {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "k2 not accepted 5 s after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut late = TurnClient::with_credentials(relay.addr, under(RETIRED, "late"));
    assert_eq!(late.allocate(&|_| {}).error_code(), Some(401), "a new k1 credential is refused");
    let refreshed = in_call.call(Method::REFRESH, &|w| drop(w.u32(attr::LIFETIME, 600)));
    assert_eq!(refreshed.class(), Class::Success, "the allocation made under k1 keeps refreshing");
    assert_eq!(in_call.allocate(&|_| {}).error_code(), Some(437), "and it is still there (437: already allocated)");

    let client = turn_crate_client(&relay, under(NEXT, "turn-crate")).await;
    let relayed = client.allocate().await.expect("the turn crate allocates under k2");
    let relayed = webrtc_util::Conn::local_addr(&relayed).unwrap();
    assert!((relay.min_port..=relay.max_port).contains(&relayed.port()), "relayed port {relayed} in range");
    client.close().await.unwrap();

    // A secret file that no longer validates (a secret under 16 bytes) is refused as a whole.
    std::fs::write(&file, "k3=too-short\n").unwrap();
    relay.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let mut still = TurnClient::with_credentials(relay.addr, under(NEXT, "still"));
    assert_eq!(still.allocate(&|_| {}).class(), Class::Success, "k2 still accepted after a bad reload");

    // k2: the probe, the turn crate and `still`; k1: `in_call`'s Allocate only (its Refresh
    // reuses the allocation's key).
    assert_eq!(relay.wait_metric("teletip_auth_success_total", "key_id=\"k2\"", 3.0), 3.0, "k2 counted");
    assert_eq!(relay.metric("teletip_auth_success_total", "key_id=\"k1\""), 1.0, "k1's count kept");
    assert!(relay.stop().success());
}

/// Draining for maintenance: after SIGUSR1 a new Allocate gets a signed 300 Try Alternate
/// naming the configured alternate server, the allocation already in place keeps refreshing,
/// and `teletip_draining` says so; SIGUSR2 ends the drain.
#[test]
fn sigusr1_drains_new_allocations_to_the_alternate_and_sigusr2_ends_it() {
    let relay = Relay::start("127.0.0.1", &["--alternate-server", "192.0.2.9:3478,[2001:db8::9]:3478"]);
    let mut in_call = TurnClient::new(relay.addr, "in-call");
    assert_eq!(in_call.allocate(&|_| {}).class(), Class::Success);
    assert_eq!(relay.metric("teletip_draining", ""), 0.0);

    relay.signal(libc::SIGUSR1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let turned_away = loop {
        let mut fresh = TurnClient::new(relay.addr, "fresh");
        let answer = fresh.allocate(&|_| {});
        if answer.error_code() == Some(300) {
            break answer;
        }
        assert_eq!(answer.class(), Class::Success, "before the drain begins");
        assert!(std::time::Instant::now() < deadline, "no 300 within 5 s of SIGUSR1");
        std::thread::sleep(Duration::from_millis(50));
    };
    // ALTERNATE-SERVER in the plain MAPPED-ADDRESS form: the IPv4 alternate for an IPv4 client.
    assert_eq!(turned_away.msg().get(attr::ALTERNATE_SERVER), Some(&[0, 1, 0x0D, 0x96, 192, 0, 2, 9][..]));
    assert!(turned_away.msg().has_integrity(), "the 300 is signed");
    let refreshed = in_call.call(Method::REFRESH, &|w| drop(w.u32(attr::LIFETIME, 600)));
    assert_eq!(refreshed.class(), Class::Success, "the allocation in place carries on");
    assert_eq!(relay.wait_metric("teletip_draining", "", 1.0), 1.0);
    assert!(relay.wait_metric("teletip_allocations_failed_total", "reason=\"draining\"", 1.0) >= 1.0);

    relay.signal(libc::SIGUSR2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut after = TurnClient::new(relay.addr, "after");
        if after.allocate(&|_| {}).class() == Class::Success {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still turned away 5 s after SIGUSR2");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(relay.metric("teletip_draining", ""), 0.0);
    assert!(relay.stop().success());
}

/// A drain (or a reload) ordered the moment the relay can be seen from outside (its metrics
/// endpoint answers) is carried out, never the signal's default action, which ends the process
/// and every call on it: the handlers are in place before the relay shows itself, however long
/// the start-up steps in between take (here a start-up pool of 2,000 relayed sockets to open).
#[test]
fn a_drain_ordered_as_soon_as_the_relay_shows_itself_is_carried_out() {
    use std::os::unix::process::ExitStatusExt;
    // The listening port is found free just before the relay binds it, so another process can
    // take it in between (the relay then exits with an error after its metrics came up): such a
    // start is tried again on fresh ports, as `Relay::start` does.
    for _attempt in 0..5 {
        let mut relay = Relay::spawn("127.0.0.1", &["--relay-socket-pool-at-start", "2000"], 2000);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(relay.metrics).is_err() {
            assert!(std::time::Instant::now() < deadline, "the metrics endpoint never answered");
            std::thread::sleep(Duration::from_millis(1));
        }
        relay.signal(libc::SIGUSR1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = relay.exit_status() {
                assert_eq!(status.signal(), None, "SIGUSR1 right after start ended the relay: {status}");
                break; // it could not bind its ports: a fresh start
            }
            if scrape(relay.metrics).is_some_and(|text| {
                text.lines()
                    .any(|l| l.strip_prefix("teletip_draining ").and_then(|v| v.parse::<f64>().ok()) == Some(1.0))
            }) {
                assert!(relay.stop().success());
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the drain was not carried out within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("teletip-relay did not start in 5 attempts");
}

/// The metrics page, or None if the endpoint does not answer.
fn scrape(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}
