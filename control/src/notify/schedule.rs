//! When to try again and when to remind: pure rules, with `now` and the randomness passed in.

use time::{Duration, OffsetDateTime};

use crate::store::{Appointment, AppointmentStatus};

/// How long to wait after the `failures`-th failed attempt (from 1): `base` doubled per
/// further failure, at most `max`, plus `jitter` (0 to 1) of a fifth more so that deliveries
/// that failed together do not retry together.
pub fn retry_delay(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let delay = (base * (1i64 << doublings) as f64).min(max);
    delay + delay * (jitter.clamp(0.0, 1.0) / 5.0)
}

/// The reminders (minutes before the start, from `lead_minutes`) that are due for `a` at `now`:
/// the appointment is booked, its start is ahead, the reminder's moment has come, and the
/// booking was made before that moment (a booking made an hour ahead gets no day-ahead
/// reminder).
pub fn reminders_due(a: &Appointment, now: OffsetDateTime, lead_minutes: &[i64]) -> Vec<i64> {
    if a.status != AppointmentStatus::Booked || now >= a.starts_at {
        return Vec::new();
    }
    lead_minutes
        .iter()
        .copied()
        .filter(|m| {
            let moment = a.starts_at - Duration::minutes(*m);
            moment <= now && a.created_at <= moment
        })
        .collect()
}

/// How far ahead the scheduler must look to find every appointment a reminder may be due for.
pub fn horizon(lead_minutes: &[i64]) -> Duration {
    Duration::minutes(lead_minutes.iter().copied().max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn retries_double_up_to_the_cap_with_at_most_a_fifth_of_jitter() {
        let (base, max) = (Duration::seconds(10), Duration::seconds(60));
        assert_eq!(retry_delay(1, base, max, 0.0), Duration::seconds(10));
        assert_eq!(retry_delay(2, base, max, 0.0), Duration::seconds(20));
        assert_eq!(retry_delay(3, base, max, 0.0), Duration::seconds(40));
        assert_eq!(retry_delay(4, base, max, 0.0), Duration::seconds(60));
        assert_eq!(retry_delay(40, base, max, 1.0), Duration::seconds(72));
    }

    fn booked(start_in_minutes: i64, booked_minutes_before_now: i64, now: OffsetDateTime) -> Appointment {
        let start = now + Duration::minutes(start_in_minutes);
        Appointment {
            id: Uuid::new_v4(),
            practitioner_id: Uuid::new_v4(),
            patient_id: Uuid::new_v4(),
            starts_at: start,
            ends_at: start + Duration::minutes(30),
            status: AppointmentStatus::Booked,
            cancel_reason: None,
            created_by: Uuid::new_v4(),
            idempotency_key: None,
            created_at: now - Duration::minutes(booked_minutes_before_now),
            updated_at: now,
            patient_confirmed_at: None,
        }
    }

    #[test]
    fn a_reminder_is_due_from_its_moment_until_the_start() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let leads = [1440, 15];
        assert_eq!(reminders_due(&booked(20, 3000, now), now, &leads), vec![1440]);
        assert_eq!(reminders_due(&booked(10, 3000, now), now, &leads), vec![1440, 15]);
        assert_eq!(reminders_due(&booked(-1, 3000, now), now, &leads), Vec::<i64>::new());
        // Booked 10 minutes ago for 20 minutes from now: the day-ahead moment was before the booking.
        assert_eq!(reminders_due(&booked(14, 10, now), now, &leads), vec![15]);
        let mut cancelled = booked(10, 3000, now);
        cancelled.status = AppointmentStatus::Cancelled;
        assert!(reminders_due(&cancelled, now, &leads).is_empty());
        assert_eq!(horizon(&leads), Duration::minutes(1440));
    }
}
