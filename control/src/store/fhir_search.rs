//! The FHIR façade's searches (`fhir::search_routes`): read-only, paginated in SQL by a keyset
//! (the sort key of the last row seen), so that a record inserted while a client pages neither
//! repeats nor shifts a row across pages. Each search also counts its whole result
//! (`Bundle.total`). Access rules arrive as filters, decided by `scheduling::access`.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::{Row, Sql, Value, sql};
use super::scheduling_store::{appointment_from_row, care_relationship, patient_from_row, practitioner_from_row};
use super::{Appointment, AppointmentStatus, CareWindow, PatientRecord, Practitioner, SqlStore, StoreResult};

/// Appointments whose every given condition holds, in `(starts_at, id)` order.
#[derive(Debug, Clone, Default)]
pub struct AppointmentSearch {
    pub practitioner_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    /// Any of these (none: every status).
    pub statuses: Vec<AppointmentStatus>,
    /// Starts at or after.
    pub start_from: Option<OffsetDateTime>,
    /// Starts before.
    pub start_before: Option<OffsetDateTime>,
    /// The page begins after this `(starts_at, id)`.
    pub after: Option<(OffsetDateTime, Uuid)>,
    pub limit: i64,
}

/// Patient records, in `(display_name, id)` order.
#[derive(Debug, Clone, Default)]
pub struct PatientSearch {
    /// Only this record (a patient's own).
    pub only: Option<Uuid>,
    /// Only patients in a care relationship with this practitioner, within the window.
    pub care_of: Option<(Uuid, CareWindow)>,
    pub national_id_index: Option<String>,
    /// The page begins after this `(display_name, id)`.
    pub after: Option<(String, Uuid)>,
    pub limit: i64,
}

/// Practitioners, in `(display_name, id)` order.
#[derive(Debug, Clone, Default)]
pub struct PractitionerSearch {
    /// FHIR string matching: the name, or one of its words, starts with this (case-insensitive).
    pub name: Option<String>,
    /// The page begins after this `(display_name, id)`.
    pub after: Option<(String, Uuid)>,
    pub limit: i64,
}

/// One page of a search and the number of matches of the whole search.
#[derive(Debug, Clone)]
pub struct SearchPage<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[async_trait]
pub trait FhirSearchStore: Send + Sync {
    async fn search_appointments(&self, s: &AppointmentSearch) -> StoreResult<SearchPage<Appointment>>;
    async fn search_patients(&self, s: &PatientSearch) -> StoreResult<SearchPage<PatientRecord>>;
    async fn search_practitioners(&self, s: &PractitionerSearch) -> StoreResult<SearchPage<Practitioner>>;
}

/// A WHERE clause built from conditions, each with its bound values numbered in order.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    args: Vec<Value>,
}

impl Conditions {
    /// The next placeholder, bound to `v`.
    fn arg(&mut self, v: impl Into<Value>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }

    fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    fn sql(&self, head: &str, tail: &str) -> Sql {
        let condition = if self.clauses.is_empty() { "TRUE".to_string() } else { self.clauses.join(" AND ") };
        self.args.iter().cloned().fold(sql(format!("{head} WHERE {condition} {tail}")), Sql::bind)
    }
}

/// The page after `after` of the rows `filter` selects in `(key, id)` order, and their count.
async fn page<T>(
    store: &SqlStore,
    table: &str,
    key: &str,
    filter: Conditions,
    after: Option<(Value, Uuid)>,
    limit: i64,
    from_row: fn(&Row) -> Result<T, sqlx::Error>,
) -> StoreResult<SearchPage<T>> {
    let count = filter.sql(&format!("SELECT COUNT(*) AS n FROM {table}"), "");
    let total: i64 = store.db.fetch_optional(count).await?.map(|r| r.get("n")).transpose()?.unwrap_or(0);
    let mut filter = filter;
    if let Some((after, id)) = after {
        let (k, i) = (filter.arg(after), filter.arg(id));
        filter.push(format!("({key} > {k} OR ({key} = {k} AND id > {i}))"));
    }
    let limit = filter.arg(limit);
    let items = store
        .db
        .fetch_all_as(
            filter.sql(&format!("SELECT * FROM {table}"), &format!("ORDER BY {key}, id LIMIT {limit}")),
            from_row,
        )
        .await?;
    Ok(SearchPage { items, total })
}

/// A LIKE pattern matching text that starts with `prefix` (wildcards in it taken literally).
fn starts_with_pattern(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

#[async_trait]
impl FhirSearchStore for SqlStore {
    async fn search_appointments(&self, s: &AppointmentSearch) -> StoreResult<SearchPage<Appointment>> {
        let mut f = Conditions::default();
        if let Some(p) = s.practitioner_id {
            let p = f.arg(p);
            f.push(format!("practitioner_id = {p}"));
        }
        if let Some(p) = s.patient_id {
            let p = f.arg(p);
            f.push(format!("patient_id = {p}"));
        }
        if !s.statuses.is_empty() {
            let any: Vec<String> = s.statuses.iter().map(|st| f.arg(st.as_str())).collect();
            f.push(format!("status IN ({})", any.join(", ")));
        }
        if let Some(t) = s.start_from {
            let t = f.arg(t);
            f.push(format!("starts_at >= {t}"));
        }
        if let Some(t) = s.start_before {
            let t = f.arg(t);
            f.push(format!("starts_at < {t}"));
        }
        let after = s.after.map(|(t, id)| (Value::from(t), id));
        page(self, "appointments", "starts_at", f, after, s.limit, appointment_from_row).await
    }

    async fn search_patients(&self, s: &PatientSearch) -> StoreResult<SearchPage<PatientRecord>> {
        let mut f = Conditions::default();
        if let Some(id) = s.only {
            let id = f.arg(id);
            f.push(format!("id = {id}"));
        }
        if let Some((practitioner, window)) = s.care_of {
            let (p, now, ended_after) = (f.arg(practitioner), f.arg(window.now), f.arg(window.ended_after));
            f.push(format!(
                "EXISTS (SELECT 1 FROM appointments a WHERE a.practitioner_id = {p} AND a.patient_id = patients.id AND {})",
                care_relationship(&now, &ended_after)
            ));
        }
        if let Some(index) = &s.national_id_index {
            let index = f.arg(index);
            f.push(format!("national_id_index = {index}"));
        }
        let after = s.after.clone().map(|(name, id)| (Value::from(name), id));
        page(self, "patients", "display_name", f, after, s.limit, patient_from_row).await
    }

    async fn search_practitioners(&self, s: &PractitionerSearch) -> StoreResult<SearchPage<Practitioner>> {
        let mut f = Conditions::default();
        if let Some(name) = &s.name {
            let start = starts_with_pattern(&name.to_lowercase());
            let (whole, word) = (f.arg(start.clone()), f.arg(format!("% {start}")));
            f.push(format!(
                "(lower(display_name) LIKE {whole} ESCAPE '\\' OR lower(display_name) LIKE {word} ESCAPE '\\')"
            ));
        }
        let after = s.after.clone().map(|(name, id)| (Value::from(name), id));
        page(self, "practitioners", "display_name", f, after, s.limit, practitioner_from_row).await
    }
}

#[cfg(test)]
mod tests {
    use super::starts_with_pattern;

    #[test]
    fn like_wildcards_in_a_prefix_are_literal() {
        assert_eq!(starts_with_pattern("ka"), "ka%");
        assert_eq!(starts_with_pattern("5%_\\"), "5\\%\\_\\\\%");
    }
}
