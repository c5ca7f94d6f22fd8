//! UDP sockets as the relay wants them: large kernel buffers, SO_REUSEPORT on listeners so
//! that every worker has its own, and DSCP EF on relayed media.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// How sockets are tuned.
#[derive(Debug, Clone, Copy)]
pub struct SocketTuning {
    pub buffer: usize,
    /// DSCP code point (6 bits); 0 leaves packets unmarked.
    pub dscp: u8,
    /// Have the kernel stamp each datagram received on a listener (SO_TIMESTAMPNS), for
    /// overload control. Relayed sockets are not guarded, so they are never stamped: the
    /// stamp and its control message would be work per packet for nothing.
    pub timestamps: bool,
}

fn new_udp(addr: SocketAddr) -> io::Result<Socket> {
    // Non-blocking from the start (SOCK_NONBLOCK): one syscall less per relayed socket.
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking(), Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // One family per socket: an IPv4 peer must never reach an IPv6 relay through a mapped
        // address.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn tune(socket: &Socket, addr: SocketAddr, tuning: SocketTuning) {
    // Ask for the full size; the kernel caps it at net.core.rmem_max/wmem_max, which the
    // appliance's sysctl settings raise. Failure here only costs headroom.
    let _ = socket.set_recv_buffer_size(tuning.buffer);
    let _ = socket.set_send_buffer_size(tuning.buffer);
    if tuning.dscp != 0 {
        let tos = u32::from(tuning.dscp) << 2;
        let _ = if addr.is_ipv4() { socket.set_tos_v4(tos) } else { socket.set_tclass_v6(tos) };
    }
}

/// A listener bound with SO_REUSEPORT: each worker binds its own on the same address and the
/// kernel spreads clients across them by a hash of the 4-tuple, so a client always reaches the
/// same worker.
pub fn listener(addr: SocketAddr, tuning: SocketTuning) -> io::Result<std::net::UdpSocket> {
    let socket = new_udp(addr)?;
    socket.set_reuse_port(true)?;
    tune(&socket, addr, tuning);
    if tuning.timestamps {
        let on: libc::c_int = 1;
        // SAFETY: a plain setsockopt with an int option value on a socket we own.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A relayed socket on exactly `addr` (no SO_REUSEPORT: a relayed address is one allocation's).
pub fn relay(addr: SocketAddr, tuning: SocketTuning, dont_fragment: bool) -> io::Result<std::net::UdpSocket> {
    let socket = new_udp(addr)?;
    tune(&socket, addr, tuning);
    socket.bind(&addr.into())?;
    let socket: std::net::UdpSocket = socket.into();
    if dont_fragment {
        set_dont_fragment(&socket, addr.is_ipv4(), true)?;
    }
    Ok(socket)
}

/// A relayed socket on the first port of `ports` that is free: one socket tried on each port
/// in turn, rather than a new socket per attempt (in a busy range most attempts fail, and
/// creating and closing a socket costs more than a failed bind). `None` if none is free or no
/// socket can be opened.
pub fn relay_on_free_port(
    ip: std::net::IpAddr,
    ports: impl Iterator<Item = u16>,
    tuning: SocketTuning,
    dont_fragment: bool,
) -> Option<(u16, std::net::UdpSocket)> {
    let probe = SocketAddr::new(ip, 0);
    let socket = new_udp(probe).ok()?;
    tune(&socket, probe, tuning);
    for port in ports {
        if socket.bind(&SocketAddr::new(ip, port).into()).is_ok() {
            let socket: std::net::UdpSocket = socket.into();
            if dont_fragment && set_dont_fragment(&socket, ip.is_ipv4(), true).is_err() {
                return None;
            }
            return Some((port, socket));
        }
    }
    None
}

/// Sets or clears the DF bit for datagrams sent from `socket` (RFC 8656 DONT-FRAGMENT).
pub fn set_dont_fragment(socket: &impl std::os::fd::AsRawFd, ipv4: bool, on: bool) -> io::Result<()> {
    let (level, name, value) = if ipv4 {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, if on { libc::IP_PMTUDISC_DO } else { libc::IP_PMTUDISC_WANT })
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, i32::from(on))
    };
    // SAFETY: a plain setsockopt with an int option value on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
