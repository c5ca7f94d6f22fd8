//! Web Push subscriptions as stored: one row per browser a user opted in, the browser's
//! PushSubscription encrypted (the caller encrypts and decrypts; the store never sees it in
//! clear), found again by a keyed blind index of its endpoint.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::commit_audited;
use super::engine::{Row, map_rows, sql};
use super::{NewAuditEvent, SqlStore, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscriptionRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Encrypted (crypto.rs `FieldKeys::encrypt`).
    pub subscription: String,
    pub created_at: OffsetDateTime,
}

/// What subscribing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// A new row, or the same browser's row with its keys replaced.
    Saved(PushSubscriptionRecord),
    /// The user has `limit` subscriptions already; nothing changed.
    LimitReached,
}

#[async_trait]
pub trait PushStore: Send + Sync {
    /// Saves the user's subscription (replacing the one with the same endpoint index), with
    /// `audit`, unless the user has `limit` other subscriptions.
    async fn save_push_subscription(
        &self,
        record: PushSubscriptionRecord,
        endpoint_index: &str,
        limit: i64,
        audit: NewAuditEvent,
    ) -> StoreResult<Subscribed>;
    /// The user's subscriptions, oldest first.
    async fn push_subscriptions(&self, user_id: Uuid) -> StoreResult<Vec<PushSubscriptionRecord>>;
    async fn push_subscription(&self, id: Uuid) -> StoreResult<Option<PushSubscriptionRecord>>;
    /// The subscriptions of the account linked to practitioner record `practitioner_id`.
    async fn practitioner_push_subscriptions(&self, practitioner_id: Uuid) -> StoreResult<Vec<PushSubscriptionRecord>>;
    /// Removes subscription `id` (of `user_id`, when given), with `audit`: false if there was
    /// none.
    async fn delete_push_subscription(
        &self,
        id: Uuid,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<bool>;
}

const COLUMNS: &str = "id, user_id, subscription, created_at";

fn record_from_row(r: &Row) -> Result<PushSubscriptionRecord, sqlx::Error> {
    Ok(PushSubscriptionRecord {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        subscription: r.get("subscription")?,
        created_at: r.time("created_at")?,
    })
}

#[async_trait]
impl PushStore for SqlStore {
    async fn save_push_subscription(
        &self,
        record: PushSubscriptionRecord,
        endpoint_index: &str,
        limit: i64,
        audit: NewAuditEvent,
    ) -> StoreResult<Subscribed> {
        let mut tx = self.db.begin_audited().await?;
        let others = tx
            .fetch_all(
                sql("SELECT id FROM push_subscriptions WHERE user_id = $1 AND endpoint_index <> $2")
                    .bind(record.user_id)
                    .bind(endpoint_index),
            )
            .await?;
        if others.len() as i64 >= limit {
            return Ok(Subscribed::LimitReached);
        }
        let rows = tx
            .fetch_all(
                sql(format!(
                    "INSERT INTO push_subscriptions (id, user_id, endpoint_index, subscription, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id, endpoint_index) DO UPDATE SET subscription = excluded.subscription
                     RETURNING {COLUMNS}"
                ))
                .bind(record.id)
                .bind(record.user_id)
                .bind(endpoint_index)
                .bind(&record.subscription)
                .bind(record.created_at),
            )
            .await?;
        let saved = map_rows(rows, record_from_row)?.pop().expect("an upsert returns its row");
        let mut audit = audit;
        audit.target = Some(format!("push-subscription:{}", saved.id));
        commit_audited(tx, audit).await?;
        Ok(Subscribed::Saved(saved))
    }

    async fn push_subscriptions(&self, user_id: Uuid) -> StoreResult<Vec<PushSubscriptionRecord>> {
        Ok(self
            .db
            .fetch_all_as(
                sql(format!("SELECT {COLUMNS} FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, id"))
                    .bind(user_id),
                record_from_row,
            )
            .await?)
    }

    async fn push_subscription(&self, id: Uuid) -> StoreResult<Option<PushSubscriptionRecord>> {
        Ok(self
            .db
            .fetch_optional_as(
                sql(format!("SELECT {COLUMNS} FROM push_subscriptions WHERE id = $1")).bind(id),
                record_from_row,
            )
            .await?)
    }

    async fn practitioner_push_subscriptions(&self, practitioner_id: Uuid) -> StoreResult<Vec<PushSubscriptionRecord>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT s.id, s.user_id, s.subscription, s.created_at
                     FROM push_subscriptions s JOIN practitioners p ON p.user_id = s.user_id
                     WHERE p.id = $1 ORDER BY s.created_at, s.id")
                .bind(practitioner_id),
                record_from_row,
            )
            .await?)
    }

    async fn delete_push_subscription(
        &self,
        id: Uuid,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin_audited().await?;
        let n = match user_id {
            Some(user_id) => {
                tx.execute(sql("DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2").bind(id).bind(user_id))
                    .await?
            }
            None => tx.execute(sql("DELETE FROM push_subscriptions WHERE id = $1").bind(id)).await?,
        };
        if n == 0 {
            return Ok(false);
        }
        commit_audited(tx, audit).await?;
        Ok(true)
    }
}
