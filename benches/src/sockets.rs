//! Process and socket setup for the load generator and the forwarders. Their batched I/O is
//! the relay's own (`teletip-mmsg`).

use std::mem::MaybeUninit;
use std::os::fd::RawFd;

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
