//! Who may see which scheduling records: admins everything; practitioners their own
//! appointments and the patients they have appointments with; patients only themselves.

use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::Caller;
use crate::problem::ApiResult;
use crate::store::{Appointment, AppointmentFilter, Role};

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

impl Scope {
    pub fn sees_appointment(self, a: &Appointment) -> bool {
        match self {
            Scope::All => true,
            Scope::Practitioner(p) => a.practitioner_id == p,
            Scope::Patient(p) => a.patient_id == p,
            Scope::Nothing => false,
        }
    }

    /// Whether the caller may read a patient's record: a practitioner only when they have an
    /// appointment with that patient.
    pub async fn sees_patient(self, state: &AppState, patient_id: Uuid) -> ApiResult<bool> {
        Ok(match self {
            Scope::All => true,
            Scope::Patient(p) => p == patient_id,
            Scope::Practitioner(p) => {
                let filter = AppointmentFilter {
                    practitioner_id: Some(p),
                    patient_id: Some(patient_id),
                    limit: 1,
                    ..Default::default()
                };
                !state.store().list_appointments(&filter).await?.is_empty()
            }
            Scope::Nothing => false,
        })
    }
}
