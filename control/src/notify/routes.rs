//! Admin routes: the dead letters (deliveries that failed every attempt) and their replay.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiPath, ApiQuery, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{OutboxEntry, Role};

pub const AUDIT_LIST: &str = "notification.dead-letter.list";
pub const AUDIT_REPLAY: &str = "notification.replay";

/// A delivery as an admin sees it: where it goes, what it carries, and why it failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: Uuid,
    /// The event's id: the receiver's idempotency key.
    pub event_id: Uuid,
    pub event_type: String,
    pub appointment_id: Uuid,
    /// The configured webhook's name.
    pub endpoint: String,
    pub attempts: i32,
    /// The last attempt's failure: an HTTP status, a timeout, no connection.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub dead_at: Option<OffsetDateTime>,
    /// The JSON body that is sent (pseudonymous ids, times and a link).
    pub payload: serde_json::Value,
}

impl From<&OutboxEntry> for DeliveryView {
    fn from(e: &OutboxEntry) -> Self {
        DeliveryView {
            id: e.id,
            event_id: e.event_id,
            event_type: e.kind.clone(),
            appointment_id: e.appointment_id,
            endpoint: e.endpoint.clone(),
            attempts: e.attempts,
            last_error: e.last_error.clone(),
            created_at: e.created_at,
            dead_at: e.dead_at,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// At most 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Dead letters (admins), newest first: deliveries that failed every attempt.
#[utoipa::path(get, path = "/v1/notifications/dead-letters", tag = "notifications", params(DeadLetterQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<DeliveryView>), (status = 403, body = crate::problem::Problem),
              (status = 422, body = crate::problem::Problem)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> ApiResult<Json<Vec<DeliveryView>>> {
    caller.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let dead = state.store().dead_notifications(limit).await?;
    state.audit(Audit::new(AUDIT_LIST, &ip).actor(caller.user_id).target(format!("{} results", dead.len()))).await?;
    Ok(Json(dead.iter().map(DeliveryView::from).collect()))
}

/// Replay a dead letter (admins): it is queued again, due at once, with its attempts reset.
#[utoipa::path(post, path = "/v1/notifications/dead-letters/{id}/replay", tag = "notifications",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem)))]
pub async fn replay(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeliveryView>> {
    caller.require(&[Role::Admin])?;
    let audit = Audit::new(AUDIT_REPLAY, &ip).actor(caller.user_id).target(format!("delivery:{id}"));
    let replayed = state
        .store()
        .replay_notification(id, state.clock().now(), audit.into_event())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(DeliveryView::from(&replayed)))
}

/// The notification admin routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dead_letters)).routes(routes!(replay))
}
