//! The practice's booking rules: how soon and how far ahead a booking may start, that it is
//! made of free slots of the practitioner's availability, how late a patient may still
//! cancel or move it, and when an unanswered proposal expires. Plain functions of `now` and
//! the slots the caller computed.

use std::ops::RangeInclusive;

use time::{Duration, OffsetDateTime};

/// The practice's rules for bookings: its own (`PUT /v1/practices/{id}/booking-rules`), or
/// the deployment's `[scheduling]` values for a practice without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingRules {
    /// A booking starts at least this long after it is made.
    pub min_lead: Duration,
    /// A booking starts at most this long after it is made.
    pub max_horizon: Duration,
    /// A patient may not cancel or move a booked appointment this close to its start.
    pub patient_cancel_window: Duration,
    /// The practice's slot length in minutes: it replaces the `slotMinutes` of its
    /// practitioners' weekly rules and extra hours in the slot computation. `None`: each
    /// working pattern's own.
    pub slot_minutes: Option<u32>,
    /// A `proposed` or `pending` appointment nobody confirms is cancelled this long after it
    /// was made (at its start at the latest).
    pub proposal_expiry: Duration,
}

/// The accepted ranges of each rule, for the configuration and the API alike.
pub const MIN_LEAD_MINUTES: RangeInclusive<i64> = 0..=525_600;
pub const MAX_HORIZON_DAYS: RangeInclusive<i64> = 1..=3650;
pub const PATIENT_CANCEL_WINDOW_HOURS: RangeInclusive<i64> = 0..=8760;
pub const PROPOSAL_EXPIRY_HOURS: RangeInclusive<i64> = 1..=720;
/// A practice's slot length: as a saved working pattern's (10 to 240 minutes).
pub const SLOT_MINUTES: RangeInclusive<i64> = 10..=240;

/// The rules as numbers in the units the configuration and the API use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleValues {
    pub min_lead_minutes: i64,
    pub max_horizon_days: i64,
    pub slot_minutes: Option<i64>,
    pub patient_cancel_window_hours: i64,
    pub proposal_expiry_hours: i64,
}

/// Which value is out of range, named as the API's field (camelCase), with the accepted range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRule {
    pub field: &'static str,
    pub message: String,
}

impl RuleValues {
    /// Checks every range, and that some start lies between the lead time and the horizon.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        let within = |field: &'static str, value: i64, range: RangeInclusive<i64>, unit: &str| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(InvalidRule {
                    field,
                    message: format!("must be between {} and {} {unit}, got {value}", range.start(), range.end()),
                })
            }
        };
        within("minLeadMinutes", self.min_lead_minutes, MIN_LEAD_MINUTES, "minutes")?;
        within("maxHorizonDays", self.max_horizon_days, MAX_HORIZON_DAYS, "days")?;
        if let Some(slot) = self.slot_minutes {
            within("slotMinutes", slot, SLOT_MINUTES, "minutes")?;
        }
        within("patientCancelWindowHours", self.patient_cancel_window_hours, PATIENT_CANCEL_WINDOW_HOURS, "hours")?;
        within("proposalExpiryHours", self.proposal_expiry_hours, PROPOSAL_EXPIRY_HOURS, "hours")?;
        if self.min_lead_minutes >= self.max_horizon_days * 24 * 60 {
            return Err(InvalidRule {
                field: "minLeadMinutes",
                message: format!(
                    "{} minutes is not less than the horizon of {} days: nothing could be booked",
                    self.min_lead_minutes, self.max_horizon_days
                ),
            });
        }
        Ok(())
    }

    /// The rules these values give (call [`RuleValues::validate`] first).
    pub fn rules(&self) -> BookingRules {
        BookingRules {
            min_lead: Duration::minutes(self.min_lead_minutes),
            max_horizon: Duration::days(self.max_horizon_days),
            patient_cancel_window: Duration::hours(self.patient_cancel_window_hours),
            slot_minutes: self.slot_minutes.and_then(|m| u32::try_from(m).ok()),
            proposal_expiry: Duration::hours(self.proposal_expiry_hours),
        }
    }
}

/// When a `proposed` or `pending` appointment made at `created` and starting at `start`
/// expires: `proposal_expiry` after it was made, never later than its start.
pub fn proposal_expires_at(created: OffsetDateTime, start: OffsetDateTime, rules: &BookingRules) -> OffsetDateTime {
    (created + rules.proposal_expiry).min(start)
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
    #[error(
        "the practitioner has no working pattern (no weekly hours, no extra hours), so no time is bookable; \
         set one with PUT /v1/practitioners/{practitioner}/availability"
    )]
    NoWorkingPattern { practitioner: String },
}

impl BookingRefusal {
    /// The last segment of the problem type URI, one per rule.
    pub fn slug(&self) -> &'static str {
        match self {
            BookingRefusal::LeadTime { .. } => "booking-lead-time",
            BookingRefusal::Horizon { .. } => "booking-horizon",
            BookingRefusal::OutsideAvailability { .. } => "booking-outside-availability",
            BookingRefusal::CancellationWindow { .. } => "cancellation-window",
            BookingRefusal::NoWorkingPattern { .. } => "booking-no-working-pattern",
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
            slot_minutes: None,
            proposal_expiry: Duration::hours(48),
        }
    }

    fn values() -> RuleValues {
        RuleValues {
            min_lead_minutes: 60,
            max_horizon_days: 30,
            slot_minutes: Some(30),
            patient_cancel_window_hours: 24,
            proposal_expiry_hours: 48,
        }
    }

    #[test]
    fn rule_values_are_checked_field_by_field() {
        assert_eq!(values().validate(), Ok(()));
        assert_eq!(values().rules().slot_minutes, Some(30));
        let refused = |change: fn(&mut RuleValues)| {
            let mut v = values();
            change(&mut v);
            v.validate().unwrap_err()
        };
        let e = refused(|v| v.min_lead_minutes = -1);
        assert_eq!((e.field, e.message.as_str()), ("minLeadMinutes", "must be between 0 and 525600 minutes, got -1"));
        assert_eq!(refused(|v| v.max_horizon_days = 0).field, "maxHorizonDays");
        assert_eq!(refused(|v| v.max_horizon_days = 3651).field, "maxHorizonDays");
        assert_eq!(refused(|v| v.slot_minutes = Some(9)).field, "slotMinutes");
        assert_eq!(refused(|v| v.slot_minutes = Some(241)).field, "slotMinutes");
        assert_eq!(refused(|v| v.patient_cancel_window_hours = 8761).field, "patientCancelWindowHours");
        assert_eq!(refused(|v| v.proposal_expiry_hours = 0).field, "proposalExpiryHours");
        assert_eq!(refused(|v| v.proposal_expiry_hours = 721).field, "proposalExpiryHours");
        let e = refused(|v| v.min_lead_minutes = 30 * 24 * 60);
        assert_eq!(e.field, "minLeadMinutes");
        assert!(e.message.contains("nothing could be booked"), "{e}");
        let mut none = values();
        none.slot_minutes = None;
        assert_eq!(none.validate(), Ok(()));
    }

    #[test]
    fn a_proposal_expires_after_the_window_but_never_after_its_start() {
        assert_eq!(proposal_expires_at(at(0), at(72 * 60), &rules()), at(48 * 60));
        assert_eq!(proposal_expires_at(at(0), at(60), &rules()), at(60));
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
