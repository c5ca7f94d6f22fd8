//! A practice's own booking rules as stored, and the expiry of unanswered proposals: each
//! expiry commits with its audit event and its notifications (the outbox rows), so an expired
//! proposal is always announced, once, whichever instance expired it.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::{append_audit_in, commit_audited};
use super::engine::{Row, map_rows, sql};
use super::notifications_store::enqueue_sql;
use super::scheduling_store::appointment_from_row;
use super::{Appointment, AppointmentStatus, NewAuditEvent, NewOutboxEntry, SqlStore, StoreResult};

/// A practice's booking rules, in the units of the API (`domain::booking::RuleValues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticeRules {
    pub practice_id: Uuid,
    pub min_lead_minutes: i64,
    pub max_horizon_days: i64,
    /// `None`: each working pattern's own slot length.
    pub slot_minutes: Option<i64>,
    pub patient_cancel_window_hours: i64,
    pub proposal_expiry_hours: i64,
    pub updated_at: OffsetDateTime,
    pub updated_by: Uuid,
}

/// An appointment awaiting confirmation, with its practice's proposal expiry (`None`: the
/// practice has no rules of its own, or the practitioner no practice).
#[derive(Debug, Clone)]
pub struct OpenProposal {
    pub appointment: Appointment,
    pub practice_expiry_hours: Option<i64>,
}

#[async_trait]
pub trait BookingRulesStore: Send + Sync {
    async fn practice_rules(&self, practice_id: Uuid) -> StoreResult<Option<PracticeRules>>;
    /// The rules of the practitioner's practice, if it has its own.
    async fn practitioner_rules(&self, practitioner_id: Uuid) -> StoreResult<Option<PracticeRules>>;
    /// Writes a practice's rules (all of them), with `audit`.
    async fn set_practice_rules(&self, rules: &PracticeRules, audit: NewAuditEvent) -> StoreResult<()>;
    /// Removes a practice's rules (back to the deployment's), with `audit`; false if it had none.
    async fn clear_practice_rules(&self, practice_id: Uuid, audit: NewAuditEvent) -> StoreResult<bool>;
    /// `proposed` and `pending` appointments made at or before `created_by` or starting at or
    /// before `starts_by` (those that may have expired), oldest first, at most `limit`, after
    /// `after` (the `(created_at, id)` of the previous page's last).
    async fn open_proposals(
        &self,
        created_by: OffsetDateTime,
        starts_by: OffsetDateTime,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<OpenProposal>>;
    /// Cancels an appointment still in `expected` with `reason`, committed with `audit` and the
    /// outbox rows `notify` makes of the cancelled appointment; `None` if it was no longer in
    /// `expected` (confirmed, declined, or expired by another instance meanwhile).
    async fn expire_proposal(
        &self,
        id: Uuid,
        expected: AppointmentStatus,
        reason: &str,
        now: OffsetDateTime,
        audit: NewAuditEvent,
        notify: &(dyn for<'a> Fn(&'a Appointment) -> Vec<NewOutboxEntry> + Send + Sync),
    ) -> StoreResult<Option<Appointment>>;
}

fn rules_from_row(r: &Row) -> Result<PracticeRules, sqlx::Error> {
    let int = |col: &str| r.get::<i32>(col).map(i64::from);
    Ok(PracticeRules {
        practice_id: r.get("practice_id")?,
        min_lead_minutes: int("min_lead_minutes")?,
        max_horizon_days: int("max_horizon_days")?,
        slot_minutes: r.get::<Option<i32>>("slot_minutes")?.map(i64::from),
        patient_cancel_window_hours: int("patient_cancel_window_hours")?,
        proposal_expiry_hours: int("proposal_expiry_hours")?,
        updated_at: r.time("updated_at")?,
        updated_by: r.get("updated_by")?,
    })
}

fn proposal_from_row(r: &Row) -> Result<OpenProposal, sqlx::Error> {
    Ok(OpenProposal {
        appointment: appointment_from_row(r)?,
        practice_expiry_hours: r.get::<Option<i32>>("practice_expiry_hours")?.map(i64::from),
    })
}

/// Rules are range-checked before they are stored, so they fit an `integer` column.
fn column(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[async_trait]
impl BookingRulesStore for SqlStore {
    async fn practice_rules(&self, practice_id: Uuid) -> StoreResult<Option<PracticeRules>> {
        Ok(self
            .db
            .fetch_optional_as(
                sql("SELECT * FROM practice_booking_rules WHERE practice_id = $1").bind(practice_id),
                rules_from_row,
            )
            .await?)
    }

    async fn practitioner_rules(&self, practitioner_id: Uuid) -> StoreResult<Option<PracticeRules>> {
        Ok(self
            .db
            .fetch_optional_as(
                sql("SELECT r.* FROM practice_booking_rules r JOIN practitioners p ON p.practice_id = r.practice_id
                     WHERE p.id = $1")
                .bind(practitioner_id),
                rules_from_row,
            )
            .await?)
    }

    async fn set_practice_rules(&self, r: &PracticeRules, audit: NewAuditEvent) -> StoreResult<()> {
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("INSERT INTO practice_booking_rules
                   (practice_id, min_lead_minutes, max_horizon_days, slot_minutes, patient_cancel_window_hours,
                    proposal_expiry_hours, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (practice_id) DO UPDATE SET
                   min_lead_minutes = excluded.min_lead_minutes, max_horizon_days = excluded.max_horizon_days,
                   slot_minutes = excluded.slot_minutes,
                   patient_cancel_window_hours = excluded.patient_cancel_window_hours,
                   proposal_expiry_hours = excluded.proposal_expiry_hours,
                   updated_at = excluded.updated_at, updated_by = excluded.updated_by")
            .bind(r.practice_id)
            .bind(column(r.min_lead_minutes))
            .bind(column(r.max_horizon_days))
            .bind(r.slot_minutes.map(column))
            .bind(column(r.patient_cancel_window_hours))
            .bind(column(r.proposal_expiry_hours))
            .bind(r.updated_at)
            .bind(r.updated_by),
        )
        .await?;
        commit_audited(tx, audit).await?;
        Ok(())
    }

    async fn clear_practice_rules(&self, practice_id: Uuid, audit: NewAuditEvent) -> StoreResult<bool> {
        let mut tx = self.db.begin_audited().await?;
        let done =
            tx.execute(sql("DELETE FROM practice_booking_rules WHERE practice_id = $1").bind(practice_id)).await?;
        if done != 1 {
            return Ok(false);
        }
        commit_audited(tx, audit).await?;
        Ok(true)
    }

    async fn open_proposals(
        &self,
        created_by: OffsetDateTime,
        starts_by: OffsetDateTime,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<OpenProposal>> {
        let rows = self
            .db
            .fetch_all(
                sql("SELECT a.*, r.proposal_expiry_hours AS practice_expiry_hours
                     FROM appointments a
                     JOIN practitioners p ON p.id = a.practitioner_id
                     LEFT JOIN practice_booking_rules r ON r.practice_id = p.practice_id
                     WHERE a.status IN ('proposed', 'pending') AND (a.created_at <= $1 OR a.starts_at <= $2)
                       AND ($3 IS NULL OR a.created_at > $3 OR (a.created_at = $3 AND a.id > $4))
                     ORDER BY a.created_at, a.id LIMIT $5")
                .bind(created_by)
                .bind(starts_by)
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .bind(limit),
            )
            .await?;
        Ok(map_rows(rows, proposal_from_row)?)
    }

    async fn expire_proposal(
        &self,
        id: Uuid,
        expected: AppointmentStatus,
        reason: &str,
        now: OffsetDateTime,
        audit: NewAuditEvent,
        notify: &(dyn for<'a> Fn(&'a Appointment) -> Vec<NewOutboxEntry> + Send + Sync),
    ) -> StoreResult<Option<Appointment>> {
        let mut tx = self.db.begin_audited().await?;
        let row = tx
            .fetch_optional(
                sql("UPDATE appointments SET status = 'cancelled', cancel_reason = $1, updated_at = $2
                     WHERE id = $3 AND status = $4 RETURNING *")
                .bind(reason)
                .bind(now)
                .bind(id)
                .bind(expected.as_str()),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expired = appointment_from_row(&row)?;
        for entry in notify(&expired) {
            tx.execute(enqueue_sql(&entry)).await?;
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(expired))
    }
}
