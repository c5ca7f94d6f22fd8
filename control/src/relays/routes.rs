//! `GET /v1/relays`, `POST /v1/relays/{node}/drain`, `POST /v1/relays/{node}/resume`: admins
//! see every relay node and empty one before maintenance without logging in to it.

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SetDrainError;
use super::registry::RelayNode;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::Role;

/// The relay nodes that have connected since this instance started (with Redis: to any
/// instance, within the last hour), by name.
#[utoipa::path(get, path = "/v1/relays", tag = "relays", security(("bearer" = [])),
    responses((status = 200, body = Vec<RelayNode>), (status = 403, body = crate::problem::Problem)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<RelayNode>>> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.relays().list().await))
}

/// Drain a relay: new allocations go to its alternate server or are refused, calls in place
/// carry on, and ICE credentials stop naming it (while another registered relay is usable).
/// Applied at once if it is connected, else when it reconnects.
#[utoipa::path(post, path = "/v1/relays/{node}/drain", tag = "relays", security(("bearer" = [])),
    params(("node" = String, Path, description = "The node's name (from its certificate)")),
    responses((status = 200, body = RelayNode), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem)))]
pub async fn drain(
    state: State<AppState>,
    ip: ClientIp,
    caller: Caller,
    node: Path<String>,
) -> ApiResult<Json<RelayNode>> {
    set_drain(state, ip, caller, node, true).await
}

/// End a relay's drain.
#[utoipa::path(post, path = "/v1/relays/{node}/resume", tag = "relays", security(("bearer" = [])),
    params(("node" = String, Path, description = "The node's name (from its certificate)")),
    responses((status = 200, body = RelayNode), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem)))]
pub async fn resume(
    state: State<AppState>,
    ip: ClientIp,
    caller: Caller,
    node: Path<String>,
) -> ApiResult<Json<RelayNode>> {
    set_drain(state, ip, caller, node, false).await
}

async fn set_drain(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    Path(node): Path<String>,
    draining: bool,
) -> ApiResult<Json<RelayNode>> {
    caller.require(&[Role::Admin])?;
    let delivered = state.relays().set_drain(&node, draining).await.map_err(|e| match e {
        SetDrainError::Unknown(_) => ApiError::NotFound,
        SetDrainError::Shared(e) => ApiError::Unavailable(format!("the shared relay registry did not answer: {e}")),
    })?;
    let action = if draining { "relay.drain" } else { "relay.resume" };
    let outcome = if delivered { "success" } else { "success:pending" };
    state.audit(Audit::new(action, &ip).actor(caller.user_id).target(format!("relay:{node}")).outcome(outcome)).await?;
    tracing::warn!(
        node,
        draining,
        delivered,
        "relay drain {} by an admin",
        if draining { "requested" } else { "ended" }
    );
    let view = state.relays().list().await.into_iter().find(|n| n.node == node).ok_or(ApiError::NotFound)?;
    Ok(Json(view))
}

/// Relay administration: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(drain)).routes(routes!(resume))
}
