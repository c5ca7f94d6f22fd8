//! What an event says: its kind and its payload. Pure (no clock, no I/O): the caller passes
//! the time and the ids.
//!
//! A payload carries pseudonymous ids (the appointment's, the patient's and the
//! practitioner's record ids), times and a link to the client, never a name, an e-mail, a
//! phone number, a diagnosis or a note. Anything more is an [`ExtraField`] the operator named.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::Appointment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventKind {
    #[serde(rename = "appointment.booked")]
    Booked,
    #[serde(rename = "appointment.rescheduled")]
    Rescheduled,
    #[serde(rename = "appointment.cancelled")]
    Cancelled,
    #[serde(rename = "appointment.reminder")]
    Reminder,
    #[serde(rename = "lobby.patient-waiting")]
    PatientWaiting,
    #[serde(rename = "consultation.ended")]
    ConsultationEnded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Booked => "appointment.booked",
            EventKind::Rescheduled => "appointment.rescheduled",
            EventKind::Cancelled => "appointment.cancelled",
            EventKind::Reminder => "appointment.reminder",
            EventKind::PatientWaiting => "lobby.patient-waiting",
            EventKind::ConsultationEnded => "consultation.ended",
        }
    }
}

/// A field a payload carries only when the operator lists it in `payload-fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraField {
    /// The free-text reason of a cancellation (it may say more than an id does).
    CancelReason,
}

/// One event about one appointment.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub kind: EventKind,
    pub at: OffsetDateTime,
    /// For a reminder: how many minutes before the start it is sent.
    pub reminder_minutes: Option<i64>,
}

impl Event {
    /// What tells this event from another of its kind for the same appointment: a reminder's
    /// start and lead time, a reschedule's new start; nothing for the others (each happens once).
    pub fn occurrence(&self, appointment: &Appointment) -> String {
        let start = appointment.starts_at.unix_timestamp();
        match (self.kind, self.reminder_minutes) {
            (EventKind::Reminder, Some(minutes)) => format!("{start}-{minutes}m"),
            (EventKind::Rescheduled, _) => start.to_string(),
            _ => String::new(),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The JSON body sent for `event` about `appointment`. `link_base` is the public URL of the
/// service; `extra` the operator's `payload-fields`.
pub fn payload(event: &Event, appointment: &Appointment, link_base: &str, extra: &[ExtraField]) -> Value {
    let mut body = json!({
        "type": event.kind.as_str(),
        "id": event.id,
        "occurredAt": rfc3339(event.at),
        "appointment": {
            "id": appointment.id,
            "patientId": appointment.patient_id,
            "practitionerId": appointment.practitioner_id,
            "start": rfc3339(appointment.starts_at),
            "end": rfc3339(appointment.ends_at),
            "status": appointment.status.as_str(),
        },
        "link": format!("{}/?appointment={}", link_base.trim_end_matches('/'), appointment.id),
    });
    if let Some(minutes) = event.reminder_minutes {
        body["reminderMinutesBefore"] = json!(minutes);
    }
    for field in extra {
        match field {
            ExtraField::CancelReason => {
                if let Some(reason) = &appointment.cancel_reason {
                    body["appointment"]["cancelReason"] = json!(reason);
                }
            }
        }
    }
    body
}

/// The body of a Web Push message (encrypted to the browser, but carried by a browser vendor's
/// push service): less than a webhook's, the event type, the appointment's pseudonymous id
/// and a link; `payload-fields` do not apply.
pub fn push_payload(event: &Event, appointment: &Appointment, link_base: &str) -> Value {
    let mut body = json!({
        "type": event.kind.as_str(),
        "id": event.id,
        "appointmentId": appointment.id,
        "link": format!("{}/?appointment={}", link_base.trim_end_matches('/'), appointment.id),
    });
    if let Some(minutes) = event.reminder_minutes {
        body["reminderMinutesBefore"] = json!(minutes);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AppointmentStatus;

    fn appointment() -> Appointment {
        let start = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        Appointment {
            id: Uuid::new_v4(),
            practitioner_id: Uuid::new_v4(),
            patient_id: Uuid::new_v4(),
            starts_at: start,
            ends_at: start + time::Duration::minutes(30),
            status: AppointmentStatus::Cancelled,
            cancel_reason: Some("patient has a fever".into()),
            created_by: Uuid::new_v4(),
            idempotency_key: None,
            created_at: start,
            updated_at: start,
            patient_confirmed_at: None,
        }
    }

    #[test]
    fn the_default_payload_has_ids_times_and_a_link_only() {
        let a = appointment();
        let e = Event { id: Uuid::new_v4(), kind: EventKind::Cancelled, at: a.starts_at, reminder_minutes: None };
        let body = payload(&e, &a, "https://tele.example.org/", &[]);
        assert_eq!(body["type"], "appointment.cancelled");
        assert_eq!(body["appointment"]["patientId"], a.patient_id.to_string());
        assert_eq!(body["link"], format!("https://tele.example.org/?appointment={}", a.id));
        assert!(!body.to_string().contains("fever"), "the reason is free text: only when the operator asks");
        let with = payload(&e, &a, "https://tele.example.org", &[ExtraField::CancelReason]);
        assert_eq!(with["appointment"]["cancelReason"], "patient has a fever");
    }

    #[test]
    fn reminders_and_reschedules_are_told_apart_by_start_and_lead_time() {
        let a = appointment();
        let reminder =
            |m| Event { id: Uuid::new_v4(), kind: EventKind::Reminder, at: a.starts_at, reminder_minutes: Some(m) };
        assert_ne!(reminder(15).occurrence(&a), reminder(1440).occurrence(&a));
        let booked = Event { id: Uuid::new_v4(), kind: EventKind::Booked, at: a.starts_at, reminder_minutes: None };
        assert_eq!(booked.occurrence(&a), "");
    }
}
