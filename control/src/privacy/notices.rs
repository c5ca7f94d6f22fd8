//! Privacy notices (KVKK art. 10 "aydınlatma yükümlülüğü"): published by an admin, immutable,
//! versioned; the newest is the current one. Readable without signing in, because a person
//! must be able to read it before giving any data.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::scheduling::practitioners::text;
use crate::state::{AppState, ClientIp};
use crate::store::{NoticePurpose, PrivacyNotice, Role, StoreError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishNotice {
    /// A version label, unique: e.g. `2026-11` or `v3`.
    #[schema(pattern = r"^[A-Za-z0-9-]{1,64}$")]
    pub version: String,
    /// BCP 47 language tag of the text, e.g. `tr` or `en-US`.
    #[schema(max_length = 35, pattern = r"^[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*$")]
    pub language: String,
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub title: String,
    /// The notice itself (plain text or Markdown), not blank, at most 100,000 bytes.
    #[schema(pattern = r"\S")]
    pub body: String,
    /// What consent is asked for: 1 to 20 purposes, each code once.
    #[schema(min_items = 1, max_items = 20)]
    pub purposes: Vec<NoticePurpose>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeView {
    pub version: String,
    pub language: String,
    pub title: String,
    pub body: String,
    pub purposes: Vec<NoticePurpose>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub published_at: OffsetDateTime,
}

impl From<&PrivacyNotice> for NoticeView {
    fn from(n: &PrivacyNotice) -> Self {
        NoticeView {
            version: n.version.clone(),
            language: n.language.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            purposes: n.purposes.clone(),
            published_at: n.published_at,
        }
    }
}

fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn validate(req: &PublishNotice) -> ApiResult<()> {
    if !is_code(&req.version.to_ascii_lowercase()) || req.version.contains(char::is_whitespace) {
        return Err(ApiError::field("version", "must be 1 to 64 letters, digits or dashes"));
    }
    let language_ok = !req.language.is_empty()
        && req.language.len() <= 35
        && req
            .language
            .split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !language_ok {
        return Err(ApiError::field("language", "must be a BCP 47 language tag such as tr or en-US"));
    }
    if req.body.trim().is_empty() || req.body.len() > 100_000 {
        return Err(ApiError::field("body", "must be 1 to 100000 bytes"));
    }
    if req.purposes.is_empty() || req.purposes.len() > 20 {
        return Err(ApiError::field("purposes", "must list 1 to 20 purposes"));
    }
    for (i, p) in req.purposes.iter().enumerate() {
        if !is_code(&p.code) {
            return Err(ApiError::field(&format!("purposes[{i}].code"), "must be lowercase letters, digits or dashes"));
        }
        if req.purposes[..i].iter().any(|q| q.code == p.code) {
            return Err(ApiError::field(&format!("purposes[{i}].code"), "is listed twice"));
        }
        text(&format!("purposes[{i}].description"), &p.description, 2000)?;
    }
    Ok(())
}

/// Publish a new privacy notice (admins). Patients must consent again to its required
/// purposes before their next booking or consultation.
#[utoipa::path(post, path = "/v1/privacy-notices", tag = "privacy", request_body = PublishNotice, security(("bearer" = [])),
    responses((status = 201, body = NoticeView), (status = 403, body = crate::problem::Problem),
        (status = 409, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn publish(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<PublishNotice>,
) -> ApiResult<(StatusCode, Json<NoticeView>)> {
    caller.require(&[Role::Admin])?;
    validate(&req)?;
    let notice = PrivacyNotice {
        id: Uuid::new_v4(),
        version: req.version,
        language: req.language,
        title: text("title", &req.title, 200)?,
        body: req.body,
        purposes: req.purposes,
        published_at: state.clock().now(),
        published_by: caller.user_id,
    };
    let n = state.store().publish_notice(notice).await.map_err(|e| match e {
        StoreError::Conflict => ApiError::Conflict("that version is already published; publish a new version".into()),
        other => other.into(),
    })?;
    state.audit(Audit::new("privacy-notice.publish", &ip).actor(caller.user_id).target(n.version.clone())).await?;
    Ok((StatusCode::CREATED, Json(NoticeView::from(&n))))
}

/// Every published notice, newest first (public).
#[utoipa::path(get, path = "/v1/privacy-notices", tag = "privacy", responses((status = 200, body = [NoticeView])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<NoticeView>>> {
    Ok(Json(state.store().notices().await?.iter().map(NoticeView::from).collect()))
}

/// The current notice (public); 404 while none is published.
#[utoipa::path(get, path = "/v1/privacy-notices/current", tag = "privacy",
    responses((status = 200, body = NoticeView), (status = 404, body = crate::problem::Problem)))]
pub async fn current(State(state): State<AppState>) -> ApiResult<Json<NoticeView>> {
    let notice = current_notice(&state).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(NoticeView::from(&notice)))
}

/// One notice by version (public).
#[utoipa::path(get, path = "/v1/privacy-notices/{version}", tag = "privacy", params(("version" = String, Path)),
    responses((status = 200, body = NoticeView), (status = 404, body = crate::problem::Problem)))]
pub async fn get(State(state): State<AppState>, ApiPath(version): ApiPath<String>) -> ApiResult<Json<NoticeView>> {
    let notices = state.store().notices().await?;
    let n = notices.iter().find(|n| n.version == version).ok_or(ApiError::NotFound)?;
    Ok(Json(NoticeView::from(n)))
}

pub async fn current_notice(state: &AppState) -> ApiResult<Option<PrivacyNotice>> {
    Ok(state.store().notices().await?.into_iter().next())
}

/// Privacy notices: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, publish)).routes(routes!(current)).routes(routes!(get))
}
