//! One worker's copy of its shard's grants in the XDP program's maps.
//!
//! After every turn of its loop (and after each tick) the worker hands its shard to
//! [`Mirror::sync`]: the allocations the shard journalled as changed or ended are written again
//! from what the shard holds now, and what no longer holds is deleted, so the maps carry exactly
//! the channels and permissions the shard granted, with their expiry in CLOCK_MONOTONIC (the
//! program's `bpf_ktime_get_ns`). An ended allocation's slot is closed first (expiry 0: the
//! program stops relaying for it at once) and its entries are deleted after.
//!
//! Once a second [`Mirror::collect`] adds what the program relayed to the shard's counters, so
//! the metrics and the statistics count both paths alike.
//!
//! Only UDP clients on a listener with a specific address are mirrored: the program answers
//! from the address the client sent to, which a wildcard listener does not name. An allocation
//! under a bandwidth cap gets a lease: bytes taken from its token bucket (at most one burst, a
//! second at the cap's rate, outstanding), renewed at each collection; the program relays while
//! the lease lasts and passes the rest up, where what is left in the bucket decides. Whatever
//! path relays them, the bytes come out of the one bucket.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use teletip_turn_proto::server::{Family, FiveTuple, Flow, RelayBinder, RelayId, Shard, Transport};
use teletip_turn_proto::time::Millis;

use super::maps::{Addr, AllocVal, C2pKey, C2pVal, Counters, Maps, P2cKey, P2cVal, PermKey, PermVal, UNLIMITED};

/// What was written for one allocation.
#[derive(Debug)]
struct Written {
    slot: u32,
    c2p: Vec<C2pKey>,
    p2c: Vec<P2cKey>,
    perms: Vec<PermKey>,
    /// The slot's counters at the last collection.
    seen: Counters,
    /// What the allocation's slot holds (its expiry and lease).
    alloc: AllocVal,
}

/// The relayed sockets' bound addresses, by relay id (the network layer's binder knows them).
pub trait BoundAddresses {
    fn bound_addr(&self, relay: RelayId) -> Option<SocketAddr>;
}

/// A worker's mirror of its shard in the maps.
#[derive(Debug)]
pub struct Mirror {
    maps: Arc<Maps>,
    free: Vec<u32>,
    written: FxHashMap<FiveTuple, Written>,
    changes: Vec<FiveTuple>,
    tos: u8,
    /// Map operations that failed (the allocation then stays, in part or whole, in user space).
    pub failures: u64,
    /// Allocations not mirrored because this worker's slots were all in use.
    pub slots_exhausted: u64,
    /// Datagrams the program relayed for this worker's allocations (both directions), as
    /// collected so far: the share of the relayed datagrams that never reached user space.
    pub relayed_packets: u64,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Mirror {
    /// A mirror using allocation slots `slots` (each worker has its own range, so that slots
    /// are handed out without a lock). `tos` is the relay's DSCP shifted into the TOS byte.
    pub fn new(maps: Arc<Maps>, slots: Range<u32>, tos: u8) -> Mirror {
        Mirror {
            maps,
            free: slots.rev().collect(),
            written: FxHashMap::default(),
            changes: Vec::new(),
            tos,
            failures: 0,
            slots_exhausted: 0,
            relayed_packets: 0,
        }
    }

    /// How many of this worker's allocations the program may relay for.
    pub fn mirrored(&self) -> usize {
        self.written.len()
    }

    /// Writes the changes the shard journalled since the last call. `now` is the shard's clock
    /// of this turn.
    pub fn sync<B: RelayBinder + BoundAddresses>(&mut self, shard: &mut Shard<B>, now: Millis) {
        shard.take_offload_changes(&mut self.changes);
        if self.changes.is_empty() {
            return;
        }
        let mono = monotonic_ns();
        // A grant's expiry in the program's clock: the same distance from now.
        let to_mono = |m: Millis| mono + m.0.saturating_sub(now.0).saturating_mul(1_000_000);
        let mut changes = std::mem::take(&mut self.changes);
        changes.sort_unstable_by_key(|t| (t.client, t.server));
        changes.dedup();
        let (mut c2p_total, mut p2c_total) = (Flow::default(), Flow::default());
        for tuple in changes.drain(..) {
            // A new capped allocation starts with a full burst leased from its bucket.
            let fresh_capped = mirrorable(&tuple)
                && !self.written.contains_key(&tuple)
                && shard.allocation_for(&tuple).is_some_and(|a| a.has_bandwidth_cap());
            let lease = if fresh_capped { shard.lease_bandwidth(&tuple, now, |burst| burst) } else { None };
            let ended = match shard.allocation_for(&tuple) {
                Some(a) if mirrorable(&tuple) => {
                    self.write(&tuple, a, shard.binder(), &to_mono, &mut |_| lease);
                    false
                }
                _ => true,
            };
            if ended && let Some((c2p, p2c)) = self.forget(&tuple) {
                add(&mut c2p_total, c2p);
                add(&mut p2c_total, p2c);
            }
        }
        self.changes = changes;
        self.relayed_packets += c2p_total.packets + p2c_total.packets;
        shard.count_offloaded(c2p_total, p2c_total);
    }

    /// Adds what the program relayed since the last collection to the shard's counters, and
    /// renews the leases of capped allocations: the outstanding lease is topped up from the
    /// bucket to at most one burst.
    pub fn collect<B: RelayBinder>(&mut self, shard: &mut Shard<B>, now: Millis) {
        let (mut c2p_total, mut p2c_total) = (Flow::default(), Flow::default());
        // Every slot this mirror wrote, read in one batch from the lowest to the highest (slots
        // are handed out lowest first, so the span stays close to the number in use); one
        // lookup per slot if the batch fails.
        let lowest = self.written.values().map(|w| w.slot).min().unwrap_or(0);
        let highest = self.written.values().map(|w| w.slot).max().unwrap_or(0);
        let batch = if self.written.is_empty() { Ok(Vec::new()) } else { self.maps.counters_of(lowest..highest + 1) };
        if batch.is_err() {
            self.failures += 1;
        }
        for (tuple, w) in self.written.iter_mut() {
            let counted = match &batch {
                Ok(all) => Ok(all[(w.slot - lowest) as usize]),
                Err(_) => self.maps.counters(w.slot),
            };
            match counted {
                Ok(counted) => {
                    let (c2p, p2c) = delta(&w.seen, &counted);
                    add(&mut c2p_total, c2p);
                    add(&mut p2c_total, p2c);
                    w.seen = counted;
                }
                Err(_) => self.failures += 1,
            }
            if w.alloc.granted == UNLIMITED {
                continue;
            }
            let Ok(spent) = self.maps.spent(w.slot) else {
                self.failures += 1;
                continue;
            };
            let outstanding = w.alloc.granted.saturating_sub(spent);
            let Some(more) = shard.lease_bandwidth(tuple, now, |burst| burst.saturating_sub(outstanding)) else {
                continue;
            };
            if more > 0 {
                w.alloc.granted += more;
                if Maps::put(&self.maps.allocs, &w.slot, &w.alloc).is_err() {
                    self.failures += 1;
                }
            }
        }
        self.relayed_packets += c2p_total.packets + p2c_total.packets;
        shard.count_offloaded(c2p_total, p2c_total);
    }

    /// Writes what the allocation of `tuple` holds now; `lease` takes bytes from its bucket
    /// (`None`: no cap).
    fn write<B: BoundAddresses>(
        &mut self,
        tuple: &FiveTuple,
        a: &teletip_turn_proto::server::Allocation,
        binder: &B,
        to_mono: &dyn Fn(Millis) -> u64,
        lease: &mut dyn FnMut(u64) -> Option<u64>,
    ) {
        let mut fresh_lease = false;
        if !self.written.contains_key(tuple) {
            let Some(slot) = self.free.pop() else {
                self.slots_exhausted += 1;
                return;
            };
            if self.maps.zero_counters(slot).is_err() {
                self.failures += 1;
                self.free.push(slot);
                return;
            }
            let fresh = Written {
                slot,
                c2p: Vec::new(),
                p2c: Vec::new(),
                perms: Vec::new(),
                seen: Counters::default(),
                alloc: AllocVal { granted: UNLIMITED, tos: self.tos, ..AllocVal::default() },
            };
            self.written.insert(*tuple, fresh);
            fresh_lease = true;
        }
        let maps = self.maps.clone();
        let w = self.written.get_mut(tuple).expect("inserted above");
        let mut failures = 0;
        let mut ok = |r: libbpf_rs::Result<()>| {
            if r.is_err() {
                failures += 1;
            }
        };
        if fresh_lease {
            // A full burst to start with; `collect` renews it.
            w.alloc.granted = lease(u64::MAX).unwrap_or(UNLIMITED);
        }
        w.alloc.expires_ns = to_mono(a.expires);
        ok(Maps::put(&maps.allocs, &w.slot, &w.alloc));
        let (client, server) = (Addr::new(tuple.client), Addr::new(tuple.server));

        let mut perms = Vec::new();
        for (ip, expires) in a.permission_grants() {
            let key = PermKey { alloc: w.slot, ip: Addr::ip_bytes(ip) };
            ok(Maps::put(&maps.perms, &key, &PermVal { expires_ns: to_mono(expires) }));
            perms.push(key);
        }
        let (mut c2p, mut p2c) = (Vec::new(), Vec::new());
        for g in a.channel_grants() {
            let Some(relayed) = a.relayed(Family::of(&g.peer)) else { continue };
            let Some(bound) = binder.bound_addr(relayed.id) else { continue };
            let expires_ns = to_mono(g.expires);
            let key = C2pKey { client, server, channel: g.number, pad: 0 };
            let value = C2pVal {
                peer: Addr::new(g.peer),
                relay: Addr::new(bound),
                relay_seen: Addr::new(relayed.addr),
                alloc: w.slot,
                pad: [0; 2],
                expires_ns,
            };
            ok(Maps::put(&maps.c2p, &key, &value));
            c2p.push(key);
            let key = P2cKey { relay: Addr::new(bound), peer: Addr::new(g.peer) };
            let value = P2cVal { client, server, channel: g.number, pad: 0, alloc: w.slot, expires_ns };
            ok(Maps::put(&maps.p2c, &key, &value));
            p2c.push(key);
        }
        // What was granted before and is not any more (pruned after expiry).
        for old in w.c2p.iter().filter(|k| !c2p.contains(k)) {
            ok(Maps::remove(&maps.c2p, old));
        }
        for old in w.p2c.iter().filter(|k| !p2c.contains(k)) {
            ok(Maps::remove(&maps.p2c, old));
        }
        for old in w.perms.iter().filter(|k| !perms.contains(k)) {
            ok(Maps::remove(&maps.perms, old));
        }
        (w.c2p, w.p2c, w.perms) = (c2p, p2c, perms);
        self.failures += failures;
    }

    /// Closes an ended allocation's slot, deletes its entries and returns what the program
    /// relayed for it since the last collection.
    fn forget(&mut self, tuple: &FiveTuple) -> Option<(Flow, Flow)> {
        let w = self.written.remove(tuple)?;
        let maps = self.maps.clone();
        let mut failures = 0;
        let mut ok = |r: libbpf_rs::Result<()>| {
            if r.is_err() {
                failures += 1;
            }
        };
        // First the slot: from here on the program relays nothing for it.
        ok(Maps::put(&maps.allocs, &w.slot, &AllocVal::default()));
        for k in &w.c2p {
            ok(Maps::remove(&maps.c2p, k));
        }
        for k in &w.p2c {
            ok(Maps::remove(&maps.p2c, k));
        }
        for k in &w.perms {
            ok(Maps::remove(&maps.perms, k));
        }
        let last = maps.counters(w.slot).unwrap_or(w.seen);
        self.failures += failures;
        self.free.push(w.slot);
        Some(delta(&w.seen, &last))
    }

    /// Closes every slot this mirror wrote (the worker stops).
    pub fn clear(&mut self) {
        let tuples: Vec<FiveTuple> = self.written.keys().copied().collect();
        for t in tuples {
            self.forget(&t);
        }
    }
}

fn mirrorable(tuple: &FiveTuple) -> bool {
    tuple.transport == Transport::Udp && !tuple.server.ip().is_unspecified()
}

fn delta(before: &Counters, after: &Counters) -> (Flow, Flow) {
    (
        Flow {
            packets: after.c2p_packets.saturating_sub(before.c2p_packets),
            bytes: after.c2p_bytes.saturating_sub(before.c2p_bytes),
        },
        Flow {
            packets: after.p2c_packets.saturating_sub(before.p2c_packets),
            bytes: after.p2c_bytes.saturating_sub(before.p2c_bytes),
        },
    )
}

fn add(total: &mut Flow, more: Flow) {
    total.packets += more.packets;
    total.bytes += more.bytes;
}
