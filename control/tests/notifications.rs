//! Notifications (issue 25 item 2) against the real binary and a webhook receiver written
//! here with axum: signatures, retries, a hanging endpoint, dead letters and replay, reminders
//! across a restart, and two control instances on one database delivering each event once.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::clinic::{Clinic, act, clinic_with, slot};
use support::http::{RELAXED_LIMITS, assert_problem};
use support::{Control, Engine, engines};

const SECRET: &str = "whsec-0123456789abcdef0123456789";

/// One request the receiver got, with what it made of it.
#[derive(Debug, Clone)]
struct Received {
    endpoint: String,
    body: Value,
    raw: String,
    idempotency_key: String,
    signature_valid: bool,
    timestamp_fresh: bool,
    answered: u16,
}

/// How an endpoint of the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Accept,
    /// 500 to the first request of each event, then 200.
    FailFirst,
    /// 500 until told otherwise.
    Fail,
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct Receiver {
    behaviour: HashMap<String, Behaviour>,
    received: Vec<Received>,
    hanging: usize,
}

type Shared = Arc<Mutex<Receiver>>;

/// What a receiver must check (docs/notifications.md): the HMAC over "timestamp.body" with the
/// shared secret, and a timestamp close to its own clock.
fn verify(headers: &HeaderMap, body: &[u8]) -> (bool, bool) {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let timestamp = header("teletip-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let valid = header("teletip-signature") == format!("v1={expected}");
    let fresh =
        timestamp.parse::<i64>().is_ok_and(|t| (t - time::OffsetDateTime::now_utc().unix_timestamp()).abs() <= 300);
    (valid, fresh)
}

async fn receive(
    State(shared): State<Shared>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (signature_valid, timestamp_fresh) = verify(&headers, &body);
    let raw = String::from_utf8_lossy(&body).to_string();
    let parsed: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let answer = {
        let mut r = shared.lock().unwrap();
        let behaviour = r.behaviour.get(&endpoint).copied().unwrap_or(Behaviour::Accept);
        let seen_before = r.received.iter().any(|x| x.endpoint == endpoint && x.idempotency_key == key);
        let answer = match behaviour {
            Behaviour::Accept => 200,
            Behaviour::FailFirst if seen_before => 200,
            Behaviour::FailFirst | Behaviour::Fail => 500,
            Behaviour::Hang => {
                r.hanging += 1;
                0
            }
        };
        r.received.push(Received {
            endpoint: endpoint.clone(),
            body: parsed,
            raw,
            idempotency_key: key,
            signature_valid,
            timestamp_fresh,
            answered: answer,
        });
        answer
    };
    if answer == 0 {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(answer).unwrap()
}

/// A webhook receiver on a free loopback port: `POST /{endpoint}`.
async fn receiver(behaviour: &[(&str, Behaviour)]) -> (Shared, String) {
    let shared: Shared = Arc::new(Mutex::new(Receiver {
        behaviour: behaviour.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
        ..Default::default()
    }));
    let app = axum::Router::new().route("/{endpoint}", axum::routing::post(receive)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, base)
}

/// `[notifications]` sending to `endpoints` of the receiver at `base`, quick to retry.
fn notifications_toml(dir: &std::path::Path, base: &str, endpoints: &[&str], extra: &str) -> String {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut toml = format!(
        "[notifications]\nallow-insecure-http = true\nmax-attempts = 3\nretry-base-seconds = 1\nretry-max-seconds = 1\n\
         request-timeout-seconds = 2\npoll-interval-ms = 100\nreminder-interval-seconds = 1\n{extra}\n"
    );
    for name in endpoints {
        toml += &format!(
            "[[notifications.webhooks]]\nname = \"{name}\"\nurl = \"{base}/{name}\"\nsecret-file = \"{}\"\n",
            secret.display()
        );
    }
    toml
}

/// Waits (up to 30 s) until `done` holds for what the receiver got.
async fn until(shared: &Shared, what: &str, done: impl Fn(&Receiver) -> bool) {
    for _ in 0..300 {
        if done(&shared.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not received; got {:#?}", shared.lock().unwrap().received);
}

fn accepted<'a>(r: &'a Receiver, endpoint: &'a str, event: &'a str) -> impl Iterator<Item = &'a Received> + 'a {
    r.received.iter().filter(move |x| x.endpoint == endpoint && x.answered == 200 && x.body["type"] == event)
}

async fn book(c: &Clinic, start: &str, end: &str) -> String {
    let (s, a) =
        c.e.post(
            "/v1/appointments",
            Some(&c.patient),
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    a["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn webhooks_are_signed_retried_once_delivered_and_carry_no_identifying_data() {
    for engine in engines() {
        let (shared, base) = receiver(&[("crm", Behaviour::Accept), ("flaky", Behaviour::FailFirst)]).await;
        let keys = tempfile::tempdir().unwrap();
        let c = clinic_with(engine, &notifications_toml(keys.path(), &base, &["crm", "flaky"], "")).await;
        let (start, end) = slot(30, 30);
        let id = book(&c, &start, &end).await;
        let (s, body) = act(&c, &id, &c.patient, "cancel", json!({"reason": "penicillin allergy flared"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");

        until(&shared, "booked and cancelled at both endpoints", |r| {
            ["crm", "flaky"].iter().all(|e| {
                accepted(r, e, "appointment.booked").count() == 1
                    && accepted(r, e, "appointment.cancelled").count() == 1
            })
        })
        .await;
        // Enough time for any duplicate (ten polls, a retry) to arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = shared.lock().unwrap();
        for x in &r.received {
            assert!(x.signature_valid, "{engine:?}: a bad signature: {x:?}");
            assert!(x.timestamp_fresh, "{engine:?}: a stale timestamp: {x:?}");
            assert_eq!(x.idempotency_key, x.body["id"].as_str().unwrap(), "the idempotency key is the event id");
            assert_eq!(x.body["appointment"]["id"], id.as_str());
            assert_eq!(x.body["appointment"]["patientId"], c.patient_record.as_str());
            for identifying in [
                "Ayşe",
                "Yılmaz",
                "ayse@example.org",
                "532 111 22 33",
                "5321112233",
                "12345678901",
                "penicillin",
                "Elif",
                "Kaya",
            ] {
                assert!(!x.raw.contains(identifying), "{engine:?}: the payload names {identifying:?}: {}", x.raw);
            }
        }
        for e in ["crm", "flaky"] {
            for kind in ["appointment.booked", "appointment.cancelled"] {
                assert_eq!(accepted(&r, e, kind).count(), 1, "{engine:?}: {e} got {kind} once");
            }
        }
        // The flaky endpoint saw each event twice: a 500, then the same event (same key) again.
        let flaky: Vec<_> = r.received.iter().filter(|x| x.endpoint == "flaky").collect();
        assert_eq!(flaky.iter().filter(|x| x.answered == 500).count(), 2, "{engine:?}: {flaky:#?}");
        assert_eq!(flaky.len(), 4, "{engine:?}: {flaky:#?}");
        let crm_keys: Vec<_> = r.received.iter().filter(|x| x.endpoint == "crm").map(|x| &x.idempotency_key).collect();
        assert_eq!(crm_keys.len(), 2, "{engine:?}: the accepting endpoint was asked once per event");
    }
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_hold_up_another() {
    for engine in engines() {
        let (shared, base) = receiver(&[("stuck", Behaviour::Hang), ("crm", Behaviour::Accept)]).await;
        let keys = tempfile::tempdir().unwrap();
        let toml = notifications_toml(keys.path(), &base, &["stuck", "crm"], "")
            .replace("request-timeout-seconds = 2", "request-timeout-seconds = 60");
        let c = clinic_with(engine, &toml).await;
        let (start, end) = slot(30, 30);
        let first = book(&c, &start, &end).await;
        until(&shared, "the stuck endpoint holds a request", |r| r.hanging == 1).await;
        let (start, end) = slot(40, 30);
        let second = book(&c, &start, &end).await;
        until(&shared, "the second booking at the other endpoint", |r| {
            accepted(r, "crm", "appointment.booked").any(|x| x.body["appointment"]["id"] == second.as_str())
        })
        .await;
        let r = shared.lock().unwrap();
        let first_at_stuck = r
            .received
            .iter()
            .filter(|x| x.endpoint == "stuck" && x.body["appointment"]["id"] == first.as_str())
            .count();
        assert_eq!(
            first_at_stuck, 1,
            "{engine:?}: the first request still hangs (timeout 60 s, not retried) while the other endpoint is served"
        );
    }
}

#[tokio::test]
async fn failed_deliveries_become_dead_letters_an_admin_replays() {
    for engine in engines() {
        let (shared, base) = receiver(&[("ehr", Behaviour::Fail)]).await;
        let keys = tempfile::tempdir().unwrap();
        let c = clinic_with(engine, &notifications_toml(keys.path(), &base, &["ehr"], "")).await;
        let (start, end) = slot(30, 30);
        let id = book(&c, &start, &end).await;

        let mut dead = Value::Null;
        for _ in 0..300 {
            let (s, body) = c.e.get("/v1/notifications/dead-letters", Some(&c.admin)).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            if body.as_array().is_some_and(|a| !a.is_empty()) {
                dead = body;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let letter = &dead[0];
        assert_eq!(letter["endpoint"], "ehr", "{engine:?}: {dead}");
        assert_eq!(letter["attempts"], 3, "{engine:?}: max-attempts = 3: {dead}");
        assert_eq!(letter["lastError"], "HTTP 500", "{engine:?}: {dead}");
        assert_eq!(letter["eventType"], "appointment.booked");
        assert_eq!(letter["appointmentId"], id.as_str());
        assert_eq!(shared.lock().unwrap().received.len(), 3, "{engine:?}: three attempts, then it waits");

        // Admins only; an unknown delivery is a 404.
        let (s, body) = c.e.get("/v1/notifications/dead-letters", Some(&c.doctor)).await;
        assert_problem(s, &body, StatusCode::FORBIDDEN, "a practitioner lists dead letters");
        let (s, body) = c.e.get("/v1/notifications/dead-letters?limit=0", Some(&c.admin)).await;
        assert_problem(s, &body, StatusCode::UNPROCESSABLE_ENTITY, "limit 0");
        let unknown = format!("/v1/notifications/dead-letters/{}/replay", uuid::Uuid::new_v4());
        let (s, body) = c.e.post(&unknown, Some(&c.admin), Value::Null).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "an unknown delivery");

        // The endpoint is repaired; the replay delivers the same event, signed anew.
        shared.lock().unwrap().behaviour.insert("ehr".into(), Behaviour::Accept);
        let replay = format!("/v1/notifications/dead-letters/{}/replay", letter["id"].as_str().unwrap());
        let (s, body) = c.e.post(&replay, Some(&c.admin), Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{engine:?}: {body}");
        until(&shared, "the replayed delivery", |r| accepted(r, "ehr", "appointment.booked").count() == 1).await;
        let r = shared.lock().unwrap().received.clone();
        assert!(r.iter().all(|x| x.signature_valid && x.idempotency_key == letter["eventId"].as_str().unwrap()));
        let (_, body) = c.e.get("/v1/notifications/dead-letters", Some(&c.admin)).await;
        assert_eq!(body, json!([]), "{engine:?}: replayed, no longer dead");
        let (s, body) = c.e.post(&replay, Some(&c.admin), Value::Null).await;
        assert_problem(s, &body, StatusCode::NOT_FOUND, "a delivery no longer dead");

        let (_, audit) = c.e.get("/v1/audit?limit=1000", Some(&c.admin)).await;
        let actions: Vec<&str> =
            audit["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        assert!(actions.contains(&"notification.dead-letter"), "{engine:?}: {actions:?}");
        assert!(actions.contains(&"notification.replay"), "{engine:?}: {actions:?}");
        assert_eq!(audit["chain"]["verified"], true);
    }
}

/// Appointments of 10 minutes (one slot of the clinic's pattern) starting `2 h + 10 min × i`
/// from now, as RFC 3339.
fn short_slot(i: i64) -> (String, String) {
    let start = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().replace_second(0).unwrap()
        + time::Duration::hours(2)
        + time::Duration::minutes(10 * i);
    let f = &time::format_description::well_known::Rfc3339;
    (start.format(f).unwrap(), (start + time::Duration::minutes(10)).format(f).unwrap())
}

#[tokio::test]
async fn reminders_survive_a_restart_and_are_sent_once() {
    for engine in engines() {
        let (shared, base) = receiver(&[("sms", Behaviour::Accept)]).await;
        let keys = tempfile::tempdir().unwrap();
        let mut c = clinic_with(engine, &notifications_toml(keys.path(), &base, &["sms"], "")).await;
        let (start, end) = short_slot(0);
        let id = book(&c, &start, &end).await;
        until(&shared, "the booking", |r| accepted(r, "sms", "appointment.booked").count() == 1).await;
        assert_eq!(accepted(&shared.lock().unwrap(), "sms", "appointment.reminder").count(), 0);

        // While the service is down, the 15-minute reminder falls due; booked two hours ahead,
        // the appointment gets no day-ahead reminder.
        let control = c.e.control;
        control.set_clock(time::Duration::minutes(110));
        c.e.control = control.restart();
        until(&shared, "the reminder", |r| accepted(r, "sms", "appointment.reminder").count() == 1).await;
        let control = c.e.control;
        c.e.control = control.restart();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = shared.lock().unwrap();
        let reminders: Vec<_> = accepted(&r, "sms", "appointment.reminder").collect();
        assert_eq!(reminders.len(), 1, "{engine:?}: once, across restarts: {reminders:#?}");
        assert_eq!(reminders[0].body["reminderMinutesBefore"], 15);
        assert_eq!(reminders[0].body["appointment"]["id"], id.as_str());
        assert!(reminders[0].signature_valid);
    }
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_event_and_reminder_once() {
    for engine in engines() {
        if engine == Engine::Sqlite {
            // Two processes on one SQLite file are not a supported deployment (the audit lock is
            // per process); several instances mean PostgreSQL.
            continue;
        }
        let (shared, base) = receiver(&[("crm", Behaviour::Accept)]).await;
        let keys = tempfile::tempdir().unwrap();
        // Reminders 30 minutes ahead: the three appointments start 4, 14 and 24 minutes after
        // the clock is moved.
        let extra = notifications_toml(keys.path(), &base, &["crm"], "reminder-minutes = [30]");
        let c = clinic_with(engine, &extra).await;
        let ctl = &c.e.control;
        let second = Control::start(&ctl.dir, &ctl.database_url, &format!("{extra}\n{RELAXED_LIMITS}"));
        let mut ids = Vec::new();
        for i in 0..3 {
            let (start, end) = short_slot(i);
            ids.push(book(&c, &start, &end).await);
        }
        // Both instances share the clock file: each one's scheduler finds every reminder due.
        ctl.set_clock(time::Duration::minutes(116));
        until(&shared, "three bookings and three reminders", |r| {
            accepted(r, "crm", "appointment.booked").count() >= 3
                && accepted(r, "crm", "appointment.reminder").count() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = shared.lock().unwrap();
        assert_eq!(r.received.len(), 6, "{engine:?}: each event once: {:#?}", r.received);
        let mut keys: Vec<_> = r.received.iter().map(|x| x.idempotency_key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 6);
        for id in &ids {
            assert_eq!(
                accepted(&r, "crm", "appointment.reminder")
                    .filter(|x| x.body["appointment"]["id"] == id.as_str())
                    .count(),
                1
            );
        }
        drop(second);
    }
}
