//! The one vocabulary of scheduling audit actions. REST handlers, the Socket.IO signaling that
//! moves appointments on, the no-show sweeper and the FHIR façade all name their events here, so
//! that an auditor filtering on `appointment.arrive` finds every arrival however it was recorded
//! (security issue 18, item 10: signaling used to write `appointment.arrived`).

use crate::store::AppointmentStatus;

pub const APPOINTMENT_CREATE: &str = "appointment.create";
pub const APPOINTMENT_READ: &str = "appointment.read";
pub const APPOINTMENT_LIST: &str = "appointment.list";
pub const APPOINTMENT_RESCHEDULE: &str = "appointment.reschedule";
/// The patient confirmed an appointment someone else booked for them (a care relationship).
pub const APPOINTMENT_PATIENT_CONFIRM: &str = "appointment.patient-confirm";
pub const PATIENT_CREATE: &str = "patient.create";
pub const PATIENT_READ: &str = "patient.read";
pub const PATIENT_UPDATE: &str = "patient.update";
/// A practitioner read a record without a care relationship, giving a reason
/// (break-the-glass). Auditors list these with `GET /v1/audit?action=patient.read.emergency`.
pub const PATIENT_READ_EMERGENCY: &str = "patient.read.emergency";
pub const PATIENT_UPDATE_EMERGENCY: &str = "patient.update.emergency";
pub const AVAILABILITY_UPDATE: &str = "availability.update";
/// An admin set a practice's booking rules; the target holds the old and new values.
pub const BOOKING_RULES_UPDATE: &str = "practice.booking-rules.update";
/// An admin dropped a practice's own booking rules (back to the deployment's).
pub const BOOKING_RULES_RESET: &str = "practice.booking-rules.reset";
/// The system cancelled a `proposed` or `pending` appointment nobody confirmed in time
/// (outcome `success:proposal-expired`, no actor): the cancellation's own action.
pub const PROPOSAL_EXPIRED_OUTCOME: &str = "success:proposal-expired";

/// The path verbs of `POST /v1/appointments/{id}/{verb}` and the status each leads to.
pub const VERBS: [(&str, AppointmentStatus); 8] = [
    ("confirm", AppointmentStatus::Booked),
    ("cancel", AppointmentStatus::Cancelled),
    ("reschedule", AppointmentStatus::Booked),
    ("arrive", AppointmentStatus::Arrived),
    ("check-in", AppointmentStatus::CheckedIn),
    ("complete", AppointmentStatus::Fulfilled),
    ("no-show", AppointmentStatus::Noshow),
    ("entered-in-error", AppointmentStatus::EnteredInError),
];

/// The audit action of a status change to `next`, however it was asked for: the REST verb's
/// name (`appointment.arrive`, `appointment.check-in`, …).
pub fn transition(next: AppointmentStatus) -> &'static str {
    use AppointmentStatus::*;
    match next {
        Proposed | Pending | Booked => "appointment.confirm",
        Arrived => "appointment.arrive",
        CheckedIn => "appointment.check-in",
        Fulfilled => "appointment.complete",
        Cancelled => "appointment.cancel",
        Noshow => "appointment.no-show",
        EnteredInError => "appointment.entered-in-error",
    }
}

/// The audit action of a REST verb (`None` for an unknown verb).
pub fn of_verb(verb: &str) -> Option<&'static str> {
    let (_, next) = VERBS.iter().find(|(v, _)| *v == verb)?;
    Some(if verb == "reschedule" { APPOINTMENT_RESCHEDULE } else { transition(*next) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_is_audited_under_its_own_name() {
        for (verb, _) in VERBS {
            assert_eq!(of_verb(verb).map(str::to_owned), Some(format!("appointment.{verb}")));
        }
        assert_eq!(transition(AppointmentStatus::Arrived), "appointment.arrive");
        assert_eq!(transition(AppointmentStatus::CheckedIn), "appointment.check-in");
        assert_eq!(of_verb("dance"), None);
    }
}
