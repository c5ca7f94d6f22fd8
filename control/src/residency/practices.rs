//! Practices (admins): a clinic or department and its data region, which patients its staff
//! register get by default. Changing a practice's region does not move patients registered
//! before: a patient's region is theirs (`PATCH /v1/patients/{id}`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{PRACTICE_CREATE, PRACTICE_UPDATE, region_field};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::scheduling::practitioners::text;
use crate::state::{AppState, ClientIp};
use crate::store::{Practice, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePractice {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    /// A region label; absent: the deployment's region (`deployment-region`).
    #[schema(pattern = r"^[a-z0-9-]{1,32}$")]
    pub data_region: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePractice {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
    #[schema(pattern = r"^[a-z0-9-]{1,32}$")]
    pub data_region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PracticeView {
    pub id: Uuid,
    pub name: String,
    /// Absent: the deployment's region.
    pub data_region: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&Practice> for PracticeView {
    fn from(p: &Practice) -> Self {
        PracticeView { id: p.id, name: p.name.clone(), data_region: p.data_region.clone(), created_at: p.created_at }
    }
}

/// Register a practice (admins). Audited.
#[utoipa::path(post, path = "/v1/practices", tag = "residency", request_body = CreatePractice, security(("bearer" = [])),
    responses((status = 201, body = PracticeView), (status = 403, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<CreatePractice>,
) -> ApiResult<(StatusCode, Json<PracticeView>)> {
    caller.require(&[Role::Admin])?;
    let name = text("name", &req.name, 200)?;
    let data_region = match &req.data_region {
        Some(label) => Some(region_field("dataRegion", label)?),
        None => state.config().deployment_region.clone(),
    };
    let now = state.clock().now();
    let practice = Practice {
        id: Uuid::new_v4(),
        name,
        data_region: data_region.map(|r| r.to_string()),
        created_at: now,
        updated_at: now,
    };
    let region = practice.data_region.as_deref().unwrap_or("none");
    let audit =
        Audit::new(PRACTICE_CREATE, &ip).actor(caller.user_id).target(format!("{} region:{region}", practice.id));
    let p = state.store().create_practice(practice, audit.into_event()).await?;
    Ok((StatusCode::CREATED, Json(PracticeView::from(&p))))
}

/// Every practice, by name (admins).
#[utoipa::path(get, path = "/v1/practices", tag = "residency", security(("bearer" = [])),
    responses((status = 200, body = [PracticeView]), (status = 403, body = crate::problem::Problem)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<PracticeView>>> {
    caller.require(&[Role::Admin])?;
    Ok(Json(state.store().list_practices().await?.iter().map(PracticeView::from).collect()))
}

/// A practice (admins).
#[utoipa::path(get, path = "/v1/practices/{id}", tag = "residency", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = PracticeView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PracticeView>> {
    caller.require(&[Role::Admin])?;
    let p = state.store().practice(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(PracticeView::from(&p)))
}

/// Rename a practice or change its data region (admins; audited). Patients registered before
/// keep their region.
#[utoipa::path(patch, path = "/v1/practices/{id}", tag = "residency", params(("id" = Uuid, Path)), request_body = UpdatePractice,
    security(("bearer" = [])),
    responses((status = 200, body = PracticeView), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdatePractice>,
) -> ApiResult<Json<PracticeView>> {
    caller.require(&[Role::Admin])?;
    let name = req.name.as_deref().map(|n| text("name", n, 200)).transpose()?;
    let region = req.data_region.as_deref().map(|r| region_field("dataRegion", r)).transpose()?;
    let mut p = state.store().practice(id).await?.ok_or(ApiError::NotFound)?;
    let before = p.data_region.clone().unwrap_or_else(|| "none".into());
    if let Some(name) = name {
        p.name = name;
    }
    if let Some(region) = region {
        p.data_region = Some(region.to_string());
    }
    p.updated_at = state.clock().now();
    let after = p.data_region.as_deref().unwrap_or("none");
    let audit = Audit::new(PRACTICE_UPDATE, &ip).actor(caller.user_id).target(format!("{id} region:{before}->{after}"));
    if !state.store().update_practice(&p, audit.into_event()).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(PracticeView::from(&p)))
}

/// Practices: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get, update))
}
