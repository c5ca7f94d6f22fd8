//! The scheduling sweeper: a background task that marks booked appointments whose start plus
//! the grace period has passed without the patient arriving, and audits each one; and, on the
//! same tick, cancels the proposals nobody confirmed in time ([`super::proposal_expiry`]).

use std::time::Duration;

use crate::state::AppState;
use crate::store::NewAuditEvent;

/// Runs until the process ends. Errors are logged and retried at the next tick: a database
/// that is briefly unreachable must not stop the sweeper.
pub async fn run(state: AppState) {
    let cfg = state.config().scheduling.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.sweep_interval_seconds.max(1)));
    loop {
        tick.tick().await;
        let now = state.clock().now();
        let cutoff =
            crate::domain::appointment::no_show_cutoff(now, time::Duration::minutes(cfg.no_show_grace_minutes));
        // Each marked appointment's event commits with the marking (one transaction).
        let event = |a: &crate::store::Appointment| NewAuditEvent {
            at: now,
            actor: None,
            action: super::actions::transition(crate::store::AppointmentStatus::Noshow).into(),
            target: Some(a.id.to_string()),
            outcome: "success:sweeper".into(),
            source_ip: None,
            request_id: None,
        };
        match state.store().mark_no_shows(cutoff, now, &event).await {
            // A no-show's consultation never happens: the system revokes its credentials.
            Ok(marked) => {
                crate::observability::job_ran(crate::observability::Job::NoShowSweeper, true);
                for a in marked {
                    let status = crate::store::AppointmentStatus::Noshow;
                    if let Some(revoke) = crate::domain::revocation::on_appointment_status(a.id, status) {
                        crate::revocation::follow(&state, revoke, None, None).await;
                    }
                }
            }
            Err(e) => {
                crate::observability::job_ran(crate::observability::Job::NoShowSweeper, false);
                tracing::warn!(error = %e, "no-show sweep failed; retrying at the next tick")
            }
        }
        match super::proposal_expiry::sweep(&state).await {
            Ok(expired) => {
                crate::observability::job_ran(crate::observability::Job::ProposalExpiry, true);
                if expired > 0 {
                    tracing::info!(expired, "unconfirmed proposals expired");
                }
            }
            Err(e) => {
                crate::observability::job_ran(crate::observability::Job::ProposalExpiry, false);
                tracing::warn!(error = %e, "proposal expiry failed; retrying at the next tick")
            }
        }
    }
}
