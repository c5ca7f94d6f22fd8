//! Rate and quota limits: token buckets for bandwidth, and the quotas shared by all workers
//! (allocations per user, per client IP, total). The budget of unauthenticated answers per
//! source is in `source_budget.rs`.
//!
//! The shared quotas take a lock, but only when an allocation is created or removed, never on
//! the per-packet path.

use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::time::Millis;

/// A token bucket refilled continuously at `rate` units per second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens scaled by 1000 so that millisecond refills do not round to zero.
    milli_tokens: u64,
    last: Millis,
}

impl TokenBucket {
    pub fn new(rate: u64, burst: u64, now: Millis) -> Self {
        TokenBucket { rate, burst, milli_tokens: burst * 1000, last: now }
    }

    fn refill(&mut self, now: Millis) {
        if now > self.last {
            let refill = (now.0 - self.last.0).saturating_mul(self.rate);
            self.milli_tokens = (self.milli_tokens.saturating_add(refill)).min(self.burst * 1000);
            self.last = now;
        }
    }

    /// Takes up to `n` tokens, as many as are available, and returns how many it took (a lease
    /// handed to another path that draws from the same cap: the XDP offload).
    pub fn take_up_to(&mut self, now: Millis, n: u64) -> u64 {
        self.refill(now);
        let taken = (self.milli_tokens / 1000).min(n);
        self.milli_tokens -= taken * 1000;
        taken
    }

    /// The most tokens the bucket holds at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `n` tokens if available.
    pub fn take(&mut self, now: Millis, n: u64) -> bool {
        self.refill(now);
        let cost = n * 1000;
        if self.milli_tokens >= cost {
            self.milli_tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Allocation quotas across every worker.
#[derive(Debug, Default)]
pub struct SharedQuotas {
    pub per_user: u32,
    pub per_ip: u32,
    pub total: u32,
    active_total: AtomicU32,
    by_user: Mutex<FxHashMap<String, u32>>,
    by_ip: Mutex<FxHashMap<IpAddr, u32>>,
}

/// Which quota refused an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// 486 Allocation Quota Reached.
    User,
    /// 486 Allocation Quota Reached.
    ClientIp,
    /// 508 Insufficient Capacity.
    Total,
}

impl SharedQuotas {
    /// Zero means unlimited for each quota.
    pub fn new(per_user: u32, per_ip: u32, total: u32) -> Self {
        SharedQuotas { per_user, per_ip, total, ..Default::default() }
    }

    /// Reserves one allocation for `user` from `ip`, or says which quota is full.
    pub fn acquire(&self, user: &str, ip: IpAddr) -> Result<(), QuotaRefusal> {
        let mut by_user = self.by_user.lock().expect("quota lock");
        let mut by_ip = self.by_ip.lock().expect("quota lock");
        let u = by_user.get(user).copied().unwrap_or(0);
        let i = by_ip.get(&ip).copied().unwrap_or(0);
        if self.per_user != 0 && u >= self.per_user {
            return Err(QuotaRefusal::User);
        }
        if self.per_ip != 0 && i >= self.per_ip {
            return Err(QuotaRefusal::ClientIp);
        }
        if self.total != 0 && self.active_total.load(Ordering::Relaxed) >= self.total {
            return Err(QuotaRefusal::Total);
        }
        self.active_total.fetch_add(1, Ordering::Relaxed);
        *by_user.entry(user.to_owned()).or_insert(0) += 1;
        *by_ip.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    pub fn release(&self, user: &str, ip: IpAddr) {
        let mut by_user = self.by_user.lock().expect("quota lock");
        let mut by_ip = self.by_ip.lock().expect("quota lock");
        decrement(&mut by_user, user);
        decrement(&mut by_ip, &ip);
        self.active_total.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn active(&self) -> u32 {
        self.active_total.load(Ordering::Relaxed)
    }
}

fn decrement<K: std::hash::Hash + Eq + ?Sized, Q: std::hash::Hash + Eq + std::borrow::Borrow<K>>(
    map: &mut FxHashMap<Q, u32>,
    key: &K,
) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_takes_what_the_bucket_holds_and_no_more() {
        let mut b = TokenBucket::new(1000, 1500, Millis(0));
        assert_eq!(b.take_up_to(Millis(0), 1000), 1000, "within the burst");
        assert_eq!(b.take_up_to(Millis(0), 1000), 500, "the rest of it");
        assert!(!b.take(Millis(0), 1), "the lease emptied the bucket for user space too");
        assert_eq!(b.take_up_to(Millis(100), 1000), 100, "a tenth of a second's refill");
        assert_eq!(b.burst(), 1500);
    }

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(1000, 1500, Millis(0));
        assert!(b.take(Millis(0), 1500));
        assert!(!b.take(Millis(0), 1));
        assert!(b.take(Millis(100), 100));
        assert!(!b.take(Millis(100), 1));
        assert!(b.take(Millis(10_000), 1500));
    }

    #[test]
    fn quotas_count_per_user_ip_and_total() {
        let q = SharedQuotas::new(2, 3, 4);
        let ip1: IpAddr = "192.0.2.1".parse().unwrap();
        let ip2: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(q.acquire("u", ip1).is_ok());
        assert!(q.acquire("u", ip1).is_ok());
        assert_eq!(q.acquire("u", ip1), Err(QuotaRefusal::User));
        assert!(q.acquire("v", ip1).is_ok());
        assert_eq!(q.acquire("w", ip1), Err(QuotaRefusal::ClientIp));
        assert!(q.acquire("w", ip2).is_ok());
        assert_eq!(q.acquire("x", ip2), Err(QuotaRefusal::Total));
        q.release("u", ip1);
        assert!(q.acquire("x", ip2).is_ok());
        assert_eq!(q.active(), 4);
    }
}
