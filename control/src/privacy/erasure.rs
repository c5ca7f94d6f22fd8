//! Erasure (KVKK art. 7 and 11, "silme, yok etme veya anonim hale getirme"). A patient who has
//! had a consultation has a medical record that law requires the institution to keep: that
//! record is anonymised (every identifying field removed, the login account disabled and
//! stripped) and kept until the retention period ends, when the retention job deletes it. A
//! patient with no consultation has nothing to retain and is deleted outright. Either way the
//! relay credentials issued to the account are revoked on every relay.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{Anonymisation, AppointmentFilter, AppointmentStatus, PatientRecord, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErasureKind {
    /// Identifying data removed; the anonymised medical record is kept until `retainUntil`.
    Anonymised,
    /// Everything deleted.
    Deleted,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureOutcome {
    pub outcome: ErasureKind,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retain_until: Option<OffsetDateTime>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseMe {
    /// The account's password, again: a stolen access token alone must not erase an account.
    pub password: String,
}

/// Statuses that mean a consultation took place, so a medical record exists.
fn is_clinical(status: AppointmentStatus) -> bool {
    matches!(status, AppointmentStatus::Arrived | AppointmentStatus::CheckedIn | AppointmentStatus::Fulfilled)
}

/// Erases one patient (and their login account, if `user_id`), choosing anonymisation or
/// deletion as the module explains. `patient` is `None` for a patient account without a record.
/// `audit` is the request's event: it commits with the erasure, its outcome saying which.
async fn erase(
    state: &AppState,
    patient: Option<&PatientRecord>,
    user_id: Option<Uuid>,
    audit: Audit,
) -> ApiResult<ErasureOutcome> {
    let now = state.clock().now();
    let deleted = || audit.clone().outcome("success:deleted").into_event();
    let Some(patient) = patient else {
        state.store().delete_patient(None, user_id, deleted()).await?;
        return Ok(ErasureOutcome { outcome: ErasureKind::Deleted, retain_until: None });
    };
    if patient.anonymized_at.is_some() {
        return Err(ApiError::Conflict(
            "this patient was already erased; the anonymised record awaits retention".into(),
        ));
    }
    let filter = AppointmentFilter { patient_id: Some(patient.id), limit: i64::MAX, ..Default::default() };
    let appointments = state.store().list_appointments(&filter).await?;
    let last_consultation = appointments.iter().filter(|a| is_clinical(a.status)).map(|a| a.ends_at).max();
    let Some(last) = last_consultation else {
        state.store().delete_patient(Some(patient.id), user_id, deleted()).await?;
        return Ok(ErasureOutcome { outcome: ErasureKind::Deleted, retain_until: None });
    };
    let retain_until = last + Duration::days(state.config().retention.medical_record_days);
    state
        .store()
        .anonymise_patient(
            &Anonymisation {
                patient_id: patient.id,
                user_id,
                placeholder_name: "Anonymised patient".into(),
                placeholder_email: format!("erased-{}@erased.invalid", Uuid::new_v4()),
                retain_until,
                cancel_reason: "patient data erased on request".into(),
                now,
            },
            audit.outcome("success:anonymised").into_event(),
        )
        .await?;
    Ok(ErasureOutcome { outcome: ErasureKind::Anonymised, retain_until: Some(retain_until) })
}

/// Erase my data (patients). Requires the password again. Answers what was done: anonymised
/// (a consultation took place, so the anonymised medical record is kept until `retainUntil`)
/// or deleted. The account can no longer sign in either way.
#[utoipa::path(post, path = "/v1/me/erasure", tag = "privacy", request_body = EraseMe, security(("bearer" = [])),
    responses((status = 200, body = ErasureOutcome), (status = 401, body = crate::problem::Problem),
        (status = 403, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem)))]
pub async fn erase_me(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<EraseMe>,
) -> ApiResult<Json<ErasureOutcome>> {
    let audit = Audit::new("patient.erase", &ip).actor(caller.user_id);
    if caller.role != Role::Patient {
        return Err(ApiError::Forbidden(
            "staff accounts are not erased on request: an admin disables them (their records are institutional)".into(),
        ));
    }
    let user = state.store().user_by_id(caller.user_id).await?.ok_or(ApiError::NotFound)?;
    let hash = user.password_hash.clone();
    let password_ok = tokio::task::spawn_blocking(move || crate::auth::password::verify(&req.password, &hash))
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
    if !password_ok {
        state.audit(audit.target(caller.user_id.to_string()).outcome("denied:password")).await?;
        return Err(ApiError::Unauthorized("the password is not correct".into()));
    }
    let patient = state.store().patient_by_user(caller.user_id).await?;
    let target = patient.as_ref().map_or_else(|| format!("user:{}", caller.user_id), |p| p.id.to_string());
    let outcome = erase(&state, patient.as_ref(), Some(caller.user_id), audit.target(target)).await?;
    let revoke = crate::domain::revocation::on_erasure(caller.user_id);
    crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    Ok(Json(outcome))
}

/// Erase a patient on their verified request received another way (admins).
#[utoipa::path(post, path = "/v1/patients/{id}/erasure", tag = "privacy", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ErasureOutcome), (status = 403, body = crate::problem::Problem),
        (status = 404, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem)))]
pub async fn erase_patient(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ErasureOutcome>> {
    let audit = Audit::new("patient.erase", &ip).actor(caller.user_id).target(id.to_string());
    if caller.role != Role::Admin {
        state.audit(audit.outcome("denied")).await?;
        return Err(ApiError::Forbidden("requires the role admin".into()));
    }
    let patient = state.store().patient(id).await?.ok_or(ApiError::NotFound)?;
    let outcome = erase(&state, Some(&patient), patient.user_id, audit).await?;
    if let Some(user) = patient.user_id {
        let revoke = crate::domain::revocation::on_erasure(user);
        crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    }
    Ok(Json(outcome))
}

/// Erasure: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase_me)).routes(routes!(erase_patient))
}
