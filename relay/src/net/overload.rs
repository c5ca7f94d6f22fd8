//! Overload control: loss instead of a growing queue.
//!
//! When more datagrams arrive than a worker can relay, the kernel queues them in the socket's
//! receive buffer until it is full (megabytes: tens of milliseconds of media), so under
//! overload every packet arrives late, and a real-time stream gains nothing from lateness.
//! The kernel stamps each datagram as it is queued (SO_TIMESTAMPNS); the worker compares the
//! stamp with the time it reads the datagram (its sojourn) and, once the queue has stayed
//! above the target for a grace period (500 ms), drops what waited longer than the target: dropping
//! costs a fraction of relaying, so the queue drains back to the target and what is relayed
//! is fresh. The grace period keeps a scheduling hiccup (the relay descheduled for a few
//! milliseconds, a burst of key frames) from turning into loss: only a queue that stays long
//! is treated as overload. Dropping stops after 100 ms with nothing late.
//!
//! Time is passed in, in nanoseconds, so this is tested without a clock.

/// How long the queue must stay above the target before late datagrams are dropped: a queue
/// that serves bursts drains below the target at least once in it, a queue the worker cannot
/// serve does not. Near (not over) a worker's capacity the queue swings by tens of
/// milliseconds and can stay above 3 ms for a few hundred: measured at 150 kpps, 100 pairs,
/// 160 B on one core (where nothing is lost without the control), CoDel's 100 ms cost 2.5-9 %
/// of the packets in 3 of 3 runs, 300 ms and 500 ms nothing in 3 of 3; 20 ms cost 20-40 % of
/// the throughput at <= 1 % loss. Overload lasts minutes, so reacting in half a second loses
/// little.
const GRACE_NS: u64 = 500_000_000;
/// How long without a late datagram before dropping stops. Under overload the queue head is
/// late again within milliseconds of being cut back, so this never ends a real overload; it
/// ends the dropping soon after one, so that a later swing near capacity gets its grace again.
const CALM_NS: u64 = 100_000_000;

/// The overload state of one listener's queue (relayed sockets are not guarded: see worker.rs).
#[derive(Debug, Clone)]
pub struct QueueDelayGuard {
    target_ns: u64,
    /// When the current run of late datagrams began.
    late_since: Option<u64>,
    dropping: bool,
    last_late: u64,
}

impl QueueDelayGuard {
    /// A guard with the given sojourn target; 0 never drops.
    pub fn new(target_ns: u64) -> Self {
        QueueDelayGuard { target_ns, late_since: None, dropping: false, last_late: 0 }
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
            if now_ns.saturating_sub(since) < GRACE_NS {
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
        let mut g = QueueDelayGuard::new(3 * MS);
        for t in 0..1000 {
            assert!(g.admit(2 * MS, t * MS));
        }
        assert!(!g.dropping());
    }

    #[test]
    fn a_short_hiccup_is_delivered_late_rather_than_dropped() {
        let mut g = QueueDelayGuard::new(3 * MS);
        // The worker was away for 10 ms: what queued meanwhile is late, for less than the grace.
        for i in 0..10 {
            assert!(g.admit((10 - i) * MS, (100 + i) * MS));
        }
        assert!(g.admit(MS, 111 * MS));
        assert!(!g.dropping());
    }

    #[test]
    fn a_queue_that_stays_long_is_cut_back_to_the_target() {
        let mut g = QueueDelayGuard::new(3 * MS);
        // Late for the whole grace period: relayed meanwhile.
        for t in 0..500 {
            assert!(g.admit(5 * MS, t * MS));
        }
        // Then late ones are dropped, and fresh ones still pass.
        assert!(!g.admit(5 * MS, 500 * MS));
        assert!(g.dropping());
        assert!(g.admit(MS, 501 * MS));
        assert!(!g.admit(4 * MS, 502 * MS));
        // Calm for 100 ms: back to normal, a late one passes again (a new grace period).
        for t in 503..603 {
            assert!(g.admit(MS, t * MS));
        }
        assert!(!g.dropping());
        assert!(g.admit(5 * MS, 604 * MS));
    }

    #[test]
    fn target_zero_never_drops() {
        let mut g = QueueDelayGuard::new(0);
        for t in 0..100 {
            assert!(g.admit(1000 * MS, t * MS));
        }
    }
}
