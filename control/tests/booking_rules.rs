//! Bookable slots only, over real HTTP on SQLite and PostgreSQL: a booking must be slots of
//! the practitioner's availability (daylight-saving days in the practitioner's zone included),
//! start between the practice's lead time and horizon, and stay race-free; a rescheduling moves
//! an appointment atomically under the same rules; patients cannot cancel or move inside the
//! cancellation window while staff can; staff proposals and requests become booked on `confirm`.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::clinic::*;
use support::engines;
use support::http::*;

/// The practice's rules of these tests: a booking at least an hour and at most 400 days ahead,
/// no patient cancellation in the last 24 hours.
const RULES: &str = "[scheduling]\nmin-lead-minutes = 60\nmax-horizon-days = 400\npatient-cancel-window-hours = 24\n";

fn assert_refused(status: StatusCode, body: &Value, rule: &str, context: &str) {
    assert_problem(status, body, StatusCode::UNPROCESSABLE_ENTITY, context);
    assert_eq!(body["type"], format!("/problems/{rule}"), "{context}: {body}");
}

/// Dr. Night Shift in America/New_York, working Sundays 01:00-04:00 local time in 30-minute
/// slots; returns the practitioner's id.
async fn night_shift(c: &Clinic) -> String {
    let (s, p) =
        c.e.post(
            "/v1/practitioners",
            Some(&c.admin),
            json!({"displayName": "Dr. Night Shift", "specialty": "psychiatry", "timeZone": "America/New_York"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let rules = json!({"rules": [{"weekday": "sunday", "from": "01:00", "to": "04:00", "slotMinutes": 30}]});
    let (s, body) = c.e.put(&format!("/v1/practitioners/{id}/availability"), Some(&c.admin), rules).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    id
}

async fn book(c: &Clinic, token: &str, practitioner: &str, start: &str, end: &str) -> (StatusCode, Value) {
    c.e.post(
        "/v1/appointments",
        Some(token),
        json!({"practitionerId": practitioner, "patientId": c.patient_record, "start": start, "end": end}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_must_be_slots_of_the_availability_across_daylight_saving_changes() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let id = night_shift(&c).await;
        let refused = [
            ("2027-03-14T05:00:00Z", "2027-03-14T05:30:00Z", "00:00 EST, before the working hours"),
            ("2027-03-15T06:00:00Z", "2027-03-15T06:30:00Z", "a Monday"),
            ("2027-03-14T06:10:00Z", "2027-03-14T06:40:00Z", "off the slot boundaries"),
            ("2027-03-14T06:00:00Z", "2027-03-14T06:15:00Z", "half a slot"),
            ("2027-03-14T07:30:00Z", "2027-03-14T08:30:00Z", "running past 04:00 EDT"),
        ];
        for (start, end, what) in refused {
            let (s, body) = book(&c, &c.patient, &id, start, end).await;
            assert_refused(s, &body, "booking-outside-availability", &format!("{engine:?}: {what}"));
            assert!(body["detail"].as_str().unwrap().contains(start), "{engine:?}: {body}");
        }
        // Spring forward: 01:30 EST to 03:30 EDT is two consecutive slots across the gap,
        // one real hour.
        let (s, body) = book(&c, &c.patient, &id, "2027-03-14T06:30:00Z", "2027-03-14T07:30:00Z").await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");
        // Fall back: 01:00 happens twice; the second (06:00Z, EST) is a slot of its own.
        let (s, body) = book(&c, &c.patient, &id, "2027-11-07T06:00:00Z", "2027-11-07T06:30:00Z").await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");
        // A slot taken is a 409 as before, not a refusal of the time.
        let (s, body) = book(&c, &c.admin, &id, "2027-11-07T06:00:00Z", "2027-11-07T06:30:00Z").await;
        assert_problem(s, &body, StatusCode::CONFLICT, "taken");
        // Nothing refused was stored.
        let (_, list) = c.e.get(&format!("/v1/appointments?practitioner={id}"), Some(&c.admin)).await;
        assert_eq!(list.as_array().unwrap().len(), 2, "{engine:?}: {list}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_respect_the_lead_time_and_the_horizon() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let (start, end) = slot(0, 30);
        let (s, body) = book(&c, &c.patient, &c.doctor_practitioner, &start, &end).await;
        assert_refused(s, &body, "booking-lead-time", &format!("{engine:?}: now"));
        assert!(
            body["detail"].as_str().unwrap().ends_with("this practice books at least 60 minutes ahead"),
            "{engine:?}: {body}"
        );
        let (start, end) = slot(401 * 24, 30);
        let (s, body) = book(&c, &c.admin, &c.doctor_practitioner, &start, &end).await;
        assert_refused(s, &body, "booking-horizon", &format!("{engine:?}: in 401 days"));
        assert!(body["detail"].as_str().unwrap().contains("at most 400 days ahead"), "{engine:?}: {body}");
        let (start, end) = slot(2, 30);
        assert_eq!(book(&c, &c.patient, &c.doctor_practitioner, &start, &end).await.0, StatusCode::CREATED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn double_booking_of_an_available_slot_is_refused_under_concurrency() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let id = night_shift(&c).await;
        let body = json!({"practitionerId": id, "patientId": c.patient_record, "start": "2027-03-14T06:00:00Z", "end": "2027-03-14T06:30:00Z"});
        let tasks: Vec<_> = (0..20)
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
        statuses.sort_unstable();
        assert_eq!((statuses[0], statuses[1], statuses[19]), (201, 409, 409), "{engine:?}: {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rescheduling_moves_atomically_under_the_same_rules() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let id = night_shift(&c).await;
        let (_, first) = book(&c, &c.admin, &id, "2027-03-14T06:00:00Z", "2027-03-14T06:30:00Z").await;
        let (_, second) = book(&c, &c.admin, &id, "2027-03-14T06:30:00Z", "2027-03-14T07:00:00Z").await;
        let (first, second) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
        // The same rules as a booking.
        let (s, body) = act(
            &c,
            first,
            &c.admin,
            "reschedule",
            json!({"start": "2027-03-14T05:00:00Z", "end": "2027-03-14T05:30:00Z"}),
        )
        .await;
        assert_refused(s, &body, "booking-outside-availability", &format!("{engine:?}: before the hours"));
        let (start, end) = slot(0, 30);
        let (s, body) = act(&c, first, &c.admin, "reschedule", json!({"start": start, "end": end})).await;
        assert_refused(s, &body, "booking-lead-time", &format!("{engine:?}: now"));
        // Both race for 07:00Z (03:00 EDT): exactly one moves, the other keeps its time.
        let target = json!({"start": "2027-03-14T07:00:00Z", "end": "2027-03-14T07:30:00Z"});
        let tasks: Vec<_> = [first, second]
            .into_iter()
            .map(|appointment| {
                let url = c.e.control.url(&format!("/v1/appointments/{appointment}/reschedule"));
                let (http, token, body) = (c.e.http.clone(), c.admin.clone(), target.clone());
                tokio::spawn(async move {
                    http.post(url).bearer_auth(token).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [200, 409], "{engine:?}: {statuses:?}");
        let (moved, stayed, old_start) = if statuses[0] == 200 {
            (first, second, "2027-03-14T06:00:00Z")
        } else {
            (second, first, "2027-03-14T06:30:00Z")
        };
        let (_, m) = c.e.get(&format!("/v1/appointments/{moved}"), Some(&c.admin)).await;
        assert_eq!(m["start"], "2027-03-14T07:00:00Z", "{engine:?}");
        let (_, st) = c.e.get(&format!("/v1/appointments/{stayed}"), Some(&c.admin)).await;
        assert_ne!(st["start"], "2027-03-14T07:00:00Z", "{engine:?}: the loser keeps its time");
        // The winner's old time is free again, in the availability and for a booking.
        let (_, free) =
            c.e.get(
                &format!("/v1/availability?practitioner={id}&from=2027-03-14T00:00:00Z&to=2027-03-15T00:00:00Z"),
                Some(&c.patient),
            )
            .await;
        let starts: Vec<&str> =
            free["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap()).collect();
        assert_eq!(starts, [old_start, "2027-03-14T07:30:00Z"], "{engine:?}");
        let end = if old_start.ends_with("06:00:00Z") { "2027-03-14T06:30:00Z" } else { "2027-03-14T07:00:00Z" };
        assert_eq!(book(&c, &c.patient, &id, old_start, end).await.0, StatusCode::CREATED, "{engine:?}");
        let (_, audit) = c.e.get("/v1/audit?action=appointment.reschedule", Some(&c.admin)).await;
        let targets: Vec<&str> =
            audit["events"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
        assert_eq!(targets, [moved], "{engine:?}: only the move that happened is audited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_cannot_cancel_or_reschedule_inside_the_window_but_staff_can() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let (start, end) = slot(12, 30);
        let (_, soon) = book(&c, &c.patient, &c.doctor_practitioner, &start, &end).await;
        let soon = soon["id"].as_str().unwrap();
        let (s, body) = act(&c, soon, &c.patient, "cancel", json!({"reason": "cannot come"})).await;
        assert_refused(s, &body, "cancellation-window", &format!("{engine:?}: patient cancels 12 h ahead"));
        assert!(body["detail"].as_str().unwrap().contains("until 24 hours before the start"), "{engine:?}: {body}");
        let (new_start, new_end) = slot(72, 30);
        let (s, body) = act(&c, soon, &c.patient, "reschedule", json!({"start": new_start, "end": new_end})).await;
        assert_refused(s, &body, "cancellation-window", &format!("{engine:?}: patient moves 12 h ahead"));
        let (_, still) = c.e.get(&format!("/v1/appointments/{soon}"), Some(&c.patient)).await;
        assert_eq!((still["status"].as_str(), still["start"].as_str()), (Some("booked"), Some(start.as_str())));
        let (s, body) = act(&c, soon, &c.doctor, "reschedule", json!({"start": new_start, "end": new_end})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: staff may: {body}");
        // Now 72 hours ahead, outside the window: the patient may cancel.
        let (s, body) = act(&c, soon, &c.patient, "cancel", json!({"reason": "cannot come"})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        let (_, late) = book(&c, &c.patient, &c.doctor_practitioner, &start, &end).await;
        let (s, body) =
            act(&c, late["id"].as_str().unwrap(), &c.admin, "cancel", json!({"reason": "doctor ill"})).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: staff cancel inside the window: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_proposals_and_requests_become_booked_on_confirmation() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let proposal = |start: &str, end: &str, status: &str| json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end, "status": status});
        let (start, end) = slot(30, 30);
        let (s, body) = c.e.post("/v1/appointments", Some(&c.patient), proposal(&start, &end, "proposed")).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "a patient proposes");
        assert_eq!(body["errors"][0]["field"], "status");
        // Proposed: awaits the patient, who confirms it into booked.
        let (s, proposed) = c.e.post("/v1/appointments", Some(&c.doctor), proposal(&start, &end, "proposed")).await;
        assert_eq!((s, proposed["status"].as_str()), (StatusCode::CREATED, Some("proposed")), "{engine:?}: {proposed}");
        let proposed = proposed["id"].as_str().unwrap();
        let (s, body) = act(&c, proposed, &c.patient, "confirm", json!({})).await;
        assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("booked")), "{engine:?}: {body}");
        // Pending: awaits the practitioner; the patient's confirmation leaves it pending, the
        // practitioner's books it. A pending request holds its time.
        let (start, end) = slot(40, 30);
        let (_, pending) = c.e.post("/v1/appointments", Some(&c.admin), proposal(&start, &end, "pending")).await;
        assert_eq!(pending["status"], "pending", "{engine:?}: {pending}");
        let pending = pending["id"].as_str().unwrap();
        let (s, body) = book(&c, &c.admin, &c.doctor_practitioner, &start, &end).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "a pending request holds its time");
        let (_, body) = act(&c, pending, &c.patient, "confirm", json!({})).await;
        assert_eq!(body["status"], "pending", "{engine:?}: {body}");
        let (s, body) = act(&c, pending, &c.doctor, "confirm", json!({})).await;
        assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("booked")), "{engine:?}: {body}");
        // A proposal does not hold its time: if the time is booked meanwhile, confirming it is
        // a 409. Declining one is a cancellation, possible also inside the cancellation window.
        let (start, end) = slot(50, 30);
        let (_, offer) = c.e.post("/v1/appointments", Some(&c.admin), proposal(&start, &end, "proposed")).await;
        let offer = offer["id"].as_str().unwrap();
        let (s, _) = c.e.post("/v1/appointments", Some(&c.admin), json!({"practitionerId": c.doctor_practitioner, "patientId": c.other_record, "start": start, "end": end})).await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}");
        let (s, body) = act(&c, offer, &c.patient, "confirm", json!({})).await;
        assert_problem(s, &body, StatusCode::CONFLICT, "the time went meanwhile");
        let (start, end) = slot(2, 30);
        let (_, short) = c.e.post("/v1/appointments", Some(&c.admin), proposal(&start, &end, "proposed")).await;
        let (s, body) =
            act(&c, short["id"].as_str().unwrap(), &c.patient, "cancel", json!({"reason": "no, thanks"})).await;
        assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{engine:?}: {body}");
    }
}

/// A practice with `rules` (a PUT body) and a practitioner of it working Sundays 01:00-04:00
/// in America/New_York in 30-minute slots; returns (practice id, practitioner id).
async fn practice_with_night_shift(c: &Clinic, rules: Value) -> (String, String) {
    let (s, practice) = c.e.post("/v1/practices", Some(&c.admin), json!({"name": "Night Clinic"})).await;
    assert_eq!(s, StatusCode::CREATED, "{practice}");
    let practice = practice["id"].as_str().unwrap().to_string();
    let (s, body) = c.e.put(&format!("/v1/practices/{practice}/booking-rules"), Some(&c.admin), rules).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, p) = c
        .e
        .post(
            "/v1/practitioners",
            Some(&c.admin),
            json!({"displayName": "Dr. Owl", "specialty": "psychiatry", "timeZone": "America/New_York", "practiceId": practice}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let pattern = json!({"rules": [{"weekday": "sunday", "from": "01:00", "to": "04:00", "slotMinutes": 30}]});
    let (s, body) = c.e.put(&format!("/v1/practitioners/{id}/availability"), Some(&c.admin), pattern).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    (practice, id)
}

fn rules_body(lead: i64, horizon: i64, slot: Option<i64>, window: i64, expiry: i64) -> Value {
    json!({"minLeadMinutes": lead, "maxHorizonDays": horizon, "slotMinutes": slot,
           "patientCancelWindowHours": window, "proposalExpiryHours": expiry})
}

async fn slot_starts(c: &Clinic, practitioner: &str, from: &str, to: &str) -> Vec<String> {
    let (s, body) =
        c.e.get(&format!("/v1/availability?practitioner={practitioner}&from={from}&to={to}"), Some(&c.patient)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practice_sets_its_own_rules_audited_and_bookings_follow_them() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let (practice, owl) = practice_with_night_shift(&c, rules_body(60, 2, None, 24, 48)).await;
        let path = format!("/v1/practices/{practice}/booking-rules");

        // Admins only; an unknown practice is a 404.
        for token in [&c.doctor, &c.patient] {
            let (s, body) = c.e.get(&path, Some(token)).await;
            assert_problem(s, &body, StatusCode::FORBIDDEN, "a non-admin reads the rules");
            let (s, body) = c.e.put(&path, Some(token), rules_body(0, 10, None, 0, 1)).await;
            assert_problem(s, &body, StatusCode::FORBIDDEN, "a non-admin sets the rules");
        }
        let unknown = "/v1/practices/00000000-0000-4000-8000-000000000000/booking-rules";
        assert_eq!(c.e.get(unknown, Some(&c.admin)).await.0, StatusCode::NOT_FOUND);
        assert_eq!(c.e.put(unknown, Some(&c.admin), rules_body(0, 10, None, 0, 1)).await.0, StatusCode::NOT_FOUND);

        // Every range refused with a 422 naming the field; nothing stored.
        for (body, field, detail) in [
            (rules_body(-1, 10, None, 0, 1), "minLeadMinutes", "must be between 0 and 525600 minutes, got -1"),
            (rules_body(0, 0, None, 0, 1), "maxHorizonDays", "must be between 1 and 3650 days, got 0"),
            (rules_body(0, 10, Some(5), 0, 1), "slotMinutes", "must be between 10 and 240 minutes, got 5"),
            (rules_body(0, 10, None, 8761, 1), "patientCancelWindowHours", "must be between 0 and 8760 hours"),
            (rules_body(0, 10, None, 0, 0), "proposalExpiryHours", "must be between 1 and 720 hours, got 0"),
            (rules_body(1440, 1, None, 0, 1), "minLeadMinutes", "is not less than the horizon of 1 days"),
        ] {
            let (s, problem) = c.e.put(&path, Some(&c.admin), body.clone()).await;
            assert_problem(s, &problem, StatusCode::UNPROCESSABLE_ENTITY, &format!("{engine:?}: {body}"));
            assert_eq!(problem["errors"][0]["field"], field, "{engine:?}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains(detail), "{engine:?}: {problem}");
        }
        let (s, body) = c.e.put(&path, Some(&c.admin), json!({"minLeadMinutes": 0})).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "a PUT without every rule");

        // The practice's rules as set; the deployment's for the clinic's own doctor.
        let (s, got) = c.e.get(&path, Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        assert_eq!(
            (got["source"].as_str(), got["maxHorizonDays"].as_i64(), got["slotMinutes"].clone()),
            (Some("practice"), Some(2), Value::Null),
            "{engine:?}: {got}"
        );
        // The practice's horizon (2 days) refuses what the deployment's (400 days) allows.
        let (s, body) = book(&c, &c.admin, &owl, "2027-03-14T06:00:00Z", "2027-03-14T06:30:00Z").await;
        assert_refused(s, &body, "booking-horizon", &format!("{engine:?}: the practice's horizon"));
        assert!(body["detail"].as_str().unwrap().contains("at most 2 days ahead"), "{engine:?}: {body}");

        // A slot length of 60 minutes replaces the pattern's 30 in the availability and the check.
        let (s, set) = c.e.put(&path, Some(&c.admin), rules_body(0, 500, Some(60), 0, 48)).await;
        assert_eq!((s, set["slotMinutes"].as_i64()), (StatusCode::OK, Some(60)), "{engine:?}: {set}");
        let spring = slot_starts(&c, &owl, "2027-03-14T00:00:00Z", "2027-03-15T00:00:00Z").await;
        assert_eq!(spring, ["2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z"], "{engine:?}");
        let (s, body) = book(&c, &c.patient, &owl, "2027-03-14T06:00:00Z", "2027-03-14T06:30:00Z").await;
        assert_refused(s, &body, "booking-outside-availability", &format!("{engine:?}: half a practice slot"));
        let (s, body) = book(&c, &c.patient, &owl, "2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z").await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: {body}");
        // The clinic's doctor still books under the deployment's rules (lead time 60 minutes).
        let (start, end) = slot(0, 30);
        let (s, body) = book(&c, &c.patient, &c.doctor_practitioner, &start, &end).await;
        assert_refused(s, &body, "booking-lead-time", &format!("{engine:?}: the deployment's lead time"));

        // Each change audited with the old and the new values.
        let (_, audit) = c.e.get("/v1/audit?action=practice.booking-rules.update", Some(&c.admin)).await;
        let targets: Vec<&str> =
            audit["events"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
        assert_eq!(targets.len(), 2, "{engine:?}: {audit}");
        assert_eq!(
            targets[0],
            format!(
                "practice:{practice} minLeadMinutes:60->0 maxHorizonDays:2->500 slotMinutes:pattern->60 \
                 patientCancelWindowHours:24->0 proposalExpiryHours:48->48"
            ),
            "{engine:?}: newest first"
        );
        assert!(targets[1].contains("minLeadMinutes:60->60 maxHorizonDays:400->2"), "{engine:?}: {}", targets[1]);

        // Reset: the deployment's rules again (30-minute pattern slots), audited.
        assert_eq!(c.e.delete(&path, Some(&c.patient)).await, StatusCode::FORBIDDEN);
        assert_eq!(c.e.delete(&path, Some(&c.admin)).await, StatusCode::NO_CONTENT);
        assert_eq!(c.e.delete(&path, Some(&c.admin)).await, StatusCode::NOT_FOUND);
        let (_, got) = c.e.get(&path, Some(&c.admin)).await;
        assert_eq!((got["source"].as_str(), got["maxHorizonDays"].as_i64()), (Some("deployment"), Some(400)));
        let autumn = slot_starts(&c, &owl, "2027-11-07T00:00:00Z", "2027-11-08T00:00:00Z").await;
        assert_eq!(autumn.len(), 8, "{engine:?}: {autumn:?}");
        let (_, audit) = c.e.get("/v1/audit?action=practice.booking-rules.reset", Some(&c.admin)).await;
        assert!(
            audit["events"][0]["target"].as_str().unwrap().contains("slotMinutes:60->pattern"),
            "{engine:?}: {audit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practitioner_without_a_working_pattern_is_not_bookable() {
    for engine in engines() {
        let c = clinic_with(engine, RULES).await;
        let (s, p) =
            c.e.post(
                "/v1/practitioners",
                Some(&c.admin),
                json!({"displayName": "Dr. New", "specialty": "gp", "timeZone": "Europe/Istanbul"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let (start, end) = slot(30, 30);
        let week_later = slot(24 * 7, 30).0;
        let (from, to) = (&start[..10], &week_later[..10]);
        let free = slot_starts(&c, &id, &format!("{from}T00:00:00Z"), &format!("{to}T00:00:00Z")).await;
        assert!(free.is_empty(), "{engine:?}: no pattern, no slots: {free:?}");
        for token in [&c.admin, &c.patient] {
            let (s, body) = book(&c, token, &id, &start, &end).await;
            assert_refused(s, &body, "booking-no-working-pattern", &format!("{engine:?}: no pattern"));
            assert!(
                body["detail"].as_str().unwrap().contains(&format!("PUT /v1/practitioners/{id}/availability")),
                "{engine:?}: the problem says what to do: {body}"
            );
        }
        let (_, list) = c.e.get(&format!("/v1/appointments?practitioner={id}"), Some(&c.admin)).await;
        assert_eq!(list.as_array().unwrap().len(), 0, "{engine:?}: nothing stored");
        // With a pattern the same time is bookable.
        open_all_hours(&c.e, &c.admin, &id).await;
        assert_eq!(book(&c, &c.patient, &id, &start, &end).await.0, StatusCode::CREATED, "{engine:?}");
    }
}

/// Waits (up to 20 s) until the appointment has `status`.
async fn until_status(c: &Clinic, id: &str, status: &str) -> Value {
    let admin = c.e.admin().await;
    for _ in 0..200 {
        let (s, a) = c.e.get(&format!("/v1/appointments/{id}"), Some(&admin)).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        if a["status"] == status {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("appointment {id} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_proposals_expire_free_their_time_and_are_announced() {
    for engine in engines() {
        let keys = tempfile::tempdir().unwrap();
        let secret = keys.path().join("webhook.secret");
        std::fs::write(&secret, "whsec-0123456789abcdef0123456789\n").unwrap();
        // The webhook receiver does not exist: the cancellations stay queued in the outbox.
        let extra = format!(
            "[scheduling]\nsweep-interval-seconds = 1\nproposal-expiry-hours = 48\n\
             [notifications]\nallow-insecure-http = true\nretry-base-seconds = 3600\nretry-max-seconds = 3600\n\
             [[notifications.webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret-file = \"{}\"\n",
            secret.display()
        );
        let mut c = clinic_with(engine, &extra).await;
        // Dr. Owl's practice lets proposals wait 1 hour; the clinic's doctor has the
        // deployment's 48 hours.
        let (_, owl) = practice_with_night_shift(&c, rules_body(0, 3650, None, 0, 1)).await;
        open_all_hours(&c.e, &c.admin, &owl).await;
        let propose = |practitioner: &str, (start, end): (String, String), status: &str| json!({"practitionerId": practitioner, "patientId": c.patient_record, "start": start, "end": end, "status": status});
        let mut made = Vec::new();
        for (practitioner, when, status) in [
            (owl.as_str(), slot(30, 30), "pending"),
            (c.doctor_practitioner.as_str(), slot(2, 30), "proposed"),
            (c.doctor_practitioner.as_str(), slot(72, 30), "proposed"),
            (c.doctor_practitioner.as_str(), slot(80, 30), "proposed"),
        ] {
            let (s, a) = c.e.post("/v1/appointments", Some(&c.admin), propose(practitioner, when, status)).await;
            assert_eq!(s, StatusCode::CREATED, "{engine:?}: {a}");
            made.push(a);
        }
        let id = |i: usize| made[i]["id"].as_str().unwrap().to_string();
        // The patient answers the last one in time: it is booked and never expires.
        let (s, body) = act(&c, &id(3), &c.patient, "confirm", json!({})).await;
        assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("booked")), "{engine:?}: {body}");

        // An hour later Dr. Owl's pending request has expired: cancelled with a reason, its
        // time free again; the others wait.
        c.e.control.set_clock(time::Duration::minutes(61));
        let pending = until_status(&c, &id(0), "cancelled").await;
        assert_eq!(pending["cancelReason"], "not confirmed in time: the proposal expired", "{engine:?}");
        let admin = c.e.admin().await;
        let (s, body) =
            c.e.post(
                "/v1/appointments",
                Some(&admin),
                propose(
                    &owl,
                    (made[0]["start"].as_str().unwrap().into(), made[0]["end"].as_str().unwrap().into()),
                    "booked",
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{engine:?}: the expired request's time is free: {body}");
        for i in [1, 2] {
            let (_, a) = c.e.get(&format!("/v1/appointments/{}", id(i)), Some(&admin)).await;
            assert_eq!(a["status"], "proposed", "{engine:?}: {a}");
        }

        // The proposal starting in 2 hours expires at its start, before its 48 hours.
        c.e.control.set_clock(time::Duration::minutes(121));
        until_status(&c, &id(1), "cancelled").await;

        // The 48 hours pass while no instance runs: the next one expires the proposal.
        let control = c.e.control;
        control.set_clock(time::Duration::hours(49));
        c.e.control = control.restart();
        until_status(&c, &id(2), "cancelled").await;
        let admin = c.e.admin().await;
        let (_, kept) = c.e.get(&format!("/v1/appointments/{}", id(3)), Some(&admin)).await;
        assert_eq!(kept["status"], "booked", "{engine:?}: a confirmed proposal stays");

        // Each expiry audited once, by the system, and queued once for the webhook.
        let (_, audit) = c.e.get("/v1/audit?action=appointment.cancel", Some(&admin)).await;
        let expired: Vec<&Value> =
            audit["events"].as_array().unwrap().iter().filter(|e| e["outcome"] == "success:proposal-expired").collect();
        assert_eq!(expired.len(), 3, "{engine:?}: {audit}");
        assert!(expired.iter().all(|e| e["actor"].is_null()), "{engine:?}: {audit}");
        for i in 0..3 {
            let queued = query_i64(
                &c,
                &format!(
                    "SELECT COUNT(*) FROM notification_outbox WHERE kind = 'appointment.cancelled' AND payload LIKE '%{}%'",
                    id(i)
                ),
            )
            .await;
            assert_eq!(queued, 1, "{engine:?}: appointment {i}'s cancellation queued once");
        }
        assert_eq!(audit["chain"]["verified"], true, "{engine:?}: {audit}");
    }
}
