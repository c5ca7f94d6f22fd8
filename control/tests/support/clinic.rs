//! A small clinic for API tests: an admin, a practitioner with an account, and two patients
//! with accounts and records (one with every identifying field filled in).

#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::http::*;

pub struct Clinic {
    pub e: Env,
    pub admin: String,
    pub doctor: String,
    pub doctor_practitioner: String,
    pub patient: String,
    pub patient_record: String,
    pub other_patient: String,
    pub other_record: String,
}

pub async fn clinic(engine: super::Engine) -> Clinic {
    clinic_with(engine, "").await
}

pub async fn clinic_with(engine: super::Engine, extra: &str) -> Clinic {
    // `extra` first: its top-level keys must come before any table.
    let e = env_with(engine, &format!("{extra}\n{RELAXED_LIMITS}")).await;
    let admin = e.admin().await;
    let (doctor, doctor_user) = e.user_token(&admin, "dr.kaya@hospital.test", "practitioner").await;
    let (s, p) = e.post("/v1/practitioners", Some(&admin), json!({"displayName": "Dr. Elif Kaya", "specialty": "cardiology", "timeZone": "Europe/Istanbul", "userId": doctor_user})).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    open_all_hours(&e, &admin, p["id"].as_str().unwrap()).await;
    let (patient, patient_user) = e.user_token(&admin, "ayse@example.org", "patient").await;
    let (s, rec) = e
        .post("/v1/patients", Some(&patient), json!({"displayName": "Ayşe Yılmaz", "birthDate": "1980-02-29", "nationalId": "12345678901", "phone": "+90 532 111 22 33", "email": "ayse@example.org", "notes": "penicillin allergy", "userId": patient_user}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rec}");
    let (other_patient, other_user) = e.user_token(&admin, "john@example.org", "patient").await;
    let (_, other) =
        e.post("/v1/patients", Some(&other_patient), json!({"displayName": "John Doe", "userId": other_user})).await;
    Clinic {
        admin,
        doctor,
        doctor_practitioner: p["id"].as_str().unwrap().into(),
        patient,
        patient_record: rec["id"].as_str().unwrap().into(),
        other_patient,
        other_record: other["id"].as_str().unwrap().into(),
        e,
    }
}

/// A working pattern on which every whole minute is a slot boundary: ten runs of extra hours
/// from 2000 to 2100 with 10-minute slots, offset by 0 to 9 minutes, so a booking at any whole
/// minute lasting a multiple of 10 minutes is a run of slots. A practitioner without a pattern
/// is not bookable at all; tests that book at times of their own choosing ([`slot`]) give
/// their practitioners this one, tests of the booking rules real weekly hours.
pub fn all_hours() -> Value {
    let exceptions: Vec<Value> = (0..10)
        .map(|m| {
            json!({"kind": "extraHours", "from": format!("2000-01-01T00:{m:02}:00Z"), "to": "2100-01-01T00:00:00Z", "slotMinutes": 10})
        })
        .collect();
    json!({"rules": [], "exceptions": exceptions})
}

/// Gives a practitioner the [`all_hours`] pattern (as `token`, an admin or the practitioner).
pub async fn open_all_hours(e: &Env, token: &str, practitioner: &str) {
    let (s, body) = e.put(&format!("/v1/practitioners/{practitioner}/availability"), Some(token), all_hours()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

pub async fn act(c: &Clinic, id: &str, token: &str, action: &str, body: Value) -> (StatusCode, Value) {
    c.e.post(&format!("/v1/appointments/{id}/{action}"), Some(token), body).await
}

pub fn slot(hours_ahead: i64, minutes: i64) -> (String, String) {
    let start = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
        + time::Duration::hours(hours_ahead);
    let end = start + time::Duration::minutes(minutes);
    let f = &time::format_description::well_known::Rfc3339;
    (start.format(f).unwrap(), end.format(f).unwrap())
}

/// Runs SQL statements directly on the clinic's database (test-only schema changes such as a
/// trigger that makes audit appends fail).
pub async fn exec_sql(c: &Clinic, statements: &[&str]) {
    use sqlx::Connection;
    let url = &c.e.control.database_url;
    match c.e.engine {
        super::Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
        super::Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
    }
}

/// One integer from a query on the clinic's database (e.g. a `COUNT(*)`).
pub async fn query_i64(c: &Clinic, query: &str) -> i64 {
    use sqlx::Connection;
    let url = &c.e.control.database_url;
    match c.e.engine {
        super::Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(query).fetch_one(&mut conn).await.unwrap()
        }
        super::Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(query).fetch_one(&mut conn).await.unwrap()
        }
    }
}

/// Makes every audit append of one of `actions` fail inside the database, as a full disk or a
/// lost connection would: a trigger that raises (SQLite `RAISE(ABORT)`, PostgreSQL a PL/pgSQL
/// exception). [`allow_audit`] removes it.
pub async fn refuse_audit(c: &Clinic, actions: &[&str]) {
    let list = actions.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
    match c.e.engine {
        super::Engine::Sqlite => {
            exec_sql(
                c,
                &[&format!(
                    "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_events WHEN NEW.action IN ({list})
                     BEGIN SELECT RAISE(ABORT, 'test: audit append refused'); END"
                )],
            )
            .await
        }
        super::Engine::Postgres => {
            exec_sql(
                c,
                &[
                    &format!(
                        "CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN IF NEW.action IN ({list}) THEN RAISE EXCEPTION 'test: audit append refused'; END IF;
                         RETURN NEW; END $$"
                    ),
                    "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION test_refuse_audit()",
                ],
            )
            .await
        }
    }
}

pub async fn allow_audit(c: &Clinic) {
    match c.e.engine {
        super::Engine::Sqlite => exec_sql(c, &["DROP TRIGGER test_refuse_audit"]).await,
        super::Engine::Postgres => {
            exec_sql(c, &["DROP TRIGGER test_refuse_audit ON audit_events", "DROP FUNCTION test_refuse_audit()"]).await
        }
    }
}
