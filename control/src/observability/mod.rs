//! The control plane's Prometheus metrics beyond the per-route HTTP series (`app.rs`): their
//! names and descriptions, and the small functions call sites use to record them. Every label
//! value comes from a closed set written here; none names a user, a patient, an appointment or
//! an address (test `control/tests/metrics_labels.rs`). What is read rather than counted (pool,
//! relays, process) is sampled when Prometheus scrapes ([`scrape`]).

pub mod logs;
pub mod scrape;

use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::config::ControlConfig;
use crate::problem::ApiError;

/// Background jobs whose last success is exported, with the label they are exported under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    NoShowSweeper,
    ProposalExpiry,
    Retention,
}

impl Job {
    pub const ALL: &'static [Job] = &[Job::NoShowSweeper, Job::ProposalExpiry, Job::Retention];

    pub fn label(self) -> &'static str {
        match self {
            Job::NoShowSweeper => "noshow_sweeper",
            Job::ProposalExpiry => "proposal_expiry",
            Job::Retention => "retention",
        }
    }
}

/// Describes every series and sets the ones that must exist from the start (so that alert
/// rules and dashboards see 0 rather than nothing). Called once the recorder is installed.
pub fn describe(config: &ControlConfig) {
    describe_gauge!("teletip_build_info", "Always 1; the version of the running binary is the label");
    gauge!("teletip_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_histogram!(
        "teletip_db_query_duration_seconds",
        metrics::Unit::Seconds,
        "Database statements, from sending to the last row, by operation (execute, fetch)"
    );
    describe_counter!(
        "teletip_db_query_errors_total",
        "Database statements that failed, by operation (refused writes such as a double booking or a taken unique key are not errors)"
    );
    describe_gauge!("teletip_db_pool_connections", "Pooled database connections, by state (in_use, idle)");
    describe_gauge!("teletip_db_pool_max_connections", "The pool's limit of database connections");
    describe_gauge!("teletip_db_pool_waiting", "Tasks waiting for a pooled database connection now");
    gauge!("teletip_db_pool_waiting").set(0.0);
    for op in ["execute", "fetch"] {
        counter!("teletip_db_query_errors_total", "operation" => op).absolute(0);
    }
    describe_gauge!("teletip_signaling_sockets", "Socket.IO connections to /rtc open on this instance");
    gauge!("teletip_signaling_sockets").set(0.0);
    describe_gauge!(
        "teletip_signaling_rooms",
        "Consultation rooms with a participant, as this instance's adapter sees them"
    );
    gauge!("teletip_signaling_rooms").set(0.0);
    describe_counter!(
        "teletip_consultation_joins_total",
        "room:join answered with success, by role (patient, practitioner)"
    );
    describe_counter!("teletip_consultations_ended_total", "Consultations a practitioner ended (room:end)");
    describe_counter!("teletip_lobby_denied_total", "Patients a practitioner turned away from the lobby");
    describe_histogram!(
        "teletip_lobby_wait_seconds",
        metrics::Unit::Seconds,
        "How long admitted patients waited in the lobby, from their join to the practitioner's admit"
    );
    describe_counter!(
        "teletip_bookings_total",
        "Booking requests that reached the store, by outcome (booked, conflict: the practitioner was taken)"
    );
    for role in ["patient", "practitioner"] {
        counter!("teletip_consultation_joins_total", "role" => role).absolute(0);
    }
    counter!("teletip_consultations_ended_total").absolute(0);
    counter!("teletip_lobby_denied_total").absolute(0);
    for outcome in ["booked", "conflict"] {
        counter!("teletip_bookings_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "teletip_proposals_expired_total",
        "Proposed or pending appointments cancelled because nobody confirmed them in time"
    );
    counter!("teletip_proposals_expired_total").absolute(0);
    describe_notifications(config);
    describe_gauge!(
        "teletip_job_last_success_timestamp_seconds",
        "When a background job last succeeded (Unix seconds), by task"
    );
    describe_gauge!("teletip_job_interval_seconds", "How often a background job runs, by task");
    describe_counter!("teletip_job_failures_total", "Background job runs that failed, by task");
    for job in Job::ALL {
        let every = match job {
            Job::NoShowSweeper | Job::ProposalExpiry => config.scheduling.sweep_interval_seconds,
            Job::Retention => config.retention.interval_seconds,
        };
        gauge!("teletip_job_interval_seconds", "task" => job.label()).set(every.max(1) as f64);
        counter!("teletip_job_failures_total", "task" => job.label()).absolute(0);
    }
    describe_counter!(
        "teletip_audit_chain_verifications_total",
        "Audit chain verifications, by outcome (intact, broken)"
    );
    for outcome in ["intact", "broken"] {
        counter!("teletip_audit_chain_verifications_total", "outcome" => outcome).absolute(0);
    }
    describe_gauge!(
        "teletip_relays",
        "Relays known to the control plane, by state (serving, draining, stale, disconnected)"
    );
    describe_counter!(
        "teletip_ice_answers_total",
        "ICE credential requests answered, by outcome (issued; unavailable: 503, no relay to offer; failed: another error)"
    );
    for outcome in IceOutcome::ALL {
        counter!("teletip_ice_answers_total", "outcome" => outcome.label()).absolute(0);
    }
    describe_gauge!(
        "teletip_tls_certificate_expiry_timestamp_seconds",
        "When a certificate this process presents expires (Unix seconds), by certificate (relay_link)"
    );
    if let Some(link) = &config.relay_link {
        certificate_expiry("relay_link", &link.cert);
    }
    scrape::describe();
}

/// The webhook notifications' series (recorded by `notify`), each configured endpoint's at 0
/// from the start so that the alert rules' ratios and increases see a baseline.
fn describe_notifications(config: &ControlConfig) {
    describe_counter!(
        "teletip_control_notifications_delivered_total",
        "Webhook deliveries an endpoint accepted (2xx), by endpoint"
    );
    describe_counter!(
        "teletip_control_notifications_failed_attempts_total",
        "Webhook attempts that failed (an error status, a timeout, no connection), by endpoint"
    );
    describe_counter!(
        "teletip_control_notifications_dead_lettered_total",
        "Deliveries that failed their last attempt and wait for an admin's replay, by endpoint"
    );
    describe_counter!(
        "teletip_control_notifications_deliveries_total",
        "Delivery attempts by channel (webhook, web-push) and outcome (delivered, failed, dead-lettered, gone: a \
         push subscription the push service or its user withdrew)"
    );
    describe_counter!("teletip_control_notifications_queued_total", "Events queued for delivery, by event type");
    describe_counter!(
        "teletip_control_notifications_queue_errors_total",
        "Events that could not be queued, by event type"
    );
    describe_gauge!("teletip_control_notifications_queue_depth", "Deliveries waiting (due or retrying later)");
    describe_gauge!("teletip_control_notifications_oldest_age_seconds", "Age of the oldest delivery still waiting");
    describe_gauge!("teletip_control_notifications_dead_letters", "Dead letters not replayed");
    if config.notifications.webhooks.is_empty() && !config.notifications.web_push {
        return;
    }
    for name in [
        "teletip_control_notifications_queue_depth",
        "teletip_control_notifications_oldest_age_seconds",
        "teletip_control_notifications_dead_letters",
    ] {
        gauge!(name).set(0.0);
    }
    for hook in &config.notifications.webhooks {
        for series in [
            "teletip_control_notifications_delivered_total",
            "teletip_control_notifications_failed_attempts_total",
            "teletip_control_notifications_dead_lettered_total",
        ] {
            counter!(series, "endpoint" => hook.name.clone()).absolute(0);
        }
    }
}

/// An unconfirmed proposal expired (`scheduling::proposal_expiry`).
pub fn proposal_expired() {
    counter!("teletip_proposals_expired_total").increment(1);
}

/// Exports when the certificate in `path` expires; a certificate that cannot be read is logged
/// (the process that serves it reports the real error).
pub fn certificate_expiry(name: &'static str, path: &std::path::Path) {
    match teletip_link::tls::certificate_expiry(path) {
        Ok(at) => gauge!("teletip_tls_certificate_expiry_timestamp_seconds", "certificate" => name).set(at as f64),
        Err(e) => tracing::warn!(certificate = name, "cannot read the expiry of {}: {e}", path.display()),
    }
}

/// Times one database statement; `failed` decides whether its error counts as one.
pub async fn db_statement<T, E>(
    operation: &'static str,
    statement: impl Future<Output = Result<T, E>>,
    refused: impl FnOnce(&E) -> bool,
) -> Result<T, E> {
    let started = Instant::now();
    let result = statement.await;
    histogram!("teletip_db_query_duration_seconds", "operation" => operation).record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        if !refused(e) {
            counter!("teletip_db_query_errors_total", "operation" => operation).increment(1);
        }
    }
    result
}

/// Counts a task waiting for a pooled connection while `acquire` runs.
pub async fn pool_wait<T>(acquire: impl Future<Output = T>) -> T {
    gauge!("teletip_db_pool_waiting").increment(1.0);
    let _done = scopeguard(|| gauge!("teletip_db_pool_waiting").decrement(1.0));
    acquire.await
}

/// Runs `f` when dropped: the waiting gauge comes down even when the request is cancelled.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// A background job's run ended.
pub fn job_ran(job: Job, succeeded: bool) {
    if succeeded {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        gauge!("teletip_job_last_success_timestamp_seconds", "task" => job.label()).set(now.as_secs_f64());
    } else {
        counter!("teletip_job_failures_total", "task" => job.label()).increment(1);
    }
}

/// An audit chain verification's result.
pub fn audit_chain_verified(intact: bool) {
    let outcome = if intact { "intact" } else { "broken" };
    counter!("teletip_audit_chain_verifications_total", "outcome" => outcome).increment(1);
}

/// A booking request's outcome at the store.
pub fn booking(booked: bool) {
    counter!("teletip_bookings_total", "outcome" => if booked { "booked" } else { "conflict" }).increment(1);
}

/// A Socket.IO connection to /rtc opened (`true`) or closed.
pub fn signaling_socket(opened: bool) {
    if opened {
        gauge!("teletip_signaling_sockets").increment(1.0);
    } else {
        gauge!("teletip_signaling_sockets").decrement(1.0);
    }
}

pub fn signaling_rooms(rooms: usize) {
    gauge!("teletip_signaling_rooms").set(rooms as f64);
}

pub fn consultation_joined(practitioner: bool) {
    counter!("teletip_consultation_joins_total", "role" => if practitioner { "practitioner" } else { "patient" })
        .increment(1);
}

pub fn consultation_ended() {
    counter!("teletip_consultations_ended_total").increment(1);
}

/// A patient admitted after waiting `waited`.
pub fn lobby_admitted(waited: Duration) {
    histogram!("teletip_lobby_wait_seconds").record(waited.as_secs_f64());
}

pub fn lobby_denied() {
    counter!("teletip_lobby_denied_total").increment(1);
}

/// How an ICE credential request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceOutcome {
    Issued,
    Unavailable,
    Failed,
}

impl IceOutcome {
    pub const ALL: &'static [IceOutcome] = &[IceOutcome::Issued, IceOutcome::Unavailable, IceOutcome::Failed];

    pub fn of<T>(answer: &Result<T, ApiError>) -> IceOutcome {
        match answer {
            Ok(_) => IceOutcome::Issued,
            Err(ApiError::Unavailable(_) | ApiError::Overloaded { .. }) => IceOutcome::Unavailable,
            Err(_) => IceOutcome::Failed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IceOutcome::Issued => "issued",
            IceOutcome::Unavailable => "unavailable",
            IceOutcome::Failed => "failed",
        }
    }
}

/// The per-route series of one method, route and status, registered once.
struct HttpSeries {
    method: axum::http::Method,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Records one answered request in `http_requests_total{method,route,status}` and
/// `http_request_duration_seconds{method,route}` (`app.rs`, `request_context`).
///
/// Why handles kept per method, route and status rather than `counter!` with labels: the
/// macro built three label strings and looked the series up in the registry on every request.
/// Here the series are registered at the first request of their kind and found again under one
/// short lock. The recorder is installed before the server starts (`main.rs`), so no handle is
/// registered before it. The routes are templates and the statuses a few, so the map stays small.
pub fn http_request(method: &axum::http::Method, route: &str, status: u16, took: Duration) {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static SERIES: LazyLock<Mutex<HashMap<String, Vec<HttpSeries>>>> = LazyLock::new(Default::default);
    let mut series = SERIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !series.contains_key(route) {
        series.insert(route.to_owned(), Vec::new());
    }
    let of_route = series.get_mut(route).expect("inserted above");
    let at = match of_route.iter().position(|s| s.status == status && s.method == *method) {
        Some(at) => at,
        None => {
            let (m, r) = (method.to_string(), route.to_owned());
            of_route.push(HttpSeries {
                method: method.clone(),
                status,
                requests: counter!("http_requests_total", "method" => m.clone(), "route" => r.clone(), "status" => status.to_string()),
                duration: histogram!("http_request_duration_seconds", "method" => m, "route" => r),
            });
            of_route.len() - 1
        }
    };
    of_route[at].requests.increment(1);
    of_route[at].duration.record(took.as_secs_f64());
}

/// Counts an ICE credential answer and hands it back.
pub fn ice_answer<T>(answer: Result<T, ApiError>) -> Result<T, ApiError> {
    counter!("teletip_ice_answers_total", "outcome" => IceOutcome::of(&answer).label()).increment(1);
    answer
}
