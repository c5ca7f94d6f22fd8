//! Joining the video consultation of an appointment: `POST /v1/appointments/{id}/session`
//! gives a participant, inside the join window, the signaling room and relay credentials that
//! expire when the window closes; `GET /v1/consultations/join-window` says how wide the window
//! is, for clients that show when joining opens.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{Scope, scope};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::domain::consultation::{
    AUDIT_SESSION, Admission, JoinRefusal, JoinRequest, JoinWindow, Party, WindowRule, may_join,
};
use crate::ice::IceResponse;
use crate::problem::{ApiError, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::Role;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signaling {
    /// The Socket.IO namespace to connect to (same origin), authenticated by the access token.
    pub namespace: &'static str,
    pub room: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsultationSession {
    pub appointment_id: Uuid,
    /// `patient` or `practitioner`.
    pub role: &'static str,
    pub signaling: Signaling,
    pub ice: IceResponse,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub opens_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub closes_at: OffsetDateTime,
}

/// Why a join was not granted: a refusal of the domain rule (already audited), or a failure
/// to load what the rule needs.
#[derive(Debug)]
pub enum JoinError {
    Refused(JoinRefusal),
    Failed(ApiError),
}

impl From<ApiError> for JoinError {
    fn from(e: ApiError) -> Self {
        JoinError::Failed(e)
    }
}

impl From<crate::store::StoreError> for JoinError {
    fn from(e: crate::store::StoreError) -> Self {
        JoinError::Failed(e.into())
    }
}

/// The consultation access rule (domain::consultation) as both doors apply it: loads the
/// appointment, the caller's record and, for a patient, the missing consents; asks the rule;
/// audits a refusal under `audit` (the door's action, actor and target set) with the
/// refusal's outcome. The success is the door's to audit, after it has done its work.
pub async fn admission(state: &AppState, caller: &Caller, id: Uuid, audit: Audit) -> Result<Admission, JoinError> {
    let a = state.store().appointment(id).await?.ok_or(ApiError::NotFound)?;
    let party = match scope(state, caller).await? {
        Scope::Patient(p) => Party::Patient(p),
        Scope::Practitioner(p) => Party::Practitioner(p),
        Scope::All | Scope::Nothing => Party::Neither,
    };
    let missing_consent = match caller.role {
        Role::Patient => crate::privacy::consents::missing_consent(state, caller.user_id).await?,
        _ => None,
    };
    let cfg = &state.config().scheduling;
    let rule = WindowRule {
        before: Duration::minutes(cfg.join_before_minutes),
        after: Duration::minutes(cfg.join_after_minutes),
    };
    let now = state.clock().now();
    match may_join(JoinRequest { appointment: &a, caller: party, missing_consent, rule, now }) {
        Ok(admission) => Ok(admission),
        Err(refusal) => {
            state.audit(audit.outcome(refusal.outcome())).await?;
            Err(JoinError::Refused(refusal))
        }
    }
}

/// The HTTP answer to each refusal.
fn http_refusal(r: JoinRefusal) -> ApiError {
    match r {
        JoinRefusal::Status(_) => ApiError::Conflict(r.message()),
        JoinRefusal::NotParticipant
        | JoinRefusal::ConsentMissing(_)
        | JoinRefusal::TooEarly { .. }
        | JoinRefusal::Closed { .. } => ApiError::Forbidden(r.message()),
    }
}

/// What a participant needs to join the consultation, inside the join window only.
#[utoipa::path(post, path = "/v1/appointments/{id}/session", tag = "scheduling", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ConsultationSession), (status = 403, body = crate::problem::Problem, description = "not a participant, or outside the join window"),
              (status = 409, body = crate::problem::Problem)))]
pub async fn join(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ConsultationSession>> {
    let audit = Audit::new(AUDIT_SESSION, &ip).actor(caller.user_id).target(id.to_string());
    let Admission { role, window } = admission(&state, &caller, id, audit.clone()).await.map_err(|e| match e {
        JoinError::Refused(r) => http_refusal(r),
        JoinError::Failed(e) => e,
    })?;
    let JoinWindow { opens_at, closes_at } = window;
    let ice = crate::ice::credentials(&state, &ip, &caller, closes_at, false, Some(id)).await?;
    state.audit(audit).await?;
    Ok(Json(ConsultationSession {
        appointment_id: id,
        role: role.as_str(),
        signaling: Signaling { namespace: "/rtc", room: format!("appointment:{id}") },
        ice,
        opens_at,
        closes_at,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinWindowRule {
    /// The consultation opens this many minutes before the appointment starts…
    pub before_minutes: i64,
    /// …and closes this many minutes after it ends.
    pub after_minutes: i64,
}

/// The join window of every consultation (`scheduling.join-before-minutes` and
/// `join-after-minutes`): clients show Join only inside it. The server still decides on each
/// join.
#[utoipa::path(get, path = "/v1/consultations/join-window", tag = "scheduling", security(("bearer" = [])),
    responses((status = 200, body = JoinWindowRule), (status = 401, body = crate::problem::Problem)))]
pub async fn join_window(State(state): State<AppState>, _caller: Caller) -> Json<JoinWindowRule> {
    let cfg = &state.config().scheduling;
    Json(JoinWindowRule { before_minutes: cfg.join_before_minutes, after_minutes: cfg.join_after_minutes })
}

/// Joining a consultation: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join)).routes(routes!(join_window))
}
