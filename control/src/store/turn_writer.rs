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
use super::engine::{Db, Sql, sql};
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
    let marks = Placeholders::of(db);
    let mut tx = db.begin_audited().await?;
    tx.execute(insert_sessions(batch, marks)).await?;
    tx.lock_audit_chain().await?;
    let (mut seq, mut prev_hash) = last_audit_hash(&mut tx).await?;
    let mut events = Vec::with_capacity(batch.len());
    for job in batch {
        seq += 1;
        let event = job.audit.clone().recorded(seq, Uuid::new_v4(), prev_hash);
        prev_hash = event.hash.clone();
        events.push(event);
    }
    tx.execute(insert_events(&events, marks)).await?;
    tx.commit().await
}

/// How the batch statements' placeholders are written.
///
/// SQLite gets anonymous `?`, bound in order. With numbered ones (`$1` … `$5632`) each bind
/// looks its parameter's name up (sqlx calls `sqlite3_bind_parameter_name`, which walks the
/// statement's list of names): quadratic in the batch's size. A `perf` profile of a 512-request
/// run had 38 % of the server's CPU in that lookup and its `strncmp`, and CPU per credential
/// rose with the batch instead of falling. PostgreSQL numbers them (`$n`), as it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    Anonymous,
    Numbered,
}

impl Placeholders {
    fn of(db: &Db) -> Placeholders {
        if db.engine() == "sqlite" { Placeholders::Anonymous } else { Placeholders::Numbered }
    }
}

/// `VALUES ($1, …, $n), ($n+1, …)…` (or `(?, …, ?), …`) for `rows` rows of `columns`
/// placeholders.
fn values(rows: usize, columns: usize, marks: Placeholders) -> String {
    let mut text = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        text.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                text.push_str(", ");
            }
            match marks {
                Placeholders::Anonymous => text.push('?'),
                Placeholders::Numbered => {
                    text.push('$');
                    text.push_str(&(r * columns + c + 1).to_string());
                }
            }
        }
        text.push(')');
    }
    text
}

fn insert_sessions(batch: &[Job], marks: Placeholders) -> Sql {
    let mut q = sql(format!(
        "INSERT INTO turn_sessions (id, expires_at, user_id, login_session, appointment_id, issued_at) VALUES {}",
        values(batch.len(), 6, marks)
    ));
    for Job { session: s, .. } in batch {
        q = q
            .bind(&s.id)
            .bind(s.expires_at)
            .bind(s.user_id)
            .bind(s.login_session)
            .bind(s.appointment_id)
            .bind(s.issued_at);
    }
    q
}

fn insert_events(events: &[AuditEvent], marks: Placeholders) -> Sql {
    let mut q = sql(format!(
        "INSERT INTO audit_events (seq, id, at, actor, action, target, outcome, source_ip, request_id, prev_hash, hash)
         VALUES {}",
        values(events.len(), 11, marks)
    ));
    for e in events {
        q = q
            .bind(e.seq)
            .bind(e.id)
            .bind(e.at)
            .bind(e.actor)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.outcome)
            .bind(&e.source_ip)
            .bind(&e.request_id)
            .bind(&e.prev_hash)
            .bind(&e.hash);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::{Placeholders, values};

    #[test]
    fn placeholders_number_on_across_rows() {
        assert_eq!(values(1, 2, Placeholders::Numbered), "($1, $2)");
        assert_eq!(values(2, 3, Placeholders::Numbered), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(2, 2, Placeholders::Anonymous), "(?, ?), (?, ?)");
    }
}
