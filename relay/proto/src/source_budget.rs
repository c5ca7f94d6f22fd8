//! How many answers to unauthenticated requests a source address may draw: few for a source
//! that may be spoofed (the relay must not be a reflector), many for a source whose clients
//! prove that they receive at it (a hospital's NAT, a carrier-grade NAT, a clinic reconnecting
//! after a network blip: a crowd behind one address).
//!
//! One table for the whole relay, shared by every worker, so that a source's budget does not
//! grow with the number of workers. It is two fixed-size arrays of atomic words indexed by a
//! keyed hash of the source address: no lock, no allocation and a bounded memory whatever the
//! number of sources.
//!
//! - **Base budget**: `rate` answers per second with a burst of `burst`, for every source
//!   (GCRA: one word per slot, the theoretical arrival time of the next answer). Sources whose
//!   addresses hash to the same slot share it, which only makes the limit stricter. The hash
//!   is keyed with a per-process random key, so that nobody can aim a collision at a victim.
//! - **Earned budget**: each request from the source that passes MESSAGE-INTEGRITY earns
//!   [`EARNED_PER_AUTHENTICATED_REQUEST`] more answers, up to `earned_burst` at a time; the
//!   credit lapses [`EARNED_QUIET_SECS`] after the source's last authenticated request. Its
//!   nonce is bound to the source's address (nonce.rs), so only a source that receives at its
//!   address can earn: a spoofed one never does. Each entry carries a 16-bit tag of its
//!   address and has two candidate slots, so a source that shares a slot with a crowd does not
//!   spend the crowd's credit (a false tag match: 1 in 65,536 per live colliding entry).
//!
//! The answers themselves stay within three times their request (`server::AMPLIFICATION_BOUND`);
//! docs/relay-security.md §5 states the bound this gives on reflected bytes.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::time::Millis;

/// Answers earned by each request that passes message integrity. An allocation costs a client
/// one unauthenticated answer (the 401), now and then a 438 when its nonce expires, and brings
/// at least two authenticated requests (the Allocate, then Refresh, CreatePermission or
/// ChannelBind): a crowd earns several times what it spends.
pub const EARNED_PER_AUTHENTICATED_REQUEST: u64 = 4;

/// Seconds without an authenticated request from a source after which its earned credit
/// lapses: the permission lifetime, within which every client holding an allocation
/// refreshes something.
pub const EARNED_QUIET_SECS: u64 = 300;

/// The largest earned burst an entry can hold (16 bits of credit).
pub const MAX_EARNED_BURST: u64 = u16::MAX as u64;

/// Slots in each array by default: 2 × 512 KiB.
pub const DEFAULT_SLOTS: usize = 1 << 16;

/// The limits a [`SourceBudgets`] applies (from the relay's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnauthLimits {
    /// Answers per second per source; 0 turns every limit off.
    pub rate: u64,
    /// Answers a source may draw at once.
    pub burst: u64,
    /// The most earned answers a source may hold (at most [`MAX_EARNED_BURST`]); 0: sources
    /// earn nothing.
    pub earned_burst: u64,
}

/// The table: see the module documentation.
pub struct SourceBudgets {
    hasher: RandomState,
    /// GCRA: the theoretical arrival time of the next answer, in microseconds (0: unused).
    base: Box<[AtomicU64]>,
    /// tag (16 bits) | credit (16 bits) | lapses at, Unix seconds (32 bits).
    earned: Box<[AtomicU64]>,
}

impl std::fmt::Debug for SourceBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceBudgets {{ slots: {} }}", self.base.len())
    }
}

impl Default for SourceBudgets {
    fn default() -> Self {
        SourceBudgets::with_slots(DEFAULT_SLOTS, RandomState::new())
    }
}

/// Where a source's budget lives.
struct Place {
    base: usize,
    earned: [usize; 2],
    tag: u64,
}

impl SourceBudgets {
    /// `slots` (rounded up to a power of two, at most 65,536) per array, hashed with `hasher`.
    pub fn with_slots(slots: usize, hasher: RandomState) -> Self {
        let slots = slots.clamp(1, DEFAULT_SLOTS).next_power_of_two();
        let table = || (0..slots).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        SourceBudgets { hasher, base: table(), earned: table() }
    }

    fn place(&self, ip: IpAddr) -> Place {
        let h = self.hasher.hash_one(ip);
        // 16 bits each, disjoint: the arrays hold at most 2^16 slots.
        let mask = self.base.len() as u64 - 1;
        Place {
            base: (h & mask) as usize,
            earned: [((h >> 16) & mask) as usize, ((h >> 32) & mask) as usize],
            tag: h >> 48,
        }
    }

    /// Whether one more unauthenticated answer may go to `ip` now; takes it if so. The base
    /// budget first, then the earned one.
    pub fn allow(&self, now: Millis, ip: IpAddr, limits: &UnauthLimits) -> bool {
        if limits.rate == 0 {
            return true;
        }
        let place = self.place(ip);
        self.take_base(&self.base[place.base], now, limits) || self.take_earned(&place, now)
    }

    /// A request from `ip` passed message integrity: `ip` earns answers.
    pub fn earn(&self, now: Millis, ip: IpAddr, limits: &UnauthLimits) {
        if limits.rate == 0 || limits.earned_burst == 0 {
            return;
        }
        let cap = limits.earned_burst.min(MAX_EARNED_BURST);
        let place = self.place(ip);
        let now_secs = now.unix_secs();
        let lapses = now_secs + EARNED_QUIET_SECS;
        // A few tries: earning is best effort, and a lost race means another worker just wrote
        // the same slot.
        for _ in 0..4 {
            let words = place.earned.map(|i| self.earned[i].load(Ordering::Relaxed));
            let own = (0..2).find(|&k| Earned::of(words[k]).is(place.tag, now_secs));
            let (k, credit) = match own {
                Some(k) => {
                    let e = Earned::of(words[k]);
                    // A crowd earns on every request: leave the shared line alone when nothing
                    // would change but a second of lapse time.
                    if e.credit >= cap && e.lapses + 1 >= lapses {
                        return;
                    }
                    (k, (e.credit + EARNED_PER_AUTHENTICATED_REQUEST).min(cap))
                }
                // A new entry takes a lapsed slot if there is one, else the one with less credit.
                None => {
                    let (a, b) = (Earned::of(words[0]), Earned::of(words[1]));
                    let k = match (a.lapsed(now_secs), b.lapsed(now_secs)) {
                        (true, _) => 0,
                        (false, true) => 1,
                        (false, false) => usize::from(b.credit < a.credit),
                    };
                    (k, EARNED_PER_AUTHENTICATED_REQUEST.min(cap))
                }
            };
            let new = Earned { tag: place.tag, credit, lapses }.word();
            if self.earned[place.earned[k]]
                .compare_exchange(words[k], new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    fn take_base(&self, slot: &AtomicU64, now: Millis, limits: &UnauthLimits) -> bool {
        let interval = (1_000_000 / limits.rate).max(1);
        let tolerance = limits.burst.saturating_mul(interval);
        let now_us = now.0.saturating_mul(1000);
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            // A wall clock set back must not lock a source out until it catches up.
            let start = if current > now_us.saturating_add(tolerance) { now_us } else { current.max(now_us) };
            let next = start + interval;
            if next - now_us > tolerance {
                return false;
            }
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    fn take_earned(&self, place: &Place, now: Millis) -> bool {
        let now_secs = now.unix_secs();
        for &i in &place.earned {
            let slot = &self.earned[i];
            let mut current = slot.load(Ordering::Relaxed);
            loop {
                let e = Earned::of(current);
                if !e.is(place.tag, now_secs) || e.credit == 0 {
                    break;
                }
                let spent = Earned { credit: e.credit - 1, ..e }.word();
                match slot.compare_exchange_weak(current, spent, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return true,
                    Err(seen) => current = seen,
                }
            }
        }
        false
    }

    /// The earned answers `ip` holds now (for tests and diagnostics).
    pub fn earned(&self, now: Millis, ip: IpAddr) -> u64 {
        let place = self.place(ip);
        let now_secs = now.unix_secs();
        place
            .earned
            .iter()
            .map(|&i| Earned::of(self.earned[i].load(Ordering::Relaxed)))
            .find(|e| e.is(place.tag, now_secs))
            .map_or(0, |e| e.credit)
    }
}

/// One earned-budget entry, unpacked.
#[derive(Debug, Clone, Copy)]
struct Earned {
    tag: u64,
    credit: u64,
    lapses: u64,
}

impl Earned {
    fn of(word: u64) -> Earned {
        Earned { tag: word >> 48, credit: (word >> 32) & 0xffff, lapses: word & 0xffff_ffff }
    }

    fn word(self) -> u64 {
        (self.tag << 48) | (self.credit.min(MAX_EARNED_BURST) << 32) | self.lapses.min(u64::from(u32::MAX))
    }

    fn lapsed(self, now_secs: u64) -> bool {
        self.lapses <= now_secs
    }

    /// The live entry of the source with this tag.
    fn is(self, tag: u64, now_secs: u64) -> bool {
        self.tag == tag && !self.lapsed(now_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: UnauthLimits = UnauthLimits { rate: 10, burst: 20, earned_burst: 100 };
    const T0: Millis = Millis::from_secs(1_700_000_000);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn drawn(b: &SourceBudgets, now: Millis, source: IpAddr, tries: usize) -> usize {
        (0..tries).filter(|_| b.allow(now, source, &LIMITS)).count()
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let b = SourceBudgets::default();
        let a = ip("192.0.2.1");
        assert_eq!(drawn(&b, T0, a, 30), 20);
        assert_eq!(drawn(&b, T0.plus_millis(500), a, 30), 5, "10 per second");
        assert_eq!(drawn(&b, T0.plus_secs(60), a, 30), 20, "refilled to the burst, not beyond");
        assert_eq!(drawn(&b, T0, ip("192.0.2.2"), 30), 20, "another source has its own budget");
    }

    #[test]
    fn a_rate_of_zero_turns_the_limit_off() {
        let b = SourceBudgets::default();
        let off = UnauthLimits { rate: 0, ..LIMITS };
        assert!((0..10_000).all(|_| b.allow(T0, ip("192.0.2.1"), &off)));
    }

    #[test]
    fn authenticated_requests_earn_answers_up_to_the_earned_burst() {
        let b = SourceBudgets::default();
        let crowd = ip("198.51.100.7");
        assert_eq!(drawn(&b, T0, crowd, 20), 20);
        assert!(!b.allow(T0, crowd, &LIMITS), "the base budget is spent");
        b.earn(T0, crowd, &LIMITS);
        assert_eq!(b.earned(T0, crowd), EARNED_PER_AUTHENTICATED_REQUEST);
        assert_eq!(drawn(&b, T0, crowd, 10), EARNED_PER_AUTHENTICATED_REQUEST as usize);
        for _ in 0..1000 {
            b.earn(T0, crowd, &LIMITS);
        }
        assert_eq!(b.earned(T0, crowd), 100, "capped at the earned burst");
        assert_eq!(drawn(&b, T0, crowd, 200), 100);
        assert_eq!(b.earned(T0, ip("198.51.100.8"),), 0, "earned by the address only");
    }

    #[test]
    fn earned_credit_lapses_when_the_source_goes_quiet() {
        let b = SourceBudgets::default();
        let crowd = ip("2001:db8::7");
        b.earn(T0, crowd, &LIMITS);
        b.earn(T0.plus_secs(EARNED_QUIET_SECS - 1), crowd, &LIMITS);
        assert_eq!(b.earned(T0.plus_secs(EARNED_QUIET_SECS), crowd), 2 * EARNED_PER_AUTHENTICATED_REQUEST);
        assert_eq!(b.earned(T0.plus_secs(2 * EARNED_QUIET_SECS - 1), crowd), 0, "quiet for the whole period");
        let none = UnauthLimits { earned_burst: 0, ..LIMITS };
        b.earn(T0, ip("2001:db8::8"), &none);
        assert_eq!(b.earned(T0, ip("2001:db8::8")), 0, "earned-burst 0 turns earning off");
    }

    #[test]
    fn a_source_sharing_a_slot_neither_spends_nor_erases_anothers_credit() {
        // One slot per array: every source collides with every other.
        let b = SourceBudgets::with_slots(1, RandomState::new());
        let (crowd, spoofed) = (ip("203.0.113.1"), ip("203.0.113.2"));
        for _ in 0..10 {
            b.earn(T0, crowd, &LIMITS);
        }
        // With one slot both sources hash to it; the tags differ unless the 16-bit tags
        // collide, which this test cannot rule out for a random key: skip that 1 in 65,536.
        if b.place(crowd).tag == b.place(spoofed).tag {
            return;
        }
        assert_eq!(drawn(&b, T0, spoofed, 100), 20, "the shared base budget, none of the crowd's credit");
        assert_eq!(b.earned(T0, crowd), 40);
        assert_eq!(drawn(&b, T0, crowd, 100), 40, "the crowd spends its own credit");
    }

    #[test]
    fn the_budget_is_shared_by_threads() {
        let b = std::sync::Arc::new(SourceBudgets::default());
        let a = ip("192.0.2.9");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || drawn(&b, T0, a, 50))
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 20, "one burst for the source, however many workers ask");
    }
}
