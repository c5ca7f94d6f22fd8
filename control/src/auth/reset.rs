//! Password reset by a single-use, short-lived token. Anyone may ask for a reset of an e-mail
//! address; the answer is the same whether an account has it or not (no account enumeration),
//! and the request is rate limited per address like login. For an existing, enabled account a
//! random token is made, only its SHA-256 kept, and the operator's hook delivers it (the token
//! in the hook's environment, never in arguments or logs). Using the token sets the new
//! password, spends the token and ends every session of the user (issue 18's revocation).

use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use crate::audit::Audit;
use crate::auth::{email_target, normalize_email, password, token_hash};
use crate::problem::{ApiError, ApiJson, ApiResult};
use crate::state::{AppState, ClientIp};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(max_length = 254)]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The token the reset link carries.
    #[schema(max_length = 256)]
    pub token: String,
    /// The new password, under the same policy as a new user's.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

/// How long the hook may run before it is stopped.
const HOOK_TIMEOUT: StdDuration = StdDuration::from_secs(30);

/// Ask for a password reset.
///
/// Always `202`, whether or not an account has this e-mail. For an enabled account, a
/// single-use token valid for `auth.password-reset-ttl-seconds` is delivered through the
/// operator's `auth.password-reset-hook`; an earlier unused token stops working.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 202, description = "accepted; a link is sent if an enabled account has this e-mail"),
              (status = 422, body = crate::problem::Problem),
              (status = 429, body = crate::problem::Problem, description = "too many requests from this address")))]
pub async fn request(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<PasswordResetRequest>,
) -> ApiResult<StatusCode> {
    if req.email.chars().count() > 254 {
        return Err(ApiError::field("email", "must be at most 254 characters"));
    }
    let email = normalize_email(&req.email);
    let audit = Audit::new("auth.password-reset.request", &ip);
    let user = match state.store().user_by_email(&email).await? {
        Some(u) if !u.disabled => u,
        Some(u) => {
            state.audit(audit.actor(u.id).target(u.id.to_string()).outcome("ignored:disabled")).await?;
            return Ok(StatusCode::ACCEPTED);
        }
        None => {
            state.audit(audit.target(email_target(&email)).outcome("ignored:unknown-account")).await?;
            return Ok(StatusCode::ACCEPTED);
        }
    };
    let now = state.clock().now();
    let expires_at = now + Duration::seconds(state.config().auth.password_reset_ttl_seconds as i64);
    let token = new_token();
    state.store().create_password_reset(user.id, &token_hash(&token), now, expires_at).await?;
    let delivered = if state.config().auth.password_reset_hook.is_some() { "success" } else { "success:no-hook" };
    state.audit(audit.actor(user.id).target(user.id.to_string()).outcome(delivered)).await?;
    if let Some(hook) = state.config().auth.password_reset_hook.clone() {
        let link = format!("{}/#reset-token={token}", state.config().public_base());
        // In the background: the answer must not take longer for existing accounts.
        tokio::spawn(run_hook(hook, user.email, token, link, expires_at));
    }
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with a reset token.
///
/// The token works once and until it expires; using it ends every session of the account.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirm,
    responses((status = 204, description = "the password is set; every session of the account has ended"),
              (status = 401, body = crate::problem::Problem, description = "the token is unknown, used or expired"),
              (status = 422, body = crate::problem::Problem),
              (status = 429, body = crate::problem::Problem, description = "too many requests from this address")))]
pub async fn confirm(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<PasswordResetConfirm>,
) -> ApiResult<StatusCode> {
    if req.token.chars().count() > 256 {
        return Err(ApiError::field("token", "must be at most 256 characters"));
    }
    if req.password.chars().count() > 256 {
        return Err(ApiError::field("password", "must be at most 256 characters"));
    }
    let now = state.clock().now();
    let audit = Audit::new("auth.password-reset", &ip);
    let refused = || ApiError::Unauthorized("the reset token is unknown, used or expired; ask for a new one".into());
    let hash = token_hash(&req.token);
    // The policy needs the account's e-mail, so the token is looked at first; it is spent only
    // once the password is acceptable (a refused password must not burn the link).
    let Some(user_id) = state.store().password_reset_user(&hash, now).await? else {
        state.audit(audit.outcome("failure:invalid-token")).await?;
        return Err(refused());
    };
    let user = state.store().user_by_id(user_id).await?.ok_or_else(refused)?;
    if let Some(why) = password::policy_violation(&req.password, &user.email, state.config().auth.password_min_length) {
        return Err(ApiError::field("password", why));
    }
    if state.store().take_password_reset(&hash, now).await? != Some(user_id) {
        state.audit(audit.outcome("failure:invalid-token")).await?;
        return Err(refused());
    }
    let audit = audit.actor(user.id).target(user.id.to_string());
    if user.disabled {
        state.audit(audit.outcome("failure:disabled")).await?;
        return Err(refused());
    }
    let changes =
        crate::store::UserChanges { password_hash: Some(password::hash(&req.password)), ..Default::default() };
    state.store().update_user(user.id, changes, now).await?;
    state.store().revoke_user_sessions(user.id, "account-changed", now).await?;
    state.sessions_ended().announce(crate::auth::ended::Ended::User(user.id), "password-changed").await;
    let revoke = crate::domain::revocation::on_account_change(user.id, "password-changed");
    crate::revocation::follow(&state, revoke, Some(user.id), Some(&ip)).await;
    state.audit(audit.outcome("success")).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Runs the delivery hook; its failure is logged without the address or the token.
async fn run_hook(hook: std::path::PathBuf, email: String, token: String, link: String, expires_at: OffsetDateTime) {
    let expires = expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let path = hook.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(&path)
            .env("TELETIP_RESET_EMAIL", email)
            .env("TELETIP_RESET_TOKEN", token)
            .env("TELETIP_RESET_LINK", link)
            .env("TELETIP_RESET_EXPIRES_AT", expires)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?;
        let started = std::time::Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("exited with {status}")),
                Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("did not finish within 30 s".to_string());
                }
                Ok(None) => std::thread::sleep(StdDuration::from_millis(20)),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(outcome) = outcome {
        metrics::counter!("teletip_password_reset_hook_failures_total").increment(1);
        tracing::error!(hook = %hook.display(), "password-reset hook failed ({outcome}); the link was not delivered");
    }
}
