//! Who may see which scheduling records: admins everything; practitioners their own
//! appointments and the patients they are in a care relationship with; patients only
//! themselves.
//!
//! # The care relationship (security issue 18, item 3)
//!
//! A practitioner may read or correct a patient's record only while the patient has chosen
//! them: an appointment with that practitioner that
//!
//! - the patient booked, or an admin booked on the patient's behalf (the clinic's reception), or
//!   that the patient confirmed (`POST /v1/appointments/{id}/confirm` by the patient) when the
//!   practitioner booked it: booking someone onto one's own calendar proves nothing;
//! - is neither `cancelled` nor `entered-in-error`;
//! - lies in the window: from its booking until `scheduling.care-relationship-days` (default 30)
//!   days after its end.
//!
//! The same rule decides the record reads of the JSON API and the FHIR façade, corrections, and
//! the patient search (a practitioner's search returns only related patients). It is
//! stated once in SQL for both engines (`care_relationship` in store/scheduling_store.rs).
//!
//! Anything else is refused and audited (`outcome = denied`), unless the practitioner breaks the
//! glass: the `Break-Glass-Reason` header with a reason of at least [`MIN_REASON_CHARS`]
//! characters grants the access, audited as `patient.read.emergency` (or
//! `patient.update.emergency`) with the reason, which admins list with
//! `GET /v1/audit?action=patient.read.emergency`.

use axum::http::HeaderMap;
use uuid::Uuid;

use super::actions;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{Appointment, CareWindow, Role};

/// The request header that asks for emergency access, with its reason.
pub const BREAK_GLASS_HEADER: &str = "break-glass-reason";
/// The shortest reason accepted: enough for "unconscious in the emergency room".
pub const MIN_REASON_CHARS: usize = 20;
/// The longest reason kept in the audit trail.
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Practitioner(Uuid),
    Patient(Uuid),
    /// A practitioner or patient account without its record yet: sees nothing.
    Nothing,
}

pub async fn scope(state: &AppState, caller: &Caller) -> ApiResult<Scope> {
    Ok(match caller.role {
        Role::Admin => Scope::All,
        Role::Practitioner => state
            .store()
            .practitioner_by_user(caller.user_id)
            .await?
            .map_or(Scope::Nothing, |p| Scope::Practitioner(p.id)),
        Role::Patient => {
            state.store().patient_by_user(caller.user_id).await?.map_or(Scope::Nothing, |p| Scope::Patient(p.id))
        }
    })
}

/// The care relationship's window as of now.
pub fn care_window(state: &AppState) -> CareWindow {
    crate::domain::retention::care_window(state.clock().now(), state.config().scheduling.care_relationship_days)
}

/// Whether a booking made by `caller` counts as the patient's choice from the start (see the
/// module documentation): the patient's own, or an admin's on their behalf.
pub fn booked_by_patient_side(caller: &Caller) -> bool {
    matches!(caller.role, Role::Patient | Role::Admin)
}

impl Scope {
    pub fn sees_appointment(self, a: &Appointment) -> bool {
        match self {
            Scope::All => true,
            Scope::Practitioner(p) => a.practitioner_id == p,
            Scope::Patient(p) => a.patient_id == p,
            Scope::Nothing => false,
        }
    }

    /// Whether the caller may read a patient's record without breaking the glass: a
    /// practitioner only through a care relationship.
    pub async fn sees_patient(self, state: &AppState, patient_id: Uuid) -> ApiResult<bool> {
        Ok(match self {
            Scope::All => true,
            Scope::Patient(p) => p == patient_id,
            Scope::Practitioner(p) => {
                let w = care_window(state);
                state.store().has_care_relationship(p, patient_id, w.now, w.ended_after).await?
            }
            Scope::Nothing => false,
        })
    }
}

/// What a record access is for: which audit actions it writes.
#[derive(Debug, Clone, Copy)]
pub enum RecordAccess {
    Read,
    Update,
}

impl RecordAccess {
    fn actions(self) -> (&'static str, &'static str) {
        match self {
            RecordAccess::Read => (actions::PATIENT_READ, actions::PATIENT_READ_EMERGENCY),
            RecordAccess::Update => (actions::PATIENT_UPDATE, actions::PATIENT_UPDATE_EMERGENCY),
        }
    }
}

/// The emergency reason of a request, if it gives one: `None` without the header, a 422 naming
/// the header when the reason is too short, too long or not text.
fn break_glass_reason(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(BREAK_GLASS_HEADER) else { return Ok(None) };
    let reason = value
        .to_str()
        .map_err(|_| ApiError::field("Break-Glass-Reason", "must be printable ASCII text"))?
        .trim()
        .to_string();
    let chars = reason.chars().count();
    if !(MIN_REASON_CHARS..=MAX_REASON_CHARS).contains(&chars) {
        return Err(ApiError::field(
            "Break-Glass-Reason",
            format!("give a reason of {MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters for emergency access"),
        ));
    }
    Ok(Some(reason))
}

/// Decides a patient-record access under the module's rules. Returns the audit event that the
/// successful access must write (the caller writes it before the data leaves, or in the same
/// transaction as the update): for an emergency access, flagged by its action and carrying the
/// reason. A refusal is audited here and answered 403.
pub async fn authorize_patient(
    state: &AppState,
    ip: &ClientIp,
    caller: &Caller,
    headers: &HeaderMap,
    patient_id: Uuid,
    access: RecordAccess,
) -> ApiResult<Audit> {
    let (action, emergency_action) = access.actions();
    let audit = Audit::new(action, ip).actor(caller.user_id).target(patient_id.to_string());
    let scope = scope(state, caller).await?;
    if scope.sees_patient(state, patient_id).await? {
        return Ok(audit);
    }
    // Only practitioners break the glass (patients see only themselves, admins everything).
    let reason = match scope {
        Scope::Practitioner(_) => break_glass_reason(headers)?,
        _ => None,
    };
    if let Some(reason) = reason {
        state.store().patient(patient_id).await?.ok_or(ApiError::NotFound)?;
        let emergency = Audit::new(emergency_action, ip)
            .actor(caller.user_id)
            .target(format!("{patient_id} reason: {reason}"))
            .outcome("success:break-glass");
        tracing::warn!(patient = %patient_id, actor = %caller.user_id, "emergency (break-the-glass) access to a patient record");
        return Ok(emergency);
    }
    state.audit(audit.outcome("denied")).await?;
    Err(ApiError::Forbidden(
        "no care relationship with this patient (an appointment the patient booked or confirmed, within the window); \
         in an emergency, give a reason in the Break-Glass-Reason header"
            .into(),
    ))
}
