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
//! Requests are never dropped for lateness (worker.rs), so a storm of them (a crowd allocating
//! again at once) keeps the queue late however much media is dropped: dropping a call's media
//! then buys nothing. While the recent late datagrams (counts halved every grace period) are
//! mostly requests, late media is therefore relayed late rather than dropped; a queue late with
//! media is cut back as before, within a few grace periods of a storm's end.
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
    /// Late requests and late media lately: halved every grace period since `counted_since`.
    late_requests: u64,
    late_media: u64,
    counted_since: u64,
}

impl QueueDelayGuard {
    /// A guard with the given sojourn target (0 never drops) and grace period.
    pub fn new(target_ns: u64, grace_ns: u64) -> Self {
        QueueDelayGuard {
            target_ns,
            grace_ns,
            late_since: None,
            dropping: false,
            last_late: 0,
            late_requests: 0,
            late_media: 0,
            counted_since: 0,
        }
    }

    /// A request that waited `sojourn_ns`: never dropped, but a late one tells a storm of
    /// requests from an overload of media.
    pub fn note_request(&mut self, sojourn_ns: u64, now_ns: u64) {
        if self.target_ns != 0 && sojourn_ns > self.target_ns {
            self.age_counts(now_ns);
            self.late_requests += 1;
        }
    }

    /// Halves the late counts once per grace period gone by, so that they say what the queue
    /// holds now rather than since the overload began.
    fn age_counts(&mut self, now_ns: u64) {
        let periods = now_ns.saturating_sub(self.counted_since) / self.grace_ns.max(1);
        if periods > 0 {
            let shift = periods.min(63) as u32;
            (self.late_requests, self.late_media) = (self.late_requests >> shift, self.late_media >> shift);
            self.counted_since = now_ns;
        }
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
        self.age_counts(now_ns);
        self.late_media += 1;
        if !self.dropping {
            let since = *self.late_since.get_or_insert(now_ns);
            if now_ns.saturating_sub(since) < self.grace_ns {
                return true;
            }
            self.dropping = true;
        }
        // A storm of requests: dropping media would not shorten the queue.
        self.late_requests > self.late_media
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
    fn media_late_behind_a_storm_of_requests_is_relayed_not_dropped() {
        let grace_ms = DEFAULT_GRACE_NS / MS;
        let mut g = QueueDelayGuard::new(3 * MS, DEFAULT_GRACE_NS);
        // A crowd allocating at once: ten late requests for each late media datagram, for
        // longer than the grace period.
        for t in 0..3 * grace_ms {
            for _ in 0..10 {
                g.note_request(8 * MS, t * MS);
            }
            assert!(g.admit(8 * MS, t * MS), "media at {t} ms of the storm");
        }
        // The storm is over; the queue stays late with media alone: cut back as before within
        // a few grace periods.
        let mut t = 3 * grace_ms;
        while g.admit(8 * MS, t * MS) {
            t += 1;
            assert!(t < 8 * grace_ms, "media overload not cut back 5 grace periods after the storm");
        }
        assert!(g.dropping());
    }

    #[test]
    fn target_zero_never_drops() {
        let mut g = QueueDelayGuard::new(0, DEFAULT_GRACE_NS);
        for t in 0..100 {
            assert!(g.admit(1000 * MS, t * MS));
        }
    }
}
