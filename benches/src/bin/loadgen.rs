//! teletip-loadgen: drives a TURN server (or a raw forwarder) with client pairs relaying to
//! each other and reports throughput, loss (pinned on the side that dropped), latency, and for
//! the allocation mode the allocation rate and the server's memory. TURN clients reach the
//! server over UDP, TCP or TLS (`--transport`); allocations relay over UDP whichever it is.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use teletip_benches::flow::{Flows, Frame, Pair, RunResult, RunSpec};
use teletip_benches::kernel;
use teletip_benches::sockets;
use teletip_benches::transport::{DialError, Dialer, Link, Transport};
use teletip_benches::turn::{Client, FIRST_CHANNEL, Request, TurnError, run_transactions};

#[derive(Parser)]
#[command(name = "teletip-loadgen", about = "TURN data-plane load generator (standard TURN only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Client pairs relaying through a TURN server, allocation to allocation.
    Relay {
        #[command(flatten)]
        turn: TurnArgs,
        /// How A sends: ChannelData on a bound channel, or Send indications (B then receives
        /// Data indications).
        #[arg(long, value_enum, default_value_t = Mode::Channel)]
        mode: Mode,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Client pairs through a raw UDP forwarder (benches' `forwarder`), no TURN.
    Raw {
        /// The forwarder's address.
        #[arg(long)]
        server: SocketAddr,
        /// The address the clients' sockets bind to (default: loopback of the server's family).
        #[arg(long)]
        bind_ip: Option<IpAddr>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Client pairs with nothing between them: A sends the bare probe straight to B's socket
    /// (both on --bind-ip). The path every relay's latency is added to.
    Direct {
        /// The address both sockets of every pair bind to.
        #[arg(long, default_value = "127.0.0.1")]
        bind_ip: IpAddr,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// K allocations, pipelined: allocations per second and the server's memory.
    Alloc {
        #[command(flatten)]
        turn: TurnArgs,
        /// How many allocations.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Transactions in flight.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// The server's process id, to read its VmRSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Instead of deleting the allocations, hold the client sockets this many seconds and
        /// exit: the allocations stay on the server, as those of clients that lost their
        /// network (a reconnect storm's first half).
        #[arg(long)]
        hold_secs: Option<f64>,
    },
    /// A spoofed-source flood: unauthenticated requests from many loopback addresses that
    /// never authenticate; counts what the server reflects to them.
    Flood {
        /// The server's UDP address.
        #[arg(long)]
        server: SocketAddr,
        /// Source addresses (127.1.0.1, 127.1.0.2, …).
        #[arg(long, default_value_t = 500)]
        sources: usize,
        /// Requests from each source, alternately the smallest Allocate and a Binding.
        #[arg(long, default_value_t = 1000)]
        per_source: u64,
        /// Seconds to spread them over.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
}

#[derive(Args, Clone)]
struct TurnArgs {
    /// The TURN server's address for --transport (its TLS port for tls).
    #[arg(long)]
    server: SocketAddr,
    /// The TURN REST shared secret (static-auth-secret).
    #[arg(long)]
    secret: String,
    /// How clients reach the server: a UDP socket each, or a TCP or TLS connection each (any
    /// certificate accepted). Allocations relay over UDP either way.
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    transport: Transport,
    /// The address the clients' sockets bind to (default: loopback of the server's family): an
    /// address of this host's side of a veth pair when the server is in another network
    /// namespace (benches/xdp: XDP sees no loopback traffic).
    #[arg(long)]
    bind_ip: Option<IpAddr>,
}

impl TurnArgs {
    /// `count` clients of the server, each on its own socket or connection, named `prefix-i`.
    fn clients(&self, count: usize, prefix: &str) -> Result<Vec<Client>, LoadgenError> {
        let dialer = Dialer::new(self.transport)?;
        let ip = self.bind_ip.unwrap_or_else(|| localhost(&self.server));
        let run_id = std::process::id();
        let mut clients = Vec::with_capacity(count);
        for i in 0..count {
            let link = dialer.dial(self.server, ip)?;
            clients.push(Client::new(self.server, link, &self.secret, &format!("{prefix}-{run_id}-{i}"), 3600)?);
        }
        if let Some(Link::Stream(conn)) = clients.first().map(|c| &c.link)
            && let Some(suite) = conn.tls_suite()
        {
            eprintln!("TLS: {suite}");
        }
        Ok(clients)
    }
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Client pairs.
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Payload bytes per packet (the media, without TURN framing; at least 20).
    #[arg(long, default_value_t = 160)]
    size: usize,
    /// Seconds of sending per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Total packets per second over all pairs; 0 = as fast as the generator can.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Find the highest rate with at most --max-loss percent loss (binary search).
    #[arg(long)]
    find_max: bool,
    /// Loss bound for --find-max, percent.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// Bisection steps for --find-max.
    #[arg(long, default_value_t = 7)]
    steps: u32,
    /// The server's process id, for its CPU use.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label copied into the RESULT lines.
    #[arg(long, default_value = "-")]
    label: String,
    /// The pinned softirq time map of benches/softirq's loader: each CPU's softirq time over
    /// the measured window goes into the RESULT lines (`cpuN_net_rx_ns`, `cpuN_softirq_ns`).
    #[arg(long)]
    softirq_map: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Channel,
    Send,
}

#[derive(Debug, thiserror::Error)]
enum LoadgenError {
    #[error(transparent)]
    Turn(#[from] TurnError),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the forwarder did not acknowledge pair registration")]
    NoRegistration,
}

fn main() {
    let cli = Cli::parse();
    sockets::raise_nofile_limit();
    let result = match cli.command {
        Command::Relay { turn, mode, load } => relay(&turn, mode, &load),
        Command::Raw { server, bind_ip, load } => raw(server, bind_ip.unwrap_or_else(|| localhost(&server)), &load),
        Command::Direct { bind_ip, load } => direct(bind_ip, &load),
        Command::Alloc { turn, count, window, server_pid, hold_secs } => {
            alloc(&turn, count, window, server_pid, hold_secs)
        }
        Command::Flood { server, sources, per_source, duration } => flood(server, sources, per_source, duration),
    };
    if let Err(e) = result {
        eprintln!("teletip-loadgen: {e}");
        std::process::exit(1);
    }
}

fn localhost(server: &SocketAddr) -> IpAddr {
    if server.is_ipv4() { IpAddr::from([127, 0, 0, 1]) } else { IpAddr::from(std::net::Ipv6Addr::LOCALHOST) }
}

fn relay(turn: &TurnArgs, mode: Mode, load: &LoadArgs) -> Result<(), LoadgenError> {
    let setup = Instant::now();
    let mut clients = turn.clients(load.pairs * 2, "bench")?;
    let allocate: Vec<(usize, Request)> = (0..clients.len()).map(|i| (i, Request::Allocate)).collect();
    run_transactions(&mut clients, &allocate, 64, &mut || {})?;
    // Pair p is clients 2p (A) and 2p+1 (B); each binds to the other's relayed address, which
    // also installs the permission that lets the other's packets in.
    let relayed: Vec<SocketAddr> = clients.iter().map(|c| c.relayed.expect("allocated")).collect();
    let bind: Vec<(usize, Request)> = (0..clients.len())
        .map(|i| {
            let other = relayed[i ^ 1];
            let r = match mode {
                Mode::Channel => Request::ChannelBind(FIRST_CHANNEL, other),
                Mode::Send => Request::CreatePermission(other),
            };
            (i, r)
        })
        .collect();
    run_transactions(&mut clients, &bind, 64, &mut || {})?;
    eprintln!("{} pairs set up in {:.2} s", load.pairs, setup.elapsed().as_secs_f64());
    let mut pairs = Vec::with_capacity(load.pairs);
    let mut it = clients.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        let frame = match mode {
            Mode::Channel => Frame::Channel(FIRST_CHANNEL),
            Mode::Send => Frame::Send(b.relayed.expect("allocated")),
        };
        pairs.push(Pair { a: a.link, b: b.link, frame, dest: None });
    }
    let label = format!(
        "mode={} transport={} relayed={} label={}",
        if mode == Mode::Channel { "channel" } else { "send" },
        turn.transport.name(),
        relayed_family(&relayed),
        load.label
    );
    drive(Flows::new(pairs, false)?, turn.server, load, &label)
}

/// The family the server relayed over: "ipv4", "ipv6", or "mixed" (what a comparison of the
/// families must not be measuring).
fn relayed_family(relayed: &[SocketAddr]) -> &'static str {
    match (relayed.iter().any(SocketAddr::is_ipv4), relayed.iter().any(SocketAddr::is_ipv6)) {
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        _ => "mixed",
    }
}

fn raw(server: SocketAddr, ip: IpAddr, load: &LoadArgs) -> Result<(), LoadgenError> {
    let mut pairs = Vec::with_capacity(load.pairs);
    for p in 0..load.pairs {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let b = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        sockets::set_buffers(a.as_raw_fd(), 4 << 20);
        sockets::set_buffers(b.as_raw_fd(), 4 << 20);
        register(&b, server, p as u32)?;
        pairs.push(Pair { a: Link::Udp(a), b: Link::Udp(b), frame: Frame::Raw, dest: None });
    }
    drive(Flows::new(pairs, true)?, server, load, &format!("mode=raw label={}", load.label))
}

fn direct(ip: IpAddr, load: &LoadArgs) -> Result<(), LoadgenError> {
    let mut pairs = Vec::with_capacity(load.pairs);
    for _ in 0..load.pairs {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let b = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        sockets::set_buffers(a.as_raw_fd(), 4 << 20);
        sockets::set_buffers(b.as_raw_fd(), 4 << 20);
        let to_b = b.local_addr()?;
        pairs.push(Pair { a: Link::Udp(a), b: Link::Udp(b), frame: Frame::Raw, dest: Some(to_b) });
    }
    // `dest` of the run is unused: every pair has its own.
    let first = pairs.first().and_then(|p| p.dest).unwrap_or(SocketAddr::new(ip, 9));
    drive(Flows::new(pairs, true)?, first, load, &format!("mode=direct label={}", load.label))
}

/// Tells the forwarder that B of pair `p` is at `b`'s address (see the forwarder's protocol).
fn register(b: &UdpSocket, server: SocketAddr, p: u32) -> Result<(), LoadgenError> {
    b.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut msg = *b"REG\0\0\0\0";
    msg[3..7].copy_from_slice(&p.to_be_bytes());
    let mut ack = [0u8; 16];
    for _ in 0..10 {
        b.send_to(&msg, server)?;
        if let Ok((n, _)) = b.recv_from(&mut ack) {
            if ack[..n] == msg[..] {
                return Ok(());
            }
        }
    }
    Err(LoadgenError::NoRegistration)
}

fn drive(mut flows: Flows, dest: SocketAddr, load: &LoadArgs, label: &str) -> Result<(), LoadgenError> {
    let softirq = load.softirq_map.as_deref().map(kernel::SoftirqMap::open).transpose()?;
    let spec = |rate: f64| RunSpec {
        dest,
        size: load.size,
        duration: Duration::from_secs_f64(load.duration),
        rate,
        server_pid: load.server_pid,
        softirq: softirq.as_ref(),
    };
    let prefix = format!("{label} pairs={} size={}", flows.pairs(), load.size);
    let report = |kind: &str, r: &RunResult| {
        eprintln!(
            "{kind:>6}: target {:>9.0} pps  sent {:>9.0} pps  received {:>9.0} pps ({:.1} Mbit/s)  loss {:.2} %  \
             p50 {:.1} us  p99 {:.1} us (after warm-up {:.1} / {:.1})  max {:.0} us  drops gen/server {}/{}  cpu server {} %",
            r.target_pps,
            r.sent_pps,
            r.rx_pps,
            r.mbps,
            r.loss_pct(),
            r.p50_us,
            r.p99_us,
            r.p50_steady_us,
            r.p99_steady_us,
            r.max_us,
            r.drops_generator,
            r.drops_server,
            r.server_cpu_pct.map_or("?".into(), |c| format!("{c:.0}")),
        );
        println!("{} kind={kind}", r.result_line(&prefix));
    };
    if !load.find_max {
        let r = flows.run(&spec(load.rate))?;
        report("run", &r);
        return Ok(());
    }
    // The flat-out run bounds the search; then bisect on the offered rate for the loss bound.
    let flat = flows.run(&spec(0.0))?;
    report("flat", &flat);
    let (mut lo, mut hi) = (0.0f64, flat.sent_pps.max(flat.rx_pps * 1.2));
    // The maximum is the highest rate *received* by any run within the loss bound, the flat-out
    // run included, not the last passing probe: where the generator cannot send what a probe
    // asks for (it is then at 100 % of its core), a higher offered rate can relay less, and the
    // last passing probe would understate what the server was seen to do.
    let passes = |r: &RunResult| r.loss_pct() <= load.max_loss;
    let mut best: Option<RunResult> = passes(&flat).then(|| flat.clone());
    for _ in 0..load.steps {
        let mid = (lo + hi) / 2.0;
        std::thread::sleep(Duration::from_millis(200));
        let r = flows.run(&spec(mid))?;
        report("probe", &r);
        if passes(&r) {
            lo = mid;
            if best.as_ref().is_none_or(|b| r.rx_pps > b.rx_pps) {
                best = Some(r);
            }
        } else {
            hi = mid;
        }
    }
    match best {
        Some(b) => report("max", &b),
        None => eprintln!("no rate met the loss bound"),
    }
    Ok(())
}

fn flood(server: SocketAddr, sources: usize, per_source: u64, duration: f64) -> Result<(), LoadgenError> {
    let r = teletip_benches::flood::run(server, sources, per_source, Duration::from_secs_f64(duration))?;
    println!(
        "RESULT mode=flood sources={} seconds={duration} elapsed={:.2} requests={} request_bytes={} answers={} answer_bytes={} \
         max_answers_per_source={} max_bytes_per_source={} largest_answer={} largest_factor={:.2}",
        r.sources,
        r.elapsed.as_secs_f64(),
        r.requests,
        r.request_bytes,
        r.answers,
        r.answer_bytes,
        r.max_answers_per_source,
        r.max_bytes_per_source,
        r.largest_answer,
        r.largest_factor
    );
    Ok(())
}

fn alloc(
    turn: &TurnArgs,
    count: usize,
    window: usize,
    pid: Option<u32>,
    hold_secs: Option<f64>,
) -> Result<(), LoadgenError> {
    let mut clients = turn.clients(count, "alloc")?;
    let transport = turn.transport.name();
    let rss = || pid.and_then(kernel::rss_kib).unwrap_or(0);
    let before = rss();
    let mut peak = before;
    let jobs: Vec<(usize, Request)> = (0..count).map(|i| (i, Request::Allocate)).collect();
    let cpu_before = pid.and_then(kernel::cpu_seconds);
    let gen_cpu_before = kernel::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let start = Instant::now();
    run_transactions(&mut clients, &jobs, window, &mut || peak = peak.max(rss()))?;
    let secs = start.elapsed().as_secs_f64();
    // The generator's own CPU, so that a rate it could not drive faster is not taken for the
    // server's.
    let gen_cpu = (kernel::cpu_seconds(std::process::id()).unwrap_or(0.0) - gen_cpu_before).max(0.0);
    let generator_cpu = 100.0 * gen_cpu / secs;
    let server_cpu = match (cpu_before, pid.and_then(kernel::cpu_seconds)) {
        (Some(b), Some(a)) => format!("{:.0}", 100.0 * (a - b) / secs),
        _ => "na".into(),
    };
    if let Some(hold) = hold_secs {
        println!(
            "RESULT mode=alloc transport={transport} count={count} window={window} seconds={secs:.3} allocs_per_sec={:.0} held_secs={hold} \
             server_cpu_pct={server_cpu} generator_cpu_pct={generator_cpu:.0}",
            count as f64 / secs
        );
        std::thread::sleep(Duration::from_secs_f64(hold));
        return Ok(());
    }
    std::thread::sleep(Duration::from_millis(1500));
    let held = rss();
    peak = peak.max(held);
    let release: Vec<(usize, Request)> = (0..count).map(|i| (i, Request::Refresh(0))).collect();
    let start_release = Instant::now();
    run_transactions(&mut clients, &release, window, &mut || {})?;
    let release_secs = start_release.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1500));
    let released = rss();
    let per_alloc = (held.saturating_sub(before) * 1024) as f64 / count as f64;
    eprintln!(
        "{count} allocations in {secs:.2} s = {:.0} /s (each a 401 round trip and an authenticated Allocate); \
         RSS before {before} KiB, peak {peak} KiB, holding {held} KiB ({per_alloc:.0} B per allocation), \
         after releasing ({release_secs:.2} s) {released} KiB",
        count as f64 / secs
    );
    println!(
        "RESULT mode=alloc transport={transport} count={count} window={window} seconds={secs:.3} allocs_per_sec={:.0} rss_before_kib={before} \
         rss_peak_kib={peak} rss_held_kib={held} bytes_per_alloc={per_alloc:.0} rss_released_kib={released} server_cpu_pct={server_cpu} generator_cpu_pct={generator_cpu:.0}",
        count as f64 / secs
    );
    Ok(())
}
