//! `[notifications]`: where events go (`[[notifications.webhooks]]`), how hard delivery tries,
//! and which fields beyond the pseudonymous default a payload carries.

use serde::Deserialize;
use std::path::PathBuf;

use super::event::{EventKind, ExtraField};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub webhooks: Vec<WebhookConfig>,
    /// Attempts per delivery before it becomes a dead letter (1 to 50).
    pub max_attempts: u32,
    /// The first retry waits this long, doubling with every further failure…
    pub retry_base_seconds: u64,
    /// …at most this long (plus up to a fifth more, random, so failed deliveries do not retry
    /// in lockstep).
    pub retry_max_seconds: u64,
    /// One webhook request may take this long before it counts as failed (1 to 60).
    pub request_timeout_seconds: u64,
    /// How often the delivery worker looks for due deliveries, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often the reminder scheduler looks for appointments to remind of, in seconds.
    pub reminder_interval_seconds: u64,
    /// Reminders before an appointment's start, in minutes (default 24 h and 15 min).
    pub reminder_minutes: Vec<i64>,
    /// Fields a payload carries beyond the default pseudonymous ids, times and link; each is
    /// the operator's explicit choice and is logged at start.
    pub payload_fields: Vec<ExtraField>,
    /// Allows `http://` webhook URLs (tests, a receiver on the same host). Logged at start.
    pub allow_insecure_http: bool,
    /// Web Push (RFC 8030/8291/8292) to the browsers of practitioners who subscribe. Off by
    /// default: it sends (encrypted, minimal) messages through the browser vendors' push
    /// services.
    pub web_push: bool,
    /// The operator's contact the push services see in every VAPID JWT (`sub`): a `mailto:`
    /// or `https:` URI. Required with `web-push = true`.
    pub vapid_subject: Option<String>,
    /// The VAPID private key (PKCS#8 PEM, P-256); unset: `<data-dir>/vapid.key`, generated on
    /// first start.
    pub vapid_key_file: Option<PathBuf>,
    /// The hosts a subscription's endpoint may name (exactly, or as a parent domain): the
    /// push services of the major browsers by default. The control plane POSTs to whatever a
    /// subscription names, so this list keeps users from pointing it at internal services.
    pub web_push_hosts: Vec<String>,
    /// Allows `http://` subscription endpoints (tests with a local push service only).
    /// Logged loudly at start.
    pub web_push_allow_http: bool,
    /// Subscriptions one user may hold (one per browser or device).
    pub web_push_max_subscriptions: u32,
}

/// The push services of Chrome/Edge (FCM), Firefox (Mozilla autopush), Safari (Apple) and
/// the legacy Edge (WNS).
pub const DEFAULT_WEB_PUSH_HOSTS: &[&str] =
    &["fcm.googleapis.com", "push.services.mozilla.com", "push.apple.com", "notify.windows.com"];

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            webhooks: Vec::new(),
            max_attempts: 8,
            retry_base_seconds: 10,
            retry_max_seconds: 3600,
            request_timeout_seconds: 10,
            poll_interval_ms: 1000,
            reminder_interval_seconds: 60,
            reminder_minutes: vec![24 * 60, 15],
            payload_fields: Vec::new(),
            allow_insecure_http: false,
            web_push: false,
            vapid_subject: None,
            vapid_key_file: None,
            web_push_hosts: DEFAULT_WEB_PUSH_HOSTS.iter().map(|h| h.to_string()).collect(),
            web_push_allow_http: false,
            web_push_max_subscriptions: 10,
        }
    }
}

/// One receiver of events.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebhookConfig {
    /// A short name (letters, digits, `-`, `_`): in logs, metrics and the dead-letter list.
    pub name: String,
    pub url: String,
    /// A file holding the signing secret (16 bytes or more; the first non-empty line), so the
    /// secret stays out of this file.
    pub secret_file: PathBuf,
    /// The event types it receives; empty: all.
    #[serde(default)]
    pub events: Vec<EventKind>,
}

impl NotificationsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=50).contains(&self.max_attempts) {
            return Err("notifications.max-attempts must be between 1 and 50".into());
        }
        if self.retry_base_seconds == 0 || self.retry_base_seconds > self.retry_max_seconds {
            return Err("notifications: need 1 <= retry-base-seconds <= retry-max-seconds".into());
        }
        if !(1..=60).contains(&self.request_timeout_seconds) {
            return Err("notifications.request-timeout-seconds must be between 1 and 60".into());
        }
        if self.poll_interval_ms < 10 || self.reminder_interval_seconds == 0 {
            return Err(
                "notifications: poll-interval-ms must be at least 10, reminder-interval-seconds at least 1".into()
            );
        }
        if self.reminder_minutes.iter().any(|m| !(1..=7 * 24 * 60).contains(m)) {
            return Err("notifications.reminder-minutes: each between 1 and 10080 (a week)".into());
        }
        if self.web_push {
            match self.vapid_subject.as_deref() {
                Some(s) if (s.starts_with("mailto:") && s.len() > 7) || s.starts_with("https://") => {}
                _ => {
                    return Err("notifications.vapid-subject: web-push = true needs the operator's contact, \
                                a mailto: or https: URI (push services use it to reach you)"
                        .into());
                }
            }
            if self.web_push_hosts.is_empty() {
                return Err("notifications.web-push-hosts: empty, no subscription could be accepted".into());
            }
            if !(1..=100).contains(&self.web_push_max_subscriptions) {
                return Err("notifications.web-push-max-subscriptions must be between 1 and 100".into());
            }
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.webhooks {
            let plausible = !w.name.is_empty()
                && w.name.len() <= 64
                && w.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if !plausible {
                return Err(format!("notifications.webhooks: name {:?}: 1 to 64 letters, digits, - or _", w.name));
            }
            if !names.insert(&w.name) {
                return Err(format!("notifications.webhooks: the name {:?} is used twice", w.name));
            }
            let url = reqwest::Url::parse(&w.url)
                .map_err(|e| format!("notifications.webhooks {:?}: url {:?}: {e}", w.name, w.url))?;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_insecure_http => {}
                "http" => {
                    return Err(format!(
                        "notifications.webhooks {:?}: {:?} is not https (allow-insecure-http = true allows it)",
                        w.name, w.url
                    ));
                }
                other => return Err(format!("notifications.webhooks {:?}: scheme {other:?} is not https", w.name)),
            }
        }
        Ok(())
    }
}
