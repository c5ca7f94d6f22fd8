//! What every handler shares: the application state (configuration, store, keys, the audit
//! helper) and the caller's address. It sits beneath the handlers and imports none of them;
//! `app.rs` assembles the handlers' routers on top of it.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::auth::jwt::JwtKeys;
use crate::config::ControlConfig;
use crate::problem::ApiError;
use crate::store::{DynStore, NewAuditEvent};

struct Inner {
    config: ControlConfig,
    store: DynStore,
    jwt: JwtKeys,
    /// (key id, secret) shared with the relays; the first issues.
    ice_secrets: Vec<(String, Vec<u8>)>,
    metrics: PrometheusHandle,
    fields: crate::crypto::FieldKeys,
    /// A real Argon2id hash of nothing, verified against when an e-mail is unknown.
    dummy_hash: String,
    /// The relay nodes connected through the relay link (empty without one).
    relays: Arc<crate::relays::Relays>,
    /// Where ended sessions are announced to the signaling layer.
    sessions_ended: crate::auth::ended::SessionsEnded,
    clock: crate::clock::Clock,
    /// The VAPID key pair, set once by `notify::start` when Web Push is on.
    vapid: std::sync::OnceLock<Arc<crate::notify::webpush_vapid::Vapid>>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(
        config: ControlConfig,
        store: DynStore,
        jwt: JwtKeys,
        ice_secrets: Vec<(String, Vec<u8>)>,
        metrics: PrometheusHandle,
        fields: crate::crypto::FieldKeys,
        clock: crate::clock::Clock,
    ) -> AppState {
        let dummy_hash = crate::auth::password::hash("not a password of anybody");
        let stale_after = config.relay_link.as_ref().map_or(15, |l| l.stale_after_seconds);
        // With Redis, instances share what they know of the relays (relays/shared.rs).
        let redis = config.redis_url.as_deref().and_then(|url| match redis::Client::open(url) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!(error = %e, "redis-url: the relay registry is NOT shared; each instance knows its own relays");
                None
            }
        });
        let relays = Arc::new(crate::relays::Relays::new(std::time::Duration::from_secs(stale_after), redis));
        let sessions_ended = Default::default();
        AppState(Arc::new(Inner {
            config,
            store,
            jwt,
            ice_secrets,
            metrics,
            fields,
            dummy_hash,
            relays,
            sessions_ended,
            clock,
            vapid: std::sync::OnceLock::new(),
        }))
    }

    /// The VAPID key pair: `None` while Web Push is off.
    pub fn vapid(&self) -> Option<&Arc<crate::notify::webpush_vapid::Vapid>> {
        self.0.vapid.get()
    }

    /// Sets the VAPID key pair (once; a second call changes nothing).
    pub fn set_vapid(&self, vapid: Arc<crate::notify::webpush_vapid::Vapid>) {
        let _ = self.0.vapid.set(vapid);
    }

    /// Where every time-dependent rule reads `now` (see clock.rs).
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.0.clock
    }

    pub fn sessions_ended(&self) -> &crate::auth::ended::SessionsEnded {
        &self.0.sessions_ended
    }

    pub fn relays(&self) -> &Arc<crate::relays::Relays> {
        &self.0.relays
    }

    /// Keys for patient identifying fields.
    pub fn fields(&self) -> &crate::crypto::FieldKeys {
        &self.0.fields
    }

    pub fn config(&self) -> &ControlConfig {
        &self.0.config
    }

    pub fn store(&self) -> &DynStore {
        &self.0.store
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.0.jwt
    }

    /// The Prometheus exposition of this process's metrics.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.0.metrics
    }

    pub fn dummy_hash(&self) -> &str {
        &self.0.dummy_hash
    }

    /// Every ICE secret, the issuing one first.
    pub fn ice_secrets(&self) -> &[(String, Vec<u8>)] {
        &self.0.ice_secrets
    }

    pub fn ice_secret(&self) -> (&str, &[u8]) {
        let (id, secret) = &self.0.ice_secrets[0];
        (id, secret)
    }

    /// Records an audit event. A failure to audit fails the request: an unrecorded access to
    /// health data must not succeed.
    pub async fn audit(&self, audit: impl Into<NewAuditEvent>) -> Result<(), ApiError> {
        self.0.store.append_audit(audit.into()).await?;
        Ok(())
    }
}

/// The client's address as the socket saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| ClientIp(a.ip()))
            .ok_or_else(|| ApiError::Internal("no peer address on the connection".into()))
    }
}

/// The account of a valid bearer token (verified: a forged token cannot spend someone else's
/// budget).
pub(crate) fn bearer_subject(state: &AppState, headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| state.jwt().verify(t.trim()).ok())
        .map(|claims| claims.sub.to_string())
}
