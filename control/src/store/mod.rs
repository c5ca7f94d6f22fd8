//! Persistence, one trait per capability: accounts and sessions ([`AccountStore`]), the audit
//! trail ([`AuditStore`]), scheduling ([`SchedulingStore`]), privacy ([`PrivacyStore`]),
//! issued and revoked TURN sessions ([`TurnSessionStore`]), data residency ([`ResidencyStore`]), the
//! FHIR façade's paged searches ([`FhirSearchStore`]), the notification outbox
//! ([`NotificationStore`]), practices' booking rules ([`BookingRulesStore`]) and Web Push
//! subscriptions ([`PushStore`]);
//! [`Store`] is all of them on one database. One implementation, [`SqlStore`], runs every query
//! on SQLite (the embedded default, a single file) or PostgreSQL (production); what differs
//! between the engines is in `engine`. The same test suite (control/tests/store.rs) runs on both
//! against real databases.

mod accounts;
mod audit_log;
mod booking_rules;
mod engine;
mod fhir_search;
mod mfa;
mod notifications;
mod notifications_store;
mod privacy;
mod privacy_store;
mod push;
mod read_cache;
mod residency;
mod residency_store;
mod scheduling;
mod scheduling_store;
mod turn_sessions;
mod turn_sessions_store;
mod turn_writer;

pub use accounts::{AccountStore, TokenSession};
pub use audit_log::AuditStore;
pub use booking_rules::{BookingRulesStore, OpenProposal, PracticeRules};
pub use fhir_search::{AppointmentSearch, FhirSearchStore, PatientSearch, PractitionerSearch, SearchPage};
pub use mfa::{MfaRecord, MfaStore};
pub use notifications::{DeliveryOutcome, NewOutboxEntry, OutboxDepth, OutboxEntry};
pub use notifications_store::NotificationStore;
pub use privacy::{Anonymisation, Consent, ConsentDecision, NoticePurpose, PatientFilter, PrivacyNotice};
pub use privacy_store::PrivacyStore;
pub use push::{PushStore, PushSubscriptionRecord, Subscribed};
pub use read_cache::READ_CACHE_TTL;
pub use residency::{LegalBasis, PatientResidency, Practice};
pub use residency_store::ResidencyStore;
pub use scheduling::{
    Appointment, AppointmentFilter, AppointmentStatus, CareWindow, PatientRecord, Practitioner, StoredException,
    StoredRule,
};
pub use scheduling_store::SchedulingStore;
pub use turn_sessions::{IssuedTurnSession, RevokedTurnSession, TurnRevocation, TurnSessionScope};
pub use turn_sessions_store::TurnSessionStore;
pub use turn_writer::DEFAULT_QUEUE as DEFAULT_TURN_WRITE_QUEUE;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;
use time::OffsetDateTime;
use uuid::Uuid;

use engine::Db;

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
    /// The queue of writes waiting for a group commit is full: try again shortly.
    #[error("too many writes are waiting; try again shortly")]
    Busy,
    /// The group commit holding this write failed (the cause is in the log).
    #[error("the group commit failed: {0}")]
    BatchFailed(String),
    /// The group commit's writer task has stopped (the runtime is shutting down).
    #[error("the group commit's writer has stopped")]
    WriterGone,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The whole store: every capability on one database. Handlers name the capability they use
/// (`use crate::store::AccountStore`…); tests and fakes may implement one alone.
#[async_trait]
pub trait Store:
    AccountStore
    + AuditStore
    + SchedulingStore
    + PrivacyStore
    + TurnSessionStore
    + ResidencyStore
    + FhirSearchStore
    + MfaStore
    + NotificationStore
    + BookingRulesStore
    + PushStore
    + Send
    + Sync
    + 'static
{
    /// The engine's name, for logs and /readyz.
    fn engine(&self) -> &'static str;
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    /// The connection pool now, for the metrics; `None` for a store without one.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// A connection pool's connections: open (in use or idle), idle, and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

pub type DynStore = Arc<dyn Store>;

/// The store on SQLite or PostgreSQL: every query is written once (see `engine` for what
/// differs between the two).
pub struct SqlStore {
    db: Db,
    /// Sessions and accounts as token checks last read them, by (session, user) (`read_cache`).
    // Arc: a hit hands out a pointer, not a deep copy of the rows (their strings).
    auth_cache: read_cache::ReadCache<(Uuid, Uuid), std::sync::Arc<TokenSession>>,
    /// Patients' residency facts as ICE credential requests last read them, by user.
    residency_cache: read_cache::ReadCache<Uuid, std::sync::Arc<PatientResidency>>,
    /// Issued TURN sessions' group commit, started by the first one (`turn_writer`).
    turn_writer: std::sync::OnceLock<turn_writer::TurnWriter>,
    turn_queue: usize,
}

impl SqlStore {
    /// Opens the database a URL names: `sqlite://path` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> StoreResult<SqlStore> {
        Self::connect_with_queue(url, turn_writer::DEFAULT_QUEUE).await
    }

    /// As [`SqlStore::connect`], with room for `turn_queue` issued TURN sessions waiting for
    /// their group commit (`ice.write-queue`).
    pub async fn connect_with_queue(url: &str, turn_queue: usize) -> StoreResult<SqlStore> {
        Ok(SqlStore {
            db: Db::connect(url).await?,
            auth_cache: Default::default(),
            residency_cache: Default::default(),
            turn_writer: std::sync::OnceLock::new(),
            turn_queue,
        })
    }

    /// The group commit's writer, started on the runtime of its first use.
    fn turn_writer(&self) -> &turn_writer::TurnWriter {
        self.turn_writer.get_or_init(|| turn_writer::TurnWriter::start(self.db.clone(), self.turn_queue))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn engine(&self) -> &'static str {
        self.db.engine()
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.db.migrate().await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.execute(engine::sql("SELECT 1")).await?;
        Ok(())
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(self.db.pool_status())
    }
}

/// Opens the store a URL names: `sqlite://path` (created if missing) or `postgres://…`.
pub async fn open(url: &str) -> StoreResult<DynStore> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// As [`open`], with room for `turn_queue` issued TURN sessions waiting for their group commit.
pub async fn open_with_queue(url: &str, turn_queue: usize) -> StoreResult<DynStore> {
    Ok(Arc::new(SqlStore::connect_with_queue(url, turn_queue).await?))
}
