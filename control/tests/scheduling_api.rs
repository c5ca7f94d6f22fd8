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
        let soon = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
            + time::Duration::minutes(5);
        let (start, end) = (soon.format(f).unwrap(), (soon + time::Duration::minutes(20)).format(f).unwrap());
        let (_, a) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end})).await;
        let id = a["id"].as_str().unwrap();
        let path = format!("/v1/appointments/{id}/session");
        for (token, role) in [(&c.patient, "patient"), (&c.doctor, "practitioner")] {
            let (s, session) = c.e.post(&path, Some(token), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{engine:?}: {session}");
            assert_eq!(session["role"], role);
            assert_eq!(session["signaling"]["room"], format!("appointment:{id}"));
            // The credential ends with the window: the end (5 + 20 minutes from the minute
            // the booking was made in) plus 30 minutes, give or take.
            let ttl = session["ice"]["ttl"].as_u64().unwrap() as i64;
            let expected = (soon + time::Duration::minutes(50) - time::OffsetDateTime::now_utc()).whole_seconds();
            assert!((expected - 30..=expected + 5).contains(&ttl), "{engine:?}: ttl {ttl}, expected {expected}");
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
        // Booked for ten minutes ahead; the test clock then moves past the start and the grace.
        let began = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
            + time::Duration::minutes(10);
        let (_, other_doctor) =
            c.e.post(
                "/v1/practitioners",
                Some(&c.admin),
                json!({"displayName": "Dr. Second", "specialty": "gp", "timeZone": "Europe/Istanbul"}),
            )
            .await;
        open_all_hours(&c.e, &c.admin, other_doctor["id"].as_str().unwrap()).await;
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
        c.e.control.set_clock(time::Duration::minutes(12));
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

/// Security issue 18, item 4: a write of health data and its audit event commit in one
/// transaction. A trigger makes the audit append fail inside the database; the write must
/// then leave nothing behind, the idempotent retry must not answer 200, and once appends work
/// again the chain is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_write_whose_audit_event_fails_leaves_nothing() {
    for engine in engines() {
        let c = clinic(engine).await;
        let (start, end) = slot(24, 30);
        let (s, first) = c
            .e
            .post(
                "/v1/appointments",
                Some(&c.patient),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {first}");
        let first_id = first["id"].as_str().unwrap().to_string();
        refuse_audit(&c, &["appointment.create", "appointment.cancel", "patient.update"]).await;

        // A booking whose event cannot be written is not made, and its retry is not a 200.
        let (start2, end2) = slot(30, 30);
        let book = || async {
            let res = c
                .e
                .http
                .post(c.e.control.url("/v1/appointments"))
                .bearer_auth(&c.patient)
                .header("idempotency-key", "unaudited-1")
                .json(&json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start2, "end": end2}))
                .send()
                .await
                .unwrap();
            res.status()
        };
        assert_eq!(book().await, StatusCode::INTERNAL_SERVER_ERROR, "{engine:?}");
        assert_eq!(book().await, StatusCode::INTERNAL_SERVER_ERROR, "{engine:?}: the retry finds no unaudited booking");
        assert_eq!(
            query_i64(&c, "SELECT COUNT(*) FROM appointments").await,
            1,
            "{engine:?}: the unaudited booking was rolled back"
        );

        // A cancellation and a record correction likewise.
        let (s, _) = act(&c, &first_id, &c.patient, "cancel", json!({"reason": "cannot come"})).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{engine:?}");
        let (_, still) = c.e.get(&format!("/v1/appointments/{first_id}"), Some(&c.admin)).await;
        assert_eq!(still["status"], "booked", "{engine:?}: the unaudited cancellation was rolled back");
        let record = format!("/v1/patients/{}", c.patient_record);
        let (s, _) = c.e.patch(&record, Some(&c.patient), json!({"phone": "+90 555 000 00 00"})).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{engine:?}");
        let (_, unchanged) = c.e.get(&record, Some(&c.admin)).await;
        assert_eq!(unchanged["phone"], "+90 532 111 22 33", "{engine:?}: the unaudited correction was rolled back");

        // Appends work again: the retry books, audited, and the chain is whole.
        allow_audit(&c).await;
        assert_eq!(book().await, StatusCode::CREATED, "{engine:?}");
        let (_, audit) = c.e.get("/v1/audit?action=appointment.create&limit=1000", Some(&c.admin)).await;
        let ids: Vec<String> = query_ids(&c).await;
        for id in &ids {
            assert!(
                audit["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["target"] == id.as_str() && e["outcome"] == "success"),
                "{engine:?}: booking {id} has no audit event: {audit}"
            );
        }
        assert_eq!(ids.len(), 2, "{engine:?}");
        assert_eq!(audit["chain"]["verified"], true, "{engine:?}: {audit}");
    }
}

async fn query_ids(c: &Clinic) -> Vec<String> {
    let (_, all) = c.e.get("/v1/appointments?limit=500", Some(&c.admin)).await;
    all.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

/// Security issue 18, item 3: booking a patient onto one's own calendar (and cancelling) does
/// not open her record; the patient's booking or confirmation does, within the window; the
/// national-id search and FHIR follow the same rule; emergency access needs a reason and is
/// audited and flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practitioner_reads_only_records_of_patients_in_a_care_relationship() {
    for engine in engines() {
        let mut c = clinic(engine).await;
        let record = format!("/v1/patients/{}", c.patient_record);
        let by_national_id = "/v1/patients?nationalId=12345678901";

        // The attack: the practitioner books Ayşe on his own calendar, cancels, and reads.
        let (start, end) = slot(24, 30);
        let (s, own) = c
            .e
            .post(
                "/v1/appointments",
                Some(&c.doctor),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {own}");
        let own_id = own["id"].as_str().unwrap().to_string();
        let (s, body) = c.e.get(&record, Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a booking the practitioner made alone");
        let (_, found) = c.e.get(by_national_id, Some(&c.doctor)).await;
        assert_eq!(found, json!([]), "{engine:?}: the national-id search finds only related patients");
        let (s, _) =
            c.e.http
                .get(c.e.control.url(&format!("/fhir/R4/Patient/{}", c.patient_record)))
                .bearer_auth(&c.doctor)
                .send()
                .await
                .map(|r| (r.status(), ()))
                .unwrap();
        assert_eq!(s, StatusCode::FORBIDDEN, "{engine:?}: FHIR follows the same rule");
        let (s, _) = act(&c, &own_id, &c.doctor, "cancel", json!({"reason": "changed my mind"})).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = c.e.get(&record, Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "after cancelling");

        // The patient confirms a booking made for her: now the practitioner may read.
        let (start, end) = slot(48, 30);
        let (_, proposed) = c
            .e
            .post(
                "/v1/appointments",
                Some(&c.doctor),
                json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}),
            )
            .await;
        let proposed_id = proposed["id"].as_str().unwrap().to_string();
        assert_eq!(c.e.get(&record, Some(&c.doctor)).await.0, StatusCode::FORBIDDEN, "{engine:?}");
        let (s, confirmed) = act(&c, &proposed_id, &c.patient, "confirm", json!({})).await;
        assert_eq!((s, confirmed["status"].as_str()), (StatusCode::OK, Some("booked")), "{engine:?}: {confirmed}");
        let (s, seen) = c.e.get(&record, Some(&c.doctor)).await;
        assert_eq!((s, seen["notes"].as_str()), (StatusCode::OK, Some("penicillin allergy")), "{engine:?}");
        let (_, found) = c.e.get(by_national_id, Some(&c.doctor)).await;
        assert_eq!(found.as_array().map(Vec::len), Some(1), "{engine:?}: {found}");

        // The window: 30 days (the default) after the appointment's end, then no more.
        // 120 days later (the test clock); today's login sessions have expired by then.
        c.e.control.set_clock(time::Duration::days(120));
        c.doctor = c.e.login("dr.kaya@hospital.test", "a long enough passphrase").await.1["accessToken"]
            .as_str()
            .unwrap()
            .to_string();
        c.admin = c.e.admin().await;
        let (s, body) = c.e.get(&record, Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a relationship past its window");

        // Break the glass: a reason of at least 20 characters, audited and flagged.
        let emergency = |reason: &'static str| {
            c.e.http.get(c.e.control.url(&record)).bearer_auth(&c.doctor).header("break-glass-reason", reason).send()
        };
        let res = emergency("urgent").await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "a reason too short");
        assert_eq!(body["errors"][0]["field"], "Break-Glass-Reason", "{body}");
        let res = emergency("unconscious in the emergency room, allergies needed").await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{engine:?}");
        let (_, flagged) = c.e.get("/v1/audit?action=patient.read.emergency", Some(&c.admin)).await;
        let events = flagged["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{engine:?}: {flagged}");
        assert!(
            events[0]["target"].as_str().unwrap().contains("unconscious in the emergency room"),
            "{engine:?}: the reason is in the audit trail: {flagged}"
        );
        let (_, denied) = c.e.get("/v1/audit?action=patient.read", Some(&c.admin)).await;
        let refusals = denied["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["outcome"] == "denied" && e["target"] == c.patient_record.as_str())
            .count();
        assert!(refusals >= 4, "{engine:?}: every refusal is audited: {denied}");
    }
}

/// Security issue 18, item 2: the limits on saved availability, and the worst slot search the
/// API allows answered within a stated budget: at most 1000 slots per page, under 5 s, and
/// the server's peak memory growing by at most 64 MiB (docs/scheduling-api.md, "Limits"). The
/// old code accepted 867 rules and answered a 61-day search with a million slots and 6.6 GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worst_slot_search_stays_within_its_budget() {
    const BUDGET_KIB: i64 = 64 * 1024;
    for engine in engines() {
        let c = clinic(engine).await;
        let path = format!("/v1/practitioners/{}/availability", c.doctor_practitioner);
        let days = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
        // Eight rules per weekday over the whole day, each on its own minute grid, 10-minute slots.
        let rules = |per_day: usize, minutes: u32| -> Vec<Value> {
            days.iter()
                .flat_map(|d| {
                    (0..per_day).map(move |k| {
                        json!({"weekday": d, "from": format!("00:{k:02}"), "to": "23:59", "slotMinutes": minutes})
                    })
                })
                .collect()
        };
        let (s, body) = c.e.put(&path, Some(&c.doctor), json!({"rules": rules(9, 10)})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "63 rules");
        assert_eq!(body["errors"][0]["field"], "rules", "{body}");
        let (s, body) = c.e.put(&path, Some(&c.doctor), json!({"rules": rules(1, 5)})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "5-minute slots");
        assert_eq!(body["errors"][0]["field"], "rules[0].slotMinutes", "{body}");

        // The worst pattern allowed: 56 rules and 200 extra-hours exceptions over the range.
        let from = time::OffsetDateTime::now_utc().date() + time::Duration::days(2);
        let to = from + time::Duration::days(62);
        let extra: Vec<Value> = (0..200)
            .map(|k| {
                json!({"kind": "extraHours", "from": format!("{from}T00:00:{:02}Z", k % 60), "to": format!("{to}T00:00:00Z"),
                       "slotMinutes": 10 + k / 60})
            })
            .collect();
        let (s, body) = c.e.put(&path, Some(&c.doctor), json!({"rules": rules(8, 10), "exceptions": extra})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");

        let pid = c.e.control.pid();
        let status_kib = |field: &str| -> i64 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let line = status.lines().find(|l| l.starts_with(field)).unwrap().to_string();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        let before = status_kib("VmHWM:");
        let begun = std::time::Instant::now();
        let fhir = format!(
            "/fhir/R4/Slot?schedule=Schedule/{}&start=ge{from}&start=lt{to}&_count=1000",
            c.doctor_practitioner
        );
        let (s, bundle) = c.e.get(&fhir, Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {bundle}");
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1000, "{engine:?}: one page");
        let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(next.starts_with(&c.e.control.base), "{engine:?}: {next}");
        let (s, page2) = c.e.get(&next[c.e.control.base.len()..], Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {page2}");
        let last = entries.last().unwrap()["resource"]["start"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        let first2 = page2["entry"][0]["resource"]["start"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
        assert!(first2 >= last, "{engine:?}: the next page continues after the first");
        // The same range through the JSON API, last page's worth near the range's end too.
        let rest = format!(
            "/v1/availability?practitioner={}&from={from}T00:00:00Z&to={to}T00:00:00Z&limit=1000",
            c.doctor_practitioner
        );
        let (s, view) = c.e.get(&rest, Some(&c.patient)).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {view}");
        assert_eq!(view["slots"].as_array().unwrap().len(), 1000);
        assert!(view["nextCursor"].is_string(), "{engine:?}");
        let late = format!(
            "/v1/availability?practitioner={}&from={}T00:00:00Z&to={to}T00:00:00Z&limit=1000",
            c.doctor_practitioner,
            to - time::Duration::days(1)
        );
        assert_eq!(c.e.get(&late, Some(&c.patient)).await.0, StatusCode::OK);
        let elapsed = begun.elapsed();
        let growth = status_kib("VmHWM:") - before;
        eprintln!(
            "{engine:?}: worst slot searches: {elapsed:?}, peak memory growth {growth} KiB (budget {BUDGET_KIB} KiB), VmRSS {} KiB",
            status_kib("VmRSS:")
        );
        assert!(elapsed < std::time::Duration::from_secs(20), "{engine:?}: took {elapsed:?}");
        assert!(growth <= BUDGET_KIB, "{engine:?}: peak memory grew by {growth} KiB, over {BUDGET_KIB} KiB");
    }
}
