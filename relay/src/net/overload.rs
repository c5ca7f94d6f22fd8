//! Overload control: loss instead of a growing queue.
//!
//! When more datagrams arrive than a worker can relay, the kernel queues them in the socket's
//! receive buffer until it is full (megabytes: tens of milliseconds of media), so under
//! overload every packet arrives late, and a real-time stream gains nothing from lateness.
//! The kernel stamps each datagram as it is queued (SO_TIMESTAMPNS); the worker compares the
//! stamp with the time it reads the datagram (its sojourn) and, once the queue has stayed
//! above the target for a grace period (20 ms by default), drops what waited longer than the target: dropping
//! costs a fraction of relaying, so the queue drains back to the target and what is relayed
//! is fresh. The grace period keeps a scheduling hiccup (the relay descheduled for a few
//! milliseconds, a burst of key frames) from turning into loss: only a queue that stays long
//! is treated as overload. Dropping stops after 100 ms with nothing late.
//!
//! Time is passed in, in nanoseconds, so this is tested without a clock.

/// The default of how long the queue must stay above the target before late datagrams are
/// dropped (`overload-grace-ms`): a queue that serves bursts drains below the target at least
/// once in it, a queue the worker cannot serve does not. Short, so that the onset of an
/// overload is cut back within milliseconds instead of being relayed late; long enough that a
/// hiccup (the worker descheduled, a burst of key frames) is still delivered late, not dropped,
/// and that a worker near (not over) its capacity keeps its highest rate. How 20 ms was chosen
/// against 10, 100 and 500 ms is optimisation 9 in docs/performance.md.
pub const DEFAULT_GRACE_NS: u64 = 20_000_000;
/// How long without a late datagram before dropping stops. Under overload the queue head is
/// late again within milliseconds of being cut back, so this never ends a real overload; it
/// ends the dropping soon after one, so that a later swing near capacity gets its grace again.
const CALM_NS: u64 = 100_000_000;

/// The overload state of one listener's queue (relayed sockets are not guarded: see worker.rs).
#[derive(Debug, Clone)]
pub struct QueueDelayGuard {
    target_ns: u64,
    grace_ns: u64,
    /// When the current run of late datagrams began.
    late_since: Option<u64>,
    dropping: bool,
    last_late: u64,
}

impl QueueDelayGuard {
    /// A guard with the given sojourn target (0 never drops) and grace period.
    pub fn new(target_ns: u64, grace_ns: u64) -> Self {
        QueueDelayGuard { target_ns, grace_ns, late_since: None, dropping: false, last_late: 0 }
    }

    /// Whether a datagram that waited `sojourn_ns` in its socket queue, read at `now_ns`, is
    /// relayed (true) or dropped as late under overload (false).
    pub fn admit(&mut self, sojourn_ns: u64, now_ns: u64) -> bool {
        if self.target_ns == 0 {
            return true;
        }
        if sojourn_ns <= self.target_ns {
            self.late_since = None;
            if self.dropping && now_ns.saturating_sub(self.last_late) >= CALM_NS {
                self.dropping = false;
            }
            return true;
        }
        self.last_late = now_ns;
        if !self.dropping {
            let since = *self.late_since.get_or_insert(now_ns);
            if now_ns.saturating_sub(since) < self.grace_ns {
                return true;
            }
            self.dropping = true;
        }
        false
    }

    pub fn dropping(&self) -> bool {
        self.dropping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn fresh_datagrams_always_pass() {
        let mut g = QueueDelayGuard::new(3 * MS, DEFAULT_GRACE_NS);
        for t in 0..1000 {
            assert!(g.admit(2 * MS, t * MS));
        }
        assert!(!g.dropping());
    }

    #[test]
    fn a_short_hiccup_is_delivered_late_rather_than_dropped() {
        let mut g = QueueDelayGuard::new(3 * MS, DEFAULT_GRACE_NS);
        // The worker was away for 10 ms: what queued meanwhile is late, for less than the grace.
        for i in 0..10 {
            assert!(g.admit((10 - i) * MS, (100 + i) * MS));
        }
        assert!(g.admit(MS, 111 * MS));
        assert!(!g.dropping());
    }

    #[test]
    fn a_queue_that_stays_long_is_cut_back_to_the_target() {
        let grace_ms = DEFAULT_GRACE_NS / MS;
        let mut g = QueueDelayGuard::new(3 * MS, DEFAULT_GRACE_NS);
        // Late for the whole grace period: relayed meanwhile.
        for t in 0..grace_ms {
            assert!(g.admit(5 * MS, t * MS));
        }
        // Then late ones are dropped, and fresh ones still pass.
        assert!(!g.admit(5 * MS, grace_ms * MS));
        assert!(g.dropping());
        assert!(g.admit(MS, (grace_ms + 1) * MS));
        assert!(!g.admit(4 * MS, (grace_ms + 2) * MS));
        // Calm for 100 ms: back to normal, a late one passes again (a new grace period).
        for t in grace_ms + 3..grace_ms + 103 {
            assert!(g.admit(MS, t * MS));
        }
        assert!(!g.dropping());
        assert!(g.admit(5 * MS, (grace_ms + 104) * MS));
    }

    #[test]
    fn the_grace_period_is_the_one_configured() {
        // 20 ms late in a row: a 500 ms grace still relays, a 20 ms one has begun to drop.
        let mut long = QueueDelayGuard::new(3 * MS, 500 * MS);
        let mut short = QueueDelayGuard::new(3 * MS, 20 * MS);
        for t in 0..20 {
            assert!(long.admit(5 * MS, t * MS));
            assert!(short.admit(5 * MS, t * MS));
        }
        assert!(long.admit(5 * MS, 20 * MS));
        assert!(!short.admit(5 * MS, 20 * MS));
        assert!(!long.dropping() && short.dropping());
    }

    #[test]
    fn target_zero_never_drops() {
        let mut g = QueueDelayGuard::new(0, DEFAULT_GRACE_NS);
        for t in 0..100 {
            assert!(g.admit(1000 * MS, t * MS));
        }
    }
}
