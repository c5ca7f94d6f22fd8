//! Privacy as stored: published notices, consents, erasure (anonymisation or deletion) and the
//! end of retention.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::commit_audited;
use super::engine::{Row, sql, write_error};
use super::scheduling_store::patient_from_row;
use super::{
    Anonymisation, Consent, ConsentDecision, NewAuditEvent, PatientRecord, PrivacyNotice, SqlStore, StoreResult,
};

#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// `Conflict` if the version exists: a published notice never changes.
    async fn publish_notice(&self, n: PrivacyNotice) -> StoreResult<PrivacyNotice>;
    /// Every notice, newest first.
    async fn notices(&self) -> StoreResult<Vec<PrivacyNotice>>;
    async fn record_consent(&self, c: Consent, audit: NewAuditEvent) -> StoreResult<Consent>;
    /// A user's consent history, oldest first.
    async fn consents(&self, user_id: Uuid) -> StoreResult<Vec<Consent>>;
    /// Anonymises a patient whose medical record must be retained (see `Anonymisation`).
    async fn anonymise_patient(&self, a: &Anonymisation, audit: NewAuditEvent) -> StoreResult<()>;
    /// Deletes a patient with nothing to retain: their appointments, the record, and their
    /// login account with its sessions and consents. Audit events stay (they name ids only).
    async fn delete_patient(
        &self,
        patient_id: Option<Uuid>,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<()>;
    /// Anonymised patients whose retention ended at or before `now`.
    async fn patients_past_retention(&self, now: OffsetDateTime) -> StoreResult<Vec<PatientRecord>>;
}

fn notice_from_row(r: &Row) -> Result<PrivacyNotice, sqlx::Error> {
    let purposes: String = r.get("purposes")?;
    Ok(PrivacyNotice {
        id: r.get("id")?,
        version: r.get("version")?,
        language: r.get("language")?,
        title: r.get("title")?,
        body: r.get("body")?,
        purposes: serde_json::from_str(&purposes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        published_at: r.time("published_at")?,
        published_by: r.get("published_by")?,
    })
}

fn consent_from_row(r: &Row) -> Result<Consent, sqlx::Error> {
    let decision: String = r.get("decision")?;
    Ok(Consent {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        notice_version: r.get("notice_version")?,
        purpose: r.get("purpose")?,
        decision: ConsentDecision::parse(&decision)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown decision {decision:?}").into()))?,
        at: r.time("at")?,
        source_ip: r.get("source_ip")?,
    })
}

#[async_trait]
impl PrivacyStore for SqlStore {
    async fn publish_notice(&self, n: PrivacyNotice) -> StoreResult<PrivacyNotice> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let purposes = serde_json::to_string(&n.purposes).expect("purposes serialise");
        self
            .db
            .execute(
                sql("INSERT INTO privacy_notices (id, version, language, title, body, purposes, published_at, published_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(n.id)
                .bind(&n.version)
                .bind(&n.language)
                .bind(&n.title)
                .bind(&n.body)
                .bind(purposes)
                .bind(n.published_at)
                .bind(n.published_by),
            )
            .await
            .map_err(write_error)?;
        Ok(n)
    }

    async fn notices(&self) -> StoreResult<Vec<PrivacyNotice>> {
        Ok(self
            .db
            .fetch_all_as(sql("SELECT * FROM privacy_notices ORDER BY published_at DESC, id"), notice_from_row)
            .await?)
    }

    async fn record_consent(&self, c: Consent, audit: NewAuditEvent) -> StoreResult<Consent> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("INSERT INTO consents (id, user_id, notice_version, purpose, decision, at, source_ip)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(c.id)
            .bind(c.user_id)
            .bind(&c.notice_version)
            .bind(&c.purpose)
            .bind(c.decision.as_str())
            .bind(c.at)
            .bind(&c.source_ip),
        )
        .await?;
        commit_audited(tx, audit).await?;
        Ok(c)
    }

    async fn consents(&self, user_id: Uuid) -> StoreResult<Vec<Consent>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM consents WHERE user_id = $1 ORDER BY at, id").bind(user_id),
                consent_from_row,
            )
            .await?)
    }

    async fn anonymise_patient(&self, a: &Anonymisation, audit: NewAuditEvent) -> StoreResult<()> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let _invalidate = super::read_cache::InvalidateOnDrop(&self.auth_cache);
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("UPDATE patients SET display_name = $1, birth_date = NULL, national_id_enc = NULL,
                    national_id_index = NULL, phone_enc = NULL, phone_index = NULL, email_enc = NULL,
                    email_index = NULL, notes_enc = NULL, anonymized_at = $2, retain_until = $3, updated_at = $2
                 WHERE id = $4")
            .bind(&a.placeholder_name)
            .bind(a.now)
            .bind(a.retain_until)
            .bind(a.patient_id),
        )
        .await?;
        tx.execute(
            sql("UPDATE appointments SET status = 'cancelled', cancel_reason = $1, updated_at = $2
                 WHERE patient_id = $3 AND status IN ('proposed', 'pending', 'booked')")
            .bind(&a.cancel_reason)
            .bind(a.now)
            .bind(a.patient_id),
        )
        .await?;
        if let Some(user_id) = a.user_id {
            tx.execute(
                sql("UPDATE users SET email = $1, display_name = $2, password_hash = '!', disabled = true,
                        updated_at = $3
                     WHERE id = $4")
                .bind(&a.placeholder_email)
                .bind(&a.placeholder_name)
                .bind(a.now)
                .bind(user_id),
            )
            .await?;
            tx.execute(
                sql("UPDATE sessions SET revoked_at = $1, revoked_reason = 'erasure'
                     WHERE user_id = $2 AND revoked_at IS NULL")
                .bind(a.now)
                .bind(user_id),
            )
            .await?;
        }
        commit_audited(tx, audit).await?;
        Ok(())
    }

    async fn delete_patient(
        &self,
        patient_id: Option<Uuid>,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<()> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let _invalidate = super::read_cache::InvalidateOnDrop(&self.auth_cache);
        let mut tx = self.db.begin_audited().await?;
        if let Some(patient_id) = patient_id {
            tx.execute(sql("DELETE FROM appointments WHERE patient_id = $1").bind(patient_id)).await?;
            tx.execute(sql("DELETE FROM patients WHERE id = $1").bind(patient_id)).await?;
        }
        if let Some(user_id) = user_id {
            // Sessions, refresh tokens and consents go with the account (ON DELETE CASCADE;
            // SQLite enforces it with foreign_keys on, which the pool sets).
            tx.execute(sql("DELETE FROM consents WHERE user_id = $1").bind(user_id)).await?;
            tx.execute(sql("DELETE FROM users WHERE id = $1").bind(user_id)).await?;
        }
        commit_audited(tx, audit).await?;
        Ok(())
    }

    async fn patients_past_retention(&self, now: OffsetDateTime) -> StoreResult<Vec<PatientRecord>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM patients WHERE retain_until IS NOT NULL AND retain_until <= $1").bind(now),
                patient_from_row,
            )
            .await?)
    }
}
