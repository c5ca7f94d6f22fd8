//! The authenticated caller of a request: a valid access token whose session is still open
//! and whose account is still enabled. Checked against the store on every request so that a
//! logout, a reuse detection or a disabled account takes effect at once (HIPAA 164.312(a)):
//! the store may answer from a cache of at most `store::READ_CACHE_TTL` (1 s), which its own
//! writes that end a session or change an account clear at once; a change made through
//! another control instance takes effect here within that second.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::auth::jwt::Claims;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::Role;

#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
}

impl Caller {
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "requires the role {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ")
            )))
        }
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

fn bearer_in(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The claims of this request's bearer token, verified (signature, issuer, audience, expiry)
/// by the first layer that needed them and kept in the request's extensions, so that the
/// account rate limit and the [`Caller`] extractor do not verify the same token again (each
/// verification is an HMAC-SHA256, base64 decodings and two JSON parses, on every ICE
/// credential request). Only [`verified_bearer`] inserts it, from the
/// request's own `Authorization` header; a token that fails verification is not kept, and the
/// extractor then verifies it itself to say why it is refused.
#[derive(Debug, Clone)]
pub struct VerifiedBearer(pub Arc<Claims>);

/// The request's verified bearer claims: from its extensions if a layer verified them
/// already, else verified now and kept there for the layers and the handler after it.
pub fn verified_bearer(state: &AppState, request: &mut Request) -> Option<Arc<Claims>> {
    if let Some(VerifiedBearer(claims)) = request.extensions().get::<VerifiedBearer>() {
        return Some(claims.clone());
    }
    let claims = Arc::new(state.jwt().verify(bearer_in(request.headers())?).ok()?);
    request.extensions_mut().insert(VerifiedBearer(claims.clone()));
    Some(claims)
}

/// Middleware: verifies the bearer token once for every layer and handler inside it
/// ([`VerifiedBearer`]); a request without a valid token goes on unchanged (the handler's
/// extractor refuses it).
pub async fn verify_bearer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    verified_bearer(&state, &mut request);
    next.run(request).await
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(VerifiedBearer(claims)) = parts.extensions.get::<VerifiedBearer>() {
            let claims = claims.clone();
            return Ok(authenticate_claims(state, &claims).await?.0);
        }
        let token = bearer(parts)
            .ok_or_else(|| ApiError::Unauthorized("send an access token: Authorization: Bearer <token>".into()))?;
        Ok(authenticate(state, token).await?.0)
    }
}

/// A caller whose session may be restricted to enrolling a second factor
/// (`auth.mfa-required-roles`): taken by the MFA endpoints, logout and `/v1/me`, which such a
/// session must reach. Every other handler takes [`Caller`], which refuses it.
#[derive(Debug, Clone, Copy)]
pub struct EnrollingCaller(pub Caller);

impl FromRequestParts<AppState> for EnrollingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::Unauthorized("send an access token: Authorization: Bearer <token>".into()))?;
        Ok(EnrollingCaller(authenticate_session(state, token).await?.0))
    }
}

/// What a session restricted to enrollment is told everywhere else.
pub const ENROLL_FIRST: &str = "your role requires two-factor authentication: this session can only enroll it \
     (POST /v1/auth/mfa/enroll, then POST /v1/auth/mfa/confirm with a code from the authenticator app)";

/// Whether this account must enroll a second factor before it may do anything else: its role
/// is in `auth.mfa-required-roles` and its MFA is not on. One query, and only for those roles.
pub async fn must_enroll_mfa(state: &AppState, user_id: Uuid, role: Role) -> Result<bool, crate::store::StoreError> {
    if !state.config().auth.mfa_required_roles.contains(&role) {
        return Ok(false);
    }
    Ok(!state.store().mfa(user_id).await?.is_some_and(|m| m.enabled()))
}

/// Why an access token does not make a caller (also the signaling handshake's answers).
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    #[error("token refused ({0})")]
    Invalid(String),
    #[error("session ended; log in again")]
    SessionEnded,
    #[error("account disabled")]
    AccountDisabled,
    #[error("{ENROLL_FIRST}")]
    MfaEnrollmentRequired,
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl From<TokenRefusal> for ApiError {
    fn from(e: TokenRefusal) -> Self {
        match e {
            TokenRefusal::Invalid(why) => ApiError::Unauthorized(format!("access token refused ({why})")),
            TokenRefusal::SessionEnded => ApiError::Unauthorized("the session has ended; log in again".into()),
            TokenRefusal::AccountDisabled => ApiError::Unauthorized("the account is disabled".into()),
            TokenRefusal::MfaEnrollmentRequired => ApiError::MfaEnrollmentRequired(ENROLL_FIRST.into()),
            TokenRefusal::Store(e) => e.into(),
        }
    }
}

/// Checks an access token against the keys, its session and its account, and refuses a session
/// that may only enroll a second factor: the caller, and when the token expires.
pub async fn authenticate(state: &AppState, token: &str) -> Result<(Caller, time::OffsetDateTime), TokenRefusal> {
    authenticate_claims(state, &verify(state, token)?).await
}

/// As [`authenticate`], for claims already verified ([`VerifiedBearer`]).
async fn authenticate_claims(
    state: &AppState,
    claims: &Claims,
) -> Result<(Caller, time::OffsetDateTime), TokenRefusal> {
    let (caller, expires) = session_of(state, claims).await?;
    if must_enroll_mfa(state, caller.user_id, caller.role).await? {
        return Err(TokenRefusal::MfaEnrollmentRequired);
    }
    Ok((caller, expires))
}

/// As [`authenticate`], but a session restricted to enrollment passes.
pub async fn authenticate_session(
    state: &AppState,
    token: &str,
) -> Result<(Caller, time::OffsetDateTime), TokenRefusal> {
    session_of(state, &verify(state, token)?).await
}

fn verify(state: &AppState, token: &str) -> Result<Claims, TokenRefusal> {
    state.jwt().verify(token).map_err(|e| match e {
        crate::auth::jwt::TokenError::Invalid(e)
            if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) =>
        {
            TokenRefusal::Invalid("expired".into())
        }
        other => TokenRefusal::Invalid(other.to_string()),
    })
}

/// The caller of verified claims: their session still open and their account enabled.
async fn session_of(state: &AppState, claims: &Claims) -> Result<(Caller, time::OffsetDateTime), TokenRefusal> {
    let read = state.store().token_session(claims.sid, claims.sub).await?;
    let (session, user) = &*read;
    let now = state.clock().now();
    match session {
        Some(s) if s.revoked_at.is_none() && s.expires_at > now && s.user_id == claims.sub => {}
        _ => return Err(TokenRefusal::SessionEnded),
    }
    let expires =
        time::OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|e| TokenRefusal::Invalid(e.to_string()))?;
    match user {
        Some(u) if !u.disabled => Ok((Caller { user_id: u.id, role: u.role, session_id: claims.sid }, expires)),
        _ => Err(TokenRefusal::AccountDisabled),
    }
}

/// Whether a caller authenticated earlier (a signaling connection, at its handshake) may still
/// act: the session not revoked or expired, the account enabled and still of the same role.
pub async fn still_live(state: &AppState, caller: &Caller) -> Result<(), TokenRefusal> {
    // Read from the database itself, not the read cache: a signaling event is refused as soon
    // as its session ended on any instance, even one without Redis (docs/control-security.md).
    let now = state.clock().now();
    match state.store().session(caller.session_id).await? {
        Some(s) if s.revoked_at.is_none() && s.expires_at > now && s.user_id == caller.user_id => {}
        _ => return Err(TokenRefusal::SessionEnded),
    }
    match state.store().user_by_id(caller.user_id).await? {
        Some(u) if u.disabled => Err(TokenRefusal::AccountDisabled),
        Some(u) if u.role == caller.role => Ok(()),
        // A changed role ends the user's sessions (users.rs); this is the belt to those braces.
        Some(_) => Err(TokenRefusal::SessionEnded),
        None => Err(TokenRefusal::AccountDisabled),
    }
}
