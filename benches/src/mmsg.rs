//! Batched UDP I/O with `recvmmsg`/`sendmmsg`: one syscall for up to a batch of datagrams.
//!
//! Hand-written on libc because the load generator must not be the bottleneck it measures:
//! at several hundred thousand packets per second the per-datagram syscall entry of
//! `recv_from`/`send_to` is a measurable share of the generator's core, and the forwarders use
//! the same pattern so that they stand for what the kernel can do with it.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// A socket address in the form the kernel takes.
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The address the kernel wrote, if it is IPv4 or IPv6.
pub fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), 0, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Preallocated buffers for receiving up to `capacity` datagrams in one `recvmmsg`.
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    addr: Vec<libc::sockaddr_storage>,
    len: usize,
}

impl RecvBatch {
    pub fn new(capacity: usize, slot: usize) -> Self {
        // SAFETY: the libc structs are plain old data; zeroed is valid, pointers are set per call.
        let zero_iov: libc::iovec = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_hdr: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            slot,
            bufs: vec![0; capacity * slot],
            iov: vec![zero_iov; capacity],
            hdr: vec![zero_hdr; capacity],
            addr: vec![zero_addr; capacity],
            len: 0,
        }
    }

    /// Receives what is waiting on `fd` without blocking; `Ok(0)` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let capacity = self.hdr.len();
        for i in 0..capacity {
            self.iov[i].iov_base = self.bufs[i * self.slot..].as_mut_ptr().cast();
            self.iov[i].iov_len = self.slot;
            let h = &mut self.hdr[i].msg_hdr;
            h.msg_name = (&mut self.addr[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: every header points into buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(fd, self.hdr.as_mut_ptr(), capacity as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            self.len = 0;
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
        }
        self.len = n as usize;
        Ok(self.len)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagram `i` of the last receive.
    pub fn packet(&self, i: usize) -> &[u8] {
        let n = (self.hdr[i].msg_len as usize).min(self.slot);
        &self.bufs[i * self.slot..i * self.slot + n]
    }

    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        from_sockaddr(&self.addr[i])
    }
}

/// Datagrams queued for one `sendmmsg`, each with its own destination.
pub struct SendBatch {
    slot: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    dest: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    len: usize,
}

impl SendBatch {
    pub fn new(capacity: usize, slot: usize) -> Self {
        // SAFETY: plain old data, see RecvBatch::new.
        let zero_iov: libc::iovec = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_hdr: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        SendBatch {
            slot,
            bufs: vec![0; capacity * slot],
            lens: vec![0; capacity],
            dest: vec![to_sockaddr(SocketAddr::from(([0, 0, 0, 0], 0))); capacity],
            iov: vec![zero_iov; capacity],
            hdr: vec![zero_hdr; capacity],
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a datagram to `dest` whose bytes `fill` writes into the slot, returning their
    /// length. Returns false (and queues nothing) when the batch is full.
    pub fn push(&mut self, dest: SocketAddr, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.len;
        let n = fill(&mut self.bufs[i * self.slot..(i + 1) * self.slot]);
        self.lens[i] = n.min(self.slot);
        self.dest[i] = to_sockaddr(dest);
        self.len += 1;
        true
    }

    /// Sends everything queued from `fd`. Returns how many datagrams the kernel took; the rest
    /// (a full send buffer) are dropped, as a media sender would.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut sent = 0;
        for i in 0..self.len {
            self.iov[i].iov_base = self.bufs[i * self.slot..].as_mut_ptr().cast();
            self.iov[i].iov_len = self.lens[i];
            let h = &mut self.hdr[i].msg_hdr;
            h.msg_name = (&mut self.dest[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.dest[i].1;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        while sent < self.len {
            // SAFETY: headers sent..len point into buffers owned by self.
            let n = unsafe {
                libc::sendmmsg(fd, self.hdr[sent..].as_mut_ptr(), (self.len - sent) as u32, libc::MSG_DONTWAIT)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    // Loopback answers an unreachable port with ECONNREFUSED on the next send
                    // of an unconnected socket; skip the datagram that drew it.
                    io::ErrorKind::ConnectionRefused => {
                        sent += 1;
                        continue;
                    }
                    _ => {
                        self.len = 0;
                        return Err(e);
                    }
                }
            }
            sent += n as usize;
        }
        self.len = 0;
        Ok(sent)
    }
}

/// Sets SO_RCVBUF and SO_SNDBUF (the kernel caps them at rmem_max/wmem_max).
pub fn set_buffers(fd: RawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt with an int value on a socket the caller owns.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Raises the open-file limit to its hard maximum: thousands of allocations need thousands of
/// client sockets.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut r: libc::rlimit = MaybeUninit::zeroed().assume_init();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        r.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sockaddr_round_trips() {
        for a in ["127.0.0.1:3478", "[::1]:5000"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(from_sockaddr(&to_sockaddr(a).0), Some(a));
        }
    }

    #[test]
    fn batches_go_through_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = SendBatch::new(8, 64);
        for i in 0..5u8 {
            assert!(s.push(rx.local_addr().unwrap(), |b| {
                b[0] = i;
                1
            }));
        }
        assert_eq!(s.flush(tx.as_raw_fd()).unwrap(), 5);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut r = RecvBatch::new(8, 64);
        assert_eq!(r.recv(rx.as_raw_fd()).unwrap(), 5);
        assert_eq!(r.packet(3), &[3]);
        assert_eq!(r.source(0), Some(tx.local_addr().unwrap()));
    }
}
