//! The acknowledgement every client event gets: `{ok: true, data?}` or
//! `{ok: false, error: {code, message}}` (codes listed in docs/signaling.md).

use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    Invalid,
    NotFound,
    Forbidden,
    Closed,
    Conflict,
    ConsentRequired,
    NotJoined,
    /// The connection's login session ended or its account changed: log in again.
    SessionEnded,
    Internal,
}

/// A refused event: its code and a message for the person using the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

impl From<crate::problem::ApiError> for Refusal {
    fn from(e: crate::problem::ApiError) -> Self {
        use crate::problem::ApiError::*;
        match e {
            NotFound => Refusal::new(Code::NotFound, "not found"),
            Forbidden(m) if m.starts_with("consent required") => Refusal::new(Code::ConsentRequired, m),
            Forbidden(m) | Unauthorized(m) => Refusal::new(Code::Forbidden, m),
            Conflict(m) => Refusal::new(Code::Conflict, m),
            BadRequest(m) => Refusal::new(Code::Invalid, m),
            Validation { detail, .. } => Refusal::new(Code::Invalid, detail),
            other => {
                tracing::error!(error = %other, "signaling event failed");
                Refusal::new(Code::Internal, "internal error")
            }
        }
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        crate::problem::ApiError::from(e).into()
    }
}

impl From<super::directory::DirectoryError> for Refusal {
    fn from(e: super::directory::DirectoryError) -> Self {
        tracing::error!(error = %e, "signaling room directory failed");
        Refusal::new(Code::Internal, "internal error")
    }
}

pub type EventResult = Result<Value, Refusal>;

pub fn ack_body(result: &EventResult) -> Value {
    match result {
        Ok(Value::Null) => json!({ "ok": true }),
        Ok(data) => json!({ "ok": true, "data": data }),
        Err(r) => json!({ "ok": false, "error": { "code": r.code, "message": r.message } }),
    }
}
