//! The authenticated caller of a request: a valid access token whose session is still open
//! and whose account is still enabled. Checked against the store on every request so that a
//! logout, a reuse detection or a disabled account takes effect at once (HIPAA 164.312(a)).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::app::AppState;
use crate::problem::ApiError;
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
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::Unauthorized("send an access token: Authorization: Bearer <token>".into()))?;
        let claims =
            state.jwt().verify(token).map_err(|e| ApiError::Unauthorized(format!("access token refused ({e})")))?;
        let session = state.store().session(claims.sid).await?;
        let now = crate::clock::now();
        match session {
            Some(s) if s.revoked_at.is_none() && s.expires_at > now && s.user_id == claims.sub => {}
            _ => return Err(ApiError::Unauthorized("the session has ended; log in again".into())),
        }
        let user = state.store().user_by_id(claims.sub).await?;
        match user {
            Some(u) if !u.disabled => Ok(Caller { user_id: u.id, role: u.role, session_id: claims.sid }),
            _ => Err(ApiError::Unauthorized("the account is disabled".into())),
        }
    }
}
