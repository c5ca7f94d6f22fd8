//! teletip-forwarder: the kernel's limit for a relay's syscall pattern, without TURN.
//!
//! Protocol with the load generator: B of pair `p` sends `REG` + p (u32, big-endian) and gets
//! the same bytes back; every other datagram starts with the probe, whose first four bytes are
//! the pair number, and goes to that pair's B.
//!
//! - `--hops 1`: client -> socket A -> client B (one recvmmsg and one sendmmsg per batch), what
//!   a relay that delivers allocation to allocation in memory does.
//! - `--hops 2`: client -> socket A -> socket B over loopback -> client B (two receives and two
//!   sends per packet), what a relay that sends from one relayed socket to another does.
//! - `--hops 2 --socket-per-pair`: the same two hops, but each pair has its own two "relayed"
//!   sockets, as a TURN relay must (every allocation has its own relayed transport address):
//!   client -> socket A -> pair's socket X -> pair's socket Y (epoll, recvmmsg) -> socket A ->
//!   client B. Sends on the first hop can only be batched per socket, receives on the second
//!   are one `recvmmsg` per ready socket: the kernel's limit for an RFC 8656 relay built on
//!   the socket API, where plain `--hops 2` shares one socket per hop between all pairs.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use clap::Parser;
use teletip_benches::sockets;
use teletip_mmsg::{RecvBatch, SendBatch};

#[derive(Parser)]
#[command(name = "teletip-forwarder", about = "Raw UDP forwarder with recvmmsg/sendmmsg, 1 or 2 hops")]
struct Cli {
    /// Address of socket A (what the load generator targets).
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    hops: u8,
    /// With `--hops 2`: two sockets per pair instead of one per hop (see the module docs).
    #[arg(long)]
    socket_per_pair: bool,
}

const BATCH: usize = 64;

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let a = UdpSocket::bind(cli.listen)?;
    let b = UdpSocket::bind(SocketAddr::new(cli.listen.ip(), 0))?;
    for s in [&a, &b] {
        s.set_nonblocking(true)?;
        sockets::set_buffers(s.as_raw_fd(), 4 << 20);
    }
    if cli.socket_per_pair {
        eprintln!("forwarder: 2 hops with two sockets per pair on {}", cli.listen);
        return per_pair::run(a);
    }
    let b_addr = b.local_addr()?;
    let mut routes: Vec<Option<SocketAddr>> = Vec::new();
    let mut recv = RecvBatch::new(BATCH, 0, 2048);
    let mut send = SendBatch::new(BATCH, 2048);
    let mut fds = [
        libc::pollfd { fd: a.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    let polled = if cli.hops == 2 { 2 } else { 1 };
    eprintln!("forwarder: {} hop(s) on {}", cli.hops, cli.listen);
    loop {
        // SAFETY: fds is a valid pollfd array for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), polled, 1000) };
        // One batch from each socket in turn until both are empty: draining one socket to
        // the end first would starve the other under overload.
        loop {
            let from_a = first_hop(&a, &mut recv, &mut send, &mut routes, cli.hops, b_addr)?;
            let from_b = if cli.hops == 2 { second_hop(&b, &mut recv, &mut send, &routes)? } else { 0 };
            if from_a < BATCH && from_b < BATCH {
                break;
            }
        }
    }
}

/// Socket A: registrations, and data from A clients (to B's client, or to socket B).
fn first_hop(
    a: &UdpSocket,
    recv: &mut RecvBatch,
    send: &mut SendBatch,
    routes: &mut Vec<Option<SocketAddr>>,
    hops: u8,
    b_addr: SocketAddr,
) -> std::io::Result<usize> {
    let n = recv.recv(a.as_raw_fd())?;
    for i in 0..n {
        let packet = recv.packet(i);
        let Some(src) = recv.source(i) else { continue };
        if packet.len() == 7 && &packet[..3] == b"REG" {
            let p = u32::from_be_bytes([packet[3], packet[4], packet[5], packet[6]]) as usize;
            if routes.len() <= p {
                routes.resize(p + 1, None);
            }
            routes[p] = Some(src);
            let _ = a.send_to(packet, src);
            continue;
        }
        let dest = if hops == 2 { Some(b_addr) } else { route(routes, packet) };
        if let Some(dest) = dest {
            send.push_with(dest, |buf| copy(packet, buf));
        }
    }
    send.flush_to(a.as_raw_fd())?;
    Ok(n)
}

/// Socket B: the second hop, on to the pair's B client.
fn second_hop(
    b: &UdpSocket,
    recv: &mut RecvBatch,
    send: &mut SendBatch,
    routes: &[Option<SocketAddr>],
) -> std::io::Result<usize> {
    let n = recv.recv(b.as_raw_fd())?;
    for i in 0..n {
        let packet = recv.packet(i);
        if let Some(dest) = route(routes, packet) {
            send.push_with(dest, |buf| copy(packet, buf));
        }
    }
    send.flush_to(b.as_raw_fd())?;
    Ok(n)
}

fn route(routes: &[Option<SocketAddr>], packet: &[u8]) -> Option<SocketAddr> {
    let p = u32::from_be_bytes(packet.get(..4)?.try_into().ok()?) as usize;
    routes.get(p).copied().flatten()
}

fn copy(packet: &[u8], buf: &mut [u8]) -> usize {
    buf[..packet.len()].copy_from_slice(packet);
    packet.len()
}

/// `--hops 2 --socket-per-pair`: an epoll loop shaped like a relay worker's.
mod per_pair {
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use teletip_benches::sockets;
    use teletip_mmsg::{RecvBatch, SendBatch};

    use super::{BATCH, copy};

    const LISTENER: u64 = u64::MAX;

    struct Pair {
        client_b: SocketAddr,
        /// Sends the pair's first hop (the caller's relayed socket).
        x: UdpSocket,
        /// Receives it (the callee's relayed socket), registered with epoll.
        y: UdpSocket,
        y_addr: SocketAddr,
    }

    pub fn run(a: UdpSocket) -> std::io::Result<()> {
        sockets::raise_nofile_limit();
        // SAFETY: plain epoll calls on descriptors we own.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        add(epoll, a.as_raw_fd(), LISTENER)?;
        let mut pairs: Vec<Option<Pair>> = Vec::new();
        let mut recv = RecvBatch::new(BATCH, 0, 2048);
        let mut to_peer = SendBatch::new(BATCH, 2048);
        let mut to_clients = SendBatch::new(BATCH, 2048);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        loop {
            // SAFETY: events is a valid buffer of its length.
            let ready = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 1000) };
            for e in events.iter().take(ready.max(0) as usize) {
                if e.u64 == LISTENER {
                    // A batch from the clients: registrations, and data sent on from the
                    // pair's X socket to its Y socket (consecutive packets of one pair share
                    // a sendmmsg, as in the relay).
                    let n = recv.recv(a.as_raw_fd())?;
                    let mut from: Option<usize> = None;
                    for i in 0..n {
                        let packet = recv.packet(i);
                        let Some(src) = recv.source(i) else { continue };
                        if packet.len() == 7 && &packet[..3] == b"REG" {
                            let p = u32::from_be_bytes([packet[3], packet[4], packet[5], packet[6]]) as usize;
                            register(epoll, &mut pairs, p, src)?;
                            let _ = a.send_to(packet, src);
                            continue;
                        }
                        let Some(p) = pair_of(packet) else { continue };
                        let Some(Some(pair)) = pairs.get(p) else { continue };
                        if from.is_some_and(|f| f != p) || to_peer.is_full() {
                            flush_from(&pairs, from, &mut to_peer)?;
                        }
                        to_peer.push_with(pair.y_addr, |buf| copy(packet, buf));
                        from = Some(p);
                    }
                    flush_from(&pairs, from, &mut to_peer)?;
                } else if let Some(Some(pair)) = pairs.get(e.u64 as usize) {
                    let n = recv.recv(pair.y.as_raw_fd())?;
                    for i in 0..n {
                        if to_clients.is_full() {
                            to_clients.flush_to(a.as_raw_fd())?;
                        }
                        let packet = recv.packet(i);
                        to_clients.push_with(pair.client_b, |buf| copy(packet, buf));
                    }
                }
            }
            // Everything for the clients leaves through socket A: one batch per turn.
            to_clients.flush_to(a.as_raw_fd())?;
        }
    }

    fn pair_of(packet: &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(packet.get(..4)?.try_into().ok()?) as usize)
    }

    fn flush_from(pairs: &[Option<Pair>], from: Option<usize>, batch: &mut SendBatch) -> std::io::Result<()> {
        if let Some(Some(pair)) = from.and_then(|p| pairs.get(p)) {
            batch.flush_to(pair.x.as_raw_fd())?;
        }
        Ok(())
    }

    fn register(epoll: i32, pairs: &mut Vec<Option<Pair>>, p: usize, client_b: SocketAddr) -> std::io::Result<()> {
        if pairs.len() <= p {
            pairs.resize_with(p + 1, || None);
        }
        if let Some(pair) = pairs[p].as_mut() {
            pair.client_b = client_b;
            return Ok(());
        }
        let ip = SocketAddr::new(client_b.ip(), 0);
        let (x, y) = (UdpSocket::bind(ip)?, UdpSocket::bind(ip)?);
        for s in [&x, &y] {
            s.set_nonblocking(true)?;
            sockets::set_buffers(s.as_raw_fd(), 4 << 20);
        }
        add(epoll, y.as_raw_fd(), p as u64)?;
        let y_addr = y.local_addr()?;
        pairs[p] = Some(Pair { client_b, x, y, y_addr });
        Ok(())
    }

    fn add(epoll: i32, fd: i32, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: a valid epoll descriptor, socket and event.
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
