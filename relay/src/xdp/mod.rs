//! The XDP offload (`xdp-offload = ["eth0", …]`): ChannelData over UDP relayed inside the
//! kernel for the allocations the relay admitted, the rest passed up to the sockets unchanged.
//!
//! Loader: libbpf-rs over libbpf (built from libbpf-sys's vendored source, linked statically).
//! It is the kernel's own loader, so relocations, BTF-defined maps and attach semantics are
//! libbpf's, the ones `bpftool` and the kernel's selftests use; aya would have meant a second,
//! independent ELF/BTF loader to trust, and a larger dependency tree (the deny.toml review).
//! The program is C (`relay/xdp/relay.bpf.c`) compiled by clang in `build.rs`.
//!
//! Layers: `maps.rs` (the shared layouts and map handles), `mirror.rs` (per worker: turns the
//! shard's journal of changed allocations into map writes and the kernel's counters back into
//! the shard's), this file (loading, attaching, refusing with a reason).

pub mod maps;
pub mod mirror;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use libbpf_rs::{MapCore, MapHandle, Object, ObjectBuilder};
use serde::{Deserialize, Serialize};

use maps::Maps;

include!(concat!(env!("OUT_DIR"), "/xdp_object.rs"));

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// The driver's mode when it has one, else generic (the kernel's choice); generic on veth
    /// (see [`Offload::start`]).
    #[default]
    Auto,
    /// Generic (SKB) XDP: any device, after the kernel built its socket buffer.
    Generic,
    /// Native (driver) XDP: before any allocation; refused by drivers without it.
    Native,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Auto => 0,
            XdpMode::Generic => libbpf_rs::libbpf_sys::XDP_FLAGS_SKB_MODE,
            XdpMode::Native => libbpf_rs::libbpf_sys::XDP_FLAGS_DRV_MODE,
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
        })
    }
}

/// Why the offload could not start; the relay then relays everything in user space.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("{0}")]
    NotBuilt(&'static str),
    #[error("not permitted to load BPF programs (run as root or with CAP_BPF and CAP_NET_ADMIN): {0}")]
    NotPermitted(String),
    #[error("the kernel refused the XDP program (needs Linux 5.9 or later with BPF and XDP): {0}")]
    Kernel(String),
    #[error("no network interface named {0:?}")]
    NoSuchInterface(String),
    #[error("cannot attach the XDP program to {interface} in {mode} mode: {reason}")]
    Attach { interface: String, mode: XdpMode, reason: String },
}

fn classify(e: libbpf_rs::Error) -> OffloadError {
    match e.kind() {
        libbpf_rs::ErrorKind::PermissionDenied => OffloadError::NotPermitted(e.to_string()),
        _ => OffloadError::Kernel(e.to_string()),
    }
}

/// The loaded program, attached to its interfaces for as long as this value lives: each
/// attachment is a BPF link, which the kernel removes when its descriptor closes, so a relay
/// that exits (or crashes) leaves no program behind relaying on stale maps.
pub struct Offload {
    maps: Arc<Maps>,
    /// Each interface, the mode its program was attached in, and its BPF link.
    links: Vec<(String, XdpMode, OwnedFd)>,
    mode: XdpMode,
    // Keeps the program's descriptor (and libbpf's view of it) alive.
    object: Object,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload").field("interfaces", &self.interfaces()).field("mode", &self.mode).finish()
    }
}

impl Offload {
    /// Loads the program and attaches it to every interface, or fails as a whole (nothing stays
    /// attached).
    ///
    /// `auto` attaches a veth in generic mode, not native (which the kernel would pick: veth has
    /// a native mode): in native mode a frame the program sends back out of a veth (XDP_TX, or a
    /// redirect into one) is queued for the peer veth's NAPI, and the kernel wakes that NAPI for
    /// it only when the peer has an XDP program of its own (Linux 6.18, `veth_xdp_flush`), so
    /// behind a peer without one (a container's end, usually) relayed datagrams would wait in
    /// that queue until unrelated traffic flushes it. Native mode on veth is for operators who
    /// attach a program to the peer too, and ask for it (`xdp-mode = "native"`).
    pub fn start(interfaces: &[String], mode: XdpMode) -> Result<Offload, OffloadError> {
        let mut offload = Offload::load()?;
        offload.mode = mode;
        for name in interfaces {
            let mode = match mode {
                XdpMode::Auto if driver(name).as_deref() == Some("veth") => XdpMode::Generic,
                other => other,
            };
            offload.attach(name, mode)?;
        }
        Ok(offload)
    }

    /// Loads the program and creates its maps without attaching it anywhere (tests run it on
    /// crafted packets with [`Offload::test_run`]).
    pub fn load() -> Result<Offload, OffloadError> {
        let object = OBJECT.map_err(OffloadError::NotBuilt)?;
        let open = ObjectBuilder::default().open_memory(object).map_err(classify)?;
        let object = open.load().map_err(classify)?;
        let handle = |name: &str| -> Result<MapHandle, OffloadError> {
            let map = object
                .maps()
                .find(|m| m.name() == name)
                .ok_or_else(|| OffloadError::Kernel(format!("the program has no map {name}")))?;
            MapHandle::try_from(&map).map_err(classify)
        };
        let maps = Maps {
            c2p: handle("c2p")?,
            p2c: handle("p2c")?,
            perms: handle("perms")?,
            allocs: handle("allocs")?,
            counters: handle("counters")?,
            spent: handle("spent")?,
        };
        Ok(Offload { maps: Arc::new(maps), links: Vec::new(), mode: XdpMode::Auto, object })
    }

    fn program(&self) -> libbpf_rs::Program<'_> {
        self.object.progs().next().expect("the object holds the XDP program")
    }

    fn attach(&mut self, name: &str, mode: XdpMode) -> Result<(), OffloadError> {
        let ifindex = interface_index(name)?;
        let program = self.program();
        let opts = libbpf_rs::libbpf_sys::bpf_link_create_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_link_create_opts>() as _,
            flags: mode.flags(),
            ..Default::default()
        };
        // SAFETY: plain FFI call with a valid program descriptor, an interface index and an
        // initialised options struct whose `sz` says its size; it returns a new descriptor or
        // a negative errno.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_link_create(
                program.as_fd().as_raw_fd(),
                ifindex as i32,
                libbpf_rs::libbpf_sys::BPF_XDP,
                &opts,
            )
        };
        if fd < 0 {
            let reason = std::io::Error::from_raw_os_error(-fd);
            if reason.kind() == std::io::ErrorKind::PermissionDenied {
                return Err(OffloadError::NotPermitted(reason.to_string()));
            }
            return Err(OffloadError::Attach { interface: name.to_string(), mode, reason: reason.to_string() });
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        self.links.push((name.to_string(), mode, unsafe { OwnedFd::from_raw_fd(fd) }));
        Ok(())
    }

    pub fn maps(&self) -> Arc<Maps> {
        self.maps.clone()
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn interfaces(&self) -> Vec<&str> {
        self.links.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Each interface with the mode its program was attached in (`auto`: the kernel's choice).
    pub fn attachments(&self) -> Vec<(&str, XdpMode)> {
        self.links.iter().map(|(n, m, _)| (n.as_str(), *m)).collect()
    }

    /// Runs the program once on `packet` (BPF_PROG_TEST_RUN, no device involved) and returns its
    /// verdict (`XDP_PASS` = 2, `XDP_TX` = 3, `XDP_REDIRECT` = 4, …) and the packet it left.
    pub fn test_run(&self, packet: &[u8]) -> libbpf_rs::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; packet.len() + 256];
        let input = libbpf_rs::ProgramInput { data_in: Some(packet), data_out: Some(&mut out), ..Default::default() };
        // BPF_PROG_TEST_RUN is on libbpf-rs's mutable program handle.
        let program = self.object.progs_mut().next().expect("the object holds the XDP program");
        let output = program.test_run(input)?;
        let verdict = output.return_value;
        let n = output.data.map_or(0, |d| d.len());
        out.truncate(n);
        Ok((verdict, out))
    }

    /// The mean time the program took over `runs` runs on `packet`, each on a fresh copy (one
    /// BPF_PROG_TEST_RUN per run, timed inside the kernel, so without the system call): the
    /// program's own cost per datagram, without the receive path before it or the transmit after.
    pub fn mean_run_time(&self, packet: &[u8], runs: u32) -> libbpf_rs::Result<std::time::Duration> {
        let program = self.object.progs_mut().next().expect("the object holds the XDP program");
        let mut total = std::time::Duration::ZERO;
        let mut out = vec![0u8; packet.len() + 256];
        for _ in 0..runs {
            let input =
                libbpf_rs::ProgramInput { data_in: Some(packet), data_out: Some(&mut out), ..Default::default() };
            total += program.test_run(input)?.duration;
        }
        Ok(total / runs.max(1))
    }
}

/// What keeps the kernel's FIB helper from answering for these interfaces: `bpf_fib_lookup`
/// refuses (BPF_FIB_LKUP_RET_FWD_DISABLED) unless forwarding is on for the interface the
/// datagram came in on, per family, and the program then passes every datagram up. The relay
/// does not turn forwarding on itself: it makes the host route packets arriving there, which the
/// operator's firewall must then refuse (docs/relay-security.md §13).
pub fn forwarding_warnings(interfaces: &[String]) -> Vec<String> {
    let on = |path: String| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
    let mut warnings = Vec::new();
    for name in interfaces {
        for (family, sysctl) in [("IPv4", "ipv4"), ("IPv6", "ipv6")] {
            if !on(format!("/proc/sys/net/{sysctl}/conf/{name}/forwarding")) {
                warnings.push(format!(
                    "{family} forwarding is off on {name}: the kernel's FIB lookup refuses to answer the XDP program \
                     there, so its {family} datagrams are relayed in user space; set net.{sysctl}.conf.{name}.forwarding=1 \
                     (and drop forwarded traffic in the firewall)"
                ));
            }
        }
    }
    warnings
}

/// The interface's driver as `ethtool -i` names it (`veth`, `mlx5_core`, …), if it says.
pub fn driver(name: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x03;
    // struct ethtool_drvinfo (linux/ethtool.h): the command, then the driver's name first.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 164],
    }
    let mut info = DrvInfo { cmd: ETHTOOL_GDRVINFO, driver: [0; 32], rest: [0; 164] };
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: an all-zero ifreq is valid (a name and a union of plain data).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: a datagram socket only to carry the ioctl; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL with a valid ifreq whose data points at a drvinfo buffer of the size
    // the kernel writes (196 bytes), alive for the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

fn interface_index(name: &str) -> Result<u32, OffloadError> {
    let c = CString::new(name).map_err(|_| OffloadError::NoSuchInterface(name.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(OffloadError::NoSuchInterface(name.to_string()));
    }
    Ok(index)
}
