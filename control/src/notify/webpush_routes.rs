//! The Web Push API: the VAPID public key a browser subscribes with, and a practitioner's own
//! subscriptions (add, list, remove). Only practitioners subscribe: the events pushed are
//! about their appointments (a waiting patient, bookings, reminders); admins and patients
//! have none to receive.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::webpush::{self, Subscription};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{PushSubscriptionRecord, Role, Subscribed};

pub const AUDIT_SUBSCRIBE: &str = "push.subscribe";
pub const AUDIT_UNSUBSCRIBE: &str = "push.unsubscribe";

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidPublicKey {
    /// The uncompressed P-256 public key in base64url: `applicationServerKey` for
    /// `PushManager.subscribe()`.
    pub public_key: String,
}

/// The keys of a browser's PushSubscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionKeys {
    /// The browser's P-256 public key: 65 bytes, base64url.
    pub p256dh: String,
    /// The browser's authentication secret: 16 bytes, base64url.
    pub auth: String,
}

/// A browser's `PushSubscription.toJSON()`, as is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPushSubscription {
    /// The push service URL (https, on a host in `notifications.web-push-hosts`).
    pub endpoint: String,
    /// Ignored: the push service reports an expired subscription (404/410), which removes it.
    #[serde(default)]
    #[allow(dead_code)]
    pub expiration_time: Option<serde_json::Value>,
    pub keys: PushSubscriptionKeys,
}

/// A subscription as its owner sees it: the endpoint itself is not shown again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscriptionView {
    pub id: Uuid,
    /// The push service's origin (which browser vendor carries the messages).
    pub push_service: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

fn view(state: &AppState, r: &PushSubscriptionRecord) -> PushSubscriptionView {
    PushSubscriptionView {
        id: r.id,
        push_service: Subscription::open(state, r).map(|s| s.origin()).unwrap_or_default(),
        created_at: r.created_at,
    }
}

fn web_push_on(state: &AppState) -> ApiResult<()> {
    if state.vapid().is_some() { Ok(()) } else { Err(ApiError::NotFound) }
}

/// The VAPID public key to subscribe with (no sign-in needed: it is public). 404 while Web
/// Push is off (`notifications.web-push`).
#[utoipa::path(get, path = "/v1/push/vapid-public-key", tag = "notifications",
    responses((status = 200, body = VapidPublicKey), (status = 404, body = crate::problem::Problem)))]
pub async fn vapid_public_key(State(state): State<AppState>) -> ApiResult<Json<VapidPublicKey>> {
    let vapid = state.vapid().ok_or(ApiError::NotFound)?;
    Ok(Json(VapidPublicKey { public_key: vapid.public_key_b64() }))
}

/// Subscribe this browser to the practitioner's notifications (practitioners only). The same
/// endpoint again replaces its keys. Audited as `push.subscribe`.
#[utoipa::path(post, path = "/v1/me/push-subscriptions", tag = "notifications", request_body = NewPushSubscription,
    security(("bearer" = [])),
    responses((status = 201, body = PushSubscriptionView), (status = 400, body = crate::problem::Problem),
              (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem, description = "web push is off"),
              (status = 422, body = crate::problem::Problem, description = "a field is wrong, or the user has the most subscriptions allowed")))]
pub async fn subscribe(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<NewPushSubscription>,
) -> ApiResult<(StatusCode, Json<PushSubscriptionView>)> {
    web_push_on(&state)?;
    caller.require(&[Role::Practitioner])?;
    let cfg = &state.config().notifications;
    let subscription = webpush::validate(cfg, &req.endpoint, &req.keys.p256dh, &req.keys.auth)?;
    let record = PushSubscriptionRecord {
        id: Uuid::new_v4(),
        user_id: caller.user_id,
        subscription: subscription.seal(&state),
        created_at: state.clock().now(),
    };
    let audit = Audit::new(AUDIT_SUBSCRIBE, &ip).actor(caller.user_id).into_event();
    let limit = i64::from(cfg.web_push_max_subscriptions);
    match state.store().save_push_subscription(record, &subscription.endpoint_index(&state), limit, audit).await? {
        Subscribed::Saved(saved) => Ok((StatusCode::CREATED, Json(view(&state, &saved)))),
        Subscribed::LimitReached => {
            state.audit(Audit::new(AUDIT_SUBSCRIBE, &ip).actor(caller.user_id).outcome("refused:limit")).await?;
            Err(ApiError::RuleRefused {
                slug: "push-subscription-limit",
                detail: format!("at most {limit} push subscriptions per user; remove one first"),
            })
        }
    }
}

/// The caller's own push subscriptions, oldest first.
#[utoipa::path(get, path = "/v1/me/push-subscriptions", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<PushSubscriptionView>), (status = 401, body = crate::problem::Problem)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<PushSubscriptionView>>> {
    let mine = state.store().push_subscriptions(caller.user_id).await?;
    Ok(Json(mine.iter().map(|r| view(&state, r)).collect()))
}

/// Remove one of the caller's push subscriptions (another user's is 404). Audited as
/// `push.unsubscribe`.
#[utoipa::path(delete, path = "/v1/me/push-subscriptions/{id}", tag = "notifications",
    params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204, description = "removed"), (status = 401, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let audit =
        Audit::new(AUDIT_UNSUBSCRIBE, &ip).actor(caller.user_id).target(format!("push-subscription:{id}")).into_event();
    if state.store().delete_push_subscription(id, Some(caller.user_id), audit).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vapid_public_key)).routes(routes!(subscribe, list)).routes(routes!(unsubscribe))
}
