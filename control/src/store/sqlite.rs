//! The embedded default: one SQLite file, WAL mode.

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::*;

mod privacy;

pub struct SqliteStore {
    pool: SqlitePool,
    /// Audit appends read the last hash and insert the next event; one at a time (this
    /// process owns the file).
    audit_lock: Mutex<()>,
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1000).expect("stored timestamps are in range")
}

fn opt_from_micros(v: Option<i64>) -> Option<OffsetDateTime> {
    v.map(from_micros)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn user_from_row(r: &SqliteRow) -> Result<User, sqlx::Error> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        role: Role::parse(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        password_hash: r.try_get("password_hash")?,
        disabled: r.try_get("disabled")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: opt_from_micros(r.try_get("locked_until")?),
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

fn session_from_row(r: &SqliteRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        created_at: from_micros(r.try_get("created_at")?),
        expires_at: from_micros(r.try_get("expires_at")?),
        revoked_at: opt_from_micros(r.try_get("revoked_at")?),
        revoked_reason: r.try_get("revoked_reason")?,
    })
}

fn token_from_row(r: &SqliteRow) -> Result<RefreshToken, sqlx::Error> {
    Ok(RefreshToken {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        token_hash: r.try_get("token_hash")?,
        created_at: from_micros(r.try_get("created_at")?),
        expires_at: from_micros(r.try_get("expires_at")?),
        used_at: opt_from_micros(r.try_get("used_at")?),
    })
}

fn patient_from_row(r: &SqliteRow) -> Result<PatientRecord, sqlx::Error> {
    let birth: Option<String> = r.try_get("birth_date")?;
    let birth_date = birth
        .map(|b| time::Date::parse(&b, time::macros::format_description!("[year]-[month]-[day]")))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(PatientRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        display_name: r.try_get("display_name")?,
        birth_date,
        national_id_enc: r.try_get("national_id_enc")?,
        national_id_index: r.try_get("national_id_index")?,
        phone_enc: r.try_get("phone_enc")?,
        phone_index: r.try_get("phone_index")?,
        email_enc: r.try_get("email_enc")?,
        email_index: r.try_get("email_index")?,
        notes_enc: r.try_get("notes_enc")?,
        anonymized_at: opt_from_micros(r.try_get("anonymized_at")?),
        retain_until: opt_from_micros(r.try_get("retain_until")?),
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

fn practitioner_from_row(r: &SqliteRow) -> Result<Practitioner, sqlx::Error> {
    Ok(Practitioner {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        display_name: r.try_get("display_name")?,
        specialty: r.try_get("specialty")?,
        time_zone: r.try_get("time_zone")?,
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
    })
}

fn appointment_from_row(r: &SqliteRow) -> Result<Appointment, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(Appointment {
        id: r.try_get("id")?,
        practitioner_id: r.try_get("practitioner_id")?,
        patient_id: r.try_get("patient_id")?,
        starts_at: from_micros(r.try_get("starts_at")?),
        ends_at: from_micros(r.try_get("ends_at")?),
        status: AppointmentStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status:?}").into()))?,
        cancel_reason: r.try_get("cancel_reason")?,
        created_by: r.try_get("created_by")?,
        idempotency_key: r.try_get("idempotency_key")?,
        created_at: from_micros(r.try_get("created_at")?),
        updated_at: from_micros(r.try_get("updated_at")?),
        patient_confirmed_at: opt_from_micros(r.try_get("patient_confirmed_at")?),
    })
}

fn audit_from_row(r: &SqliteRow) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        at: from_micros(r.try_get("at")?),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        outcome: r.try_get("outcome")?,
        source_ip: r.try_get("source_ip")?,
        request_id: r.try_get("request_id")?,
        hash: r.try_get("hash")?,
        prev_hash: r.try_get("prev_hash")?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file of a `sqlite://path` URL.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(SqliteStore { pool, audit_lock: Mutex::new(()) })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction in which audit events may be appended: the audit lock, then
    /// IMMEDIATE, which takes SQLite's write lock before the last hash is read. A deferred
    /// transaction would read a snapshot that another writer can make stale, and SQLite then
    /// refuses the insert at once (SQLITE_BUSY_SNAPSHOT) instead of waiting. Health-data writes
    /// use it too, so that a write and its audit event commit together or not at all.
    pub(super) async fn audited_tx(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, sqlx::Transaction<'static, sqlx::Sqlite>), sqlx::Error> {
        let guard = self.audit_lock.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((guard, tx))
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<User> {
        let now = crate::clock::now();
        let id = Uuid::new_v4();
        let result = sqlx::query(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&u.email)
        .bind(&u.display_name)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(micros(now))
        .bind(micros(now))
        .execute(&self.pool)
        .await;
        match result {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
            r => r?,
        };
        Ok(self.user_by_id(id).await?.expect("just inserted"))
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?").bind(email).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn list_users(&self, role: Option<Role>, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        let rows =
            sqlx::query("SELECT * FROM users WHERE (? IS NULL OR role = ?) ORDER BY created_at, id LIMIT ? OFFSET ?")
                .bind(role.map(Role::as_str))
                .bind(role.map(Role::as_str))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    async fn update_user(&self, id: Uuid, c: UserChanges, now: OffsetDateTime) -> StoreResult<Option<User>> {
        // One statement: SQLite runs writes one at a time, so the count of enabled admins in
        // the guard cannot change between the check and the write.
        let done = sqlx::query(
            "UPDATE users SET
                display_name = COALESCE(?1, display_name),
                role = COALESCE(?2, role),
                disabled = COALESCE(?3, disabled),
                password_hash = COALESCE(?4, password_hash),
                failed_logins = CASE WHEN ?4 IS NOT NULL THEN 0 ELSE failed_logins END,
                locked_until = CASE WHEN ?4 IS NOT NULL THEN NULL ELSE locked_until END,
                updated_at = ?5
             WHERE id = ?6 AND NOT (
                role = 'admin' AND disabled = 0
                AND (COALESCE(?3, 0) = 1 OR COALESCE(?2, 'admin') <> 'admin')
                AND (SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0) <= 1)",
        )
        .bind(c.display_name)
        .bind(c.role.map(Role::as_str))
        .bind(c.disabled)
        .bind(c.password_hash)
        .bind(micros(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        let user = self.user_by_id(id).await?;
        if done.rows_affected() == 0 && user.is_some() {
            return Err(StoreError::LastAdmin);
        }
        Ok(user)
    }

    async fn login_throttle(&self, account: &str, source: &str) -> StoreResult<Option<LoginThrottle>> {
        let row = sqlx::query("SELECT failures, blocked_until FROM login_throttle WHERE account = ? AND source = ?")
            .bind(account)
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(LoginThrottle {
                    failures: r.try_get("failures")?,
                    blocked_until: opt_from_micros(r.try_get("blocked_until")?),
                })
            })
            .transpose()?)
    }

    async fn record_login_failure(
        &self,
        account: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<LoginThrottle> {
        let forget = micros(policy.forget_before(now));
        let mut tx = self.pool.begin().await?;
        // Pairs nobody tried for a while go: the table holds recent failures only.
        sqlx::query("DELETE FROM login_throttle WHERE updated_at < ?").bind(forget).execute(&mut *tx).await?;
        let (failures, blocked): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO login_throttle (account, source, failures, updated_at) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (account, source) DO UPDATE SET failures = failures + 1, updated_at = ?3
             RETURNING failures, blocked_until",
        )
        .bind(account)
        .bind(source)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await?;
        let mut blocked_until = opt_from_micros(blocked);
        if let Some(delay) = policy.delay(failures) {
            let until = now + delay;
            if blocked_until.is_none_or(|b| b < until) {
                sqlx::query("UPDATE login_throttle SET blocked_until = ? WHERE account = ? AND source = ?")
                    .bind(micros(until))
                    .bind(account)
                    .bind(source)
                    .execute(&mut *tx)
                    .await?;
                blocked_until = Some(until);
            }
        }
        tx.commit().await?;
        Ok(LoginThrottle { failures, blocked_until })
    }

    async fn clear_login_failures(&self, account: &str, source: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_throttle WHERE account = ? AND source = ?")
            .bind(account)
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?)
    }

    async fn create_session(&self, s: Session, t: RefreshToken) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(s.id)
            .bind(s.user_id)
            .bind(micros(s.created_at))
            .bind(micros(s.expires_at))
            .execute(&mut *tx)
            .await?;
        insert_token(&mut tx, &t).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(token_from_row).transpose()?)
    }

    async fn rotate_refresh_token(&self, used: Uuid, next: RefreshToken, now: OffsetDateTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let spent = sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL")
            .bind(micros(now))
            .bind(used)
            .execute(&mut *tx)
            .await?;
        if spent.rows_affected() != 1 {
            return Ok(false);
        }
        insert_token(&mut tx, &next).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_session(&self, id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(micros(now))
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&self, user_id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(reason)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn append_audit(&self, e: NewAuditEvent) -> StoreResult<AuditEvent> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let event = append_audit_in(&mut tx, e).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn list_audit(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events
             WHERE (? IS NULL OR actor = ?) AND (? IS NULL OR action = ?)
               AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(f.actor)
        .bind(f.actor)
        .bind(&f.action)
        .bind(&f.action)
        .bind(f.since.map(micros))
        .bind(f.since.map(micros))
        .bind(f.until.map(micros))
        .bind(f.until.map(micros))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }

    async fn audit_chain(&self) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query("SELECT * FROM audit_events ORDER BY seq").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }

    async fn create_practitioner(&self, p: Practitioner) -> StoreResult<Practitioner> {
        let r = sqlx::query(
            "INSERT INTO practitioners (id, user_id, display_name, specialty, time_zone, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.id)
        .bind(p.user_id)
        .bind(&p.display_name)
        .bind(&p.specialty)
        .bind(&p.time_zone)
        .bind(micros(p.created_at))
        .bind(micros(p.updated_at))
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(p),
        }
    }

    async fn practitioner_by_user(&self, user_id: Uuid) -> StoreResult<Option<Practitioner>> {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM practitioners WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        match id {
            Some(id) => self.practitioner(id).await,
            None => Ok(None),
        }
    }

    async fn patient_by_user(&self, user_id: Uuid) -> StoreResult<Option<PatientRecord>> {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM patients WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        match id {
            Some(id) => self.patient(id).await,
            None => Ok(None),
        }
    }

    async fn practitioner(&self, id: Uuid) -> StoreResult<Option<Practitioner>> {
        let row = sqlx::query("SELECT * FROM practitioners WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(practitioner_from_row).transpose()?)
    }

    async fn create_patient(&self, p: PatientRecord, audit: NewAuditEvent) -> StoreResult<PatientRecord> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let r = sqlx::query(
            "INSERT INTO patients (id, user_id, display_name, birth_date, national_id_enc, national_id_index, phone_enc,
                phone_index, email_enc, email_index, notes_enc, anonymized_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(p.id)
        .bind(p.user_id)
        .bind(&p.display_name)
        .bind(p.birth_date.map(|d| d.to_string()))
        .bind(&p.national_id_enc)
        .bind(&p.national_id_index)
        .bind(&p.phone_enc)
        .bind(&p.phone_index)
        .bind(&p.email_enc)
        .bind(&p.email_index)
        .bind(&p.notes_enc)
        .bind(p.anonymized_at.map(micros))
        .bind(micros(p.created_at))
        .bind(micros(p.updated_at))
        .execute(&mut *tx)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
            r => r?,
        };
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(p)
    }

    async fn patient(&self, id: Uuid) -> StoreResult<Option<PatientRecord>> {
        let row = sqlx::query("SELECT * FROM patients WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(patient_from_row).transpose()?)
    }

    async fn set_availability(
        &self,
        practitioner_id: Uuid,
        rules: &[StoredRule],
        exceptions: &[StoredException],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM availability_rules WHERE practitioner_id = ?")
            .bind(practitioner_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM availability_exceptions WHERE practitioner_id = ?")
            .bind(practitioner_id)
            .execute(&mut *tx)
            .await?;
        for r in rules {
            sqlx::query(
                "INSERT INTO availability_rules (id, practitioner_id, weekday, from_minute, to_minute, slot_minutes)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(Uuid::new_v4())
            .bind(practitioner_id)
            .bind(r.weekday)
            .bind(r.from_minute)
            .bind(r.to_minute)
            .bind(r.slot_minutes)
            .execute(&mut *tx)
            .await?;
        }
        for e in exceptions {
            sqlx::query(
                "INSERT INTO availability_exceptions (id, practitioner_id, kind, starts_at, ends_at, slot_minutes)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(Uuid::new_v4())
            .bind(practitioner_id)
            .bind(&e.kind)
            .bind(micros(e.starts_at))
            .bind(micros(e.ends_at))
            .bind(e.slot_minutes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn availability(&self, practitioner_id: Uuid) -> StoreResult<(Vec<StoredRule>, Vec<StoredException>)> {
        let rules = sqlx::query(
            "SELECT weekday, from_minute, to_minute, slot_minutes FROM availability_rules
             WHERE practitioner_id = ? ORDER BY weekday, from_minute",
        )
        .bind(practitioner_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| -> Result<StoredRule, sqlx::Error> {
            Ok(StoredRule {
                weekday: r.try_get::<i64, _>("weekday")? as i16,
                from_minute: r.try_get::<i64, _>("from_minute")? as i32,
                to_minute: r.try_get::<i64, _>("to_minute")? as i32,
                slot_minutes: r.try_get::<i64, _>("slot_minutes")? as i32,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let exceptions = sqlx::query(
            "SELECT kind, starts_at, ends_at, slot_minutes FROM availability_exceptions
             WHERE practitioner_id = ? ORDER BY starts_at",
        )
        .bind(practitioner_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| -> Result<StoredException, sqlx::Error> {
            Ok(StoredException {
                kind: r.try_get("kind")?,
                starts_at: from_micros(r.try_get("starts_at")?),
                ends_at: from_micros(r.try_get("ends_at")?),
                slot_minutes: r.try_get::<Option<i64>, _>("slot_minutes")?.map(|v| v as i32),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        Ok((rules, exceptions))
    }

    async fn create_appointment(&self, a: Appointment, audit: NewAuditEvent) -> StoreResult<Appointment> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let r = sqlx::query(
            "INSERT INTO appointments (id, practitioner_id, patient_id, starts_at, ends_at, status, cancel_reason,
                created_by, idempotency_key, created_at, updated_at, patient_confirmed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id)
        .bind(a.practitioner_id)
        .bind(a.patient_id)
        .bind(micros(a.starts_at))
        .bind(micros(a.ends_at))
        .bind(a.status.as_str())
        .bind(&a.cancel_reason)
        .bind(a.created_by)
        .bind(&a.idempotency_key)
        .bind(micros(a.created_at))
        .bind(micros(a.updated_at))
        .bind(a.patient_confirmed_at.map(micros))
        .execute(&mut *tx)
        .await;
        match r {
            Err(e) if is_double_booking(&e) => return Err(StoreError::DoubleBooking),
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
            r => r?,
        };
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(a)
    }

    async fn appointment(&self, id: Uuid) -> StoreResult<Option<Appointment>> {
        let row = sqlx::query("SELECT * FROM appointments WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(appointment_from_row).transpose()?)
    }

    async fn appointment_by_idempotency_key(&self, created_by: Uuid, key: &str) -> StoreResult<Option<Appointment>> {
        let row = sqlx::query("SELECT * FROM appointments WHERE created_by = ? AND idempotency_key = ?")
            .bind(created_by)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(appointment_from_row).transpose()?)
    }

    async fn list_appointments(&self, f: &AppointmentFilter) -> StoreResult<Vec<Appointment>> {
        let rows = sqlx::query(
            "SELECT * FROM appointments
             WHERE (? IS NULL OR practitioner_id = ?) AND (? IS NULL OR patient_id = ?) AND (? IS NULL OR status = ?)
               AND (? IS NULL OR ends_at > ?) AND (? IS NULL OR starts_at < ?)
             ORDER BY starts_at, id LIMIT ?",
        )
        .bind(f.practitioner_id)
        .bind(f.practitioner_id)
        .bind(f.patient_id)
        .bind(f.patient_id)
        .bind(f.status.map(AppointmentStatus::as_str))
        .bind(f.status.map(AppointmentStatus::as_str))
        .bind(f.from.map(micros))
        .bind(f.from.map(micros))
        .bind(f.to.map(micros))
        .bind(f.to.map(micros))
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(appointment_from_row).collect::<Result<_, _>>()?)
    }

    async fn mark_no_shows(
        &self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        audit: &(dyn for<'a> Fn(&'a Appointment) -> NewAuditEvent + Send + Sync),
    ) -> StoreResult<Vec<Appointment>> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let rows = sqlx::query(
            "UPDATE appointments SET status = 'noshow', updated_at = ? WHERE status = 'booked' AND starts_at <= ? RETURNING *",
        )
        .bind(micros(now))
        .bind(micros(cutoff))
        .fetch_all(&mut *tx)
        .await?;
        let marked = rows.iter().map(appointment_from_row).collect::<Result<Vec<_>, _>>()?;
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
        let (_guard, mut tx) = self.audited_tx().await?;
        let r = sqlx::query(
            "UPDATE appointments SET status = ?, starts_at = COALESCE(?, starts_at), ends_at = COALESCE(?, ends_at),
                cancel_reason = COALESCE(?, cancel_reason), updated_at = ?
             WHERE id = ? AND status = ? RETURNING *",
        )
        .bind(next.as_str())
        .bind(times.map(|t| micros(t.0)))
        .bind(times.map(|t| micros(t.1)))
        .bind(reason)
        .bind(micros(now))
        .bind(id)
        .bind(expected.as_str())
        .fetch_optional(&mut *tx)
        .await;
        let row = match r {
            Err(e) if is_double_booking(&e) => return Err(StoreError::DoubleBooking),
            r => r?,
        };
        let Some(row) = row else { return Ok(None) };
        let changed = appointment_from_row(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(changed))
    }

    async fn confirm_by_patient(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        audit: NewAuditEvent,
    ) -> StoreResult<Option<Appointment>> {
        let (_guard, mut tx) = self.audited_tx().await?;
        let row = sqlx::query(
            "UPDATE appointments SET patient_confirmed_at = COALESCE(patient_confirmed_at, ?1), updated_at = ?1
             WHERE id = ?2 RETURNING *",
        )
        .bind(micros(now))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let changed = appointment_from_row(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(changed))
    }

    async fn has_care_relationship(
        &self,
        practitioner_id: Uuid,
        patient_id: Uuid,
        now: OffsetDateTime,
        ended_after: OffsetDateTime,
    ) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT 1 FROM appointments a WHERE a.practitioner_id = ?1 AND a.patient_id = ?2 AND {} LIMIT 1",
            care_relationship("?3", "?4")
        ))
        .bind(practitioner_id)
        .bind(patient_id)
        .bind(micros(now))
        .bind(micros(ended_after))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn list_practitioners(
        &self,
        specialty: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Practitioner>> {
        self.list_practitioners_impl(specialty, limit, offset).await
    }

    async fn list_patients(&self, f: &PatientFilter) -> StoreResult<Vec<PatientRecord>> {
        self.list_patients_impl(f).await
    }

    async fn update_patient(&self, p: &PatientRecord, audit: NewAuditEvent) -> StoreResult<bool> {
        self.update_patient_impl(p, audit).await
    }

    async fn publish_notice(&self, n: PrivacyNotice) -> StoreResult<PrivacyNotice> {
        self.publish_notice_impl(n).await
    }

    async fn notices(&self) -> StoreResult<Vec<PrivacyNotice>> {
        self.notices_impl().await
    }

    async fn record_consent(&self, c: Consent, audit: NewAuditEvent) -> StoreResult<Consent> {
        self.record_consent_impl(c, audit).await
    }

    async fn consents(&self, user_id: Uuid) -> StoreResult<Vec<Consent>> {
        self.consents_impl(user_id).await
    }

    async fn user_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>> {
        self.user_sessions_impl(user_id).await
    }

    async fn anonymise_patient(&self, a: &Anonymisation, audit: NewAuditEvent) -> StoreResult<()> {
        self.anonymise_patient_impl(a, audit).await
    }

    async fn delete_patient(
        &self,
        patient_id: Option<Uuid>,
        user_id: Option<Uuid>,
        audit: NewAuditEvent,
    ) -> StoreResult<()> {
        self.delete_patient_impl(patient_id, user_id, audit).await
    }

    async fn patients_past_retention(&self, now: OffsetDateTime) -> StoreResult<Vec<PatientRecord>> {
        self.patients_past_retention_impl(now).await
    }

    async fn purge_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64> {
        self.purge_sessions_impl(cutoff).await
    }
}

/// Appends `e` to the hash chain inside the caller's transaction, which must come from
/// [`SqliteStore::audited_tx`] (it serialises appends and holds the write lock).
pub(super) async fn append_audit_in(
    conn: &mut sqlx::SqliteConnection,
    e: NewAuditEvent,
) -> Result<AuditEvent, sqlx::Error> {
    let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_string()),
    };
    let event = e.recorded(seq, Uuid::new_v4(), prev_hash);
    sqlx::query(
        "INSERT INTO audit_events (seq, id, at, actor, action, target, outcome, source_ip, request_id, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.seq)
    .bind(event.id)
    .bind(micros(event.at))
    .bind(event.actor)
    .bind(&event.action)
    .bind(&event.target)
    .bind(&event.outcome)
    .bind(&event.source_ip)
    .bind(&event.request_id)
    .bind(&event.prev_hash)
    .bind(&event.hash)
    .execute(&mut *conn)
    .await?;
    Ok(event)
}

async fn insert_token(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, t: &RefreshToken) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(t.id)
    .bind(t.session_id)
    .bind(&t.token_hash)
    .bind(micros(t.created_at))
    .bind(micros(t.expires_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
