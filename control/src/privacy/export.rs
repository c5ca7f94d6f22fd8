//! `GET /v1/me/export`: everything stored about the caller, as one JSON document (KVKK
//! art. 11 right of access; HIPAA 164.524). Identifying fields are decrypted for their owner.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::consents::ConsentView;
use crate::audit::Audit;
use crate::auth::UserView;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiResult};
use crate::scheduling::appointments::AppointmentView;
use crate::scheduling::patients::{PatientView, view as patient_view};
use crate::scheduling::practitioners::PractitionerView;
use crate::state::{AppState, ClientIp};
use crate::store::{AppointmentFilter, AuditEvent, AuditFilter, Session};

/// Enough for any real person's history; an export is never silently cut: `truncated` says so.
const MAX_ROWS: i64 = 10_000;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        SessionView {
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            revoked_reason: s.revoked_reason.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataExport {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub exported_at: OffsetDateTime,
    pub account: UserView,
    /// My patient record, decrypted, if I am a patient.
    pub patient: Option<PatientView>,
    /// My practitioner record, if I am a practitioner.
    pub practitioner: Option<PractitionerView>,
    /// My appointments (as patient or as practitioner).
    pub appointments: Vec<AppointmentView>,
    pub consents: Vec<ConsentView>,
    /// My login sessions (not the tokens).
    pub sessions: Vec<SessionView>,
    /// What I did, from the audit trail.
    pub activity: Vec<AuditEvent>,
    /// True if a list hit the export's size limit (ask the data controller for the rest).
    pub truncated: bool,
}

/// Everything stored about me, as a downloadable JSON document. Audited.
#[utoipa::path(get, path = "/v1/me/export", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, body = PersonalDataExport)))]
pub async fn export(State(state): State<AppState>, ip: ClientIp, caller: Caller) -> ApiResult<impl IntoResponse> {
    let store = state.store();
    let user = store.user_by_id(caller.user_id).await?.ok_or(ApiError::NotFound)?;
    let patient = store.patient_by_user(caller.user_id).await?;
    let practitioner = store.practitioner_by_user(caller.user_id).await?;
    let mut appointments = Vec::new();
    let mut truncated = false;
    let filters = [
        patient.as_ref().map(|p| AppointmentFilter { patient_id: Some(p.id), limit: MAX_ROWS, ..Default::default() }),
        practitioner.as_ref().map(|p| AppointmentFilter {
            practitioner_id: Some(p.id),
            limit: MAX_ROWS,
            ..Default::default()
        }),
    ];
    for filter in filters.into_iter().flatten() {
        let found = store.list_appointments(&filter).await?;
        truncated |= found.len() as i64 >= MAX_ROWS;
        appointments.extend(found.iter().map(AppointmentView::from));
    }
    let activity =
        store.list_audit(&AuditFilter { actor: Some(caller.user_id), limit: MAX_ROWS, ..Default::default() }).await?;
    truncated |= activity.len() as i64 >= MAX_ROWS;
    let document = PersonalDataExport {
        exported_at: state.clock().now(),
        account: UserView::from(&user),
        patient: patient.as_ref().map(|p| patient_view(&state, p)).transpose()?,
        practitioner: practitioner.as_ref().map(PractitionerView::from),
        appointments,
        consents: store.consents(caller.user_id).await?.iter().map(ConsentView::from).collect(),
        sessions: store.user_sessions(caller.user_id).await?.iter().map(SessionView::from).collect(),
        activity,
        truncated,
    };
    state.audit(Audit::new("me.export", &ip).actor(caller.user_id).target(caller.user_id.to_string())).await?;
    let filename = format!("attachment; filename=\"teletip-export-{}.json\"", caller.user_id);
    Ok(([(header::CONTENT_DISPOSITION, filename)], Json(document)))
}

/// The access export: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}
