//! One worker: a thread with its own listener sockets (SO_REUSEPORT), its own relayed sockets
//! and its own shard of the state machine. Nothing on the packet path is shared with other
//! workers, so nothing on it is locked.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use teletip_turn_proto::codec::CHANNEL_DATA_HEADER_LEN;
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{Action, FiveTuple, Payload, RelayId, ServerConfig, Shard, Transport};
use teletip_turn_proto::time::Millis;

use super::binder::{BinderSettings, NetBinder, RELAY_TOKEN_BASE, Reservations};
use super::socket::{self, SocketTuning};
use crate::metrics::{Publisher, ShellStats};

const WAKER: Token = Token(RELAY_TOKEN_BASE - 1);
/// Room in front of a received peer datagram for the ChannelData header.
const HEADROOM: usize = CHANNEL_DATA_HEADER_LEN;
const MAX_UDP: usize = 65_535;

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
            ..
        } = self;
        let registry = poll.registry().try_clone().expect("a poll registry can be cloned");
        let binder = NetBinder::new(binder, registry, reservations);
        let mut w = Worker {
            shard: Shard::new(config, quotas, binder),
            listeners,
            buf: vec![0u8; HEADROOM + MAX_UDP].into_boxed_slice(),
            out: vec![0u8; MAX_UDP + 64].into_boxed_slice(),
            shell: ShellStats::default(),
        };
        let mut events = Events::with_capacity(1024);
        let mut last_tick = now();
        tracing::debug!(worker = index, "worker started");
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(250))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = index, error = %e, "poll failed");
                }
                continue;
            }
            // One clock read per wake-up: every packet of the batch shares it.
            let now = now();
            heartbeat.store(now.0, Ordering::Relaxed);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t < RELAY_TOKEN_BASE => w.drain_listener(now, t),
                    Token(t) => w.drain_relay(now, t - RELAY_TOKEN_BASE),
                }
            }
            if now.0 >= last_tick.0 + 1000 {
                w.shard.tick(now);
                publisher.publish(w.shard.stats(), &w.shell);
                last_tick = now;
            }
        }
        w.shard.clear();
        publisher.publish(w.shard.stats(), &w.shell);
        tracing::debug!(worker = index, "worker stopped");
    }
}

fn now() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

struct Worker {
    shard: Shard<NetBinder>,
    listeners: Vec<(UdpSocket, SocketAddr)>,
    /// Receive buffer with headroom for a ChannelData header in front of peer data.
    buf: Box<[u8]>,
    /// Where responses and Data indications are encoded.
    out: Box<[u8]>,
    shell: ShellStats,
}

impl Worker {
    /// Reads every datagram waiting on listener `index` (mio is edge-triggered).
    // The loop calls recvfrom once per datagram; recvmmsg batching is the next step for the
    // data plane (benches/ measures it) and replaces only this function and drain_relay.
    fn drain_listener(&mut self, now: Millis, index: usize) {
        loop {
            let (socket, server) = &self.listeners[index];
            let (n, client) = match socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.shell.recv_errors += 1;
                    return;
                }
            };
            let tuple = FiveTuple { client, server: *server, transport: Transport::Udp };
            let action = self.shard.handle_client(now, tuple, &self.buf[..n], &mut self.out);
            self.perform(action);
        }
    }

    /// Reads every datagram waiting on relayed socket `slot`.
    fn drain_relay(&mut self, now: Millis, slot: usize) {
        loop {
            let Some(relay) = self.shard.binder().sockets.get(slot) else { return };
            let (n, peer) = match relay.socket.recv_from(&mut self.buf[HEADROOM..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.shell.recv_errors += 1;
                    return;
                }
            };
            let action = self.shard.handle_peer(
                now,
                RelayId(slot as u32),
                peer,
                &mut self.buf,
                HEADROOM..HEADROOM + n,
                &mut self.out,
            );
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        let result = match action {
            Action::None => return,
            Action::ToClient { tuple, payload } => {
                let bytes = match payload {
                    Payload::Output(n) => &self.out[..n],
                    Payload::Input(range) => &self.buf[range],
                };
                match self.listeners.iter().find(|(_, addr)| *addr == tuple.server) {
                    Some((socket, _)) => socket.send_to(bytes, tuple.client),
                    None => return,
                }
            }
            Action::ToPeer { relay, peer, payload, dont_fragment } => {
                let Some(r) = self.shard.binder_mut().sockets.get_mut(relay.0 as usize) else { return };
                if r.dont_fragment != dont_fragment
                    && socket::set_dont_fragment(&r.socket, r.ipv4, dont_fragment).is_ok()
                {
                    r.dont_fragment = dont_fragment;
                }
                r.socket.send_to(&self.buf[payload], peer)
            }
        };
        match result {
            Ok(_) => {}
            // A full socket buffer means the path is overloaded: drop now rather than queue
            // (a late media packet is worse than a lost one).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.shell.send_buffer_full += 1,
            Err(_) => self.shell.send_errors += 1,
        }
    }
}
