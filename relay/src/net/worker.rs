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
use mio::{Events, Interest, Poll, Token, Waker};
use teletip_turn_proto::codec::CHANNEL_DATA_HEADER_LEN;
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{Action, FiveTuple, Payload, RelayId, ServerConfig, Shard, Transport};
use teletip_turn_proto::time::Millis;

use super::binder::{BinderSettings, NetBinder, RELAY_TOKEN_BASE, Reservations};
use super::memory::{MemoryReturn, trim_heap};
use super::mmsg::{BATCH, MAX_DATAGRAM, RecvBatch, SendBatch};
use super::overload::QueueDelayGuard;
use super::socket::{self, SocketTuning};
use crate::metrics::{Publisher, ShellStats};

const WAKER: Token = Token(RELAY_TOKEN_BASE - 1);
/// Room in front of a received peer datagram for the ChannelData header.
const HEADROOM: usize = CHANNEL_DATA_HEADER_LEN;

/// Everything a worker needs, prepared (and its listeners bound) before its thread starts, so
/// that a bind error stops the daemon at start rather than silently losing a worker.
pub struct WorkerSetup {
    pub index: usize,
    pub config: Arc<ServerConfig>,
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
}

impl WorkerSetup {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        listen: &[SocketAddr],
        tuning: SocketTuning,
        config: Arc<ServerConfig>,
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
        })
    }

    pub fn spawn(self) -> io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("relay-worker-{}", self.index)).spawn(move || self.run())
    }

    fn run(self) {
        let WorkerSetup {
            index,
            config,
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
            ..
        } = self;
        let registry = poll.registry().try_clone().expect("a poll registry can be cloned");
        let binder = NetBinder::new(binder, registry, reservations);
        let target_ns = max_queue_delay.as_nanos() as u64;
        let mut w = Worker {
            listener_guards: vec![QueueDelayGuard::new(target_ns, overload_grace.as_nanos() as u64); listeners.len()],
            overload_control: target_ns > 0,
            shard: Shard::new(config, quotas, binder),
            listeners,
            rx: RecvBatch::new(HEADROOM),
            out: vec![0u8; MAX_DATAGRAM + 64].into_boxed_slice(),
            to_clients: SendBatch::default(),
            to_peers: SendBatch::default(),
            shell: ShellStats::default(),
        };
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
            ready.clear();
            ready.append(&mut backlog);
            ready.extend(events.iter().map(|e| e.token()).filter(|t| *t != WAKER));
            order_turn(&mut ready);
            if !busy_poll.is_zero() && !ready.is_empty() {
                last_traffic = Instant::now();
            }
            for &token in &ready {
                let more = match token {
                    Token(t) if t < RELAY_TOKEN_BASE => w.serve_listener(now, t),
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
            if now.0 >= last_tick.0 + 1000 {
                w.shard.tick(now);
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
/// the relay bounded: a busy listener, served first from the backlog, used to make every
/// admitted datagram wait another listener turn, and near capacity the queue then held above
/// the overload target long enough to start dropping. Measured on the kernel path, 10 pairs,
/// 160 B: the highest rate with <= 1 % loss rose from 74-80 to 84-94 kpps (docs/performance.md,
/// optimisation 7); at 1.5x overload the settled p99 stayed at 3.9-4.4 ms.
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
    /// (measured: 97 % loss at 1,000 pairs).
    listener_guards: Vec<QueueDelayGuard>,
    overload_control: bool,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Worker {
    /// Reads datagrams waiting on listener `index`; true if some are left for the next turn.
    fn serve_listener(&mut self, now: Millis, index: usize) -> bool {
        let fd = self.listeners[index].0.as_raw_fd();
        let server = self.listeners[index].1;
        // Under overload, one batch per turn: the datagrams already admitted (queued on relayed
        // sockets, on the kernel path) are relayed before more are read, so what is admitted
        // is not left waiting a long turn. Measured at about 1.5x the kernel path's capacity:
        // the settled p99 fell from 11-12 ms to 4-6 ms, throughput within run-to-run noise.
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
                // could cost a call its allocation.
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
                let offset = range.start;
                self.perform(action, offset, i);
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
                self.perform(action, 0, i);
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }

    /// Queues what the state machine asked for. `Payload::Input` ranges are relative to the
    /// buffer handed to the shard, which starts `offset` bytes into receive slot `i`.
    fn perform(&mut self, action: Action, offset: usize, i: usize) {
        match action {
            Action::None => {}
            Action::ToClient { tuple, payload } => {
                let Some((socket, _)) = self.listeners.iter().find(|(_, addr)| *addr == tuple.server) else { return };
                let fd = socket.as_raw_fd();
                if self.to_clients.is_full() || self.to_clients.fd().is_some_and(|f| f != fd) {
                    flush(&mut self.to_clients, &mut self.shell);
                }
                let bytes = match payload {
                    Payload::Output(n) => &self.out[..n],
                    Payload::Input(range) => &self.rx.slot(i)[offset + range.start..offset + range.end],
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
                let bytes = &self.rx.slot(i)[offset + payload.start..offset + payload.end];
                if !self.to_peers.push(fd, peer, bytes) {
                    self.shell.send_errors += 1;
                }
            }
        }
    }

    fn flush_all(&mut self) {
        flush(&mut self.to_clients, &mut self.shell);
        flush(&mut self.to_peers, &mut self.shell);
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
