//! Group commit of issued TURN sessions: every credential's session row and its
//! `ice.credentials.issue` audit event are committed before its answer is sent, but many
//! requests share one transaction.
//!
//! Why: one transaction per credential made the database the limit (a credential cost a
//! `BEGIN IMMEDIATE`, two inserts, the chain's last hash and a commit, each a round trip, and
//! appends to the hash chain are serialised anyway, so credentials were written one at a time
//! however many requests waited). Here each request hands its rows to one writer task through
//! a bounded queue and awaits its batch's commit; the writer takes every request waiting (up to
//! [`MAX_BATCH`]), writes their sessions in one statement, takes the chain's lock, reads the
//! last hash once, hashes the batch's events in memory and inserts them in one statement, and
//! commits. While it commits, the next batch gathers. Nothing is answered before its commit,
//! so a crash loses no credential a client holds; a failed batch fails each of its requests.
//!
//! The chain's last hash is read under the chain's lock in every batch rather than kept from
//! the previous one: other handlers of this instance, and other instances on the same
//! PostgreSQL database, append between batches (see `engine::Tx::lock_audit_chain`).
//!
//! A full queue refuses at once ([`super::StoreError::Busy`], a 503 with `Retry-After`):
//! back-pressure instead of unbounded memory.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::audit_log::last_audit_hash;
use super::engine::{Db, Rows};
use super::{AuditEvent, IssuedTurnSession, NewAuditEvent, StoreError, StoreResult};

/// Requests committed together at most: 512 × 11 audit columns = 5,632 bound values, within
/// both engines' limits on one statement (SQLite 32,766, PostgreSQL 65,535).
pub const MAX_BATCH: usize = 512;

/// The requests waiting for the writer at most, by default (`ice.write-queue`).
pub const DEFAULT_QUEUE: usize = 4096;

struct Job {
    session: IssuedTurnSession,
    audit: NewAuditEvent,
    done: oneshot::Sender<Result<(), Arc<sqlx::Error>>>,
}

/// The writer's queue; the writer task runs while a sender exists.
pub(crate) struct TurnWriter {
    queue: mpsc::Sender<Job>,
}

impl TurnWriter {
    /// Starts the writer task on the current runtime, with room for `capacity` waiting requests.
    pub fn start(db: Db, capacity: usize) -> TurnWriter {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(db, jobs));
        TurnWriter { queue }
    }

    /// Queues `session` and its event and waits until they are committed.
    pub async fn record(&self, session: IssuedTurnSession, audit: NewAuditEvent) -> StoreResult<()> {
        let (done, committed) = oneshot::channel();
        self.queue.try_send(Job { session, audit, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::WriterGone,
        })?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::BatchFailed(e.to_string())),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

async fn run(db: Db, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = commit(&db, &batch).await.map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, requests = batch.len(), "issued TURN sessions NOT recorded; their requests fail");
        }
        for job in batch.drain(..) {
            // A request that gave up (its client went away) no longer listens; its rows stay.
            let _ = job.done.send(result.clone());
        }
    }
}

/// One transaction: the batch's sessions, then its events appended to the chain (health data
/// first, the chain's lock last, as every audited write does).
async fn commit(db: &Db, batch: &[Job]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_audited().await?;
    tx.insert_rows(session_rows(batch)).await?;
    tx.lock_audit_chain().await?;
    let (mut seq, mut prev_hash) = last_audit_hash(&mut tx).await?;
    let mut events = Vec::with_capacity(batch.len());
    for job in batch {
        seq += 1;
        let event = job.audit.clone().recorded(seq, Uuid::new_v4(), prev_hash);
        prev_hash = event.hash.clone();
        events.push(event);
    }
    tx.insert_rows(event_rows(events)).await?;
    tx.commit().await
}

const SESSION_COLUMNS: &[&str] = &["id", "expires_at", "user_id", "login_session", "appointment_id", "issued_at"];

fn session_rows(batch: &[Job]) -> Rows {
    let mut rows = Rows::new("turn_sessions", SESSION_COLUMNS, batch.len());
    for Job { session: s, .. } in batch {
        rows.push([
            (&s.id).into(),
            s.expires_at.into(),
            s.user_id.into(),
            s.login_session.into(),
            s.appointment_id.into(),
            s.issued_at.into(),
        ]);
    }
    rows
}

const EVENT_COLUMNS: &[&str] =
    &["seq", "id", "at", "actor", "action", "target", "outcome", "source_ip", "request_id", "prev_hash", "hash"];

fn event_rows(events: Vec<AuditEvent>) -> Rows {
    let mut rows = Rows::new("audit_events", EVENT_COLUMNS, events.len());
    for e in events {
        rows.push([
            e.seq.into(),
            e.id.into(),
            e.at.into(),
            e.actor.into(),
            e.action.into(),
            e.target.into(),
            e.outcome.into(),
            e.source_ip.into(),
            e.request_id.into(),
            e.prev_hash.into(),
            e.hash.into(),
        ]);
    }
    rows
}
