//! The FHIR R4 façade over real HTTP on SQLite and PostgreSQL: every resource it serves is
//! validated by an independent FHIR library (PyPI fhir.resources, R4B models, driven by
//! tests/fhir/validate.py), and it applies the JSON API's access rules and audit.

mod support;

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::*;
use support::engines;

/// GET with a token, expecting FHIR JSON back (resources and OperationOutcomes alike).
async fn fhir(c: &Clinic, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = c.e.http.get(c.e.control.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/fhir+json"), "{path}: {content_type}");
    (status, res.json().await.unwrap())
}

fn assert_outcome(status: StatusCode, body: &Value, expected: StatusCode, code: &str, context: &str) {
    assert_eq!(status, expected, "{context}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: {body}");
    assert_eq!(body["issue"][0]["code"], code, "{context}: {body}");
}

/// Runs the independent validator over every file; fails the test on any invalid resource.
/// Without fhir.resources the validation is skipped with a message, except in CI, which
/// installs it (.ci/install) and must not skip.
fn validate_with_fhir_resources(files: &[std::path::PathBuf]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/validate.py");
    let out = Command::new("python3").arg(&script).args(files).output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    if out.status.code() == Some(3) && std::env::var("CI").is_err() {
        eprintln!("SKIPPED FHIR validation: {text}");
        return;
    }
    assert!(out.status.success(), "fhir.resources refused a resource:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.starts_with("valid ")).count(), files.len(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fhir_facade_serves_valid_r4_under_the_same_access_rules() {
    for engine in engines() {
        let c = clinic(engine).await;
        // Mornings in Istanbul, every day, and one appointment of Ayşe's.
        let days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
        let rules: Vec<Value> =
            days.iter().map(|d| json!({"weekday": d, "from": "09:00", "to": "12:00", "slotMinutes": 30})).collect();
        let (s, body) =
            c.e.put(
                &format!("/v1/practitioners/{}/availability", c.doctor_practitioner),
                Some(&c.admin),
                json!({"rules": rules}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (start, end) = slot(30, 30);
        let (s, appointment) = c.e.post("/v1/appointments", Some(&c.patient), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        assert_eq!(s, StatusCode::CREATED, "{appointment}");
        let appointment_id = appointment["id"].as_str().unwrap();
        let (s, cancelled) = c.e.post("/v1/appointments", Some(&c.patient), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": slot(60, 30).0, "end": slot(60, 30).1})).await;
        assert_eq!(s, StatusCode::CREATED);
        let cancelled_id = cancelled["id"].as_str().unwrap();
        act(&c, cancelled_id, &c.patient, "cancel", json!({"reason": "travelling"})).await;

        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        let mut keep = |name: &str, v: &Value| {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
            files.push(path);
        };

        // Patient: the patient and their practitioner may read it; identifiers decrypted.
        let (s, patient) = fhir(&c, &format!("/fhir/R4/Patient/{}", c.patient_record), Some(&c.doctor)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {patient}");
        assert_eq!(patient["id"], c.patient_record.as_str());
        assert_eq!(patient["identifier"][0]["value"], "12345678901");
        assert_eq!(patient["birthDate"], "1980-02-29");
        assert!(patient.to_string().contains("+90 532 111 22 33"));
        assert!(!patient.to_string().contains("penicillin"), "notes are not demographics: {patient}");
        keep("patient", &patient);
        let (s, _) = fhir(&c, &format!("/fhir/R4/Patient/{}", c.patient_record), Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK);

        let (s, practitioner) =
            fhir(&c, &format!("/fhir/R4/Practitioner/{}", c.doctor_practitioner), Some(&c.patient)).await;
        assert_eq!((s, practitioner["name"][0]["text"].as_str()), (StatusCode::OK, Some("Dr. Elif Kaya")));
        keep("practitioner", &practitioner);
        let (s, schedule) = fhir(&c, &format!("/fhir/R4/Schedule/{}", c.doctor_practitioner), Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK);
        keep("schedule", &schedule);

        let (s, a) = fhir(&c, &format!("/fhir/R4/Appointment/{appointment_id}"), Some(&c.patient)).await;
        assert_eq!((s, a["status"].as_str()), (StatusCode::OK, Some("booked")), "{a}");
        let refs: Vec<&str> =
            a["participant"].as_array().unwrap().iter().map(|p| p["actor"]["reference"].as_str().unwrap()).collect();
        assert!(refs.contains(&format!("Patient/{}", c.patient_record).as_str()), "{a}");
        assert!(refs.contains(&format!("Practitioner/{}", c.doctor_practitioner).as_str()), "{a}");
        keep("appointment", &a);
        let (_, cancelled) = fhir(&c, &format!("/fhir/R4/Appointment/{cancelled_id}"), Some(&c.doctor)).await;
        assert_eq!(
            (cancelled["status"].as_str(), cancelled["cancelationReason"]["text"].as_str()),
            (Some("cancelled"), Some("travelling"))
        );
        keep("appointment-cancelled", &cancelled);

        // Slot search: tomorrow-and-after's free slots, minus the booked one.
        let day = &start[..10];
        let from = format!("ge{day}");
        let to_day = time::Date::parse(day, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
            + time::Duration::days(3);
        let path = format!("/fhir/R4/Slot?schedule=Schedule/{}&start={from}&start=lt{to_day}", c.doctor_practitioner);
        let (s, bundle) = fhir(&c, &path, Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {bundle}");
        assert_eq!(bundle["type"], "searchset");
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(bundle["total"], entries.len());
        // Three days of six slots, less the one or two the booking overlaps (if in hours).
        assert!((16..=18).contains(&entries.len()), "{engine:?}: {} slots: {bundle}", entries.len());
        assert!(
            entries
                .iter()
                .all(|e| e["resource"]["status"] == "free" && e["fullUrl"].as_str().unwrap().starts_with("http://"))
        );
        keep("slots", &bundle);
        let (s, metadata) = fhir(&c, "/fhir/R4/metadata", None).await;
        assert_eq!((s, metadata["fhirVersion"].as_str()), (StatusCode::OK, Some("4.0.1")));
        keep("metadata", &metadata);

        // The same access rules, answered as OperationOutcomes, refusals audited.
        let (s, body) = fhir(&c, &format!("/fhir/R4/Patient/{}", c.patient_record), Some(&c.other_patient)).await;
        assert_outcome(s, &body, StatusCode::FORBIDDEN, "forbidden", "another patient's record");
        keep("outcome-forbidden", &body);
        let (s, body) = fhir(&c, &format!("/fhir/R4/Appointment/{appointment_id}"), Some(&c.other_patient)).await;
        assert_outcome(s, &body, StatusCode::FORBIDDEN, "forbidden", "another patient's appointment");
        let (s, body) = fhir(&c, &format!("/fhir/R4/Patient/{}", c.patient_record), None).await;
        assert_outcome(s, &body, StatusCode::UNAUTHORIZED, "login", "no token");
        let (s, body) = fhir(&c, "/fhir/R4/Patient/not-a-uuid", Some(&c.admin)).await;
        assert_outcome(s, &body, StatusCode::NOT_FOUND, "not-found", "unknown id");
        let (s, body) = fhir(&c, "/fhir/R4/Slot?start=ge2027-01-01", Some(&c.admin)).await;
        assert_outcome(s, &body, StatusCode::BAD_REQUEST, "invalid", "a Slot search without schedule");
        let (s, body) =
            fhir(&c, &format!("/fhir/R4/Slot?schedule={}&start=ne2027-01-01", c.doctor_practitioner), Some(&c.admin))
                .await;
        assert_outcome(s, &body, StatusCode::BAD_REQUEST, "invalid", "an unsupported prefix");
        let (_, audit) = c.e.get("/v1/audit?action=patient.read", Some(&c.admin)).await;
        let events = audit["events"].as_array().unwrap();
        assert!(
            events.iter().any(|ev| ev["outcome"] == "denied" && ev["target"] == c.patient_record.as_str()),
            "{engine:?}"
        );
        assert!(events.iter().filter(|ev| ev["outcome"] == "success").count() >= 2, "FHIR reads are audited: {audit}");

        validate_with_fhir_resources(&files);
    }
}

/// Security issue 18, item 10: FHIR links name the configured `public-url`, never the
/// request's forged `Host`; without `public-url` they name the listen address; a date at the
/// end of time is a precise 400 OperationOutcome, not an internal overflow message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_ignore_a_forged_host_and_dates_past_the_supported_range_are_refused() {
    for engine in engines() {
        for public in [None, Some("https://tele.example.org")] {
            let extra = public.map(|u| format!("public-url = \"{u}/\"")).unwrap_or_default();
            let c = clinic_with(engine, &extra).await;
            let expected = format!("{}/fhir/R4/", public.unwrap_or(c.e.control.base.as_str()));
            let day = time::OffsetDateTime::now_utc().date() + time::Duration::days(3);
            let rules = json!({"rules": [{"weekday": day.weekday().to_string().to_lowercase(), "from": "09:00", "to": "10:00", "slotMinutes": 30}]});
            let (s, body) =
                c.e.put(&format!("/v1/practitioners/{}/availability", c.doctor_practitioner), Some(&c.admin), rules)
                    .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let search = format!("/fhir/R4/Slot?schedule=Schedule/{}&start={day}", c.doctor_practitioner);
            let res =
                c.e.http
                    .get(c.e.control.url(&search))
                    .bearer_auth(&c.patient)
                    .header("host", "evil.example")
                    .header("x-forwarded-proto", "https")
                    .send()
                    .await
                    .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let bundle: Value = res.json().await.unwrap();
            let entries = bundle["entry"].as_array().unwrap();
            assert_eq!(entries.len(), 2, "{engine:?}: {bundle}");
            for url in entries.iter().map(|e| &e["fullUrl"]).chain([&bundle["link"][0]["url"]]) {
                assert!(url.as_str().unwrap().starts_with(&expected), "{engine:?}: {url} is not under {expected}");
            }
            let (s, metadata) = fhir(&c, "/fhir/R4/metadata", None).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(metadata["implementation"]["url"], expected.trim_end_matches('/'), "{engine:?}");

            for start in ["ge9999-12-30", "ge9999-12-31", "lt0001-01-01", "ge2026-01-01&start=lt2026-06-01"] {
                let path = format!("/fhir/R4/Slot?schedule=Schedule/{}&start={start}", c.doctor_practitioner);
                let (s, body) = fhir(&c, &path, Some(&c.patient)).await;
                assert_outcome(s, &body, StatusCode::BAD_REQUEST, "invalid", start);
                let text = body["issue"][0]["diagnostics"].as_str().unwrap();
                assert!(
                    text.starts_with("start: ") || text.contains("outside the supported dates"),
                    "{engine:?}: {start}: {text}"
                );
            }
            let path = format!(
                "/v1/availability?practitioner={}&from=9999-12-30T00:00:00Z&to=9999-12-31T00:00:00Z",
                c.doctor_practitioner
            );
            let (s, body) = c.e.get(&path, Some(&c.patient)).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{engine:?}: {body}");
            assert_eq!(body["errors"][0]["field"], "from", "{body}");
            assert!(body["detail"].as_str().unwrap().contains("between 1970"), "{body}");
            assert!(!body["detail"].as_str().unwrap().contains("overflow"), "{body}");
        }
    }
}
