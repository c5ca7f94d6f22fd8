//! Batched UDP I/O: `recvmmsg` and `sendmmsg` over buffers allocated once, for the relay's
//! workers and for the load generator and forwarders in `benches/` (which measure the relay
//! against what the kernel can do with the same pattern).
//!
//! Hand-written on libc because the hot path justifies it (docs/performance.md, optimisation
//! 1): with one `recv_from` and one `send_to` per datagram, syscall entry and exit are a large
//! share of a core's time at media packet rates; a batch costs one of each. Nothing here
//! allocates or locks after construction.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per syscall in the relay.
pub const BATCH: usize = 32;
/// The largest datagram the relay handles: a jumbo frame. Larger ones arrive truncated
/// (MSG_TRUNC) and are dropped as receive errors; TURN over UDP on real paths stays below
/// 1500 bytes.
pub const MAX_DATAGRAM: usize = 9216;

fn zeroed<T>() -> T {
    // SAFETY: only used for the libc structs below, which are plain old data for which all
    // zero bytes is a valid value (null pointers, zero lengths).
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// Writes `addr` into `storage` in the form the kernel takes; returns its length.
pub fn to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
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
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
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

/// Receive slots. Each datagram lands `headroom` bytes into its slot, so that the relay can
/// write a ChannelData header in front of peer data without moving it.
pub struct RecvBatch {
    slot: usize,
    headroom: usize,
    max_datagram: usize,
    bufs: Box<[u8]>,
    iov: Box<[libc::iovec]>,
    hdr: Box<[libc::mmsghdr]>,
    addr: Box<[libc::sockaddr_storage]>,
    /// Ancillary data per slot: room for the SO_TIMESTAMPNS stamp (u64s for cmsghdr
    /// alignment).
    control: Box<[[u64; CONTROL_WORDS]]>,
    len: usize,
}

/// CMSG_SPACE(sizeof(struct timespec)) is 32 bytes on 64-bit Linux; some to spare.
const CONTROL_WORDS: usize = 8;

impl RecvBatch {
    /// Room for `capacity` datagrams of up to `max_datagram` bytes, each after `headroom`.
    pub fn new(capacity: usize, headroom: usize, max_datagram: usize) -> Self {
        let slot = headroom + max_datagram;
        RecvBatch {
            slot,
            headroom,
            max_datagram,
            bufs: vec![0; capacity * slot].into_boxed_slice(),
            iov: (0..capacity).map(|_| zeroed()).collect(),
            hdr: (0..capacity).map(|_| zeroed()).collect(),
            addr: (0..capacity).map(|_| zeroed()).collect(),
            control: vec![[0u64; CONTROL_WORDS]; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// Receives up to `capacity` datagrams waiting on `fd` without blocking; `Ok(0)` when none
    /// is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let capacity = self.hdr.len();
        for i in 0..capacity {
            self.iov[i].iov_base = self.bufs[i * self.slot + self.headroom..].as_mut_ptr().cast();
            self.iov[i].iov_len = self.max_datagram;
            let h = &mut self.hdr[i].msg_hdr;
            h.msg_name = (&mut self.addr[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            h.msg_flags = 0;
        }
        self.len = 0;
        loop {
            // SAFETY: every header points into buffers owned by self that outlive the call.
            let n = unsafe {
                libc::recvmmsg(fd, self.hdr.as_mut_ptr(), capacity as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if n >= 0 {
                self.len = n as usize;
                return Ok(self.len);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Datagrams of the last receive.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// When the kernel queued datagram `i` (nanoseconds since the Unix epoch), if the socket
    /// has SO_TIMESTAMPNS on.
    pub fn queued_at_ns(&self, i: usize) -> Option<u64> {
        let h = &self.hdr[i].msg_hdr;
        // SAFETY: the header and its control buffer were filled by the kernel in the last
        // recvmmsg; the CMSG macros stay within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(h);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                cmsg = libc::CMSG_NXTHDR(h, cmsg);
            }
        }
        None
    }

    /// Receive slot `i`, headroom included.
    pub fn slot(&self, i: usize) -> &[u8] {
        &self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    /// Datagram `i` of the last receive: its whole slot (headroom first), the range the
    /// datagram occupies in it, and its source. `None` for a truncated datagram or an unknown
    /// address family.
    pub fn datagram(&mut self, i: usize) -> Option<(&mut [u8], std::ops::Range<usize>, SocketAddr)> {
        if self.hdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = from_sockaddr(&self.addr[i])?;
        let len = (self.hdr[i].msg_len as usize).min(self.max_datagram);
        let slot = &mut self.bufs[i * self.slot..(i + 1) * self.slot];
        Some((slot, self.headroom..self.headroom + len, from))
    }

    /// Datagram `i` of the last receive, cut to `max_datagram` when it was longer.
    pub fn packet(&self, i: usize) -> &[u8] {
        let n = (self.hdr[i].msg_len as usize).min(self.max_datagram);
        &self.bufs[i * self.slot + self.headroom..i * self.slot + self.headroom + n]
    }

    /// The source of datagram `i` of the last receive.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        from_sockaddr(&self.addr[i])
    }
}

/// Why a queued datagram was not sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// The socket's send buffer was full (dropped rather than queued: a late media packet is
    /// worse than a lost one).
    pub buffer_full: u64,
    pub errors: u64,
}

/// Datagrams queued for one socket, sent with one `sendmmsg`.
pub struct SendBatch {
    fd: Option<RawFd>,
    max_datagram: usize,
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    dest: Box<[libc::sockaddr_storage]>,
    dest_len: Box<[libc::socklen_t]>,
    iov: Box<[libc::iovec]>,
    hdr: Box<[libc::mmsghdr]>,
    len: usize,
}

/// The relay's batch: [`BATCH`] datagrams of up to [`MAX_DATAGRAM`] bytes.
impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new(BATCH, MAX_DATAGRAM)
    }
}

impl SendBatch {
    /// Room for `capacity` datagrams of up to `max_datagram` bytes.
    pub fn new(capacity: usize, max_datagram: usize) -> Self {
        SendBatch {
            fd: None,
            max_datagram,
            bufs: vec![0; capacity * max_datagram].into_boxed_slice(),
            lens: vec![0; capacity].into_boxed_slice(),
            dest: (0..capacity).map(|_| zeroed()).collect(),
            dest_len: vec![0; capacity].into_boxed_slice(),
            iov: (0..capacity).map(|_| zeroed()).collect(),
            hdr: (0..capacity).map(|_| zeroed()).collect(),
            len: 0,
        }
    }

    /// The socket the queued datagrams go out of.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.filter(|_| self.len > 0)
    }

    /// Queues a copy of `bytes` to `dest` from `fd`. The caller flushes first when the batch
    /// is full or belongs to another socket. Returns false (queuing nothing) for a datagram
    /// over `max_datagram` or a full batch.
    pub fn push(&mut self, fd: RawFd, dest: SocketAddr, bytes: &[u8]) -> bool {
        debug_assert!(self.fd().is_none_or(|f| f == fd));
        if bytes.len() > self.max_datagram {
            return false;
        }
        let queued = self.push_with(dest, |slot| {
            slot[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        });
        if queued {
            self.fd = Some(fd);
        }
        queued
    }

    /// Queues a datagram to `dest` whose bytes `fill` writes into its slot, returning their
    /// length (cut to `max_datagram`). Returns false (queuing nothing) when the batch is full.
    pub fn push_with(&mut self, dest: SocketAddr, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.len;
        let slot = &mut self.bufs[i * self.max_datagram..(i + 1) * self.max_datagram];
        self.lens[i] = fill(slot).min(self.max_datagram);
        self.dest_len[i] = to_sockaddr(dest, &mut self.dest[i]);
        self.len += 1;
        true
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

    /// Sends everything queued from the socket given to [`push`](Self::push). A datagram the
    /// kernel refuses is counted and skipped, as a failed `send_to` of it alone would be; the
    /// rest still go.
    pub fn flush(&mut self) -> SendOutcome {
        match self.fd() {
            Some(fd) => self.send(fd).0,
            None => {
                self.len = 0;
                SendOutcome::default()
            }
        }
    }

    /// Sends everything queued from `fd` and returns how many datagrams the kernel took; the
    /// rest of a full send buffer is dropped, as a media sender would. A refused port
    /// (ECONNREFUSED, how loopback reports an earlier datagram to a closed port) skips one
    /// datagram; any other error is returned once the rest have been tried.
    pub fn flush_to(&mut self, fd: RawFd) -> io::Result<usize> {
        let queued = self.len as u64;
        match self.send(fd) {
            (_, Some(e)) => Err(e),
            (outcome, None) => Ok((queued - outcome.buffer_full - outcome.errors) as usize),
        }
    }

    /// Sends what is queued; also returns the first error other than a full buffer or a
    /// refused port.
    fn send(&mut self, fd: RawFd) -> (SendOutcome, Option<io::Error>) {
        let (mut outcome, mut failure) = (SendOutcome::default(), None);
        for i in 0..self.len {
            self.iov[i].iov_base = self.bufs[i * self.max_datagram..].as_mut_ptr().cast();
            self.iov[i].iov_len = self.lens[i];
            let h = &mut self.hdr[i].msg_hdr;
            h.msg_name = (&mut self.dest[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.dest_len[i];
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < self.len {
            // SAFETY: headers sent..len point into buffers owned by self.
            let n = unsafe {
                libc::sendmmsg(fd, self.hdr[sent..].as_mut_ptr(), (self.len - sent) as u32, libc::MSG_DONTWAIT)
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    outcome.buffer_full += (self.len - sent) as u64;
                    break;
                }
                kind => {
                    if kind != io::ErrorKind::ConnectionRefused && failure.is_none() {
                        failure = Some(e);
                    }
                    outcome.errors += 1;
                    sent += 1;
                }
            }
        }
        self.len = 0;
        (outcome, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_through_loopback_and_lands_after_the_headroom() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = SendBatch::default();
        for i in 0..5u8 {
            assert!(s.push(tx.as_raw_fd(), rx.local_addr().unwrap(), &[i, i]));
        }
        assert_eq!(s.flush(), SendOutcome::default());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut r = RecvBatch::new(BATCH, 4, MAX_DATAGRAM);
        assert_eq!(r.recv(rx.as_raw_fd()).unwrap(), 5);
        let (slot, range, from) = r.datagram(3).unwrap();
        assert_eq!(range, 4..6);
        assert_eq!(&slot[range], &[3, 3]);
        assert_eq!(from, tx.local_addr().unwrap());
        assert_eq!(r.recv(rx.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn sockaddr_round_trips() {
        for a in ["127.0.0.1:3478", "[2001:db8::1]:5000"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut s = zeroed();
            to_sockaddr(a, &mut s);
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }

    #[test]
    fn batches_go_through_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = SendBatch::new(8, 64);
        for i in 0..5u8 {
            assert!(s.push_with(rx.local_addr().unwrap(), |b| {
                b[0] = i;
                1
            }));
        }
        assert_eq!(s.flush_to(tx.as_raw_fd()).unwrap(), 5);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut r = RecvBatch::new(8, 0, 64);
        assert_eq!(r.recv(rx.as_raw_fd()).unwrap(), 5);
        assert_eq!(r.packet(3), &[3]);
        assert_eq!(r.source(0), Some(tx.local_addr().unwrap()));
    }
}
