//! Persistence behind one domain-level trait. Two implementations: SQLite (the embedded
//! default, a single file) and PostgreSQL (production). Both run the same test suite
//! (control/tests/store.rs) against real databases.

mod postgres;
mod privacy;
mod scheduling;
mod sqlite;

pub use postgres::PostgresStore;
pub use privacy::{Anonymisation, Consent, ConsentDecision, NoticePurpose, PatientFilter, PrivacyNotice};
pub use scheduling::{
    Appointment, AppointmentFilter, AppointmentStatus, CareWindow, PatientRecord, Practitioner, StoredException,
    StoredRule,
};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Practitioner,
    Patient,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Practitioner => "practitioner",
            Role::Patient => "patient",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "practitioner" => Some(Role::Practitioner),
            "patient" => Some(Role::Patient),
            _ => None,
        }
    }
}

/// A user account. The password hash never leaves the server (not serialisable).
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub password_hash: String,
}

/// What an admin may change on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

/// Failed logins of one account from one source address (see `ThrottlePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginThrottle {
    pub failures: i64,
    /// Attempts of this pair before this time are refused without checking the password.
    pub blocked_until: Option<OffsetDateTime>,
}

/// Growing delays per (account, source) instead of a lockout: the first `free_failures`
/// failures cost nothing; each one after blocks the pair for `base`, doubling with every
/// further failure, at most `max`. Failures older than `forget_after` are forgotten.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub free_failures: i64,
    pub base: time::Duration,
    pub max: time::Duration,
    pub forget_after: time::Duration,
}

impl ThrottlePolicy {
    /// How long the pair is blocked after its `failures`-th failure, if at all.
    pub fn delay(&self, failures: i64) -> Option<time::Duration> {
        if failures < self.free_failures {
            return None;
        }
        // 2^k with k capped well below overflow; the cap on the delay does the rest.
        let doublings = (failures - self.free_failures).min(40) as u32;
        let seconds = self.base.whole_seconds().max(1).saturating_mul(1i64 << doublings);
        Some(time::Duration::seconds(seconds).min(self.max))
    }

    pub fn forget_before(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.forget_after
    }
}

/// A login session: the family of refresh tokens that descend from one login. Access tokens
/// name it (`sid`), so revoking it ends them too.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

/// One refresh token, stored as a SHA-256 hash of its secret.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// An audit event as recorded: who did what to what, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The acting user, absent for anonymous actions (a failed login for an unknown email).
    pub actor: Option<Uuid>,
    pub action: String,
    /// What was acted on (a user id, a session id, an email hash…), never health data.
    pub target: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    /// Hex SHA-256 of the previous event's hash and this event's fields.
    pub hash: String,
    pub prev_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub at: OffsetDateTime,
    pub actor: Option<Uuid>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

impl NewAuditEvent {
    /// The event as recorded at position `seq` of the chain, after `prev_hash`.
    pub fn recorded(self, seq: i64, id: Uuid, prev_hash: String) -> AuditEvent {
        let hash = audit_hash(&prev_hash, seq, id, &self);
        AuditEvent {
            seq,
            id,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            outcome: self.outcome,
            source_ip: self.source_ip,
            request_id: self.request_id,
            hash,
            prev_hash,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<Uuid>,
    pub action: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub limit: i64,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    /// The practitioner already has a live appointment overlapping this time (refused by the
    /// database schema itself).
    #[error("the practitioner is already booked at that time")]
    DoubleBooking,
    /// The change would leave no enabled admin.
    #[error("the last enabled admin cannot be disabled or demoted")]
    LastAdmin,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The engine's name, for logs and /readyz.
    fn engine(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;

    async fn create_user(&self, user: NewUser) -> StoreResult<User>;
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, role: Option<Role>, limit: i64, offset: i64) -> StoreResult<Vec<User>>;
    /// `None` if there is no such user; `LastAdmin` (nothing changed) if the change would
    /// disable or demote the last enabled admin, checked and written as one step so that two
    /// admins disabling each other at once cannot leave none.
    async fn update_user(&self, id: Uuid, changes: UserChanges, now: OffsetDateTime) -> StoreResult<Option<User>>;
    /// The failed logins counted for `account` (a hash of an e-mail) from `source`.
    async fn login_throttle(&self, account: &str, source: &str) -> StoreResult<Option<LoginThrottle>>;
    /// Counts one failed login of `account` from `source` (failures last counted before
    /// `policy.forget_before(now)` are forgotten first) and, once `policy` says so, blocks that
    /// pair until a growing delay has passed. Atomic against concurrent failures of the pair.
    async fn record_login_failure(
        &self,
        account: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<LoginThrottle>;
    /// A successful login forgets that pair's failures.
    async fn clear_login_failures(&self, account: &str, source: &str) -> StoreResult<()>;
    async fn count_users(&self) -> StoreResult<i64>;

    async fn create_session(&self, session: Session, first_token: RefreshToken) -> StoreResult<()>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>>;
    /// Marks `used` as spent and stores its successor, atomically: false if it was already
    /// spent (a reuse, which the caller treats as theft).
    async fn rotate_refresh_token(&self, used: Uuid, next: RefreshToken, now: OffsetDateTime) -> StoreResult<bool>;
    async fn revoke_session(&self, id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn revoke_user_sessions(&self, user_id: Uuid, reason: &str, now: OffsetDateTime) -> StoreResult<u64>;

    /// Appends to the hash chain: reads the last hash and inserts, serialised against other
    /// appends.
    async fn append_audit(&self, event: NewAuditEvent) -> StoreResult<AuditEvent>;
    async fn list_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
    /// Every event in chain order, for verification.
    async fn audit_chain(&self) -> StoreResult<Vec<AuditEvent>>;

    async fn create_practitioner(&self, p: Practitioner) -> StoreResult<Practitioner>;
    async fn practitioner(&self, id: Uuid) -> StoreResult<Option<Practitioner>>;
    async fn practitioner_by_user(&self, user_id: Uuid) -> StoreResult<Option<Practitioner>>;
    // Every write of health data takes the audit event that records it and commits both in one
    // transaction: an acknowledged write always has its event, and an event that cannot be
    // appended undoes the write (security issue 18, item 4).
    async fn create_patient(&self, p: PatientRecord, audit: NewAuditEvent) -> StoreResult<PatientRecord>;
    async fn patient(&self, id: Uuid) -> StoreResult<Option<PatientRecord>>;
    async fn patient_by_user(&self, user_id: Uuid) -> StoreResult<Option<PatientRecord>>;
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

    async fn list_practitioners(
        &self,
        specialty: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Practitioner>>;
    async fn list_patients(&self, f: &PatientFilter) -> StoreResult<Vec<PatientRecord>>;
    /// Writes a patient's changeable fields (name, birth date, sealed fields and their indexes);
    /// false if there is no such patient.
    async fn update_patient(&self, p: &PatientRecord, audit: NewAuditEvent) -> StoreResult<bool>;

    /// `Conflict` if the version exists: a published notice never changes.
    async fn publish_notice(&self, n: PrivacyNotice) -> StoreResult<PrivacyNotice>;
    /// Every notice, newest first.
    async fn notices(&self) -> StoreResult<Vec<PrivacyNotice>>;
    async fn record_consent(&self, c: Consent, audit: NewAuditEvent) -> StoreResult<Consent>;
    /// A user's consent history, oldest first.
    async fn consents(&self, user_id: Uuid) -> StoreResult<Vec<Consent>>;
    /// A user's login sessions, newest first (for the KVKK access export).
    async fn user_sessions(&self, user_id: Uuid) -> StoreResult<Vec<Session>>;

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
    /// Deletes login sessions (and their refresh tokens) that expired before `cutoff`.
    async fn purge_sessions_expired_before(&self, cutoff: OffsetDateTime) -> StoreResult<u64>;
}

/// Whether a database error is the no-double-booking rule of either schema.
pub(crate) fn is_double_booking(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("23P01") || d.message().contains("appointments_no_double_booking")
        }
        _ => false,
    }
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a URL names: `sqlite://path` (created if missing) or `postgres://…`.
/// The care relationship of `scheduling::access` as SQL over an appointment `a`, written once
/// for both engines (only the placeholders differ): with `now` the parameter holding the current
/// time and `ended_after` the earliest end an appointment may have to still count, the patient
/// booked or confirmed it, it was booked by now, and it did not end before the window. Cancelled
/// and entered-in-error appointments never count.
pub(crate) fn care_relationship(now: &str, ended_after: &str) -> String {
    format!(
        "a.patient_confirmed_at IS NOT NULL AND a.created_at <= {now} AND a.ends_at >= {ended_after}
         AND a.status NOT IN ('cancelled', 'entered-in-error')"
    )
}

pub async fn open(url: &str) -> StoreResult<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    }
}

/// The audit hash of an event: SHA-256 over the previous hash and every field, each
/// length-prefixed so that no two different events serialise the same way.
pub fn audit_hash(prev_hash: &str, seq: i64, id: Uuid, e: &NewAuditEvent) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(id.as_bytes());
    field(&(e.at.unix_timestamp_nanos() / 1000).to_be_bytes());
    field(e.actor.map(|a| a.into_bytes().to_vec()).unwrap_or_default().as_slice());
    field(e.action.as_bytes());
    field(e.target.as_deref().unwrap_or("").as_bytes());
    field(e.outcome.as_bytes());
    field(e.source_ip.as_deref().unwrap_or("").as_bytes());
    field(e.request_id.as_deref().unwrap_or("").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainVerification {
    pub verified: bool,
    pub events_checked: i64,
    /// The first event whose hash or link does not match, if any.
    pub first_broken_seq: Option<i64>,
}

pub fn verify_chain(events: &[AuditEvent]) -> ChainVerification {
    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let fields = NewAuditEvent {
            at: e.at,
            actor: e.actor,
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            source_ip: e.source_ip.clone(),
            request_id: e.request_id.clone(),
        };
        if e.seq != expected_seq || e.prev_hash != prev || audit_hash(&prev, e.seq, e.id, &fields) != e.hash {
            return ChainVerification {
                verified: false,
                events_checked: i as i64 + 1,
                first_broken_seq: Some(expected_seq),
            };
        }
        prev = e.hash.clone();
    }
    ChainVerification { verified: true, events_checked: events.len() as i64, first_broken_seq: None }
}
