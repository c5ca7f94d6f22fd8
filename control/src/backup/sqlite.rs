//! Dump and load of a SQLite database: one read transaction (a snapshot in WAL mode) for the
//! dump; one write transaction with foreign keys checked at commit for the load.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row, TypeInfo, ValueRef};
use time::OffsetDateTime;

use super::BackupError;
use super::dump::{Cell, Dump, Rows, TableDump, quoted, shared_columns};
use crate::store::AuditEvent;

async fn connect(url: &str) -> Result<SqliteConnection, sqlx::Error> {
    // Never creates a file: a backup of a missing database is an error, and a restore target
    // was made (and migrated) by the store first.
    SqliteConnectOptions::from_str(url)?.foreign_keys(true).connect().await
}

async fn tables(c: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(c)
    .await
}

async fn columns(c: &mut SqliteConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid").bind(table).fetch_all(c).await
}

fn cell(row: &SqliteRow, i: usize) -> Result<Cell, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let class = raw.type_info().name().to_string();
    Ok(match class.as_str() {
        "INTEGER" => Cell::Integer(row.try_get_unchecked(i)?),
        "REAL" => Cell::Real(row.try_get_unchecked(i)?),
        "TEXT" => Cell::Text(row.try_get_unchecked(i)?),
        _ => Cell::Blob(STANDARD.encode(row.try_get_unchecked::<Vec<u8>, _>(i)?)),
    })
}

/// Every table in one read transaction, with the schema version it was read at.
pub async fn dump(url: &str) -> Result<(Dump, i64), BackupError> {
    let mut c = connect(url).await?;
    let mut tx = c.begin().await?;
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&mut *tx).await?;
    let mut out = Vec::new();
    for name in tables(&mut tx).await? {
        let columns = columns(&mut tx, &name).await?;
        let list = columns.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!("SELECT {list} FROM {}", quoted(&name))).fetch_all(&mut *tx).await?;
        let rows = rows
            .iter()
            .map(|r| (0..columns.len()).map(|i| cell(r, i)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        out.push(TableDump { name, columns, rows: Rows::Sqlite(rows) });
    }
    tx.rollback().await?;
    Ok((Dump { tables: out }, schema_version.unwrap_or(0)))
}

/// Loads `dump` into the (migrated, empty) database in one transaction, which commits only if
/// the loaded audit chain passes `verify`.
pub async fn load(
    url: &str,
    dump: &Dump,
    verify: impl FnOnce(&[AuditEvent]) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut c = connect(url).await?;
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    // Rows go in table by table; their references are checked once all are in.
    sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await?;
    let present = tables(&mut tx).await?;
    for table in &dump.tables {
        if !present.contains(&table.name) {
            return Err(BackupError::UnknownTable(table.name.clone()));
        }
        let non_empty: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(&table.name)))
            .fetch_one(&mut *tx)
            .await?;
        if non_empty {
            return Err(BackupError::NotEmpty(table.name.clone()));
        }
    }
    for table in &dump.tables {
        let Rows::Sqlite(rows) = &table.rows else { return Err(BackupError::Engine("a postgres dump".into())) };
        let target = columns(&mut tx, &table.name).await?;
        let shared = shared_columns(table, &target);
        let picks: Vec<usize> =
            shared.iter().map(|s| table.columns.iter().position(|c| c == s).expect("shared")).collect();
        let statement = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quoted(&table.name),
            shared.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", "),
            (1..=shared.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        );
        for row in rows {
            let mut q = sqlx::query(&statement);
            for &i in &picks {
                q = match row.get(i).ok_or(BackupError::Malformed)? {
                    Cell::Null => q.bind(None::<i64>),
                    Cell::Integer(v) => q.bind(*v),
                    Cell::Real(v) => q.bind(*v),
                    Cell::Text(v) => q.bind(v.clone()),
                    Cell::Blob(v) => q.bind(STANDARD.decode(v).map_err(|_| BackupError::Malformed)?),
                };
            }
            q.execute(&mut *tx).await?;
        }
    }
    verify(&audit_chain(&mut tx).await?)?;
    tx.commit().await?;
    Ok(())
}

async fn audit_chain(c: &mut SqliteConnection) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, id, at, actor, action, target, outcome, source_ip, request_id, hash, prev_hash
         FROM audit_events ORDER BY seq",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            let micros: i64 = r.try_get("at")?;
            Ok(AuditEvent {
                seq: r.try_get("seq")?,
                id: r.try_get("id")?,
                at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                outcome: r.try_get("outcome")?,
                source_ip: r.try_get("source_ip")?,
                request_id: r.try_get("request_id")?,
                hash: r.try_get("hash")?,
                prev_hash: r.try_get("prev_hash")?,
            })
        })
        .collect()
}
