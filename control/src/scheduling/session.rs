//! Joining the video consultation of an appointment: `POST /v1/appointments/{id}/session`
//! gives a participant, inside the join window, the signaling room and relay credentials that
//! expire when the window closes.

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
use crate::ice::IceResponse;
use crate::problem::{ApiError, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};

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

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
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
    let audit = Audit::new("consultation.session", &ip).actor(caller.user_id).target(id.to_string());
    let a = state.store().appointment(id).await?.ok_or(ApiError::NotFound)?;
    // Participants only: an admin sees the appointment but is not in the consultation.
    let role = match scope(&state, &caller).await? {
        Scope::Patient(p) if p == a.patient_id => "patient",
        Scope::Practitioner(p) if p == a.practitioner_id => "practitioner",
        _ => {
            state.audit(audit.outcome("denied")).await?;
            return Err(ApiError::Forbidden("only the appointment's patient and practitioner may join".into()));
        }
    };
    if !a.status.holds_time() {
        return Err(ApiError::Conflict(format!("a {} appointment has no consultation", a.status.as_str())));
    }
    crate::privacy::consents::require_patient_consent(&state, &caller).await?;
    let cfg = &state.config().scheduling;
    let opens_at = a.starts_at - Duration::minutes(cfg.join_before_minutes);
    let closes_at = a.ends_at + Duration::minutes(cfg.join_after_minutes);
    let now = crate::clock::now();
    if now < opens_at {
        state.audit(audit.outcome("refused:too-early")).await?;
        return Err(ApiError::Forbidden(format!("the consultation room opens at {}", rfc3339(opens_at))));
    }
    if now >= closes_at {
        state.audit(audit.outcome("refused:closed")).await?;
        return Err(ApiError::Forbidden(format!("the consultation room closed at {}", rfc3339(closes_at))));
    }
    let ice =
        crate::ice::credentials(&state, &ip, &caller, closes_at, false, Some(format!("appointment:{id}"))).await?;
    state.audit(audit).await?;
    Ok(Json(ConsultationSession {
        appointment_id: id,
        role,
        signaling: Signaling { namespace: "/rtc", room: format!("appointment:{id}") },
        ice,
        opens_at,
        closes_at,
    }))
}

/// Joining a consultation: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join))
}
