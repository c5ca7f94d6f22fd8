//! Proposal expiry: a `proposed` or `pending` appointment nobody confirms is cancelled once its
//! practice's proposal expiry has passed since it was made, or at its start if that comes
//! first (`domain::booking::proposal_expires_at`). Its time is freed and the cancellation goes
//! to the notification outbox in the same transaction as the change and its audit event.
//!
//! Run by the scheduling sweeper on every instance: each expiry is a conditional UPDATE
//! (`WHERE status = <expected>`), so of two instances (or a confirmation racing the sweep)
//! exactly one changes the appointment, and the outbox's unique key keeps its event single.
//! What is due is read from the appointments table each time, so an expiry missed while no
//! instance ran happens at the next sweep after a restart.

use time::{Duration, OffsetDateTime};

use super::actions;
use crate::domain::booking::{BookingRules, proposal_expires_at};
use crate::notify::event::EventKind;
use crate::state::AppState;
use crate::store::{Appointment, AppointmentStatus, NewAuditEvent, OpenProposal};

/// The reason an expired appointment is cancelled with (its `cancelReason`).
pub const REASON: &str = "not confirmed in time: the proposal expired";
/// Proposals read per page.
const PAGE: i64 = 500;
/// The shortest expiry a practice may set (`domain::booking::PROPOSAL_EXPIRY_HOURS`): a
/// proposal made more recently, and starting later, cannot have expired.
const SHORTEST_EXPIRY: Duration = Duration::hours(1);

/// Expires what is due at the state's `now`, reading the open proposals page by page (a page
/// of proposals not yet due must not hide a later one that is); returns how many it cancelled.
pub async fn sweep(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let now = state.clock().now();
    let mut expired = 0;
    let mut after = None;
    loop {
        let page = state.store().open_proposals(now - SHORTEST_EXPIRY, now, after, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        after = page.last().map(|p| (p.appointment.created_at, p.appointment.id));
        for candidate in page {
            expired += expire_if_due(state, candidate, now).await?;
        }
        if !full {
            return Ok(expired);
        }
    }
}

/// Cancels `candidate` if its expiry has come: 1 if this call cancelled it, else 0.
async fn expire_if_due(
    state: &AppState,
    candidate: OpenProposal,
    now: OffsetDateTime,
) -> Result<usize, crate::store::StoreError> {
    let defaults = state.config().scheduling.default_rule_values();
    let a = &candidate.appointment;
    let hours = candidate.practice_expiry_hours.unwrap_or(defaults.proposal_expiry_hours);
    let rules = BookingRules { proposal_expiry: Duration::hours(hours), ..defaults.rules() };
    if proposal_expires_at(a.created_at, a.starts_at, &rules) > now {
        return Ok(0);
    }
    let audit = NewAuditEvent {
        at: now,
        actor: None,
        action: actions::transition(AppointmentStatus::Cancelled).into(),
        target: Some(a.id.to_string()),
        outcome: actions::PROPOSAL_EXPIRED_OUTCOME.into(),
        source_ip: None,
        request_id: None,
    };
    let notify = |cancelled: &Appointment| crate::notify::outbox_entries(state, EventKind::Cancelled, cancelled, None);
    let Some(cancelled) = state.store().expire_proposal(a.id, a.status, REASON, now, audit, &notify).await? else {
        return Ok(0);
    };
    crate::observability::proposal_expired();
    // A pending appointment's consultation will not happen: like any cancellation.
    if let Some(revoke) = crate::domain::revocation::on_appointment_status(cancelled.id, cancelled.status) {
        crate::revocation::follow(state, revoke, None, None).await;
    }
    Ok(1)
}
