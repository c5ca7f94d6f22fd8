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
