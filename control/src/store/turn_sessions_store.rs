//! TURN sessions as stored: each issued credential's session, and the revocations relays are
//! sent (at once, and again when they register).

use async_trait::async_trait;
use time::OffsetDateTime;

use super::audit_log::commit_audited;
use super::engine::{Row, map_rows, sql};
use super::{
    IssuedTurnSession, NewAuditEvent, RevokedTurnSession, SqlStore, StoreResult, TurnRevocation, TurnSessionScope,
};

#[async_trait]
pub trait TurnSessionStore: Send + Sync {
    /// Records an issued session with its `ice.credentials.issue` event, in one transaction
    /// (shared with other requests' sessions: a group commit); committed when this returns.
    async fn record_turn_session(&self, session: IssuedTurnSession, audit: NewAuditEvent) -> StoreResult<()>;
    /// Revokes the sessions `revocation` names that are still valid and records the event
    /// `audit` makes of them, in one transaction. Returns every session it names that is
    /// revoked now (a session revoked before keeps its first revocation's who and why, and is
    /// returned too).
    async fn revoke_turn_sessions(
        &self,
        revocation: &TurnRevocation,
        audit: &(dyn for<'a> Fn(&'a [RevokedTurnSession]) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<Vec<RevokedTurnSession>>;
    /// The revocations still in force at `now`, for a relay that registers.
    async fn turn_revocations_in_force(&self, now: OffsetDateTime) -> StoreResult<Vec<RevokedTurnSession>>;
    /// Deletes issued sessions and revocations that expired before `cutoff`; how many went.
    async fn purge_turn_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64>;
}

fn revoked_from_row(r: &Row) -> Result<RevokedTurnSession, sqlx::Error> {
    Ok(RevokedTurnSession { id: r.get("id")?, expires_at: r.time("expires_at")? })
}

#[async_trait]
impl TurnSessionStore for SqlStore {
    async fn record_turn_session(&self, s: IssuedTurnSession, audit: NewAuditEvent) -> StoreResult<()> {
        // Committed with other requests' in one transaction (turn_writer.rs), before this returns.
        self.turn_writer().record(s, audit).await
    }

    async fn revoke_turn_sessions(
        &self,
        r: &TurnRevocation,
        audit: &(dyn for<'a> Fn(&'a [RevokedTurnSession]) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<Vec<RevokedTurnSession>> {
        let mut tx = self.db.begin_audited().await?;
        let column = match &r.scope {
            TurnSessionScope::Session { .. } => "id",
            TurnSessionScope::User(_) => "user_id",
            TurnSessionScope::Login(_) => "login_session",
            TurnSessionScope::Appointment(_) => "appointment_id",
        };
        // One statement each, however many sessions (10,000 of a user revoked at once are two
        // round trips, not 10,000).
        let scoped = |q: String| match &r.scope {
            TurnSessionScope::Session { id, .. } => sql(q).bind(id),
            TurnSessionScope::User(v) | TurnSessionScope::Login(v) | TurnSessionScope::Appointment(v) => {
                sql(q).bind(*v)
            }
        };
        let named = map_rows(
            tx.fetch_all(
                scoped(format!("SELECT id, expires_at FROM turn_sessions WHERE {column} = $1 AND expires_at > $2"))
                    .bind(r.now),
            )
            .await?,
            revoked_from_row,
        )?;
        tx.execute(
            scoped(format!(
                "INSERT INTO turn_revocations (id, expires_at, revoked_by, reason, revoked_at)
                 SELECT id, expires_at, $3, $4, $2 FROM turn_sessions WHERE {column} = $1 AND expires_at > $2
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(r.now)
            .bind(r.by)
            .bind(&r.reason),
        )
        .await?;
        let named = match &r.scope {
            // An id never issued here (or already purged) is revoked until `unknown_until`.
            TurnSessionScope::Session { id, unknown_until } if named.is_empty() => {
                let issued_once =
                    tx.fetch_optional(sql("SELECT 1 FROM turn_sessions WHERE id = $1").bind(id)).await?.is_some();
                if issued_once || *unknown_until <= r.now {
                    Vec::new()
                } else {
                    tx.execute(
                        sql("INSERT INTO turn_revocations (id, expires_at, revoked_by, reason, revoked_at)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
                        .bind(id)
                        .bind(*unknown_until)
                        .bind(r.by)
                        .bind(&r.reason)
                        .bind(r.now),
                    )
                    .await?;
                    vec![RevokedTurnSession { id: id.clone(), expires_at: *unknown_until }]
                }
            }
            _ => named,
        };
        commit_audited(tx, audit(&named)).await?;
        Ok(named)
    }

    async fn turn_revocations_in_force(&self, now: OffsetDateTime) -> StoreResult<Vec<RevokedTurnSession>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT id, expires_at FROM turn_revocations WHERE expires_at > $1 ORDER BY expires_at, id")
                    .bind(now),
                revoked_from_row,
            )
            .await?)
    }

    async fn purge_turn_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let mut tx = self.db.begin().await?;
        let sessions = tx.execute(sql("DELETE FROM turn_sessions WHERE expires_at < $1").bind(cutoff)).await?;
        let revocations = tx.execute(sql("DELETE FROM turn_revocations WHERE expires_at < $1").bind(cutoff)).await?;
        tx.commit().await?;
        Ok(sessions + revocations)
    }
}
