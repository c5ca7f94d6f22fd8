//! Data residency as stored: practices, patients' data regions, and legal transfer bases.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::commit_audited;
use super::engine::{Row, sql, write_error};
use super::{
    LegalBasis, NewAuditEvent, PatientResidency, Practice, PrivacyStore, SchedulingStore, SqlStore, StoreResult,
};

#[async_trait]
pub trait ResidencyStore: Send + Sync {
    async fn create_practice(&self, p: Practice, audit: NewAuditEvent) -> StoreResult<Practice>;
    async fn practice(&self, id: Uuid) -> StoreResult<Option<Practice>>;
    /// Every practice, by name.
    async fn list_practices(&self) -> StoreResult<Vec<Practice>>;
    /// Writes a practice's name and region; false if there is no such practice.
    async fn update_practice(&self, p: &Practice, audit: NewAuditEvent) -> StoreResult<bool>;
    /// Sets a patient's data region (`None`: the deployment's); false if there is no such patient.
    async fn set_patient_region(
        &self,
        patient_id: Uuid,
        region: Option<&str>,
        at: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<bool>;
    async fn record_legal_basis(&self, b: LegalBasis, audit: NewAuditEvent) -> StoreResult<LegalBasis>;
    /// Withdraws a basis of this patient that is not withdrawn yet; false if there is none.
    async fn withdraw_legal_basis(
        &self,
        patient_id: Uuid,
        id: Uuid,
        by: Uuid,
        at: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<bool>;
    /// A patient's legal bases, oldest first (withdrawn and expired ones too: the history).
    async fn legal_bases(&self, patient_id: Uuid) -> StoreResult<Vec<LegalBasis>>;
    /// What the residency rule reads for the patient account `user_id`'s own ICE credentials.
    /// May be served from a cache of at most [`super::READ_CACHE_TTL`]; this store's own
    /// writes of consents, notices, patients and legal bases take effect on it at once
    /// (`read_cache`). Shared (`Arc`): a cached answer is handed out without copying it.
    async fn patient_residency(&self, user_id: Uuid) -> StoreResult<std::sync::Arc<PatientResidency>>;
}

fn practice_from_row(r: &Row) -> Result<Practice, sqlx::Error> {
    Ok(Practice {
        id: r.get("id")?,
        name: r.get("name")?,
        data_region: r.get("data_region")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn legal_basis_from_row(r: &Row) -> Result<LegalBasis, sqlx::Error> {
    let destinations: Option<String> = r.get("destinations")?;
    Ok(LegalBasis {
        id: r.get("id")?,
        patient_id: r.get("patient_id")?,
        reference: r.get("reference")?,
        destinations: destinations
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        expires_at: r.opt_time("expires_at")?,
        recorded_by: r.get("recorded_by")?,
        recorded_at: r.time("recorded_at")?,
        withdrawn_at: r.opt_time("withdrawn_at")?,
        withdrawn_by: r.get("withdrawn_by")?,
    })
}

#[async_trait]
impl ResidencyStore for SqlStore {
    async fn create_practice(&self, p: Practice, audit: NewAuditEvent) -> StoreResult<Practice> {
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("INSERT INTO practices (id, name, data_region, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(p.id)
                .bind(&p.name)
                .bind(&p.data_region)
                .bind(p.created_at)
                .bind(p.updated_at),
        )
        .await
        .map_err(write_error)?;
        commit_audited(tx, audit).await?;
        Ok(p)
    }

    async fn practice(&self, id: Uuid) -> StoreResult<Option<Practice>> {
        Ok(self.db.fetch_optional_as(sql("SELECT * FROM practices WHERE id = $1").bind(id), practice_from_row).await?)
    }

    async fn list_practices(&self) -> StoreResult<Vec<Practice>> {
        Ok(self.db.fetch_all_as(sql("SELECT * FROM practices ORDER BY name, id"), practice_from_row).await?)
    }

    async fn update_practice(&self, p: &Practice, audit: NewAuditEvent) -> StoreResult<bool> {
        let mut tx = self.db.begin_audited().await?;
        let done = tx
            .execute(
                sql("UPDATE practices SET name = $1, data_region = $2, updated_at = $3 WHERE id = $4")
                    .bind(&p.name)
                    .bind(&p.data_region)
                    .bind(p.updated_at)
                    .bind(p.id),
            )
            .await?;
        if done != 1 {
            return Ok(false);
        }
        commit_audited(tx, audit).await?;
        Ok(true)
    }

    async fn set_patient_region(
        &self,
        patient_id: Uuid,
        region: Option<&str>,
        at: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<bool> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let mut tx = self.db.begin_audited().await?;
        let done = tx
            .execute(
                sql("UPDATE patients SET data_region = $1, updated_at = $2 WHERE id = $3")
                    .bind(region)
                    .bind(at)
                    .bind(patient_id),
            )
            .await?;
        if done != 1 {
            return Ok(false);
        }
        commit_audited(tx, audit).await?;
        Ok(true)
    }

    async fn record_legal_basis(&self, b: LegalBasis, audit: NewAuditEvent) -> StoreResult<LegalBasis> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let destinations = b.destinations.as_ref().map(|d| serde_json::to_string(d).expect("labels serialise"));
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("INSERT INTO transfer_legal_bases (id, patient_id, reference, destinations, expires_at, recorded_by,
                    recorded_at, withdrawn_at, withdrawn_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(b.id)
            .bind(b.patient_id)
            .bind(&b.reference)
            .bind(destinations)
            .bind(b.expires_at)
            .bind(b.recorded_by)
            .bind(b.recorded_at)
            .bind(b.withdrawn_at)
            .bind(b.withdrawn_by),
        )
        .await
        .map_err(write_error)?;
        commit_audited(tx, audit).await?;
        Ok(b)
    }

    async fn withdraw_legal_basis(
        &self,
        patient_id: Uuid,
        id: Uuid,
        by: Uuid,
        at: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<bool> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let mut tx = self.db.begin_audited().await?;
        let done = tx
            .execute(
                sql("UPDATE transfer_legal_bases SET withdrawn_at = $1, withdrawn_by = $2
                     WHERE id = $3 AND patient_id = $4 AND withdrawn_at IS NULL")
                .bind(at)
                .bind(by)
                .bind(id)
                .bind(patient_id),
            )
            .await?;
        if done != 1 {
            return Ok(false);
        }
        commit_audited(tx, audit).await?;
        Ok(true)
    }

    async fn patient_residency(&self, user_id: Uuid) -> StoreResult<std::sync::Arc<PatientResidency>> {
        if let Some(cached) = self.residency_cache.get(&user_id) {
            return Ok(cached);
        }
        // Taken before reading: a write meanwhile makes this read unkept.
        let ticket = self.residency_cache.ticket();
        let patient = self.patient_by_user(user_id).await?;
        let legal_bases = match &patient {
            Some(p) => self.legal_bases(p.id).await?,
            None => Vec::new(),
        };
        let read = std::sync::Arc::new(PatientResidency {
            current_notice_version: self.notices().await?.into_iter().next().map(|n| n.version),
            consents: self.consents(user_id).await?,
            legal_bases,
            patient,
        });
        self.residency_cache.put(user_id, ticket, read.clone());
        Ok(read)
    }

    async fn legal_bases(&self, patient_id: Uuid) -> StoreResult<Vec<LegalBasis>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM transfer_legal_bases WHERE patient_id = $1 ORDER BY recorded_at, id")
                    .bind(patient_id),
                legal_basis_from_row,
            )
            .await?)
    }
}
