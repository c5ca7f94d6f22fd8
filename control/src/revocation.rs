//! Revoking TURN sessions (issue 20): a revoked session's relays end its allocations at once and
//! refuse its credentials until they expire. Revocations are stored (every relay that
//! registers, here or after a restart, is sent those still in force) and sent at once to the
//! relays connected to this instance and, through Redis, to every other instance's.
//!
//! Triggers: an admin (`POST /v1/ice/sessions/{id}/revoke`, `POST /v1/users/{id}/revoke-sessions`);
//! an appointment that is fulfilled, cancelled, a no-show, entered in error or rescheduled
//! (whoever moved it, or the system for the no-show sweeper); a logout or a reused refresh token; an admin disabling
//! an account, changing its role or password; an erasure. Which sessions each revokes is
//! `domain::revocation`'s. Every revocation is audited as `ice.sessions.revoke`: the actor is
//! who revoked (none: the system), the target names the sessions and why.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::extract::Caller;
use crate::domain::revocation::{self, Revoke, Scope};
use crate::problem::{ApiError, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{NewAuditEvent, RevokedTurnSession, Role, StoreResult, TurnRevocation, TurnSessionScope};

/// The audit action of every revocation.
pub const AUDIT_REVOKE: &str = "ice.sessions.revoke";

/// One revoked session as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedView {
    /// The opaque part of the credential's username (`<expiry>:<id>`).
    pub id: String,
    /// Until when relays refuse it (its credential's expiry).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevocationOutcome {
    /// The sessions the request names that are revoked now (including ones revoked before),
    /// sent to every relay. Sessions whose credentials have expired are left out.
    pub revoked: Vec<RevokedView>,
}

/// The longest a credential this control plane issues can live: `ice.max-ttl`, or a
/// consultation's credential (an appointment of at most 240 minutes plus the join window).
fn longest_credential_seconds(state: &AppState) -> u64 {
    let s = &state.config().scheduling;
    let consultation = (240 + s.join_before_minutes.max(0) + s.join_after_minutes.max(0)) as u64 * 60;
    state.config().ice.max_ttl.max(consultation)
}

/// Records `revoke` (by `by`, from `ip`; `None`: the system) with its audit event, and sends the
/// sessions it names to every relay. Returns them.
pub async fn revoke(
    state: &AppState,
    revoke: &Revoke,
    by: Option<Uuid>,
    ip: Option<&ClientIp>,
) -> StoreResult<Vec<RevokedTurnSession>> {
    let now = state.clock().now();
    let scope = match &revoke.scope {
        Scope::Session(id) => TurnSessionScope::Session {
            id: id.clone(),
            unknown_until: revocation::unknown_session_until(now, longest_credential_seconds(state)),
        },
        Scope::User(id) => TurnSessionScope::User(*id),
        Scope::Login(id) => TurnSessionScope::Login(*id),
        Scope::Appointment(id) => TurnSessionScope::Appointment(*id),
    };
    let record = TurnRevocation { scope, by, reason: revoke.reason.as_str().into(), now };
    let source_ip = ip.map(|ip| ip.0.to_string());
    let request_id = crate::problem::current_request_id();
    let event = |revoked: &[RevokedTurnSession]| NewAuditEvent {
        at: now,
        actor: by,
        action: AUDIT_REVOKE.into(),
        target: Some(format!(
            "turn-sessions:{} of:{} why:{}",
            revoked.len(),
            revoke.scope.audit_name(),
            revoke.reason.as_str()
        )),
        outcome: if by.is_some() { "success".into() } else { "success:system".into() },
        source_ip: source_ip.clone(),
        request_id: request_id.clone(),
    };
    let revoked = state.store().revoke_turn_sessions(&record, &event).await?;
    state.relays().revoke(&revoked).await;
    Ok(revoked)
}

/// A revocation that follows from another action (a status change, a logout, an erasure…): the
/// action has happened and stays done; a revocation that fails is logged and counted, and the
/// credentials still end at their expiry.
pub async fn follow(state: &AppState, revoke: Revoke, by: Option<Uuid>, ip: Option<&ClientIp>) {
    if let Err(e) = self::revoke(state, &revoke, by, ip).await {
        metrics::counter!("teletip_turn_revocations_failed_total").increment(1);
        tracing::error!(
            error = %e,
            of = revoke.scope.audit_name(),
            why = revoke.reason.as_str(),
            "TURN sessions NOT revoked; their credentials stay usable until they expire"
        );
    }
}

fn outcome(revoked: Vec<RevokedTurnSession>) -> Json<RevocationOutcome> {
    Json(RevocationOutcome {
        revoked: revoked.into_iter().map(|s| RevokedView { id: s.id, expires_at: s.expires_at }).collect(),
    })
}

/// Revoke one TURN session (admins): every relay ends its allocations at once and refuses its
/// credentials until they expire. An id no credential was issued with is accepted (it stays
/// revoked for the longest credential lifetime, then expires harmlessly).
#[utoipa::path(post, path = "/v1/ice/sessions/{id}/revoke", tag = "ice", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{16}$",
        description = "The session id: the part of the credential's username after the ':'")),
    responses((status = 200, body = RevocationOutcome), (status = 400, body = crate::problem::Problem),
              (status = 403, body = crate::problem::Problem)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RevocationOutcome>> {
    caller.require(&[Role::Admin])?;
    revocation::check_session_id(&id).map_err(|e| ApiError::BadRequest(format!("id {id:?}: {e}")))?;
    let order = Revoke { scope: Scope::Session(id), reason: revocation::Reason::Admin };
    Ok(outcome(revoke(&state, &order, Some(caller.user_id), Some(&ip)).await?))
}

/// Revoke every TURN session issued to a user (admins), as for one session.
#[utoipa::path(post, path = "/v1/users/{id}/revoke-sessions", tag = "ice", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RevocationOutcome), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem)))]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RevocationOutcome>> {
    caller.require(&[Role::Admin])?;
    state.store().user_by_id(id).await?.ok_or(ApiError::NotFound)?;
    let order = Revoke { scope: Scope::User(id), reason: revocation::Reason::Admin };
    Ok(outcome(revoke(&state, &order, Some(caller.user_id), Some(&ip)).await?))
}

/// Revocation by admins: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(revoke_session)).routes(routes!(revoke_user_sessions))
}
