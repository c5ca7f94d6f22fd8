//! The one place where SQLite and PostgreSQL differ at run time. Every query of the store is
//! written once, with PostgreSQL's `$N` placeholders (sqlx-sqlite binds `$N` by number too), and
//! runs through [`Db`] or [`Tx`]. What differs between the engines lives here and nowhere else:
//!
//! - **value codecs** ([`Value`], [`Row`]): SQLite keeps timestamps as INTEGER microseconds
//!   since the Unix epoch and dates as TEXT `YYYY-MM-DD`; PostgreSQL as `timestamptz` and
//!   `date`. UUIDs, booleans, integers, text and bytes use sqlx's own codecs on both (a UUID is
//!   a 16-byte BLOB in SQLite, `uuid` in PostgreSQL). These are the formats `main` wrote: the
//!   migrations that made them stay per engine (`migrations/sqlite`, `migrations/postgres`).
//! - **locking** ([`Db::begin_audited`], [`Tx::lock_audit_chain`], [`Tx::lock_enabled_admins`]):
//!   SQLite has one writer at a time, so a process mutex plus `BEGIN IMMEDIATE` serialise audit
//!   appends; PostgreSQL may have several control instances, so they take row locks and a
//!   transaction-scoped advisory lock.
//! - **error codes** ([`write_error`]: unique violations and the no-double-booking rule).
//!
//! Why an enum over the two engines rather than code generic over `sqlx::Database`: the generic
//! route needs higher-ranked bounds (`for<'c> &'c mut DB::Connection: Executor<'c>`, and
//! `Encode`/`Decode`/`Type` for every column type) that Rust does not imply from a trait, so
//! every impl block would restate them; sqlx's `Any` driver has no UUID or timestamp types, and
//! sea-query would rewrite every query into a builder while still needing these same codecs.
//! Dispatching on the engine once per statement costs nothing next to a database round trip.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Database, Decode, Encode, Row as _, Transaction, Type};
use time::{Date, OffsetDateTime};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use super::StoreError;

/// Key of the PostgreSQL advisory lock that serialises audit appends across every control
/// instance.
const AUDIT_LOCK_KEY: i64 = 0x7465_6c65_7469_7001;

/// A value bound to a statement. Each variant keeps its type when it is NULL: PostgreSQL is
/// told every parameter's type, so a NULL uuid must still be a uuid.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Time(Option<OffsetDateTime>),
    Date(Option<Date>),
}

macro_rules! value_from {
    ($($variant:ident: $t:ty => $conv:expr;)*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                #[allow(clippy::redundant_closure_call)]
                Value::$variant(($conv)(v))
            }
        }
    )*};
}

value_from! {
    Uuid: Uuid => Some;
    Uuid: Option<Uuid> => |v| v;
    Text: &str => |v: &str| Some(v.to_owned());
    Text: String => Some;
    Text: &String => |v: &String| Some(v.clone());
    Text: Option<&str> => |v: Option<&str>| v.map(str::to_owned);
    Text: Option<String> => |v| v;
    Text: &Option<String> => |v: &Option<String>| v.clone();
    I16: i16 => Some;
    I32: i32 => Some;
    I32: Option<i32> => |v| v;
    I64: i64 => Some;
    Bool: bool => Some;
    Bool: Option<bool> => |v| v;
    Bytes: &[u8] => |v: &[u8]| Some(v.to_vec());
    Bytes: &Vec<u8> => |v: &Vec<u8>| Some(v.clone());
    Bytes: &Option<Vec<u8>> => |v: &Option<Vec<u8>>| v.clone();
    Time: OffsetDateTime => Some;
    Time: Option<OffsetDateTime> => |v| v;
    Date: Option<Date> => |v| v;
}

impl Value {
    /// SQLite's codec: timestamps as INTEGER microseconds since the Unix epoch, dates as TEXT
    /// `YYYY-MM-DD`. PostgreSQL takes every value as it is.
    fn for_sqlite(self) -> Value {
        match self {
            Value::Time(t) => Value::I64(t.map(micros)),
            Value::Date(d) => Value::Text(d.map(|d| d.to_string())),
            v => v,
        }
    }
}

/// Binds `args` in order with sqlx's own codec for each type.
fn bind_all<'q, DB: Database>(
    q: Query<'q, DB, DB::Arguments<'q>>,
    args: impl Iterator<Item = Value>,
) -> Query<'q, DB, DB::Arguments<'q>>
where
    Option<Uuid>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<i16>: Encode<'q, DB> + Type<DB>,
    Option<i32>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
    Option<OffsetDateTime>: Encode<'q, DB> + Type<DB>,
    Option<Date>: Encode<'q, DB> + Type<DB>,
{
    args.fold(q, |q, v| match v {
        Value::Uuid(v) => q.bind(v),
        Value::Text(v) => q.bind(v),
        Value::I16(v) => q.bind(v),
        Value::I32(v) => q.bind(v),
        Value::I64(v) => q.bind(v),
        Value::Bool(v) => q.bind(v),
        Value::Bytes(v) => q.bind(v),
        Value::Time(v) => q.bind(v),
        Value::Date(v) => q.bind(v),
    })
}

/// SQLite's timestamp codec: microseconds since the Unix epoch.
fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1000).expect("stored timestamps are in range")
}

/// One statement and its bound values, run by [`Db`] or [`Tx`].
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Value>,
}

/// A statement with `$N` placeholders.
pub(crate) fn sql(text: impl Into<String>) -> Sql {
    Sql { text: text.into(), args: Vec::new() }
}

impl Sql {
    /// Binds the next placeholder (`$1`, then `$2`…).
    pub fn bind(mut self, v: impl Into<Value>) -> Sql {
        self.args.push(v.into());
        self
    }

    fn sqlite(&self) -> Query<'_, Sqlite, SqliteArguments<'_>> {
        bind_all(sqlx::query(&self.text), self.args.iter().cloned().map(Value::for_sqlite))
    }

    fn postgres(&self) -> Query<'_, Postgres, PgArguments> {
        bind_all(sqlx::query(&self.text), self.args.iter().cloned())
    }

    async fn execute(&self, c: Conn<'_>) -> Result<u64, sqlx::Error> {
        observed("execute", async {
            Ok(match c {
                Conn::Sqlite(c) => self.sqlite().execute(c).await?.rows_affected(),
                Conn::Postgres(c) => self.postgres().execute(c).await?.rows_affected(),
            })
        })
        .await
    }

    async fn fetch_all(&self, c: Conn<'_>) -> Result<Vec<Row>, sqlx::Error> {
        observed("fetch", async {
            Ok(match c {
                Conn::Sqlite(c) => self.sqlite().fetch_all(c).await?.into_iter().map(Row::Sqlite).collect(),
                Conn::Postgres(c) => self.postgres().fetch_all(c).await?.into_iter().map(Row::Postgres).collect(),
            })
        })
        .await
    }

    async fn fetch_optional(&self, c: Conn<'_>) -> Result<Option<Row>, sqlx::Error> {
        observed("fetch", async {
            Ok(match c {
                Conn::Sqlite(c) => self.sqlite().fetch_optional(c).await?.map(Row::Sqlite),
                Conn::Postgres(c) => self.postgres().fetch_optional(c).await?.map(Row::Postgres),
            })
        })
        .await
    }
}

/// Rows for one multi-row insert ([`Tx::insert_rows`]): a table, its columns, and each row's
/// values in the columns' order. Each column's values are of one [`Value`] variant (a NULL keeps
/// its type), as the column has one type.
pub(crate) struct Rows {
    table: &'static str,
    columns: &'static [&'static str],
    values: Vec<Value>,
}

impl Rows {
    pub fn new(table: &'static str, columns: &'static [&'static str], capacity: usize) -> Rows {
        Rows { table, columns, values: Vec::with_capacity(capacity * columns.len()) }
    }

    /// Appends a row: one value per column, in the columns' order.
    pub fn push<const N: usize>(&mut self, row: [Value; N]) {
        debug_assert_eq!(N, self.columns.len(), "a row of {} has one value per column", self.table);
        self.values.extend(row);
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// SQLite: `INSERT … VALUES (?, …), (?, …)…`, every value bound in order. The placeholders
    /// are anonymous: with numbered ones (`$1` … `$5632`) each bind looks its parameter's name
    /// up (sqlx calls `sqlite3_bind_parameter_name`, which walks the statement's list of
    /// names), quadratic in the batch's size; a `perf` profile of a 512-request batch had 38 %
    /// of the server's CPU in that lookup.
    fn sqlite_insert(self) -> Sql {
        let row = format!("({})", vec!["?"; self.columns.len()].join(", "));
        let text = format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.columns.join(", "),
            vec![row; self.len()].join(", ")
        );
        Sql { text, args: self.values }
    }

    /// PostgreSQL: one array per column, unnested (`INSERT … SELECT * FROM UNNEST($1::uuid[],
    /// …)`). The statement's text is the same whatever the number of rows, so each connection
    /// parses and plans it once and sqlx keeps it prepared; a `VALUES` list is a new statement
    /// for every batch size (300 rows of 11 columns: 3,300 parameters for the server to parse
    /// and plan, and for sqlx to prepare in a round trip of its own, each time).
    fn postgres_insert(self) -> Result<(String, Vec<PgArray>), sqlx::Error> {
        let width = self.columns.len();
        let rows = self.len();
        let mut arrays: Vec<PgArray> = self.values[..width].iter().map(|v| PgArray::like(v, rows)).collect();
        for (i, v) in self.values.into_iter().enumerate() {
            let column = i % width;
            arrays[column].push(v).map_err(|()| {
                sqlx::Error::Encode(
                    format!("{}.{}: values of more than one type", self.table, self.columns[column]).into(),
                )
            })?;
        }
        let unnest: Vec<String> =
            arrays.iter().enumerate().map(|(i, a)| format!("${}::{}[]", i + 1, a.element_type())).collect();
        let text = format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
            self.table,
            self.columns.join(", "),
            unnest.join(", ")
        );
        Ok((text, arrays))
    }
}

/// One column's values as a PostgreSQL array ([`Rows::postgres_insert`]).
enum PgArray {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    I16(Vec<Option<i16>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Time(Vec<Option<OffsetDateTime>>),
    Date(Vec<Option<Date>>),
}

impl PgArray {
    /// An empty array of `v`'s type, with room for `n` values.
    fn like(v: &Value, n: usize) -> PgArray {
        match v {
            Value::Uuid(_) => PgArray::Uuid(Vec::with_capacity(n)),
            Value::Text(_) => PgArray::Text(Vec::with_capacity(n)),
            Value::I16(_) => PgArray::I16(Vec::with_capacity(n)),
            Value::I32(_) => PgArray::I32(Vec::with_capacity(n)),
            Value::I64(_) => PgArray::I64(Vec::with_capacity(n)),
            Value::Bool(_) => PgArray::Bool(Vec::with_capacity(n)),
            Value::Bytes(_) => PgArray::Bytes(Vec::with_capacity(n)),
            Value::Time(_) => PgArray::Time(Vec::with_capacity(n)),
            Value::Date(_) => PgArray::Date(Vec::with_capacity(n)),
        }
    }

    /// Appends `v`; `Err` if it is of another type than the array's.
    fn push(&mut self, v: Value) -> Result<(), ()> {
        match (self, v) {
            (PgArray::Uuid(a), Value::Uuid(v)) => a.push(v),
            (PgArray::Text(a), Value::Text(v)) => a.push(v),
            (PgArray::I16(a), Value::I16(v)) => a.push(v),
            (PgArray::I32(a), Value::I32(v)) => a.push(v),
            (PgArray::I64(a), Value::I64(v)) => a.push(v),
            (PgArray::Bool(a), Value::Bool(v)) => a.push(v),
            (PgArray::Bytes(a), Value::Bytes(v)) => a.push(v),
            (PgArray::Time(a), Value::Time(v)) => a.push(v),
            (PgArray::Date(a), Value::Date(v)) => a.push(v),
            _ => return Err(()),
        }
        Ok(())
    }

    /// The SQL type of the array's elements, for the statement's casts.
    fn element_type(&self) -> &'static str {
        match self {
            PgArray::Uuid(_) => "uuid",
            PgArray::Text(_) => "text",
            PgArray::I16(_) => "int2",
            PgArray::I32(_) => "int4",
            PgArray::I64(_) => "int8",
            PgArray::Bool(_) => "bool",
            PgArray::Bytes(_) => "bytea",
            PgArray::Time(_) => "timestamptz",
            PgArray::Date(_) => "date",
        }
    }

    fn bind(self, q: Query<'_, Postgres, PgArguments>) -> Query<'_, Postgres, PgArguments> {
        match self {
            PgArray::Uuid(a) => q.bind(a),
            PgArray::Text(a) => q.bind(a),
            PgArray::I16(a) => q.bind(a),
            PgArray::I32(a) => q.bind(a),
            PgArray::I64(a) => q.bind(a),
            PgArray::Bool(a) => q.bind(a),
            PgArray::Bytes(a) => q.bind(a),
            PgArray::Time(a) => q.bind(a),
            PgArray::Date(a) => q.bind(a),
        }
    }
}

/// Every statement of either engine passes here: timed, and its error counted unless it is a
/// refused write (the no-double-booking rule, a unique key) or a deadlock that is retried.
async fn observed<T>(
    operation: &'static str,
    statement: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    crate::observability::db_statement(operation, statement, |e| {
        is_double_booking(e) || is_unique_violation(e) || is_deadlock(e)
    })
    .await
}

enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

/// A column type both engines decode with sqlx's own codec (timestamps and dates are not:
/// read them with [`Row::time`] and [`Row::date`]).
pub(crate) trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// A result row of either engine.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    pub fn get<T: Column>(&self, col: &str) -> Result<T, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
    }

    pub fn time(&self, col: &str) -> Result<OffsetDateTime, sqlx::Error> {
        self.opt_time(col)?.ok_or_else(|| sqlx::Error::Decode(format!("{col} is NULL").into()))
    }

    pub fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => Ok(r.try_get::<Option<i64>, _>(col)?.map(from_micros)),
            Row::Postgres(r) => r.try_get(col),
        }
    }

    pub fn date(&self, col: &str) -> Result<Option<Date>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r
                .try_get::<Option<String>, _>(col)?
                .map(|d| Date::parse(&d, time::macros::format_description!("[year]-[month]-[day]")))
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e))),
            Row::Postgres(r) => r.try_get(col),
        }
    }
}

/// Maps every row with `f`.
pub(crate) fn map_rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T, sqlx::Error>) -> Result<Vec<T>, sqlx::Error> {
    rows.iter().map(f).collect()
}

/// A pool of either engine (a clone shares the pool and the audit lock).
#[derive(Clone)]
pub(crate) enum Db {
    /// One file in WAL mode; `audit_lock` lets one audited transaction at a time in (this
    /// process owns the file).
    Sqlite {
        pool: SqlitePool,
        audit_lock: Arc<Mutex<()>>,
    },
    Postgres {
        pool: PgPool,
    },
}

enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl Db {
    /// `postgres://…` or `postgresql://…` opens PostgreSQL; anything else is a SQLite URL
    /// (`sqlite://path`), whose file is created if missing.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(16).connect(url).await?;
            return Ok(Db::Postgres { pool });
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        Ok(Db::Sqlite { pool, audit_lock: Arc::new(Mutex::new(())) })
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    /// Runs the engine's own migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { pool, .. } => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Db::Postgres { pool } => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    async fn acquire(&self) -> Result<Pooled, sqlx::Error> {
        crate::observability::pool_wait(async {
            Ok(match self {
                Db::Sqlite { pool, .. } => Pooled::Sqlite(pool.acquire().await?),
                Db::Postgres { pool } => Pooled::Postgres(pool.acquire().await?),
            })
        })
        .await
    }

    pub fn pool_status(&self) -> super::PoolStatus {
        let (size, idle, max) = match self {
            Db::Sqlite { pool, .. } => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
            Db::Postgres { pool } => (pool.size(), pool.num_idle(), pool.options().get_max_connections()),
        };
        super::PoolStatus { size, idle: idle as u32, max }
    }

    /// Rows affected.
    pub async fn execute(&self, q: Sql) -> Result<u64, sqlx::Error> {
        q.execute(self.acquire().await?.conn()).await
    }

    pub async fn fetch_all(&self, q: Sql) -> Result<Vec<Row>, sqlx::Error> {
        q.fetch_all(self.acquire().await?.conn()).await
    }

    pub async fn fetch_optional(&self, q: Sql) -> Result<Option<Row>, sqlx::Error> {
        q.fetch_optional(self.acquire().await?.conn()).await
    }

    /// The first row, if any, read by `f`.
    pub async fn fetch_optional_as<T>(
        &self,
        q: Sql,
        f: fn(&Row) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, sqlx::Error> {
        self.fetch_optional(q).await?.as_ref().map(f).transpose()
    }

    /// Every row, each read by `f`.
    pub async fn fetch_all_as<T>(&self, q: Sql, f: fn(&Row) -> Result<T, sqlx::Error>) -> Result<Vec<T>, sqlx::Error> {
        map_rows(self.fetch_all(q).await?, f)
    }

    /// A plain (deferred) transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite { pool, .. } => Tx::Sqlite(pool.begin().await?, None),
            Db::Postgres { pool } => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A write transaction in which audit events may be appended. On SQLite: the audit lock,
    /// then IMMEDIATE, which takes the write lock before the last hash is read (a deferred
    /// transaction would read a snapshot that another writer can make stale, and SQLite then
    /// refuses the insert at once, SQLITE_BUSY_SNAPSHOT, instead of waiting). On PostgreSQL a
    /// plain transaction: [`Tx::lock_audit_chain`] serialises the append itself. Health-data
    /// writes use it too, so that a write and its audit event commit together or not at all.
    pub async fn begin_audited(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Db::Sqlite { pool, audit_lock } => {
                let guard = audit_lock.clone().lock_owned().await;
                Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?, Some(guard)))
            }
            Db::Postgres { .. } => self.begin().await,
        }
    }
}

/// A transaction of either engine. On SQLite it may hold the audit lock, released after the
/// transaction ends (fields drop in order).
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>, Option<OwnedMutexGuard<()>>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx, _) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    /// Rows affected.
    pub async fn execute(&mut self, q: Sql) -> Result<u64, sqlx::Error> {
        q.execute(self.conn()).await
    }

    /// Inserts every row of `rows` in one statement (rows affected): a `VALUES` list on SQLite,
    /// one array per column on PostgreSQL ([`Rows`]).
    pub async fn insert_rows(&mut self, rows: Rows) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Tx::Sqlite(..) => self.execute(rows.sqlite_insert()).await,
            Tx::Postgres(tx) => {
                let (text, arrays) = rows.postgres_insert()?;
                observed("execute", async {
                    let q = arrays.into_iter().fold(sqlx::query(&text), |q, a| a.bind(q));
                    Ok(q.execute(&mut **tx).await?.rows_affected())
                })
                .await
            }
        }
    }

    pub async fn fetch_all(&mut self, q: Sql) -> Result<Vec<Row>, sqlx::Error> {
        q.fetch_all(self.conn()).await
    }

    pub async fn fetch_optional(&mut self, q: Sql) -> Result<Option<Row>, sqlx::Error> {
        q.fetch_optional(self.conn()).await
    }

    pub async fn fetch_one(&mut self, q: Sql) -> Result<Row, sqlx::Error> {
        self.fetch_optional(q).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx, _guard) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    /// Serialises audit appends until this transaction ends. PostgreSQL: an advisory lock, so
    /// appends are serialised across every control instance and each reads the hash its
    /// predecessor committed; callers write their health data first and append last, so the
    /// lock is never held while waiting for another lock. SQLite: the transaction came from
    /// [`Db::begin_audited`], which already holds the write lock.
    pub async fn lock_audit_chain(&mut self) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK_KEY).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Locks every enabled admin row before the last-admin guard counts them. PostgreSQL: in
    /// one order, so two such transactions cannot deadlock; a concurrent change that disables
    /// or demotes another admin waits here, and its guard then counts after this one
    /// committed. SQLite runs writes one at a time, so the guard's count and the write that
    /// follows are one step already.
    pub async fn lock_enabled_admins(&mut self) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// The store's reading of a failed insert or update: the no-double-booking rule is
/// `DoubleBooking`, any other unique constraint `Conflict`, the rest a database error.
pub(crate) fn write_error(e: sqlx::Error) -> StoreError {
    if is_double_booking(&e) {
        StoreError::DoubleBooking
    } else if is_unique_violation(&e) {
        StoreError::Conflict
    } else {
        StoreError::Database(e)
    }
}

/// Runs a write transaction again when PostgreSQL ended it to break a deadlock (SQLSTATE 40P01).
/// Two bookings of overlapping times that insert at the same moment can each wait for the
/// other's uncommitted row: PostgreSQL checks an exclusion constraint after it has inserted the
/// row (a unique index is checked before), so both wait, and it aborts one of them. The aborted
/// transaction wrote nothing; run again, it waits for the winner and gets `DoubleBooking`, or
/// goes through if the winner rolled back. A deadlock needs another writer at that very moment,
/// so a few attempts are plenty; the last one's error is returned as it is. SQLite serialises
/// writers and never reports one.
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    const ATTEMPTS: u32 = 5;
    let mut made = 1;
    loop {
        match attempt().await {
            Err(StoreError::Database(e)) if made < ATTEMPTS && is_deadlock(&e) => {
                tracing::debug!(attempt = made, "a write transaction was ended to break a deadlock; running it again");
                made += 1;
            }
            other => return other,
        }
    }
}

/// Whether PostgreSQL aborted the transaction to break a deadlock.
fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("40P01"))
}

/// Whether a database error is a unique constraint of either engine.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Whether a database error is the no-double-booking rule of either schema: PostgreSQL's
/// exclusion constraint (SQLSTATE 23P01) or SQLite's trigger, which names the rule.
fn is_double_booking(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("23P01") || d.message().contains("appointments_no_double_booking")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A database error with a SQLSTATE, as PostgreSQL reports one.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }
    impl std::error::Error for Sqlstate {}
    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "deadlock detected"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn failing(code: &'static str) -> StoreError {
        StoreError::Database(sqlx::Error::Database(Box::new(Sqlstate(code))))
    }

    /// Fails with `code` `failures` times, then succeeds; counts the attempts.
    async fn run(code: &'static str, failures: u32) -> (Result<&'static str, StoreError>, u32) {
        let attempts = AtomicU32::new(0);
        let result = retry_deadlocks(|| async {
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= failures { Err(failing(code)) } else { Ok("written") }
        })
        .await;
        (result, attempts.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_deadlock_victim_runs_again() {
        let (result, attempts) = run("40P01", 2).await;
        assert_eq!(result.unwrap(), "written");
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn deadlocks_are_retried_five_times_at_most() {
        let (result, attempts) = run("40P01", 100).await;
        assert!(matches!(result, Err(StoreError::Database(_))));
        assert_eq!(attempts, 5);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        // 23P01: the exclusion constraint itself, i.e. a double booking: final.
        let (result, attempts) = run("23P01", 1).await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }

    const COLUMNS: &[&str] = &["id", "note", "at"];

    fn two_rows() -> Rows {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut rows = Rows::new("t", COLUMNS, 2);
        rows.push([Uuid::nil().into(), "a".into(), at.into()]);
        rows.push([Uuid::max().into(), Option::<String>::None.into(), at.into()]);
        rows
    }

    #[test]
    fn sqlite_rows_are_one_values_list_bound_in_order() {
        let q = two_rows().sqlite_insert();
        assert_eq!(q.text, "INSERT INTO t (id, note, at) VALUES (?, ?, ?), (?, ?, ?)");
        assert_eq!(q.args.len(), 6);
        assert!(matches!(q.args[4], Value::Text(None)));
    }

    #[test]
    fn postgres_rows_are_one_array_per_column_and_the_text_does_not_grow_with_them() {
        let (text, arrays) = two_rows().postgres_insert().unwrap();
        assert_eq!(
            text,
            "INSERT INTO t (id, note, at) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[])"
        );
        assert!(matches!(&arrays[0], PgArray::Uuid(a) if a == &[Some(Uuid::nil()), Some(Uuid::max())]));
        assert!(matches!(&arrays[1], PgArray::Text(a) if a == &[Some("a".to_string()), None]));
        let mut more = two_rows();
        more.push([Uuid::nil().into(), "c".into(), OffsetDateTime::UNIX_EPOCH.into()]);
        assert_eq!(more.len(), 3);
        assert_eq!(more.postgres_insert().unwrap().0, text);
    }

    #[test]
    fn a_column_of_two_types_is_refused_before_the_database() {
        let mut rows = two_rows();
        rows.push([Uuid::nil().into(), 7i64.into(), OffsetDateTime::UNIX_EPOCH.into()]);
        let e = rows.postgres_insert().err().expect("mixed types refused");
        assert!(e.to_string().contains("t.note: values of more than one type"), "{e}");
    }
}
