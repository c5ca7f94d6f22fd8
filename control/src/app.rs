//! The application: the capability modules' routers assembled under the middleware every
//! route shares (request id and metrics, body limit, audited refusals, rate limits), and the
//! OpenAPI description collected from the same routers.
//!
//! Nothing beneath imports this module: handlers take `crate::state::AppState`, and each
//! capability module declares its own routes with their descriptions (`fn router`).

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Instant;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor};
use utoipa_axum::router::OpenApiRouter;

use crate::problem::{ApiError, REQUEST_ID};
use crate::state::AppState;

/// The routes that the description covers, by capability, with the paths behind a rate limit.
/// `limits` (the running server's state) puts the rate limits around sign-in and ICE
/// credentials; without it (`openapi_document`) the routes and their description are the same,
/// unlimited.
fn documented(limits: Option<&AppState>) -> (OpenApiRouter<AppState>, Vec<String>) {
    let mut sign_in = crate::auth::sign_in_router();
    let mut credentials = crate::ice::router();
    let rate_limited =
        [&sign_in, &credentials].into_iter().flat_map(|r| r.get_openapi().paths.paths.keys().cloned()).collect();
    if let Some(state) = limits {
        (sign_in, credentials) = rate_limit(state, sign_in, credentials);
    }
    let routes = OpenApiRouter::with_openapi(crate::openapi::frame())
        .merge(sign_in)
        .merge(credentials)
        .merge(crate::auth::router())
        .merge(crate::users::router())
        .merge(crate::audit::router())
        .merge(crate::relays::routes::router())
        .merge(crate::revocation::router())
        .merge(crate::scheduling::router())
        .merge(crate::privacy::router())
        .merge(crate::residency::router())
        .merge(crate::ops::router())
        .merge(crate::notify::router())
        .merge(crate::fhir::routes::router());
    (routes, rate_limited)
}

/// The OpenAPI document, as served and as kept in docs/openapi.json.
pub fn openapi_document() -> String {
    let (routes, rate_limited) = documented(None);
    crate::openapi::finish(routes.into_openapi(), &rate_limited)
}

pub fn router(state: AppState) -> Router {
    let (routes, rate_limited) = documented(Some(&state));
    let (routes, description) = routes.split_for_parts();
    let document = axum::body::Bytes::from(crate::openapi::finish(description, &rate_limited));
    routes
        // The web client's files are not an API: they are not in the OpenAPI description.
        .merge(crate::web::router())
        .route(
            "/openapi.json",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) }),
        )
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

/// Puts the rate limits around sign-in (per address) and ICE credentials (per address and per
/// account), in this instance and, with `redis-url`, across instances.
fn rate_limit(
    state: &AppState,
    sign_in: OpenApiRouter<AppState>,
    credentials: OpenApiRouter<AppState>,
) -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
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
    let mut sign_in = sign_in.layer(GovernorLayer { config: per_ip.clone() });
    // Between the two: the token is verified once, after the per-IP bucket (a flood of forged
    // tokens from one address is refused before it costs a verification) and before the
    // account's, which keys by it; the handler's extractor reuses it (`VerifiedBearer`).
    let mut credentials = credentials
        .layer(GovernorLayer { config: per_account })
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::extract::verify_bearer))
        .layer(GovernorLayer { config: per_ip });
    if let Some(limits) = shared_limits(state) {
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
        sign_in = sign_in.layer(middleware::from_fn_with_state(by_ip.clone(), enforce));
        credentials = credentials
            .layer(middleware::from_fn_with_state(by_account, enforce))
            .layer(middleware::from_fn_with_state(by_ip, enforce));
    }
    (sign_in, credentials)
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
    // MatchedPath holds the template in an Arc: cloning it does not copy the text.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let method = request.method().clone();
    let started = Instant::now();
    // Every line logged while the request is served carries its id (and the route template,
    // which names no user or patient).
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = REQUEST_ID.scope(id.clone(), tracing::Instrument::instrument(next.run(request), span)).await;
    crate::observability::http_request(&method, route, response.status().as_u16(), started.elapsed());
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
        // Verified by `verify_bearer` just outside this layer; verified here only if it was not.
        let verified = req.extensions().get::<crate::auth::extract::VerifiedBearer>().map(|v| v.0.sub.to_string());
        match verified.or_else(|| crate::state::bearer_subject(&self.0, req.headers())) {
            Some(s) => Ok(s),
            None => PeerIpKeyExtractor.extract(req).map(|ip| ip.to_string()),
        }
    }
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
