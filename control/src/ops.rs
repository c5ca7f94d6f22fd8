//! Operations: liveness, readiness (the database answers) and the Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ApiError;
use crate::state::AppState;

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
    crate::observability::scrape::sample(&state).await;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics().render())
}

/// Health checks, described; `/metrics` is a plain route, left out of the API's description:
/// it speaks Prometheus's text format to the scraper, not JSON to API clients.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).route("/metrics", get(metrics_text))
}
