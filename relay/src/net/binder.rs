//! Binding relayed sockets for the state machine: a port from the configured range, registered
//! with the worker's poller. Reservations (EVEN-PORT with R) are shared by all workers, since
//! the Allocate that redeems one may arrive from a 5-tuple that hashes to another worker.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use mio::net::UdpSocket;
use rand::Rng;
use slab::Slab;
use teletip_turn_proto::server::{BindError, BindRequest, BoundRelay, Family, RelayBinder, RelayId};
use teletip_turn_proto::time::Millis;

use super::socket::{self, SocketTuning};
use crate::config::RelayAddress;

/// Mio tokens below this are listeners; relayed socket `i` has token `RELAY_TOKEN_BASE + i`.
pub const RELAY_TOKEN_BASE: usize = 1 << 20;
/// RFC 8656 §7.2: a reserved port is held for 30 seconds.
const RESERVATION_SECS: u64 = 30;
/// Sockets `replenish` opens per family per turn at most, so that media waiting behind the
/// turn waits well under a millisecond (about 7 µs per socket).
const REPLENISH_BATCH: usize = 64;

struct Reservation {
    socket: std::net::UdpSocket,
    expires: Millis,
}

/// Reservations shared between workers.
#[derive(Default, Clone)]
pub struct Reservations(Arc<Mutex<HashMap<u64, Reservation>>>);

impl Reservations {
    fn take(&self, token: u64, now: Millis) -> Option<std::net::UdpSocket> {
        let mut table = self.0.lock().expect("reservation lock");
        table.retain(|_, r| r.expires > now);
        table.remove(&token).map(|r| r.socket)
    }

    fn put(&self, token: u64, socket: std::net::UdpSocket, now: Millis) {
        let mut table = self.0.lock().expect("reservation lock");
        table.retain(|_, r| r.expires > now);
        table.insert(token, Reservation { socket, expires: now.plus_secs(RESERVATION_SECS) });
    }
}

/// A relayed socket owned by a worker.
pub struct RelaySocket {
    pub socket: UdpSocket,
    pub ipv4: bool,
    pub port: u16,
    /// Whether DF is currently set on the socket, so that it is toggled only on change.
    pub dont_fragment: bool,
}

/// Where relayed sockets go and how they are made.
#[derive(Clone)]
pub struct BinderSettings {
    /// At most one per family: an Allocate of a family without one gets 440.
    pub relay_addresses: Vec<RelayAddress>,
    pub min_port: u16,
    pub max_port: u16,
    pub tuning: SocketTuning,
    /// Relayed sockets this worker keeps bound and registered, per family, while no allocation
    /// uses them.
    pub pool: usize,
    /// What the pools are filled to at start (at least `pool`): the clients of a relay that has
    /// just started come back at once. The surplus over `pool` is trimmed as after a peak.
    pub pool_at_start: usize,
    /// Up to how many released sockets are kept after a peak (at least `pool`); the surplus
    /// over `pool` is closed gradually by `trim_pool`.
    pub pool_ceiling: usize,
}

/// One family's relay address and its pool of ready sockets.
struct FamilyRelay {
    address: RelayAddress,
    /// Sockets (slab keys) ready for the next Allocate, oldest release first so that a port
    /// rests as long as possible before it relays for someone else. Measured: opening,
    /// binding, registering and later closing a socket was about half of an Allocate's cost
    /// (docs/performance.md).
    pool: VecDeque<usize>,
}

pub struct NetBinder {
    settings: BinderSettings,
    registry: mio::Registry,
    /// Every relayed socket of the worker, of both families: the allocations' and the pooled
    /// ones. A pooled socket that receives something (a late datagram for the allocation that
    /// just ended) is read and dropped by the state machine as addressed to no allocation.
    pub sockets: Slab<RelaySocket>,
    /// The relay address of each family served, indexed by `Family::index`.
    families: [Option<FamilyRelay>; 2],
    reservations: Reservations,
    /// How many sockets each family's pool is refilled to: `settings.pool` when calm, doubled
    /// (up to `settings.pool_ceiling`) whenever allocations take half of it between refills,
    /// and halved back each second without that, so that a burst finds sockets opened ahead of
    /// it between turns and a calm relay holds only its configured pool.
    wanted: usize,
    /// Whether a refill began since the last tick.
    demand_this_second: bool,
    /// Per family: a refill began and has not reached `wanted` yet.
    refilling: [bool; 2],
    /// Set when the port range or the descriptors ran out while refilling: no refill is tried
    /// again before the next tick, so that a full range is not walked every turn.
    refill_blocked: bool,
}

impl NetBinder {
    /// A binder whose pools are filled to `settings.pool_at_start` sockets per family (fewer if
    /// the port range or the descriptor limit runs out first: the rest are opened on demand, as
    /// without a pool).
    pub fn new(settings: BinderSettings, registry: mio::Registry, reservations: Reservations) -> Self {
        let mut families = [None, None];
        for &address in &settings.relay_addresses {
            let family = Family::of(&SocketAddr::new(address.ip, 0));
            families[family.index()] = Some(FamilyRelay { address, pool: VecDeque::with_capacity(settings.pool) });
        }
        let wanted = settings.pool;
        let mut binder = NetBinder {
            settings,
            registry,
            sockets: Slab::new(),
            families,
            reservations,
            wanted,
            demand_this_second: false,
            refilling: [false; 2],
            refill_blocked: false,
        };
        for family in Family::ALL {
            binder.fill_pool(family);
        }
        binder
    }

    fn fill_pool(&mut self, family: Family) {
        if self.families[family.index()].is_none() {
            // A family this relay does not serve has no pool to fill (and nothing to warn of).
            return;
        }
        let wanted = self.settings.pool_at_start.max(self.settings.pool);
        if self.open_into_pool(family, wanted) < wanted {
            tracing::warn!(
                pooled = self.pool(family).len(),
                wanted,
                family = family.label(),
                "relay socket pool not filled (port range or open-file limit): the rest open on demand"
            );
        }
    }

    /// Opens sockets into `family`'s pool until it holds `target` or no port or descriptor is
    /// left; returns how many it holds.
    fn open_into_pool(&mut self, family: Family, target: usize) -> usize {
        let Some(ip) = self.relay_ip(family) else { return 0 };
        while self.pool(family).len() < target {
            let Some((port, socket, _)) = self.bind_free_port(ip, false, false, false) else { break };
            let Ok(id) = self.register(socket, port, ip.is_ipv4(), false) else { break };
            self.pool_mut(family).push_back(id.0 as usize);
        }
        self.pool(family).len()
    }

    /// Called by the worker after each turn: a pool that allocations have taken down to half
    /// of what it is refilled to doubles that (recent demand: each half taken again doubles it
    /// again, up to the ceiling), and is refilled by at most `REPLENISH_BATCH` sockets per
    /// turn, so that the next allocations of a burst take sockets opened between turns ahead
    /// of them. Nothing happens while the pools hold half (so a pool of one never grows).
    pub fn replenish(&mut self) {
        if self.refill_blocked || self.wanted == 0 {
            return;
        }
        for family in Family::ALL {
            let index = family.index();
            let pooled = self.pool(family).len();
            if self.families[index].is_none() || (!self.refilling[index] && pooled >= self.wanted / 2) {
                continue;
            }
            if !self.refilling[index] {
                self.refilling[index] = true;
                self.demand_this_second = true;
                self.wanted = (self.wanted * 2).min(self.settings.pool_ceiling.max(self.settings.pool));
            }
            let target = self.wanted.min(pooled + REPLENISH_BATCH);
            let reached = self.open_into_pool(family, target);
            if reached < target {
                self.refill_blocked = true;
            }
            if reached >= self.wanted || self.refill_blocked {
                self.refilling[index] = false;
            }
        }
    }

    fn relay_ip(&self, family: Family) -> Option<IpAddr> {
        self.families[family.index()].as_ref().map(|f| f.address.ip)
    }

    /// The pool of a family served (an empty one for a family not served).
    fn pool(&self, family: Family) -> &VecDeque<usize> {
        static EMPTY: VecDeque<usize> = VecDeque::new();
        self.families[family.index()].as_ref().map_or(&EMPTY, |f| &f.pool)
    }

    fn pool_mut(&mut self, family: Family) -> &mut VecDeque<usize> {
        &mut self.families[family.index()].as_mut().expect("a family served").pool
    }

    /// Sockets waiting in the pools.
    pub fn pooled(&self) -> usize {
        Family::ALL.iter().map(|&f| self.pool(f).len()).sum()
    }

    /// A pooled socket of `family`, even-numbered if asked, with DF as asked and nothing
    /// queued.
    fn take_pooled(&mut self, family: Family, even: bool, dont_fragment: bool) -> Option<(RelayId, u16)> {
        let pool = self.pool(family);
        let position = if even {
            pool.iter().position(|&key| self.sockets[key].port % 2 == 0)?
        } else if pool.is_empty() {
            return None;
        } else {
            0
        };
        let key = self.pool_mut(family).remove(position)?;
        let relay = &mut self.sockets[key];
        // Whatever arrived since the worker last read this socket was meant for the previous
        // allocation: it must not reach the new one.
        drain(&relay.socket);
        if relay.dont_fragment != dont_fragment
            && socket::set_dont_fragment(&relay.socket, relay.ipv4, dont_fragment).is_ok()
        {
            relay.dont_fragment = dont_fragment;
        }
        Some((RelayId(key as u32), relay.port))
    }

    /// Closes a thirty-second (at least one) of the sockets pooled beyond `settings.pool`,
    /// called once a second. After a peak of calls, released sockets wait in the pool for the
    /// next burst: a call that begins soon after another ended takes a ready socket
    /// (docs/performance.md, optimisation 3), while the surplus halves every ~22 s, so that the
    /// descriptors and kernel memory of a peak are given back within a few minutes. The
    /// newest are closed, so that those that have rested longest are the ones handed out. A
    /// second without a refill halves what `replenish` refills to, back towards `settings.pool`.
    pub fn trim_pool(&mut self) {
        if !self.demand_this_second {
            self.wanted = (self.wanted / 2).max(self.settings.pool);
        }
        self.demand_this_second = false;
        self.refill_blocked = false;
        for family in Family::ALL {
            let surplus = self.pool(family).len().saturating_sub(self.settings.pool);
            for _ in 0..surplus.div_ceil(32) {
                if let Some(key) = self.pool_mut(family).pop_back() {
                    self.close(key);
                }
            }
        }
    }

    /// Closes every pooled socket of `family`: for an EVEN-PORT reservation that needs two
    /// adjacent free ports, which the pool may be holding.
    fn empty_pool(&mut self, family: Family) {
        while let Some(key) = self.pool_mut(family).pop_front() {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut s) = self.sockets.try_remove(key) {
            let _ = self.registry.deregister(&mut s.socket);
        }
    }

    fn advertised(&self, family: Family, port: u16) -> SocketAddr {
        let relay = self.families[family.index()].as_ref().expect("a family served");
        SocketAddr::new(relay.address.advertised, port)
    }

    /// Binds a free port (even if asked) from a random starting point in the range, walking
    /// the range once: random so that relayed addresses are not predictable, walking so that a
    /// nearly full range still finds the last free port.
    fn bind_free_port(
        &self,
        ip: IpAddr,
        even: bool,
        reserve_next: bool,
        dont_fragment: bool,
    ) -> Option<(u16, std::net::UdpSocket, Option<std::net::UdpSocket>)> {
        let (min, max) = (u32::from(self.settings.min_port), u32::from(self.settings.max_port));
        let span = max - min + 1;
        let start = rand::rng().random_range(0..span);
        if !reserve_next {
            let ports = (0..span).map(|step| (min + (start + step) % span) as u16).filter(|p| !even || p % 2 == 0);
            let (port, socket) = socket::relay_on_free_port(ip, ports, self.settings.tuning, dont_fragment)?;
            return Some((port, socket, None));
        }
        for step in 0..span {
            let port = (min + (start + step) % span) as u16;
            if even && port % 2 == 1 {
                continue;
            }
            if reserve_next && u32::from(port) + 1 > max {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            let Ok(socket) = socket::relay(addr, self.settings.tuning, dont_fragment) else { continue };
            let next = SocketAddr::new(ip, port + 1);
            if let Ok(held) = socket::relay(next, self.settings.tuning, false) {
                return Some((port, socket, Some(held)));
            }
        }
        None
    }

    /// Registers a socket bound to `port` of a relay address of the family `ipv4` says. Both are
    /// passed in rather than read back with getsockname: one syscall less per allocation that
    /// finds no pooled socket.
    fn register(
        &mut self,
        socket: std::net::UdpSocket,
        port: u16,
        ipv4: bool,
        dont_fragment: bool,
    ) -> Result<RelayId, BindError> {
        let mut socket = UdpSocket::from_std(socket);
        let entry = self.sockets.vacant_entry();
        let token = mio::Token(RELAY_TOKEN_BASE + entry.key());
        self.registry.register(&mut socket, token, mio::Interest::READABLE).map_err(|_| BindError::NoPorts)?;
        let id = RelayId(entry.key() as u32);
        entry.insert(RelaySocket { socket, ipv4, port, dont_fragment });
        Ok(id)
    }
}

impl RelayBinder for NetBinder {
    fn bind(&mut self, request: &BindRequest) -> Result<BoundRelay, BindError> {
        if let Some(token) = request.reservation {
            // The reserved port's family, whatever the request's: a reservation holds one port.
            let socket = self.reservations.take(token, request.now).ok_or(BindError::UnknownReservation)?;
            let local = socket.local_addr().map_err(|_| BindError::UnknownReservation)?;
            let family = Family::of(&local);
            if request.dont_fragment {
                let _ = socket::set_dont_fragment(&socket, family == Family::V4, true);
            }
            let id = self.register(socket, local.port(), family == Family::V4, request.dont_fragment)?;
            return Ok(BoundRelay { id, addr: self.advertised(family, local.port()), reservation_token: None });
        }
        let family = request.family;
        let ip = self.relay_ip(family).ok_or(BindError::FamilyUnsupported)?;
        if !request.reserve_next
            && let Some((id, port)) = self.take_pooled(family, request.even_port, request.dont_fragment)
        {
            return Ok(BoundRelay { id, addr: self.advertised(family, port), reservation_token: None });
        }
        let even = request.even_port || request.reserve_next;
        let fresh = self.bind_free_port(ip, even, request.reserve_next, request.dont_fragment);
        let (port, socket, held) = match fresh {
            Some(bound) => bound,
            None if !self.pool(family).is_empty() => {
                self.empty_pool(family);
                self.bind_free_port(ip, even, request.reserve_next, request.dont_fragment).ok_or(BindError::NoPorts)?
            }
            None => return Err(BindError::NoPorts),
        };
        let reservation_token = held.map(|held| {
            let token = rand::rng().random::<u64>();
            self.reservations.put(token, held, request.now);
            token
        });
        let id = self.register(socket, port, ip.is_ipv4(), request.dont_fragment)?;
        Ok(BoundRelay { id, addr: self.advertised(family, port), reservation_token })
    }

    fn release(&mut self, relay: RelayId) {
        let key = relay.0 as usize;
        let Some(socket) = self.sockets.get(key) else { return };
        let family = if socket.ipv4 { Family::V4 } else { Family::V6 };
        let ceiling = self.settings.pool_ceiling.max(self.settings.pool);
        if self.families[family.index()].is_some() && self.pool(family).len() < ceiling {
            self.pool_mut(family).push_back(key);
        } else {
            self.close(key);
        }
    }
}

/// Reads and discards whatever is queued on a non-blocking socket.
fn drain(socket: &UdpSocket) {
    let mut scratch = [0u8; 1];
    loop {
        // SAFETY: a non-blocking recv into a valid buffer on a socket we own; MSG_TRUNC makes
        // the 1-byte buffer enough for any datagram.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                scratch.as_mut_ptr().cast(),
                scratch.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return;
        }
    }
}

impl crate::xdp::mirror::BoundAddresses for NetBinder {
    /// The relayed socket's own address (relay-ip, not the advertised external-ip): the source
    /// the XDP program writes towards peers and the destination peers' datagrams arrive at.
    fn bound_addr(&self, relay: RelayId) -> Option<SocketAddr> {
        let s = self.sockets.get(relay.0 as usize)?;
        let ip = self.relay_ip(if s.ipv4 { Family::V4 } else { Family::V6 })?;
        Some(SocketAddr::new(ip, s.port))
    }
}
