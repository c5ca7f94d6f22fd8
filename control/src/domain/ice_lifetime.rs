//! How long relay (TURN) credentials live: a requested lifetime is clamped to the configured
//! bounds; credentials issued for a consultation end with its join window.

use time::{Duration, OffsetDateTime};

/// `ice.default-ttl`, `ice.min-ttl`, `ice.max-ttl`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("must be positive")]
    Zero,
}

/// The expiry of credentials asked for with `requested` seconds (the default when not said),
/// clamped to the bounds.
pub fn expiry(requested: Option<u64>, bounds: TtlBounds, now: OffsetDateTime) -> Result<OffsetDateTime, TtlError> {
    if requested == Some(0) {
        return Err(TtlError::Zero);
    }
    let ttl = requested.unwrap_or(bounds.default).clamp(bounds.min, bounds.max);
    Ok(now + Duration::seconds(ttl as i64))
}

/// The lifetime, in whole seconds, of credentials that expire at `expires_at`: rounded up,
/// because `expires_at` was computed from an earlier read of the clock; at least one.
pub fn ttl_seconds(expires_at: OffsetDateTime, now: OffsetDateTime) -> u64 {
    (((expires_at - now).whole_milliseconds() + 999) / 1000).max(1) as u64
}

/// When the client should ask for new credentials: after 80% of their lifetime.
pub fn refresh_after(now: OffsetDateTime, ttl: u64) -> OffsetDateTime {
    now + Duration::seconds((ttl * 8 / 10) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: TtlBounds = TtlBounds { default: 3600, min: 60, max: 86_400 };

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_requested_lifetime_is_clamped_to_the_bounds() {
        let ttl = |r| expiry(r, BOUNDS, now()).map(|e| (e - now()).whole_seconds());
        assert_eq!(ttl(None), Ok(3600));
        assert_eq!(ttl(Some(5)), Ok(60));
        assert_eq!(ttl(Some(1_000_000)), Ok(86_400));
        assert_eq!(ttl(Some(0)), Err(TtlError::Zero));
    }

    #[test]
    fn the_lifetime_rounds_up_and_the_refresh_comes_at_four_fifths() {
        assert_eq!(ttl_seconds(now() + Duration::milliseconds(59_001), now()), 60);
        assert_eq!(ttl_seconds(now() - Duration::seconds(3), now()), 1);
        assert_eq!(refresh_after(now(), 100), now() + Duration::seconds(80));
    }
}
