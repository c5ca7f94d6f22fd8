//! The XDP program's maps, key and value layouts mirrored from `relay/xdp/relay.bpf.c` (change
//! both together; `tests::layouts` checks the sizes). Every struct is `repr(C)` with its
//! padding spelled out as zeroed fields, so that its bytes are fully defined: the kernel hashes
//! keys byte by byte.

use std::net::{IpAddr, SocketAddr};

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

/// An address as the program keys it: IPv4 as IPv4-mapped IPv6, the port in network order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    pub ip: [u8; 16],
    pub port_be: u16,
    pub pad: u16,
}

impl Addr {
    pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    pub fn new(addr: SocketAddr) -> Addr {
        Addr { ip: Addr::ip_bytes(addr.ip()), port_be: addr.port().to_be(), pad: 0 }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct C2pKey {
    pub client: Addr,
    pub server: Addr,
    pub channel: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct C2pVal {
    pub peer: Addr,
    pub relay: Addr,
    pub relay_seen: Addr,
    pub alloc: u32,
    /// Spelled out: `expires_ns` is 8-byte aligned.
    pub pad: [u32; 2],
    pub expires_ns: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct P2cKey {
    pub relay: Addr,
    pub peer: Addr,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct P2cVal {
    pub client: Addr,
    pub server: Addr,
    pub channel: u16,
    pub pad: u16,
    pub alloc: u32,
    pub expires_ns: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermKey {
    pub alloc: u32,
    pub ip: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PermVal {
    pub expires_ns: u64,
}

/// No cap: the program relays without drawing on a lease.
pub const UNLIMITED: u64 = u64::MAX;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocVal {
    /// 0: ended; the program relays nothing of it.
    pub expires_ns: u64,
    /// Bytes the program may have relayed under the cap in all (`spent` counts them), or
    /// [`UNLIMITED`].
    pub granted: u64,
    pub tos: u8,
    pub pad: [u8; 7],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub c2p_packets: u64,
    pub c2p_bytes: u64,
    pub p2c_packets: u64,
    pub p2c_bytes: u64,
}

/// Must equal MAX_ALLOCS in the C source.
pub const MAX_ALLOCS: u32 = 65536;

/// The bytes of a padding-free `repr(C)` value.
pub fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: every type passed here is `repr(C)` with explicit padding fields, so all of its
    // `size_of::<T>()` bytes are initialised; the slice borrows `value` and cannot outlive it.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

fn counters_from(bytes: &[u8]) -> Counters {
    let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Counters { c2p_packets: word(0), c2p_bytes: word(1), p2c_packets: word(2), p2c_bytes: word(3) }
}

/// One slot's counters summed over its per-CPU copies.
fn sum_cpus<'a>(per_cpu: impl Iterator<Item = &'a [u8]>) -> Counters {
    per_cpu.map(counters_from).fold(Counters::default(), |s, c| Counters {
        c2p_packets: s.c2p_packets + c.c2p_packets,
        c2p_bytes: s.c2p_bytes + c.c2p_bytes,
        p2c_packets: s.p2c_packets + c.p2c_packets,
        p2c_bytes: s.p2c_bytes + c.p2c_bytes,
    })
}

/// Handles on the program's maps, shared by the workers (each map operation is one `bpf(2)`
/// call on a descriptor: no lock in user space).
#[derive(Debug)]
pub struct Maps {
    pub c2p: MapHandle,
    pub p2c: MapHandle,
    pub perms: MapHandle,
    pub allocs: MapHandle,
    pub counters: MapHandle,
    pub spent: MapHandle,
}

impl Maps {
    pub fn put<K: Copy, V: Copy>(map: &MapHandle, key: &K, value: &V) -> libbpf_rs::Result<()> {
        map.update(bytes_of(key), bytes_of(value), MapFlags::ANY)
    }

    /// Deletes `key`; a key that is not there is no error (it was never written or is gone).
    pub fn remove<K: Copy>(map: &MapHandle, key: &K) -> libbpf_rs::Result<()> {
        match map.delete(bytes_of(key)) {
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// An allocation slot's counters, summed over the CPUs.
    pub fn counters(&self, slot: u32) -> libbpf_rs::Result<Counters> {
        let per_cpu = self.counters.lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)?.unwrap_or_default();
        Ok(sum_cpus(per_cpu.iter().map(Vec::as_slice)))
    }

    /// The counters of every slot in `slots`, summed over the CPUs, in slot order: one
    /// BPF_MAP_LOOKUP_BATCH call instead of one lookup per slot (the once-a-second fold of a
    /// worker with many allocations; libbpf-rs's own `lookup_batch` refuses per-CPU maps).
    pub fn counters_of(&self, slots: std::ops::Range<u32>) -> libbpf_rs::Result<Vec<Counters>> {
        let wanted = slots.len();
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let cpus = libbpf_rs::num_possible_cpus()?;
        // A per-CPU value is one 8-byte-aligned copy per possible CPU (Counters is 32 bytes).
        let per_slot = size_of::<Counters>() * cpus;
        let mut keys = vec![0u32; wanted];
        let mut values = vec![0u8; wanted * per_slot];
        // The kernel's batch walk of an array starts after `in_batch` (a previous key), or at
        // slot 0 without one.
        let mut previous = slots.start.wrapping_sub(1);
        let in_batch: *mut std::ffi::c_void =
            if slots.start == 0 { std::ptr::null_mut() } else { (&mut previous as *mut u32).cast() };
        let mut next = 0u32;
        let mut count = wanted as u32;
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: the buffers hold `count` keys of 4 bytes and `count` per-CPU values of
        // `per_slot` bytes, and `in_batch` and `out_batch` point at 4-byte keys (or null), all
        // alive for the call; the kernel writes at most `count` elements and the count it wrote.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                self.counters.as_fd().as_raw_fd(),
                in_batch,
                (&mut next as *mut u32).cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        // ENOENT: the walk reached the end of the map, `count` says how far it got.
        if rc < 0 && rc != -libc::ENOENT {
            return Err(libbpf_rs::Error::from_raw_os_error(-rc));
        }
        if count as usize != wanted || keys.first() != Some(&slots.start) {
            let what = format!("batch lookup of slots {slots:?} returned {count} from slot {:?}", keys.first());
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what).into());
        }
        Ok(values.chunks_exact(per_slot).map(|slot| sum_cpus(slot.chunks_exact(size_of::<Counters>()))).collect())
    }

    /// The bytes the program relayed under the cap for a slot.
    pub fn spent(&self, slot: u32) -> libbpf_rs::Result<u64> {
        let bytes = self.spent.lookup(&slot.to_ne_bytes(), MapFlags::ANY)?.unwrap_or_default();
        Ok(bytes.get(..8).map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))))
    }

    /// Zeroes a slot's counters on every CPU (before the slot serves another allocation).
    pub fn zero_counters(&self, slot: u32) -> libbpf_rs::Result<()> {
        let cpus = libbpf_rs::num_possible_cpus()?;
        let zero = vec![vec![0u8; size_of::<Counters>()]; cpus];
        self.counters.update_percpu(&slot.to_ne_bytes(), &zero, MapFlags::ANY)?;
        Maps::put(&self.spent, &slot, &0u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the C structs have (x86-64 and aarch64 alike: natural alignment).
    #[test]
    fn layouts() {
        assert_eq!(size_of::<Addr>(), 20);
        assert_eq!(size_of::<C2pKey>(), 44);
        assert_eq!(size_of::<C2pVal>(), 80);
        assert_eq!(size_of::<P2cKey>(), 40);
        assert_eq!(size_of::<P2cVal>(), 56);
        assert_eq!(size_of::<PermKey>(), 20);
        assert_eq!(size_of::<AllocVal>(), 24);
        assert_eq!(size_of::<Counters>(), 32);
    }

    #[test]
    fn ipv4_is_mapped_and_ports_are_big_endian() {
        let a = Addr::new("192.0.2.1:3478".parse().unwrap());
        assert_eq!(&a.ip[10..], &[0xff, 0xff, 192, 0, 2, 1]);
        assert_eq!(a.port_be.to_ne_bytes(), 3478u16.to_be_bytes());
    }
}
