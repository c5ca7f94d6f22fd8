//! The dump inside a backup file: every table of the database with its column names and rows,
//! read in one snapshot. Rows keep each engine's own representation (SQLite's storage classes,
//! PostgreSQL's `row_to_json`), so a dump is restored into the engine it came from; encrypted
//! patient fields stay encrypted in it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Dump {
    /// In an order in which every table comes after the tables its foreign keys name.
    pub tables: Vec<TableDump>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TableDump {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Rows,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rows {
    /// One value per column, in `columns` order.
    Sqlite(Vec<Vec<Cell>>),
    /// One JSON object per row, as PostgreSQL's `row_to_json` writes it and
    /// `json_populate_recordset` reads it back.
    Postgres(Vec<serde_json::Value>),
}

impl Rows {
    pub fn count(&self) -> usize {
        match self {
            Rows::Sqlite(rows) => rows.len(),
            Rows::Postgres(rows) => rows.len(),
        }
    }
}

/// A SQLite value by its storage class; blobs in base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(String),
}

impl Dump {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.count()).sum()
    }
}

/// `name` as a quoted SQL identifier (both engines).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns of `dump` that `target` also has, quoted and comma-separated: a dump of an
/// older schema loads into the columns it has; newer columns take their defaults.
pub fn shared_columns(dump: &TableDump, target: &[String]) -> Vec<String> {
    dump.columns.iter().filter(|c| target.contains(c)).cloned().collect()
}

/// `tables` ordered so that each comes after every table it references (`edges` are
/// (referencing, referenced) pairs); self-references and cycles keep their given order.
pub fn parents_first(mut tables: Vec<String>, edges: &[(String, String)]) -> Vec<String> {
    tables.sort();
    let mut ordered: Vec<String> = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables.iter().position(|t| {
            edges.iter().all(|(child, parent)| {
                child != t || parent == t || ordered.contains(parent) || !tables.contains(parent)
            })
        });
        ordered.push(tables.remove(ready.unwrap_or(0)));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn referenced_tables_come_first() {
        let edges = [
            ("sessions".to_string(), "users".to_string()),
            ("practitioners".to_string(), "practices".to_string()),
            ("practitioners".to_string(), "users".to_string()),
            ("appointments".to_string(), "practitioners".to_string()),
            ("users".to_string(), "users".to_string()),
        ];
        let order = parents_first(s(&["appointments", "practices", "practitioners", "sessions", "users"]), &edges);
        let at = |t: &str| order.iter().position(|o| o == t).unwrap();
        assert!(at("users") < at("sessions"));
        assert!(at("practices") < at("practitioners") && at("users") < at("practitioners"));
        assert!(at("practitioners") < at("appointments"));
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
