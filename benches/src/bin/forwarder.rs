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

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use clap::Parser;
use teletip_benches::mmsg::{self, RecvBatch, SendBatch};

#[derive(Parser)]
#[command(name = "teletip-forwarder", about = "Raw UDP forwarder with recvmmsg/sendmmsg, 1 or 2 hops")]
struct Cli {
    /// Address of socket A (what the load generator targets).
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    hops: u8,
}

const BATCH: usize = 64;

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let a = UdpSocket::bind(cli.listen)?;
    let b = UdpSocket::bind(SocketAddr::new(cli.listen.ip(), 0))?;
    for s in [&a, &b] {
        s.set_nonblocking(true)?;
        mmsg::set_buffers(s.as_raw_fd(), 4 << 20);
    }
    let b_addr = b.local_addr()?;
    let mut routes: Vec<Option<SocketAddr>> = Vec::new();
    let mut recv = RecvBatch::new(BATCH, 2048);
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
            send.push(dest, |buf| copy(packet, buf));
        }
    }
    send.flush(a.as_raw_fd())?;
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
            send.push(dest, |buf| copy(packet, buf));
        }
    }
    send.flush(b.as_raw_fd())?;
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
