//! User administration (admins), and reading one's own account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::auth::{UserView, normalize_email, password};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{NewUser, Role, UserChanges};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUser {
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^\s.\x00-\x1f\x7f-\x9f]([^\s\x00-\x1f\x7f-\x9f]*\.)+[^\s.\x00-\x1f\x7f-\x9f]$"
    )]
    pub email: String,
    /// 1 to 200 characters, not blank, no control characters.
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub display_name: String,
    pub role: Role,
    /// At least `auth.password-min-length` characters (default 12), at most 256; not the
    /// e-mail's local part, not a common password, not one character repeated.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUser {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// As for a new user.
    #[schema(min_length = 12, max_length = 256)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    pub role: Option<Role>,
    /// Default 50, at most 500.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// At most 1,000,000,000 (far past any list; a bound JSON Schema's doubles state exactly).
    #[serde(default, deserialize_with = "crate::problem::in_range::<_, _, 0, 1_000_000_000>")]
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<i64>,
}

pub fn validate_email(email: &str) -> Result<(), ApiError> {
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(()) } else { Err(ApiError::field("email", "is not an e-mail address")) }
}

fn validate_display_name(name: &str) -> Result<(), ApiError> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::field("displayName", "must be 1 to 200 printable characters"));
    }
    Ok(())
}

/// Create a user (admins). Also what `teletip-control user add` uses.
pub async fn create_user(state: &AppState, req: CreateUser) -> Result<crate::store::User, ApiError> {
    let email = normalize_email(&req.email);
    validate_email(&email)?;
    validate_display_name(&req.display_name)?;
    if let Some(why) = password::policy_violation(&req.password, &email, state.config().auth.password_min_length) {
        return Err(ApiError::field("password", why));
    }
    let hash = password::hash(&req.password);
    state
        .store()
        .create_user(
            NewUser { email, display_name: req.display_name.trim().into(), role: req.role, password_hash: hash },
            state.clock().now(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => ApiError::Conflict("a user with this e-mail exists".into()),
            other => other.into(),
        })
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = UserView), (status = 403, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.require(&[Role::Admin])?;
    let user = create_user(&state, req).await?;
    state.audit(Audit::new("user.create", &ip).actor(caller.user_id).target(user.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

#[utoipa::path(get, path = "/v1/users", tag = "users", params(UserQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 403, body = crate::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<Vec<UserView>>> {
    caller.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(50);
    let offset = q.offset.unwrap_or(0);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    if offset < 0 {
        return Err(ApiError::field("offset", "must not be negative"));
    }
    let users = state.store().list_users(q.role, limit, offset).await?;
    state.audit(Audit::new("user.list", &ip).actor(caller.user_id)).await?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

/// One user: admins see anyone, everyone else only themselves.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserView>> {
    let audit = Audit::new("user.read", &ip).actor(caller.user_id).target(id.to_string());
    if caller.role != Role::Admin && caller.user_id != id {
        state.audit(audit.outcome("denied")).await?;
        return Err(ApiError::Forbidden("you may read only your own account".into()));
    }
    let user = state.store().user_by_id(id).await?.ok_or(ApiError::NotFound)?;
    state.audit(audit).await?;
    Ok(Json(UserView::from(&user)))
}

/// Change a user (admins). Disabling an account, setting its password or changing its role
/// ends its sessions, signaling connections included. An admin may not disable their own
/// account, and no change may disable or demote the last enabled admin: both are 409 problems,
/// audited as refused.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser,
    security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem),
              (status = 409, body = crate::problem::Problem,
               description = "an admin disabling their own account, or a change that would leave no enabled admin"),
              (status = 422, body = crate::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    caller.require(&[Role::Admin])?;
    let audit = Audit::new("user.update", &ip).actor(caller.user_id).target(id.to_string());
    if id == caller.user_id && req.disabled == Some(true) {
        // Another admin must do it: an admin locking themselves out by mistake (or a stolen
        // admin session hiding its tracks) cannot be undone from that account.
        state.audit(audit.outcome("refused:self-disable")).await?;
        return Err(ApiError::Conflict("an admin cannot disable their own account; ask another admin".into()));
    }
    let existing = state.store().user_by_id(id).await?.ok_or(ApiError::NotFound)?;
    if let Some(name) = &req.display_name {
        validate_display_name(name)?;
    }
    let password_hash = match &req.password {
        Some(p) => {
            if let Some(why) = password::policy_violation(p, &existing.email, state.config().auth.password_min_length) {
                return Err(ApiError::field("password", why));
            }
            Some(password::hash(p))
        }
        None => None,
    };
    // Why the user's sessions end, if they do (what their signaling connections are told).
    let ended = if req.disabled == Some(true) {
        Some("account-disabled")
    } else if req.role.is_some_and(|r| r != existing.role) {
        Some("role-changed")
    } else if password_hash.is_some() {
        Some("password-changed")
    } else {
        None
    };
    let now = state.clock().now();
    let changes = UserChanges {
        display_name: req.display_name.map(|n| n.trim().to_string()),
        role: req.role,
        disabled: req.disabled,
        password_hash,
    };
    let user = match state.store().update_user(id, changes, now).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(ApiError::NotFound),
        Err(crate::store::StoreError::LastAdmin) => {
            state.audit(audit.outcome("refused:last-admin")).await?;
            return Err(crate::store::StoreError::LastAdmin.into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(reason) = ended {
        state.store().revoke_user_sessions(id, "account-changed", now).await?;
        state.sessions_ended().announce(crate::auth::ended::Ended::User(id), reason).await;
        let revoke = crate::domain::revocation::on_account_change(id, reason);
        crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    }
    state.audit(audit).await?;
    Ok(Json(UserView::from(&user)))
}

/// Remove a user's second factor (admins), for a lost device: the secret and recovery codes
/// go, every session of the user ends (signaling connections and relay credentials included),
/// and the user logs in with the password alone, then enrolls again. Audited as
/// `user.reset-mfa` (`success`, or `success:not-enrolled`).
#[utoipa::path(delete, path = "/v1/users/{id}/mfa", tag = "users", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn reset_mfa(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Admin])?;
    let user = state.store().user_by_id(id).await?.ok_or(ApiError::NotFound)?;
    let removed = state.store().remove_mfa(user.id).await?;
    let now = state.clock().now();
    state.store().revoke_user_sessions(user.id, "account-changed", now).await?;
    state.sessions_ended().announce(crate::auth::ended::Ended::User(user.id), "mfa-reset").await;
    let revoke = crate::domain::revocation::on_account_change(user.id, "mfa-reset");
    crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    let outcome = if removed { "success" } else { "success:not-enrolled" };
    state
        .audit(Audit::new("user.reset-mfa", &ip).actor(caller.user_id).target(user.id.to_string()).outcome(outcome))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accounts: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get, update)).routes(routes!(reset_mfa))
}
