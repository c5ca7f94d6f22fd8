//! The application: shared state, the router with its middleware, health, metrics, OpenAPI.

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor};
use utoipa::OpenApi;

use crate::audit::Audit;
use crate::auth::jwt::JwtKeys;
use crate::config::ControlConfig;
use crate::problem::{ApiError, REQUEST_ID};
use crate::store::DynStore;

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
        }))
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
    pub async fn audit(&self, audit: Audit) -> Result<(), ApiError> {
        self.0.store.append_audit(audit.into_event()).await?;
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

/// Gives every request an id (the caller's `X-Request-Id` if it is sane, else a new UUID),
/// makes it available to error responses and logs, echoes it back, and records per-route
/// request counts and latency.
async fn request_context(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Rate-limit key for credential requests: the account of a valid bearer token (verified, so
/// that forged tokens cannot spend someone else's budget), else the peer address. The per-IP
/// limit applies as well.
#[derive(Clone)]
struct AccountKey(AppState);

impl KeyExtractor for AccountKey {
    type Key = String;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<Self::Key, tower_governor::GovernorError> {
        match bearer_subject(&self.0, req.headers()) {
            Some(s) => Ok(s),
            None => PeerIpKeyExtractor.extract(req).map(|ip| ip.to_string()),
        }
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

/// With `redis-url`, the same limits once more, shared by every instance (`ratelimit.rs`).
fn shared_limits(state: &AppState) -> Option<Arc<crate::ratelimit::SharedLimits>> {
    let url = state.config().redis_url.as_deref()?;
    match redis::Client::open(url) {
        Ok(client) => {
            tracing::info!("rate limits are shared with the other instances through Redis");
            Some(crate::ratelimit::SharedLimits::new(client))
        }
        Err(e) => {
            tracing::error!(error = %e, "redis-url: rate limits are NOT shared; each instance keeps its own");
            None
        }
    }
}

fn too_many(_: tower_governor::GovernorError) -> Response {
    ApiError::TooManyRequests.into_response()
}

pub fn router(state: AppState) -> Router {
    let rl = &state.config().rate_limit;
    let per_ip = Arc::new(
        GovernorConfigBuilder::default()
            .per_millisecond((1000 / rl.per_ip_per_second.max(1)).max(1))
            .burst_size(rl.per_ip_burst.max(1))
            .error_handler(too_many)
            .key_extractor(PeerIpKeyExtractor)
            .finish()
            .expect("valid rate limit"),
    );
    let per_account = Arc::new(
        GovernorConfigBuilder::default()
            .per_millisecond((1000 / rl.per_account_per_second.max(1)).max(1))
            .burst_size(rl.per_account_burst.max(1))
            .error_handler(too_many)
            .key_extractor(AccountKey(state.clone()))
            .finish()
            .expect("valid rate limit"),
    );
    let mut limited_by_ip = Router::new()
        .route("/v1/auth/login", post(crate::auth::login))
        .route("/v1/auth/refresh", post(crate::auth::refresh))
        .layer(GovernorLayer { config: per_ip.clone() });
    let mut credentials = Router::new()
        .route("/v1/ice/credentials", post(crate::ice::issue))
        .layer(GovernorLayer { config: per_account })
        .layer(GovernorLayer { config: per_ip });
    if let Some(limits) = shared_limits(&state) {
        use crate::ratelimit::{KeyBy, Limit, SharedLimit, enforce};
        let by_ip = SharedLimit {
            limits: limits.clone(),
            limit: Limit::new("ip", rl.per_ip_per_second, rl.per_ip_burst),
            key_by: KeyBy::PeerIp,
        };
        let by_account = SharedLimit {
            limits,
            limit: Limit::new("account", rl.per_account_per_second, rl.per_account_burst),
            key_by: KeyBy::Account(state.clone()),
        };
        // Outermost, like the per-instance layers: the per-IP bucket first, then the account's.
        limited_by_ip = limited_by_ip.layer(middleware::from_fn_with_state(by_ip.clone(), enforce));
        credentials = credentials
            .layer(middleware::from_fn_with_state(by_account, enforce))
            .layer(middleware::from_fn_with_state(by_ip, enforce));
    }
    Router::new()
        .merge(limited_by_ip)
        .merge(credentials)
        .route("/v1/auth/logout", post(crate::auth::logout))
        .route("/v1/me", get(crate::auth::me))
        .route("/v1/users", get(crate::users::list).post(crate::users::create))
        .route("/v1/users/{id}", get(crate::users::get).merge(patch(crate::users::update)))
        .route("/v1/audit", get(crate::audit::list))
        .route("/v1/relays", get(crate::relays::routes::list))
        .route("/v1/relays/{node}/drain", post(crate::relays::routes::drain))
        .route("/v1/relays/{node}/resume", post(crate::relays::routes::resume))
        .route("/v1/practitioners", get(crate::scheduling::practitioners::list).post(crate::scheduling::practitioners::create))
        .route("/v1/practitioners/{id}", get(crate::scheduling::practitioners::get))
        .route("/v1/practitioners/{id}/availability", axum::routing::put(crate::scheduling::schedule::set))
        .route("/v1/availability", get(crate::scheduling::schedule::free))
        .route("/v1/patients", get(crate::scheduling::patients::list).post(crate::scheduling::patients::create))
        .route("/v1/patients/{id}", get(crate::scheduling::patients::get).patch(crate::scheduling::patients::update))
        .route("/v1/patients/{id}/erasure", post(crate::privacy::erasure::erase_patient))
        .route("/v1/privacy-notices", get(crate::privacy::notices::list).post(crate::privacy::notices::publish))
        .route("/v1/privacy-notices/current", get(crate::privacy::notices::current))
        .route("/v1/privacy-notices/{version}", get(crate::privacy::notices::get))
        .route("/v1/me/consents", get(crate::privacy::consents::mine).post(crate::privacy::consents::record))
        .route("/v1/users/{id}/consents", get(crate::privacy::consents::of_user))
        .route("/v1/me/export", get(crate::privacy::export::export))
        .route("/v1/me/erasure", post(crate::privacy::erasure::erase_me))
        .route("/v1/admin/retention/run", post(crate::privacy::retention::run_now))
        .route("/v1/appointments", get(crate::scheduling::appointments::list).post(crate::scheduling::appointments::book))
        .route("/v1/appointments/{id}", get(crate::scheduling::appointments::get))
        .route("/v1/appointments/{id}/session", post(crate::scheduling::session::join))
        .route("/v1/appointments/{id}/{action}", post(crate::scheduling::appointments::change))
        .merge(crate::fhir::routes::router())
        .merge(crate::web::router())
        .route("/openapi.json", get(openapi_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            let mut r = ApiError::BadRequest("this method is not allowed on this resource".into()).into_response();
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let body = serde_json::json!({"type": "/problems/method-not-allowed", "title": "Method not allowed", "status": 405,
                "requestId": crate::problem::current_request_id()});
            *r.body_mut() = axum::body::Body::from(body.to_string());
            r
        })
        .layer(middleware::from_fn_with_state(state.clone(), crate::audit::audit_refusals))
        .layer(axum::extract::DefaultBodyLimit::max(state.config().max_body_bytes))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "teletip-control", description = "Control plane of teletip: accounts, sessions, ICE credentials for teletip-relay, audit trail."),
    paths(
        crate::auth::login, crate::auth::refresh, crate::auth::logout, crate::auth::me,
        crate::users::create, crate::users::list, crate::users::get, crate::users::update,
        crate::ice::issue, crate::audit::list, healthz, readyz,
        crate::scheduling::practitioners::create, crate::scheduling::practitioners::get,
        crate::scheduling::patients::create, crate::scheduling::patients::get,
        crate::scheduling::appointments::book, crate::scheduling::appointments::get,
        crate::scheduling::appointments::list, crate::scheduling::appointments::change,
        crate::scheduling::schedule::set, crate::scheduling::schedule::free, crate::scheduling::session::join,
        crate::scheduling::practitioners::list, crate::scheduling::patients::list, crate::scheduling::patients::update,
        crate::privacy::notices::publish, crate::privacy::notices::list, crate::privacy::notices::current,
        crate::privacy::notices::get, crate::privacy::consents::record, crate::privacy::consents::mine,
        crate::privacy::consents::of_user, crate::privacy::export::export, crate::privacy::erasure::erase_me,
        crate::privacy::erasure::erase_patient, crate::privacy::retention::run_now,
        crate::relays::routes::list, crate::relays::routes::drain, crate::relays::routes::resume,
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    modifiers(&BearerAuth, &CommonProblems),
    tags((name = "auth", description = "Login, sessions"), (name = "users", description = "Accounts"),
         (name = "ice", description = "Relay credentials"),
         (name = "relays", description = "Relay nodes: registry, load, drain"), (name = "audit", description = "Audit trail"),
         (name = "scheduling", description = "Practitioners, patients, appointments"),
         (name = "privacy", description = "KVKK / HIPAA: notices, consents, export, erasure, retention"),
         (name = "ops", description = "Health"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The problems every operation can answer, added to every `#[utoipa::path]` by what the
/// operation has, so that no route's description forgets one: the extractors and middleware
/// that produce them are shared (`problem.rs`, `auth/extract.rs`, the rate-limit layers), so
/// the description of them is shared too. Every 4xx and 5xx is `application/problem+json`
/// (RFC 9457, section 3) with the `Problem` schema, whatever the annotation said.
struct CommonProblems;

/// The routes behind a rate limit (`router`): 429 is theirs alone.
const RATE_LIMITED: &[&str] = &["/v1/auth/login", "/v1/auth/refresh", "/v1/ice/credentials"];

impl utoipa::Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let params = operation.parameters.as_deref().unwrap_or_default();
                let in_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let in_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_string()).or_insert_with(|| problem_response(description).into());
                };
                if in_path || in_query || body {
                    // ApiPath: a path segment of the wrong type; handlers: a query that
                    // contradicts itself; ApiJson: malformed JSON.
                    add(
                        "400",
                        "Malformed request: a path segment of the wrong type, malformed JSON, or contradictory parameters",
                    );
                }
                if in_path {
                    add("404", "No such resource (or not visible to the caller)");
                }
                if in_query || body {
                    // ApiQuery and ApiJson: the request parses but does not fit the schema.
                    add("422", "Invalid request content: `errors` names each field and why");
                }
                if body {
                    add("413", "The body is larger than `max-body-bytes`");
                    add("415", "The body is not sent as `application/json`");
                }
                if secured {
                    add("401", "Authentication required: no bearer token, or an expired, revoked or forged one");
                }
                if RATE_LIMITED.contains(&path.as_str()) {
                    add("429", "Too many requests from this address or account");
                }
                for (status, response) in responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(response) = response {
                        if status.starts_with('4') || status.starts_with('5') {
                            let description = std::mem::take(&mut response.description);
                            let headers = std::mem::take(&mut response.headers);
                            *response = problem_response(&description);
                            response.headers.extend(headers);
                        }
                        if status == "401" {
                            // problem.rs sets it on every 401 (RFC 6750, section 3).
                            response.headers.insert(
                                "WWW-Authenticate".into(),
                                utoipa::openapi::header::HeaderBuilder::new()
                                    .schema(
                                        utoipa::openapi::ObjectBuilder::new()
                                            .schema_type(utoipa::openapi::Type::String),
                                    )
                                    .description(Some("`Bearer`"))
                                    .build(),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// An `application/problem+json` response with the shared `Problem` schema.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    let description = if description.is_empty() { "Problem details (RFC 9457)" } else { description };
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            utoipa::openapi::content::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The OpenAPI document, as served and as kept in docs/openapi.json.
pub fn openapi_document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises")
}

async fn openapi_json() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_document())
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200), (status = 503, body = crate::problem::Problem)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "database not reachable");
        ApiError::Unavailable("the database is not reachable".into())
    })?;
    Ok(Json(serde_json::json!({"status": "ready", "database": state.store().engine()})))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.0.metrics.render())
}
