//! The practice's booking rules: how soon and how far ahead a booking may start, that it is
//! made of free slots of the practitioner's availability, and how late a patient may still
//! cancel or move it. Plain functions of `now` and the slots the caller computed.

use time::{Duration, OffsetDateTime};

/// The practice's rules for bookings (`[scheduling]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRules {
    /// A booking starts at least this long after it is made.
    pub min_lead: Duration,
    /// A booking starts at most this long after it is made.
    pub max_horizon: Duration,
    /// A patient may not cancel or move a booked appointment this close to its start.
    pub patient_cancel_window: Duration,
}

/// Which rule refused a booking, a rescheduling or a patient's cancellation, with the limit.
/// Each has a stable problem type (`/problems/<slug>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingRefusal {
    #[error("starts in {starts_in_minutes} minutes; this practice books at least {lead_minutes} minutes ahead")]
    LeadTime { starts_in_minutes: i64, lead_minutes: i64 },
    #[error("starts in {starts_in_days} days; this practice books at most {horizon_days} days ahead")]
    Horizon { starts_in_days: i64, horizon_days: i64 },
    #[error(
        "{start} to {end} is not one slot or a run of consecutive slots of the practitioner's working hours \
         (GET /v1/availability lists the free ones)"
    )]
    OutsideAvailability { start: String, end: String },
    #[error(
        "starts in {starts_in_minutes} minutes; patients may cancel or reschedule at most until {window_hours} hours \
         before the start (ask the practice)"
    )]
    CancellationWindow { starts_in_minutes: i64, window_hours: i64 },
}

impl BookingRefusal {
    /// The last segment of the problem type URI, one per rule.
    pub fn slug(&self) -> &'static str {
        match self {
            BookingRefusal::LeadTime { .. } => "booking-lead-time",
            BookingRefusal::Horizon { .. } => "booking-horizon",
            BookingRefusal::OutsideAvailability { .. } => "booking-outside-availability",
            BookingRefusal::CancellationWindow { .. } => "cancellation-window",
        }
    }
}

/// Whether a booking starting at `start`, made at `now`, respects the lead time and horizon.
pub fn check_lead_and_horizon(
    start: OffsetDateTime,
    now: OffsetDateTime,
    rules: &BookingRules,
) -> Result<(), BookingRefusal> {
    let ahead = start - now;
    // No lead time (0) leaves the start to `appointment::check_times`, which accepts a start up
    // to its late-booking grace in the past (a walk-in recorded as it happens).
    if rules.min_lead > Duration::ZERO && ahead < rules.min_lead {
        return Err(BookingRefusal::LeadTime {
            starts_in_minutes: ahead.whole_minutes(),
            lead_minutes: rules.min_lead.whole_minutes(),
        });
    }
    if ahead > rules.max_horizon {
        return Err(BookingRefusal::Horizon {
            starts_in_days: ahead.whole_days(),
            horizon_days: rules.max_horizon.whole_days(),
        });
    }
    Ok(())
}

/// Whether `[start, end)` is exactly a run of back-to-back slots among `free` (sorted by start,
/// as the availability computation returns them): one slot, or several consecutive ones.
/// Overlapping slots of differently aligned sources may both be offered; any chain counts.
pub fn covered_by_slots<T: Copy + PartialOrd>(free: &[(T, T)], start: T, end: T) -> bool {
    // Boundaries reachable from `start` along slots; a slot's start can only be reached through
    // slots starting before it, which come earlier in start order.
    let mut reached = vec![start];
    for &(s, e) in free {
        if e <= end && reached.contains(&s) && !reached.contains(&e) {
            reached.push(e);
        }
    }
    start < end && reached.contains(&end)
}

/// Whether a patient may still cancel or move an appointment starting at `start`.
pub fn check_patient_cancellation(
    start: OffsetDateTime,
    now: OffsetDateTime,
    rules: &BookingRules,
) -> Result<(), BookingRefusal> {
    let ahead = start - now;
    if ahead < rules.patient_cancel_window {
        return Err(BookingRefusal::CancellationWindow {
            starts_in_minutes: ahead.whole_minutes(),
            window_hours: rules.patient_cancel_window.whole_hours(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + Duration::minutes(minutes)
    }

    fn rules() -> BookingRules {
        BookingRules {
            min_lead: Duration::minutes(60),
            max_horizon: Duration::days(30),
            patient_cancel_window: Duration::hours(24),
        }
    }

    #[test]
    fn a_booking_starts_between_the_lead_time_and_the_horizon() {
        assert_eq!(check_lead_and_horizon(at(60), at(0), &rules()), Ok(()));
        let early = check_lead_and_horizon(at(10), at(0), &rules()).unwrap_err();
        assert_eq!(early.to_string(), "starts in 10 minutes; this practice books at least 60 minutes ahead");
        assert_eq!(early.slug(), "booking-lead-time");
        assert_eq!(check_lead_and_horizon(at(30 * 24 * 60), at(0), &rules()), Ok(()));
        let late = check_lead_and_horizon(at(31 * 24 * 60), at(0), &rules()).unwrap_err();
        assert_eq!(late, BookingRefusal::Horizon { starts_in_days: 31, horizon_days: 30 });
    }

    #[test]
    fn a_booking_is_one_slot_or_a_run_of_consecutive_slots() {
        let free = [(0, 30), (30, 60), (45, 75), (90, 120)];
        assert!(covered_by_slots(&free, 0, 30));
        assert!(covered_by_slots(&free, 0, 60));
        assert!(covered_by_slots(&free, 45, 75));
        assert!(!covered_by_slots(&free, 0, 45), "ends inside a slot");
        assert!(!covered_by_slots(&free, 10, 30), "starts off a slot boundary");
        assert!(!covered_by_slots(&free, 30, 120), "a gap at 75..90");
        assert!(!covered_by_slots(&free, 200, 230), "no slot at all");
        assert!(!covered_by_slots::<i32>(&[], 0, 30));
        assert!(covered_by_slots(&[(0, 30), (0, 60), (30, 90)], 0, 90), "through the shorter slot");
    }

    #[test]
    fn patients_cancel_only_before_the_window() {
        assert_eq!(check_patient_cancellation(at(24 * 60), at(0), &rules()), Ok(()));
        let refused = check_patient_cancellation(at(23 * 60), at(0), &rules()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "starts in 1380 minutes; patients may cancel or reschedule at most until 24 hours before the start (ask the practice)"
        );
    }
}
