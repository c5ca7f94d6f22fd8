//! The audit trail as stored: appends to the hash chain, listing, and the whole chain for
//! verification. The chain's hashing is the audit module's (`crate::audit::chain`).

use async_trait::async_trait;
use uuid::Uuid;

use super::engine::{Row, Tx, sql};
use super::{AuditEvent, AuditFilter, NewAuditEvent, SqlStore, StoreResult};
use crate::audit::chain::GENESIS_HASH;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends to the hash chain: reads the last hash and inserts, serialised against other
    /// appends.
    async fn append_audit(&self, event: NewAuditEvent) -> StoreResult<AuditEvent>;
    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
    /// Every event in chain order, for verification.
    async fn audit_chain(&self) -> StoreResult<Vec<AuditEvent>>;
}

fn audit_from_row(r: &Row) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        seq: r.get("seq")?,
        id: r.get("id")?,
        at: r.time("at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        target: r.get("target")?,
        outcome: r.get("outcome")?,
        source_ip: r.get("source_ip")?,
        request_id: r.get("request_id")?,
        hash: r.get("hash")?,
        prev_hash: r.get("prev_hash")?,
    })
}

/// Appends `e` to the hash chain inside the caller's transaction, which must come from
/// [`super::engine::Db::begin_audited`]. Callers write their health data first and append
/// last, so that the chain's lock is never held while waiting for another lock.
pub(super) async fn append_audit_in(tx: &mut Tx, e: NewAuditEvent) -> Result<AuditEvent, sqlx::Error> {
    tx.lock_audit_chain().await?;
    let (last, prev_hash) = last_audit_hash(tx).await?;
    let event = e.recorded(last + 1, Uuid::new_v4(), prev_hash);
    tx.execute(
        sql("INSERT INTO audit_events (seq, id, at, actor, action, target, outcome, source_ip, request_id, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(event.seq)
        .bind(event.id)
        .bind(event.at)
        .bind(event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(&event.outcome)
        .bind(&event.source_ip)
        .bind(&event.request_id)
        .bind(&event.prev_hash)
        .bind(&event.hash),
    )
    .await?;
    Ok(event)
}

/// The chain's last position and hash (0 and the genesis hash while it is empty). Read it only
/// under [`Tx::lock_audit_chain`]: otherwise another append can follow it before this one.
pub(super) async fn last_audit_hash(tx: &mut Tx) -> Result<(i64, String), sqlx::Error> {
    match tx.fetch_optional(sql("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).await? {
        Some(r) => Ok((r.get::<i64>("seq")?, r.get("hash")?)),
        None => Ok((0, GENESIS_HASH.to_string())),
    }
}

/// Appends `e` as the last write of `tx` and commits both: the write and its event are
/// recorded together or not at all.
pub(super) async fn commit_audited(mut tx: Tx, e: NewAuditEvent) -> Result<AuditEvent, sqlx::Error> {
    let event = append_audit_in(&mut tx, e).await?;
    tx.commit().await?;
    Ok(event)
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, e: NewAuditEvent) -> StoreResult<AuditEvent> {
        Ok(commit_audited(self.db.begin_audited().await?, e).await?)
    }

    async fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM audit_events
                     WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
                       AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4)
                     ORDER BY seq DESC LIMIT $5")
                .bind(f.actor)
                .bind(&f.action)
                .bind(f.since)
                .bind(f.until)
                .bind(f.limit),
                audit_from_row,
            )
            .await?)
    }

    async fn audit_chain(&self) -> StoreResult<Vec<AuditEvent>> {
        Ok(self.db.fetch_all_as(sql("SELECT * FROM audit_events ORDER BY seq"), audit_from_row).await?)
    }
}
