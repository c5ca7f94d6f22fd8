//! Scheduling as stored: practitioners, patient records, weekly availability and appointments.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit_log::{append_audit_in, commit_audited};
use super::engine::{Row, map_rows, retry_deadlocks, sql, write_error};
use super::{
    Appointment, AppointmentFilter, AppointmentStatus, NewAuditEvent, PatientFilter, PatientRecord, Practitioner,
    SqlStore, StoreResult, StoredException, StoredRule,
};

#[async_trait]
pub trait SchedulingStore: Send + Sync {
    async fn create_practitioner(&self, p: Practitioner) -> StoreResult<Practitioner>;
    async fn practitioner(&self, id: Uuid) -> StoreResult<Option<Practitioner>>;
    async fn practitioner_by_user(&self, user_id: Uuid) -> StoreResult<Option<Practitioner>>;
    async fn list_practitioners(
        &self,
        specialty: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Practitioner>>;
    // Every write of health data takes the audit event that records it and commits both in one
    // transaction: an acknowledged write always has its event, and an event that cannot be
    // appended undoes the write (security issue 18, item 4).
    async fn create_patient(&self, p: PatientRecord, audit: NewAuditEvent) -> StoreResult<PatientRecord>;
    async fn patient(&self, id: Uuid) -> StoreResult<Option<PatientRecord>>;
    async fn patient_by_user(&self, user_id: Uuid) -> StoreResult<Option<PatientRecord>>;
    async fn list_patients(&self, f: &PatientFilter) -> StoreResult<Vec<PatientRecord>>;
    /// Writes a patient's changeable fields (name, birth date, sealed fields and their indexes);
    /// false if there is no such patient.
    async fn update_patient(&self, p: &PatientRecord, audit: NewAuditEvent) -> StoreResult<bool>;
    /// Replaces a practitioner's weekly rules and exceptions in one transaction.
    async fn set_availability(
        &self,
        practitioner_id: Uuid,
        rules: &[StoredRule],
        exceptions: &[StoredException],
    ) -> StoreResult<()>;
    async fn availability(&self, practitioner_id: Uuid) -> StoreResult<(Vec<StoredRule>, Vec<StoredException>)>;
    /// Inserts an appointment. `DoubleBooking` if it overlaps a live one of the same
    /// practitioner; `Conflict` if its creator already used the idempotency key.
    async fn create_appointment(&self, a: Appointment, audit: NewAuditEvent) -> StoreResult<Appointment>;
    async fn appointment(&self, id: Uuid) -> StoreResult<Option<Appointment>>;
    async fn appointment_by_idempotency_key(&self, created_by: Uuid, key: &str) -> StoreResult<Option<Appointment>>;
    async fn list_appointments(&self, f: &AppointmentFilter) -> StoreResult<Vec<Appointment>>;
    /// Marks every `booked` appointment that started at or before `cutoff` as `noshow`, in one
    /// statement, and returns them, each audited with the event `audit` makes for it.
    async fn mark_no_shows(
        &self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        audit: &(dyn for<'a> Fn(&'a Appointment) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<Vec<Appointment>>;
    /// Moves an appointment from `expected` to `next` (and optionally new times), only if it
    /// is still in `expected`: `None` when it was not (a concurrent change won).
    #[allow(clippy::too_many_arguments)]
    async fn transition_appointment(
        &self,
        id: Uuid,
        expected: AppointmentStatus,
        next: AppointmentStatus,
        times: Option<(OffsetDateTime, OffsetDateTime)>,
        reason: Option<String>,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>>;
    /// Records that the patient confirmed an appointment (the first confirmation counts);
    /// `None` if there is no such appointment.
    async fn confirm_by_patient(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>>;
    /// Whether the practitioner has a care relationship with the patient (see
    /// `scheduling::access`): an appointment the patient booked or confirmed, booked by `now`,
    /// ending at or after `ended_after`, neither cancelled nor entered in error.
    async fn has_care_relationship(
        &self,
        practitioner_id: Uuid,
        patient_id: Uuid,
        now: OffsetDateTime,
        ended_after: OffsetDateTime,
    ) -> StoreResult<bool>;
}

/// The care relationship of `scheduling::access` as SQL over an appointment `a`: with `now` the
/// parameter holding the current time and `ended_after` the earliest end an appointment may
/// have to still count, the patient booked or confirmed it, it was booked by now, and it did
/// not end before the window. Cancelled and entered-in-error appointments never count.
pub(super) fn care_relationship(now: &str, ended_after: &str) -> String {
    format!(
        "a.patient_confirmed_at IS NOT NULL AND a.created_at <= {now} AND a.ends_at >= {ended_after}
         AND a.status NOT IN ('cancelled', 'entered-in-error')"
    )
}

pub(super) fn patient_from_row(r: &Row) -> Result<PatientRecord, sqlx::Error> {
    Ok(PatientRecord {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        display_name: r.get("display_name")?,
        birth_date: r.date("birth_date")?,
        national_id_enc: r.get("national_id_enc")?,
        national_id_index: r.get("national_id_index")?,
        phone_enc: r.get("phone_enc")?,
        phone_index: r.get("phone_index")?,
        email_enc: r.get("email_enc")?,
        email_index: r.get("email_index")?,
        notes_enc: r.get("notes_enc")?,
        anonymized_at: r.opt_time("anonymized_at")?,
        retain_until: r.opt_time("retain_until")?,
        data_region: r.get("data_region")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(super) fn practitioner_from_row(r: &Row) -> Result<Practitioner, sqlx::Error> {
    Ok(Practitioner {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        display_name: r.get("display_name")?,
        specialty: r.get("specialty")?,
        time_zone: r.get("time_zone")?,
        practice_id: r.get("practice_id")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(super) fn appointment_from_row(r: &Row) -> Result<Appointment, sqlx::Error> {
    let status: String = r.get("status")?;
    Ok(Appointment {
        id: r.get("id")?,
        practitioner_id: r.get("practitioner_id")?,
        patient_id: r.get("patient_id")?,
        starts_at: r.time("starts_at")?,
        ends_at: r.time("ends_at")?,
        status: AppointmentStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status:?}").into()))?,
        cancel_reason: r.get("cancel_reason")?,
        created_by: r.get("created_by")?,
        idempotency_key: r.get("idempotency_key")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        patient_confirmed_at: r.opt_time("patient_confirmed_at")?,
    })
}

#[async_trait]
impl SchedulingStore for SqlStore {
    async fn create_practitioner(&self, p: Practitioner) -> StoreResult<Practitioner> {
        self
            .db
            .execute(
                sql("INSERT INTO practitioners (id, user_id, display_name, specialty, time_zone, created_at, updated_at,
                        practice_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(p.id)
                .bind(p.user_id)
                .bind(&p.display_name)
                .bind(&p.specialty)
                .bind(&p.time_zone)
                .bind(p.created_at)
                .bind(p.updated_at)
                .bind(p.practice_id),
            )
            .await
            .map_err(write_error)?;
        Ok(p)
    }

    async fn practitioner(&self, id: Uuid) -> StoreResult<Option<Practitioner>> {
        Ok(self
            .db
            .fetch_optional_as(sql("SELECT * FROM practitioners WHERE id = $1").bind(id), practitioner_from_row)
            .await?)
    }

    async fn practitioner_by_user(&self, user_id: Uuid) -> StoreResult<Option<Practitioner>> {
        Ok(self
            .db
            .fetch_optional_as(
                sql("SELECT * FROM practitioners WHERE user_id = $1").bind(user_id),
                practitioner_from_row,
            )
            .await?)
    }

    async fn list_practitioners(
        &self,
        specialty: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Practitioner>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM practitioners WHERE ($1 IS NULL OR lower(specialty) = lower($1))
                     ORDER BY display_name, id LIMIT $2 OFFSET $3")
                .bind(specialty)
                .bind(limit)
                .bind(offset),
                practitioner_from_row,
            )
            .await?)
    }

    async fn create_patient(&self, p: PatientRecord, audit: NewAuditEvent) -> StoreResult<PatientRecord> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let mut tx = self.db.begin_audited().await?;
        tx
            .execute(
                sql("INSERT INTO patients (id, user_id, display_name, birth_date, national_id_enc, national_id_index,
                        phone_enc, phone_index, email_enc, email_index, notes_enc, anonymized_at, created_at, updated_at,
                        data_region)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
                .bind(p.id)
                .bind(p.user_id)
                .bind(&p.display_name)
                .bind(p.birth_date)
                .bind(&p.national_id_enc)
                .bind(&p.national_id_index)
                .bind(&p.phone_enc)
                .bind(&p.phone_index)
                .bind(&p.email_enc)
                .bind(&p.email_index)
                .bind(&p.notes_enc)
                .bind(p.anonymized_at)
                .bind(p.created_at)
                .bind(p.updated_at)
                .bind(&p.data_region),
            )
            .await
            .map_err(write_error)?;
        commit_audited(tx, audit).await?;
        Ok(p)
    }

    async fn patient(&self, id: Uuid) -> StoreResult<Option<PatientRecord>> {
        Ok(self.db.fetch_optional_as(sql("SELECT * FROM patients WHERE id = $1").bind(id), patient_from_row).await?)
    }

    async fn patient_by_user(&self, user_id: Uuid) -> StoreResult<Option<PatientRecord>> {
        Ok(self
            .db
            .fetch_optional_as(sql("SELECT * FROM patients WHERE user_id = $1").bind(user_id), patient_from_row)
            .await?)
    }

    async fn list_patients(&self, f: &PatientFilter) -> StoreResult<Vec<PatientRecord>> {
        Ok(self
            .db
            .fetch_all_as(
                sql(format!(
                    "SELECT * FROM patients
                     WHERE ($1 IS NULL OR EXISTS (SELECT 1 FROM appointments a
                            WHERE a.practitioner_id = $1 AND a.patient_id = patients.id AND {}))
                       AND ($4 IS NULL OR national_id_index = $4) AND ($5 IS NULL OR phone_index = $5)
                       AND ($6 IS NULL OR email_index = $6)
                     ORDER BY display_name, id LIMIT $7 OFFSET $8",
                    care_relationship("$2", "$3")
                ))
                .bind(f.practitioner_id)
                .bind(f.care.map(|c| c.now))
                .bind(f.care.map(|c| c.ended_after))
                .bind(&f.national_id_index)
                .bind(&f.phone_index)
                .bind(&f.email_index)
                .bind(f.limit)
                .bind(f.offset),
                patient_from_row,
            )
            .await?)
    }

    async fn update_patient(&self, p: &PatientRecord, audit: NewAuditEvent) -> StoreResult<bool> {
        let _invalidate_residency = super::read_cache::InvalidateOnDrop(&self.residency_cache);
        let mut tx = self.db.begin_audited().await?;
        let done = tx
            .execute(
                sql("UPDATE patients SET display_name = $1, birth_date = $2, national_id_enc = $3, national_id_index = $4,
                        phone_enc = $5, phone_index = $6, email_enc = $7, email_index = $8, notes_enc = $9, updated_at = $10
                     WHERE id = $11")
                .bind(&p.display_name)
                .bind(p.birth_date)
                .bind(&p.national_id_enc)
                .bind(&p.national_id_index)
                .bind(&p.phone_enc)
                .bind(&p.phone_index)
                .bind(&p.email_enc)
                .bind(&p.email_index)
                .bind(&p.notes_enc)
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

    async fn set_availability(
        &self,
        practitioner_id: Uuid,
        rules: &[StoredRule],
        exceptions: &[StoredException],
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        tx.execute(sql("DELETE FROM availability_rules WHERE practitioner_id = $1").bind(practitioner_id)).await?;
        tx.execute(sql("DELETE FROM availability_exceptions WHERE practitioner_id = $1").bind(practitioner_id)).await?;
        for r in rules {
            tx.execute(
                sql("INSERT INTO availability_rules (id, practitioner_id, weekday, from_minute, to_minute, slot_minutes)
                     VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(Uuid::new_v4())
                .bind(practitioner_id)
                .bind(r.weekday)
                .bind(r.from_minute)
                .bind(r.to_minute)
                .bind(r.slot_minutes),
            )
            .await?;
        }
        for e in exceptions {
            tx.execute(
                sql("INSERT INTO availability_exceptions (id, practitioner_id, kind, starts_at, ends_at, slot_minutes)
                     VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(Uuid::new_v4())
                .bind(practitioner_id)
                .bind(&e.kind)
                .bind(e.starts_at)
                .bind(e.ends_at)
                .bind(e.slot_minutes),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn availability(&self, practitioner_id: Uuid) -> StoreResult<(Vec<StoredRule>, Vec<StoredException>)> {
        let rules = self
            .db
            .fetch_all(
                sql("SELECT weekday, from_minute, to_minute, slot_minutes FROM availability_rules
                     WHERE practitioner_id = $1 ORDER BY weekday, from_minute")
                .bind(practitioner_id),
            )
            .await?;
        let exceptions = self
            .db
            .fetch_all(
                sql("SELECT kind, starts_at, ends_at, slot_minutes FROM availability_exceptions
                     WHERE practitioner_id = $1 ORDER BY starts_at")
                .bind(practitioner_id),
            )
            .await?;
        let rules = map_rows(rules, |r| {
            Ok(StoredRule {
                weekday: r.get("weekday")?,
                from_minute: r.get("from_minute")?,
                to_minute: r.get("to_minute")?,
                slot_minutes: r.get("slot_minutes")?,
            })
        })?;
        let exceptions = map_rows(exceptions, |r| {
            Ok(StoredException {
                kind: r.get("kind")?,
                starts_at: r.time("starts_at")?,
                ends_at: r.time("ends_at")?,
                slot_minutes: r.get("slot_minutes")?,
            })
        })?;
        Ok((rules, exceptions))
    }

    async fn create_appointment(&self, a: Appointment, audit: NewAuditEvent) -> StoreResult<Appointment> {
        retry_deadlocks(|| self.insert_appointment(&a, audit.clone())).await?;
        Ok(a)
    }

    async fn appointment(&self, id: Uuid) -> StoreResult<Option<Appointment>> {
        Ok(self
            .db
            .fetch_optional_as(sql("SELECT * FROM appointments WHERE id = $1").bind(id), appointment_from_row)
            .await?)
    }

    async fn appointment_by_idempotency_key(&self, created_by: Uuid, key: &str) -> StoreResult<Option<Appointment>> {
        Ok(self
            .db
            .fetch_optional_as(
                sql("SELECT * FROM appointments WHERE created_by = $1 AND idempotency_key = $2")
                    .bind(created_by)
                    .bind(key),
                appointment_from_row,
            )
            .await?)
    }

    async fn list_appointments(&self, f: &AppointmentFilter) -> StoreResult<Vec<Appointment>> {
        Ok(self
            .db
            .fetch_all_as(
                sql("SELECT * FROM appointments
                     WHERE ($1 IS NULL OR practitioner_id = $1) AND ($2 IS NULL OR patient_id = $2)
                       AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR ends_at > $4)
                       AND ($5 IS NULL OR starts_at < $5)
                     ORDER BY starts_at, id LIMIT $6")
                .bind(f.practitioner_id)
                .bind(f.patient_id)
                .bind(f.status.map(AppointmentStatus::as_str))
                .bind(f.from)
                .bind(f.to)
                .bind(f.limit),
                appointment_from_row,
            )
            .await?)
    }

    async fn mark_no_shows(
        &self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        audit: &(dyn for<'a> Fn(&'a Appointment) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<Vec<Appointment>> {
        let mut tx = self.db.begin_audited().await?;
        let rows = tx
            .fetch_all(
                sql("UPDATE appointments SET status = 'noshow', updated_at = $1
                     WHERE status = 'booked' AND starts_at <= $2 RETURNING *")
                .bind(now)
                .bind(cutoff),
            )
            .await?;
        let marked = map_rows(rows, appointment_from_row)?;
        for a in &marked {
            append_audit_in(&mut tx, audit(a)).await?;
        }
        tx.commit().await?;
        Ok(marked)
    }

    #[allow(clippy::too_many_arguments)]
    async fn transition_appointment(
        &self,
        id: Uuid,
        expected: AppointmentStatus,
        next: AppointmentStatus,
        times: Option<(OffsetDateTime, OffsetDateTime)>,
        reason: Option<String>,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>> {
        // A reschedule moves the times under the exclusion constraint: as racy as a booking.
        retry_deadlocks(|| {
            self.update_appointment_status(id, expected, next, times, reason.as_deref(), now, audit.clone())
        })
        .await
    }

    async fn confirm_by_patient(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>> {
        let mut tx = self.db.begin_audited().await?;
        let row = tx
            .fetch_optional(
                sql(
                    "UPDATE appointments SET patient_confirmed_at = COALESCE(patient_confirmed_at, $1), updated_at = $1
                     WHERE id = $2 RETURNING *",
                )
                .bind(now)
                .bind(id),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let changed = appointment_from_row(&row)?;
        commit_audited(tx, audit).await?;
        Ok(Some(changed))
    }

    async fn has_care_relationship(
        &self,
        practitioner_id: Uuid,
        patient_id: Uuid,
        now: OffsetDateTime,
        ended_after: OffsetDateTime,
    ) -> StoreResult<bool> {
        let found = self
            .db
            .fetch_optional(
                sql(format!(
                    "SELECT 1 AS found FROM appointments a WHERE a.practitioner_id = $1 AND a.patient_id = $2 AND {} LIMIT 1",
                    care_relationship("$3", "$4")
                ))
                .bind(practitioner_id)
                .bind(patient_id)
                .bind(now)
                .bind(ended_after),
            )
            .await?;
        Ok(found.is_some())
    }
}

/// The single attempts that `retry_deadlocks` may run again (see there).
impl SqlStore {
    async fn insert_appointment(&self, a: &Appointment, audit: NewAuditEvent) -> StoreResult<()> {
        let mut tx = self.db.begin_audited().await?;
        tx.execute(
            sql("INSERT INTO appointments (id, practitioner_id, patient_id, starts_at, ends_at, status, cancel_reason,
                        created_by, idempotency_key, created_at, updated_at, patient_confirmed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(a.id)
            .bind(a.practitioner_id)
            .bind(a.patient_id)
            .bind(a.starts_at)
            .bind(a.ends_at)
            .bind(a.status.as_str())
            .bind(&a.cancel_reason)
            .bind(a.created_by)
            .bind(&a.idempotency_key)
            .bind(a.created_at)
            .bind(a.updated_at)
            .bind(a.patient_confirmed_at),
        )
        .await
        .map_err(write_error)?;
        commit_audited(tx, audit).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_appointment_status(
        &self,
        id: Uuid,
        expected: AppointmentStatus,
        next: AppointmentStatus,
        times: Option<(OffsetDateTime, OffsetDateTime)>,
        reason: Option<&str>,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>> {
        let mut tx = self.db.begin_audited().await?;
        let row = tx
            .fetch_optional(
                sql("UPDATE appointments SET status = $1, starts_at = COALESCE($2, starts_at),
                        ends_at = COALESCE($3, ends_at), cancel_reason = COALESCE($4, cancel_reason), updated_at = $5
                     WHERE id = $6 AND status = $7 RETURNING *")
                .bind(next.as_str())
                .bind(times.map(|t| t.0))
                .bind(times.map(|t| t.1))
                .bind(reason)
                .bind(now)
                .bind(id)
                .bind(expected.as_str()),
            )
            .await
            .map_err(write_error)?;
        let Some(row) = row else { return Ok(None) };
        let changed = appointment_from_row(&row)?;
        commit_audited(tx, audit).await?;
        Ok(Some(changed))
    }
}
