//! The audit trail (HIPAA 164.312(b)): every access to health data and every credential issued
//! becomes an append-only, hash-chained event. `GET /v1/audit` (admins) lists events and
//! verifies the whole chain.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiQuery, ApiResult};
use crate::state::{AppState, ClientIp};
pub mod chain;

use crate::store::{AuditEvent, AuditFilter, NewAuditEvent, Role};
use chain::{ChainVerification, verify_chain};

/// An audit event being described by a handler.
#[derive(Debug, Clone)]
pub struct Audit {
    event: NewAuditEvent,
}

impl Audit {
    pub fn new(action: &str, ip: &ClientIp) -> Audit {
        Audit {
            event: NewAuditEvent {
                at: crate::clock::now(),
                actor: None,
                action: action.into(),
                target: None,
                outcome: "success".into(),
                source_ip: Some(ip.0.to_string()),
                request_id: crate::problem::current_request_id(),
            },
        }
    }

    pub fn actor(mut self, id: Uuid) -> Audit {
        self.event.actor = Some(id);
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Audit {
        self.event.target = Some(target.into());
        self
    }

    pub fn outcome(mut self, outcome: &str) -> Audit {
        self.event.outcome = outcome.into();
        self
    }

    pub fn into_event(self) -> NewAuditEvent {
        if !self.event.outcome.starts_with("success") {
            // The request's own refusal is on record: `audit_refusals` need not add one.
            let _ = REFUSAL_AUDITED.try_with(|audited| audited.set(true));
        }
        self.event
    }
}

/// Lets `AppState::audit` take an `Audit` without naming this module: the state sits beneath
/// the handlers, this one among them.
impl From<Audit> for NewAuditEvent {
    fn from(audit: Audit) -> NewAuditEvent {
        audit.into_event()
    }
}

tokio::task_local! {
    /// Whether the current request recorded an audit event with a refusing outcome.
    static REFUSAL_AUDITED: std::cell::Cell<bool>;
}

/// Middleware: every 403 the API answers is audited (HIPAA 164.312(b): refused attempts on
/// health data are part of the trail). Handlers that audit their refusals in their own words
/// (`user.read` denied, `consultation.join` refused…) keep doing so; any other 403 gets one
/// `access.denied` event naming the caller, the method and the path (never the query string,
/// which may carry search terms about a patient). One mechanism for every route, present and
/// future, instead of an audit call beside each `Forbidden`.
pub async fn audit_refusals(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Only the header is kept: the token is verified for the few answers that are 403s.
    let authorization = request.headers().get(axum::http::header::AUTHORIZATION).cloned();
    let ip = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let (response, audited) = REFUSAL_AUDITED
        .scope(std::cell::Cell::new(false), async {
            let response = next.run(request).await;
            (response, REFUSAL_AUDITED.with(|a| a.get()))
        })
        .await;
    if response.status() != StatusCode::FORBIDDEN || audited {
        return response;
    }
    let mut audit = Audit::new("access.denied", &ClientIp(ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())))
        .target(format!("{method} {path}"))
        .outcome("denied");
    let mut headers = axum::http::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(axum::http::header::AUTHORIZATION, value);
    }
    if let Some(actor) = crate::state::bearer_subject(&state, &headers).and_then(|s| s.parse::<Uuid>().ok()) {
        audit = audit.actor(actor);
    }
    if let Err(e) = state.audit(audit).await {
        // The answer stays the refusal it was; the missing event is loud in the log.
        tracing::error!(error = %e, %method, %path, "a 403 refusal could not be audited");
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events by this user.
    pub actor: Option<Uuid>,
    /// Only this action (e.g. `auth.login`, `ice.credentials.issue`).
    pub action: Option<String>,
    /// RFC 3339; events at or after.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    /// RFC 3339; events before.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    /// At most this many, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Verification of the whole chain, not only of the events listed.
    pub chain: ChainVerification,
}

/// Audit events (admins), newest first, with a verification of the hash chain.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    caller.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    let filter = AuditFilter { actor: q.actor, action: q.action, since: q.since, until: q.until, limit };
    let events = state.store().list_audit(&filter).await?;
    let chain = verify_chain(&state.store().audit_chain().await?);
    crate::observability::audit_chain_verified(chain.verified);
    if !chain.verified {
        tracing::error!(first_broken_seq = ?chain.first_broken_seq, "AUDIT CHAIN BROKEN: the audit table was altered");
    }
    state.audit(Audit::new("audit.read", &ip).actor(caller.user_id).outcome("success")).await?;
    Ok(Json(AuditPage { events, chain }))
}

/// The audit trail: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}
