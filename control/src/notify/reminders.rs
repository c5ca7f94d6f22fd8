//! The reminder scheduler: every `reminder-interval-seconds`, reads the booked appointments
//! starting within the longest reminder lead time and queues the reminders due. The outbox's
//! unique key makes a reminder queued twice (by a restart, or by two instances at once) one
//! row, so each is sent once; what is due is recomputed from the appointments table, so
//! nothing is lost while no instance runs (a reminder still due after a restart is sent then).

use std::time::Duration;

use super::event::EventKind;
use super::schedule::{horizon, reminders_due};
use crate::state::AppState;
use crate::store::{AppointmentFilter, AppointmentStatus};

/// Appointments read per look; more wait for the next tick (ordered by start, the soonest first).
const PAGE: i64 = 500;

pub async fn run(state: AppState) {
    let cfg = state.config().notifications.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.reminder_interval_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock().now();
        let filter = AppointmentFilter {
            practitioner_id: None,
            patient_id: None,
            status: Some(AppointmentStatus::Booked),
            from: Some(now),
            to: Some(now + horizon(&cfg.reminder_minutes)),
            limit: PAGE,
        };
        match state.store().list_appointments(&filter).await {
            Ok(appointments) => {
                for a in &appointments {
                    for minutes in reminders_due(a, now, &cfg.reminder_minutes) {
                        super::emit(&state, EventKind::Reminder, a, Some(minutes)).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reminders: cannot read appointments; retrying at the next tick"),
        }
    }
}
