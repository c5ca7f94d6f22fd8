//! SQLite: practitioner and patient lists, patient updates, notices, consents, erasure and
//! retention.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    SqliteStore, append_audit_in, from_micros, is_unique_violation, micros, patient_from_row, practitioner_from_row,
    session_from_row,
};
use crate::store::*;

fn notice_from_row(r: &SqliteRow) -> Result<PrivacyNotice, sqlx::Error> {
    let purposes: String = r.try_get("purposes")?;
    Ok(PrivacyNotice {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        language: r.try_get("language")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        purposes: serde_json::from_str(&purposes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        published_at: from_micros(r.try_get("published_at")?),
        published_by: r.try_get("published_by")?,
    })
}

fn consent_from_row(r: &SqliteRow) -> Result<Consent, sqlx::Error> {
    let decision: String = r.try_get("decision")?;
    Ok(Consent {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        notice_version: r.try_get("notice_version")?,
        purpose: r.try_get("purpose")?,
        decision: ConsentDecision::parse(&decision)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown decision {decision:?}").into()))?,
        at: from_micros(r.try_get("at")?),
        source_ip: r.try_get("source_ip")?,
    })
}

impl SqliteStore {
    pub(super) async fn list_practitioners_impl(
        &self,
        specialty: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Practitioner>> {
        let rows = sqlx::query(
            "SELECT * FROM practitioners WHERE (? IS NULL OR lower(specialty) = lower(?))
             ORDER BY display_name, id LIMIT ? OFFSET ?",
        )
        .bind(specialty)
        .bind(specialty)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(practitioner_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn list_patients_impl(&self, f: &PatientFilter) -> StoreResult<Vec<PatientRecord>> {
        let (now, ended_after) = f.care.map_or((None, None), |c| (Some(micros(c.now)), Some(micros(c.ended_after))));
        let rows = sqlx::query(&format!(
            "SELECT * FROM patients
             WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM appointments a
                    WHERE a.practitioner_id = ?1 AND a.patient_id = patients.id AND {}))
               AND (?4 IS NULL OR national_id_index = ?4) AND (?5 IS NULL OR phone_index = ?5)
               AND (?6 IS NULL OR email_index = ?6)
             ORDER BY display_name, id LIMIT ?7 OFFSET ?8",
            care_relationship("?2", "?3")
        ))
        .bind(f.practitioner_id)
        .bind(now)
        .bind(ended_after)
        .bind(&f.national_id_index)
        .bind(&f.phone_index)
        .bind(&f.email_index)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(patient_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn update_patient_impl(&self, p: &PatientRecord, audit: NewAuditEvent) -> StoreResult<bool> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let done = sqlx::query(
            "UPDATE patients SET display_name = ?, birth_date = ?, national_id_enc = ?, national_id_index = ?,
                phone_enc = ?, phone_index = ?, email_enc = ?, email_index = ?, notes_enc = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(&p.display_name)
        .bind(p.birth_date.map(|d| d.to_string()))
        .bind(&p.national_id_enc)
        .bind(&p.national_id_index)
        .bind(&p.phone_enc)
        .bind(&p.phone_index)
        .bind(&p.email_enc)
        .bind(&p.email_index)
        .bind(&p.notes_enc)
        .bind(micros(p.updated_at))
        .bind(p.id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn publish_notice_impl(&self, n: PrivacyNotice) -> StoreResult<PrivacyNotice> {
        let purposes = serde_json::to_string(&n.purposes).expect("purposes serialise");
        let r = sqlx::query(
            "INSERT INTO privacy_notices (id, version, language, title, body, purposes, published_at, published_by)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(n.id)
        .bind(&n.version)
        .bind(&n.language)
        .bind(&n.title)
        .bind(&n.body)
        .bind(purposes)
        .bind(micros(n.published_at))
        .bind(n.published_by)
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(n),
        }
    }

    pub(super) async fn notices_impl(&self) -> StoreResult<Vec<PrivacyNotice>> {
        let rows =
            sqlx::query("SELECT * FROM privacy_notices ORDER BY published_at DESC, id").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(notice_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn record_consent_impl(&self, c: Consent, audit: NewAuditEvent) -> StoreResult<Consent> {
        let (_guard, mut tx) = self.audited_tx().await?;
        sqlx::query(
            "INSERT INTO consents (id, user_id, notice_version, purpose, decision, at, source_ip)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id)
        .bind(c.user_id)
        .bind(&c.notice_version)
        .bind(&c.purpose)
        .bind(c.decision.as_str())
        .bind(micros(c.at))
        .bind(&c.source_ip)
        .execute(&mut *tx)
        .await?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(c)
    }

    pub(super) async fn consents_impl(&self, user_id: Uuid) -> StoreResult<Vec<Consent>> {
        let rows = sqlx::query("SELECT * FROM consents WHERE user_id = ? ORDER BY at, id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(consent_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn user_sessions_impl(&self, user_id: Uuid) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(session_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn anonymise_patient_impl(&self, a: &Anonymisation, audit: NewAuditEvent) -> StoreResult<()> {
        let (_guard, mut tx) = self.audited_tx().await?;
        sqlx::query(
            "UPDATE patients SET display_name = ?, birth_date = NULL, national_id_enc = NULL, national_id_index = NULL,
                phone_enc = NULL, phone_index = NULL, email_enc = NULL, email_index = NULL, notes_enc = NULL,
                anonymized_at = ?, retain_until = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(&a.placeholder_name)
        .bind(micros(a.now))
        .bind(micros(a.retain_until))
        .bind(micros(a.now))
        .bind(a.patient_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE appointments SET status = 'cancelled', cancel_reason = ?, updated_at = ?
             WHERE patient_id = ? AND status IN ('proposed', 'pending', 'booked')",
        )
        .bind(&a.cancel_reason)
        .bind(micros(a.now))
        .bind(a.patient_id)
        .execute(&mut *tx)
        .await?;
        if let Some(user_id) = a.user_id {
            sqlx::query(
                "UPDATE users SET email = ?, display_name = ?, password_hash = '!', disabled = 1, updated_at = ? WHERE id = ?",
            )
            .bind(&a.placeholder_email)
            .bind(&a.placeholder_name)
            .bind(micros(a.now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'erasure' WHERE user_id = ? AND revoked_at IS NULL",
            )
            .bind(micros(a.now))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delete_patient_impl(
        &self,
        patient_id: Option<Uuid>,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<()> {
        let (_guard, mut tx) = self.audited_tx().await?;
        if let Some(patient_id) = patient_id {
            sqlx::query("DELETE FROM appointments WHERE patient_id = ?").bind(patient_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM patients WHERE id = ?").bind(patient_id).execute(&mut *tx).await?;
        }
        if let Some(user_id) = user_id {
            // Sessions, refresh tokens and consents go with the account (ON DELETE CASCADE;
            // SQLite enforces it with foreign_keys on, which the pool sets).
            sqlx::query("DELETE FROM consents WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM users WHERE id = ?").bind(user_id).execute(&mut *tx).await?;
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn patients_past_retention_impl(&self, now: OffsetDateTime) -> StoreResult<Vec<PatientRecord>> {
        let rows = sqlx::query("SELECT * FROM patients WHERE retain_until IS NOT NULL AND retain_until <= ?")
            .bind(micros(now))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(patient_from_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn purge_sessions_impl(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE expires_at < ?)")
            .bind(micros(cutoff))
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_at < ?").bind(micros(cutoff)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
