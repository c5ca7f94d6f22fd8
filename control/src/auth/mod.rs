//! Accounts and sessions: login, refresh-token rotation with reuse detection, logout, me.

pub mod ended;
pub mod extract;
pub mod jwt;
pub mod mfa;
pub mod password;
pub mod reset;
pub mod totp;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit::Audit;
use crate::problem::{ApiError, ApiJson, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{RefreshToken, Role, Session, User};
use jwt::Claims;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The 6-digit code of the account's authenticator app, when its MFA is on (a first login
    /// without it answers the problem `mfa-required`).
    #[schema(max_length = 64)]
    pub otp: Option<String>,
    /// Instead of `otp`: one unused recovery code (it never works again).
    #[serde(rename = "recoveryCode")]
    #[schema(max_length = 64)]
    pub recovery_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    /// Always "Bearer".
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: each refresh returns a new one; presenting a used one ends the session.
    pub refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub session_expires_at: OffsetDateTime,
    pub user: UserView,
    /// True when the account's role requires a second factor it has not enrolled
    /// (`auth.mfa-required-roles`): this session may only enroll one (`/v1/auth/mfa/…`),
    /// log out and read `/v1/me`; everything else answers 403 `mfa-enrollment-required`.
    pub mfa_enrollment_required: bool,
}

const GENERIC_LOGIN_FAILURE: &str = "e-mail or password is wrong, or the account is disabled";

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token(session_id: Uuid, now: OffsetDateTime, expires_at: OffsetDateTime) -> (String, RefreshToken) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let stored = RefreshToken {
        id: Uuid::new_v4(),
        session_id,
        token_hash: token_hash(&token),
        created_at: now,
        expires_at,
        used_at: None,
    };
    (token, stored)
}

/// A pseudonymous audit target for an e-mail address that may not belong to any account.
pub fn email_target(email: &str) -> String {
    let digest = Sha256::digest(email.as_bytes());
    format!("email-sha256:{}", digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn access_token(state: &AppState, user: &User, session_id: Uuid, now: OffsetDateTime) -> String {
    let ttl = state.config().auth.access_ttl as i64;
    state.jwt().sign(&Claims {
        sub: user.id,
        role: user.role,
        sid: session_id,
        iss: state.jwt().issuer().into(),
        aud: state.jwt().issuer().into(),
        iat: now.unix_timestamp(),
        exp: now.unix_timestamp() + ttl,
        jti: Uuid::new_v4(),
    })
}

/// The source a login attempt is throttled by: the IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually holds a whole /64, RFC 6177 section 2, so single IPv6 addresses would
/// give an attacker endless fresh sources).
pub fn throttle_source(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The account a login attempt is throttled by: a hash of the normalised e-mail, whether or not
/// an account has it, so that the delays say nothing about which e-mails exist.
pub(crate) fn throttle_account(email: &str) -> String {
    Sha256::digest(email.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Log in with e-mail and password.
///
/// Failed attempts are throttled per (account, source address): after `auth.throttle-after`
/// failures from one address, that address waits a growing delay before it may try that
/// account again (429 with `Retry-After`); other addresses, the real user's among them, are
/// not slowed down. There is no account-wide lockout that anybody could trigger.
///
/// An account with MFA on needs `otp` (or `recoveryCode`) as well: without it, a right password
/// answers 401 `/problems/mfa-required` (send the same login again with the code); a wrong or
/// replayed code counts as a failed login in the same throttle.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse),
              (status = 401, body = crate::problem::Problem,
               description = "wrong e-mail or password (`/problems/unauthorized`), or the account uses MFA and the login sent no `otp` or `recoveryCode` (`/problems/mfa-required`)"),
              (status = 422, body = crate::problem::Problem),
              (status = 429, body = crate::problem::Problem,
               description = "too many requests from this address, or too many failed logins of this account from this address (`Retry-After` says when to try again)")))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let email = normalize_email(&req.email);
    let now = state.clock().now();
    let audit = Audit::new("auth.login", &ip);
    let (account, source) = (throttle_account(&email), throttle_source(ip.0));
    if let Some(until) = state.store().login_throttle(&account, &source).await?.and_then(|t| t.blocked_until) {
        if until > now {
            // Refused before the password is checked: a guess made now could not succeed anyway.
            let wait = (until - now).whole_milliseconds().max(1) as u64;
            let user = state.store().user_by_email(&email).await?;
            let audit = match &user {
                Some(u) => audit.actor(u.id).target(u.id.to_string()),
                None => audit.target(email_target(&email)),
            };
            state.audit(audit.outcome("refused:throttled")).await?;
            metrics::counter!("teletip_logins_throttled_total").increment(1);
            return Err(ApiError::RetryLater {
                detail: "too many failed logins for this account from this address; try again later".into(),
                retry_after_seconds: wait.div_ceil(1000),
            });
        }
    }
    let policy = state.config().auth.throttle();
    let Some(user) = state.store().user_by_email(&email).await? else {
        // Same work as a real check, so response time does not reveal which e-mails exist.
        password::verify(&req.password, state.dummy_hash());
        state.store().record_login_failure(&account, &source, &policy, now).await?;
        state.audit(audit.target(email_target(&email)).outcome("failure:unknown-account")).await?;
        metrics::counter!("teletip_logins_failed_total").increment(1);
        return Err(ApiError::Unauthorized(GENERIC_LOGIN_FAILURE.into()));
    };
    let audit = audit.actor(user.id).target(user.id.to_string());
    let password_ok = password::verify(&req.password, &user.password_hash);
    if user.disabled || !password_ok {
        let throttle = state.store().record_login_failure(&account, &source, &policy, now).await?;
        let outcome = if user.disabled {
            "failure:disabled"
        } else if throttle.blocked_until.is_some_and(|t| t > now) {
            "failure:wrong-password-throttled"
        } else {
            "failure:wrong-password"
        };
        state.audit(audit.outcome(outcome)).await?;
        metrics::counter!("teletip_logins_failed_total").increment(1);
        return Err(ApiError::Unauthorized(GENERIC_LOGIN_FAILURE.into()));
    }
    if let Some(record) = state.store().mfa(user.id).await?.filter(crate::store::MfaRecord::enabled) {
        let proof = match (req.otp.as_deref(), req.recovery_code.as_deref()) {
            (Some(code), None) => mfa::Proof::Code(code),
            (None, Some(code)) => mfa::Proof::RecoveryCode(code),
            (None, None) => {
                // The normal first step of an MFA login: not a failure, nothing counted.
                state.audit(audit.outcome("refused:mfa-required")).await?;
                return Err(ApiError::MfaRequired(
                    "this account uses two-factor authentication: send the login again with `otp` (the code of the \
                     authenticator app) or `recoveryCode`"
                        .into(),
                ));
            }
            (Some(_), Some(_)) => return Err(ApiError::field("otp", "send either otp or recoveryCode, not both")),
        };
        if mfa::check_proof(&state, &ip, &user, &record, proof).await? == mfa::Verdict::Refused {
            state.audit(audit.outcome("failure:wrong-second-factor")).await?;
            metrics::counter!("teletip_logins_failed_total").increment(1);
            return Err(ApiError::Unauthorized("the one-time code or recovery code is wrong or already used".into()));
        }
    }
    state.store().clear_login_failures(&account, &source).await?;
    let session_expires_at = now + Duration::seconds(state.config().auth.session_ttl as i64);
    let session = Session {
        id: Uuid::new_v4(),
        user_id: user.id,
        created_at: now,
        expires_at: session_expires_at,
        revoked_at: None,
        revoked_reason: None,
    };
    let (refresh_token, stored) = new_refresh_token(session.id, now, session_expires_at);
    let session_id = session.id;
    state.store().create_session(session, stored).await?;
    let mfa_enrollment_required = mfa::enrollment_required(&state, &user).await?;
    state
        .audit(audit.outcome(if mfa_enrollment_required { "success:mfa-enrollment-required" } else { "success" }))
        .await?;
    Ok(Json(TokenResponse {
        access_token: access_token(&state, &user, session_id, now),
        token_type: "Bearer",
        expires_in: state.config().auth.access_ttl,
        refresh_token,
        session_expires_at,
        user: UserView::from(&user),
        mfa_enrollment_required,
    }))
}

/// Exchange a refresh token for a new access token and a new refresh token.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::problem::Problem)))]
pub async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let now = state.clock().now();
    let refused = || ApiError::Unauthorized("refresh token refused; log in again".into());
    let audit = Audit::new("auth.refresh", &ip);
    let Some(token) = state.store().refresh_token_by_hash(&token_hash(&req.refresh_token)).await? else {
        state.audit(audit.outcome("failure:unknown-token")).await?;
        return Err(refused());
    };
    let session = state.store().session(token.session_id).await?.ok_or_else(refused)?;
    let audit = audit.actor(session.user_id).target(session.id.to_string());
    if token.used_at.is_some() {
        // A spent token presented again: someone holds a copy. End the whole session.
        state.store().revoke_session(session.id, "refresh-token-reuse", now).await?;
        state.sessions_ended().announce(ended::Ended::Session(session.id), "refresh-token-reuse").await;
        let revoke = crate::domain::revocation::on_refresh_token_reuse(session.id);
        crate::revocation::follow(&state, revoke, None, Some(&ip)).await;
        state.audit(audit.outcome("failure:reuse-detected-session-revoked")).await?;
        return Err(refused());
    }
    if session.revoked_at.is_some() || session.expires_at <= now || token.expires_at <= now {
        state.audit(audit.outcome("failure:session-ended")).await?;
        return Err(refused());
    }
    let user = match state.store().user_by_id(session.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => {
            state.audit(audit.outcome("failure:disabled")).await?;
            return Err(refused());
        }
    };
    let (refresh_token, next) = new_refresh_token(session.id, now, session.expires_at);
    if !state.store().rotate_refresh_token(token.id, next, now).await? {
        // Lost a race with another use of the same token: that is reuse too.
        state.store().revoke_session(session.id, "refresh-token-reuse", now).await?;
        state.sessions_ended().announce(ended::Ended::Session(session.id), "refresh-token-reuse").await;
        let revoke = crate::domain::revocation::on_refresh_token_reuse(session.id);
        crate::revocation::follow(&state, revoke, None, Some(&ip)).await;
        state.audit(audit.outcome("failure:reuse-detected-session-revoked")).await?;
        return Err(refused());
    }
    state.audit(audit.outcome("success")).await?;
    Ok(Json(TokenResponse {
        access_token: access_token(&state, &user, session.id, now),
        token_type: "Bearer",
        expires_in: state.config().auth.access_ttl,
        refresh_token,
        session_expires_at: session.expires_at,
        mfa_enrollment_required: mfa::enrollment_required(&state, &user).await?,
        user: UserView::from(&user),
    }))
}

/// End the caller's session: its access and refresh tokens stop working at once, its
/// signaling connections are ended (`session:ended {reason: "logout"}`), and the relay
/// credentials issued under it are revoked on every relay.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::problem::Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    ip: ClientIp,
    extract::EnrollingCaller(caller): extract::EnrollingCaller,
) -> ApiResult<StatusCode> {
    state.store().revoke_session(caller.session_id, "logout", state.clock().now()).await?;
    state.sessions_ended().announce(ended::Ended::Session(caller.session_id), "logout").await;
    let revoke = crate::domain::revocation::on_logout(caller.session_id);
    crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    state
        .audit(
            Audit::new("auth.logout", &ip)
                .actor(caller.user_id)
                .target(caller.session_id.to_string())
                .outcome("success"),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::problem::Problem)))]
pub async fn me(
    State(state): State<AppState>,
    extract::EnrollingCaller(caller): extract::EnrollingCaller,
) -> ApiResult<Json<UserView>> {
    let user = state.store().user_by_id(caller.user_id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(UserView::from(&user)))
}

/// Sign-in, token refresh and password reset: the routes, each served and described from its `#[utoipa::path]`.
/// Apart from `router` because app.rs puts the per-address rate limit around these alone.
pub fn sign_in_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(reset::request))
        .routes(routes!(reset::confirm))
}

/// Logout and the caller's own account: the routes, each served and described from its
/// `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logout)).routes(routes!(me)).merge(mfa::router())
}
