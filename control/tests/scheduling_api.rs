//! The scheduling API over real HTTP on SQLite and PostgreSQL: the 50-way booking race,
//! who may book and read what (refusals audited), idempotent booking, legal and illegal status
//! changes, and patient identifying fields unreadable in the raw database.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::*;
use support::engines;
use support::http::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_over_http_give_exactly_one() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(48, 30);
        let body =
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end});
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (http, url, token, body) =
                    (c.e.http.clone(), c.e.control.url("/v1/appointments"), c.admin.clone(), body.clone());
                tokio::spawn(async move {
                    http.post(url).bearer_auth(token).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let created = statuses.iter().filter(|s| **s == 201).count();
        let conflicts = statuses.iter().filter(|s| **s == 409).count();
        assert_eq!((created, conflicts), (1, 49), "{engine:?}: {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_book_and_read_what() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(24, 30);
        // A patient books for themselves, with an idempotency key; the repeat returns the same.
        let book = |token: &str, patient: &str| {
            let req =
                c.e.http
                    .post(c.e.control.url("/v1/appointments"))
                    .bearer_auth(token.to_string())
                    .header("idempotency-key", "ayse-booking-1");
            req.json(
                &json!({"practitionerId": c.doctor_practitioner, "patientId": patient, "start": start, "end": end}),
            )
            .send()
        };
        let first = book(&c.patient, &c.patient_record).await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED, "{engine:?}");
        let first: Value = first.json().await.unwrap();
        let again = book(&c.patient, &c.patient_record).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["id"], first["id"], "{engine:?}: the repeat is the same booking");
        assert_eq!(first["status"], "booked");
        let id = first["id"].as_str().unwrap().to_string();

        // Booking for someone else, reading someone else's: refused and audited.
        let (s, body) = c.e.post("/v1/appointments", Some(&c.other_patient), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "booking for another patient");
        let (s, body) = c.e.get(&format!("/v1/appointments/{id}"), Some(&c.other_patient)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "reading another patient's appointment");
        let (s, body) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.other_patient)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "reading another patient's record");
        let (_, audit) = c.e.get("/v1/audit?action=patient.read", Some(&c.admin)).await;
        assert!(
            audit["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|ev| ev["outcome"] == "denied" && ev["target"] == c.patient_record.as_str()),
            "{engine:?}: {audit}"
        );

        // The patient's own and their practitioner's views; lists are scoped.
        assert_eq!(c.e.get(&format!("/v1/appointments/{id}"), Some(&c.patient)).await.0, StatusCode::OK);
        assert_eq!(c.e.get(&format!("/v1/appointments/{id}"), Some(&c.doctor)).await.0, StatusCode::OK);
        let (s, record) = c.e.get(&format!("/v1/patients/{}", c.patient_record), Some(&c.doctor)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: a practitioner with an appointment sees the patient");
        assert_eq!(
            (record["phone"].as_str(), record["notes"].as_str()),
            (Some("+90 532 111 22 33"), Some("penicillin allergy"))
        );
        let (s, body) = c.e.get(&format!("/v1/patients/{}", c.other_record), Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner without an appointment");
        let (_, mine) = c.e.get("/v1/appointments", Some(&c.other_patient)).await;
        assert_eq!(mine.as_array().unwrap().len(), 0, "{engine:?}: lists are scoped to the caller");
        let (_, all) = c.e.get(&format!("/v1/appointments?patient={}", c.patient_record), Some(&c.admin)).await;
        assert_eq!(all.as_array().unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_legal_status_changes_pass() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(30, 30);
        let (_, a) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        let id = a["id"].as_str().unwrap();
        let (s, body) = act(&c, id, &c.doctor, "complete", json!({})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "booked cannot be completed");
        let (s, body) = act(&c, id, &c.patient, "check-in", json!({})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "check-in is the clinic's");
        let (s, body) = act(&c, id, &c.patient, "cancel", json!({})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "a cancellation needs a reason");
        assert_eq!(act(&c, id, &c.patient, "arrive", json!({})).await.0, StatusCode::OK);
        assert_eq!(act(&c, id, &c.doctor, "check-in", json!({})).await.1["status"], "checked-in");
        let (s, done) = act(&c, id, &c.doctor, "complete", json!({})).await;
        assert_eq!((s, done["status"].as_str()), (StatusCode::OK, Some("fulfilled")), "{engine:?}");
        let (s, body) = act(&c, id, &c.patient, "cancel", json!({"reason": "too late"})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "fulfilled cannot be cancelled");
        let (s, body) = act(&c, id, &c.admin, "teleport", json!({})).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "unknown action");

        // Reschedule into an occupied slot: 409 from the schema; into a free one: 200.
        let (s1, e1) = slot(40, 30);
        let (s2, e2) = slot(41, 30);
        let (_, x) =
            c.e.post(
                "/v1/appointments",
                Some(&c.admin),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": s1, "end": e1}),
            )
            .await;
        let (_, y) =
            c.e.post(
                "/v1/appointments",
                Some(&c.admin),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.other_record, "start": s2, "end": e2}),
            )
            .await;
        let (s, body) =
            c.e.post(
                &format!("/v1/appointments/{}/reschedule", y["id"].as_str().unwrap()),
                Some(&c.admin),
                json!({"start": s1, "end": e1}),
            )
            .await;
        assert_problem(s, &body, StatusCode::CONFLICT, "rescheduling onto a booked slot");
        let (s3, e3) = slot(42, 30);
        let (s, moved) =
            c.e.post(
                &format!("/v1/appointments/{}/reschedule", x["id"].as_str().unwrap()),
                Some(&c.patient),
                json!({"start": s3, "end": e3}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {moved}");
        assert_eq!(moved["start"].as_str().unwrap(), s3);
        let (s, body) =
            c.e.post(
                "/v1/appointments",
                Some(&c.admin),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": e3, "end": s3}),
            )
            .await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "end before start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifying_fields_are_unreadable_in_the_database() {
    use sqlx::{Connection, Row};
    for engine in engines() {
        let c = clinic(engine).await;
        let url = &c.e.control.database_url;
        let columns = "national_id_enc, phone_enc, email_enc, notes_enc, national_id_index, phone_index, email_index";
        let values: Vec<Option<String>> = match engine {
            support::Engine::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                let row = sqlx::query(&format!("SELECT {columns} FROM patients WHERE display_name = 'Ayşe Yılmaz'"))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                (0..7).map(|i| row.get(i)).collect()
            }
            support::Engine::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let row = sqlx::query(&format!("SELECT {columns} FROM patients WHERE display_name = 'Ayşe Yılmaz'"))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                (0..7).map(|i| row.get(i)).collect()
            }
        };
        let raw = values.iter().flatten().cloned().collect::<Vec<_>>().join(" ");
        assert_eq!(values.iter().flatten().count(), 7, "{engine:?}: every field stored, encrypted or indexed");
        // Whole values and their normalised forms only: a short fragment such as "532" turns up
        // by chance in hex indexes and base64 ciphertext.
        for secret in ["12345678901", "+90 532 111 22 33", "905321112233", "ayse@example.org", "penicillin", "allergy"]
        {
            assert!(!raw.contains(secret), "{engine:?}: {secret:?} readable in the database: {raw}");
        }
        assert!(values[0].as_deref().unwrap().starts_with("v1:"), "{engine:?}: versioned ciphertext");
    }
}

/// Availability over HTTP across both 2027 US daylight-saving changes, minus a booking and a
/// leave, computed in the practitioner's zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_across_daylight_saving_changes() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (s, p) =
            c.e.post(
                "/v1/practitioners",
                Some(&c.admin),
                json!({"displayName": "Dr. Night Shift", "specialty": "psychiatry", "timeZone": "America/New_York"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let put = |token: String, body: Value| {
            let url = c.e.control.url(&format!("/v1/practitioners/{id}/availability"));
            c.e.http.put(url).bearer_auth(token).json(&body).send()
        };
        let rules = json!({"rules": [{"weekday": "sunday", "from": "01:00", "to": "04:00", "slotMinutes": 30}]});
        assert_eq!(put(c.patient.clone(), rules.clone()).await.unwrap().status(), StatusCode::FORBIDDEN);
        let bad = put(
            c.admin.clone(),
            json!({"rules": [{"weekday": "sunday", "from": "04:00", "to": "01:00", "slotMinutes": 30}]}),
        )
        .await
        .unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY, "{engine:?}: an empty rule");
        assert_eq!(put(c.admin.clone(), rules.clone()).await.unwrap().status(), StatusCode::OK);
        let slots = |from: &'static str, to: &'static str| {
            let path = format!("/v1/availability?practitioner={id}&from={from}&to={to}");
            let (e, token) = (&c.e, c.patient.clone());
            async move {
                let (s, body) = e.get(&path, Some(&token)).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                body["slots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["start"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            }
        };
        // Spring forward: 02:00-03:00 does not exist; 01:00, 01:30 EST and 03:00, 03:30 EDT.
        let spring = slots("2027-03-14T00:00:00Z", "2027-03-15T00:00:00Z").await;
        assert_eq!(
            spring,
            ["2027-03-14T06:00:00Z", "2027-03-14T06:30:00Z", "2027-03-14T07:00:00Z", "2027-03-14T07:30:00Z"],
            "{engine:?}"
        );
        // Fall back: 01:00-02:00 happens twice, so four real hours: eight slots.
        let autumn = slots("2027-11-07T00:00:00Z", "2027-11-08T00:00:00Z").await;
        assert_eq!(autumn.len(), 8, "{engine:?}: {autumn:?}");
        assert_eq!((autumn[0].as_str(), autumn[7].as_str()), ("2027-11-07T05:00:00Z", "2027-11-07T08:30:00Z"));
        // A booking and a leave take slots away.
        let (s, body) = c
            .e
            .post("/v1/appointments", Some(&c.admin), json!({"practitionerId": id, "patientId": c.patient_record, "start": "2027-03-14T07:00:00Z", "end": "2027-03-14T07:30:00Z"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let with_leave = json!({"rules": rules["rules"], "exceptions": [{"kind": "unavailable", "from": "2027-03-14T06:00:00Z", "to": "2027-03-14T06:30:00Z"}]});
        assert_eq!(put(c.admin.clone(), with_leave).await.unwrap().status(), StatusCode::OK);
        let left = slots("2027-03-14T00:00:00Z", "2027-03-15T00:00:00Z").await;
        assert_eq!(left, ["2027-03-14T06:30:00Z", "2027-03-14T07:30:00Z"], "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consultation_session_only_for_participants_inside_the_window() {
    for engine in engines() {
        let c = clinic(engine).await;
        let f = &time::format_description::well_known::Rfc3339;
        let soon = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::minutes(5);
        let (start, end) = (soon.format(f).unwrap(), (soon + time::Duration::minutes(20)).format(f).unwrap());
        let (_, a) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        let id = a["id"].as_str().unwrap();
        let path = format!("/v1/appointments/{id}/session");
        for (token, role) in [(&c.patient, "patient"), (&c.doctor, "practitioner")] {
            let (s, session) = c.e.post(&path, Some(token), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{engine:?}: {session}");
            assert_eq!(session["role"], role);
            assert_eq!(session["signaling"]["room"], format!("appointment:{id}"));
            // The credential ends with the window: 5 + 20 + 30 minutes from now, give or take.
            let ttl = session["ice"]["ttl"].as_u64().unwrap();
            assert!((55 * 60 - 30..=55 * 60 + 5).contains(&ttl), "{engine:?}: ttl {ttl}");
            assert_eq!(session["ice"]["expiresAt"], session["closesAt"]);
        }
        for (token, who) in [(&c.other_patient, "another patient"), (&c.admin, "an admin")] {
            let (s, body) = c.e.post(&path, Some(token), json!({})).await;
            assert_problem(s, &body, StatusCode::FORBIDDEN, who);
        }
        // Tomorrow's appointment: the room is not open yet, and the answer says when it opens.
        let (start, end) = slot(24, 30);
        let (_, later) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        let (s, body) = c
            .e
            .post(&format!("/v1/appointments/{}/session", later["id"].as_str().unwrap()), Some(&c.patient), json!({}))
            .await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "too early");
        assert!(body["detail"].as_str().unwrap().contains("opens at"), "{body}");
        let (_, audit) = c.e.get("/v1/audit?action=consultation.session", Some(&c.admin)).await;
        let outcomes: Vec<&str> =
            audit["events"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
        assert!(
            outcomes.contains(&"denied") && outcomes.contains(&"refused:too-early") && outcomes.contains(&"success"),
            "{engine:?}: {outcomes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_marks_no_shows_and_leaves_arrivals_alone() {
    for engine in engines() {
        let c = clinic_with(engine, "[scheduling]\nno-show-grace-minutes = 1\nsweep-interval-seconds = 1\n").await;
        let f = &time::format_description::well_known::Rfc3339;
        let began = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::minutes(4);
        let (_, other_doctor) =
            c.e.post(
                "/v1/practitioners",
                Some(&c.admin),
                json!({"displayName": "Dr. Second", "specialty": "gp", "timeZone": "Europe/Istanbul"}),
            )
            .await;
        let book = |practitioner: String, patient: String| {
            let body = json!({"practitionerId": practitioner, "patientId": patient, "start": began.format(f).unwrap(), "end": (began + time::Duration::minutes(10)).format(f).unwrap()});
            c.e.post("/v1/appointments", Some(&c.admin), body)
        };
        let (_, missed) = book(c.doctor_practitioner.clone(), c.patient_record.clone()).await;
        let (_, arrived) = book(other_doctor["id"].as_str().unwrap().to_string(), c.other_record.clone()).await;
        let arrived_id = arrived["id"].as_str().unwrap();
        assert_eq!(
            c.e.post(&format!("/v1/appointments/{arrived_id}/arrive"), Some(&c.admin), json!({})).await.0,
            StatusCode::OK
        );
        let missed_id = missed["id"].as_str().unwrap();
        let mut status = Value::Null;
        for _ in 0..50 {
            status = c.e.get(&format!("/v1/appointments/{missed_id}"), Some(&c.admin)).await.1["status"].clone();
            if status == "noshow" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, "noshow", "{engine:?}");
        assert_eq!(c.e.get(&format!("/v1/appointments/{arrived_id}"), Some(&c.admin)).await.1["status"], "arrived");
        let (_, audit) = c.e.get("/v1/audit?action=appointment.no-show", Some(&c.admin)).await;
        assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{engine:?}: {audit}");
        assert_eq!(audit["events"][0]["target"], missed_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_are_corrected_and_found_by_blind_index_within_scope() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (s, list) = c.e.get("/v1/practitioners?specialty=Cardiology", Some(&c.patient)).await;
        assert_eq!((s, list.as_array().unwrap().len()), (StatusCode::OK, 1), "{engine:?}: {list}");
        let (_, none) = c.e.get("/v1/practitioners?specialty=dermatology", Some(&c.patient)).await;
        assert_eq!(none, json!([]));
        let (s, body) = c.e.get("/v1/practitioners?limit=0", Some(&c.patient)).await;
        assert_problem(s, &body, StatusCode::BAD_REQUEST, "limit 0");

        // Equality search goes through the blind index: normalised, exact, never a prefix.
        let (s, found) = c.e.get("/v1/patients?email=AYSE@example.org", Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK, "{found}");
        assert_eq!(found.as_array().unwrap().len(), 1, "{engine:?}: {found}");
        assert_eq!(found[0]["id"], c.patient_record.as_str());
        let (_, found) = c.e.get("/v1/patients?nationalId=12345678901", Some(&c.admin)).await;
        assert_eq!(found[0]["id"], c.patient_record.as_str());
        let (_, partial) = c.e.get("/v1/patients?nationalId=1234567890", Some(&c.admin)).await;
        assert_eq!(partial, json!([]), "no prefix matches through a blind index");

        // Scope: a practitioner sees only patients with an appointment with them; a patient
        // only themselves.
        let (_, mine) = c.e.get("/v1/patients", Some(&c.doctor)).await;
        assert_eq!(mine, json!([]), "{engine:?}: no appointments yet");
        let (start, end) = slot(30, 30);
        c.e.post(
            "/v1/appointments",
            Some(&c.admin),
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.other_record, "start": start, "end": end}),
        )
        .await;
        let (_, mine) = c.e.get("/v1/patients", Some(&c.doctor)).await;
        let ids: Vec<&str> = mine.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [c.other_record.as_str()], "{engine:?}");
        let (_, own) = c.e.get("/v1/patients", Some(&c.patient)).await;
        let ids: Vec<&str> = own.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [c.patient_record.as_str()]);

        // Rectification: the patient corrects their phone and removes their notes; the old
        // phone no longer finds them, the new one does. Others may not.
        let path = format!("/v1/patients/{}", c.patient_record);
        let (s, updated) = c.e.patch(&path, Some(&c.patient), json!({"phone": "+90 555 000 11 22", "notes": ""})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {updated}");
        assert_eq!((updated["phone"].as_str(), updated["notes"].is_null()), (Some("+90 555 000 11 22"), true));
        let (_, old) = c.e.get("/v1/patients?phone=%2B90%20532%20111%2022%2033", Some(&c.admin)).await;
        assert_eq!(old, json!([]));
        let (_, new) = c.e.get("/v1/patients?phone=%2B90%20555%20000%2011%2022", Some(&c.admin)).await;
        assert_eq!(new[0]["id"], c.patient_record.as_str());
        let (s, body) = c.e.patch(&path, Some(&c.other_patient), json!({"phone": "+1 555"})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "another patient correcting the record");
        let (s, body) = c.e.patch(&path, Some(&c.doctor), json!({"phone": "+1 555"})).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner without an appointment with her");
        let (s, body) = c.e.patch(&path, Some(&c.patient), json!({"birthDate": "2999-01-01"})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "a birth date in the future");
        let (s, body) = c.e.patch(&path, Some(&c.patient), json!({"shoeSize": 38})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "an unknown field");
        let (_, audit) = c.e.get("/v1/audit?action=patient.update", Some(&c.admin)).await;
        let outcomes: Vec<&str> =
            audit["events"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
        assert!(outcomes.contains(&"success") && outcomes.contains(&"denied"), "{engine:?}: {outcomes:?}");
    }
}
