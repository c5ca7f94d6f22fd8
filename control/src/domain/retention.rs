//! What the retention periods and the care relationship allow keeping or seeing, as of `now`.

use time::{Duration, OffsetDateTime};

use crate::store::CareWindow;

/// Expired login sessions that ended before this instant are purged (`retention.session-days`).
pub fn session_cutoff(now: OffsetDateTime, session_days: i64) -> OffsetDateTime {
    now - Duration::days(session_days)
}

/// The care relationship's window as of `now`: appointments that ended within
/// `scheduling.care-relationship-days` count (see `scheduling::access`).
pub fn care_window(now: OffsetDateTime, care_relationship_days: i64) -> CareWindow {
    CareWindow { now, ended_after: now - Duration::days(care_relationship_days) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_count_back_from_now() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(session_cutoff(now, 90), now - Duration::days(90));
        let w = care_window(now, 30);
        assert_eq!((w.now, w.ended_after), (now, now - Duration::days(30)));
    }
}
