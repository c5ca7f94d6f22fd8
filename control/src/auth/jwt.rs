//! Short-lived access tokens: HS256 JWTs with a `kid` header so that signing keys rotate
//! (the first key signs, every configured key verifies). Only HS256 is accepted: `alg: none`
//! and algorithm confusion are refused by construction.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    /// The login session; revoking it ends this token before `exp`.
    pub sid: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

pub struct JwtKeys {
    issuer: String,
    signing_kid: String,
    signing: EncodingKey,
    verifying: Vec<(String, DecodingKey)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token has no known key id")]
    UnknownKey,
    #[error("token is invalid: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

impl JwtKeys {
    /// `keys` in order: the first signs.
    pub fn new(issuer: &str, keys: &[(String, Vec<u8>)]) -> JwtKeys {
        let (kid, secret) = keys.first().expect("at least one JWT key");
        JwtKeys {
            issuer: issuer.into(),
            signing_kid: kid.clone(),
            signing: EncodingKey::from_secret(secret),
            verifying: keys.iter().map(|(k, s)| (k.clone(), DecodingKey::from_secret(s))).collect(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing).expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.verifying.iter().find(|(k, _)| *k == kid).map(|(_, key)| key).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(jsonwebtoken::decode::<Claims>(token, key, &validation)?.claims)
    }
}
