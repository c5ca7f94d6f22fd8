//! Running the real `teletip-relay` binary for whole-daemon tests, and a minimal blocking TURN
//! client over a real UDP socket (built on the protocol crate's codec, which the codec tests
//! check against the independent `stun` crate).

#![allow(dead_code)]

pub mod link;
pub mod xdp;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use teletip_turn_proto::codec::{self, Class, IntegrityKind, Message, MessageWriter, Method, attr};
use teletip_turn_proto::credentials::{PasswordAlgorithm, issue, long_term_key};

pub const SECRET: &str = "system-test-secret-0123456789abcdef";
pub const REALM: &str = "teletip.test";

/// Relay port ranges below the kernel's ephemeral range (32768+), a fresh slice per relay so
/// that tests in one binary never share ports.
static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);
/// The next free port of 10000-19999 for relays that need more than 40 ports.
static NEXT_WIDE_RANGE: AtomicU16 = AtomicU16::new(0);

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Under cargo-nextest (CI), each test is a process of its own and several run at once, so an
/// in-process counter cannot keep their port ranges apart: nextest numbers the tests running
/// at the same time (`NEXTEST_TEST_GLOBAL_SLOT`, 0 to the thread count - 1, reused only once
/// its test has ended), and each slot gets a region of its own.
fn nextest_slot() -> Option<u16> {
    std::env::var("NEXTEST_TEST_GLOBAL_SLOT").ok()?.parse().ok()
}

/// Which region of 20000-23599 (600 ports, 15 ranges of 40) this process's relays take: its
/// nextest slot, or under `cargo test`, which runs one test binary at a time, the binary. It
/// stays under 24100, where control/tests' linked relays have fixed ranges.
fn binary_offset() -> u16 {
    if let Some(slot) = nextest_slot() {
        return slot % 6;
    }
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_string_lossy().to_string();
    (name.bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b))) % 6) as u16
}

/// Where this process's wide ranges (10000-19999) start and how many ports they may take: a
/// quarter per nextest slot (the widest range a test asks for is 2000 ports), all of it under
/// `cargo test`.
fn wide_region() -> (u16, u16) {
    match nextest_slot() {
        Some(slot) => ((slot % 4) * 2500, 2500),
        None => (0, 10_000),
    }
}

pub struct Relay {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub min_port: u16,
    pub max_port: u16,
}

impl Relay {
    /// Starts the relay on `ip` with `extra` flags and waits until it answers STUN. The
    /// listening and metrics ports are found free just before, so another process can take
    /// them in between (uclient binds many ephemeral ports): if the relay exits at start, it is
    /// started again on fresh ports.
    pub fn start(ip: &str, extra: &[&str]) -> Relay {
        Self::start_with_ports(ip, extra, 40)
    }

    /// As [`Relay::start`], with a relay port range of `span` ports. More than 40 come from
    /// 10000-19999, a slice per relay ([`wide_region`]; within one process, tests that need
    /// such a range should be few).
    pub fn start_with_ports(ip: &str, extra: &[&str], span: u16) -> Relay {
        for _ in 0..5 {
            if let Some(relay) = Self::try_start(ip, extra, span) {
                return relay;
            }
        }
        panic!("teletip-relay did not start on {ip} after 5 attempts");
    }

    fn try_start(ip: &str, extra: &[&str], span: u16) -> Option<Relay> {
        let mut relay = Self::spawn(ip, extra, span);
        relay.wait_until_answering().then_some(relay)
    }

    /// Starts the relay as [`Relay::start_with_ports`] does, without waiting for anything (for
    /// tests of what the relay does while it starts).
    pub fn spawn(ip: &str, extra: &[&str], span: u16) -> Relay {
        let (min_port, max_port) = if span <= 40 {
            let slice = NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
            let min_port = 20000 + binary_offset() * 600 + slice * 40;
            (min_port, min_port + 39)
        } else {
            let (region, size) = wide_region();
            assert!(span <= size, "a relay port range of {span} ports is wider than a region ({size})");
            // Past the region's end it starts over: the relays of earlier ranges have been
            // stopped by then (a retried start, the next test in this slot).
            let start = NEXT_WIDE_RANGE.fetch_add(span, Ordering::Relaxed) % (size / span * span);
            (10_000 + region + start, 10_000 + region + start + span - 1)
        };
        let port = free_udp_port(ip);
        let metrics_port = free_tcp_port();
        let mut args: Vec<String> = vec![
            "--listening-ip".into(),
            ip.into(),
            "--listening-port".into(),
            port.to_string(),
            "--min-port".into(),
            min_port.to_string(),
            "--max-port".into(),
            max_port.to_string(),
            "--realm".into(),
            REALM.into(),
            "--static-auth-secret".into(),
            SECRET.into(),
            "--prometheus-port".into(),
            metrics_port.to_string(),
        ];
        // Two workers unless the test asks for its own count.
        if !extra.contains(&"--workers") {
            args.extend(["--workers".into(), "2".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start teletip-relay");
        let addr: SocketAddr = SocketAddr::new(ip.parse().unwrap(), port);
        Relay { child, addr, metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)), min_port, max_port }
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn wait_until_answering(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let bind = if self.addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
        let socket = UdpSocket::bind(bind).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 64];
        let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, [1; 12]).unwrap();
        let n = w.finish();
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            socket.send_to(&buf[..n], self.addr).unwrap();
            let mut answer = [0u8; 256];
            if socket.recv_from(&mut answer).is_ok() {
                return true;
            }
        }
        panic!("teletip-relay did not answer on {}", self.addr);
    }

    pub fn metrics_text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut s) = TcpStream::connect(self.metrics) {
                s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut body = String::new();
                s.read_to_string(&mut body).unwrap();
                return body;
            }
            assert!(Instant::now() < deadline, "metrics endpoint not reachable");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The sum of a metric's samples whose labels contain `label` (e.g. `reason="malformed"`).
    pub fn metric(&self, name: &str, label: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#') && l.contains(label))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the metric reaches `at_least` (workers publish once a second).
    pub fn wait_metric(&self, name: &str, label: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name, label);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` to the relay (SIGHUP, say) and leaves it running.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "relay did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Under coverage (`cargo llvm-cov` sets `cfg(coverage)`) the relay writes its profile
        // only when it exits by itself: SIGTERM first, SIGKILL if it has not stopped in 5 s.
        #[cfg(coverage)]
        {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `turn` crate (webrtc-rs) client of `relay` with these REST credentials, listening, on the
/// loopback address of the relay's family.
pub async fn turn_crate_client(relay: &Relay, credentials: (String, String)) -> turn::client::Client {
    turn_crate_client_of(relay.addr, credentials).await
}

/// The same for the relay listening at `server` (for a client started in a task of its own).
pub async fn turn_crate_client_of(server: SocketAddr, (username, password): (String, String)) -> turn::client::Client {
    let local = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
    let socket = tokio::net::UdpSocket::bind(local).await.unwrap();
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username,
        password,
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: std::sync::Arc::new(socket),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    client
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A decoded answer.
pub struct Answer(pub Vec<u8>);

impl Answer {
    pub fn msg(&self) -> Message<'_> {
        Message::decode(&self.0).expect("valid STUN from the relay")
    }
    pub fn class(&self) -> Class {
        self.msg().class()
    }
    pub fn error_code(&self) -> Option<u16> {
        let v = self.msg().get(attr::ERROR_CODE)?.to_vec();
        Some(u16::from(v[2] & 7) * 100 + u16::from(v[3]))
    }
    pub fn xor_addr(&self, t: u16) -> Option<SocketAddr> {
        let m = self.msg();
        codec::decode_xor_address(m.get(t)?, &m.transaction_id())
    }
}

/// A blocking TURN client with REST credentials.
pub struct TurnClient {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub nonce: Option<Vec<u8>>,
    txid: u32,
}

impl TurnClient {
    pub fn new(server: SocketAddr, user: &str) -> TurnClient {
        Self::with_credentials(server, issue(SECRET.as_bytes(), user, unix_now() + 600))
    }

    pub fn with_credentials(server: SocketAddr, (username, password): (String, String)) -> TurnClient {
        let bind = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
        let socket = UdpSocket::bind(bind).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        TurnClient { socket, server, username, password, nonce: None, txid: 0 }
    }

    fn next_txid(&mut self) -> codec::TransactionId {
        self.txid += 1;
        let mut t = [0x5Au8; 12];
        t[8..].copy_from_slice(&self.txid.to_be_bytes());
        t
    }

    pub fn build(&mut self, method: Method, class: Class, attrs: &dyn Fn(&mut MessageWriter<'_>)) -> Vec<u8> {
        let txid = self.next_txid();
        let mut buf = vec![0u8; 2048];
        let mut w = MessageWriter::new(&mut buf, method, class, txid).unwrap();
        attrs(&mut w);
        if let Some(nonce) = &self.nonce {
            w.bytes(attr::USERNAME, self.username.as_bytes()).unwrap();
            w.bytes(attr::REALM, REALM.as_bytes()).unwrap();
            w.bytes(attr::NONCE, nonce).unwrap();
            let key = long_term_key(PasswordAlgorithm::Md5, &self.username, REALM, &self.password);
            w.integrity(IntegrityKind::Sha1, &key).unwrap();
        }
        let n = w.finish_with_fingerprint().unwrap();
        buf.truncate(n);
        buf
    }

    pub fn exchange(&mut self, packet: &[u8]) -> Option<Answer> {
        self.socket.send_to(packet, self.server).unwrap();
        let mut buf = vec![0u8; 2048];
        match self.socket.recv_from(&mut buf) {
            Ok((n, _)) => Some(Answer(buf[..n].to_vec())),
            Err(_) => None,
        }
    }

    /// A request, answering a 401/438 challenge once.
    pub fn call(&mut self, method: Method, attrs: &dyn Fn(&mut MessageWriter<'_>)) -> Answer {
        for _ in 0..2 {
            let req = self.build(method, Class::Request, attrs);
            let a = self.exchange(&req).expect("the relay answers");
            let code = a.error_code();
            if code == Some(438) || (code == Some(401) && self.nonce.is_none()) {
                self.nonce = Some(a.msg().get(attr::NONCE).unwrap().to_vec());
                continue;
            }
            return a;
        }
        panic!("challenged twice");
    }

    pub fn allocate(&mut self, extra: &dyn Fn(&mut MessageWriter<'_>)) -> Answer {
        self.call(Method::ALLOCATE, &|w| {
            w.bytes(attr::REQUESTED_TRANSPORT, &[codec::TRANSPORT_UDP, 0, 0, 0]).unwrap();
            extra(w);
        })
    }

    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let nonce = self.nonce.take();
        let ind = self.build(Method::SEND, Class::Indication, &|w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
            w.bytes(attr::DATA, data).unwrap();
        });
        self.nonce = nonce;
        self.socket.send_to(&ind, self.server).unwrap();
    }
}

/// (sent, received, lost) from `turnutils_uclient`'s summary: the last "tot_send_msgs=N,
/// tot_recv_msgs=M" line and "Total lost packets L".
pub fn uclient_summary(text: &str) -> (u64, u64, u64) {
    let num = |key: &str, line: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
    };
    let totals = text.lines().rfind(|l| l.contains("start_mclient: tot_send_msgs=")).expect("a summary line");
    let lost = text.lines().find(|l| l.contains("Total lost packets")).expect("a loss line");
    (num("tot_send_msgs=", totals), num("tot_recv_msgs=", totals), num("Total lost packets ", lost))
}

/// Whether `turnutils_uclient` is installed. In CI its absence is an error (the script
/// installs coturn); elsewhere the test says it is skipping.
pub fn have_tool(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI (apt-get install coturn)");
        eprintln!("SKIPPED {test}: {tool} is not installed (apt-get install coturn)");
    }
    found
}

/// A self-signed EC certificate for the relay, made with openssl (installed by .ci/install).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    certificate_named(dir, "relay")
}

pub fn certificate_named(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=relay.test"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}
