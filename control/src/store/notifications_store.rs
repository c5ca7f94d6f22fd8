//! The notification outbox: idempotent queuing, leased claims (several control instances share
//! one queue, each row delivered by one of them at a time), outcomes, dead letters and replay.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::commit_audited;
use super::engine::{Row, Sql, map_rows, sql};
use super::{DeliveryOutcome, NewAuditEvent, NewOutboxEntry, OutboxDepth, OutboxEntry, SqlStore, StoreResult};

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Queues an event for an endpoint, due at once; `false` if that event was queued before.
    async fn enqueue_notification(&self, entry: NewOutboxEntry) -> StoreResult<bool>;
    /// Claims up to `limit` due deliveries for `worker` until `lease_until`: no other worker
    /// claims them before then (nor after, once an outcome is recorded).
    async fn claim_notifications(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<OutboxEntry>>;
    /// Records how a delivery `worker` claimed ended; a dead letter commits with `audit`.
    /// `false` if the claim was lost meanwhile (the lease ran out and another worker took it).
    async fn finish_notification(
        &self,
        id: Uuid,
        worker: &str,
        now: OffsetDateTime,
        outcome: DeliveryOutcome,
        audit: NewAuditEvent,
    ) -> StoreResult<bool>;
    /// Dead letters, newest first.
    async fn dead_notifications(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>>;
    /// Queues a dead letter again, due at once with its attempts reset, with `audit`; `None` if
    /// there is no dead letter by that id.
    async fn replay_notification(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<OutboxEntry>>;
    async fn notification_depth(&self) -> StoreResult<OutboxDepth>;
}

/// The statement that queues `e`, doing nothing if that event was queued before: also run
/// inside other transactions (an expired proposal commits with its notifications).
pub(super) fn enqueue_sql(e: &NewOutboxEntry) -> Sql {
    sql("INSERT INTO notification_outbox
           (id, event_id, kind, appointment_id, occurrence, endpoint, payload, created_at, next_attempt_at, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 0)
         ON CONFLICT (kind, appointment_id, occurrence, endpoint) DO NOTHING")
    .bind(Uuid::new_v4())
    .bind(e.event_id)
    .bind(&e.kind)
    .bind(e.appointment_id)
    .bind(&e.occurrence)
    .bind(&e.endpoint)
    .bind(&e.payload)
    .bind(e.now)
}

/// The row an outbox worker claimed and has not closed yet ($1: its id, $2: the worker).
const MINE: &str = "WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL AND dead_at IS NULL";

const COLUMNS: &str =
    "id, event_id, kind, appointment_id, endpoint, payload, attempts, created_at, next_attempt_at, dead_at, last_error";

fn entry_from_row(r: &Row) -> Result<OutboxEntry, sqlx::Error> {
    Ok(OutboxEntry {
        id: r.get("id")?,
        event_id: r.get("event_id")?,
        kind: r.get("kind")?,
        appointment_id: r.get("appointment_id")?,
        endpoint: r.get("endpoint")?,
        payload: r.get("payload")?,
        attempts: r.get("attempts")?,
        created_at: r.time("created_at")?,
        next_attempt_at: r.time("next_attempt_at")?,
        dead_at: r.opt_time("dead_at")?,
        last_error: r.get("last_error")?,
    })
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn enqueue_notification(&self, e: NewOutboxEntry) -> StoreResult<bool> {
        Ok(self.db.execute(enqueue_sql(&e)).await? == 1)
    }

    async fn claim_notifications(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<OutboxEntry>> {
        // One statement: the rows chosen are the rows leased. PostgreSQL skips rows another
        // instance is claiming at this moment; SQLite has one writer at a time.
        let skip_locked = if self.db.engine() == "postgres" { " FOR UPDATE SKIP LOCKED" } else { "" };
        Ok(self
            .db
            .fetch_all_as(
                sql(format!(
                    "UPDATE notification_outbox SET claimed_by = $1, lease_until = $2
                     WHERE id IN (SELECT id FROM notification_outbox
                                  WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $3
                                    AND (lease_until IS NULL OR lease_until <= $3)
                                  ORDER BY next_attempt_at LIMIT $4{skip_locked})
                     RETURNING {COLUMNS}"
                ))
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit),
                entry_from_row,
            )
            .await?)
    }

    async fn finish_notification(
        &self,
        id: Uuid,
        worker: &str,
        now: OffsetDateTime,
        outcome: DeliveryOutcome,
        audit: NewAuditEvent,
    ) -> StoreResult<bool> {
        let mine = MINE;
        let changed = match outcome {
            // Delivered, retried later or discarded: one statement, which closes the row
            // (`delivered_at`) or puts it back for `retry_at` (`next_attempt_at`).
            DeliveryOutcome::Delivered => self.release_notification(id, worker, "delivered_at", now, None).await?,
            DeliveryOutcome::Retry { error, retry_at } => {
                self.release_notification(id, worker, "next_attempt_at", retry_at, Some(error)).await?
            }
            DeliveryOutcome::Discarded { error } => {
                self.release_notification(id, worker, "delivered_at", now, Some(error)).await?
            }
            DeliveryOutcome::Dead { error } => {
                let mut tx = self.db.begin_audited().await?;
                let n = tx
                    .execute(
                        sql(format!(
                            "UPDATE notification_outbox SET dead_at = $3, attempts = attempts + 1,
                               claimed_by = NULL, lease_until = NULL, last_error = $4 {mine}"
                        ))
                        .bind(id)
                        .bind(worker)
                        .bind(now)
                        .bind(error),
                    )
                    .await?;
                if n == 1 {
                    commit_audited(tx, audit).await?;
                }
                n
            }
        };
        Ok(changed == 1)
    }

    async fn dead_notifications(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
        Ok(self
            .db
            .fetch_all_as(
                sql(format!(
                    "SELECT {COLUMNS} FROM notification_outbox WHERE dead_at IS NOT NULL
                     ORDER BY dead_at DESC, id LIMIT $1"
                ))
                .bind(limit),
                entry_from_row,
            )
            .await?)
    }

    async fn replay_notification(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<OutboxEntry>> {
        let mut tx = self.db.begin_audited().await?;
        let rows = tx
            .fetch_all(
                sql(format!(
                    "UPDATE notification_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $2,
                       claimed_by = NULL, lease_until = NULL
                     WHERE id = $1 AND dead_at IS NOT NULL RETURNING {COLUMNS}"
                ))
                .bind(id)
                .bind(now),
            )
            .await?;
        let Some(entry) = map_rows(rows, entry_from_row)?.pop() else {
            return Ok(None);
        };
        commit_audited(tx, audit).await?;
        Ok(Some(entry))
    }

    async fn notification_depth(&self) -> StoreResult<OutboxDepth> {
        let row = self
            .db
            .fetch_optional(sql(
                "SELECT
                   (SELECT COUNT(*) FROM notification_outbox WHERE delivered_at IS NULL AND dead_at IS NULL) AS pending,
                   (SELECT MIN(created_at) FROM notification_outbox WHERE delivered_at IS NULL AND dead_at IS NULL) AS oldest,
                   (SELECT COUNT(*) FROM notification_outbox WHERE dead_at IS NOT NULL) AS dead",
            ))
            .await?;
        let Some(r) = row else {
            return Ok(OutboxDepth { pending: 0, oldest: None, dead: 0 });
        };
        Ok(OutboxDepth { pending: r.get("pending")?, oldest: r.opt_time("oldest")?, dead: r.get("dead")? })
    }
}

impl SqlStore {
    /// Ends the claim on an outbox row this worker holds: counts the attempt, records `error`
    /// (none after a delivery) and sets `column` (`delivered_at` or `next_attempt_at`) to `at`.
    async fn release_notification(
        &self,
        id: Uuid,
        worker: &str,
        column: &'static str,
        at: OffsetDateTime,
        error: Option<String>,
    ) -> StoreResult<u64> {
        Ok(self
            .db
            .execute(
                sql(format!(
                    "UPDATE notification_outbox SET {column} = $3, attempts = attempts + 1,
                       claimed_by = NULL, lease_until = NULL, last_error = $4 {MINE}"
                ))
                .bind(id)
                .bind(worker)
                .bind(at)
                .bind(error),
            )
            .await?)
    }
}
