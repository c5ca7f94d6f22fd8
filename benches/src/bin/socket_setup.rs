//! What opening a relayed socket costs, step by step, in a tight loop: `socket`, the two buffer
//! `setsockopt`s, `bind`, `epoll_ctl(ADD)`, and later `close`, as `teletip-relay` does for an
//! Allocate that finds no pooled socket (relay/src/net/socket.rs, binder.rs), with `dscp 0` as
//! benches/compare runs it (a DSCP mark adds a third `setsockopt`). docs/performance.md reads the
//! relay's cost per such Allocate against this ("What an Allocate without a pooled socket costs").
//!
//!     taskset -c 1 benches/target/release/socket_setup --count 10000

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Sockets to open (each on its own port from --first-port up).
    #[arg(long, default_value_t = 10_000)]
    count: u16,
    #[arg(long, default_value_t = 10_000)]
    first_port: u16,
    /// Receive and send buffer asked for, as the relay's udp-buffer.
    #[arg(long, default_value_t = 4 << 20)]
    buffer: libc::c_int,
}

fn check(rc: libc::c_int, what: &str) {
    if rc < 0 {
        eprintln!("socket_setup: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
}

fn main() {
    let args = Args::parse();
    // SAFETY: plain syscalls on descriptors this function creates and owns; every pointer passed
    // points to a live local of the size given.
    unsafe {
        let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        check(epoll, "epoll_create1");
        let (mut open, mut tune, mut bind, mut register) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut sockets = Vec::with_capacity(usize::from(args.count));
        for i in 0..args.count {
            let t0 = Instant::now();
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, libc::IPPROTO_UDP);
            check(fd, "socket");
            let t1 = Instant::now();
            for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
                let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                check(
                    libc::setsockopt(fd, libc::SOL_SOCKET, option, (&args.buffer as *const libc::c_int).cast(), size),
                    "setsockopt",
                );
            }
            let t2 = Instant::now();
            let port = args.first_port.checked_add(i).expect("--first-port + --count stays below 65536");
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            check(libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len), "bind");
            let t3 = Instant::now();
            let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: u64::from(i) };
            check(libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event), "epoll_ctl");
            let t4 = Instant::now();
            (open, tune, bind, register) = (open + (t1 - t0), tune + (t2 - t1), bind + (t3 - t2), register + (t4 - t3));
            sockets.push(OwnedFd::from_raw_fd(fd));
        }
        let t0 = Instant::now();
        let count = sockets.len();
        drop(sockets);
        let close = t0.elapsed();
        libc::close(epoll);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
        println!(
            "RESULT mode=socket_setup count={count} socket_us={:.2} setsockopt_x2_us={:.2} bind_us={:.2} epoll_ctl_us={:.2} \
             total_us={:.2} close_us={:.2}",
            per(open),
            per(tune),
            per(bind),
            per(register),
            per(open + tune + bind + register),
            per(close),
        );
    }
}
