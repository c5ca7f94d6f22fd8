//! Notifications (issue 25 item 2): appointment and consultation events delivered as signed
//! webhooks to the endpoints the operator configures (`[notifications]`), and as Web Push to
//! the browsers of practitioners who subscribe ([`webpush`]).
//!
//! Events go through a durable outbox in the database (`store::NotificationStore`): a hook
//! queues one row per event and endpoint, keyed so that queuing it again does nothing; the
//! delivery worker ([`worker`]) claims due rows under a lease, signs and sends them, retries
//! with capped exponential backoff and, after the last attempt, keeps them as dead letters an
//! admin can read and replay ([`routes`]). The reminder scheduler ([`reminders`]) queues the
//! reminders due from the appointments table the same idempotent way, so restarts and several
//! control instances send each reminder once. docs/notifications.md is the operator's view.
//!
//! The hooks below are what the rest of the control plane calls, one line where an event
//! happens; a failure to queue is logged and counted, never turned into a failed request (the
//! change itself has committed).

pub mod config;
pub mod event;
pub mod reminders;
pub mod routes;
pub mod schedule;
pub mod sign;
pub mod webpush;
pub mod webpush_ece;
pub mod webpush_routes;
pub mod webpush_vapid;
pub mod worker;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::state::AppState;
use crate::store::{Appointment, AppointmentStatus, NewOutboxEntry};
use event::{Event, EventKind};

/// The notification routes: the dead letters (admins) and Web Push subscriptions.
pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    routes::router().merge(webpush_routes::router())
}

/// An appointment was booked.
pub async fn booked(state: &AppState, a: &Appointment) {
    emit(state, EventKind::Booked, a, None).await;
}

/// An appointment was cancelled.
pub async fn cancelled(state: &AppState, a: &Appointment) {
    emit(state, EventKind::Cancelled, a, None).await;
}

/// An appointment moved to new times (`a` has them).
pub async fn rescheduled(state: &AppState, a: &Appointment) {
    emit(state, EventKind::Rescheduled, a, None).await;
}

/// The signaling room moved an appointment to `status`: `arrived`, a patient waits in the
/// lobby; `fulfilled`, the practitioner ended the consultation. Admissions are not announced.
pub async fn room_status(state: &AppState, appointment: Uuid, status: AppointmentStatus) {
    let kind = match status {
        AppointmentStatus::Arrived => EventKind::PatientWaiting,
        AppointmentStatus::Fulfilled => EventKind::ConsultationEnded,
        _ => return,
    };
    match state.store().appointment(appointment).await {
        Ok(Some(a)) => emit(state, kind, &a, None).await,
        Ok(None) => {}
        Err(e) => queue_failed(kind, &e),
    }
}

/// The same event always has the same id, whichever instance or retry produces it: the id is
/// the receivers' idempotency key.
fn event_id(kind: EventKind, appointment: Uuid, occurrence: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"teletip-notification\0")
        .chain_update(kind.as_str())
        .chain_update(b"\0")
        .chain_update(appointment.as_bytes())
        .chain_update(occurrence)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Queues `kind` about `a` for every endpoint that takes it.
pub(crate) async fn emit(state: &AppState, kind: EventKind, a: &Appointment, reminder_minutes: Option<i64>) {
    for entry in outbox_entries(state, kind, a, reminder_minutes) {
        enqueued(kind, state.store().enqueue_notification(entry).await);
    }
    let (event, occurrence) = event_of(state, kind, a, reminder_minutes);
    webpush::enqueue(state, &event, a, &occurrence).await;
}

/// The event `kind` about `a` and its occurrence, with the id every instance gives it.
fn event_of(state: &AppState, kind: EventKind, a: &Appointment, reminder_minutes: Option<i64>) -> (Event, String) {
    let mut event = Event { id: Uuid::nil(), kind, at: state.clock().now(), reminder_minutes };
    let occurrence = event.occurrence(a);
    event.id = event_id(kind, a.id, &occurrence);
    (event, occurrence)
}

/// Counts (or logs) what queuing one delivery came to.
fn enqueued(kind: EventKind, result: crate::store::StoreResult<bool>) {
    match result {
        Ok(true) => {
            metrics::counter!("teletip_control_notifications_queued_total", "event" => kind.as_str()).increment(1)
        }
        Ok(false) => {}
        Err(e) => queue_failed(kind, &e),
    }
}

/// The outbox rows of `kind` about `a`, one per endpoint that takes it: what [`emit`] queues,
/// and what a change committing its notifications with it (a proposal's expiry) inserts.
pub(crate) fn outbox_entries(
    state: &AppState,
    kind: EventKind,
    a: &Appointment,
    reminder_minutes: Option<i64>,
) -> Vec<NewOutboxEntry> {
    let cfg = &state.config().notifications;
    let (event, occurrence) = event_of(state, kind, a, reminder_minutes);
    let now = event.at;
    let payload = event::payload(&event, a, &state.config().public_base(), &cfg.payload_fields).to_string();
    cfg.webhooks
        .iter()
        .filter(|w| w.events.is_empty() || w.events.contains(&kind))
        .map(|hook| NewOutboxEntry {
            event_id: event.id,
            kind: kind.as_str().into(),
            appointment_id: a.id,
            occurrence: occurrence.clone(),
            endpoint: hook.name.clone(),
            payload: payload.clone(),
            now,
        })
        .collect()
}

fn queue_failed(kind: EventKind, e: &dyn std::fmt::Display) {
    metrics::counter!("teletip_control_notifications_queue_errors_total", "event" => kind.as_str()).increment(1);
    tracing::error!(event = kind.as_str(), error = %e, "notification NOT queued");
}

/// Starts the delivery worker and the reminder scheduler, after reading every endpoint's
/// secret (a missing or short secret stops the start) and, with Web Push on, the VAPID key
/// (generated on first start unless the operator gives one), and logging what the
/// configuration allows beyond the defaults.
pub fn start(state: &AppState) -> Result<(), NotifyError> {
    let cfg = &state.config().notifications;
    if cfg.webhooks.is_empty() && !cfg.web_push {
        tracing::info!("notifications: no webhook configured and web-push off; events are not sent");
        return Ok(());
    }
    let endpoints = worker::endpoints(cfg)?;
    if cfg.allow_insecure_http {
        tracing::warn!("notifications.allow-insecure-http: webhooks may be sent over plain http");
    }
    if !cfg.payload_fields.is_empty() {
        tracing::warn!(fields = ?cfg.payload_fields, "notifications.payload-fields: payloads carry more than ids, times and a link");
    }
    for e in endpoints.values() {
        tracing::info!(endpoint = %e.name, url = %e.url, "notifications: webhook endpoint");
    }
    if cfg.web_push {
        let (path, generate) = match &cfg.vapid_key_file {
            Some(path) => (path.clone(), false),
            None => (state.config().data_dir.join("vapid.key"), true),
        };
        let vapid = webpush_vapid::Vapid::load(&path, generate)?;
        tracing::info!(public_key = %vapid.public_key_b64(), hosts = ?cfg.web_push_hosts, "notifications: web push on");
        if cfg.web_push_allow_http {
            tracing::warn!(
                "notifications.web-push-allow-http: UNSAFE, for tests only: push messages may be sent over plain http"
            );
        }
        state.set_vapid(std::sync::Arc::new(vapid));
    }
    tokio::spawn(worker::run(state.clone(), endpoints));
    tokio::spawn(reminders::run(state.clone()));
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifications.webhooks {name:?}: cannot read secret-file {path}: {source}")]
    Secret { name: String, path: String, source: std::io::Error },
    #[error("notifications.webhooks {name:?}: the secret in {path} is shorter than 16 bytes")]
    ShortSecret { name: String, path: String },
    #[error("notifications.vapid-key-file: {0}")]
    Vapid(#[from] webpush_vapid::VapidError),
    #[error("notifications: cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_has_one_id_wherever_it_is_produced() {
        let a = Uuid::new_v4();
        assert_eq!(event_id(EventKind::Booked, a, ""), event_id(EventKind::Booked, a, ""));
        assert_ne!(event_id(EventKind::Booked, a, ""), event_id(EventKind::Cancelled, a, ""));
        assert_ne!(event_id(EventKind::Reminder, a, "1-15m"), event_id(EventKind::Reminder, a, "1-1440m"));
    }
}
