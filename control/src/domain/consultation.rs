//! May this caller join this consultation now? One decision for both doors into a
//! consultation: `POST /v1/appointments/{id}/session` (HTTP) and `room:join` on `/rtc`
//! (Socket.IO). Each transport loads the records, asks [`may_join`], audits a refusal under
//! [`JoinRefusal::outcome`] and translates it with its own table (HTTP status, Socket.IO code).
//!
//! The checks, in this order (a caller failing two gets the first):
//!
//! 1. a participant: the appointment's patient or practitioner (an admin sees the appointment
//!    but is not in the consultation);
//! 2. the status holds a consultation (pending, booked, arrived, checked-in);
//! 3. a patient has given every required consent of the current privacy notice: before the
//!    window, so a patient who is early learns what to do while there is still time;
//! 4. the join window: from `join-before-minutes` before the start to `join-after-minutes`
//!    after the end.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::store::{Appointment, AppointmentStatus, Role};

/// The audit action of the HTTP door (it hands out the session's credentials).
pub const AUDIT_SESSION: &str = "consultation.session";
/// The audit action of the Socket.IO door (it puts the caller in the room).
pub const AUDIT_JOIN: &str = "consultation.join";

/// Who the caller is in the scheduling records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Patient(Uuid),
    Practitioner(Uuid),
    /// An admin, or an account without its record yet.
    Neither,
}

/// The required purposes of the current privacy notice the patient has not consented to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingConsent {
    pub notice_version: String,
    pub purposes: Vec<String>,
}

impl MissingConsent {
    /// What the patient is told; Socket.IO recognises the refusal by its first words.
    pub fn message(&self) -> String {
        format!(
            "consent required: give consent to {} under privacy notice {} (POST /v1/me/consents)",
            self.purposes.join(", "),
            self.notice_version
        )
    }
}

/// How long before the start the room opens and after the end it closes
/// (`scheduling.join-before-minutes`, `scheduling.join-after-minutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    pub before: Duration,
    pub after: Duration,
}

/// When an appointment's consultation room is open: `opens_at <= now < closes_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindow {
    pub opens_at: OffsetDateTime,
    pub closes_at: OffsetDateTime,
}

impl JoinWindow {
    pub fn of(a: &Appointment, rule: WindowRule) -> JoinWindow {
        JoinWindow { opens_at: a.starts_at - rule.before, closes_at: a.ends_at + rule.after }
    }
}

/// Everything the decision needs, loaded by the transport.
#[derive(Debug, Clone)]
pub struct JoinRequest<'a> {
    pub appointment: &'a Appointment,
    pub caller: Party,
    /// `None` when nothing is missing (not a patient, no notice published, or all given).
    pub missing_consent: Option<MissingConsent>,
    pub rule: WindowRule,
    pub now: OffsetDateTime,
}

/// A participant let in: as whom, and until when (the relay credentials end with the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub role: Role,
    pub window: JoinWindow,
}

/// Why a caller may not join, in the order checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefusal {
    NotParticipant,
    Status(AppointmentStatus),
    ConsentMissing(MissingConsent),
    TooEarly { opens_at: OffsetDateTime },
    Closed { closes_at: OffsetDateTime },
}

impl JoinRefusal {
    /// The outcome of the refusal's audit event (the same on both doors).
    pub fn outcome(&self) -> &'static str {
        match self {
            JoinRefusal::NotParticipant => "denied",
            JoinRefusal::Status(_) => "refused:status",
            JoinRefusal::ConsentMissing(_) => "refused:consent",
            JoinRefusal::TooEarly { .. } => "refused:too-early",
            JoinRefusal::Closed { .. } => "refused:closed",
        }
    }

    /// What the caller is told (the same on both doors).
    pub fn message(&self) -> String {
        match self {
            JoinRefusal::NotParticipant => "only the appointment's patient and practitioner may join".into(),
            JoinRefusal::Status(s) => format!("a {} appointment has no consultation", s.as_str()),
            JoinRefusal::ConsentMissing(m) => m.message(),
            JoinRefusal::TooEarly { opens_at } => format!("the consultation room opens at {}", rfc3339(*opens_at)),
            JoinRefusal::Closed { closes_at } => format!("the consultation room closed at {}", rfc3339(*closes_at)),
        }
    }
}

/// RFC 3339, as every time the control plane shows.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats as RFC 3339")
}

/// The decision; see the module documentation for the order of the checks.
pub fn may_join(req: JoinRequest<'_>) -> Result<Admission, JoinRefusal> {
    let a = req.appointment;
    let role = match req.caller {
        Party::Patient(p) if p == a.patient_id => Role::Patient,
        Party::Practitioner(p) if p == a.practitioner_id => Role::Practitioner,
        _ => return Err(JoinRefusal::NotParticipant),
    };
    if !a.status.holds_time() {
        return Err(JoinRefusal::Status(a.status));
    }
    if role == Role::Patient {
        if let Some(missing) = req.missing_consent {
            return Err(JoinRefusal::ConsentMissing(missing));
        }
    }
    let window = JoinWindow::of(a, req.rule);
    if req.now < window.opens_at {
        return Err(JoinRefusal::TooEarly { opens_at: window.opens_at });
    }
    if req.now >= window.closes_at {
        return Err(JoinRefusal::Closed { closes_at: window.closes_at });
    }
    Ok(Admission { role, window })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: WindowRule = WindowRule { before: Duration::minutes(15), after: Duration::minutes(30) };

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + Duration::minutes(minutes)
    }

    /// An appointment from minute 0 to minute 20.
    fn appointment(status: AppointmentStatus) -> Appointment {
        Appointment {
            id: Uuid::from_u128(1),
            practitioner_id: Uuid::from_u128(2),
            patient_id: Uuid::from_u128(3),
            starts_at: at(0),
            ends_at: at(20),
            status,
            cancel_reason: None,
            created_by: Uuid::from_u128(4),
            idempotency_key: None,
            created_at: at(-100),
            updated_at: at(-100),
            patient_confirmed_at: None,
        }
    }

    fn missing() -> Option<MissingConsent> {
        Some(MissingConsent { notice_version: "2".into(), purposes: vec!["telehealth".into()] })
    }

    fn ask(
        a: &Appointment,
        caller: Party,
        missing_consent: Option<MissingConsent>,
        now: i64,
    ) -> Result<Admission, JoinRefusal> {
        may_join(JoinRequest { appointment: a, caller, missing_consent, rule: RULE, now: at(now) })
    }

    const PATIENT: Party = Party::Patient(Uuid::from_u128(3));
    const DOCTOR: Party = Party::Practitioner(Uuid::from_u128(2));

    #[test]
    fn participants_join_inside_the_window_until_it_closes() {
        let a = appointment(AppointmentStatus::Booked);
        let window = JoinWindow { opens_at: at(-15), closes_at: at(50) };
        assert_eq!(ask(&a, PATIENT, None, -15), Ok(Admission { role: Role::Patient, window }));
        assert_eq!(ask(&a, DOCTOR, None, 49), Ok(Admission { role: Role::Practitioner, window }));
        assert_eq!(ask(&a, PATIENT, None, -16), Err(JoinRefusal::TooEarly { opens_at: at(-15) }));
        assert_eq!(ask(&a, DOCTOR, None, 50), Err(JoinRefusal::Closed { closes_at: at(50) }));
    }

    #[test]
    fn only_the_appointments_own_patient_and_practitioner() {
        let a = appointment(AppointmentStatus::Booked);
        for caller in [Party::Patient(Uuid::from_u128(9)), Party::Practitioner(Uuid::from_u128(3)), Party::Neither] {
            assert_eq!(ask(&a, caller, None, 0), Err(JoinRefusal::NotParticipant), "{caller:?}");
        }
    }

    #[test]
    fn a_status_without_a_consultation_is_refused() {
        for status in [AppointmentStatus::Cancelled, AppointmentStatus::Fulfilled, AppointmentStatus::Noshow] {
            assert_eq!(ask(&appointment(status), DOCTOR, None, 0), Err(JoinRefusal::Status(status)));
        }
        assert!(ask(&appointment(AppointmentStatus::CheckedIn), DOCTOR, None, 0).is_ok());
    }

    #[test]
    fn consent_binds_patients_only() {
        let a = appointment(AppointmentStatus::Booked);
        assert_eq!(ask(&a, PATIENT, missing(), 0), Err(JoinRefusal::ConsentMissing(missing().unwrap())));
        assert!(ask(&a, DOCTOR, missing(), 0).is_ok());
    }

    #[test]
    fn the_first_failed_check_decides() {
        let cancelled = appointment(AppointmentStatus::Cancelled);
        let outsider = Party::Patient(Uuid::from_u128(9));
        assert_eq!(ask(&cancelled, outsider, missing(), -100), Err(JoinRefusal::NotParticipant));
        assert_eq!(ask(&cancelled, PATIENT, missing(), -100), Err(JoinRefusal::Status(AppointmentStatus::Cancelled)));
        let booked = appointment(AppointmentStatus::Booked);
        assert_eq!(ask(&booked, PATIENT, missing(), -100).unwrap_err().outcome(), "refused:consent");
        assert_eq!(ask(&booked, PATIENT, missing(), 100).unwrap_err().outcome(), "refused:consent");
    }

    #[test]
    fn refusals_say_when_and_what() {
        let a = appointment(AppointmentStatus::Booked);
        let early = ask(&a, PATIENT, None, -60).unwrap_err();
        assert_eq!(early.message(), format!("the consultation room opens at {}", rfc3339(at(-15))));
        let consent = ask(&a, PATIENT, missing(), 0).unwrap_err();
        assert!(consent.message().starts_with("consent required: give consent to telehealth under privacy notice 2"));
    }
}
