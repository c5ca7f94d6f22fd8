//! Web Push delivery (RFC 8030) through the notification outbox: an event for a practitioner
//! is queued once per subscribed browser (outbox endpoint `push:<subscription id>`), so it
//! inherits the webhooks' once-only delivery across instances, retries with backoff, dead
//! letters and replay. Here: which events go to push, what a subscription is and which ones
//! are accepted, and one encrypted, VAPID-signed POST to the push service.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::NotificationsConfig;
use super::event::{self, Event, EventKind};
use super::{webpush_ece, webpush_vapid::Vapid};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;
use crate::store::{Appointment, NewAuditEvent, NewOutboxEntry, OutboxEntry, PushSubscriptionRecord};

/// The field name bound into the stored subscription's encryption and its blind index.
pub const FIELD: &str = "push.subscription";
const INDEX_FIELD: &str = "push.endpoint";
/// An outbox endpoint naming a subscription: `push:<id>`.
const ENDPOINT_PREFIX: &str = "push:";
/// The audit action when a push service says a subscription is gone.
pub const AUDIT_GONE: &str = "push.subscription.gone";
/// Longer endpoints are not a push service's.
const MAX_ENDPOINT_LEN: usize = 2048;

/// The events a practitioner's browsers receive: those about their own appointments that ask
/// for attention. Not `consultation.ended`: the practitioner ended it.
pub const PUSHED: &[EventKind] =
    &[EventKind::PatientWaiting, EventKind::Booked, EventKind::Rescheduled, EventKind::Cancelled, EventKind::Reminder];

/// A browser's subscription as kept (encrypted) in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    /// base64url, no padding.
    pub p256dh: String,
    pub auth: String,
}

impl Subscription {
    /// The push service's origin: the JWT's audience and what a user sees of a subscription.
    pub fn origin(&self) -> String {
        reqwest::Url::parse(&self.endpoint).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }

    pub fn endpoint_index(&self, state: &AppState) -> String {
        state.fields().blind_index(INDEX_FIELD, &self.endpoint)
    }

    pub fn seal(&self, state: &AppState) -> String {
        state.fields().encrypt(FIELD, &serde_json::to_string(self).expect("strings serialize"))
    }

    pub fn open(state: &AppState, record: &PushSubscriptionRecord) -> Result<Subscription, String> {
        let text = state.fields().decrypt(FIELD, &record.subscription).map_err(|e| format!("cannot decrypt: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("unreadable subscription: {e}"))
    }
}

/// Decodes base64url with or without padding (browsers' `toJSON()` omits it; some libraries
/// add it).
fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Checks a browser's PushSubscription strictly, naming every field that is wrong.
pub fn validate(cfg: &NotificationsConfig, endpoint: &str, p256dh: &str, auth: &str) -> Result<Subscription, ApiError> {
    let mut errors = Vec::new();
    let mut wrong = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    match check_endpoint(cfg, endpoint) {
        Ok(()) => {}
        Err(message) => wrong("endpoint", message),
    }
    match b64url(p256dh) {
        Some(key) if key.len() == webpush_ece::PUBLIC_KEY_LEN && webpush_ece::check_public_key(&key).is_ok() => {}
        Some(key) if key.len() == webpush_ece::PUBLIC_KEY_LEN => {
            wrong("keys.p256dh", "is not a point on the P-256 curve".into())
        }
        Some(key) => wrong(
            "keys.p256dh",
            format!("must be an uncompressed P-256 public key, 65 bytes in base64url; got {} bytes", key.len()),
        ),
        None => wrong("keys.p256dh", "is not base64url".into()),
    }
    match b64url(auth) {
        Some(secret) if secret.len() == webpush_ece::AUTH_SECRET_LEN => {}
        Some(secret) => wrong("keys.auth", format!("must be 16 bytes in base64url; got {} bytes", secret.len())),
        None => wrong("keys.auth", "is not base64url".into()),
    }
    if !errors.is_empty() {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        return Err(ApiError::Validation { detail, errors });
    }
    Ok(Subscription {
        endpoint: endpoint.to_string(),
        p256dh: p256dh.trim_end_matches('=').to_string(),
        auth: auth.trim_end_matches('=').to_string(),
    })
}

fn check_endpoint(cfg: &NotificationsConfig, endpoint: &str) -> Result<(), String> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!("is longer than {MAX_ENDPOINT_LEN} characters"));
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.web_push_allow_http => {}
        _ => return Err("must be an https URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let allowed = cfg.web_push_hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        host == h || host.strip_suffix(&h).is_some_and(|rest| rest.ends_with('.'))
    });
    if !allowed {
        return Err(format!("{host:?} is not a push service this server sends to (notifications.web-push-hosts)"));
    }
    Ok(())
}

/// Queues `event` for every browser the appointment's practitioner subscribed.
pub(crate) async fn enqueue(state: &AppState, event: &Event, a: &Appointment, occurrence: &str) {
    if !state.config().notifications.web_push || !PUSHED.contains(&event.kind) {
        return;
    }
    let subscriptions = match state.store().practitioner_push_subscriptions(a.practitioner_id).await {
        Ok(s) => s,
        Err(e) => return super::queue_failed(event.kind, &e),
    };
    if subscriptions.is_empty() {
        return;
    }
    let payload = event::push_payload(event, a, &state.config().public_base()).to_string();
    for s in subscriptions {
        let entry = NewOutboxEntry {
            event_id: event.id,
            kind: event.kind.as_str().into(),
            appointment_id: a.id,
            occurrence: occurrence.to_string(),
            endpoint: format!("{ENDPOINT_PREFIX}{}", s.id),
            payload: payload.clone(),
            now: event.at,
        };
        super::enqueued(event.kind, state.store().enqueue_notification(entry).await);
    }
}

/// The subscription an outbox endpoint names, if it names one.
pub fn subscription_of(endpoint: &str) -> Option<Uuid> {
    endpoint.strip_prefix(ENDPOINT_PREFIX).and_then(|id| Uuid::parse_str(id).ok())
}

/// How long a push service keeps a message for an offline browser, and how urgently it
/// wakes the device (RFC 8030 sections 5.2, 5.3): a waiting patient matters now or not at
/// all; a reminder until the appointment starts; a change of the schedule for a day.
fn ttl_and_urgency(kind: &str, payload: &serde_json::Value) -> (u64, &'static str) {
    match kind {
        "lobby.patient-waiting" => (10 * 60, "high"),
        "appointment.reminder" => {
            let minutes = payload["reminderMinutesBefore"].as_u64().unwrap_or(15);
            (minutes * 60, if minutes <= 60 { "high" } else { "normal" })
        }
        _ => (24 * 3600, "normal"),
    }
}

/// What one push attempt came to.
pub enum Attempt {
    Delivered,
    /// Worth retrying (a 429, a 5xx, no connection) or, after the last attempt, a dead letter.
    Failed(String),
    /// The subscription is gone: the push service said so, or the user unsubscribed.
    Gone(String),
}

/// One encrypted, VAPID-signed POST of `entry` to subscription `id`'s push service.
pub async fn send(state: &AppState, client: &reqwest::Client, id: Uuid, entry: &OutboxEntry) -> Attempt {
    let record = match state.store().push_subscription(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Attempt::Gone("the subscription was removed".into()),
        Err(e) => return Attempt::Failed(format!("cannot read the subscription: {e}")),
    };
    let Some(vapid) = state.vapid() else {
        return Attempt::Failed("web push is off (notifications.web-push)".into());
    };
    let subscription = match Subscription::open(state, &record) {
        Ok(s) => s,
        Err(e) => return Attempt::Failed(e),
    };
    let cfg = &state.config().notifications;
    match post(client, vapid, cfg, &subscription, entry, state.clock().now().unix_timestamp()).await {
        Ok(status) if status.is_success() => Attempt::Delivered,
        // RFC 8030 section 7.3: the subscription expired or was withdrawn; it never comes back.
        Ok(status) if status.as_u16() == 404 || status.as_u16() == 410 => {
            Attempt::Gone(format!("the push service answered HTTP {}", status.as_u16()))
        }
        Ok(status) => Attempt::Failed(format!("HTTP {}", status.as_u16())),
        Err(e) => Attempt::Failed(e),
    }
}

async fn post(
    client: &reqwest::Client,
    vapid: &Vapid,
    cfg: &NotificationsConfig,
    subscription: &Subscription,
    entry: &OutboxEntry,
    now: i64,
) -> Result<reqwest::StatusCode, String> {
    // Checked again: the allowed hosts may have changed since the user subscribed.
    check_endpoint(cfg, &subscription.endpoint).map_err(|e| format!("endpoint {e}"))?;
    let subject = cfg.vapid_subject.as_deref().unwrap_or_default();
    let authorization = vapid.authorization(&subscription.origin(), subject, now).map_err(|e| e.to_string())?;
    let ua_public = b64url(&subscription.p256dh).unwrap_or_default();
    let auth = b64url(&subscription.auth).unwrap_or_default();
    let body = webpush_ece::encrypt(entry.payload.as_bytes(), &ua_public, &auth).map_err(|e| e.to_string())?;
    let payload: serde_json::Value = serde_json::from_str(&entry.payload).unwrap_or_default();
    let (ttl, urgency) = ttl_and_urgency(&entry.kind, &payload);
    let response = client
        .post(&subscription.endpoint)
        .header(reqwest::header::AUTHORIZATION, authorization)
        .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header("TTL", ttl.to_string())
        .header("Urgency", urgency)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "no answer within the request timeout".to_string()
            } else {
                format!("request failed: {e}")
            }
        })?;
    Ok(response.status())
}

/// Removes a subscription whose push service said it is gone, audited.
pub async fn forget(state: &AppState, id: Uuid, reason: &str) {
    let audit = NewAuditEvent {
        at: state.clock().now(),
        actor: None,
        action: AUDIT_GONE.into(),
        target: Some(format!("push-subscription:{id}")),
        outcome: format!("removed:{reason}"),
        source_ip: None,
        request_id: None,
    };
    match state.store().delete_push_subscription(id, None, audit).await {
        Ok(true) => tracing::info!(subscription = %id, reason, "push subscription gone; removed"),
        Ok(false) => {}
        Err(e) => tracing::warn!(subscription = %id, error = %e, "push subscription gone but NOT removed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation { errors, .. } => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn endpoints_are_https_on_a_known_push_service() {
        let cfg = NotificationsConfig::default();
        assert!(validate(&cfg, "https://fcm.googleapis.com/fcm/send/abc", P256DH, AUTH).is_ok());
        assert!(validate(&cfg, "https://updates.push.services.mozilla.com/wpush/v2/x", P256DH, AUTH).is_ok());
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://evilfcm.googleapis.com.example/x",
            "https://127.0.0.1/x",
            "https://user:pw@fcm.googleapis.com/x",
            "ftp://fcm.googleapis.com/x",
            "not a url",
        ] {
            assert_eq!(fields(validate(&cfg, bad, P256DH, AUTH).unwrap_err()), ["endpoint"], "{bad}");
        }
        let local = NotificationsConfig {
            web_push_allow_http: true,
            web_push_hosts: vec!["127.0.0.1".into()],
            ..NotificationsConfig::default()
        };
        assert!(validate(&local, "http://127.0.0.1:9/push/1", P256DH, AUTH).is_ok());
    }

    #[test]
    fn keys_are_checked_for_length_and_curve_and_every_wrong_field_is_named() {
        let cfg = NotificationsConfig::default();
        let url = "https://fcm.googleapis.com/fcm/send/abc";
        assert!(validate(&cfg, url, &format!("{P256DH}="), &format!("{AUTH}==")).is_ok(), "padding is accepted");
        assert_eq!(fields(validate(&cfg, url, &P256DH[..40], AUTH).unwrap_err()), ["keys.p256dh"]);
        assert_eq!(fields(validate(&cfg, url, P256DH, "AAAA").unwrap_err()), ["keys.auth"]);
        assert_eq!(fields(validate(&cfg, url, "!!", "??").unwrap_err()), ["keys.p256dh", "keys.auth"]);
        assert_eq!(fields(validate(&cfg, "http://x", "", "").unwrap_err()), ["endpoint", "keys.p256dh", "keys.auth"]);
    }

    #[test]
    fn a_waiting_patient_is_urgent_and_short_lived() {
        assert_eq!(ttl_and_urgency("lobby.patient-waiting", &serde_json::json!({})), (600, "high"));
        assert_eq!(
            ttl_and_urgency("appointment.reminder", &serde_json::json!({"reminderMinutesBefore": 1440})),
            (86400, "normal")
        );
        assert_eq!(
            ttl_and_urgency("appointment.reminder", &serde_json::json!({"reminderMinutesBefore": 15})).1,
            "high"
        );
        assert_eq!(ttl_and_urgency("appointment.booked", &serde_json::json!({})), (86400, "normal"));
    }
}
