//! A TURN client that speaks only the wire protocol, over UDP, TCP or TLS, and a pipelined
//! transaction engine that drives thousands of them at once (a window of requests in flight,
//! retransmission on timeout over UDP, the 401/438 challenge answered transparently).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use teletip_turn_proto::codec::{self, Class, IntegrityKey, IntegrityKind, Message, MessageWriter, Method, attr};
use teletip_turn_proto::credentials::{PasswordAlgorithm, issue, long_term_key};

use crate::transport::Link;

/// The first channel number a client binds (RFC 8656 §12).
pub const FIRST_CHANNEL: u16 = 0x4000;
const RETRANSMIT: Duration = Duration::from_millis(500);
const MAX_TRIES: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{method} refused with {code}")]
    Refused { method: &'static str, code: u16 },
    #[error("{method}: no answer after {tries} tries")]
    Timeout { method: &'static str, tries: u32 },
    #[error("{method}: malformed answer")]
    Malformed { method: &'static str },
    #[error("{method}: the server closed the connection")]
    Closed { method: &'static str },
    #[error("{method}: {source}")]
    Framing { method: &'static str, source: codec::FramingError },
}

/// One request a client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Allocate,
    CreatePermission(SocketAddr),
    ChannelBind(u16, SocketAddr),
    /// Refresh with this LIFETIME (0 deletes the allocation).
    Refresh(u32),
}

impl Request {
    fn method(self) -> Method {
        match self {
            Request::Allocate => Method::ALLOCATE,
            Request::CreatePermission(_) => Method::CREATE_PERMISSION,
            Request::ChannelBind(..) => Method::CHANNEL_BIND,
            Request::Refresh(_) => Method::REFRESH,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Request::Allocate => "Allocate",
            Request::CreatePermission(_) => "CreatePermission",
            Request::ChannelBind(..) => "ChannelBind",
            Request::Refresh(_) => "Refresh",
        }
    }
}

struct Pending {
    request: Request,
    txid: codec::TransactionId,
    packet: Vec<u8>,
    sent: Instant,
    tries: u32,
}

/// A TURN client on its own UDP socket or connection (its own 5-tuple) with REST credentials.
pub struct Client {
    pub link: Link,
    pub local: SocketAddr,
    pub server: SocketAddr,
    username: String,
    password: String,
    realm: Option<String>,
    nonce: Option<Vec<u8>>,
    key: Option<IntegrityKey>,
    /// The relayed transport address once allocated.
    pub relayed: Option<SocketAddr>,
    txid_counter: u64,
    pending: Option<Pending>,
}

impl Client {
    /// A client of `server` on `link` (see `transport::Dialer`) with credentials for session
    /// `id` valid for `ttl_secs` under `secret`.
    pub fn new(server: SocketAddr, link: Link, secret: &str, id: &str, ttl_secs: u64) -> Result<Client, TurnError> {
        let local = link.local_addr()?;
        let expiry =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + ttl_secs;
        let (username, password) = issue(secret.as_bytes(), id, expiry);
        Ok(Client {
            link,
            local,
            server,
            username,
            password,
            realm: None,
            nonce: None,
            key: None,
            relayed: None,
            txid_counter: u64::from(local.port()) << 32,
            pending: None,
        })
    }

    fn next_txid(&mut self) -> codec::TransactionId {
        self.txid_counter += 1;
        let mut t = [0x42u8; 12];
        t[4..].copy_from_slice(&self.txid_counter.to_be_bytes());
        t
    }

    /// Encodes `request`, signed when the server's realm and nonce are known.
    fn build(&mut self, request: Request) -> (codec::TransactionId, Vec<u8>) {
        let txid = self.next_txid();
        let mut buf = vec![0u8; 512];
        let n = {
            let mut w =
                MessageWriter::new(&mut buf, request.method(), Class::Request, txid).expect("512 bytes hold a header");
            let body = |w: &mut MessageWriter<'_>| -> Result<(), codec::EncodeError> {
                match request {
                    Request::Allocate => {
                        w.bytes(attr::REQUESTED_TRANSPORT, &[codec::TRANSPORT_UDP, 0, 0, 0])?;
                    }
                    Request::CreatePermission(peer) => {
                        w.xor_address(attr::XOR_PEER_ADDRESS, peer)?;
                    }
                    Request::ChannelBind(number, peer) => {
                        w.bytes(attr::CHANNEL_NUMBER, &[(number >> 8) as u8, number as u8, 0, 0])?;
                        w.xor_address(attr::XOR_PEER_ADDRESS, peer)?;
                    }
                    Request::Refresh(lifetime) => {
                        w.u32(attr::LIFETIME, lifetime)?;
                    }
                }
                Ok(())
            };
            body(&mut w).expect("requests fit in 512 bytes");
            if let (Some(realm), Some(nonce), Some(key)) = (&self.realm, &self.nonce, &self.key) {
                w.bytes(attr::USERNAME, self.username.as_bytes()).expect("fits");
                w.bytes(attr::REALM, realm.as_bytes()).expect("fits");
                w.bytes(attr::NONCE, nonce).expect("fits");
                w.integrity(IntegrityKind::Sha1, key).expect("fits");
            }
            w.finish_with_fingerprint().expect("fits")
        };
        buf.truncate(n);
        (txid, buf)
    }

    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        match &mut self.link {
            Link::Udp(socket) => socket.send_to(packet, self.server).map(drop),
            Link::Stream(conn) => conn.send(packet),
        }
    }

    fn start(&mut self, request: Request) -> Result<(), TurnError> {
        let (txid, packet) = self.build(request);
        self.send(&packet)?;
        self.pending = Some(Pending { request, txid, packet, sent: Instant::now(), tries: 1 });
        Ok(())
    }

    /// Handles one datagram; `Ok(true)` when the pending transaction is finished.
    fn on_datagram(&mut self, bytes: &[u8]) -> Result<bool, TurnError> {
        let Some(p) = &self.pending else { return Ok(false) };
        let request = p.request;
        let name = request.name();
        let Ok(msg) = Message::decode(bytes) else { return Ok(false) };
        if msg.transaction_id() != p.txid || msg.method() != request.method() {
            return Ok(false);
        }
        match msg.class() {
            Class::Success => {
                if request == Request::Allocate {
                    let relayed = msg
                        .get(attr::XOR_RELAYED_ADDRESS)
                        .and_then(|v| codec::decode_xor_address(v, &msg.transaction_id()))
                        .ok_or(TurnError::Malformed { method: name })?;
                    self.relayed = Some(relayed);
                }
                self.pending = None;
                Ok(true)
            }
            Class::Error => {
                let code = msg
                    .get(attr::ERROR_CODE)
                    .filter(|v| v.len() >= 4)
                    .map(|v| u16::from(v[2] & 7) * 100 + u16::from(v[3]));
                let code = code.ok_or(TurnError::Malformed { method: name })?;
                let retry = (code == 401 && self.key.is_none()) || code == 438;
                if !retry {
                    self.pending = None;
                    return Err(TurnError::Refused { method: name, code });
                }
                let realm = msg.text(attr::REALM).map(str::to_owned).or_else(|| self.realm.clone());
                let nonce = msg.get(attr::NONCE).map(<[u8]>::to_vec);
                let (Some(realm), Some(nonce)) = (realm, nonce) else {
                    return Err(TurnError::Malformed { method: name });
                };
                self.key = Some(long_term_key(PasswordAlgorithm::Md5, &self.username, &realm, &self.password));
                self.realm = Some(realm);
                self.nonce = Some(nonce);
                self.start(request)?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Reads what arrived for this client; `Ok(true)` when its pending transaction finished.
    fn receive(&mut self, buf: &mut [u8]) -> Result<bool, TurnError> {
        let messages = match &mut self.link {
            Link::Udp(socket) => {
                let mut messages = Vec::new();
                while let Ok((n, _)) = socket.recv_from(buf) {
                    messages.push(buf[..n].to_vec());
                }
                messages
            }
            Link::Stream(conn) => {
                let method = self.pending.as_ref().map_or("-", |p| p.request.name());
                let open = conn.fill()?;
                let mut messages = Vec::new();
                conn.frames(|m| messages.push(m.to_vec())).map_err(|source| TurnError::Framing { method, source })?;
                if !open && messages.is_empty() {
                    return Err(TurnError::Closed { method });
                }
                messages
            }
        };
        for m in messages {
            if self.on_datagram(&m)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn retransmit_if_due(&mut self, now: Instant) -> Result<(), TurnError> {
        let reliable = matches!(self.link, Link::Stream(_));
        let Some(p) = &mut self.pending else { return Ok(()) };
        if now.duration_since(p.sent) < RETRANSMIT {
            return Ok(());
        }
        if p.tries >= MAX_TRIES {
            let (method, tries) = (p.request.name(), p.tries);
            self.pending = None;
            return Err(TurnError::Timeout { method, tries });
        }
        p.tries += 1;
        p.sent = now;
        // A stream delivers or fails: only the timeout counts there (RFC 8489 §6.2.2).
        if !reliable {
            let packet = p.packet.clone();
            self.send(&packet)?;
        }
        Ok(())
    }
}

/// Runs one transaction per listed client, at most `window` in flight, and calls `tick` about
/// every 10 ms (the allocation-rate mode samples the server's memory there). Stops at the first
/// failure. Readiness comes from epoll, so that a wide window costs nothing per wake-up.
pub fn run_transactions(
    clients: &mut [Client],
    jobs: &[(usize, Request)],
    window: usize,
    tick: &mut dyn FnMut(),
) -> Result<(), TurnError> {
    let epoll = Epoll::new()?;
    let window = window.max(1);
    let mut next = 0;
    let mut in_flight: Vec<usize> = Vec::with_capacity(window);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 2048];
    let mut last_scan = Instant::now();
    while next < jobs.len() || !in_flight.is_empty() {
        while in_flight.len() < window && next < jobs.len() {
            let (i, request) = jobs[next];
            clients[i].start(request)?;
            epoll.add(clients[i].link.as_raw_fd(), i as u64)?;
            in_flight.push(i);
            next += 1;
        }
        let ready = epoll.wait(&mut events, 10)?;
        for ev in &events[..ready] {
            let i = ev.u64 as usize;
            if clients[i].receive(&mut buf)? {
                epoll.remove(clients[i].link.as_raw_fd())?;
                if let Some(k) = in_flight.iter().position(|&j| j == i) {
                    in_flight.swap_remove(k);
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= Duration::from_millis(10) {
            for &i in &in_flight {
                clients[i].retransmit_if_due(now)?;
            }
            tick();
            last_scan = now;
        }
    }
    Ok(())
}

/// A level-triggered epoll instance over client sockets.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(Epoll(fd)) }
    }

    fn add(&self, fd: RawFd, data: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
        // SAFETY: registering a socket the caller owns.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self, fd: RawFd) -> std::io::Result<()> {
        // SAFETY: deregistering; the event argument is ignored for EPOLL_CTL_DEL.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> std::io::Result<usize> {
        // SAFETY: events is a valid buffer for the call.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: closing the epoll descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}
