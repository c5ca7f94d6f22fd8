//! The control plane's monitoring series over real HTTP on SQLite and PostgreSQL: bookings and
//! conflicts, audit chain verification, ICE answers, database statements and pool, background
//! jobs, relays by state, build and process series are exported; and every label comes from a
//! closed set that names no user, patient, appointment or address (as the relay's
//! `metrics_never_name_users_and_sigterm_stops_cleanly`).

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;
use support::clinic::*;
use support::engines;
use support::relay::eventually;

/// Every label name the control plane's series may carry.
const LABELS: &[&str] = &[
    "method",
    "route",
    "status",
    "operation",
    "state",
    "role",
    "outcome",
    "task",
    "version",
    "reason",
    "source",
    "limit",
    "certificate",
    "le",
    "quantile",
    "endpoint",
    "event",
    // "webhook" or "web-push": present once the worker has tried a delivery, which it may do
    // before the scrape (a CI run met it on PostgreSQL).
    "channel",
];

/// `name{a="x",b="y"} value` → (name, [(a, x), (b, y)]).
fn parse(line: &str) -> (String, Vec<(String, String)>) {
    let (series, _) = line.rsplit_once(' ').unwrap();
    let Some((name, labels)) = series.split_once('{') else { return (series.to_string(), Vec::new()) };
    let labels = labels.trim_end_matches('}');
    let mut out = Vec::new();
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"").unwrap();
        out.push((k.to_string(), v.trim_end_matches('"').to_string()));
    }
    (name.to_string(), out)
}

fn looks_identifying(value: &str) -> bool {
    let uuid_like = value.split(|c: char| !c.is_ascii_hexdigit() && c != '-').any(|w| uuid::Uuid::parse_str(w).is_ok());
    uuid_like || value.contains('@') || value.parse::<std::net::IpAddr>().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_series_are_exported_with_closed_label_sets() {
    for engine in engines() {
        // A webhook (nobody listens there): the notification series exist from the start.
        let keys = tempfile::tempdir().unwrap();
        let secret = keys.path().join("webhook.secret");
        std::fs::write(&secret, "whsec-0123456789abcdef0123456789\n").unwrap();
        let c = clinic_with(
            engine,
            &format!(
                "[notifications]\nallow-insecure-http = true\n[[notifications.webhooks]]\nname = \"crm\"\n\
                 url = \"http://127.0.0.1:9/hook\"\nsecret-file = \"{}\"\n",
                secret.display()
            ),
        )
        .await;
        let e = &c.e;
        let (start, end) = slot(24, 30);
        let body =
            json!({"practitionerId": c.doctor_practitioner, "patientId": c.patient_record, "start": start, "end": end});
        let (s, booked) = e.post("/v1/appointments", Some(&c.admin), body.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{booked}");
        let (s, _) = e.post("/v1/appointments", Some(&c.admin), body).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let appointment = booked["id"].as_str().unwrap().to_string();
        let (s, _) = e.get(&format!("/v1/appointments/{appointment}"), Some(&c.admin)).await;
        assert_eq!(s, StatusCode::OK);
        let (s, page) = e.get("/v1/audit?limit=5", Some(&c.admin)).await;
        assert_eq!((s, page["chain"]["verified"].clone()), (StatusCode::OK, json!(true)), "{page}");
        let (s, _) = e.post("/v1/ice/credentials", Some(&c.patient), json!({})).await;
        assert_eq!(s, StatusCode::OK);

        // The worker tries the booking's webhook (nobody listens: refused) on its own schedule; wait
        // for that attempt so the scrape always holds the delivery series and its labels.
        let scrape = || async { e.http.get(e.control.url("/metrics")).send().await.unwrap().text().await.unwrap() };
        let attempted = "teletip_control_notifications_deliveries_total{channel=\"webhook\",outcome=\"failed\"}";
        let what = format!("{engine:?}: the worker's first attempt at the webhook");
        eventually(std::time::Duration::from_secs(20), &what, || async { scrape().await.contains(attempted) }).await;
        let text = scrape().await;
        for expected in [
            "teletip_bookings_total{outcome=\"booked\"} 1",
            "teletip_bookings_total{outcome=\"conflict\"} 1",
            "teletip_audit_chain_verifications_total{outcome=\"intact\"} 1",
            "teletip_audit_chain_verifications_total{outcome=\"broken\"} 0",
            "teletip_ice_answers_total{outcome=\"issued\"} 1",
            "teletip_ice_answers_total{outcome=\"unavailable\"} 0",
            "teletip_db_query_duration_seconds_bucket{operation=\"execute\",le=",
            "teletip_db_query_duration_seconds_bucket{operation=\"fetch\",le=",
            "teletip_db_query_errors_total{operation=\"execute\"} 0",
            "teletip_db_pool_connections{state=\"in_use\"}",
            "teletip_db_pool_max_connections ",
            // A gauge of the moment: the notification worker may be waiting for a connection.
            "teletip_db_pool_waiting ",
            "teletip_job_last_success_timestamp_seconds{task=\"noshow_sweeper\"}",
            "teletip_job_last_success_timestamp_seconds{task=\"retention\"}",
            "teletip_job_interval_seconds{task=\"noshow_sweeper\"} 60",
            "teletip_job_last_success_timestamp_seconds{task=\"proposal_expiry\"}",
            "teletip_job_interval_seconds{task=\"proposal_expiry\"} 60",
            "teletip_proposals_expired_total 0",
            "teletip_control_notifications_delivered_total{endpoint=\"crm\"} 0",
            "teletip_control_notifications_dead_lettered_total{endpoint=\"crm\"} 0",
            "teletip_control_notifications_dead_letters 0",
            "teletip_control_notifications_queued_total{event=\"appointment.booked\"} 1",
            "# HELP teletip_control_notifications_oldest_age_seconds ",
            "teletip_relays{state=\"serving\"} 0",
            "teletip_signaling_sockets 0",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "route=\"/v1/appointments/{id}\"",
        ] {
            assert!(text.contains(expected), "{engine:?}: no {expected:?} in\n{text}");
        }
        assert!(text.contains(&format!("teletip_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");

        // Nothing the requests carried is in the metrics, and every label is from the closed set.
        for secret in
            [&appointment, &c.doctor_practitioner, &c.patient_record, "dr.kaya@hospital.test", "ayse@example.org"]
        {
            assert!(!text.contains(secret), "{engine:?}: {secret} appears in the metrics");
        }
        let mut names = BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (name, labels) = parse(line);
            for (k, v) in labels {
                assert!(LABELS.contains(&k.as_str()), "{engine:?}: label {k} of {name} is not in the closed set");
                assert!(!looks_identifying(&v), "{engine:?}: {name}{{{k}=\"{v}\"}} looks like an identity");
                names.insert(k);
            }
        }
        assert!(names.contains("route") && names.contains("task") && names.contains("operation"), "{names:?}");
    }
}
