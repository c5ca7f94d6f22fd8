//! Practitioners: who can be booked, in which time zone.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{Practitioner, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePractitioner {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub display_name: String,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub specialty: String,
    /// IANA time zone, e.g. Europe/Istanbul (a name the time zone database knows).
    #[schema(example = "Europe/Istanbul", pattern = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")]
    pub time_zone: String,
    /// The practitioner's login account (role practitioner), if any.
    pub user_id: Option<Uuid>,
    /// The practice it works for (`POST /v1/practices`), if any: patients it registers get
    /// that practice's data region.
    pub practice_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PractitionerView {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub display_name: String,
    pub specialty: String,
    pub time_zone: String,
    pub practice_id: Option<Uuid>,
}

impl From<&Practitioner> for PractitionerView {
    fn from(p: &Practitioner) -> Self {
        PractitionerView {
            id: p.id,
            user_id: p.user_id,
            display_name: p.display_name.clone(),
            specialty: p.specialty.clone(),
            time_zone: p.time_zone.clone(),
            practice_id: p.practice_id,
        }
    }
}

pub(crate) fn text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::field(field, format!("must be 1 to {max} printable characters")));
    }
    Ok(v.to_string())
}

/// Register a practitioner (admins).
#[utoipa::path(post, path = "/v1/practitioners", tag = "scheduling", request_body = CreatePractitioner, security(("bearer" = [])),
    responses((status = 201, body = PractitionerView), (status = 403, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<CreatePractitioner>,
) -> ApiResult<(StatusCode, Json<PractitionerView>)> {
    caller.require(&[Role::Admin])?;
    if jiff::tz::TimeZone::get(&req.time_zone).is_err() {
        return Err(ApiError::field("timeZone", "is not an IANA time zone name"));
    }
    if let Some(user_id) = req.user_id {
        match state.store().user_by_id(user_id).await? {
            Some(u) if u.role == Role::Practitioner => {}
            _ => return Err(ApiError::field("userId", "must be an existing account with the role practitioner")),
        }
    }
    if let Some(practice) = req.practice_id {
        if state.store().practice(practice).await?.is_none() {
            return Err(ApiError::field("practiceId", "no practice has this id"));
        }
    }
    let now = state.clock().now();
    let p = state
        .store()
        .create_practitioner(Practitioner {
            id: Uuid::new_v4(),
            user_id: req.user_id,
            display_name: text("displayName", &req.display_name, 200)?,
            specialty: text("specialty", &req.specialty, 100)?,
            time_zone: req.time_zone,
            practice_id: req.practice_id,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => {
                ApiError::Conflict("that account already has a practitioner record".into())
            }
            other => other.into(),
        })?;
    state.audit(Audit::new("practitioner.create", &ip).actor(caller.user_id).target(p.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(PractitionerView::from(&p))))
}

/// A practitioner (any signed-in user: whom one can book is not patient data).
#[utoipa::path(get, path = "/v1/practitioners/{id}", tag = "scheduling", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = PractitionerView), (status = 404, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PractitionerView>> {
    let p = state.store().practitioner(id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(PractitionerView::from(&p)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PractitionerQuery {
    /// Only this specialty (exact, case-insensitive).
    pub specialty: Option<String>,
    /// At most 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// At most 1,000,000,000 (far past any list; a bound JSON Schema's doubles state exactly).
    #[serde(default, deserialize_with = "crate::problem::in_range::<_, _, 0, 1_000_000_000>")]
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<i64>,
}

/// Practitioners one can book, by name (any signed-in user).
#[utoipa::path(get, path = "/v1/practitioners", tag = "scheduling", params(PractitionerQuery), security(("bearer" = [])),
    responses((status = 200, body = [PractitionerView]), (status = 400, body = crate::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    crate::problem::ApiQuery(q): crate::problem::ApiQuery<PractitionerQuery>,
) -> ApiResult<Json<Vec<PractitionerView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=200).contains(&limit) || q.offset.is_some_and(|o| o < 0) {
        return Err(ApiError::BadRequest("limit must be 1 to 200 and offset not negative".into()));
    }
    let specialty = q.specialty.as_deref().map(str::trim);
    let found = state.store().list_practitioners(specialty, limit, q.offset.unwrap_or(0)).await?;
    Ok(Json(found.iter().map(PractitionerView::from).collect()))
}

/// Practitioners: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get))
}
