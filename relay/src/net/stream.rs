//! TURN over TCP and TLS (RFC 8656 §3.1): the client side of an allocation over a stream, for
//! networks that let no UDP out (hospital firewalls often pass only TCP 443). Relayed traffic
//! to peers stays UDP.
//!
//! Each worker has its own listeners (SO_REUSEPORT: the kernel spreads connections across
//! workers) and owns the connections it accepts, so a connection's allocation is in that
//! worker's shard and its packets take no lock, exactly as over UDP. A [`Connection`] buffers
//! what arrived until whole messages are there (framing: `codec::Framer`) and what is to be sent
//! until the socket takes it. Writes are gathered per turn: everything queued for a connection
//! during one turn of the loop leaves in one `write`, the stream counterpart of `sendmmsg`.
//! Plain `read`/`write` on rustls and mio here: unlike the UDP hot path, nothing measured asks
//! for more.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};
use teletip_mmsg::MAX_DATAGRAM;
use teletip_turn_proto::codec::{CHANNEL_DATA_HEADER_LEN, Framer, is_channel_data, stream_padding};
use teletip_turn_proto::server::{FiveTuple, Transport};
use teletip_turn_proto::time::Millis;

/// The longest message accepted from a stream: the longest datagram the relay forwards, framed
/// as ChannelData with its padding. A longer one could not be relayed over UDP anyway; it is
/// skipped and counted.
pub const MAX_FRAME: usize = MAX_DATAGRAM + CHANNEL_DATA_HEADER_LEN + 3;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read from one connection per turn before the other sockets get theirs.
const READ_BUDGET: usize = 8 * READ_CHUNK;
/// Bytes queued for a client that its connection has not taken yet. Beyond this a message to
/// it is dropped (and counted) rather than queued: media that waits behind a stalled TCP window
/// is late anyway, and a slow reader must not make the relay hold megabytes. 128 KiB is about
/// 400 ms of a 2.5 Mbit/s video call.
pub const OUTBOX_LIMIT: usize = 128 * 1024;
/// A connection that holds no allocation for this long is closed: a client that connects and
/// never allocates (or lets its allocation expire) would otherwise hold a descriptor for ever.
pub const UNALLOCATED_TIMEOUT_MS: u64 = 30_000;

/// A listening socket for TURN over TCP, or over TLS when it has a TLS configuration.
pub struct StreamListener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl StreamListener {
    /// A listener on `addr` with SO_REUSEPORT, so that every worker binds its own.
    pub fn bind(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<StreamListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // A restarted relay must not wait out TIME_WAIT connections to listen again.
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let socket = TcpListener::from_std(socket.into());
        let addr = socket.local_addr()?;
        Ok(StreamListener { socket, addr, tls })
    }

    pub fn transport(&self) -> Transport {
        if self.tls.is_some() { Transport::Tls } else { Transport::Tcp }
    }
}

/// How a connection ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it (or reset it).
    Peer,
    /// A socket error other than the client closing.
    Error,
    /// The bytes were not STUN or ChannelData: framing is lost.
    Framing,
    /// TLS failed (handshake or record layer).
    Tls,
    /// No allocation for [`UNALLOCATED_TIMEOUT_MS`].
    Unallocated,
    /// The control plane revoked the session of its allocation: its credentials are refused,
    /// so the client has nothing left to do on it.
    Revoked,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Peer,
        CloseReason::Error,
        CloseReason::Framing,
        CloseReason::Tls,
        CloseReason::Unallocated,
        CloseReason::Revoked,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer_closed",
            CloseReason::Error => "error",
            CloseReason::Framing => "framing",
            CloseReason::Tls => "tls",
            CloseReason::Unallocated => "unallocated_timeout",
            CloseReason::Revoked => "revoked",
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes are still waiting (the read budget ran out): serve this connection again.
    pub more: bool,
    /// The connection is over, once what was read has been handled.
    pub closed: Option<CloseReason>,
}

/// One client connection.
pub struct Connection {
    pub stream: TcpStream,
    pub tuple: FiveTuple,
    tls: Option<Box<rustls::ServerConnection>>,
    /// The start of a message whose rest has not arrived yet (usually empty: reads land in the
    /// worker's buffer, and only a partial message is kept here between turns, so an idle
    /// connection holds no read buffer).
    pub partial: Vec<u8>,
    pub framer: Framer,
    /// Bytes for the client that the socket has not taken yet (plaintext, under TLS).
    outbox: Vec<u8>,
    /// Plaintext handed to rustls and not yet written to the socket, about.
    tls_pending: usize,
    /// On the worker's list of connections to write at the end of the turn.
    pub dirty: bool,
    /// Since when the connection has held no allocation (checked once a second).
    pub unallocated_since: Option<Millis>,
}

impl Connection {
    pub fn new(stream: TcpStream, tuple: FiveTuple, tls: Option<&Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let tls = match tls {
            Some(config) => {
                let mut tls = rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                tls.set_buffer_limit(None);
                Some(Box::new(tls))
            }
            None => None,
        };
        Ok(Connection {
            stream,
            tuple,
            tls,
            partial: Vec::new(),
            framer: Framer::new(MAX_FRAME),
            outbox: Vec::new(),
            tls_pending: 0,
            dirty: false,
            unallocated_since: None,
        })
    }

    /// Reads what is waiting, up to the turn's budget, onto the end of `inbox` (the worker's
    /// buffer, holding this connection's partial message first).
    pub fn fill(&mut self, inbox: &mut Vec<u8>) -> ReadOutcome {
        let mut total = 0;
        while total < READ_BUDGET {
            let step = match &mut self.tls {
                None => read_plain(&mut self.stream, inbox),
                Some(tls) => read_tls(tls, &mut self.stream, inbox),
            };
            match step {
                Ok(0) => return ReadOutcome { more: false, closed: None },
                Ok(n) => total += n,
                Err(reason) => return ReadOutcome { more: false, closed: Some(reason) },
            }
        }
        ReadOutcome { more: true, closed: None }
    }

    /// Queues a message for the client, with the padding a stream needs after ChannelData.
    /// False (queuing nothing) when the client is too far behind.
    pub fn queue(&mut self, message: &[u8]) -> bool {
        let padding = if is_channel_data(message) { stream_padding(message.len()) } else { 0 };
        if self.pending() + message.len() + padding > OUTBOX_LIMIT {
            return false;
        }
        self.outbox.extend_from_slice(message);
        self.outbox.resize(self.outbox.len() + padding, 0);
        if let Some(tls) = &mut self.tls {
            // One TLS record per message: OpenSSL-based clients (coturn's uclient) lose
            // messages that share a record, with coturn's own server too.
            // rustls encrypts now and holds the record until `flush` writes it; its buffer is
            // unbounded (set in `new`), this connection's limit is `OUTBOX_LIMIT`.
            if tls.writer().write_all(&self.outbox).is_err() {
                self.outbox.clear();
                return false;
            }
            self.tls_pending += self.outbox.len();
            self.outbox.clear();
        }
        true
    }

    /// Bytes queued for the client and not yet taken by the socket (under TLS, an estimate:
    /// plaintext in, record bytes out).
    fn pending(&self) -> usize {
        self.outbox.len() + self.tls_pending
    }

    /// Whether bytes are waiting to be written (queued messages, or TLS handshake records).
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much as the socket takes; the rest waits for the socket to become writable.
    pub fn flush(&mut self) -> Result<(), CloseReason> {
        match &mut self.tls {
            None => {
                let mut sent = 0;
                while sent < self.outbox.len() {
                    match self.stream.write(&self.outbox[sent..]) {
                        Ok(0) => return Err(CloseReason::Peer),
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(close_reason(&e)),
                    }
                }
                self.outbox.drain(..sent);
            }
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(0) => return Err(CloseReason::Peer),
                        Ok(n) => self.tls_pending = self.tls_pending.saturating_sub(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(close_reason(&e)),
                    }
                }
                if !tls.wants_write() {
                    self.tls_pending = 0;
                }
            }
        }
        // Give back a burst's buffer once it has drained (idle connections stay small).
        if self.outbox.is_empty() && self.outbox.capacity() > 4 * READ_CHUNK {
            self.outbox = Vec::new();
        }
        Ok(())
    }

    /// Keeps what is left of `inbox` after the handled bytes: a partial message, for the next
    /// turn.
    pub fn keep_partial(&mut self, inbox: &[u8], handled: usize) {
        self.partial.clear();
        if handled < inbox.len() {
            self.partial.extend_from_slice(&inbox[handled..]);
        } else if self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
    }
}

fn close_reason(e: &io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => CloseReason::Peer,
        _ => CloseReason::Error,
    }
}

/// One `read` onto the end of `inbox`: the bytes read, 0 when nothing is waiting.
fn read_plain(stream: &mut TcpStream, inbox: &mut Vec<u8>) -> Result<usize, CloseReason> {
    let len = inbox.len();
    inbox.resize(len + READ_CHUNK, 0);
    let result = loop {
        match stream.read(&mut inbox[len..]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let n = *result.as_ref().unwrap_or(&0);
    inbox.truncate(len + n);
    match result {
        Ok(0) => Err(CloseReason::Peer),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(close_reason(&e)),
    }
}

/// Reads TLS records from the socket and their plaintext onto the end of `inbox`: the bytes
/// taken from the socket, 0 when nothing was waiting. The plaintext of a last read is in the
/// inbox even when the close is reported.
fn read_tls(
    tls: &mut rustls::ServerConnection,
    stream: &mut TcpStream,
    inbox: &mut Vec<u8>,
) -> Result<usize, CloseReason> {
    let taken = loop {
        match tls.read_tls(stream) {
            Ok(n) => break Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(close_reason(&e)),
        }
    };
    if let Err(e) = tls.process_new_packets() {
        tracing::debug!(error = %e, "TLS failed");
        // Tell the client why (the alert rustls queued), if the socket takes it.
        let _ = tls.write_tls(stream);
        return Err(CloseReason::Tls);
    }
    loop {
        let len = inbox.len();
        inbox.resize(len + READ_CHUNK, 0);
        let result = tls.reader().read(&mut inbox[len..]);
        inbox.truncate(len + *result.as_ref().unwrap_or(&0));
        match result {
            // The client's close_notify.
            Ok(0) => return Err(CloseReason::Peer),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(close_reason(&e)),
        }
    }
    match taken {
        Some(0) => Err(CloseReason::Peer),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}
