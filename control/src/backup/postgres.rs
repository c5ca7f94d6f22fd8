//! Dump and load of a PostgreSQL database: the dump reads every table in one `REPEATABLE READ,
//! READ ONLY` transaction (one snapshot while the service writes on); the load writes them in
//! one transaction, parents before children, and commits only if the audit chain verifies.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::BackupError;
use super::dump::{Dump, Rows, TableDump, parents_first, quoted, shared_columns};
use crate::store::AuditEvent;

/// Rows per INSERT on load.
const CHUNK: usize = 1000;

async fn tables(c: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(c)
    .await
}

async fn columns(c: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(c)
    .await
}

/// (referencing, referenced) table pairs of every foreign key in the schema.
async fn references(c: &mut PgConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT child.relname::text, parent.relname::text FROM pg_constraint k
         JOIN pg_class child ON child.oid = k.conrelid JOIN pg_class parent ON parent.oid = k.confrelid
         WHERE k.contype = 'f' AND child.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(c)
    .await
}

/// Every table in one snapshot, with the schema version it was read at.
pub async fn dump(url: &str) -> Result<(Dump, i64), BackupError> {
    let mut c = PgConnection::connect(url).await?;
    let mut tx = c.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&mut *tx).await?;
    let order = parents_first(tables(&mut tx).await?, &references(&mut tx).await?);
    let mut out = Vec::new();
    for name in order {
        let columns = columns(&mut tx, &name).await?;
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {} t", quoted(&name)))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|text: &String| serde_json::from_str(text))
                .collect::<Result<_, _>>()
                .map_err(|_| BackupError::Malformed)?;
        out.push(TableDump { name, columns, rows: Rows::Postgres(rows) });
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
    let mut c = PgConnection::connect(url).await?;
    let mut tx = c.begin().await?;
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
        let Rows::Postgres(rows) = &table.rows else { return Err(BackupError::Engine("a sqlite dump".into())) };
        let shared = shared_columns(table, &columns(&mut tx, &table.name).await?);
        let list = shared.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
        let statement = format!(
            "INSERT INTO {t} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{t}, $1::json)",
            t = quoted(&table.name)
        );
        for chunk in rows.chunks(CHUNK) {
            let json = serde_json::to_string(chunk).expect("JSON values serialise");
            sqlx::query(&statement).bind(json).execute(&mut *tx).await?;
        }
    }
    verify(&audit_chain(&mut tx).await?)?;
    tx.commit().await?;
    Ok(())
}

async fn audit_chain(c: &mut PgConnection) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, id, at, actor, action, target, outcome, source_ip, request_id, hash, prev_hash
         FROM audit_events ORDER BY seq",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEvent {
                seq: r.try_get("seq")?,
                id: r.try_get("id")?,
                at: r.try_get("at")?,
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
