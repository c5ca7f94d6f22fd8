//! A spoofed-source flood, emulated on loopback: many source addresses in 127.0.0.0/8 send
//! unauthenticated requests (the smallest Allocate that draws a 401, and Binding) and never
//! authenticate; every answer the server sends them is reflection, and is counted here,
//! per source, since on loopback the "spoofed" addresses receive.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use teletip_turn_proto::codec::{self, Class, Message, MessageWriter, Method, attr};

/// What the flood drew from the server.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FloodResult {
    pub sources: usize,
    /// From the first request to the end of the wait for late answers: longer than asked when
    /// the generator could not send as fast.
    pub elapsed: Duration,
    pub requests: u64,
    pub request_bytes: u64,
    pub answers: u64,
    pub answer_bytes: u64,
    /// The most answers and answer bytes any one source received.
    pub max_answers_per_source: u64,
    pub max_bytes_per_source: u64,
    /// The largest answer, and the largest answer over its request's size.
    pub largest_answer: usize,
    pub largest_factor: f64,
}

/// The `i`th spoofed source: 127.1.0.1, 127.1.0.2, … (250 per third octet).
pub fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1 + (i / 62_500) as u8, (i / 250 % 250) as u8, (i % 250 + 1) as u8))
}

/// The two requests a spoofer sends: an Allocate with REQUESTED-TRANSPORT only (28 bytes, the
/// smallest that draws a 401) and a Binding (20 bytes).
fn requests(n: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let mut txid = [0x5fu8; 12];
    txid[4..].copy_from_slice(&n.to_be_bytes());
    let len = if n % 2 == 0 {
        let mut w = MessageWriter::new(&mut buf, Method::ALLOCATE, Class::Request, txid).expect("64 bytes");
        w.bytes(attr::REQUESTED_TRANSPORT, &[codec::TRANSPORT_UDP, 0, 0, 0]).expect("fits");
        w.finish()
    } else {
        MessageWriter::new(&mut buf, Method::BINDING, Class::Request, txid).expect("64 bytes").finish()
    };
    buf.truncate(len);
    buf
}

/// Sends `per_source` requests from each of `sources` addresses to `server`, spread evenly over
/// `duration`, then waits half a second for late answers.
pub fn run(server: SocketAddr, sources: usize, per_source: u64, duration: Duration) -> std::io::Result<FloodResult> {
    let sockets: Vec<UdpSocket> = (0..sources)
        .map(|i| {
            let s = UdpSocket::bind(SocketAddr::new(source(i), 0))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<_>>()?;
    let mut result = FloodResult { sources, ..FloodResult::default() };
    let mut per_source_answers = vec![0u64; sources];
    let mut per_source_bytes = vec![0u64; sources];
    let mut sizes = std::collections::HashMap::new();
    let rounds = per_source.max(1);
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    // The answers are read in the loop below; per-source counts are taken once it is done.
    {
        let mut drain = |result: &mut FloodResult, sizes: &std::collections::HashMap<[u8; 12], usize>| {
            for (i, s) in sockets.iter().enumerate() {
                while let Ok(n) = s.recv(&mut buf) {
                    let Ok(msg) = Message::decode(&buf[..n]) else { continue };
                    result.answers += 1;
                    result.answer_bytes += n as u64;
                    per_source_answers[i] += 1;
                    per_source_bytes[i] += n as u64;
                    result.largest_answer = result.largest_answer.max(n);
                    if let Some(&asked) = sizes.get(&msg.transaction_id()) {
                        result.largest_factor = result.largest_factor.max(n as f64 / asked as f64);
                    }
                }
            }
        };
        for round in 0..rounds {
            let due = start + duration.mul_f64(round as f64 / rounds as f64);
            while Instant::now() < due {
                drain(&mut result, &sizes);
            }
            let packet = requests(round);
            let txid: [u8; 12] = packet[8..20].try_into().expect("a STUN header");
            sizes.insert(txid, packet.len());
            for s in &sockets {
                if s.send_to(&packet, server).is_ok() {
                    result.requests += 1;
                    result.request_bytes += packet.len() as u64;
                }
            }
            drain(&mut result, &sizes);
        }
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            drain(&mut result, &sizes);
        }
    }
    result.elapsed = start.elapsed();
    result.max_answers_per_source = per_source_answers.iter().copied().max().unwrap_or(0);
    result.max_bytes_per_source = per_source_bytes.iter().copied().max().unwrap_or(0);
    Ok(result)
}
