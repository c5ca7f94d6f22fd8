//! The restore drill (issue 22), on SQLite and PostgreSQL, with the real binary: a clinic books
//! appointments and records consents; `teletip-control backup` writes an encrypted file; the
//! database is destroyed; `teletip-control restore` brings every booking, consent and audit
//! event back, the chain verifies, and the restarted service serves them. Restores of a
//! tampered file, of a file under another key, of a broken chain and into a non-empty database
//! are refused and change nothing.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::*;
use support::http::*;
use support::{Control, Engine, engines, fresh_database};

fn teletip_control(config: &Path, database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_teletip-control"))
        .arg("--config")
        .arg(config)
        .args(["--database-url", database_url])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let hex: String = (0..2).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    std::fs::write(&path, hex + "\n").unwrap();
    path.display().to_string()
}

/// Destroys a database: deletes the SQLite file, or drops the PostgreSQL database and creates
/// it again empty (a restore goes into an existing, empty database there).
async fn destroy(engine: Engine, url: &str) {
    match engine {
        Engine::Sqlite => {
            let file = url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{file}{suffix}"));
            }
        }
        Engine::Postgres => {
            use sqlx::Connection;
            let base = std::env::var("TELETIP_TEST_DATABASE_URL").unwrap();
            let name = url.rsplit('/').next().unwrap();
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        }
    }
}

/// How many users a database holds; `None` when it has no schema (or no file) at all.
async fn users_in(engine: Engine, url: &str) -> Option<i64> {
    use sqlx::Connection;
    let q = "SELECT COUNT(*) FROM users";
    match engine {
        Engine::Sqlite => {
            let file = url.trim_start_matches("sqlite://");
            if !Path::new(file).exists() {
                return None;
            }
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(q).fetch_one(&mut c).await.ok()
        }
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(q).fetch_one(&mut c).await.ok()
        }
    }
}

/// Everything the drill compares, read through the API: bookings, a patient's record
/// (decrypted identifying fields), consents, and the audit trail with its verification.
async fn clinic_state(e: &Env, admin: &str, patient_record: &str, patient_user: &str) -> (Value, Value, Value, Value) {
    let (s, appointments) = e.get("/v1/appointments?limit=500", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{appointments}");
    let (s, record) = e.get(&format!("/v1/patients/{patient_record}"), Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{record}");
    let (s, consents) = e.get(&format!("/v1/users/{patient_user}/consents"), Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{consents}");
    let (s, audit) = e.get("/v1/audit?limit=1000", Some(admin)).await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    (appointments, record, consents, audit)
}

fn notice() -> Value {
    json!({
        "version": "2026-12", "language": "tr", "title": "Aydınlatma metni", "body": "Sağlık verileriniz.",
        "purposes": [
            {"code": "health-data-processing", "required": true, "description": "Video consultation"},
            {"code": "research", "required": false, "description": "Anonymised research"},
        ],
    })
}

async fn metric(e: &Env, name: &str) -> f64 {
    let text = e.http.get(e.control.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_drill_brings_back_every_booking_consent_and_audit_event() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (s, body) = c.e.post("/v1/privacy-notices", Some(&c.admin), notice()).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        for purpose in ["health-data-processing", "research"] {
            let (s, body) =
                c.e.post(
                    "/v1/me/consents",
                    Some(&c.patient),
                    json!({"noticeVersion": "2026-12", "purpose": purpose, "decision": "given"}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{body}");
        }
        for (hours, token) in [(30, &c.patient), (32, &c.admin), (34, &c.doctor)] {
            let (start, end) = slot(hours, 30);
            let (s, body) = c
                .e
                .post("/v1/appointments", Some(token), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");
        }
        let (_, me) = c.e.get("/v1/me", Some(&c.patient)).await;
        let patient_user = me["id"].as_str().unwrap().to_string();
        let before = clinic_state(&c.e, &c.admin, &c.patient_record, &patient_user).await;
        assert_eq!(before.0.as_array().unwrap().len(), 3);
        assert_eq!(before.2["history"].as_array().unwrap().len(), 2, "{}", before.2);
        assert_eq!(before.3["chain"]["verified"], true);

        let dir = c.e._dir.path().to_owned();
        let key = write_key(&dir, "backup.key");
        let file = dir.join("clinic.backup");
        let url = c.e.control.database_url.clone();
        let config = c.e.control.config_path.clone();
        let made_after = time::OffsetDateTime::now_utc().unix_timestamp();
        let out = teletip_control(&config, &url, &["backup", "--output", file.to_str().unwrap(), "--key-file", &key]);
        assert!(out.status.success(), "{engine:?}: backup: {}", stderr(&out));
        // The serving process sees the backup the command line made.
        let last = metric(&c.e, "teletip_control_last_backup_timestamp_seconds").await;
        assert!(last >= made_after as f64, "{engine:?}: last backup at {last}, made after {made_after}");
        // Health data inside is encrypted: no identifying field of the clinic is readable.
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for plain in
            ["Ayşe", "ayse@example.org", "dr.kaya", "Elif Kaya", "health-data-processing", "appointment.create"]
        {
            assert!(!text.contains(plain), "{engine:?}: {plain} readable in the backup");
        }
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }

        let Clinic { e, admin, patient_record, .. } = c;
        let Env { control, http, engine, _dir } = e;
        let extra: String =
            std::fs::read_to_string(&config).unwrap().lines().skip(3).map(|l| format!("{l}\n")).collect();
        control.stop();
        destroy(engine, &url).await;

        // Into a non-empty database: refused, nothing changes (checked after the real restore).
        let out = teletip_control(&config, &url, &["restore", "--input", file.to_str().unwrap(), "--key-file", &key]);
        assert!(out.status.success(), "{engine:?}: restore: {}", stderr(&out));
        let users = users_in(engine, &url).await;
        let out = teletip_control(&config, &url, &["restore", "--input", file.to_str().unwrap(), "--key-file", &key]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("not empty"), "{engine:?}: {}", stderr(&out));
        assert_eq!(users_in(engine, &url).await, users);

        let control = Control::start(&dir, &url, &extra);
        let e = Env { control, http, engine, _dir };
        let after = clinic_state(&e, &admin, &patient_record, &patient_user).await;
        assert_eq!(after.0, before.0, "{engine:?}: bookings");
        assert_eq!(after.1, before.1, "{engine:?}: the patient's record (decrypted with the same field keys)");
        assert_eq!(after.2, before.2, "{engine:?}: consents");
        assert_eq!(after.3["chain"]["verified"], true, "{engine:?}: {}", after.3["chain"]);
        let events_before = before.3["events"].as_array().unwrap();
        let events_after = after.3["events"].as_array().unwrap();
        for event in events_before {
            assert!(events_after.contains(event), "{engine:?}: audit event {event} lost");
        }
        let actions: Vec<&str> = events_after.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"backup.restore"), "{engine:?}: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_foreign_and_broken_backups_are_refused_and_change_nothing() {
    for engine in engines() {
        let c = clinic(engine).await;
        let dir = c.e._dir.path().to_owned();
        let config = c.e.control.config_path.clone();
        let url = c.e.control.database_url.clone();
        let key = write_key(&dir, "backup.key");
        let file = dir.join("clinic.backup");
        let out = teletip_control(&config, &url, &["backup", "--output", file.to_str().unwrap(), "--key-file", &key]);
        assert!(out.status.success(), "{}", stderr(&out));
        let good = std::fs::read(&file).unwrap();

        let attempt = |bytes: Vec<u8>, key: String| {
            let config = config.clone();
            let dir = dir.clone();
            async move {
                let target = fresh_database(engine, &dir).await;
                let input = dir.join(format!("attempt-{}.backup", uuid::Uuid::new_v4()));
                std::fs::write(&input, bytes).unwrap();
                let out = teletip_control(
                    &config,
                    &target,
                    &["restore", "--input", input.to_str().unwrap(), "--key-file", &key],
                );
                assert!(!out.status.success(), "{engine:?}: restore accepted");
                (stderr(&out), users_in(engine, &target).await)
            }
        };

        let mut tampered = good.clone();
        let middle = tampered.len() - 40;
        tampered[middle] ^= 0x01;
        let (err, users) = attempt(tampered, key.clone()).await;
        assert!(err.contains("damaged or was altered"), "{engine:?}: {err}");
        assert_eq!(users, None, "{engine:?}: a tampered restore touched the database");

        let (err, users) = attempt(good.clone(), write_key(&dir, "other.key")).await;
        assert!(err.contains("another backup key"), "{engine:?}: {err}");
        assert_eq!(users, None);

        let (err, users) = attempt(b"not a backup at all".to_vec(), key.clone()).await;
        assert!(err.contains("not a teletip backup"), "{engine:?}: {err}");
        assert_eq!(users, None);

        // An audit trail altered in the database before the backup: the backup is taken (it is
        // evidence), but its restore is refused and leaves the target empty.
        let alter: &[&str] = match engine {
            Engine::Sqlite => {
                &["DROP TRIGGER audit_events_no_update", "UPDATE audit_events SET outcome = 'altered' WHERE seq = 2"]
            }
            Engine::Postgres => &[
                "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete",
                "UPDATE audit_events SET outcome = 'altered' WHERE seq = 2",
            ],
        };
        exec_sql(&c, alter).await;
        let out = teletip_control(&config, &url, &["backup", "--output", file.to_str().unwrap(), "--key-file", &key]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (err, users) = attempt(std::fs::read(&file).unwrap(), key.clone()).await;
        assert!(err.contains("audit chain does not verify (first broken event: 2)"), "{engine:?}: {err}");
        assert_eq!(users, Some(0), "{engine:?}: a refused restore left rows behind");
    }
}
