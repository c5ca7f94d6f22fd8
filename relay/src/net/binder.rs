//! Binding relayed sockets for the state machine: a port from the configured range, registered
//! with the worker's poller. Reservations (EVEN-PORT with R) are shared by all workers, since
//! the Allocate that redeems one may arrive from a 5-tuple that hashes to another worker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use mio::net::UdpSocket;
use rand::Rng;
use slab::Slab;
use teletip_turn_proto::server::{BindError, BindRequest, BoundRelay, Family, RelayBinder, RelayId};
use teletip_turn_proto::time::Millis;

use super::socket::{self, SocketTuning};

/// Mio tokens below this are listeners; relayed socket `i` has token `RELAY_TOKEN_BASE + i`.
pub const RELAY_TOKEN_BASE: usize = 1 << 20;
/// RFC 8656 §7.2: a reserved port is held for 30 seconds.
const RESERVATION_SECS: u64 = 30;

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
    /// Whether DF is currently set on the socket, so that it is toggled only on change.
    pub dont_fragment: bool,
}

/// Where relayed sockets go and how they are made.
#[derive(Clone)]
pub struct BinderSettings {
    pub relay_ip: IpAddr,
    pub external_ip: Option<IpAddr>,
    pub min_port: u16,
    pub max_port: u16,
    pub tuning: SocketTuning,
}

pub struct NetBinder {
    settings: BinderSettings,
    registry: mio::Registry,
    pub sockets: Slab<RelaySocket>,
    reservations: Reservations,
}

impl NetBinder {
    pub fn new(settings: BinderSettings, registry: mio::Registry, reservations: Reservations) -> Self {
        NetBinder { settings, registry, sockets: Slab::new(), reservations }
    }

    fn advertised(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.settings.external_ip.unwrap_or(self.settings.relay_ip), port)
    }

    /// Binds a free port (even if asked) from a random starting point in the range, walking
    /// the range once: random so that relayed addresses are not predictable, walking so that a
    /// nearly full range still finds the last free port.
    fn bind_free_port(
        &self,
        even: bool,
        reserve_next: bool,
        dont_fragment: bool,
    ) -> Option<(u16, std::net::UdpSocket, Option<std::net::UdpSocket>)> {
        let (min, max) = (u32::from(self.settings.min_port), u32::from(self.settings.max_port));
        let span = max - min + 1;
        let start = rand::rng().random_range(0..span);
        for step in 0..span {
            let port = (min + (start + step) % span) as u16;
            if even && port % 2 == 1 {
                continue;
            }
            if reserve_next && u32::from(port) + 1 > max {
                continue;
            }
            let addr = SocketAddr::new(self.settings.relay_ip, port);
            let Ok(socket) = socket::relay(addr, self.settings.tuning, dont_fragment) else { continue };
            if !reserve_next {
                return Some((port, socket, None));
            }
            let next = SocketAddr::new(self.settings.relay_ip, port + 1);
            if let Ok(held) = socket::relay(next, self.settings.tuning, false) {
                return Some((port, socket, Some(held)));
            }
        }
        None
    }

    fn register(&mut self, socket: std::net::UdpSocket, dont_fragment: bool) -> Result<RelayId, BindError> {
        let ipv4 = socket.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
        let mut socket = UdpSocket::from_std(socket);
        let entry = self.sockets.vacant_entry();
        let token = mio::Token(RELAY_TOKEN_BASE + entry.key());
        self.registry.register(&mut socket, token, mio::Interest::READABLE).map_err(|_| BindError::NoPorts)?;
        let id = RelayId(entry.key() as u32);
        entry.insert(RelaySocket { socket, ipv4, dont_fragment });
        Ok(id)
    }
}

impl RelayBinder for NetBinder {
    fn bind(&mut self, request: &BindRequest) -> Result<BoundRelay, BindError> {
        let family = if self.settings.relay_ip.is_ipv4() { Family::V4 } else { Family::V6 };
        if request.family != family {
            return Err(BindError::FamilyUnsupported);
        }
        if let Some(token) = request.reservation {
            let socket = self.reservations.take(token, request.now).ok_or(BindError::UnknownReservation)?;
            let port = socket.local_addr().map_err(|_| BindError::UnknownReservation)?.port();
            if request.dont_fragment {
                let _ = socket::set_dont_fragment(&socket, family == Family::V4, true);
            }
            let id = self.register(socket, request.dont_fragment)?;
            return Ok(BoundRelay { id, addr: self.advertised(port), reservation_token: None });
        }
        let (port, socket, held) = self
            .bind_free_port(request.even_port || request.reserve_next, request.reserve_next, request.dont_fragment)
            .ok_or(BindError::NoPorts)?;
        let reservation_token = held.map(|held| {
            let token = rand::rng().random::<u64>();
            self.reservations.put(token, held, request.now);
            token
        });
        let id = self.register(socket, request.dont_fragment)?;
        Ok(BoundRelay { id, addr: self.advertised(port), reservation_token })
    }

    fn release(&mut self, relay: RelayId) {
        if let Some(mut s) = self.sockets.try_remove(relay.0 as usize) {
            let _ = self.registry.deregister(&mut s.socket);
        }
    }
}
