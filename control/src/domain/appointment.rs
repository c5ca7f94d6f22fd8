//! An appointment's times and status: what a booking may ask for, which status change each
//! verb of `POST /v1/appointments/{id}/{action}` asks for and who may ask, and when an
//! appointment nobody arrived for becomes a no-show.

use time::{Duration, OffsetDateTime};

use crate::store::AppointmentStatus;

/// How far in the past a booking may start: a booking made during the first minutes of its
/// own slot (at the reception desk) is allowed.
pub const LATE_BOOKING: Duration = Duration::minutes(5);

/// Why a booking's or a rescheduling's times are refused: the field and the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimesRefusal {
    #[error("an appointment lasts 5 to 240 minutes")]
    Length,
    #[error("must not be in the past")]
    Past,
}

impl TimesRefusal {
    /// The request field the refusal is about.
    pub fn field(self) -> &'static str {
        match self {
            TimesRefusal::Length => "end",
            TimesRefusal::Past => "start",
        }
    }
}

pub fn check_times(start: OffsetDateTime, end: OffsetDateTime, now: OffsetDateTime) -> Result<(), TimesRefusal> {
    let minutes = (end - start).whole_minutes();
    if end <= start || !(5..=240).contains(&minutes) {
        return Err(TimesRefusal::Length);
    }
    if start < now - LATE_BOOKING {
        return Err(TimesRefusal::Past);
    }
    Ok(())
}

/// A status-changing verb: the status it asks for, and whether a patient may ask it (patients
/// cancel, reschedule, announce their arrival and confirm a booking made for them; the rest is
/// the clinic's). `None` for an unknown verb.
pub fn verb(action: &str) -> Option<(AppointmentStatus, bool)> {
    use AppointmentStatus::*;
    Some(match action {
        "confirm" => (Booked, true),
        "cancel" => (Cancelled, true),
        "reschedule" => (Booked, true),
        "arrive" => (Arrived, true),
        "check-in" => (CheckedIn, false),
        "complete" => (Fulfilled, false),
        "no-show" => (Noshow, false),
        "entered-in-error" => (EnteredInError, false),
        _ => return None,
    })
}

/// Whether a patient's confirmation applies to an appointment in `status`.
pub fn patient_may_confirm(status: AppointmentStatus) -> bool {
    use AppointmentStatus::*;
    matches!(status, Proposed | Pending | Booked)
}

/// Whether `status` may be moved to new times (only a booked appointment).
pub fn may_reschedule(status: AppointmentStatus) -> bool {
    status == AppointmentStatus::Booked
}

/// What happens in a consultation room that moves its appointment on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomEvent {
    /// A patient entered the lobby.
    PatientWaiting,
    /// The practitioner admitted the patient.
    Admitted,
    /// The practitioner ended the consultation.
    Ended,
}

/// The statuses a room event moves an appointment from, in the order tried, and the status it
/// moves it to. Any other status (already further on, cancelled meanwhile…) is left as it is.
pub fn follow(event: RoomEvent) -> (&'static [AppointmentStatus], AppointmentStatus) {
    use AppointmentStatus::*;
    match event {
        RoomEvent::PatientWaiting => (&[Booked], Arrived),
        RoomEvent::Admitted => (&[Arrived, Booked], CheckedIn),
        RoomEvent::Ended => (&[CheckedIn, Arrived], Fulfilled),
    }
}

/// Booked appointments that started before this instant, with nobody arrived, are no-shows.
pub fn no_show_cutoff(now: OffsetDateTime, grace: Duration) -> OffsetDateTime {
    now - grace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn bookings_last_5_to_240_minutes_and_start_at_most_5_minutes_ago() {
        assert_eq!(check_times(at(0), at(30), at(0)), Ok(()));
        assert_eq!(check_times(at(-5), at(30), at(0)), Ok(()));
        assert_eq!(check_times(at(-6), at(30), at(0)), Err(TimesRefusal::Past));
        assert_eq!(check_times(at(0), at(4), at(0)), Err(TimesRefusal::Length));
        assert_eq!(check_times(at(0), at(241), at(0)), Err(TimesRefusal::Length));
        assert_eq!(check_times(at(10), at(0), at(0)).unwrap_err().field(), "end");
    }

    #[test]
    fn patients_may_not_use_the_clinics_verbs() {
        assert_eq!(verb("arrive"), Some((AppointmentStatus::Arrived, true)));
        assert_eq!(verb("check-in"), Some((AppointmentStatus::CheckedIn, false)));
        assert_eq!(verb("no-show"), Some((AppointmentStatus::Noshow, false)));
        assert_eq!(verb("delete"), None);
    }

    #[test]
    fn the_room_moves_its_appointment_only_along_legal_transitions() {
        for event in [RoomEvent::PatientWaiting, RoomEvent::Admitted, RoomEvent::Ended] {
            let (from, to) = follow(event);
            assert!(from.iter().all(|s| s.can_become(to)), "{event:?}: {from:?} -> {to:?}");
        }
    }

    #[test]
    fn the_no_show_cutoff_is_the_grace_period_ago() {
        assert_eq!(no_show_cutoff(at(0), Duration::minutes(15)), at(-15));
    }
}
