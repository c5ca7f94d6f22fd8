//! `teletip-relay firewall`: the generated ruleset is accepted by the real `nft`, and, applied
//! inside a network namespace, lets through what the relay needs and drops the rest, checked
//! with real packets from a second namespace across a veth pair.
//!
//! Both need root (`nft` needs CAP_NET_ADMIN even for `-c`). Without root or without
//! nft/iproute2 they say SKIPPED; in CI (`CI` set, where .ci/install provides both and runs as
//! root) that is a failure instead.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

const BIN: &str = env!("CARGO_BIN_EXE_teletip-relay");
const SECRET: &str = "firewall-test-secret-0123456789abcdef";

/// Whether this machine can run nft for real; otherwise a loud skip (or a failure in CI).
fn can_run_nft(test: &str) -> bool {
    let missing: Vec<&str> = ["nft", "ip"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success()
        })
        .collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !missing.is_empty() {
        format!("{} not installed (apt-get install nftables iproute2)", missing.join(" and "))
    } else if !root {
        "not root (nft needs CAP_NET_ADMIN, even for `nft -c`)".to_owned()
    } else {
        return true;
    };
    assert!(std::env::var_os("CI").is_none(), "{test}: {reason}; CI must run it");
    // Straight to stderr: the test harness captures eprintln! of passing tests, and a skip
    // must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `teletip-relay <flags> firewall --dry-run`: the JSON, and the number of rules in it.
fn dry_run(flags: &[&str]) -> (String, usize) {
    let out = run(Command::new(BIN).args(flags).args(["--static-auth-secret", SECRET, "firewall", "--dry-run"]));
    let json = String::from_utf8(out.stdout).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("--dry-run prints JSON only");
    let rules = parsed["nftables"].as_array().unwrap().iter().filter(|c| c["add"].get("rule").is_some()).count();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("{rules} rules in table inet teletip_relay")), "{stderr}");
    (json, rules)
}

/// A few configurations shaped like real deployments: every one must load in the kernel.
#[test]
fn generated_rulesets_pass_nft_check() {
    let configs: &[(&str, &[&str])] = &[
        ("defaults (loopback)", &[]),
        (
            "hospital edge",
            &[
                "--listening-ip",
                "10.20.30.40",
                "--external-ip",
                "203.0.113.10",
                "--min-port",
                "50000",
                "--max-port",
                "51999",
                "--prometheus-address",
                "10.20.30.40",
                "--metrics-allowed-network",
                "10.9.0.0/24,192.0.2.7/32",
                "--cert",
                "/etc/teletip-relay/tls/relay.crt",
                "--pkey",
                "/etc/teletip-relay/tls/relay.key",
                "--tls-listening-port",
                "443",
            ],
        ),
        (
            "dual-stack wildcards, SSH kept open",
            &[
                "--listening-ip",
                "0.0.0.0,::",
                "--relay-ip",
                "10.0.0.5",
                "--prometheus-address",
                "::",
                "--metrics-allowed-network",
                "10.9.0.0/24,2001:db8:9::/48",
                "--firewall-allowed-tcp-port",
                "22",
                "--firewall-new-flow-rate",
                "5",
                "--firewall-new-flow-burst",
                "10",
            ],
        ),
        (
            "IPv6 relay, one relay port, no metrics",
            &["--listening-ip", "2001:db8::10", "--min-port", "40000", "--max-port", "40000", "--prometheus", "false"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for (name, flags) in configs {
        let (json, rules) = dry_run(flags);
        eprintln!("{name}: {rules} rules");
        let file = dir.path().join(format!("{}.json", checked.len()));
        std::fs::write(&file, &json).unwrap();
        checked.push((name, file));
    }
    let missing_mode = Command::new(BIN).args(["--static-auth-secret", SECRET, "firewall"]).output().unwrap();
    assert!(!missing_mode.status.success(), "firewall needs --dry-run or --apply");

    if !can_run_nft("generated_rulesets_pass_nft_check") {
        return;
    }
    for (name, file) in checked {
        // -c: the kernel checks the whole transaction and then discards it.
        let out = Command::new("nft").args(["-j", "-c", "-f"]).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: nft -j -c refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two namespaces joined by a veth pair, deleted on drop (also when the test panics).
struct Namespaces {
    server: String,
    client: String,
    made: Vec<String>,
}

const SERVER_V4: &str = "198.18.0.1";
const CLIENT_V4: &str = "198.18.0.2";
/// A second client address, the one `metrics-allowed-network` lets in.
const MONITOR_V4: &str = "198.18.0.3";
const SERVER_V6: &str = "2001:db8::1";
const CLIENT_V6: &str = "2001:db8::2";

impl Namespaces {
    fn new() -> Namespaces {
        remove_stale_namespaces();
        let pid = std::process::id();
        let mut ns = Namespaces { server: format!("tlfw{pid}s"), client: format!("tlfw{pid}c"), made: Vec::new() };
        for name in [ns.server.clone(), ns.client.clone()] {
            run(Command::new("ip").args(["netns", "add", &name]));
            ns.made.push(name);
        }
        let (veth_s, veth_c) = (format!("tfw{pid}s"), format!("tfw{pid}c"));
        ns.ip(&ns.server, &["link", "add", &veth_s, "type", "veth", "peer", "name", &veth_c, "netns", &ns.client]);
        for (side, dev, addrs) in [
            (&ns.server, &veth_s, vec![format!("{SERVER_V4}/24"), format!("{SERVER_V6}/64")]),
            (
                &ns.client,
                &veth_c,
                vec![format!("{CLIENT_V4}/24"), format!("{MONITOR_V4}/24"), format!("{CLIENT_V6}/64")],
            ),
        ] {
            for addr in addrs {
                // nodad: the IPv6 address is usable at once instead of after duplicate detection.
                let nodad: &[&str] = if addr.contains(':') { &["nodad"] } else { &[] };
                ns.ip(side, &[&["addr", "add", &addr, "dev", dev][..], nodad].concat());
            }
            ns.ip(side, &["link", "set", dev, "up"]);
            ns.ip(side, &["link", "set", "lo", "up"]);
        }
        ns.wait_until_up(&ns.server, &veth_s);
        ns.wait_until_up(&ns.client, &veth_c);
        ns
    }

    /// Waits until `dev` is operationally up. `link set up` returns before the kernel has
    /// activated the device: until linkwatch sees the carrier (it may wait up to a second) the
    /// device sends through the noop qdisc, which drops everything, and a probe sent then is
    /// lost without any firewall (CI once saw exactly that).
    fn wait_until_up(&self, ns: &str, dev: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = run(Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", dev]));
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            if line.contains("state UP") && !line.contains("qdisc noop") {
                return;
            }
            assert!(Instant::now() < deadline, "{dev} in {ns} not up after 5 s: {line}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(ns).args(args));
    }

    /// `ip netns exec NS program args...`, with `stdin` fed to it.
    fn exec(&self, ns: &str, program: &str, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} in {ns} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn nft_list(&self, args: &[&str]) -> String {
        String::from_utf8(self.exec(&self.server, "nft", args, "").stdout).unwrap()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair, and so the pair.
        for name in &self.made {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Deletes namespaces left by an earlier run of this test that was killed before its drop
/// guard ran (SIGKILL, a timeout): `tlfw<pid>s`/`tlfw<pid>c` whose process is gone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else { return };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(pid) = name.strip_prefix("tlfw").and_then(|rest| rest.strip_suffix(['s', 'c'])) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Runs `f` on a thread that has joined namespace `ns`. Sockets made there stay in `ns`
/// whichever thread later uses them; the test's own threads never change namespace.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns with a valid namespace fd; it changes only this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn udp_in(ns: &str, bind: SocketAddr) -> UdpSocket {
    in_ns(ns, move || {
        let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, None).unwrap();
        // Room for a whole burst, so that a short count can only mean the firewall.
        socket.set_recv_buffer_size(1 << 20).unwrap();
        socket.bind(&bind.into()).unwrap();
        UdpSocket::from(socket)
    })
}

/// Sends one datagram from a fresh client socket (a new flow) and says whether `rx` got it.
fn udp_arrives(client_ns: &str, from_ip: &str, rx: &UdpSocket) -> bool {
    let to = rx.local_addr().unwrap();
    let tx = udp_in(client_ns, addr(from_ip, 0));
    let token = format!("probe {} -> {to}", tx.local_addr().unwrap());
    tx.send_to(token.as_bytes(), to).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == token.as_bytes() => return true,
            Ok(_) => continue, // left over from an earlier burst
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(e) => panic!("recv on {to}: {e}"),
        }
    }
}

/// Whether a TCP handshake from `from_ip` completes (a dropped SYN times out).
fn tcp_connects(client_ns: &str, from_ip: &str, to: SocketAddr) -> bool {
    let from = addr(from_ip, 0);
    let socket = in_ns(client_ns, move || {
        let s = Socket::new(Domain::for_address(from), Type::STREAM, None).unwrap();
        s.bind(&from.into()).unwrap();
        s
    });
    socket.connect_timeout(&to.into(), Duration::from_millis(700)).is_ok()
}

/// `flows` datagrams to `rx`, each from its own fresh socket (so each a new conntrack flow),
/// as fast as possible; returns how many arrived and how long sending took.
fn flood(client_ns: &str, from_ip: &str, rx: &UdpSocket, flows: usize) -> (usize, Duration) {
    let to = rx.local_addr().unwrap();
    let from = addr(from_ip, 0);
    let senders: Vec<UdpSocket> =
        in_ns(client_ns, move || (0..flows).map(|_| UdpSocket::bind(from).unwrap()).collect());
    let start = Instant::now();
    for tx in &senders {
        tx.send_to(b"flood", to).unwrap();
    }
    let elapsed = start.elapsed();
    rx.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 64];
    let mut arrived = 0;
    while let Ok((n, _)) = rx.recv_from(&mut buf) {
        arrived += usize::from(&buf[..n] == b"flood");
    }
    (arrived, elapsed)
}

#[test]
fn applied_in_a_namespace_it_passes_relay_traffic_and_drops_the_rest() {
    if !can_run_nft("applied_in_a_namespace_it_passes_relay_traffic_and_drops_the_rest") {
        return;
    }
    let (rate, burst) = (10, 20);
    let ns = Namespaces::new();
    let (server, client) = (ns.server.clone(), ns.client.clone());

    let listener = udp_in(&server, addr(SERVER_V4, 3478));
    let listener_v6 = udp_in(&server, addr(SERVER_V6, 3478));
    let relay_low = udp_in(&server, addr(SERVER_V4, 40000));
    let relay_high = udp_in(&server, addr(SERVER_V4, 40099));
    let below_range = udp_in(&server, addr(SERVER_V4, 39999));
    let above_range = udp_in(&server, addr(SERVER_V4, 40100));
    let metrics_udp = udp_in(&server, addr(SERVER_V4, 9641));
    let other_v6 = udp_in(&server, addr(SERVER_V6, 5000));
    let relay_v6_low = udp_in(&server, addr(SERVER_V6, 40000));
    let relay_v6_high = udp_in(&server, addr(SERVER_V6, 40099));
    let below_range_v6 = udp_in(&server, addr(SERVER_V6, 39999));
    let tcp_ports = [9641, 22, 2222, 3478, 5349];
    let tcp_listeners: Vec<TcpListener> =
        in_ns(&server, move || tcp_ports.into_iter().map(|p| TcpListener::bind(addr(SERVER_V4, p)).unwrap()).collect());
    let [metrics, ssh, other_tcp, turn_tcp, turn_tls] = tcp_ports.map(|p| addr(SERVER_V4, p));

    // Control: without the firewall everything arrives, so every "dropped" below is real.
    for (name, rx, from) in [
        ("listener", &listener, CLIENT_V4),
        ("listener v6", &listener_v6, CLIENT_V6),
        ("below range", &below_range, CLIENT_V4),
        ("above range", &above_range, CLIENT_V4),
        ("udp to the metrics port", &metrics_udp, CLIENT_V4),
        ("other v6 port", &other_v6, CLIENT_V6),
        ("v6 relay port", &relay_v6_low, CLIENT_V6),
        ("below the v6 range", &below_range_v6, CLIENT_V6),
    ] {
        // A few tries: this checks the setup (neighbour discovery may still be running), not
        // the firewall, whose probes below get one datagram each.
        let reachable = (0..5).any(|_| udp_arrives(&client, from, rx));
        assert!(reachable, "before the firewall: {name} unreachable, the test setup is broken");
    }
    for to in [metrics, other_tcp] {
        assert!(tcp_connects(&client, CLIENT_V4, to), "before the firewall: tcp {to} unreachable");
    }
    let (before, _) = flood(&client, CLIENT_V4, &listener, 100);
    assert_eq!(before, 100, "without the firewall a 100-flow burst arrives whole");

    // Someone else's table, which applying ours must leave alone.
    let other_table = "table ip hostfw {\n set keep { type ipv4_addr; elements = { 192.0.2.9 } }\n \
                       chain c { type filter hook input priority 10; policy accept; }\n}\n";
    ns.exec(&server, "nft", &["-f", "-"], other_table);
    let other_before = ns.nft_list(&["list", "table", "ip", "hostfw"]);

    // `limits`: the new-flow rate and burst, or None for the shipped defaults.
    let apply_with = |ns: &Namespaces, relay_ip: &str, limits: Option<(u64, u64)>| {
        let limit_flags = limits.map_or(Vec::new(), |(rate, burst)| {
            vec![
                "--firewall-new-flow-rate".to_owned(),
                rate.to_string(),
                "--firewall-new-flow-burst".to_owned(),
                burst.to_string(),
            ]
        });
        let args = [
            "--listening-ip",
            &format!("{SERVER_V4},{SERVER_V6}"),
            "--relay-ip",
            relay_ip,
            "--listening-port",
            "3478",
            "--min-port",
            "40000",
            "--max-port",
            "40099",
            "--prometheus-address",
            SERVER_V4,
            "--prometheus-port",
            "9641",
            "--metrics-allowed-network",
            &format!("{MONITOR_V4}/32"),
            "--firewall-allowed-tcp-port",
            "22",
            // TURN over TLS on 5349 (the files are only read by the daemon, not by `firewall`).
            "--cert",
            "/nonexistent/relay.crt",
            "--pkey",
            "/nonexistent/relay.key",
            "--static-auth-secret",
            SECRET,
        ];
        let args: Vec<&str> =
            args.into_iter().chain(limit_flags.iter().map(String::as_str)).chain(["firewall", "--apply"]).collect();
        let out = ns.exec(&ns.server, BIN, &args, "");
        let log = String::from_utf8(out.stderr).unwrap();
        assert!(log.contains("replaced table inet teletip_relay atomically"), "{log}");
        ns.nft_list(&["-s", "list", "table", "inet", "teletip_relay"])
    };
    let apply = |ns: &Namespaces| apply_with(ns, SERVER_V4, Some((rate, burst)));
    let first = apply(&ns);
    let rules = first.lines().filter(|l| l.contains(" comment \"")).count();
    eprintln!("applied {rules} rules:\n{first}");
    let second = apply(&ns);
    assert_eq!(first, second, "re-applying gives the same table");
    assert_eq!(ns.nft_list(&["list", "table", "ip", "hostfw"]), other_before, "the other table survives re-apply");

    let pass = |name: &str, rx: &UdpSocket, from: &str| assert!(udp_arrives(&client, from, rx), "{name} must pass");
    let dropped =
        |name: &str, rx: &UdpSocket, from: &str| assert!(!udp_arrives(&client, from, rx), "{name} must be dropped");
    pass("udp to the listener", &listener, CLIENT_V4);
    pass("udp to the IPv6 listener", &listener_v6, CLIENT_V6);
    pass("udp to the lowest relay port", &relay_low, CLIENT_V4);
    pass("udp to the highest relay port", &relay_high, CLIENT_V4);
    dropped("udp just below the relay range", &below_range, CLIENT_V4);
    dropped("udp just above the relay range", &above_range, CLIENT_V4);
    dropped("udp to the metrics port", &metrics_udp, CLIENT_V4);
    dropped("udp to another port of the IPv6 address", &other_v6, CLIENT_V6);
    dropped("udp to the relay range of an IPv6 address that is not relay-ip", &relay_v6_low, CLIENT_V6);
    dropped("udp to the metrics port, even from the monitoring address", &metrics_udp, MONITOR_V4);
    assert!(!tcp_connects(&client, CLIENT_V4, metrics), "metrics from outside metrics-allowed-network is dropped");
    assert!(tcp_connects(&client, MONITOR_V4, metrics), "metrics from metrics-allowed-network is accepted");
    assert!(tcp_connects(&client, CLIENT_V4, ssh), "firewall-allowed-tcp-port stays open");
    assert!(!tcp_connects(&client, CLIENT_V4, other_tcp), "other tcp to the relay address is dropped");
    assert!(tcp_connects(&client, CLIENT_V4, turn_tcp), "TURN over TCP on the listening port is accepted");
    assert!(tcp_connects(&client, CLIENT_V4, turn_tls), "TURN over TLS on tls-listening-port is accepted");

    // A flood of new flows from one source: the burst gets through, then about `rate` per
    // second. The limit is per source: another address still gets in at once.
    std::thread::sleep(Duration::from_secs(burst / rate + 1)); // the probes above used tokens
    let flows = 200;
    let (arrived, took) = flood(&client, CLIENT_V4, &listener, flows);
    // The bucket holds `burst` tokens and refills at `rate`; reading stops 300 ms after the
    // last arrival, so allow that long for refills too.
    let ceiling = burst as f64 + rate as f64 * (took.as_secs_f64() + 0.5) + 2.0;
    eprintln!("flood: {arrived} of {flows} new flows arrived (sent in {took:?}; rate {rate}/s, burst {burst})");
    assert!(arrived >= burst as usize, "the whole burst passes: {arrived}");
    assert!((arrived as f64) <= ceiling, "{arrived} arrived, at most {ceiling:.0} expected");
    pass("a new flow from another source during the flood", &listener, MONITOR_V4);

    let listing = ns.nft_list(&["list", "table", "inet", "teletip_relay"]);
    let meter_rule = listing.lines().find(|l| l.contains("new flows over") && l.contains("(IPv4)")).unwrap();
    assert!(
        meter_rule.contains(&format!("counter packets {} ", flows - arrived)),
        "the new-flow rule counts exactly the flows it dropped: {meter_rule}"
    );
    assert_eq!(ns.nft_list(&["list", "table", "ip", "hostfw"]), other_before);

    // Dual stack: a relay-ip of each family opens the relayed range on both addresses, and
    // only the range.
    let dual = apply_with(&ns, &format!("{SERVER_V4},{SERVER_V6}"), Some((rate, burst)));
    assert!(dual.contains("relayed ports udp/40000-40099 (IPv6)"), "{dual}");
    pass("udp to the lowest IPv6 relay port", &relay_v6_low, CLIENT_V6);
    pass("udp to the highest IPv6 relay port", &relay_v6_high, CLIENT_V6);
    pass("udp to the IPv4 relay range still", &relay_low, CLIENT_V4);
    dropped("udp just below the IPv6 relay range", &below_range_v6, CLIENT_V6);
    dropped("udp to another port of the IPv6 address still", &other_v6, CLIENT_V6);

    // The shipped defaults let a crowd behind one address through: a thousand clients of a
    // hospital's NAT reconnecting at once each start a new flow from the same source address.
    apply_with(&ns, SERVER_V4, None);
    let crowd = 1000;
    let (arrived, took) = flood(&client, CLIENT_V4, &listener, crowd);
    eprintln!("crowd with the shipped defaults: {arrived} of {crowd} new flows arrived (sent in {took:?})");
    assert_eq!(arrived, crowd, "the shipped new-flow limit passes a crowd's burst whole");
    drop(tcp_listeners);
}
