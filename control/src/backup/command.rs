//! `teletip-control backup` and `restore`: the key, the file, the database and the audit trail.
//! Neither migrates the database it reads: a backup taken before an upgrade is of the old
//! schema, and a restore migrates its (empty) target itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BACKUP_CREATE, BACKUP_RESTORE, BackupKey};
use crate::config::ControlConfig;
use crate::store::{self, NewAuditEvent};

fn key(config: &ControlConfig, key_file: Option<&Path>) -> anyhow::Result<BackupKey> {
    let path = key_file.or(config.backup.key_file.as_deref()).context(
        "no backup key: set [backup] key-file in the configuration or give --key-file \
         (make one with: openssl rand -base64 32 > backup.key; chmod 600 backup.key)",
    )?;
    Ok(BackupKey::read(path)?)
}

fn event(action: &str, target: String) -> NewAuditEvent {
    NewAuditEvent {
        at: crate::clock::now(),
        actor: None,
        action: action.into(),
        target: Some(target),
        outcome: "success:cli".into(),
        source_ip: None,
        request_id: None,
    }
}

/// Writes `bytes` to `path` readable by its owner only, whole or not at all (a partial file
/// beside it, renamed once synced).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&partial)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&partial, path)
}

/// Backs the configured database up into `output`; returns what to print.
pub async fn backup(config: &ControlConfig, output: &Path, key_file: Option<&Path>) -> anyhow::Result<String> {
    let key = key(config, key_file)?;
    let now = crate::clock::now();
    let (file, summary) = super::create(&config.database_url, &key, now).await.context("backup failed")?;
    write_private(output, &file).with_context(|| format!("cannot write {}", output.display()))?;
    let store = store::open(&config.database_url).await.context("cannot open the database")?;
    let h = &summary.header;
    store
        .append_audit(event(
            BACKUP_CREATE,
            format!("key:{} schema:{} rows:{}", h.key_id, h.schema_version, summary.rows),
        ))
        .await
        .context("the backup was written but could not be audited")?;
    Ok(format!(
        "backup of {} tables, {} rows ({} schema {}) written to {} ({} bytes, key id {})",
        summary.tables,
        summary.rows,
        h.engine,
        h.schema_version,
        output.display(),
        file.len(),
        h.key_id
    ))
}

/// Restores `input` into the configured database, which must be empty; returns what to print.
pub async fn restore(config: &ControlConfig, input: &Path, key_file: Option<&Path>) -> anyhow::Result<String> {
    let key = key(config, key_file)?;
    let file = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    // Everything about the file is checked before the database is touched.
    let opened = super::open_for(&config.database_url, &key, &file).context("restore refused")?;
    let store = store::open(&config.database_url).await.context("cannot open the database")?;
    store.migrate().await.context("migrations failed")?;
    let summary = super::load(&config.database_url, opened).await.context("restore refused")?;
    let h = &summary.header;
    let created = h.created_at.format(&time::format_description::well_known::Rfc3339)?;
    store
        .append_audit(event(BACKUP_RESTORE, format!("backup:{created} key:{} rows:{}", h.key_id, summary.rows)))
        .await
        .context("the backup was restored but the restore could not be audited")?;
    Ok(format!(
        "restored {} tables, {} rows from the {} backup of {created}; the audit chain verifies",
        summary.tables, summary.rows, h.engine
    ))
}
