//! The XDP offload in the real daemon, with real packets through a veth pair between two
//! network namespaces: R holds the relay (its program attached to r0, generic mode), C holds
//! the clients and the peers. To prove which path relayed a datagram, the relay is frozen
//! (SIGSTOP): whatever still arrives was relayed by the kernel program from the maps the relay
//! wrote, and whatever the program must not relay waits in the sockets until the relay resumes
//! and decides. Root only (CI runs as root): skipped with a message otherwise.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::link::{accept_relay, control_endpoint_on, link_flags, make_pki};
use support::xdp::{can_run, channel_data, ip, padded_channel_data, padding_for};
use support::{SECRET, TurnClient, have_tool, uclient_summary, unix_now};
use teletip_link::{ControlToRelay, RevokedSession, write_frame};
use teletip_turn_proto::codec::{Class, Method, attr};
use teletip_turn_proto::credentials::issue;

/// Namespaces R (r0: 10.77.0.1/24, fd77::1/64) and C (c0: .2 to .5 and ::2 to ::5), joined
/// by a veth pair. Deleted on drop.
struct Net {
    r: String,
    c: String,
}

impl Net {
    fn new(tag: &str) -> Net {
        let pid = std::process::id();
        let net = Net { r: format!("ttxr-{pid}-{tag}"), c: format!("ttxc-{pid}-{tag}") };
        for ns in [&net.r, &net.c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &net.r, "link", "add", "r0", "type", "veth", "peer", "name", "c0", "netns", &net.c]);
        ip(&["-n", &net.r, "addr", "add", "10.77.0.1/24", "dev", "r0"]);
        ip(&["-n", &net.r, "addr", "add", "fd77::1/64", "dev", "r0", "nodad"]);
        for host in 2..=5 {
            ip(&["-n", &net.c, "addr", "add", &format!("10.77.0.{host}/24"), "dev", "c0"]);
            ip(&["-n", &net.c, "addr", "add", &format!("fd77::{host}/64"), "dev", "c0", "nodad"]);
        }
        // bpf_fib_lookup answers only where forwarding is on (relay-config.md, xdp-offload).
        let out = Command::new("ip")
            .args(["netns", "exec", &net.r, "sysctl", "-qw", "net.ipv4.conf.r0.forwarding=1"])
            .args(["net.ipv6.conf.r0.forwarding=1"])
            .output()
            .expect("sysctl is installed (procps)");
        assert!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
        ip(&["-n", &net.r, "link", "set", "r0", "up"]);
        ip(&["-n", &net.c, "link", "set", "c0", "up"]);
        // Sockets in C would otherwise leave their UDP checksums to the veth's "hardware"
        // (CHECKSUM_PARTIAL: only the pseudo-header's sum in the field), which no NIC delivers
        // and which a rewrite cannot update; traffic from the network carries full checksums.
        let out = Command::new("ip")
            .args(["netns", "exec", &net.c, "ethtool", "-K", "c0", "tx", "off"])
            .output()
            .expect("ethtool is installed (.ci/install)");
        assert!(out.status.success(), "ethtool: {}", String::from_utf8_lossy(&out.stderr));
        net
    }

    /// Lets c0 take the frames r0's program sends back to it in native mode: XDP_TX on a veth
    /// in native mode queues the frame for the peer veth's NAPI, which the kernel wakes for it
    /// only when the peer has an XDP program of its own (GRO on the peer, which also gives it a
    /// NAPI, is not enough: the frames wait until other traffic flushes them). So c0 gets a
    /// program that passes everything, attached the way `ip link set c0 xdpdrv` attaches one
    /// (it stays until the namespace goes).
    fn xdp_receiver_on_far_end(&self) {
        use libbpf_rs::libbpf_sys as sys;
        // r0 = XDP_PASS (2); exit. Two instructions, little-endian `struct bpf_insn`s.
        let insns: [u64; 2] =
            [u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
        // SAFETY: a valid program of two instructions and NUL-terminated names; a descriptor or
        // a negative errno comes back.
        let prog = unsafe {
            sys::bpf_prog_load(
                sys::BPF_PROG_TYPE_XDP,
                c"xdp_pass".as_ptr(),
                c"GPL".as_ptr(),
                insns.as_ptr().cast(),
                2,
                std::ptr::null_mut(),
            )
        };
        assert!(prog >= 0, "loading an XDP_PASS program: {}", std::io::Error::from_raw_os_error(-prog));
        let rc = Net::within(&self.c, move || {
            // SAFETY: c0 is a NUL-terminated name, `prog` a program descriptor.
            let index = unsafe { libc::if_nametoindex(c"c0".as_ptr()) };
            unsafe { sys::bpf_xdp_attach(index as i32, prog, sys::XDP_FLAGS_DRV_MODE, std::ptr::null()) }
        });
        // SAFETY: our descriptor; the attachment holds its own reference to the program.
        unsafe { libc::close(prog) };
        assert_eq!(rc, 0, "attaching it to c0: {}", std::io::Error::from_raw_os_error(-rc));
    }

    /// Runs `f` on a thread inside namespace `ns` (sockets made there stay there).
    fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: a valid namespace descriptor; only this new thread changes namespace.
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    fn socket(&self, addr: &str) -> UdpSocket {
        let addr: SocketAddr = addr.parse().unwrap();
        let s = Net::within(&self.c, move || UdpSocket::bind(addr).unwrap());
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        s
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.r, &self.c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

/// The relay, started in R with its log in a file.
struct Relay {
    child: Child,
    ns: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    metrics_port: u16,
}

impl Relay {
    fn start(net: &Net, extra: &[&str]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        let metrics_port = 19641;
        let mut args = vec![
            "netns",
            "exec",
            &net.r,
            env!("CARGO_BIN_EXE_teletip-relay"),
            "--listening-ip",
            "10.77.0.1",
            "--listening-ip",
            "fd77::1",
            "--listening-port",
            "3478",
            "--relay-ip",
            "10.77.0.1",
            "--relay-ip",
            "fd77::1",
            "--min-port",
            "50000",
            "--max-port",
            "50100",
            "--realm",
            support::REALM,
            "--static-auth-secret",
            SECRET,
            "--prometheus-port",
            "19641",
            "--allowed-peer-ip",
            "10.77.0.0/30",
            "--allowed-peer-ip",
            "fd77::/126",
            "--relay-socket-pool",
            "0",
            "--relay-socket-pool-at-start",
            "0",
            "--no-tcp",
            "true",
            "--workers",
            "2",
            // Overload control would drop, as late, what waited in a queue while the relay was
            // frozen; here the relay must decide on it when it resumes.
            "--max-queue-delay-ms",
            "0",
        ];
        args.extend_from_slice(extra);
        let child = Command::new("ip")
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start teletip-relay");
        let relay = Relay { child, ns: net.r.clone(), log, _dir: dir, metrics_port };
        relay.wait_until_answering(net);
        relay
    }

    fn wait_until_answering(&self, net: &Net) {
        let probe = net.socket("10.77.0.2:0");
        probe.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let binding = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            probe.send_to(&binding, "10.77.0.1:3478").unwrap();
            if probe.recv_from(&mut [0u8; 256]).is_ok() {
                return;
            }
        }
        panic!("the relay did not answer; its log:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child (`ip netns exec` execs the relay: same process).
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the relay and waits until all its threads are stopped (state T), so that no
    /// worker is still in the middle of a turn.
    fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let pid = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
            let stopped = tasks.flatten().all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the command name's closing parenthesis.
                stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            });
            if stopped {
                return;
            }
            assert!(Instant::now() < deadline, "the relay did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn metric(&self, name: &str, label: &str) -> f64 {
        let port = self.metrics_port;
        let text = Net::within(&self.ns, move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        });
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits for a metric to settle at `expected` (workers publish once a second).
    fn wait_metric(&self, name: &str, label: &str, expected: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name, label);
            if v == expected || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(mut self) {
        self.thaw();
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "relay did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(net: &Net, local: &str, server: &str, user: &str) -> TurnClient {
    let mut c = TurnClient::new(server.parse().unwrap(), user);
    c.socket = net.socket(local);
    c
}

/// A client of session `id` (REST credentials as the control plane issues them).
fn session_client(net: &Net, local: &str, server: &str, id: &str) -> TurnClient {
    let credentials = issue(SECRET.as_bytes(), id, unix_now() + 600);
    let mut c = TurnClient::with_credentials(server.parse().unwrap(), credentials);
    c.socket = net.socket(local);
    c
}

fn allocate(c: &mut TurnClient) -> SocketAddr {
    let a = c.allocate(&|_| {});
    assert_eq!(a.class(), Class::Success, "allocate: {:?}", a.error_code());
    a.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap()
}

fn bind(c: &mut TurnClient, channel: u16, peer: SocketAddr) -> Option<u16> {
    let a = c.call(Method::CHANNEL_BIND, &|w| {
        w.bytes(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0]).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
    });
    a.error_code()
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf).ok().map(|(n, from)| (buf[..n].to_vec(), from))
}

/// Nothing arrives on `s` for a while.
fn silent(s: &UdpSocket, why: &str) {
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    if let Some((data, from)) = recv(s) {
        panic!("{why}: {data:?} arrived from {from}");
    }
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
}

/// Sends until one arrives (the first datagrams resolve the neighbours through the sockets).
/// Sends until one arrives (the first datagrams resolve the neighbours through the sockets);
/// returns how many arrived, late ones included.
fn warm_up(send: &dyn Fn(), s: &UdpSocket) -> u64 {
    for _ in 0..20 {
        send();
        if recv(s).is_some() {
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let late = std::iter::from_fn(|| recv(s)).count() as u64;
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            return 1 + late;
        }
    }
    panic!("nothing came through");
}

/// How the tests attach the program to r0: `generic`, or `native` with c0 made able to take
/// the frames the program sends back (see [`Net::xdp_receiver_on_far_end`]).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Generic,
    Native,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Generic => "generic",
            Mode::Native => "native",
        }
    }
}

fn kernel_relays_what_the_relay_granted(
    tag: &str,
    mode: Mode,
    relay_ip: &str,
    client_addr: &str,
    peer_addr: &str,
    denied_addr: &str,
) {
    let net = Net::new(tag);
    if mode == Mode::Native {
        net.xdp_receiver_on_far_end();
    }
    // keep: the relayed address of the family the client came over (an IPv6 one for IPv6).
    let relay = Relay::start(
        &net,
        &["--xdp-offload", "r0", "--xdp-mode", mode.flag(), "--allocation-default-address-family", "keep"],
    );
    assert!(relay.log_text().contains("XDP OFFLOAD ON"), "{}", relay.log_text());
    let attached = Command::new("ip").args(["-n", &net.r, "link", "show", "r0"]).output().unwrap();
    let attached = String::from_utf8_lossy(&attached.stdout);
    // `ip link` shows a native program as "xdp", a generic one as "xdpgeneric".
    let shown = if mode == Mode::Native { "xdp " } else { "xdpgeneric" };
    assert!(attached.contains(shown), "attached in {} mode: {attached}", mode.flag());
    let server = SocketAddr::new(relay_ip.parse().unwrap(), 3478).to_string();
    let mut a = client(&net, client_addr, &server, "xdp-a");
    let peer = net.socket(peer_addr);
    let denied = net.socket(denied_addr);
    let peer_at = peer.local_addr().unwrap();
    let relayed = allocate(&mut a);
    assert_eq!(bind(&mut a, 0x4000, peer_at), None, "channel to an allowed peer");
    assert_eq!(bind(&mut a, 0x4001, denied.local_addr().unwrap()), Some(403), "a denied peer class is refused");

    let server_addr: SocketAddr = server.parse().unwrap();
    let mut c2p = warm_up(&|| drop(a.socket.send_to(&channel_data(0x4000, b"warm"), server_addr)), &peer);
    let mut p2c = warm_up(&|| drop(peer.send_to(b"warm", relayed)), &a.socket);
    // The kernel's first datagrams may have gone up (neighbours unresolved): let both paths
    // settle before freezing.
    std::thread::sleep(Duration::from_millis(200));

    relay.freeze();
    for i in 0..20u8 {
        let data = [b'k', i, 0xff, i];
        a.socket.send_to(&channel_data(0x4000, &data), server_addr).unwrap();
        let Some((got, from)) = recv(&peer) else {
            let maps = Command::new("bpftool").args(["map", "dump", "name", "c2p"]).output().unwrap();
            let allocs = Command::new("sh").args(["-c", &format!("bpftool map dump name perms; bpftool map lookup name allocs key 0 0 0 0; ip -n {} neigh; ip netns exec {} sysctl net.ipv4.conf.r0.forwarding", relay.ns, relay.ns)]).output().unwrap();
            panic!(
                "not relayed by the kernel while the relay is stopped; c2p: {}\nspent: {}\nlog: {}",
                String::from_utf8_lossy(&maps.stdout),
                String::from_utf8_lossy(&allocs.stdout),
                relay.log_text()
            );
        };
        assert_eq!((got.as_slice(), from), (&data[..], relayed), "from the relayed address, header stripped");
        peer.send_to(&data[..3], relayed).unwrap();
        let (got, from) = recv(&a.socket).expect("relayed back by the kernel");
        assert_eq!((got, from), (channel_data(0x4000, &data[..3]), server_addr), "in ChannelData from the listener");
        // Padded as pion pads over UDP (RFC 8656 §12.5 allows it), lengths 1-3 mod 4 and 0:
        // the kernel relays it without the padding.
        let data = vec![i; 5 + usize::from(i % 4)];
        a.socket.send_to(&padded_channel_data(0x4000, &data, padding_for(data.len()), 0xa5), server_addr).unwrap();
        let (got, from) = recv(&peer).expect("padded ChannelData relayed by the kernel");
        assert_eq!((got, from), (data, relayed), "header and padding stripped");
    }
    c2p += 40;
    p2c += 20;
    // What the program does not own waits for the relay: an unbound channel, the denied peer's
    // channel, a Send indication.
    a.socket.send_to(&channel_data(0x4002, b"unbound"), server_addr).unwrap();
    a.socket.send_to(&channel_data(0x4001, b"denied"), server_addr).unwrap();
    a.send_indication(peer_at, b"indication");
    silent(&peer, "nothing the relay has not granted to the kernel");
    silent(&denied, "a denied peer");
    relay.thaw();
    let (got, _) = recv(&peer).expect("the relay, resumed, relays the Send indication");
    assert_eq!(got, b"indication");
    c2p += 1;
    silent(&denied, "the relay drops data for a denied peer");

    // The counters: the same numbers as without the offload, and most of them the kernel's.
    let relayed_c2p = relay.wait_metric("teletip_relayed_packets_total", "client_to_peer", c2p as f64);
    let relayed_p2c = relay.wait_metric("teletip_relayed_packets_total", "peer_to_client", p2c as f64);
    assert_eq!((relayed_c2p, relayed_p2c), (c2p as f64, p2c as f64), "every relayed datagram counted once");
    let by_kernel = relay.metric("teletip_xdp_relayed_packets_total", "");
    assert!(by_kernel >= 60.0, "the 60 datagrams of the frozen relay were the kernel's: {by_kernel}");
    assert_eq!(relay.metric("teletip_xdp_offloaded_allocations", ""), 1.0);

    // Deleted (Refresh with lifetime 0): the kernel stops with it.
    let a_refresh = a.call(Method::REFRESH, &|w| {
        w.u32(attr::LIFETIME, 0).unwrap();
    });
    assert_eq!(a_refresh.class(), Class::Success);
    relay.freeze();
    a.socket.send_to(&channel_data(0x4000, b"after delete"), server_addr).unwrap();
    peer.send_to(b"after delete", relayed).unwrap();
    silent(&peer, "a deleted allocation's channel");
    silent(&a.socket, "a deleted allocation's relayed address");
    relay.thaw();
    silent(&peer, "the relay drops it too");
    assert_eq!(relay.wait_metric("teletip_xdp_offloaded_allocations", "", 0.0), 0.0);
    relay.stop();
    let attached = Command::new("ip").args(["-n", &net.r, "link", "show", "r0"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&attached.stdout).contains("xdp"), "the program left r0 with the relay");
}

#[test]
fn ipv4_the_kernel_relays_exactly_what_the_relay_granted() {
    if can_run("ipv4_the_kernel_relays_exactly_what_the_relay_granted", "network namespaces and XDP need root") {
        kernel_relays_what_the_relay_granted(
            "v4",
            Mode::Generic,
            "10.77.0.1",
            "10.77.0.2:0",
            "10.77.0.3:7000",
            "10.77.0.5:7000",
        );
    }
}

#[test]
fn ipv6_the_kernel_relays_exactly_what_the_relay_granted() {
    if can_run("ipv6_the_kernel_relays_exactly_what_the_relay_granted", "network namespaces and XDP need root") {
        kernel_relays_what_the_relay_granted(
            "v6",
            Mode::Generic,
            "fd77::1",
            "[fd77::2]:0",
            "[fd77::3]:7000",
            "[fd77::5]:7000",
        );
    }
}

#[test]
fn ipv4_native_mode_on_veth_relays_exactly_what_the_relay_granted() {
    if can_run("ipv4_native_mode_on_veth_relays_exactly_what_the_relay_granted", "network namespaces and XDP need root")
    {
        kernel_relays_what_the_relay_granted(
            "n4",
            Mode::Native,
            "10.77.0.1",
            "10.77.0.2:0",
            "10.77.0.3:7000",
            "10.77.0.5:7000",
        );
    }
}

#[test]
fn ipv6_native_mode_on_veth_relays_exactly_what_the_relay_granted() {
    if can_run("ipv6_native_mode_on_veth_relays_exactly_what_the_relay_granted", "network namespaces and XDP need root")
    {
        kernel_relays_what_the_relay_granted(
            "n6",
            Mode::Native,
            "fd77::1",
            "[fd77::2]:0",
            "[fd77::3]:7000",
            "[fd77::5]:7000",
        );
    }
}

#[test]
fn two_clients_of_one_relay_meet_in_the_kernel() {
    if !can_run("two_clients_of_one_relay_meet_in_the_kernel", "network namespaces and XDP need root") {
        return;
    }
    let net = Net::new("short");
    // auto on a veth: generic, not the native mode the kernel would pick (relay/src/xdp/mod.rs).
    let relay = Relay::start(&net, &["--xdp-offload", "r0", "--xdp-mode", "auto"]);
    assert!(relay.log_text().contains("on r0 (generic mode)"), "{}", relay.log_text());
    let attached = Command::new("ip").args(["-n", &net.r, "link", "show", "r0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&attached.stdout).contains("xdpgeneric"), "auto attached a veth in generic mode");
    let server: SocketAddr = "10.77.0.1:3478".parse().unwrap();
    let mut a = client(&net, "10.77.0.2:0", "10.77.0.1:3478", "xdp-a");
    let mut b = client(&net, "10.77.0.4:0", "10.77.0.1:3478", "xdp-b");
    let (ra, rb) = (allocate(&mut a), allocate(&mut b));
    assert_eq!(bind(&mut a, 0x4000, rb), None);
    assert_eq!(bind(&mut b, 0x4321, ra), None);
    warm_up(&|| drop(a.socket.send_to(&channel_data(0x4000, b"warm"), server)), &b.socket);
    warm_up(&|| drop(b.socket.send_to(&channel_data(0x4321, b"warm"), server)), &a.socket);
    std::thread::sleep(Duration::from_millis(200));
    relay.freeze();
    for i in 0..10u8 {
        a.socket.send_to(&channel_data(0x4000, &[i; 7]), server).unwrap();
        let (got, from) = recv(&b.socket).expect("A to B through the kernel");
        assert_eq!((got, from), (channel_data(0x4321, &[i; 7]), server), "on B's channel for A");
        b.socket.send_to(&channel_data(0x4321, &[i; 2]), server).unwrap();
        let (got, _) = recv(&a.socket).expect("B to A through the kernel");
        assert_eq!(got, channel_data(0x4000, &[i; 2]));
        // Padded, as pion pads: B gets it on its channel without the padding.
        a.socket.send_to(&padded_channel_data(0x4000, &[i; 7], 1, 0xa5), server).unwrap();
        let (got, _) = recv(&b.socket).expect("padded, A to B through the kernel");
        assert_eq!(got, channel_data(0x4321, &[i; 7]), "unpadded on B's channel");
    }
    relay.thaw();
    relay.stop();
}

#[test]
fn the_kernel_relays_no_more_than_the_bandwidth_cap_leases_it() {
    if !can_run("the_kernel_relays_no_more_than_the_bandwidth_cap_leases_it", "network namespaces and XDP need root") {
        return;
    }
    let net = Net::new("cap");
    // 2,000 bytes a second, a burst of as much: the kernel holds at most that as a lease.
    let relay = Relay::start(&net, &["--xdp-offload", "r0", "--xdp-mode", "generic", "--max-bps", "2000"]);
    let server: SocketAddr = "10.77.0.1:3478".parse().unwrap();
    let mut a = client(&net, "10.77.0.2:0", "10.77.0.1:3478", "xdp-a");
    let peer = net.socket("10.77.0.3:7000");
    allocate(&mut a);
    assert_eq!(bind(&mut a, 0x4000, peer.local_addr().unwrap()), None);
    warm_up(&|| drop(a.socket.send_to(&channel_data(0x4000, b"warm"), server)), &peer);
    // A collection (once a second) tops the lease up to at most one burst outstanding.
    std::thread::sleep(Duration::from_millis(1500));
    // The warm-up may have met an empty bucket (the first lease took the burst): counted before.
    let dropped_before = relay.metric("teletip_dropped_packets_total", "bandwidth");
    relay.freeze();
    for i in 0..50u8 {
        a.socket.send_to(&channel_data(0x4000, &[i; 100]), server).unwrap();
    }
    peer.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let by_kernel = std::iter::from_fn(|| recv(&peer)).count();
    assert!(by_kernel >= 1, "the lease let the kernel relay some");
    assert!(by_kernel <= 20, "no more than 2,000 bytes (20 x 100) while the relay could not refill: {by_kernel}");
    relay.thaw();
    // The relay decides on the rest with what its bucket holds: far less than 3,000 bytes.
    let by_relay = std::iter::from_fn(|| recv(&peer)).count();
    assert!(by_kernel + by_relay < 50, "the cap held across both paths: {by_kernel} + {by_relay}");
    println!("of 50 x 100 bytes under a 2,000 B/s cap: {by_kernel} relayed by the kernel, {by_relay} by the relay");
    let over = (50 - by_kernel - by_relay) as f64;
    let dropped = relay.wait_metric("teletip_dropped_packets_total", "bandwidth", dropped_before + over);
    assert_eq!(dropped - dropped_before, over, "the rest dropped over the cap, as counted");
    relay.stop();
}

#[test]
fn the_relay_says_why_it_falls_back_and_relays_in_user_space() {
    if !can_run("the_relay_says_why_it_falls_back_and_relays_in_user_space", "network namespaces and XDP need root") {
        return;
    }
    let net = Net::new("fallback");
    let relay = Relay::start(&net, &["--xdp-offload", "nosuch0"]);
    let log = relay.log_text();
    assert!(
        log.contains("XDP offload refused, relaying in user space: no network interface named \"nosuch0\""),
        "{log}"
    );
    let mut a = client(&net, "10.77.0.2:0", "10.77.0.1:3478", "xdp-a");
    let peer = net.socket("10.77.0.3:7000");
    allocate(&mut a);
    assert_eq!(bind(&mut a, 0x4000, peer.local_addr().unwrap()), None);
    let server: SocketAddr = "10.77.0.1:3478".parse().unwrap();
    warm_up(&|| drop(a.socket.send_to(&channel_data(0x4000, b"user space"), server)), &peer);
    relay.freeze();
    a.socket.send_to(&channel_data(0x4000, b"frozen"), server).unwrap();
    silent(&peer, "no kernel path without the program");
    relay.thaw();
    assert_eq!(recv(&peer).map(|(d, _)| d), Some(b"frozen".to_vec()));
    relay.stop();

    // Without the capabilities: the same relay as an unprivileged user.
    if have_tool("setpriv", "the_relay_says_why_it_falls_back (unprivileged)") {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.r, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all", env!("CARGO_BIN_EXE_teletip-relay")])
            .args([
                "--listening-ip",
                "10.77.0.1",
                "--listening-port",
                "3479",
                "--min-port",
                "50200",
                "--max-port",
                "50300",
            ])
            .args(["--static-auth-secret", SECRET, "--prometheus", "false", "--no-tcp", "true"])
            .args(["--xdp-offload", "r0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("XDP offload refused") || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(text.contains("XDP offload refused, relaying in user space: not permitted"), "{text}");
    }
}

#[test]
fn turnutils_uclient_passes_with_the_offload_on() {
    if !can_run("turnutils_uclient_passes_with_the_offload_on", "network namespaces and XDP need root")
        || !have_tool("turnutils_uclient", "uclient_xdp")
    {
        return;
    }
    let net = Net::new("uclient");
    let relay = Relay::start(&net, &["--xdp-offload", "r0", "--xdp-mode", "generic", "--user-quota", "0"]);
    let out = Command::new("timeout")
        .args(["120", "ip", "netns", "exec", &net.c, "turnutils_uclient", "-y", "-W", SECRET, "-u", "uclient-xdp"])
        .args(["-p", "3478", "-n", "200", "-m", "10", "-l", "160", "-z", "5", "-L", "10.77.0.2", "-e", "10.77.0.2"])
        .arg("10.77.0.1")
        .output()
        .expect("run turnutils_uclient");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "uclient failed:\n{text}");
    let (sent, received, lost) = uclient_summary(&text);
    println!("uclient through the XDP offload: sent {sent}, received {received}, lost {lost}");
    assert!(sent >= 2000, "{text}");
    assert_eq!((received, lost), (sent, 0));
    // uclient's datagrams went client to client: the same-relay short circuit, in the kernel
    // once the neighbours were resolved.
    let by_kernel = relay.wait_metric("teletip_xdp_relayed_packets_total", "", f64::MAX);
    println!("relayed in the kernel: {by_kernel} of {}", relay.metric("teletip_relayed_packets_total", ""));
    assert!(by_kernel > 0.0, "the kernel relayed part of uclient's traffic");
    relay.stop();
}

/// Revocation with the offload on, over the real control link: the relay in R registers with a
/// stand-in control plane (the link's QUIC endpoint and frames, in R too, on its loopback), two
/// sessions relay to one peer through the kernel, and the control plane revokes one. From the
/// moment the relay has applied the order the kernel relays not one more datagram of the revoked
/// allocation, in either direction (the relay is frozen to see what the kernel does on its own),
/// while the other session's datagrams keep going through the kernel.
#[test]
fn a_revoked_session_is_relayed_no_more_by_the_kernel_and_others_are() {
    if !can_run(
        "a_revoked_session_is_relayed_no_more_by_the_kernel_and_others_are",
        "network namespaces and XDP need root",
    ) {
        return;
    }
    let net = Net::new("revoke");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let socket = Net::within(&net.r, || std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    let endpoint = runtime.block_on(async { control_endpoint_on(pki.path(), "control", socket) });
    let accepted = runtime.spawn(accept_relay(endpoint.clone()));
    let flags = link_flags(pki.path(), endpoint.local_addr().unwrap());
    let mut args = vec!["--xdp-offload", "r0", "--xdp-mode", "generic"];
    args.extend(flags.iter().map(String::as_str));
    let relay = Relay::start(&net, &args);
    let mut control = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), accepted).await })
        .expect("the relay registered")
        .unwrap();
    assert_eq!(relay.wait_metric("teletip_control_link_up", "", 1.0), 1.0);

    let (revoked_id, kept_id) = ("q8Zs0bX1m2c9LkPw", "Xk3pQ9aLm0Rt7VbN");
    let server: SocketAddr = "10.77.0.1:3478".parse().unwrap();
    let peer = net.socket("10.77.0.3:7000");
    let peer_at = peer.local_addr().unwrap();
    let mut revoked = session_client(&net, "10.77.0.2:0", "10.77.0.1:3478", revoked_id);
    let mut kept = session_client(&net, "10.77.0.4:0", "10.77.0.1:3478", kept_id);
    let (revoked_relayed, kept_relayed) = (allocate(&mut revoked), allocate(&mut kept));
    assert_eq!(bind(&mut revoked, 0x4000, peer_at), None);
    assert_eq!(bind(&mut kept, 0x4000, peer_at), None);
    for c in [&revoked, &kept] {
        warm_up(&|| drop(c.socket.send_to(&channel_data(0x4000, b"warm"), server)), &peer);
        let relayed = if std::ptr::eq(c, &revoked) { revoked_relayed } else { kept_relayed };
        warm_up(&|| drop(peer.send_to(b"warm", relayed)), &c.socket);
    }
    std::thread::sleep(Duration::from_millis(200));

    // Before the order: both sessions through the kernel, both ways.
    relay.freeze();
    let through_kernel = |c: &TurnClient, relayed: SocketAddr, what: &str| {
        for i in 0..5u8 {
            c.socket.send_to(&channel_data(0x4000, &[i; 9]), server).unwrap();
            let (got, from) = recv(&peer).unwrap_or_else(|| panic!("{what}: client to peer through the kernel"));
            assert_eq!((got, from), (vec![i; 9], relayed), "{what}");
            peer.send_to(&[i; 5], relayed).unwrap();
            let (got, _) = recv(&c.socket).unwrap_or_else(|| panic!("{what}: peer to client through the kernel"));
            assert_eq!(got, channel_data(0x4000, &[i; 5]), "{what}");
        }
    };
    through_kernel(&revoked, revoked_relayed, "the session to be revoked");
    through_kernel(&kept, kept_relayed, "the other session");
    relay.thaw();
    let kernel_before = relay.wait_metric("teletip_xdp_relayed_packets_total", "", f64::MAX);
    assert!(kernel_before >= 20.0, "the 20 datagrams of the frozen relay were the kernel's: {kernel_before}");
    assert_eq!(relay.metric("teletip_xdp_offloaded_allocations", ""), 2.0);

    // The order, as the control plane sends it; the relay ends the allocation and counts it.
    let order =
        ControlToRelay::Revoke { sessions: vec![RevokedSession { id: revoked_id.into(), expires: unix_now() + 600 }] };
    runtime.block_on(write_frame(&mut control.send, &order)).unwrap();
    assert_eq!(relay.wait_metric("teletip_allocations_ended_total", "how=\"revoked\"", 1.0), 1.0);

    // From then on: nothing of the revoked allocation through the kernel, the other relays on.
    relay.freeze();
    for i in 0..10u8 {
        revoked.socket.send_to(&channel_data(0x4000, &[0xee, i]), server).unwrap();
        peer.send_to(&[0xef, i], revoked_relayed).unwrap();
    }
    silent(&revoked.socket, "the revoked allocation's relayed address, peer to client");
    through_kernel(&kept, kept_relayed, "the other session after the revocation");
    let stray = std::iter::from_fn(|| recv(&peer)).find(|(data, _)| data.first() == Some(&0xee));
    assert_eq!(stray, None, "the revoked session's channel, client to peer");
    relay.thaw();
    silent(&peer, "the relay, resumed, drops them too");
    silent(&revoked.socket, "the relay, resumed, drops them too");
    assert_eq!(relay.wait_metric("teletip_xdp_offloaded_allocations", "", 1.0), 1.0, "the revoked slot is gone");
    let refused = revoked.allocate(&|_| {});
    assert_eq!(refused.error_code(), Some(401), "the revoked session's credentials are refused");
    runtime.block_on(async {
        control.connection.close(0u32.into(), b"done");
        control.endpoint.close(0u32.into(), b"done");
    });
    relay.stop();
}

/// The maps of the program attached to r0 in `net`, by name, read with bpftool (JSON, values
/// formatted from the program's BTF): `dump` for the hash maps, `lookup` for one array slot.
fn bpftool_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("bpftool").arg("-j").args(args).output().expect("bpftool is installed (.ci/install)");
    assert!(out.status.success(), "bpftool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn map_ids(net: &Net) -> std::collections::HashMap<String, u64> {
    let link = Command::new("ip").args(["-j", "-n", &net.r, "link", "show", "r0"]).output().unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    let prog = link[0]["xdp"]["prog"]["id"].as_u64().expect("a program on r0");
    let ids = bpftool_json(&["prog", "show", "id", &prog.to_string()]);
    ids["map_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_u64().unwrap();
            let map = bpftool_json(&["map", "show", "id", &id.to_string()]);
            (map["name"].as_str().unwrap().to_string(), id)
        })
        .collect()
}

/// The `expires_ns` of every entry of a hash map, with its `alloc` slot where the entry has one.
fn expiries(map: u64) -> Vec<(Option<u64>, u64)> {
    let dump = bpftool_json(&["map", "dump", "id", &map.to_string()]);
    dump.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = e.get("formatted").unwrap_or(e);
            let slot = e["key"]["alloc"].as_u64().or(e["value"]["alloc"].as_u64());
            (slot, e["value"]["expires_ns"].as_u64().expect("expires_ns"))
        })
        .collect()
}

/// The expiries the kernel enforces (the program compares them with `bpf_ktime_get_ns`; that it
/// does is `xdp_program.rs`'s to show, on crafted packets) are the ones the relay granted: a
/// permission 300 s from now, a channel 600 s, the allocation its lifetime, and a Refresh moves
/// the allocation's at once. Read from the running relay's maps with bpftool.
#[test]
fn the_kernel_holds_the_expiries_the_relay_granted() {
    if !can_run("the_kernel_holds_the_expiries_the_relay_granted", "network namespaces and XDP need root")
        || !have_tool("bpftool", "the_kernel_holds_the_expiries_the_relay_granted")
    {
        return;
    }
    let net = Net::new("expiry");
    let relay = Relay::start(&net, &["--xdp-offload", "r0", "--xdp-mode", "generic"]);
    let mut a = client(&net, "10.77.0.2:0", "10.77.0.1:3478", "xdp-expiry");
    let peer = net.socket("10.77.0.3:7000");
    allocate(&mut a);
    assert_eq!(bind(&mut a, 0x4000, peer.local_addr().unwrap()), None);
    let granted_at = teletip_relay::xdp::mirror::monotonic_ns();
    let maps = map_ids(&net);
    let seconds_left = |expires_ns: u64| (expires_ns as f64 - granted_at as f64) / 1e9;
    let near =
        |got: f64, want: f64, what: &str| assert!((got - want).abs() < 3.0, "{what}: {got:.1} s left, not {want}");

    let perms = expiries(maps["perms"]);
    assert_eq!(perms.len(), 1, "one permission: {perms:?}");
    near(seconds_left(perms[0].1), 300.0, "the permission");
    let channels = expiries(maps["c2p"]);
    assert_eq!(channels.len(), 1, "one channel: {channels:?}");
    near(seconds_left(channels[0].1), 600.0, "the channel");
    assert_eq!(expiries(maps["p2c"]).len(), 1, "and its way back");
    let slot = perms[0].0.expect("the permission's slot");
    assert_eq!(channels[0].0, Some(slot), "one allocation");
    let allocation = || {
        let key: Vec<String> = slot.to_le_bytes()[..4].iter().map(u8::to_string).collect();
        let mut args = vec!["map", "lookup", "id"];
        let id = maps["allocs"].to_string();
        args.push(&id);
        args.push("key");
        args.extend(key.iter().map(String::as_str));
        let found = bpftool_json(&args);
        let found = found.get("formatted").unwrap_or(&found);
        found["value"]["expires_ns"].as_u64().expect("the slot's expiry")
    };
    near(seconds_left(allocation()), 600.0, "the allocation (the default lifetime)");

    let refreshed = a.call(Method::REFRESH, &|w| {
        w.u32(attr::LIFETIME, 1800).unwrap();
    });
    assert_eq!(refreshed.class(), Class::Success);
    near(seconds_left(allocation()), 1800.0, "the allocation after a Refresh of 1800 s");
    relay.stop();
}
