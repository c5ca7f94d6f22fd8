//! The data run: N pairs, each pair's A socket sending probes that its B socket receives, at a
//! given rate or flat out, with batched syscalls on both sides. What sits between A and B (a
//! TURN server relaying allocation to allocation, or a raw forwarder) is the thing measured.
//! A and B reach the server over UDP (`sendmmsg`/`recvmmsg`) or over TCP or TLS (the frames of
//! one turn for a pair in one write; frames cut out of whatever each read returned).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use teletip_turn_proto::codec::{self, Class, Message, MessageWriter, Method, attr};

use crate::hist::Histogram;
use crate::kernel::{self, CpuStat, SoftirqMap, UdpCounters};
use crate::probe::{PROBE_LEN, Probe, mono_ns};
use crate::transport::Link;
use teletip_mmsg::{RecvBatch, SendBatch};

/// How A frames a payload for the thing in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// ChannelData on this channel number (the peer is implied by the binding).
    Channel(u16),
    /// A Send indication to this peer (B's relayed address).
    Send(SocketAddr),
    /// The bare payload (raw forwarder).
    Raw,
}

pub struct Pair {
    pub a: Link,
    pub b: Link,
    pub frame: Frame,
    /// Where A sends, when not to the run's `dest` (the direct path: straight to B).
    pub dest: Option<SocketAddr>,
}

#[derive(Clone, Copy)]
pub struct RunSpec<'a> {
    pub dest: SocketAddr,
    pub size: usize,
    pub duration: Duration,
    /// Total packets per second over all pairs; 0 sends as fast as the generator can.
    pub rate: f64,
    pub server_pid: Option<u32>,
    /// benches/softirq's map: each CPU's softirq time over the window, measured.
    pub softirq: Option<&'a SoftirqMap>,
}

#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub target_pps: f64,
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    pub sent_pps: f64,
    pub rx_pps: f64,
    /// Received payload bits per second (the media, without TURN framing).
    pub mbps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The same for packets sent after the run's first quarter (at most 1 s): at overload, what
    /// the queue settles to, without the time a server's control takes to react (teletip's
    /// waits 20 ms by default, `overload-grace-ms`, to tell overload from a hiccup).
    pub p50_steady_us: f64,
    pub p99_steady_us: f64,
    pub max_us: f64,
    pub udp: UdpCounters,
    /// Socket receive-queue drops on the generator's own sockets and on everyone else's (the
    /// server under test).
    pub drops_generator: u64,
    pub drops_server: u64,
    pub server_cpu_pct: Option<f64>,
    pub generator_cpu_pct: f64,
    /// The measured window's wall time, the server's and the generator's CPU seconds in it.
    pub wall_s: f64,
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
    /// Every CPU's `/proc/stat` times over the same window (softirq included: work the
    /// kernel did for these datagrams outside any process's own accounting).
    pub cpu_stat: CpuStat,
    /// Each CPU's (NET_RX, all) softirq nanoseconds over the window, from `RunSpec::softirq`.
    pub softirq_ns: Option<Vec<(u64, u64)>>,
}

impl RunResult {
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { 100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64 }
    }

    /// One line that scripts parse: `RESULT key=value ...`.
    pub fn result_line(&self, prefix: &str) -> String {
        format!(
            "RESULT {prefix} target_pps={:.0} sent={} received={} loss_pct={:.3} sent_pps={:.0} rx_pps={:.0} mbps={:.1} \
             p50_us={:.1} p99_us={:.1} p50_steady_us={:.1} p99_steady_us={:.1} max_us={:.1} udp_in_errors={} udp_rcvbuf_errors={} drops_generator={} \
             drops_server={} server_cpu_pct={} generator_cpu_pct={:.0}",
            self.target_pps,
            self.sent,
            self.received,
            self.loss_pct(),
            self.sent_pps,
            self.rx_pps,
            self.mbps,
            self.p50_us,
            self.p99_us,
            self.p50_steady_us,
            self.p99_steady_us,
            self.max_us,
            self.udp.in_errors,
            self.udp.rcvbuf_errors,
            self.drops_generator,
            self.drops_server,
            self.server_cpu_pct.map_or("na".into(), |c| format!("{c:.1}")),
            self.generator_cpu_pct,
        ) + &self.cpu_fields()
    }

    /// ` wall_s=… server_cpu_s=… generator_cpu_s=…` and each CPU's `cpuN_busy_s`, `cpuN_softirq_s`
    /// and `cpuN_irq_s` over the window.
    fn cpu_fields(&self) -> String {
        let mut out = format!(
            " wall_s={:.4} server_cpu_s={} generator_cpu_s={:.4}",
            self.wall_s,
            self.server_cpu_s.map_or("na".into(), |c| format!("{c:.4}")),
            self.generator_cpu_s
        );
        for (i, c) in self.cpu_stat.cpus.iter().enumerate() {
            out +=
                &format!(" cpu{i}_busy_s={:.2} cpu{i}_softirq_s={:.2} cpu{i}_irq_s={:.2}", c.busy(), c.softirq, c.irq);
        }
        for (i, (rx, all)) in self.softirq_ns.iter().flatten().enumerate() {
            out += &format!(" cpu{i}_net_rx_ns={rx} cpu{i}_softirq_ns={all}");
        }
        out
    }
}

/// Reusable state for runs over one set of pairs.
pub struct Flows {
    pairs: Vec<Pair>,
    epoll: RawFd,
    raw: bool,
    ours: Vec<u16>,
    hist: Histogram,
    steady: Histogram,
    seq: Vec<u64>,
}

const BURST_CAP: usize = 64;
/// Datagrams sent per turn of the generator's loop at most, between two reads of its sockets.
const FLAT_OUT_TURN: u64 = (BURST_CAP * 4) as u64;
/// Bytes a stream's A may have queued that its socket has not taken: beyond this the server
/// is not reading, and A sends nothing more (and counts nothing as sent) until it has.
const STREAM_BACKLOG: usize = 64 << 10;

impl Flows {
    pub fn new(pairs: Vec<Pair>, raw: bool) -> std::io::Result<Flows> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ours = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            // Streams are non-blocking from their connect on.
            for link in [&p.a, &p.b] {
                if let Link::Udp(socket) = link {
                    socket.set_nonblocking(true)?;
                }
            }
            ours.push(p.a.local_addr()?.port());
            ours.push(p.b.local_addr()?.port());
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
            // SAFETY: registering a socket we own with our epoll instance.
            if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, p.b.as_raw_fd(), &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        ours.sort_unstable();
        let seq = vec![0; pairs.len()];
        Ok(Flows { pairs, epoll, raw, ours, hist: Histogram::default(), steady: Histogram::default(), seq })
    }

    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Sends for `spec.duration`, then waits for stragglers, and reports.
    pub fn run(&mut self, spec: &RunSpec) -> std::io::Result<RunResult> {
        let size = spec.size.max(PROBE_LEN);
        let n = self.pairs.len();
        let mut send = SendBatch::new(BURST_CAP, size + 64);
        let mut recv = RecvBatch::new(BURST_CAP, 0, 2048);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        self.hist.clear();
        self.steady.clear();
        // What an earlier run left queued (an overloaded server can hold seconds of it in its
        // socket buffers) must neither load this run nor count in it.
        self.settle(&mut recv, &mut events)?;
        let first_seq = self.seq.clone();
        let mut sent = 0u64;
        let udp_before = UdpCounters::read();
        let drops_before = kernel::socket_drops();
        let server_cpu_before = spec.server_pid.and_then(kernel::cpu_seconds);
        let gen_cpu_before = kernel::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let stat_before = CpuStat::read();
        let softirq_before = spec.softirq.and_then(SoftirqMap::read);
        let start = mono_ns();
        let end = start + spec.duration.as_nanos() as u64;
        let steady_from = start + (spec.duration.as_nanos() as u64 / 4).min(1_000_000_000);
        let mut cursor = 0usize;
        let mut last_rx = start;
        let mut chunk = Vec::with_capacity(BURST_CAP * (size + 64));
        let mut backlogged: Vec<usize> = Vec::new();
        let mut tally = Tally {
            raw: self.raw,
            size,
            first_seq: &first_seq,
            steady_from,
            received: 0,
            rx_bytes: 0,
            hist: &mut self.hist,
            steady: &mut self.steady,
        };
        loop {
            let now = mono_ns();
            let sending = now < end;
            if !sending && (now > end + 1_000_000_000 || (tally.received >= sent || now - last_rx > 200_000_000)) {
                break;
            }
            // What streams' sockets did not take last time (also after sending stopped).
            if !backlogged.is_empty() {
                let pairs = &mut self.pairs;
                let mut failed = None;
                backlogged.retain(|&p| match &mut pairs[p].a {
                    Link::Stream(a) => match a.flush() {
                        Ok(()) => a.backlog() > 0,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    },
                    Link::Udp(_) => false,
                });
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            if sending {
                let due = if spec.rate > 0.0 {
                    (((now - start) as f64 * spec.rate / 1e9) as u64).saturating_sub(sent)
                } else {
                    FLAT_OUT_TURN
                };
                // At most what a flat-out turn sends: a generator that has fallen behind its pace
                // (asked for more than it can send, or descheduled) catches up over several turns,
                // reading in between, instead of sending thousands before it reads again, which
                // left its own sockets unread for milliseconds and charged that to the server.
                let mut budget = due.min(FLAT_OUT_TURN) as usize;
                while budget > 0 {
                    let p = cursor;
                    cursor = (cursor + 1) % n;
                    let k = (budget / n).clamp(1, BURST_CAP).min(budget);
                    budget -= k;
                    let stamp = mono_ns();
                    let frame = self.pairs[p].frame;
                    let dest = self.pairs[p].dest.unwrap_or(spec.dest);
                    let seq = &mut self.seq[p];
                    let mut next_probe = || {
                        let probe = Probe { pair: p as u32, seq: *seq, sent_ns: stamp };
                        *seq += 1;
                        probe
                    };
                    match &mut self.pairs[p].a {
                        Link::Udp(a) => {
                            for _ in 0..k {
                                let probe = next_probe();
                                send.push_with(dest, |buf| encode(frame, probe, size, buf));
                            }
                            send.flush_to(a.as_raw_fd())?;
                        }
                        Link::Stream(a) => {
                            // A server that stopped reading holds A back, as TCP holds back a
                            // real client: nothing is generated (or counted) for it meanwhile.
                            if a.backlog() > STREAM_BACKLOG {
                                continue;
                            }
                            chunk.clear();
                            for _ in 0..k {
                                let at = chunk.len();
                                chunk.resize(at + size + 64, 0);
                                let len = encode(frame, next_probe(), size, &mut chunk[at..]);
                                chunk.truncate(at + len);
                            }
                            a.send(&chunk)?;
                            if a.backlog() > 0 && !backlogged.contains(&p) {
                                backlogged.push(p);
                            }
                        }
                    }
                    sent += k as u64;
                }
            }
            // SAFETY: events is a valid buffer of epoll_event for the call.
            let ready = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), events.len() as i32, 0) };
            for ev in events.iter().take(ready.max(0) as usize) {
                let p = ev.u64 as usize;
                match &mut self.pairs[p].b {
                    Link::Udp(b) => {
                        // Bounded so that sending keeps its pace under a flood.
                        for _ in 0..8 {
                            let got = recv.recv(b.as_raw_fd())?;
                            if got == 0 {
                                break;
                            }
                            let t = mono_ns();
                            last_rx = t;
                            for i in 0..got {
                                tally.record(recv.packet(i), t);
                            }
                            if got < BURST_CAP {
                                break;
                            }
                        }
                    }
                    Link::Stream(b) => {
                        let open = b.fill()?;
                        let t = mono_ns();
                        let before = tally.received;
                        b.frames(|m| tally.record(m, t)).map_err(std::io::Error::other)?;
                        if tally.received > before {
                            last_rx = t;
                        }
                        if !open {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("the server closed pair {p}'s B connection"),
                            ));
                        }
                    }
                }
            }
        }
        let (received, rx_bytes) = (tally.received, tally.rx_bytes);
        let seconds = spec.duration.as_secs_f64();
        let wall = (mono_ns() - start) as f64 / 1e9;
        let cpu_stat = CpuStat::read().since(&stat_before);
        let softirq_ns = match (softirq_before, spec.softirq.and_then(SoftirqMap::read)) {
            (Some(b), Some(a)) => {
                Some(a.iter().zip(&b).map(|(a, b)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))).collect())
            }
            _ => None,
        };
        let drops_after = kernel::socket_drops();
        let ours = &self.ours;
        let (drops_generator, drops_server) =
            kernel::drops_split(&drops_before, &drops_after, &|port| ours.binary_search(&port).is_ok());
        let server_cpu_s = match (server_cpu_before, spec.server_pid.and_then(kernel::cpu_seconds)) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        let server_cpu_pct = server_cpu_s.map(|c| 100.0 * c / wall);
        let gen_cpu = (kernel::cpu_seconds(std::process::id()).unwrap_or(0.0) - gen_cpu_before).max(0.0);
        Ok(RunResult {
            target_pps: spec.rate,
            sent,
            received,
            seconds,
            sent_pps: sent as f64 / seconds,
            rx_pps: received as f64 / seconds,
            mbps: rx_bytes as f64 * 8.0 / seconds / 1e6,
            p50_us: self.hist.quantile_ns(0.5) as f64 / 1e3,
            p99_us: self.hist.quantile_ns(0.99) as f64 / 1e3,
            p50_steady_us: self.steady.quantile_ns(0.5) as f64 / 1e3,
            p99_steady_us: self.steady.quantile_ns(0.99) as f64 / 1e3,
            max_us: self.hist.max_ns() as f64 / 1e3,
            udp: UdpCounters::read().since(&udp_before),
            drops_generator,
            drops_server,
            server_cpu_pct,
            generator_cpu_pct: 100.0 * gen_cpu / wall,
            wall_s: wall,
            server_cpu_s,
            generator_cpu_s: gen_cpu,
            cpu_stat,
            softirq_ns,
        })
    }
}

impl Flows {
    /// Discards what arrives until 300 ms pass without a datagram (at most 10 s).
    fn settle(&mut self, recv: &mut RecvBatch, events: &mut [libc::epoll_event]) -> std::io::Result<()> {
        let start = mono_ns();
        let mut last = start;
        loop {
            let now = mono_ns();
            if now - last > 300_000_000 || now - start > 10_000_000_000 {
                return Ok(());
            }
            // SAFETY: events is a valid buffer of epoll_event for the call.
            let ready = unsafe { libc::epoll_wait(self.epoll, events.as_mut_ptr(), events.len() as i32, 50) };
            for ev in events.iter().take(ready.max(0) as usize) {
                match &mut self.pairs[ev.u64 as usize].b {
                    Link::Udp(b) => {
                        while recv.recv(b.as_raw_fd())? > 0 {
                            last = mono_ns();
                        }
                    }
                    Link::Stream(b) => {
                        b.fill()?;
                        b.frames(|_| last = mono_ns()).map_err(std::io::Error::other)?;
                    }
                }
            }
        }
    }
}

/// Counts what B received: the probes of this run (an earlier run's stragglers are not).
struct Tally<'a> {
    raw: bool,
    size: usize,
    first_seq: &'a [u64],
    steady_from: u64,
    received: u64,
    rx_bytes: u64,
    hist: &'a mut Histogram,
    steady: &'a mut Histogram,
}

impl Tally<'_> {
    fn record(&mut self, bytes: &[u8], t: u64) {
        let Some(probe) = decode(bytes, self.raw) else { return };
        // A straggler of an earlier run (its sequence number is below this run's first).
        if self.first_seq.get(probe.pair as usize).is_none_or(|&f| probe.seq < f) {
            return;
        }
        self.received += 1;
        self.rx_bytes += self.size as u64;
        let latency = t.saturating_sub(probe.sent_ns);
        self.hist.record(latency);
        if probe.sent_ns >= self.steady_from {
            self.steady.record(latency);
        }
    }
}

impl Drop for Flows {
    fn drop(&mut self) {
        // SAFETY: closing the epoll fd we created.
        unsafe { libc::close(self.epoll) };
    }
}

/// Frames a probe padded to `size` bytes as `frame` says; returns the datagram's length.
pub fn encode(frame: Frame, probe: Probe, size: usize, buf: &mut [u8]) -> usize {
    match frame {
        Frame::Raw => probe.write(buf, size),
        Frame::Channel(channel) => {
            let n = probe.write(&mut buf[codec::CHANNEL_DATA_HEADER_LEN..], size);
            codec::ChannelData::write_header(channel, n, buf);
            let padded = (n + 3) & !3;
            buf[codec::CHANNEL_DATA_HEADER_LEN + n..codec::CHANNEL_DATA_HEADER_LEN + padded].fill(0);
            codec::CHANNEL_DATA_HEADER_LEN + padded
        }
        Frame::Send(peer) => {
            let mut data = [0u8; 2048];
            let n = probe.write(&mut data, size);
            let mut txid = [0u8; 12];
            txid[..4].copy_from_slice(&probe.pair.to_be_bytes());
            txid[4..].copy_from_slice(&probe.seq.to_be_bytes());
            let mut build = || -> Result<usize, codec::EncodeError> {
                let mut w = MessageWriter::new(buf, Method::SEND, Class::Indication, txid)?;
                w.xor_address(attr::XOR_PEER_ADDRESS, peer)?;
                w.bytes(attr::DATA, &data[..n])?;
                Ok(w.finish())
            };
            build().unwrap_or(0)
        }
    }
}

/// The probe inside what B received: bare, in ChannelData, or in a Data indication.
pub fn decode(bytes: &[u8], raw: bool) -> Option<Probe> {
    if raw {
        return Probe::read(bytes);
    }
    if codec::is_channel_data(bytes) {
        return Probe::read(codec::ChannelData::decode(bytes)?.data);
    }
    let msg = Message::decode(bytes).ok()?;
    if msg.method() != Method::DATA || msg.class() != Class::Indication {
        return None;
    }
    Probe::read(msg.get(attr::DATA)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_back() {
        let probe = Probe { pair: 3, seq: 9, sent_ns: 77 };
        let peer: SocketAddr = "127.0.0.1:20000".parse().unwrap();
        for (frame, raw) in [(Frame::Raw, true), (Frame::Channel(0x4000), false), (Frame::Send(peer), false)] {
            let mut buf = [0u8; 2048];
            let n = encode(frame, probe, 160, &mut buf);
            assert!(n >= 160);
            if let Frame::Send(_) = frame {
                // The server turns a Send indication into a Data indication; same layout.
                buf[1] = 0x17;
            }
            assert_eq!(decode(&buf[..n], raw), Some(probe), "{frame:?}");
        }
    }
}
