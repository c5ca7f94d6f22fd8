//! The notification outbox as stored: events waiting for delivery to an endpoint, and the ones
//! that failed every attempt (dead letters).

use time::OffsetDateTime;
use uuid::Uuid;

/// An event to queue for one endpoint. `(kind, appointment_id, occurrence, endpoint)` is its
/// identity: queuing the same one again does nothing.
#[derive(Debug, Clone)]
pub struct NewOutboxEntry {
    pub event_id: Uuid,
    pub kind: String,
    pub appointment_id: Uuid,
    /// What distinguishes two events of one kind for one appointment (the appointment's start
    /// for a reminder or a reschedule; empty for a booking or a cancellation).
    pub occurrence: String,
    pub endpoint: String,
    pub payload: String,
    pub now: OffsetDateTime,
}

/// A queued delivery as the worker or an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: Uuid,
    pub event_id: Uuid,
    pub kind: String,
    pub appointment_id: Uuid,
    pub endpoint: String,
    pub payload: String,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
    pub dead_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// How a claimed delivery ended.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at `retry_at`.
    Retry {
        error: String,
        retry_at: OffsetDateTime,
    },
    /// Failed for the last time: a dead letter, recorded with its audit event.
    Dead {
        error: String,
    },
    /// Can never be delivered and need not be: its Web Push subscription is gone (the push
    /// service answered 404 or 410, or the user unsubscribed). Closed with the reason, not
    /// kept as a dead letter.
    Discarded {
        error: String,
    },
}

/// The queue now: deliveries waiting (due or not) and the creation time of the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: i64,
    pub oldest: Option<OffsetDateTime>,
    pub dead: i64,
}
