//! Control plane configuration: a TOML file (optional), with the few settings an operator
//! changes per host also available as flags and `TELETIP_CONTROL_*` variables. Running with
//! no configuration at all gives a working local service: 127.0.0.1:8080, SQLite under
//! ./data, keys generated on first start and kept there.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// The absolute URL clients reach this service at (`https://tele.example.org`), for the
    /// links it writes into responses (FHIR `fullUrl`, Bundle links). Unset: `http://` and the
    /// listen address, for local runs. Never taken from a request's `Host` header.
    pub public_url: Option<String>,
    /// `sqlite://path` (default, created if missing) or `postgres://…`.
    pub database_url: String,
    /// Where generated keys live when none are configured.
    pub data_dir: PathBuf,
    pub auth: AuthConfig,
    pub ice: IceConfig,
    pub rate_limit: RateLimitConfig,
    pub field_encryption: FieldEncryptionConfig,
    pub scheduling: SchedulingConfig,
    pub retention: RetentionConfig,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Redis for several control instances (`redis://host:port/`): signaling rooms and events,
    /// and the rate-limit buckets. Unset: one instance, all in memory.
    pub redis_url: Option<String>,
    /// The QUIC server relay nodes dial to register and report their load. Unset: no relay
    /// link; ICE credentials name the static `ice.relays`.
    pub relay_link: Option<RelayLinkConfig>,
    /// The region this deployment keeps data in (`tr`, `eu-de`: 1 to 32 lowercase letters,
    /// digits or dashes): the data region of new patients and practices that get none, and
    /// the region of relays that report none. Unset: no region applies, every relay is named.
    pub deployment_region: Option<crate::domain::residency::Region>,
    /// The reverse proxies (CIDRs, `10.0.0.0/8`, `127.0.0.1/32`) whose `X-Forwarded-For`
    /// (else `Forwarded: for=`) names the client for rate limits, the login throttle and the
    /// audit trail. From any other peer those headers are ignored. Empty (the default): no
    /// header is trusted, the client is the TCP peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Web origins (`https://app.example.org`) whose pages may call the API from the browser
    /// (CORS). Empty (the default): same origin only, no CORS answer at all.
    pub cors_allowed_origins: Vec<String>,
    /// `text` (default) or `json`: one JSON object per line, for a log collector.
    pub log_format: LogFormat,
    pub backup: BackupConfig,
    /// Webhooks for appointment and consultation events (docs/notifications.md).
    pub notifications: crate::notify::config::NotificationsConfig,
}

/// The format of the log lines on standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `teletip-control backup` and `restore`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The backup key: 32 bytes as 64 hex digits or base64 (`openssl rand -base64 32`). Keep a
    /// copy away from the backups and the host: without it no backup can be read. Unset:
    /// `backup` and `restore` need `--key-file`.
    pub key_file: Option<PathBuf>,
}

/// The control link's server side (mutual TLS: every relay presents a certificate signed by
/// `client-ca`; its DNS name, else its common name, is the node's name).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RelayLinkConfig {
    /// UDP address to listen on, e.g. `0.0.0.0:7443`.
    pub listen: SocketAddr,
    /// The control plane's certificate chain (PEM), which relays verify with their control-ca.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) relay node certificates must chain to.
    pub client_ca: PathBuf,
    /// How often relays report their load, in seconds.
    #[serde(default = "five")]
    pub report_seconds: u64,
    /// A relay that has not reported for this long is left out of ICE answers, in seconds.
    #[serde(default = "fifteen")]
    pub stale_after_seconds: u64,
    /// Send the `[ice]` secrets to every relay that registers, which then accepts them beside
    /// its own secret files: a rotation is then done here alone.
    #[serde(default = "yes")]
    pub push_secrets: bool,
}

fn five() -> u64 {
    5
}

fn fifteen() -> u64 {
    15
}

/// How long records are kept (KVKK art. 7, HIPAA 164.316(b)(2)). The retention job applies
/// these and audits every purge.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long an erased patient's anonymised medical record (their consultations) is kept
    /// after their last consultation, in days. The default (20 years) errs long on purpose:
    /// set what your jurisdiction and institution require.
    pub medical_record_days: i64,
    /// Expired login sessions are kept this many days for security investigations, then
    /// deleted with their refresh tokens.
    pub session_days: i64,
    /// How often the retention job runs, in seconds.
    pub interval_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { medical_record_days: 20 * 365, session_days: 90, interval_seconds: 3600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// The consultation room opens this many minutes before the appointment starts…
    pub join_before_minutes: i64,
    /// …and closes this many minutes after it ends.
    pub join_after_minutes: i64,
    /// A booked appointment whose start is this many minutes past without the patient
    /// arriving becomes a no-show.
    pub no_show_grace_minutes: i64,
    /// How often the no-show sweeper runs, in seconds.
    pub sweep_interval_seconds: u64,
    /// A care relationship (the right of a practitioner to read a patient's record) lasts
    /// from the booking until this many days after the appointment's end.
    pub care_relationship_days: i64,
    /// A booking (or rescheduling) must start at least this many minutes after it is made.
    pub min_lead_minutes: i64,
    /// …and at most this many days after it.
    pub max_horizon_days: i64,
    /// A patient may not cancel or reschedule a booked appointment less than this many hours
    /// before its start (staff may).
    pub patient_cancel_window_hours: i64,
    /// A `proposed` or `pending` appointment nobody confirms is cancelled this many hours
    /// after it was made (at its start at the latest).
    pub proposal_expiry_hours: i64,
}

impl SchedulingConfig {
    /// The booking rules of a practice without its own (`PUT /v1/practices/{id}/booking-rules`).
    pub fn default_rule_values(&self) -> crate::domain::booking::RuleValues {
        crate::domain::booking::RuleValues {
            min_lead_minutes: self.min_lead_minutes,
            max_horizon_days: self.max_horizon_days,
            slot_minutes: None,
            patient_cancel_window_hours: self.patient_cancel_window_hours,
            proposal_expiry_hours: self.proposal_expiry_hours,
        }
    }
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig {
            join_before_minutes: 15,
            join_after_minutes: 30,
            no_show_grace_minutes: 15,
            sweep_interval_seconds: 60,
            care_relationship_days: 30,
            min_lead_minutes: 0,
            max_horizon_days: 365,
            patient_cancel_window_hours: 0,
            proposal_expiry_hours: 48,
        }
    }
}

/// Keys for patient identifying fields (AES-256-GCM) and their blind indexes. Empty: generated
/// into data-dir/field.key and data-dir/index.key on first start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FieldEncryptionConfig {
    /// 32-byte keys as 64 hex digits or base64; the first encrypts, all decrypt (rotation).
    pub data_keys: Vec<KeyConfig>,
    /// The blind-index key. Never rotate it without re-indexing every patient.
    pub index_key: Option<KeyConfig>,
}

impl ControlConfig {
    /// The public base URL without a trailing slash (see `public-url`).
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "sqlite://data/teletip-control.db".into(),
            data_dir: PathBuf::from("data"),
            auth: AuthConfig::default(),
            ice: IceConfig::default(),
            rate_limit: RateLimitConfig::default(),
            field_encryption: FieldEncryptionConfig::default(),
            scheduling: SchedulingConfig::default(),
            retention: RetentionConfig::default(),
            max_body_bytes: 64 * 1024,
            redis_url: None,
            relay_link: None,
            deployment_region: None,
            log_format: LogFormat::Text,
            backup: BackupConfig::default(),
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            notifications: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Access token lifetime in seconds (at most 900: HIPAA short sessions).
    pub access_ttl: u64,
    /// Absolute lifetime of a login session (its refresh tokens) in seconds.
    pub session_ttl: u64,
    /// Failed logins of one account from one source address (an IPv4 address or an IPv6 /64)
    /// before that pair is slowed down. (`lockout-threshold`, its former name, still reads.)
    #[serde(alias = "lockout-threshold")]
    pub throttle_after: i64,
    /// The first delay, in seconds; it doubles with every further failure of the pair.
    pub throttle_base_seconds: i64,
    /// The longest delay, in seconds. (`lockout-seconds`, its former name, still reads.)
    #[serde(alias = "lockout-seconds")]
    pub throttle_max_seconds: i64,
    pub password_min_length: usize,
    /// JWT signing keys (HS256). The first signs; all verify (rotation). Empty: one key is
    /// generated into data-dir/jwt.key.
    pub jwt_keys: Vec<KeyConfig>,
    /// `iss` and `aud` of access tokens.
    pub issuer: String,
    /// A program run for each password-reset request of an existing, enabled account, with
    /// `TELETIP_RESET_EMAIL`, `TELETIP_RESET_TOKEN`, `TELETIP_RESET_LINK` and
    /// `TELETIP_RESET_EXPIRES_AT` in its environment (never in its arguments), to deliver the
    /// link. Unset: requests are answered and audited but nothing is sent; an admin uses
    /// `teletip-control user reset-password`.
    pub password_reset_hook: Option<PathBuf>,
    /// How long a password-reset token works, in seconds (60 to 86400).
    pub password_reset_ttl_seconds: u64,
    /// Roles whose accounts must use a TOTP second factor (`["admin", "practitioner"]`). Such
    /// an account without one may log in, but its session can only enroll (every other
    /// endpoint, ICE credentials and signaling answer 403 `mfa-enrollment-required`). Empty
    /// (the default): MFA is each user's choice.
    pub mfa_required_roles: Vec<crate::store::Role>,
}

impl AuthConfig {
    /// The login throttle these settings describe; failures are forgotten after a day.
    pub fn throttle(&self) -> crate::store::ThrottlePolicy {
        crate::store::ThrottlePolicy {
            free_failures: self.throttle_after,
            base: time::Duration::seconds(self.throttle_base_seconds),
            max: time::Duration::seconds(self.throttle_max_seconds),
            forget_after: time::Duration::days(1),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl: 600,
            session_ttl: 12 * 3600,
            throttle_after: 5,
            throttle_base_seconds: 1,
            throttle_max_seconds: 900,
            password_min_length: 12,
            jwt_keys: Vec::new(),
            issuer: "teletip-control".into(),
            password_reset_hook: None,
            password_reset_ttl_seconds: 1800,
            mfa_required_roles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeyConfig {
    pub key_id: String,
    /// The key itself, or…
    pub secret: Option<String>,
    /// …a file holding it.
    pub secret_file: Option<PathBuf>,
}

impl KeyConfig {
    pub fn load(&self) -> anyhow::Result<String> {
        match (&self.secret, &self.secret_file) {
            (Some(s), None) => Ok(s.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                let line = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .ok_or_else(|| anyhow::anyhow!("{} holds no secret", path.display()))?;
                Ok(secret_of_line(line).to_string())
            }
            _ => anyhow::bail!("key {:?}: give exactly one of secret or secret-file", self.key_id),
        }
    }
}

/// The secret of a line in the format teletip-relay's secret files use: `key-id=secret`
/// (a plausible key id and a secret of 16 bytes or more) or a bare secret. Reading both files
/// the same way lets one file serve the relay and the control plane.
pub fn secret_of_line(line: &str) -> &str {
    if let Some((id, value)) = line.split_once('=') {
        let plausible_id = !id.trim().is_empty()
            && id.trim().len() <= 64
            && id.trim().bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if plausible_id && value.trim().len() >= 16 {
            return value.trim();
        }
    }
    line
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IceConfig {
    /// Credential lifetime when the client asks for none, in seconds.
    pub default_ttl: u64,
    pub min_ttl: u64,
    pub max_ttl: u64,
    /// The REST API secrets shared with the relays (the first issues; relays accept all).
    /// Empty: one is generated into data-dir/relay.secret for a local relay to read.
    pub secrets: Vec<KeyConfig>,
    /// The relays to hand out, best first.
    pub relays: Vec<RelayEntry>,
    /// Issued credentials waiting for their group commit at most; beyond, requests are
    /// answered 503 with Retry-After (store/turn_writer.rs).
    pub write_queue: usize,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            default_ttl: 600,
            min_ttl: 60,
            max_ttl: 3600,
            secrets: Vec::new(),
            relays: vec![RelayEntry {
                host: "127.0.0.1".into(),
                ipv6_host: None,
                udp_port: Some(3478),
                // teletip-relay serves TCP on its UDP port by default (no-tcp = false).
                tcp_port: Some(3478),
                tls_port: None,
                stun: true,
                region: None,
            }],
            write_queue: crate::store::DEFAULT_TURN_WRITE_QUEUE,
        }
    }
}

/// One relay as clients reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RelayEntry {
    /// Host name or address clients use (IPv6 without brackets).
    pub host: String,
    /// The relay's IPv6 address when `host` is an IPv4 address and the relay serves IPv6 too:
    /// its URLs are listed as well, bracketed.
    #[serde(default)]
    pub ipv6_host: Option<std::net::Ipv6Addr>,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    /// TURN over TLS (`turns:`), usually 443 to get through hospital firewalls.
    pub tls_port: Option<u16>,
    /// Also list it as a STUN server.
    #[serde(default = "yes")]
    pub stun: bool,
    /// The region it is in (a region label); unset: the deployment's region. Relays that
    /// register over the link report their own (`teletip-relay --region`).
    #[serde(default)]
    pub region: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Login, refresh and credential requests per source IP: sustained per second and burst.
    pub per_ip_per_second: u64,
    pub per_ip_burst: u32,
    /// Credential requests per account.
    pub per_account_per_second: u64,
    pub per_account_burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { per_ip_per_second: 2, per_ip_burst: 20, per_account_per_second: 1, per_account_burst: 10 }
    }
}

impl ControlConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<ControlConfig> {
        let mut config = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            None => ControlConfig::default(),
        };
        config.validate()?;
        config.auth.access_ttl = config.auth.access_ttl.min(900);
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.auth.access_ttl >= 30, "auth.access-ttl must be at least 30 s");
        anyhow::ensure!(self.auth.throttle_after >= 1, "auth.throttle-after must be at least 1");
        anyhow::ensure!(
            self.auth.throttle_base_seconds >= 1 && self.auth.throttle_base_seconds <= self.auth.throttle_max_seconds,
            "auth: need 1 <= throttle-base-seconds <= throttle-max-seconds"
        );
        anyhow::ensure!(self.auth.password_min_length >= 8, "auth.password-min-length must be at least 8");
        anyhow::ensure!(
            (60..=86400).contains(&self.auth.password_reset_ttl_seconds),
            "auth.password-reset-ttl-seconds must be between 60 and 86400"
        );
        anyhow::ensure!(
            self.ice.min_ttl >= 1
                && self.ice.min_ttl <= self.ice.default_ttl
                && self.ice.default_ttl <= self.ice.max_ttl,
            "ice: need 1 <= min-ttl <= default-ttl <= max-ttl"
        );
        anyhow::ensure!(
            (1..=1_000_000).contains(&self.ice.write_queue),
            "ice.write-queue must be between 1 and 1000000"
        );
        // With a relay link the relays register themselves; the static list is then only what
        // is handed out while none has.
        anyhow::ensure!(
            !self.ice.relays.is_empty() || self.relay_link.is_some(),
            "ice.relays: at least one relay (or a [relay-link] the relays register through)"
        );
        if let Some(link) = &self.relay_link {
            anyhow::ensure!(link.report_seconds >= 1, "relay-link.report-seconds must be at least 1");
            anyhow::ensure!(
                link.stale_after_seconds > link.report_seconds,
                "relay-link.stale-after-seconds must be longer than report-seconds"
            );
        }
        for r in &self.ice.relays {
            anyhow::ensure!(!r.host.trim().is_empty(), "ice.relays: a relay without a host");
            if let Some(region) = &r.region {
                crate::domain::residency::Region::parse(region)
                    .map_err(|e| anyhow::anyhow!("ice.relays: relay {:?}: region {region:?}: {e}", r.host))?;
            }
            anyhow::ensure!(
                r.udp_port.is_some() || r.tcp_port.is_some() || r.tls_port.is_some(),
                "ice.relays: relay {:?} has no udp-port, tcp-port or tls-port",
                r.host
            );
        }
        anyhow::ensure!(self.auth.session_ttl >= 60, "auth.session-ttl must be at least 60 s");
        anyhow::ensure!(self.max_body_bytes >= 1024, "max-body-bytes must be at least 1024");
        anyhow::ensure!(
            self.retention.medical_record_days >= 0 && self.retention.session_days >= 0,
            "retention: medical-record-days and session-days must not be negative"
        );
        anyhow::ensure!(self.retention.interval_seconds >= 1, "retention.interval-seconds must be at least 1");
        anyhow::ensure!(
            self.scheduling.care_relationship_days >= 0,
            "scheduling.care-relationship-days must be at least 0"
        );
        // The same ranges as a practice's own rules; the message names the key.
        self.scheduling.default_rule_values().validate().map_err(|e| {
            let key = match e.field {
                "minLeadMinutes" => "min-lead-minutes",
                "maxHorizonDays" => "max-horizon-days",
                "patientCancelWindowHours" => "patient-cancel-window-hours",
                _ => "proposal-expiry-hours",
            };
            anyhow::anyhow!("scheduling.{key} {}", e.message)
        })?;
        for origin in &self.cors_allowed_origins {
            anyhow::ensure!(
                crate::edge::is_origin(origin),
                "cors-allowed-origins: {origin:?} is not an origin (scheme://host[:port], no path, no trailing slash)"
            );
        }
        if let Some(url) = &self.public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or("");
            anyhow::ensure!(
                !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', ' ']),
                "public-url must be an absolute http:// or https:// URL without query or fragment, got {url:?}"
            );
        }
        self.notifications.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::secret_of_line;

    #[test]
    fn secret_lines_are_read_like_the_relay_reads_them() {
        assert_eq!(secret_of_line("local=0123456789abcdef0123"), "0123456789abcdef0123");
        assert_eq!(secret_of_line("c2VjcmV0LXNlY3JldC1zZWNyZXQ="), "c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        assert_eq!(secret_of_line("plain-secret-without-equals"), "plain-secret-without-equals");
    }
}
