//! Time as the core sees it: a number handed in by the caller, never read from a clock.

/// Wall-clock time in milliseconds since the Unix epoch. Wall-clock rather than monotonic
/// because TURN REST usernames carry a Unix expiry; the shell passes the same value to every
/// call in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub const fn from_secs(secs: u64) -> Self {
        Millis(secs * 1000)
    }

    pub const fn unix_secs(self) -> u64 {
        self.0 / 1000
    }

    pub const fn plus_secs(self, secs: u64) -> Self {
        Millis(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    pub const fn plus_millis(self, ms: u64) -> Self {
        Millis(self.0.saturating_add(ms))
    }

    /// Whole seconds from `self` until `later`, rounded up, zero if `later` has passed.
    pub const fn secs_until(self, later: Millis) -> u64 {
        later.0.saturating_sub(self.0).div_ceil(1000)
    }
}
