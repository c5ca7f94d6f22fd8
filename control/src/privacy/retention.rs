//! The retention job: deletes what the configured retention periods no longer allow keeping,
//! and audits each purge. Runs in the background every `retention.interval-seconds`; an admin
//! can also run it at once (`POST /v1/admin/retention/run`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::extract::Caller;
use crate::problem::ApiResult;
use crate::state::{AppState, ClientIp};
use crate::store::{NewAuditEvent, Role, StoreResult};

#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Anonymised patient records whose retention ended, now deleted.
    pub patients_purged: Vec<Uuid>,
    /// Expired login sessions deleted.
    pub sessions_purged: u64,
    /// Issued and revoked TURN sessions whose credentials expired, deleted.
    pub turn_sessions_purged: u64,
}

/// Who ran the job, for the audit events.
struct RunBy {
    actor: Option<Uuid>,
    source_ip: Option<String>,
}

impl RunBy {
    fn event(&self, now: OffsetDateTime, target: String) -> NewAuditEvent {
        NewAuditEvent {
            at: now,
            actor: self.actor,
            action: "retention.purge".into(),
            target: Some(target),
            outcome: if self.actor.is_some() { "success".into() } else { "success:job".into() },
            source_ip: self.source_ip.clone(),
            request_id: crate::problem::current_request_id(),
        }
    }
}

async fn run_once(state: &AppState, now: OffsetDateTime, by: &RunBy) -> StoreResult<RetentionReport> {
    let store = state.store();
    let mut report = RetentionReport::default();
    for p in store.patients_past_retention(now).await? {
        store.delete_patient(Some(p.id), p.user_id, by.event(now, format!("patient:{}", p.id))).await?;
        report.patients_purged.push(p.id);
    }
    let cutoff = crate::domain::retention::session_cutoff(now, state.config().retention.session_days);
    report.sessions_purged = store.purge_sessions_expired_before(cutoff).await?;
    if report.sessions_purged > 0 {
        store.append_audit(by.event(now, format!("sessions:{}", report.sessions_purged))).await?;
    }
    // Expired credentials are refused by the relays anyway: nothing is kept past that.
    report.turn_sessions_purged = store.purge_turn_sessions_expired_before(now).await?;
    Ok(report)
}

/// Runs until the process ends; a failed run is logged and retried at the next tick.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.config().retention.interval_seconds.max(1));
    let mut tick = tokio::time::interval(every);
    let by = RunBy { actor: None, source_ip: None };
    loop {
        tick.tick().await;
        let run = run_once(&state, state.clock().now(), &by).await;
        crate::observability::job_ran(crate::observability::Job::Retention, run.is_ok());
        match run {
            Ok(r) if !r.patients_purged.is_empty() || r.sessions_purged > 0 => {
                tracing::info!(patients = r.patients_purged.len(), sessions = r.sessions_purged, "retention purge")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention run failed; retrying at the next tick"),
        }
    }
}

/// Run the retention job now (admins); answers what it purged.
#[utoipa::path(post, path = "/v1/admin/retention/run", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, body = RetentionReport), (status = 403, body = crate::problem::Problem)))]
pub async fn run_now(State(state): State<AppState>, ip: ClientIp, caller: Caller) -> ApiResult<Json<RetentionReport>> {
    caller.require(&[Role::Admin])?;
    let by = RunBy { actor: Some(caller.user_id), source_ip: Some(ip.0.to_string()) };
    Ok(Json(run_once(&state, state.clock().now(), &by).await?))
}

/// The retention run on demand: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run_now))
}
