//! Scheduling records as the store keeps them. Patient identifying fields arrive here already
//! encrypted (`*_enc`) with their blind indexes (`*_index`): the store never sees them in clear.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// FHIR R4 `Appointment.status` values used by teletip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AppointmentStatus {
    Proposed,
    Pending,
    Booked,
    Arrived,
    CheckedIn,
    Fulfilled,
    Cancelled,
    Noshow,
    EnteredInError,
}

impl AppointmentStatus {
    pub const ALL: [AppointmentStatus; 9] = [
        AppointmentStatus::Proposed,
        AppointmentStatus::Pending,
        AppointmentStatus::Booked,
        AppointmentStatus::Arrived,
        AppointmentStatus::CheckedIn,
        AppointmentStatus::Fulfilled,
        AppointmentStatus::Cancelled,
        AppointmentStatus::Noshow,
        AppointmentStatus::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentStatus::Proposed => "proposed",
            AppointmentStatus::Pending => "pending",
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Arrived => "arrived",
            AppointmentStatus::CheckedIn => "checked-in",
            AppointmentStatus::Fulfilled => "fulfilled",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::Noshow => "noshow",
            AppointmentStatus::EnteredInError => "entered-in-error",
        }
    }

    pub fn parse(s: &str) -> Option<AppointmentStatus> {
        AppointmentStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Statuses that hold the practitioner's time (the schema refuses overlaps among them).
    pub fn holds_time(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Pending
                | AppointmentStatus::Booked
                | AppointmentStatus::Arrived
                | AppointmentStatus::CheckedIn
        )
    }

    /// The transitions teletip allows. Everything else is a 409.
    pub fn can_become(self, next: AppointmentStatus) -> bool {
        use AppointmentStatus::*;
        matches!(
            (self, next),
            (Proposed, Pending | Booked | Cancelled)
                | (Pending, Booked | Cancelled)
                | (Booked, Arrived | CheckedIn | Cancelled | Noshow)
                | (Arrived, CheckedIn | Fulfilled | Cancelled | Noshow)
                | (CheckedIn, Fulfilled | Cancelled)
        ) || (next == EnteredInError && self != EnteredInError)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practitioner {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub display_name: String,
    pub specialty: String,
    /// IANA time zone name (e.g. Europe/Istanbul).
    pub time_zone: String,
    /// The practice it works for, if any.
    pub practice_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRecord {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub display_name: String,
    pub birth_date: Option<Date>,
    pub national_id_enc: Option<String>,
    pub national_id_index: Option<String>,
    pub phone_enc: Option<String>,
    pub phone_index: Option<String>,
    pub email_enc: Option<String>,
    pub email_index: Option<String>,
    pub notes_enc: Option<String>,
    pub anonymized_at: Option<OffsetDateTime>,
    /// For an anonymised record: when medical-record retention ends and the retention job may
    /// delete it.
    pub retain_until: Option<OffsetDateTime>,
    /// Where the patient's data and consultation media stay (a region label); `None`: the
    /// deployment's region (`domain::residency`).
    pub data_region: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    pub id: Uuid,
    pub practitioner_id: Uuid,
    pub patient_id: Uuid,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub status: AppointmentStatus,
    pub cancel_reason: Option<String>,
    pub created_by: Uuid,
    pub idempotency_key: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When the patient booked it (or an admin did, on their behalf) or confirmed it: only
    /// then does it make a care relationship (`scheduling::access`).
    pub patient_confirmed_at: Option<OffsetDateTime>,
}

/// The time window of a care relationship, as `scheduling::access` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CareWindow {
    pub now: OffsetDateTime,
    /// Appointments that ended before this no longer count.
    pub ended_after: OffsetDateTime,
}

/// A weekly availability rule as stored: ISO weekday (1 = Monday) and minutes after local
/// midnight in the practitioner's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRule {
    pub weekday: i16,
    pub from_minute: i32,
    pub to_minute: i32,
    pub slot_minutes: i32,
}

/// A leave (`unavailable`) or `extra-hours` exception as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredException {
    pub kind: String,
    pub starts_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub slot_minutes: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    pub practitioner_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub status: Option<AppointmentStatus>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::AppointmentStatus::*;
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_legal_transitions_pass() {
        for s in AppointmentStatus::ALL {
            assert_eq!(AppointmentStatus::parse(s.as_str()), Some(s));
            assert!(!s.can_become(s), "{s:?} -> itself");
        }
        assert!(Booked.can_become(Arrived) && Booked.can_become(Noshow) && CheckedIn.can_become(Fulfilled));
        assert!(!Fulfilled.can_become(Booked) && !Cancelled.can_become(Booked) && !Noshow.can_become(Fulfilled));
        assert!(!Pending.can_become(Fulfilled), "a consultation must be checked in before it is fulfilled");
        assert!(Fulfilled.can_become(EnteredInError));
    }
}
