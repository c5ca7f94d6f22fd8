//! TURN over TCP and TLS against the real daemon: coturn's `turnutils_uclient` (a client we did
//! not write) over TCP and TLS with zero loss, and, over raw TCP, what a client library may not
//! exercise: messages split across segments and pipelined in one, ChannelData padding both
//! ways, a closed connection ending its allocation, and bytes that are not TURN closing the
//! connection.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;
use teletip_turn_proto::codec::{self, Class, Method, attr, frame_len};

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_uclient(port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec!["-y", "-W", SECRET, "-u", "uclient-session", "-p", &port, "-n", "50", "-m", "10", "-l", "160"];
    args.extend_from_slice(&["-z", "5", "-L", "127.0.0.1", "-e", "127.0.0.1", "-t"]);
    args.extend_from_slice(extra);
    args.push("127.0.0.1");
    let out = Command::new("timeout").arg("120").arg("turnutils_uclient").args(&args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "uclient failed:\n{text}");
    text
}

fn uclient_loses_nothing(tls: bool, extra: &[&str], mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let tls_port = free_tcp_port().to_string();
    let mut flags = vec!["--allow-loopback-peers", "true", "--user-quota", "0", "--max-bps", "0"];
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    if tls {
        flags.extend(["--cert", cert, "--pkey", key, "--tls-listening-port", &tls_port]);
    }
    let relay = Relay::start("127.0.0.1", &flags);
    let port = if tls { tls_port.parse().unwrap() } else { relay.addr.port() };
    let mut args = extra.to_vec();
    if tls {
        args.push("-S");
    }
    let text = run_uclient(port, &args);
    let (sent, received, lost) = uclient_summary(&text);
    println!("uclient {mode}: sent {sent}, received {received}, lost {lost}");
    assert!(sent >= 500, "at least 10 clients x 50 messages, got {sent}");
    assert_eq!((received, lost), (sent, 0), "{text}");
    let transport = if tls { "tls" } else { "tcp" };
    let label = format!("transport=\"{transport}\"");
    let accepted = relay.wait_metric("teletip_stream_connections_accepted_total", &label, 10.0);
    assert!(accepted >= 10.0, "10 clients connected over {transport}, the relay counted {accepted}");
    relay.wait_metric("teletip_relayed_packets_total", "client_to_peer", sent as f64);
    // uclient closes its connections at the end: every allocation ends with its connection.
    let closed = relay.wait_metric("teletip_allocations_ended_total", "connection_closed", 1.0);
    assert!(closed >= 1.0);
}

#[test]
fn uclient_over_tcp_channel_mode_loses_nothing() {
    if have_tool("turnutils_uclient", "uclient_over_tcp_channel_mode") {
        uclient_loses_nothing(false, &[], "tcp channel");
    }
}

#[test]
fn uclient_over_tcp_send_indications_loses_nothing() {
    if have_tool("turnutils_uclient", "uclient_over_tcp_send_indications") {
        uclient_loses_nothing(false, &["-s"], "tcp send");
    }
}

#[test]
fn uclient_over_tls_channel_mode_loses_nothing() {
    if have_tool("turnutils_uclient", "uclient_over_tls_channel_mode") {
        uclient_loses_nothing(true, &[], "tls channel");
    }
}

#[test]
fn uclient_over_tls_send_indications_loses_nothing() {
    if have_tool("turnutils_uclient", "uclient_over_tls_send_indications") {
        uclient_loses_nothing(true, &["-s"], "tls send");
    }
}

/// A TURN client on a TCP connection, reading messages by their framing.
struct StreamClient {
    stream: TcpStream,
    /// Builds and signs the messages (its UDP socket is not used).
    builder: TurnClient,
    pending: Vec<u8>,
}

impl StreamClient {
    fn connect(relay: &Relay, user: &str) -> StreamClient {
        let stream = TcpStream::connect(relay.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        stream.set_nodelay(true).unwrap();
        StreamClient { stream, builder: TurnClient::new(relay.addr, user), pending: Vec::new() }
    }

    /// The next whole message from the stream, padding included.
    fn read_message(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = frame_len(&self.pending).expect("the relay sends STUN or ChannelData")
                && self.pending.len() >= n
            {
                return self.pending.drain(..n).collect();
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).expect("the relay answers");
            assert!(n > 0, "the relay closed the connection");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    fn call(&mut self, method: Method, attrs: &dyn Fn(&mut codec::MessageWriter<'_>)) -> Answer {
        for _ in 0..2 {
            let request = self.builder.build(method, Class::Request, attrs);
            self.stream.write_all(&request).unwrap();
            let answer = Answer(self.read_message());
            if answer.error_code() == Some(401) && self.builder.nonce.is_none() {
                self.builder.nonce = Some(answer.msg().get(attr::NONCE).unwrap().to_vec());
                continue;
            }
            return answer;
        }
        panic!("challenged twice");
    }
}

fn binding_request(txid: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let mut w = codec::MessageWriter::new(&mut buf, Method::BINDING, Class::Request, [txid; 12]).unwrap();
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[test]
fn messages_split_across_segments_and_pipelined_in_one_are_all_answered() {
    let relay = Relay::start("127.0.0.1", &[]);
    let mut c = StreamClient::connect(&relay, "split");
    let mut bytes = binding_request(1);
    bytes.extend(binding_request(2));
    bytes.extend(binding_request(3));
    // Three requests in three writes cut at odd places: inside the first header, inside the
    // second, and the rest with the whole third one.
    for part in [&bytes[..7], &bytes[7..29], &bytes[29..]] {
        c.stream.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let me = c.stream.local_addr().unwrap();
    for txid in 1..=3u8 {
        let a = Answer(c.read_message());
        assert_eq!(a.class(), Class::Success);
        assert_eq!(a.msg().transaction_id(), [txid; 12], "answers in order");
        assert_eq!(a.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(me), "the TCP source address");
    }
}

#[test]
fn channel_data_is_padded_both_ways_and_the_allocation_ends_with_the_connection() {
    let relay = Relay::start("127.0.0.1", &["--allow-loopback-peers", "true"]);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = StreamClient::connect(&relay, "padded");
    let allocated = c.call(Method::ALLOCATE, &|w| {
        w.bytes(attr::REQUESTED_TRANSPORT, &[codec::TRANSPORT_UDP, 0, 0, 0]).unwrap();
    });
    assert_eq!(allocated.class(), Class::Success, "{:?}", allocated.error_code());
    let relayed = allocated.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap();
    let bound = c.call(Method::CHANNEL_BIND, &|w| {
        w.u32(attr::CHANNEL_NUMBER, 0x4001 << 16).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer_addr).unwrap();
    });
    assert_eq!(bound.class(), Class::Success, "{:?}", bound.error_code());

    // 5 bytes of data: 4 + 5 = 9, padded to 12 on the stream. A second message right behind it
    // shows that the relay skipped exactly the padding.
    let mut frames = vec![0x40, 0x01, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0];
    frames.extend_from_slice(&[0x40, 0x01, 0, 4, b'n', b'e', b'x', b't']);
    c.stream.write_all(&frames).unwrap();
    let mut buf = [0u8; 64];
    for expected in [&b"hello"[..], b"next"] {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (expected, relayed), "the peer gets the data alone, unpadded");
    }
    // 3 bytes back: ChannelData of 7 bytes, padded to 8, then a 1-byte one padded to 8 too.
    peer.send_to(b"abc", relayed).unwrap();
    peer.send_to(b"z", relayed).unwrap();
    assert_eq!(c.read_message(), vec![0x40, 0x01, 0, 3, b'a', b'b', b'c', 0]);
    assert_eq!(c.read_message(), vec![0x40, 0x01, 0, 1, b'z', 0, 0, 0]);

    assert_eq!(relay.wait_metric("teletip_allocations_active", "", 1.0), 1.0);
    drop(c);
    relay.wait_metric("teletip_allocations_ended_total", "connection_closed", 1.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while relay.metric("teletip_allocations_active", "") > 0.0 {
        assert!(std::time::Instant::now() < deadline, "the allocation outlived its connection");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bytes_that_are_not_turn_close_the_connection_and_are_counted() {
    let relay = Relay::start("127.0.0.1", &[]);
    let mut stream = TcpStream::connect(relay.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // A TLS ClientHello's first bytes, sent to the plain TCP port by a misconfigured client.
    stream.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).unwrap();
    let mut buf = [0u8; 16];
    let closed = match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(n) => panic!("the relay answered {n} bytes to a TLS hello"),
    };
    assert!(closed, "the relay closes a stream that lost its framing");
    assert!(relay.wait_metric("teletip_stream_connections_closed_total", "framing", 1.0) >= 1.0);
    // The listener keeps serving.
    let mut c = StreamClient::connect(&relay, "after");
    c.stream.write_all(&binding_request(9)).unwrap();
    assert_eq!(Answer(c.read_message()).class(), Class::Success);
}

#[test]
fn check_config_refuses_a_certificate_the_daemon_could_not_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let check = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_teletip-relay"))
            .args(["--static-auth-secret", SECRET, "--cert"])
            .arg(cert)
            .arg("--pkey")
            .arg(key)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let good = check(&cert, &key);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(String::from_utf8_lossy(&good.stdout).contains("tls-listening-port = 5349\ncert = "));
    let missing = check(&dir.path().join("nope.crt"), &key);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("nope.crt"), "the error names the file: {stderr}");
    let swapped = check(&key, &cert);
    assert!(!swapped.status.success(), "a key where the certificate belongs is refused");
}

/// The SHA-256 fingerprint of the certificate a TLS handshake on `port` gets, by openssl.
fn served_fingerprint(port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn file_fingerprint(cert: &Path) -> String {
    let out =
        Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(cert).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn sighup_serves_a_renewed_certificate_and_keeps_the_old_one_if_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let (renewed_cert, renewed_key) = certificate_named(dir.path(), "renewed");
    let port = free_tcp_port();
    let flags = ["--cert", cert.to_str().unwrap(), "--pkey", key.to_str().unwrap(), "--tls-listening-port"];
    let port_text = port.to_string();
    let relay = Relay::start("127.0.0.1", &[&flags[..], &[port_text.as_str()]].concat());
    let first = file_fingerprint(&cert);
    assert!(first.contains("Fingerprint="), "{first}");
    assert_eq!(served_fingerprint(port), first);
    // A client on TLS before the renewal keeps its connection across it.
    let before = TcpStream::connect(("127.0.0.1", port)).unwrap();

    // The renewal lands in place (as certbot's deploy hook or the Ansible role would copy it).
    std::fs::copy(&renewed_cert, &cert).unwrap();
    std::fs::copy(&renewed_key, &key).unwrap();
    assert_eq!(served_fingerprint(port), first, "nothing changes before the signal");
    relay.signal(libc::SIGHUP);
    let renewed = file_fingerprint(&renewed_cert);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while served_fingerprint(port) != renewed {
        assert!(std::time::Instant::now() < deadline, "the renewed certificate is not served after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A broken renewal (the key file is not a key) is refused and changes nothing.
    std::fs::write(&key, "not a key").unwrap();
    relay.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served_fingerprint(port), renewed, "the certificate served before the broken reload stays");
    let mut before = before;
    before.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 1];
    let still_open = matches!(before.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
    assert!(still_open, "a connection opened before the reloads is still open");
}

#[test]
fn connections_beyond_the_per_address_limit_are_closed_at_once() {
    let relay = Relay::start("127.0.0.1", &["--max-tcp-connections-per-ip", "4", "--workers", "1"]);
    let mut held: Vec<StreamClient> = (0..4).map(|_| StreamClient::connect(&relay, "one-source")).collect();
    for (i, c) in held.iter_mut().enumerate() {
        c.stream.write_all(&binding_request(i as u8)).unwrap();
        assert_eq!(Answer(c.read_message()).class(), Class::Success, "connection {i} within the limit");
    }
    let mut fifth = TcpStream::connect(relay.addr).unwrap();
    fifth.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = fifth.write_all(&binding_request(5));
    let mut buf = [0u8; 64];
    let refused = match fifth.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(refused, "the fifth connection from one address is closed without an answer");
    let counted = relay.wait_metric("teletip_stream_connections_refused_total", "max_tcp_connections_per_ip", 1.0);
    assert_eq!(counted, 1.0);
    // One closes: there is room again.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = StreamClient::connect(&relay, "one-source");
    again.stream.write_all(&binding_request(6)).unwrap();
    assert_eq!(Answer(again.read_message()).class(), Class::Success);
}
