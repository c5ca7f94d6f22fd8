//! The relay's shell when something around it fails, through the real binary: an address it
//! must listen on is taken (the start stops with the address named, rather than a relay that
//! looks up but misses a transport), and a TLS handshake that fails is closed, counted and
//! leaves the listener serving. And what systemd is told (Type=notify): ready only once it
//! answers, the watchdog fed while the workers turn, stopping on SIGTERM.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use support::*;
use teletip_turn_proto::codec::{Class, MessageWriter, Method};

/// Relay port ranges of 40 from 19000 (the shared helpers' ranges start at 20000, and the
/// wide ranges of 10000-19999 are used by other test binaries, which cargo runs one at a time).
static NEXT_RANGE: AtomicU16 = AtomicU16::new(19000);

fn relay_ports() -> [String; 4] {
    let min = NEXT_RANGE.fetch_add(40, Ordering::Relaxed);
    ["--min-port".into(), min.to_string(), "--max-port".into(), (min + 39).to_string()]
}

/// Runs the relay on 127.0.0.1 with these ports until it exits by itself (at most 10 s: a relay
/// still running then has not refused its start, and the test fails).
fn run_until_exit(listening: u16, metrics: u16, extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--listening-ip", "127.0.0.1", "--listening-port"])
        .arg(listening.to_string())
        .args(relay_ports())
        .args(["--workers", "1", "--realm", REALM, "--static-auth-secret", SECRET])
        .arg("--prometheus-port")
        .arg(metrics.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start teletip-relay");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the relay kept running: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (the relay serves both on listening-port).
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn assert_refused_naming(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the relay started although {what} was taken: {stderr}");
    assert!(stderr.contains(what), "the error names {what}: {stderr}");
}

#[test]
fn a_taken_udp_listening_port_stops_the_start_and_names_the_address() {
    let port = free_udp_and_tcp_port();
    // Held without SO_REUSEPORT, so the relay's listener cannot share it.
    let _holder = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let out = run_until_exit(port, free_tcp_port(), &[]);
    assert_refused_naming(&out, &format!("cannot listen on udp 127.0.0.1:{port}"));
}

#[test]
fn a_taken_tcp_listening_port_stops_the_start_and_names_the_address() {
    let port = free_udp_and_tcp_port();
    let _holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = run_until_exit(port, free_tcp_port(), &[]);
    assert_refused_naming(&out, &format!("cannot listen on tcp 127.0.0.1:{port}"));
    // With no-tcp, the same port serves UDP only and the relay starts (it is stopped at once).
    let mut relay = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--listening-ip", "127.0.0.1", "--no-tcp", "--listening-port"])
        .arg(port.to_string())
        .args(relay_ports())
        .args(["--workers", "1", "--realm", REALM, "--static-auth-secret", SECRET])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut request = [0u8; 64];
    let n = MessageWriter::new(&mut request, Method::BINDING, Class::Request, [7; 12]).unwrap().finish();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = loop {
        assert!(relay.try_wait().unwrap().is_none(), "the relay with no-tcp exited");
        socket.send_to(&request[..n], ("127.0.0.1", port)).unwrap();
        let mut answer = [0u8; 256];
        if let Ok((len, _)) = socket.recv_from(&mut answer) {
            break Answer(answer[..len].to_vec());
        }
        assert!(Instant::now() < deadline, "the relay with no-tcp does not answer on udp");
    };
    assert_eq!(answered.class(), Class::Success);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(relay.id() as i32, libc::SIGTERM) };
    assert!(relay.wait().unwrap().success());
}

#[test]
fn a_taken_metrics_port_stops_the_start_and_names_the_address() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = holder.local_addr().unwrap().port();
    let out = run_until_exit(free_udp_and_tcp_port(), metrics, &[]);
    assert_refused_naming(&out, &format!("cannot serve metrics on 127.0.0.1:{metrics}"));
}

#[test]
fn a_missing_certificate_stops_the_start_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = certificate(dir.path());
    let missing = dir.path().join("gone.crt");
    let out = run_until_exit(
        free_udp_and_tcp_port(),
        free_tcp_port(),
        &["--cert", missing.to_str().unwrap(), "--pkey", key.to_str().unwrap()],
    );
    assert_refused_naming(&out, "gone.crt");
}

/// Whether `stream` was closed (EOF or reset) within its read timeout, after any bytes the
/// relay sent first (a TLS alert record is allowed; a STUN answer is not).
fn closed_without_stun(stream: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => return false,
        }
    }
    // TLS records start with their content type: 0x15 is an alert. STUN starts with 0b00.
    received.is_empty() || received[0] == 0x15
}

#[test]
fn a_failed_tls_handshake_is_closed_and_counted_and_the_listener_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let tls_port = free_tcp_port().to_string();
    let relay = Relay::start(
        "127.0.0.1",
        &["--cert", cert.to_str().unwrap(), "--pkey", key.to_str().unwrap(), "--tls-listening-port", tls_port.as_str()],
    );
    let tls_addr = ("127.0.0.1", tls_port.parse::<u16>().unwrap());

    // A client that speaks plain TURN to the TLS port (a misconfigured "turns:" URI): a STUN
    // Binding request is not a TLS record.
    let mut plain = TcpStream::connect(tls_addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut request = [0u8; 64];
    let n = MessageWriter::new(&mut request, Method::BINDING, Class::Request, [3; 12]).unwrap().finish();
    plain.write_all(&request[..n]).unwrap();
    assert!(closed_without_stun(&mut plain), "the relay closes a TLS connection whose handshake failed");

    // A ClientHello that is cut short and then followed by garbage.
    let mut garbage = TcpStream::connect(tls_addr).unwrap();
    garbage.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    garbage.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(closed_without_stun(&mut garbage), "a malformed ClientHello closes the connection");

    assert!(
        relay.wait_metric("teletip_stream_connections_closed_total", "reason=\"tls\"", 2.0) >= 2.0,
        "both failures counted as tls:\n{}",
        relay.metrics_text()
    );
    // The listener still completes handshakes (openssl as the client).
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{tls_port}"), "-servername", "relay.test"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BEGIN CERTIFICATE"), "a handshake after the failures: {text}");
    assert!(relay.stop().success());
}

/// systemd's side of Type=notify and WatchdogSec=: a datagram socket named by NOTIFY_SOCKET.
#[test]
fn systemd_is_told_ready_once_the_relay_answers_fed_by_the_watchdog_and_told_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = free_udp_and_tcp_port();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
        .args(["--listening-ip", "127.0.0.1", "--listening-port"])
        .arg(port.to_string())
        .args(relay_ports())
        .args(["--workers", "2", "--realm", REALM, "--static-auth-secret", SECRET, "--prometheus-port"])
        .arg(free_tcp_port().to_string())
        .env("NOTIFY_SOCKET", &path)
        // 400 ms: pinged every 200 ms while every worker turns.
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = systemd.recv(&mut buf).expect("a notification from the relay");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.lines().any(|l| l == "READY=1"), "the first notification says ready: {ready:?}");
    assert!(ready.lines().any(|l| l == "STATUS=relaying"), "{ready:?}");
    // Ready means listening: the first request after it is answered.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut request = [0u8; 64];
    let len = MessageWriter::new(&mut request, Method::BINDING, Class::Request, [9; 12]).unwrap().finish();
    client.send_to(&request[..len], ("127.0.0.1", port)).unwrap();
    let mut answer = [0u8; 256];
    let (got, _) = client.recv_from(&mut answer).expect("answered as soon as systemd was told ready");
    assert_eq!(Answer(answer[..got].to_vec()).class(), Class::Success);

    let started = Instant::now();
    let mut pings = 0;
    while pings < 4 {
        let n = systemd.recv(&mut buf).expect("watchdog pings keep coming");
        if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3), "4 pings took {:?} (every 200 ms expected)", started.elapsed());

    // SAFETY: signalling our own child process.
    unsafe { libc::kill(relay.id() as i32, libc::SIGTERM) };
    let stopping = loop {
        let n = systemd.recv(&mut buf).expect("told it stops");
        let said = String::from_utf8_lossy(&buf[..n]).to_string();
        if !said.contains("WATCHDOG=1") {
            break said;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(relay.wait().unwrap().success());
}

/// `credential --json`, what a script hands a client: the advertised (NAT) address in every
/// URI, TCP and TLS when they are served; a pair the secret checks. A `--ttl` beyond
/// max-credential-lifetime is refused rather than printing a credential the relay would refuse.
#[test]
fn credential_json_names_the_advertised_address_and_a_too_long_ttl_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let credential = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
            .args(["--listening-ip", "127.0.0.1", "--listening-port", "3478", "--static-auth-secret", SECRET])
            .args(["--external-ip", "203.0.113.7", "--tls-listening-port", "5349"])
            .args(["--cert", cert.to_str().unwrap(), "--pkey", key.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = credential(&["credential", "--user", "json-user", "--ttl", "300", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let uris: Vec<&str> = json["uris"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    assert_eq!(
        uris,
        [
            "turn:203.0.113.7:3478?transport=udp",
            "turn:203.0.113.7:3478?transport=tcp",
            "turns:203.0.113.7:5349?transport=tcp"
        ]
    );
    assert_eq!(json["ttl"], 300);
    let username = json["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "json-user");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((unix_now() + 290..=unix_now() + 301).contains(&expiry));
    let (_, password) = teletip_turn_proto::credentials::issue(SECRET.as_bytes(), "json-user", expiry);
    assert_eq!(json["password"], password.as_str());

    let out = credential(&["--no-tcp", "true", "credential", "--user", "u", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["uris"].as_array().unwrap().len(), 2, "no TCP URI with no-tcp: {json}");

    let out = credential(&["--max-credential-lifetime", "3600", "credential", "--user", "u", "--ttl", "7200"]);
    assert!(!out.status.success(), "a credential the relay would refuse was printed");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds max-credential-lifetime (3600 s)"));
}
