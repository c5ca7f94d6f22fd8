//! ICE credentials for the relays: `POST /v1/ice/credentials` returns what
//! `new RTCPeerConnection(...)` takes. The username is `<expiry>:<random session id>` (TURN
//! REST API): nothing in it identifies the person, because relays log usernames.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::config::RelayEntry;
use crate::domain::ice_lifetime::{self, TtlBounds};
use crate::problem::{ApiError, ApiResult, OptionalJson};
use crate::state::{AppState, ClientIp};
use crate::store::IssuedTurnSession;
use uuid::Uuid;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IceRequest {
    /// Requested lifetime in seconds; clamped to the configured range.
    #[serde(default, deserialize_with = "crate::problem::whole_in_range::<_, _, 1, 2_147_483_647>")]
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    pub ttl: Option<u64>,
    /// Ask for `iceTransportPolicy: "relay"` (never expose host or reflexive addresses).
    #[serde(default)]
    pub relay_only: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Shaped like `RTCConfiguration`, plus lifetimes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceResponse {
    pub ice_servers: Vec<IceServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_transport_policy: Option<&'static str>,
    /// Seconds the credential is valid.
    pub ttl: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Fetch a new credential after this time (80 % of the lifetime).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub refresh_after: OffsetDateTime,
}

fn host(h: &str) -> String {
    if h.contains(':') { format!("[{h}]") } else { h.to_string() }
}

/// The relay's URLs on `host`, then on its IPv6 address when it has one besides (bracketed).
fn turn_urls(r: &RelayEntry) -> Vec<String> {
    let mut urls = Vec::new();
    for h in std::iter::once(host(&r.host)).chain(r.ipv6_host.map(|ip| format!("[{ip}]"))) {
        if let Some(p) = r.udp_port {
            urls.push(format!("turn:{h}:{p}?transport=udp"));
        }
        if let Some(p) = r.tcp_port {
            urls.push(format!("turn:{h}:{p}?transport=tcp"));
        }
        if let Some(p) = r.tls_port {
            urls.push(format!("turns:{h}:{p}?transport=tcp"));
        }
    }
    urls
}

/// Issue a relay credential for the caller.
///
/// The body is optional (`OptionalJson`): no body, or an empty one, means the defaults, which is
/// how the README's `curl` and most clients ask; a body that is sent is held to the schema.
#[utoipa::path(post, path = "/v1/ice/credentials", tag = "ice", request_body = Option<IceRequest>, security(("bearer" = [])),
    responses((status = 200, body = IceResponse), (status = 401, body = crate::problem::Problem),
              (status = 422, body = crate::problem::Problem), (status = 429, body = crate::problem::Problem),
              (status = 503, body = crate::problem::Problem, description = "no relay is available, or none in a region this patient's media may use; or too many credentials are waiting to be recorded (with Retry-After)")))]
pub async fn issue(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    body: OptionalJson<IceRequest>,
) -> ApiResult<Json<IceResponse>> {
    let req = body.0.unwrap_or_default();
    let cfg = &state.config().ice;
    let bounds = TtlBounds { default: cfg.default_ttl, min: cfg.min_ttl, max: cfg.max_ttl };
    let expires_at = ice_lifetime::expiry(req.ttl, bounds, state.clock().now())
        .map_err(|e| ApiError::field("ttl", e.to_string()))?;
    Ok(Json(crate::observability::ice_answer(
        credentials(&state, &ip, &caller, expires_at, req.relay_only, None).await,
    )?))
}

/// The relays registered through the relay link that are healthy and not draining, least
/// loaded first; while there are none (no link, or none registered since this instance
/// started), the static `ice.relays`.
async fn relays_to_offer(state: &AppState) -> ApiResult<Vec<RelayEntry>> {
    let live = state.relays().ice_relays().await;
    if !live.is_empty() {
        metrics::counter!("teletip_ice_relay_source_total", "source" => "registry").increment(1);
        return Ok(live);
    }
    let configured = &state.config().ice.relays;
    if configured.is_empty() {
        metrics::counter!("teletip_ice_relay_source_total", "source" => "none").increment(1);
        return Err(ApiError::Unavailable(
            "no relay is available: none has registered, and ice.relays is empty".into(),
        ));
    }
    metrics::counter!("teletip_ice_relay_source_total", "source" => "static").increment(1);
    Ok(configured.clone())
}

/// Issues relay credentials valid until `expires_at` (already bounded by the caller), audited
/// under the caller, optionally for an appointment's consultation. The session is recorded
/// (who, under which login, for which appointment, until when), so that logging out, an
/// appointment's end, an erasure or an admin can revoke it (`crate::revocation`).
pub async fn credentials(
    state: &AppState,
    ip: &ClientIp,
    caller: &Caller,
    expires_at: OffsetDateTime,
    relay_only: bool,
    appointment: Option<Uuid>,
) -> ApiResult<IceResponse> {
    let now = state.clock().now();
    let ttl = ice_lifetime::ttl_seconds(expires_at, now);
    let mut raw = [0u8; 12];
    rand::rng().fill_bytes(&mut raw);
    let session_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let (secret_id, secret) = state.ice_secret();
    let (username, password) =
        teletip_turn_proto::credentials::issue(secret, &session_id, expires_at.unix_timestamp() as u64);
    let relays =
        crate::residency::permitted_relays(state, ip, caller, appointment, relays_to_offer(state).await?).await?;
    let mut servers = Vec::new();
    let stun: Vec<String> = relays
        .iter()
        .filter(|r| r.stun)
        .filter_map(|r| r.udp_port.map(|p| format!("stun:{}:{p}", host(&r.host))))
        .collect();
    if !stun.is_empty() && !relay_only {
        servers.push(IceServer { urls: stun, username: None, credential: None });
    }
    for relay in &relays {
        servers.push(IceServer {
            urls: turn_urls(relay),
            username: Some(username.clone()),
            credential: Some(password.clone()),
        });
    }
    let purpose = appointment.map_or(String::new(), |a| format!(" for:appointment:{a}"));
    let event = Audit::new("ice.credentials.issue", ip)
        .actor(caller.user_id)
        .target(format!("turn-session:{session_id} key:{secret_id} ttl:{ttl}{purpose}"))
        .into_event();
    let issued = IssuedTurnSession {
        id: session_id,
        expires_at,
        user_id: caller.user_id,
        login_session: caller.session_id,
        appointment_id: appointment,
        issued_at: now,
    };
    state.store().record_turn_session(issued, event).await?;
    metrics::counter!("teletip_ice_credentials_issued_total").increment(1);
    Ok(IceResponse {
        ice_servers: servers,
        ice_transport_policy: relay_only.then_some("relay"),
        ttl,
        expires_at,
        refresh_after: ice_lifetime::refresh_after(now, ttl),
    })
}

/// ICE credentials: the route, served and described from its `#[utoipa::path]` (app.rs puts
/// the rate limits around it).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue))
}
