//! One worker: a thread with its own listener sockets (SO_REUSEPORT), its own relayed sockets
//! and its own shard of the state machine. Nothing on the packet path is shared with other
//! workers, so nothing on it is locked.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use rustc_hash::FxHashMap;
use slab::Slab;
use teletip_mmsg::{BATCH, MAX_DATAGRAM, RecvBatch, SendBatch};
use teletip_turn_proto::codec::{CHANNEL_DATA_HEADER_LEN, Next};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{Action, Controls, FiveTuple, Payload, RelayId, ServerConfig, Shard, Transport};
use teletip_turn_proto::time::Millis;

use super::binder::{BinderSettings, NetBinder, RELAY_TOKEN_BASE, Reservations};
use super::memory::{MemoryReturn, trim_heap};
use super::overload::QueueDelayGuard;
use super::socket::{self, SocketTuning};
use super::stream::{CloseReason, Connection, StreamListener, UNALLOCATED_TIMEOUT_MS};
use crate::metrics::{Publisher, ShellStats};
use crate::xdp::mirror::Mirror;

const WAKER: Token = Token(RELAY_TOKEN_BASE - 1);
/// TCP and TLS listeners: tokens from here (UDP listeners count up from 0).
const STREAM_LISTENER_BASE: usize = 1 << 16;
/// Client connections: this plus the connection's slab key, below the waker.
const CONNECTION_BASE: usize = 1 << 17;
/// The most connections one worker can hold with tokens below the waker's.
pub const MAX_CONNECTIONS_PER_WORKER: usize = RELAY_TOKEN_BASE - 1 - CONNECTION_BASE;
/// Connections accepted from one listener per turn.
const ACCEPT_BUDGET: usize = 64;
/// Room in front of a received peer datagram for the ChannelData header.
const HEADROOM: usize = CHANNEL_DATA_HEADER_LEN;

/// Everything a worker needs, prepared (and its listeners bound) before its thread starts, so
/// that a bind error stops the daemon at start rather than silently losing a worker.
pub struct WorkerSetup {
    pub index: usize,
    pub config: Arc<ServerConfig>,
    pub controls: Controls,
    pub quotas: Arc<SharedQuotas>,
    pub binder: BinderSettings,
    pub reservations: Reservations,
    pub stop: Arc<AtomicBool>,
    pub publisher: Publisher,
    poll: Poll,
    listeners: Vec<(UdpSocket, SocketAddr)>,
    pub waker: Arc<Waker>,
    /// Unix milliseconds of the loop's last turn: the systemd watchdog pings only while every
    /// worker's is recent.
    pub heartbeat: Arc<AtomicU64>,
    /// How long to keep polling without sleeping after the last datagram (0: sleep at once).
    pub busy_poll: Duration,
    /// Sojourn target of overload control (0: never drop for lateness); see `overload.rs`.
    pub max_queue_delay: Duration,
    /// How long the queue must stay above that target before late datagrams are dropped.
    pub overload_grace: Duration,
    stream_listeners: Vec<StreamListener>,
    /// Client connections this worker holds at most; more are closed at once.
    pub max_connections: usize,
    /// Client connections from one IP address this worker holds at most.
    pub max_connections_per_ip: usize,
    /// The XDP offload's mirror of this worker's grants, when `xdp-offload` is on.
    pub offload: Option<Mirror>,
}

impl WorkerSetup {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        listen: &[SocketAddr],
        tuning: SocketTuning,
        config: Arc<ServerConfig>,
        controls: Controls,
        quotas: Arc<SharedQuotas>,
        binder: BinderSettings,
        reservations: Reservations,
        stop: Arc<AtomicBool>,
        publisher: Publisher,
    ) -> io::Result<WorkerSetup> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (i, addr) in listen.iter().enumerate() {
            let std_socket = socket::listener(*addr, tuning)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on udp {addr}: {e}")))?;
            let bound = std_socket.local_addr()?;
            let mut socket = UdpSocket::from_std(std_socket);
            poll.registry().register(&mut socket, Token(i), Interest::READABLE)?;
            listeners.push((socket, bound));
        }
        let heartbeat = Arc::new(AtomicU64::new(now().0));
        Ok(WorkerSetup {
            index,
            config,
            controls,
            quotas,
            binder,
            reservations,
            stop,
            publisher,
            poll,
            listeners,
            waker,
            heartbeat,
            busy_poll: Duration::ZERO,
            max_queue_delay: Duration::ZERO,
            overload_grace: Duration::from_nanos(super::overload::DEFAULT_GRACE_NS),
            stream_listeners: Vec::new(),
            max_connections: MAX_CONNECTIONS_PER_WORKER,
            max_connections_per_ip: usize::MAX,
            offload: None,
        })
    }

    /// Listens for TURN over TCP on `addr`, or over TLS with `tls`.
    pub fn listen_stream(&mut self, addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<()> {
        let kind = if tls.is_some() { "tls" } else { "tcp" };
        let mut listener = StreamListener::bind(addr, tls)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {kind} {addr}: {e}")))?;
        let token = Token(STREAM_LISTENER_BASE + self.stream_listeners.len());
        self.poll.registry().register(&mut listener.socket, token, Interest::READABLE)?;
        self.stream_listeners.push(listener);
        Ok(())
    }

    pub fn spawn(self) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("relay-worker-{}", self.index)).spawn(move || self.run())
    }

    fn run(self) {
        let WorkerSetup {
            index,
            config,
            controls,
            quotas,
            binder,
            reservations,
            stop,
            mut publisher,
            mut poll,
            listeners,
            heartbeat,
            busy_poll,
            max_queue_delay,
            overload_grace,
            stream_listeners,
            max_connections,
            max_connections_per_ip,
            offload,
            ..
        } = self;
        let registry = poll.registry().try_clone().expect("a poll registry can be cloned");
        let stream_registry = poll.registry().try_clone().expect("a poll registry can be cloned");
        let dscp = binder.tuning.dscp;
        let binder = NetBinder::new(binder, registry, reservations);
        let target_ns = max_queue_delay.as_nanos() as u64;
        let mut w = Worker {
            listener_guards: vec![QueueDelayGuard::new(target_ns, overload_grace.as_nanos() as u64); listeners.len()],
            overload_control: target_ns > 0,
            shard: Shard::new(config, controls, quotas, binder),
            listeners,
            rx: RecvBatch::new(BATCH, HEADROOM, MAX_DATAGRAM),
            out: vec![0u8; MAX_DATAGRAM + 64].into_boxed_slice(),
            to_clients: SendBatch::default(),
            to_peers: SendBatch::default(),
            shell: ShellStats::default(),
            streams: Streams {
                listeners: stream_listeners,
                connections: Slab::new(),
                by_tuple: FxHashMap::default(),
                dirty: Vec::new(),
                inbox: Vec::new(),
                max: max_connections.min(MAX_CONNECTIONS_PER_WORKER),
                max_per_ip: max_connections_per_ip,
                per_ip: FxHashMap::default(),
                registry: stream_registry,
                dscp,
            },
            revocations_seen: 0,
            offload,
        };
        if w.offload.is_some() {
            w.shard.enable_offload_journal();
        }
        let mut events = Events::with_capacity(1024);
        // Sockets that still had datagrams when their turn's budget ran out, served again on
        // the next turn (before sleeping): preallocated, never grows past the socket count.
        let mut backlog: Vec<Token> = Vec::with_capacity(1024);
        let mut ready: Vec<Token> = Vec::with_capacity(1024);
        let mut last_tick = now();
        let mut memory = MemoryReturn::default();
        let mut last_traffic = Instant::now();
        tracing::debug!(worker = index, pooled_relay_sockets = w.shard.binder().pooled(), "worker started");
        while !stop.load(Ordering::Relaxed) {
            // Busy polling: an idle vCPU that sleeps costs the next datagram a wake-up of tens
            // of microseconds on a VM, more than the relaying itself.
            let spinning = !busy_poll.is_zero() && last_traffic.elapsed() < busy_poll;
            let timeout = if backlog.is_empty() && !spinning { Duration::from_millis(250) } else { Duration::ZERO };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = index, error = %e, "poll failed");
                }
                continue;
            }
            // One clock read per wake-up: every packet of the turn shares it.
            let now = now();
            heartbeat.store(now.0, Ordering::Relaxed);
            // Before this turn's datagrams, so that none of a revoked session is relayed once
            // the turn that saw the order began; one atomic load when nothing was revoked. The
            // batches were flushed at the end of the last turn, so no queued datagram names a
            // relayed socket released here.
            w.apply_revocations(now);
            // A revoked allocation leaves the kernel's maps before this turn relays anything.
            w.sync_offload(now);
            ready.clear();
            ready.append(&mut backlog);
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKER));
            order_turn(&mut ready);
            if !busy_poll.is_zero() && !ready.is_empty() {
                last_traffic = Instant::now();
            }
            for &token in &ready {
                let more = match token {
                    Token(t) if t < STREAM_LISTENER_BASE => w.serve_listener(now, t),
                    Token(t) if t < CONNECTION_BASE => w.accept_streams(t - STREAM_LISTENER_BASE),
                    Token(t) if t < RELAY_TOKEN_BASE => w.serve_connection(now, t - CONNECTION_BASE),
                    Token(t) => w.serve_relay(now, t - RELAY_TOKEN_BASE),
                };
                // `ready` holds each socket once and the backlog was emptied into it, so a
                // socket cannot be on the backlog twice.
                if more {
                    backlog.push(token);
                }
            }
            // Datagrams to clients all leave through the listener, so they are sent in batches
            // across the turn's relayed sockets too (one sendmmsg for many allocations' data).
            w.flush_all();
            // After the turn's datagrams are out: sockets for the burst's next allocations.
            w.shard.binder_mut().replenish();
            // The grants this turn's requests made or changed, into the kernel's maps.
            w.sync_offload(now);
            if now.0 >= last_tick.0 + 1000 {
                // The tick sweeps revocations too; an order that arrived during this turn is
                // swept here first, so that its connections are closed with it.
                w.apply_revocations(now);
                w.shard.tick(now);
                w.close_unallocated_connections(now);
                w.sync_offload(now);
                if let Some(mirror) = &mut w.offload {
                    mirror.collect(&mut w.shard, now);
                    w.shell.xdp_mirrored = mirror.mirrored() as u64;
                    w.shell.xdp_failures = mirror.failures + mirror.slots_exhausted;
                    w.shell.xdp_relayed_packets = mirror.relayed_packets;
                }
                w.shard.binder_mut().trim_pool();
                let peak = w.shard.take_allocation_peak();
                if memory.after_tick(peak, w.shard.allocation_count()) {
                    trim_heap();
                }
                w.shell.relay_sockets_pooled = w.shard.binder().pooled() as u64;
                publisher.publish(w.shard.stats(), &w.shell);
                last_tick = now;
            }
        }
        w.shard.clear();
        w.sync_offload(now());
        w.shell.relay_sockets_pooled = 0;
        publisher.publish(w.shard.stats(), &w.shell);
        tracing::debug!(worker = index, "worker stopped");
    }
}

fn now() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// Orders a turn's sockets so that relayed sockets are served before listeners. What waits on
/// a relayed socket was usually admitted through a listener already (the kernel path between
/// two allocations sends it there), so finishing it before reading more keeps the work inside
/// the relay bounded: a busy listener served first from the backlog would make every admitted
/// datagram wait another listener turn, and near capacity hold the queue above the overload
/// target long enough to start dropping (docs/performance.md, optimisation 7).
///
/// Each socket is also served once per turn: a socket left on the backlog by the last turn and
/// woken again by a new event would otherwise be served twice, which is either twice its
/// budget ahead of the others or, once it is empty, a wasted `recvmmsg`.
fn order_turn(ready: &mut Vec<Token>) {
    // Unstable: no allocation. Within each group the order carries no meaning, so sorting by
    // token too brings duplicates together for dedup.
    ready.sort_unstable_by_key(|t| (t.0 < RELAY_TOKEN_BASE, t.0));
    ready.dedup();
}

/// Batches read from one socket per turn before the others get theirs: mio is edge-triggered,
/// so a socket is normally drained to empty, but under a flood draining one socket to the end
/// would starve the others (a listener never empties and relayed sockets overflow).
const TURN_BUDGET: usize = 8;

struct Worker {
    shard: Shard<NetBinder>,
    listeners: Vec<(UdpSocket, SocketAddr)>,
    /// Receive slots, with headroom for a ChannelData header in front of peer data.
    rx: RecvBatch,
    /// Where responses, Data indications and same-relay deliveries are encoded.
    out: Box<[u8]>,
    /// Datagrams to clients, all from one listener socket.
    to_clients: SendBatch,
    /// Datagrams to peers, all from one relayed socket (consecutive ones from the same
    /// allocation share a syscall).
    to_peers: SendBatch,
    shell: ShellStats,
    /// Overload control per listener. Only where datagrams enter from clients: a datagram on a
    /// relayed socket has usually been relayed once already by this worker (the kernel path
    /// between two allocations), and its sojourn measures the worker's own turn, not the
    /// offered load; dropping it there throws away work done and collapses throughput
    /// (docs/performance.md, optimisation 4).
    listener_guards: Vec<QueueDelayGuard>,
    overload_control: bool,
    streams: Streams,
    /// The revocation generation this worker last applied.
    revocations_seen: u64,
    /// The XDP offload's mirror of the shard, when on.
    offload: Option<Mirror>,
}

/// The worker's TCP and TLS side: its listeners and the client connections it accepted.
struct Streams {
    listeners: Vec<StreamListener>,
    connections: Slab<Connection>,
    by_tuple: FxHashMap<FiveTuple, usize>,
    /// Connections with bytes to write at the end of the turn.
    dirty: Vec<usize>,
    /// Where connections' bytes are read and cut into messages, one connection at a time.
    inbox: Vec<u8>,
    max: usize,
    max_per_ip: usize,
    /// Connections held per client IP address (addresses with none are removed).
    per_ip: FxHashMap<std::net::IpAddr, usize>,
    registry: Registry,
    dscp: u8,
}

/// Where the bytes a `Payload::Input` range points into are.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// Receive slot `i`, from `offset` on (a datagram).
    Slot { offset: usize, i: usize },
    /// A message read from a stream.
    Frame(&'a [u8]),
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Worker {
    /// Writes the allocations the shard changed or ended into the XDP program's maps (nothing
    /// when the offload is off or nothing changed).
    fn sync_offload(&mut self, now: Millis) {
        if let Some(mirror) = &mut self.offload {
            mirror.sync(&mut self.shard, now);
        }
    }

    /// Reads datagrams waiting on listener `index`; true if some are left for the next turn.
    fn serve_listener(&mut self, now: Millis, index: usize) -> bool {
        let fd = self.listeners[index].0.as_raw_fd();
        let server = self.listeners[index].1;
        // Under overload, one batch per turn: the datagrams already admitted (queued on relayed
        // sockets, on the kernel path) are relayed before more are read, so what is admitted
        // is not left waiting a long turn (docs/performance.md, optimisation 4).
        let budget = if self.listener_guards[index].dropping() { 1 } else { TURN_BUDGET };
        for _ in 0..budget {
            let n = match self.rx.recv(fd) {
                Ok(n) => n,
                Err(_) => {
                    self.shell.recv_errors += 1;
                    return false;
                }
            };
            let read_at = if self.overload_control { unix_ns() } else { 0 };
            for i in 0..n {
                let queued_at = if self.overload_control { self.rx.queued_at_ns(i) } else { None };
                let Some((slot, range, client)) = self.rx.datagram(i) else {
                    self.shell.recv_errors += 1;
                    continue;
                };
                let packet = &slot[range.clone()];
                let request = is_request(packet);
                // Requests are never dropped for lateness: they are few, and a lost Refresh
                // could cost a call its allocation. Late ones tell the guard that a storm of
                // them, not media, keeps the queue long.
                if request && let Some(queued_at) = queued_at {
                    self.listener_guards[index].note_request(read_at.saturating_sub(queued_at), read_at);
                }
                if !request
                    && let Some(queued_at) = queued_at
                    && !self.listener_guards[index].admit(read_at.saturating_sub(queued_at), read_at)
                {
                    self.shell.queue_delay_drops += 1;
                    continue;
                }
                if request {
                    // A request can release a relayed socket (Refresh with lifetime 0) whose
                    // descriptor a queued datagram still names.
                    flush(&mut self.to_peers, &mut self.shell);
                }
                let tuple = FiveTuple { client, server, transport: Transport::Udp };
                let action = self.shard.handle_client(now, tuple, packet, &mut self.out);
                if request {
                    // What the request granted or ended is in the kernel's maps before its
                    // answer leaves: a client that saw its allocation deleted finds no channel
                    // of it relayed in the kernel any more.
                    self.sync_offload(now);
                }
                self.perform(action, Input::Slot { offset: range.start, i });
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// Reads datagrams waiting on relayed socket `slot`; true if some are left.
    fn serve_relay(&mut self, now: Millis, slot: usize) -> bool {
        for _ in 0..TURN_BUDGET {
            let Some(relay) = self.shard.binder().sockets.get(slot) else { return false };
            let n = match self.rx.recv(relay.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(_) => {
                    self.shell.recv_errors += 1;
                    return false;
                }
            };
            for i in 0..n {
                let Some((buf, range, peer)) = self.rx.datagram(i) else {
                    self.shell.recv_errors += 1;
                    continue;
                };
                let action = self.shard.handle_peer(now, RelayId(slot as u32), peer, buf, range, &mut self.out);
                self.perform(action, Input::Slot { offset: 0, i });
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// Queues what the state machine asked for. `Payload::Input` ranges are relative to the
    /// buffer handed to the shard: the receive slot from `offset` on, or the stream message.
    fn perform(&mut self, action: Action, input: Input<'_>) {
        match action {
            Action::None => {}
            Action::ToClient { tuple, payload } if tuple.transport != Transport::Udp => {
                let Some(&key) = self.streams.by_tuple.get(&tuple) else {
                    self.shell.send_errors += 1;
                    return;
                };
                let bytes = match payload {
                    Payload::Output(n) => &self.out[..n],
                    Payload::Input(range) => input_bytes(&self.rx, input, range),
                };
                let connection = &mut self.streams.connections[key];
                if !connection.queue(bytes) {
                    self.shell.stream_backlog_drops += 1;
                } else if !connection.dirty {
                    connection.dirty = true;
                    self.streams.dirty.push(key);
                }
            }
            Action::ToClient { tuple, payload } => {
                let Some((socket, _)) = self.listeners.iter().find(|(_, addr)| *addr == tuple.server) else { return };
                let fd = socket.as_raw_fd();
                if self.to_clients.is_full() || self.to_clients.fd().is_some_and(|f| f != fd) {
                    flush(&mut self.to_clients, &mut self.shell);
                }
                let bytes = match payload {
                    Payload::Output(n) => &self.out[..n],
                    Payload::Input(range) => input_bytes(&self.rx, input, range),
                };
                if !self.to_clients.push(fd, tuple.client, bytes) {
                    self.shell.send_errors += 1;
                }
            }
            Action::ToPeer { relay, peer, payload, dont_fragment } => {
                let Some(r) = self.shard.binder_mut().sockets.get_mut(relay.0 as usize) else { return };
                let fd = r.socket.as_raw_fd();
                if self.to_peers.is_full() || self.to_peers.fd().is_some_and(|f| f != fd) {
                    flush(&mut self.to_peers, &mut self.shell);
                }
                if r.dont_fragment != dont_fragment {
                    // The option applies to what is sent after it: send what was queued first.
                    flush(&mut self.to_peers, &mut self.shell);
                    if socket::set_dont_fragment(&r.socket, r.ipv4, dont_fragment).is_ok() {
                        r.dont_fragment = dont_fragment;
                    }
                }
                let bytes = input_bytes(&self.rx, input, payload);
                if !self.to_peers.push(fd, peer, bytes) {
                    self.shell.send_errors += 1;
                }
            }
        }
    }

    fn flush_all(&mut self) {
        flush(&mut self.to_clients, &mut self.shell);
        flush(&mut self.to_peers, &mut self.shell);
        self.flush_connections();
    }

    /// Accepts waiting connections on stream listener `index`; true if some are left.
    fn accept_streams(&mut self, index: usize) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            let listener = &self.streams.listeners[index];
            let (stream, client) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, typically: what waits stays queued in the kernel
                    // until the next connection wakes the listener.
                    tracing::warn!(error = %e, listener = %listener.addr, "cannot accept a connection");
                    return false;
                }
            };
            let transport = listener.transport();
            if self.streams.connections.len() >= self.streams.max {
                self.shell.stream_refused += 1;
                continue; // dropping the stream closes it
            }
            let from_this_ip = self.streams.per_ip.get(&client.ip()).copied().unwrap_or(0);
            if from_this_ip >= self.streams.max_per_ip {
                self.shell.stream_refused_per_ip += 1;
                continue;
            }
            // Media rides these connections: no Nagle delay, and the same DSCP as over UDP.
            let _ = stream.set_nodelay(true);
            if self.streams.dscp != 0 {
                let tos = u32::from(self.streams.dscp) << 2;
                let s = socket2::SockRef::from(&stream);
                let _ = if client.is_ipv4() { s.set_tos_v4(tos) } else { s.set_tclass_v6(tos) };
            }
            let server = stream.local_addr().unwrap_or(listener.addr);
            let tuple = FiveTuple { client, server, transport };
            let Ok(mut connection) = Connection::new(stream, tuple, listener.tls.as_ref()) else {
                self.shell.stream_closed[CloseReason::Tls as usize] += 1;
                continue;
            };
            let entry = self.streams.connections.vacant_entry();
            let token = Token(CONNECTION_BASE + entry.key());
            if self
                .streams
                .registry
                .register(&mut connection.stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.shell.stream_closed[CloseReason::Error as usize] += 1;
                continue;
            }
            self.streams.by_tuple.insert(tuple, entry.key());
            *self.streams.per_ip.entry(client.ip()).or_insert(0) += 1;
            entry.insert(connection);
            match transport {
                Transport::Tls => (self.shell.tls_accepted += 1, self.shell.tls_open += 1),
                _ => (self.shell.tcp_accepted += 1, self.shell.tcp_open += 1),
            };
        }
        true
    }

    /// Reads from connection `key` and handles every whole message; true if bytes are left.
    fn serve_connection(&mut self, now: Millis, key: usize) -> bool {
        let Some(connection) = self.streams.connections.get_mut(key) else { return false };
        // The worker's read buffer, out of `self` while its messages are handled (answers may
        // go to this same connection, and same-relay data to any other): the partial message
        // left from the last turn, then what arrives now.
        let mut inbox = std::mem::take(&mut self.streams.inbox);
        inbox.clear();
        inbox.extend_from_slice(&connection.partial);
        let outcome = connection.fill(&mut inbox);
        let tuple = connection.tuple;
        let mut framer = connection.framer.clone();
        let mut closed = outcome.closed;
        let mut pos = 0;
        loop {
            match framer.next(&inbox, &mut pos) {
                Ok(Next::Frame(range)) => {
                    let message = &inbox[range];
                    if is_request(message) {
                        // As over UDP: a request can release a relayed socket that a queued
                        // datagram still names.
                        flush(&mut self.to_peers, &mut self.shell);
                    }
                    let action = self.shard.handle_client(now, tuple, message, &mut self.out);
                    self.perform(action, Input::Frame(message));
                }
                Ok(Next::Oversized) => self.shell.stream_too_large += 1,
                Ok(Next::NeedMore) => break,
                Err(_) => {
                    closed = Some(CloseReason::Framing);
                    break;
                }
            }
        }
        let connection = &mut self.streams.connections[key];
        connection.keep_partial(&inbox, pos);
        connection.framer = framer;
        self.streams.inbox = inbox;
        if connection.has_output() && !connection.dirty {
            connection.dirty = true;
            self.streams.dirty.push(key);
        }
        if let Some(reason) = closed {
            self.close_connection(key, reason);
            return false;
        }
        outcome.more
    }

    /// Writes what the turn queued for each connection.
    fn flush_connections(&mut self) {
        let mut dirty = std::mem::take(&mut self.streams.dirty);
        for key in dirty.drain(..) {
            let Some(connection) = self.streams.connections.get_mut(key) else { continue };
            connection.dirty = false;
            if let Err(reason) = connection.flush() {
                self.close_connection(key, reason);
            }
        }
        self.streams.dirty = dirty;
    }

    /// Closes connection `key` and ends its allocation.
    fn close_connection(&mut self, key: usize, reason: CloseReason) {
        let Some(mut connection) = self.streams.connections.try_remove(key) else { return };
        // Datagrams queued from the allocation's relayed socket leave before it is released.
        flush(&mut self.to_peers, &mut self.shell);
        let _ = self.streams.registry.deregister(&mut connection.stream);
        self.streams.by_tuple.remove(&connection.tuple);
        let ip = connection.tuple.client.ip();
        if let Some(n) = self.streams.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.streams.per_ip.remove(&ip);
            }
        }
        self.shard.client_closed(&connection.tuple);
        self.shell.stream_closed[reason as usize] += 1;
        match connection.tuple.transport {
            Transport::Tls => self.shell.tls_open -= 1,
            _ => self.shell.tcp_open -= 1,
        }
    }

    /// Ends the allocations of the sessions the control plane revoked (`Shard::apply_revocations`)
    /// and closes the TCP and TLS connections that held them, instead of leaving them open until
    /// the unallocated timeout: their credentials are refused, so nothing more can happen on
    /// them. Compares one generation number when nothing was revoked.
    fn apply_revocations(&mut self, now: Millis) {
        let generation = self.shard.controls().revocations.generation();
        if generation == self.revocations_seen {
            return;
        }
        self.revocations_seen = generation;
        // Which connections hold an allocation before the sweep: those that hold none after it
        // lost theirs to it (an order published meanwhile is swept now too, and the next turn
        // finds nothing more to close).
        let allocated: Vec<usize> = self
            .streams
            .connections
            .iter()
            .filter(|(_, c)| self.shard.allocation_for(&c.tuple).is_some())
            .map(|(key, _)| key)
            .collect();
        self.shard.apply_revocations(now);
        for key in allocated {
            if self.shard.allocation_for(&self.streams.connections[key].tuple).is_none() {
                self.close_connection(key, CloseReason::Revoked);
            }
        }
    }

    /// Closes connections that have held no allocation for `UNALLOCATED_TIMEOUT_MS`.
    fn close_unallocated_connections(&mut self, now: Millis) {
        let mut expired = Vec::new();
        for (key, connection) in self.streams.connections.iter_mut() {
            if self.shard.allocation_for(&connection.tuple).is_some() {
                connection.unallocated_since = None;
            } else {
                let since = *connection.unallocated_since.get_or_insert(now);
                if now.0.saturating_sub(since.0) >= UNALLOCATED_TIMEOUT_MS {
                    expired.push(key);
                }
            }
        }
        for key in expired {
            self.close_connection(key, CloseReason::Unallocated);
        }
    }
}

/// The bytes a `Payload::Input` range names.
fn input_bytes<'a>(rx: &'a RecvBatch, input: Input<'a>, range: std::ops::Range<usize>) -> &'a [u8] {
    match input {
        Input::Slot { offset, i } => &rx.slot(i)[offset + range.start..offset + range.end],
        Input::Frame(frame) => &frame[range],
    }
}

fn flush(batch: &mut SendBatch, shell: &mut ShellStats) {
    let outcome = batch.flush();
    shell.send_buffer_full += outcome.buffer_full;
    shell.send_errors += outcome.errors;
}

/// A STUN request (class bits 00), as opposed to ChannelData or an indication.
fn is_request(packet: &[u8]) -> bool {
    packet.len() >= 2 && packet[0] & 0xC0 == 0 && u16::from_be_bytes([packet[0], packet[1]]) & 0x0110 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_sockets_are_served_before_listeners() {
        let listener = Token(0);
        let second_listener = Token(1);
        let relayed = [Token(RELAY_TOKEN_BASE), Token(RELAY_TOKEN_BASE + 7), Token(RELAY_TOKEN_BASE + 3)];
        let mut ready = vec![listener, relayed[0], second_listener, relayed[1], relayed[2]];
        order_turn(&mut ready);
        assert_eq!(ready.len(), 5, "{ready:?}");
        assert!(ready[..3].iter().all(|t| relayed.contains(t)), "{ready:?}");
        assert!(ready[3..].contains(&listener) && ready[3..].contains(&second_listener), "{ready:?}");
    }

    #[test]
    fn a_socket_on_the_backlog_and_in_the_events_is_served_once() {
        let listener = Token(0);
        let relayed = Token(RELAY_TOKEN_BASE + 2);
        // Backlog first, then the turn's events, as the loop builds it.
        let mut ready = vec![listener, relayed, Token(RELAY_TOKEN_BASE + 9), listener, relayed];
        order_turn(&mut ready);
        assert_eq!(ready, vec![relayed, Token(RELAY_TOKEN_BASE + 9), listener]);
    }
}
