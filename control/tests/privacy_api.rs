//! KVKK / HIPAA over real HTTP on SQLite and PostgreSQL: versioned notices and explicit
//! consents gating a patient's booking, the personal-data export, erasure (anonymised when a
//! consultation took place, deleted when not) and the retention job, every step audited.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::*;
use support::engines;
use support::http::*;

fn notice(version: &str) -> Value {
    json!({
        "version": version, "language": "tr", "title": "Kişisel verilerin işlenmesi hakkında aydınlatma metni",
        "body": "Sağlık verileriniz yalnızca görüntülü muayene için işlenir.",
        "purposes": [
            {"code": "health-data-processing", "required": true, "description": "Processing health data for the video consultation"},
            {"code": "research", "required": false, "description": "Anonymised research"},
        ],
    })
}

async fn audit_has(c: &Clinic, action: &str, pred: impl Fn(&Value) -> bool) -> bool {
    let (s, audit) = c.e.get(&format!("/v1/audit?action={action}"), Some(&c.admin)).await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    audit["events"].as_array().unwrap().iter().any(pred)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// A consultation that has just taken place: ten minutes (a run of the clinic's 10-minute
/// slots) from 3 to 4 minutes ago, arrived, checked in and completed by the practitioner. It
/// ends within 7 minutes from now.
async fn held_consultation(c: &Clinic, patient_record: &str) -> String {
    let minute = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap();
    let (start, end) = (minute - time::Duration::minutes(3), minute + time::Duration::minutes(7));
    let (s, a) = c
        .e
        .post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": patient_record, "start": rfc3339(start), "end": rfc3339(end)}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    for action in ["arrive", "check-in", "complete"] {
        let (s, body) = act(c, &id, &c.doctor, action, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{action}: {body}");
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_consents_gate_a_patients_booking() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(30, 30);
        let booking =
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end});
        // No notice yet: nothing to consent to.
        let (s, body) = c.e.get("/v1/privacy-notices/current", None).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "no notice yet");

        // Only admins publish; a notice must be well formed; a version is published once.
        let (s, body) = c.e.post("/v1/privacy-notices", Some(&c.patient), notice("2026-11")).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a patient publishing");
        let mut bad = notice("2026-11");
        bad["purposes"] = json!([]);
        let (s, body) = c.e.post("/v1/privacy-notices", Some(&c.admin), bad).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "no purposes");
        assert_eq!(body["errors"][0]["field"], "purposes", "{body}");
        let (s, body) = c.e.post("/v1/privacy-notices", Some(&c.admin), notice("2026-11")).await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");
        let (s, body) = c.e.post("/v1/privacy-notices", Some(&c.admin), notice("2026-11")).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "republishing a version");
        // Anyone can read it, before signing in.
        let (s, current) = c.e.get("/v1/privacy-notices/current", None).await;
        assert_eq!((s, current["version"].as_str()), (StatusCode::OK, Some("2026-11")), "{current}");

        // A patient without consent cannot book; staff booking is not gated.
        let (s, body) = c.e.post("/v1/appointments", Some(&c.patient), booking.clone()).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "booking without consent");
        assert!(body["detail"].as_str().unwrap().contains("health-data-processing"), "{body}");
        let (s, mine) = c.e.get("/v1/me/consents", Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(mine["missingRequired"], json!(["health-data-processing"]), "{mine}");

        // Consent must name a real version and one of its purposes.
        let give = |version: &str, purpose: &str, decision: &str| json!({"noticeVersion": version, "purpose": purpose, "decision": decision});
        let (s, body) =
            c.e.post("/v1/me/consents", Some(&c.patient), give("1999-01", "health-data-processing", "given")).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "unknown version");
        let (s, body) = c.e.post("/v1/me/consents", Some(&c.patient), give("2026-11", "marketing", "given")).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "unknown purpose");
        let (s, body) =
            c.e.post("/v1/me/consents", Some(&c.patient), give("2026-11", "health-data-processing", "given")).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, first) = c.e.post("/v1/appointments", Some(&c.patient), booking.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: booking with consent: {first}");

        // Withdrawal is as easy as giving, and takes effect at once.
        let (s, _) =
            c.e.post("/v1/me/consents", Some(&c.patient), give("2026-11", "health-data-processing", "withdrawn")).await;
        assert_eq!(s, StatusCode::CREATED);
        let (start2, end2) = slot(50, 30);
        let second = json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start2, "end": end2});
        let (s, body) = c.e.post("/v1/appointments", Some(&c.patient), second.clone()).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "booking after withdrawal");

        // A new notice version needs consent again; consent to the old one is refused.
        c.e.post("/v1/me/consents", Some(&c.patient), give("2026-11", "health-data-processing", "given")).await;
        let (s, _) = c.e.post("/v1/privacy-notices", Some(&c.admin), notice("2027-01")).await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, body) = c.e.post("/v1/appointments", Some(&c.patient), second.clone()).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "consent to an older notice");
        let (s, body) =
            c.e.post("/v1/me/consents", Some(&c.patient), give("2026-11", "health-data-processing", "given")).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "giving consent to a superseded notice");
        c.e.post("/v1/me/consents", Some(&c.patient), give("2027-01", "health-data-processing", "given")).await;
        let (s, body) = c.e.post("/v1/appointments", Some(&c.patient), second).await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");

        // The history keeps every decision with its version; admins can read it, audited.
        let (_, mine) = c.e.get("/v1/me/consents", Some(&c.patient)).await;
        let history: Vec<(String, String)> = mine["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["noticeVersion"].as_str().unwrap().into(), h["decision"].as_str().unwrap().into()))
            .collect();
        let expected = [("2026-11", "given"), ("2026-11", "withdrawn"), ("2026-11", "given"), ("2027-01", "given")];
        assert_eq!(history, expected.map(|(v, d)| (v.to_string(), d.to_string())), "{engine:?}: {mine}");
        assert_eq!(mine["missingRequired"], json!([]));
        let (_, me) = c.e.get("/v1/me", Some(&c.patient)).await;
        let (s, theirs) = c.e.get(&format!("/v1/users/{}/consents", me["id"].as_str().unwrap()), Some(&c.admin)).await;
        assert_eq!((s, theirs["history"].as_array().unwrap().len()), (StatusCode::OK, 4));
        let (s, body) = c.e.get(&format!("/v1/users/{}/consents", me["id"].as_str().unwrap()), Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner reading consents");
        assert!(audit_has(&c, "consent.withdraw", |ev| ev["target"] == "2026-11:health-data-processing").await);
        assert!(audit_has(&c, "consent.give", |ev| ev["target"] == "2027-01:health-data-processing").await);
        assert!(audit_has(&c, "privacy-notice.publish", |ev| ev["target"] == "2027-01").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_holds_everything_about_me_and_nothing_about_others() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(30, 30);
        let (s, appointment) = c.e.post("/v1/appointments", Some(&c.patient), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        assert_eq!(s, StatusCode::CREATED, "{appointment}");
        c.e.post("/v1/privacy-notices", Some(&c.admin), notice("v1")).await;
        c.e.post(
            "/v1/me/consents",
            Some(&c.patient),
            json!({"noticeVersion": "v1", "purpose": "research", "decision": "given"}),
        )
        .await;

        let res = c.e.http.get(c.e.control.url("/v1/me/export")).bearer_auth(&c.patient).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let disposition = res.headers()["content-disposition"].to_str().unwrap().to_string();
        assert!(disposition.starts_with("attachment;"), "{disposition}");
        let export: Value = res.json().await.unwrap();
        assert_eq!(export["account"]["email"], "ayse@example.org", "{engine:?}: {export}");
        assert_eq!(export["patient"]["id"], c.patient_record.as_str());
        // Decrypted for its owner.
        assert_eq!(export["patient"]["nationalId"], "12345678901");
        assert_eq!(export["patient"]["notes"], "penicillin allergy");
        assert_eq!(export["appointments"][0]["id"], appointment["id"]);
        assert_eq!(export["consents"][0]["purpose"], "research");
        assert!(!export["sessions"].as_array().unwrap().is_empty(), "{export}");
        let actions: Vec<&str> =
            export["activity"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
        for expected in ["auth.login", "patient.create", "appointment.create", "consent.give"] {
            assert!(actions.contains(&expected), "{engine:?}: {expected} missing from {actions:?}");
        }
        assert_eq!(export["truncated"], false);
        assert!(export["practitioner"].is_null());

        // Another patient's export holds none of it; the practitioner's holds the appointment.
        let (_, other) = c.e.get("/v1/me/export", Some(&c.other_patient)).await;
        let text = other.to_string();
        for secret in ["12345678901", "penicillin", "ayse@example.org", c.patient_record.as_str()] {
            assert!(!text.contains(secret), "{engine:?}: {secret} in another patient's export");
        }
        let (_, doctor) = c.e.get("/v1/me/export", Some(&c.doctor)).await;
        assert_eq!(doctor["practitioner"]["id"], c.doctor_practitioner.as_str());
        assert_eq!(doctor["appointments"][0]["id"], appointment["id"]);
        assert!(audit_has(&c, "me.export", |ev| ev["outcome"] == "success").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_anonymises_a_medical_record_and_deletes_the_rest() {
    for engine in engines() {
        let c = clinic(engine).await;
        // Ayşe had a consultation and has another one booked; John only a booking.
        let held = held_consultation(&c, &c.patient_record).await;
        let (start, end) = slot(30, 30);
        let (_, future) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        let (start, end) = slot(40, 30);
        let (_, johns) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.other_record, "start": start, "end": end})).await;

        // Self-service erasure wants the password again, and only patients have it.
        let (s, body) = c.e.post("/v1/me/erasure", Some(&c.patient), json!({"password": "wrong password here"})).await;
        assert_problem(s, &body, StatusCode::UNAUTHORIZED, "erasure with a wrong password");
        let (s, body) =
            c.e.post("/v1/me/erasure", Some(&c.doctor), json!({"password": "a long enough passphrase"})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner erasing themselves");
        let (s, outcome) =
            c.e.post("/v1/me/erasure", Some(&c.patient), json!({"password": "a long enough passphrase"})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {outcome}");
        assert_eq!(outcome["outcome"], "anonymised", "{outcome}");
        let retain: time::OffsetDateTime = time::OffsetDateTime::parse(
            outcome["retainUntil"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let years = (retain - time::OffsetDateTime::now_utc()).whole_days() / 365;
        assert_eq!(years, 20, "{outcome}: kept 20 years (the default) after the last consultation");

        // The account is gone for sign-in; the record keeps nothing identifying.
        let (s, _) = c.e.get("/v1/me", Some(&c.patient)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{engine:?}: the erased account's session ended");
        let (s, _) = c.e.login("ayse@example.org", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, record) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(record["displayName"], "Anonymised patient", "{record}");
        for field in ["nationalId", "phone", "email", "notes", "birthDate"] {
            assert!(record[field].is_null(), "{engine:?}: {field} kept: {record}");
        }
        let (_, h) = c.e.get(&format!("/v1/appointments/{held}"), Some(&c.admin)).await;
        assert_eq!(h["status"], "fulfilled", "the consultation itself is the retained record");
        let (_, f) = c.e.get(&format!("/v1/appointments/{}", future["id"].as_str().unwrap()), Some(&c.admin)).await;
        assert_eq!(f["status"], "cancelled", "{f}");
        let (s, body) =
            c.e.post(&format!("/v1/patients/{}/erasure", c.patient_record), Some(&c.admin), json!({})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "erasing twice");
        let (s, body) =
            c.e.patch(&format!("/v1/patients/{}", c.patient_record), Some(&c.admin), json!({"phone": "+90 1"})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "rewriting an anonymised record");

        // John had no consultation: an admin erases him and nothing is left.
        let (s, body) = c.e.post(&format!("/v1/patients/{}/erasure", c.other_record), Some(&c.doctor), json!({})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner erasing a patient");
        let (s, outcome) =
            c.e.post(&format!("/v1/patients/{}/erasure", c.other_record), Some(&c.admin), json!({})).await;
        assert_eq!((s, outcome["outcome"].as_str()), (StatusCode::OK, Some("deleted")), "{engine:?}: {outcome}");
        let (s, _) = c.e.get(&format!("/v1/patients/{}", c.other_record), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = c.e.get(&format!("/v1/appointments/{}", johns["id"].as_str().unwrap()), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = c.e.login("john@example.org", "a long enough passphrase").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Both audited; the retention job keeps the anonymised record (20 years to go).
        assert!(
            audit_has(&c, "patient.erase", |ev| ev["target"] == c.patient_record.as_str()
                && ev["outcome"] == "success:anonymised")
            .await
        );
        assert!(
            audit_has(&c, "patient.erase", |ev| ev["target"] == c.other_record.as_str()
                && ev["outcome"] == "success:deleted")
            .await
        );
        let (s, report) = c.e.post("/v1/admin/retention/run", Some(&c.admin), json!({})).await;
        assert_eq!((s, report["patientsPurged"].clone()), (StatusCode::OK, json!([])), "{report}");
        let (s, _) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_job_purges_what_its_period_allows_and_audits_it() {
    for engine in engines() {
        // Medical records kept 0 days after the last consultation: purged once it has ended.
        let c = clinic_with(engine, "[retention]\nmedical-record-days = 0\ninterval-seconds = 3600\n").await;
        held_consultation(&c, &c.patient_record).await;
        let (s, outcome) =
            c.e.post(&format!("/v1/patients/{}/erasure", c.patient_record), Some(&c.admin), json!({})).await;
        assert_eq!((s, outcome["outcome"].as_str()), (StatusCode::OK, Some("anonymised")), "{outcome}");
        let (s, body) = c.e.post("/v1/admin/retention/run", Some(&c.other_patient), json!({})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a patient running retention");
        // Eight minutes later (the test clock) the consultation has ended.
        c.e.control.set_clock(time::Duration::minutes(8));
        let (s, report) = c.e.post("/v1/admin/retention/run", Some(&c.admin), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{report}");
        assert_eq!(report["patientsPurged"], json!([c.patient_record]), "{engine:?}: {report}");
        let (s, _) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{engine:?}: purged");
        let target = format!("patient:{}", c.patient_record);
        assert!(audit_has(&c, "retention.purge", |ev| ev["target"] == target.as_str()).await, "{engine:?}");
        // The purge is in the audit chain, which still verifies.
        let (_, audit) = c.e.get("/v1/audit", Some(&c.admin)).await;
        assert_eq!(audit["chain"]["verified"], true, "{audit}");
        // Nothing left to purge the second time.
        let (_, again) = c.e.post("/v1/admin/retention/run", Some(&c.admin), json!({})).await;
        assert_eq!(again["patientsPurged"], json!([]));
    }
}
