//! The delivery worker: claims due outbox rows under a lease, sends each as a signed webhook
//! or an encrypted Web Push message (webpush.rs) in its own task (a slow or hanging endpoint holds only its own deliveries, for at most the
//! request timeout), and records the outcome: delivered, retry later, or dead letter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rand::Rng;
use time::{Duration, OffsetDateTime};

use super::NotifyError;
use super::config::NotificationsConfig;
use super::event::EventKind;
use super::schedule::retry_delay;
use super::sign;
use super::webpush::{self, Attempt};
use crate::state::AppState;
use crate::store::{DeliveryOutcome, NewAuditEvent, OutboxEntry};

/// The audit action of a delivery that became a dead letter.
pub const AUDIT_DEAD_LETTER: &str = "notification.dead-letter";

/// Deliveries claimed per look at the queue.
const BATCH: i64 = 32;

/// A configured webhook endpoint with its secret read.
pub struct Endpoint {
    pub name: String,
    pub url: reqwest::Url,
    secret: Vec<u8>,
    pub events: Vec<EventKind>,
}

/// The endpoints of `cfg`, each with its secret read from its file (the first non-empty line
/// that is not a comment).
pub fn endpoints(cfg: &NotificationsConfig) -> Result<Arc<HashMap<String, Endpoint>>, NotifyError> {
    let mut out = HashMap::new();
    for w in &cfg.webhooks {
        let path = w.secret_file.display().to_string();
        let text = std::fs::read_to_string(&w.secret_file).map_err(|source| NotifyError::Secret {
            name: w.name.clone(),
            path: path.clone(),
            source,
        })?;
        let secret = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
        if secret.len() < 16 {
            return Err(NotifyError::ShortSecret { name: w.name.clone(), path });
        }
        // Validated with the configuration.
        let url = reqwest::Url::parse(&w.url).expect("validated webhook url");
        out.insert(
            w.name.clone(),
            Endpoint { name: w.name.clone(), url, secret: secret.as_bytes().to_vec(), events: w.events.clone() },
        );
    }
    Ok(Arc::new(out))
}

/// Runs until the process ends: every `poll-interval-ms`, claims what is due and delivers it.
pub async fn run(state: AppState, endpoints: Arc<HashMap<String, Endpoint>>) {
    let cfg = state.config().notifications.clone();
    let timeout = StdDuration::from_secs(cfg.request_timeout_seconds);
    let client = match reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notifications: no HTTP client; nothing will be delivered");
            return;
        }
    };
    // Unique per process: a claim names who holds it.
    let worker = format!("worker-{}", uuid::Uuid::new_v4().simple());
    // A claim outlives the longest request, so no other worker takes a delivery in flight.
    let lease = Duration::seconds(cfg.request_timeout_seconds as i64 * 2 + 5);
    let mut tick = tokio::time::interval(StdDuration::from_millis(cfg.poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock().now();
        match state.store().claim_notifications(&worker, now, now + lease, BATCH).await {
            Ok(claimed) => {
                for entry in claimed {
                    let (state, client, endpoints, worker) =
                        (state.clone(), client.clone(), endpoints.clone(), worker.clone());
                    tokio::spawn(async move { deliver(&state, &client, &endpoints, &worker, entry).await });
                }
            }
            Err(e) => tracing::warn!(error = %e, "notifications: cannot claim deliveries; retrying at the next tick"),
        }
        if let Ok(depth) = state.store().notification_depth().await {
            metrics::gauge!("teletip_control_notifications_queue_depth").set(depth.pending as f64);
            metrics::gauge!("teletip_control_notifications_dead_letters").set(depth.dead as f64);
            let age = depth.oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
            metrics::gauge!("teletip_control_notifications_oldest_age_seconds").set(age);
        }
    }
}

/// Sends one claimed delivery and records how it went.
async fn deliver(
    state: &AppState,
    client: &reqwest::Client,
    endpoints: &HashMap<String, Endpoint>,
    worker: &str,
    entry: OutboxEntry,
) {
    let push = webpush::subscription_of(&entry.endpoint);
    let (channel, attempt) = match push {
        Some(id) => ("web-push", webpush::send(state, client, id, &entry).await),
        None => {
            let result = match endpoints.get(&entry.endpoint) {
                Some(endpoint) => send(client, endpoint, &entry, state.clock().now()).await,
                // Queued for an endpoint since removed from the configuration: it can only wait
                // for its return or an admin, as a dead letter.
                None => Err(format!("endpoint {:?} is no longer configured", entry.endpoint)),
            };
            ("webhook", result.map_or_else(Attempt::Failed, |()| Attempt::Delivered))
        }
    };
    let cfg = &state.config().notifications;
    let now = state.clock().now();
    // Push deliveries count under one label: a subscription id per series would grow without end.
    let label = if push.is_some() { "web-push".to_string() } else { entry.endpoint.clone() };
    let outcome = match attempt {
        Attempt::Delivered => {
            metrics::counter!("teletip_control_notifications_delivered_total", "endpoint" => label).increment(1);
            DeliveryOutcome::Delivered
        }
        Attempt::Gone(error) => {
            if let Some(id) = push {
                webpush::forget(state, id, &error).await;
            }
            DeliveryOutcome::Discarded { error }
        }
        Attempt::Failed(error) => {
            metrics::counter!("teletip_control_notifications_failed_attempts_total", "endpoint" => label.clone())
                .increment(1);
            let failures = entry.attempts as u32 + 1;
            if failures >= cfg.max_attempts {
                metrics::counter!("teletip_control_notifications_dead_lettered_total", "endpoint" => label)
                    .increment(1);
                tracing::warn!(endpoint = %entry.endpoint, delivery = %entry.id, %error, "notification dead-lettered after {failures} attempts");
                DeliveryOutcome::Dead { error }
            } else {
                let delay = retry_delay(
                    failures,
                    Duration::seconds(cfg.retry_base_seconds as i64),
                    Duration::seconds(cfg.retry_max_seconds as i64),
                    rand::rng().random::<f64>(),
                );
                tracing::info!(endpoint = %entry.endpoint, delivery = %entry.id, %error, "notification attempt {failures} failed; retrying in {delay}");
                DeliveryOutcome::Retry { error, retry_at: now + delay }
            }
        }
    };
    let result = match &outcome {
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::Retry { .. } => "failed",
        DeliveryOutcome::Dead { .. } => "dead-lettered",
        DeliveryOutcome::Discarded { .. } => "gone",
    };
    metrics::counter!("teletip_control_notifications_deliveries_total", "channel" => channel, "outcome" => result)
        .increment(1);
    let audit = NewAuditEvent {
        at: now,
        actor: None,
        action: AUDIT_DEAD_LETTER.into(),
        target: Some(format!("delivery:{} endpoint:{} event:{}", entry.id, entry.endpoint, entry.event_id)),
        outcome: "failure:attempts-exhausted".into(),
        source_ip: None,
        request_id: None,
    };
    match state.store().finish_notification(entry.id, worker, now, outcome, audit).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery = %entry.id, "notification lease lost before its outcome was recorded"),
        Err(e) => {
            tracing::error!(delivery = %entry.id, error = %e, "notification outcome NOT recorded; it will be sent again")
        }
    }
}

/// One signed POST; `Err` says precisely why it did not count as delivered.
async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    entry: &OutboxEntry,
    now: OffsetDateTime,
) -> Result<(), String> {
    let timestamp = now.unix_timestamp();
    let body = entry.payload.as_bytes().to_vec();
    let signature = sign::signature(&endpoint.secret, timestamp, &body);
    let response = client
        .post(endpoint.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::TIMESTAMP_HEADER, timestamp.to_string())
        .header(sign::SIGNATURE_HEADER, signature)
        .header(sign::IDEMPOTENCY_HEADER, entry.event_id.to_string())
        .header("teletip-event", entry.kind.as_str())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "no answer within the request timeout".to_string()
            } else if e.is_connect() {
                format!("cannot connect: {e}")
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("HTTP {}", status.as_u16())) }
}
