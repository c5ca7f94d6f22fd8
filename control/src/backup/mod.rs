//! Backups of the whole database and their restore (`teletip-control backup` and `restore`).
//!
//! A backup is one file: a dump of every table read in one snapshot ([`dump`], per engine in
//! [`sqlite`] and [`postgres`]), encrypted and authenticated under a backup key that is none of
//! the database's keys ([`sealed`]). Encrypted patient fields stay encrypted inside it: reading
//! them after a restore needs the field keys too. A restore goes only into an empty database
//! of the same engine at the same or a newer schema; it loads every row in one transaction
//! and commits only if the audit hash chain verifies. Both are audited (`backup.create`,
//! `backup.restore`); the serving processes read the last `backup.create` for the
//! `teletip_control_last_backup_timestamp_seconds` metric.

pub mod command;
mod dump;
mod postgres;
pub mod sealed;
mod sqlite;

use std::path::PathBuf;

use thiserror::Error;
use time::OffsetDateTime;

use crate::audit::chain::verify_chain;
pub use sealed::{BackupKey, Header};

/// The audit action of a backup made, whose newest event the metric reports.
pub const BACKUP_CREATE: &str = "backup.create";
pub const BACKUP_RESTORE: &str = "backup.restore";

#[derive(Debug, Error)]
pub enum BackupError {
    #[error("cannot read the backup key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("the backup key must be 32 bytes, written as 64 hex digits or in base64 (openssl rand -base64 32)")]
    BadKey,
    #[error("not a teletip backup file")]
    NotABackup,
    #[error("backup format {0} is not one this version reads (it reads format {format})", format = sealed::FORMAT)]
    Format(u32),
    #[error("the backup was made under another backup key (its key id is {file}, this key's is {ours})")]
    ForeignKey { file: String, ours: String },
    #[error("the backup file is damaged or was altered: its authentication failed")]
    Tampered,
    #[error("the backup could not be encrypted")]
    Encrypt,
    #[error("the backup's contents are malformed")]
    Malformed,
    #[error("cannot restore {0} into this database: a backup is restored into the engine it was made from")]
    Engine(String),
    #[error(
        "the backup has schema version {backup}, newer than this program's {known}: restore it with a newer teletip-control"
    )]
    NewerSchema { backup: i64, known: i64 },
    #[error("the database is not empty (table {0} has rows): restore only into an empty database")]
    NotEmpty(String),
    #[error("the backup names a table this schema does not have: {0}")]
    UnknownTable(String),
    #[error("the restored audit chain does not verify (first broken event: {0}); nothing was restored")]
    ChainBroken(i64),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn engine_of(url: &str) -> &'static str {
    if is_postgres(url) { "postgres" } else { "sqlite" }
}

/// The newest migration this program has for the engine.
fn known_schema(engine: &str) -> i64 {
    let migrator = if engine == "postgres" {
        sqlx::migrate!("./migrations/postgres")
    } else {
        sqlx::migrate!("./migrations/sqlite")
    };
    migrator.migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What a backup or a restore handled.
#[derive(Debug, Clone)]
pub struct Summary {
    pub header: Header,
    pub tables: usize,
    pub rows: usize,
}

/// A sealed backup of the database `url` names, made at `now`.
pub async fn create(url: &str, key: &BackupKey, now: OffsetDateTime) -> Result<(Vec<u8>, Summary), BackupError> {
    let engine = engine_of(url);
    let (dump, schema_version) =
        if engine == "postgres" { postgres::dump(url).await? } else { sqlite::dump(url).await? };
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&dump).expect("a dump serialises"));
    let file = sealed::seal(key, engine, schema_version, now, &plain)?;
    let (header, _) = sealed::header(&file)?;
    Ok((file, Summary { header, tables: dump.tables.len(), rows: dump.rows() }))
}

/// Opens `file` and checks that it can go into the database `url` names, before anything is
/// written there.
pub fn open_for(url: &str, key: &BackupKey, file: &[u8]) -> Result<Opened, BackupError> {
    let (header, plain) = sealed::open(key, file)?;
    let engine = engine_of(url);
    if header.engine != engine {
        return Err(BackupError::Engine(format!("a {} backup into {engine}", header.engine)));
    }
    let known = known_schema(engine);
    if header.schema_version > known {
        return Err(BackupError::NewerSchema { backup: header.schema_version, known });
    }
    let dump: dump::Dump = serde_json::from_slice(&plain).map_err(|_| BackupError::Malformed)?;
    Ok(Opened { header, dump })
}

/// A backup file decrypted, authenticated and checked against its target.
pub struct Opened {
    header: Header,
    dump: dump::Dump,
}

/// Loads an opened backup into the database `url` names, which must be migrated and empty.
pub async fn load(url: &str, opened: Opened) -> Result<Summary, BackupError> {
    let verify = |events: &[crate::store::AuditEvent]| {
        let chain = verify_chain(events);
        match chain.first_broken_seq {
            Some(seq) if !chain.verified => Err(BackupError::ChainBroken(seq)),
            _ => Ok(()),
        }
    };
    if is_postgres(url) {
        postgres::load(url, &opened.dump, verify).await?;
    } else {
        sqlite::load(url, &opened.dump, verify).await?;
    }
    Ok(Summary { tables: opened.dump.tables.len(), rows: opened.dump.rows(), header: opened.header })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BackupKey {
        BackupKey::parse(&"42".repeat(32)).unwrap()
    }

    fn file(engine: &str, schema_version: i64) -> Vec<u8> {
        sealed::seal(&key(), engine, schema_version, OffsetDateTime::UNIX_EPOCH, br#"{"tables":[]}"#).unwrap()
    }

    #[test]
    fn a_backup_goes_into_its_own_engine_only() {
        let made = file("postgres", 1);
        assert!(open_for("postgres://db/x", &key(), &made).is_ok());
        assert!(matches!(open_for("sqlite://x.db", &key(), &made), Err(BackupError::Engine(_))));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let known = known_schema("sqlite");
        assert!(open_for("sqlite://x.db", &key(), &file("sqlite", known)).is_ok());
        let refused = open_for("sqlite://x.db", &key(), &file("sqlite", known + 1));
        assert!(
            matches!(refused, Err(BackupError::NewerSchema { backup, known: k }) if backup == known + 1 && k == known)
        );
    }
}
