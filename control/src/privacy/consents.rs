//! Explicit consent (KVKK art. 6 for health data; "açık rıza"): each decision is a new row
//! naming the notice version and purpose, so the history shows who agreed to what text, when.
//! A patient needs a current consent to every required purpose of the current notice before
//! booking or joining a consultation.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::notices::current_notice;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::domain::consultation::MissingConsent;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{Consent, ConsentDecision, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordConsent {
    /// The notice version the person read.
    pub notice_version: String,
    /// One of that notice's purpose codes.
    pub purpose: String,
    pub decision: ConsentDecision,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentView {
    pub id: Uuid,
    pub notice_version: String,
    pub purpose: String,
    pub decision: ConsentDecision,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl From<&Consent> for ConsentView {
    fn from(c: &Consent) -> Self {
        ConsentView {
            id: c.id,
            notice_version: c.notice_version.clone(),
            purpose: c.purpose.clone(),
            decision: c.decision,
            at: c.at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentState {
    /// The current notice's version, if one is published.
    pub current_notice_version: Option<String>,
    /// Required purposes of the current notice without a current consent.
    pub missing_required: Vec<String>,
    /// The latest decision per purpose.
    pub current: Vec<ConsentView>,
    /// Every decision, oldest first.
    pub history: Vec<ConsentView>,
}

/// The latest decision per purpose, oldest purpose first.
pub fn latest_per_purpose(history: &[Consent]) -> BTreeMap<&str, &Consent> {
    let mut latest = BTreeMap::new();
    for c in history {
        latest.insert(c.purpose.as_str(), c);
    }
    latest
}

/// The required purposes of the current notice that `user_id` has not consented to under that
/// version (`None` when no notice is published: nothing to consent to).
pub async fn missing_required(state: &AppState, user_id: Uuid) -> ApiResult<Option<(String, Vec<String>)>> {
    let Some(notice) = current_notice(state).await? else {
        return Ok(None);
    };
    let history = state.store().consents(user_id).await?;
    let latest = latest_per_purpose(&history);
    let missing: Vec<String> = notice
        .purposes
        .iter()
        .filter(|p| p.required)
        .filter(|p| {
            !latest
                .get(p.code.as_str())
                .is_some_and(|c| c.decision == ConsentDecision::Given && c.notice_version == notice.version)
        })
        .map(|p| p.code.clone())
        .collect();
    Ok(Some((notice.version, missing)))
}

/// The required consents `user_id` lacks under the current notice, if any.
pub async fn missing_consent(state: &AppState, user_id: Uuid) -> ApiResult<Option<MissingConsent>> {
    Ok(match missing_required(state, user_id).await? {
        Some((notice_version, purposes)) if !purposes.is_empty() => Some(MissingConsent { notice_version, purposes }),
        _ => None,
    })
}

/// Refuses a patient who lacks a required consent, with the purposes to consent to.
pub async fn require_patient_consent(state: &AppState, caller: &Caller) -> ApiResult<()> {
    if caller.role != Role::Patient {
        return Ok(());
    }
    match missing_consent(state, caller.user_id).await? {
        Some(missing) => Err(ApiError::Forbidden(missing.message())),
        None => Ok(()),
    }
}

async fn consent_state(state: &AppState, user_id: Uuid) -> ApiResult<ConsentState> {
    let history = state.store().consents(user_id).await?;
    let missing = missing_required(state, user_id).await?;
    Ok(ConsentState {
        current_notice_version: missing.as_ref().map(|(v, _)| v.clone()),
        missing_required: missing.map(|(_, m)| m).unwrap_or_default(),
        current: latest_per_purpose(&history).values().map(|c| ConsentView::from(*c)).collect(),
        history: history.iter().map(ConsentView::from).collect(),
    })
}

/// Give or withdraw consent to one purpose of a notice version. Withdrawal is always possible
/// and as easy as giving (KVKK, GDPR art. 7(3)).
#[utoipa::path(post, path = "/v1/me/consents", tag = "privacy", request_body = RecordConsent, security(("bearer" = [])),
    responses((status = 201, body = ConsentView), (status = 422, body = crate::problem::Problem)))]
pub async fn record(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<RecordConsent>,
) -> ApiResult<(StatusCode, Json<ConsentView>)> {
    let notices = state.store().notices().await?;
    let notice = notices
        .iter()
        .find(|n| n.version == req.notice_version)
        .ok_or_else(|| ApiError::field("noticeVersion", "no privacy notice has this version"))?;
    if !notice.purposes.iter().any(|p| p.code == req.purpose) {
        let codes: Vec<&str> = notice.purposes.iter().map(|p| p.code.as_str()).collect();
        return Err(ApiError::field("purpose", format!("must be one of this notice's purposes: {}", codes.join(", "))));
    }
    if req.decision == ConsentDecision::Given && notices.first().is_some_and(|n| n.version != notice.version) {
        return Err(ApiError::field("noticeVersion", "consent can be given only to the current notice"));
    }
    let consent = Consent {
        id: Uuid::new_v4(),
        user_id: caller.user_id,
        notice_version: notice.version.clone(),
        purpose: req.purpose,
        decision: req.decision,
        at: state.clock().now(),
        source_ip: Some(ip.0.to_string()),
    };
    let action = match consent.decision {
        ConsentDecision::Given => "consent.give",
        ConsentDecision::Withdrawn => "consent.withdraw",
    };
    let audit =
        Audit::new(action, &ip).actor(caller.user_id).target(format!("{}:{}", consent.notice_version, consent.purpose));
    let c = state.store().record_consent(consent, audit.into_event()).await?;
    Ok((StatusCode::CREATED, Json(ConsentView::from(&c))))
}

/// My consents: the latest decision per purpose, what is missing, and the full history.
#[utoipa::path(get, path = "/v1/me/consents", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, body = ConsentState)))]
pub async fn mine(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ConsentState>> {
    Ok(Json(consent_state(&state, caller.user_id).await?))
}

/// A user's consents (admins; audited), e.g. to answer a regulator.
#[utoipa::path(get, path = "/v1/users/{id}/consents", tag = "privacy", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = ConsentState), (status = 403, body = crate::problem::Problem)))]
pub async fn of_user(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ConsentState>> {
    caller.require(&[Role::Admin])?;
    state.store().user_by_id(id).await?.ok_or(ApiError::NotFound)?;
    let view = consent_state(&state, id).await?;
    state.audit(Audit::new("consent.read", &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Json(view))
}

/// Consents: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mine, record)).routes(routes!(of_user))
}
