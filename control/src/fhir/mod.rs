//! A read-only FHIR R4 façade over scheduling (`/fhir/R4/...`), for hospital systems that
//! speak FHIR: Patient, Practitioner, Appointment, Schedule reads, the Slot search, and the
//! CapabilityStatement. Same bearer tokens, same access rules and the same audit events as the
//! JSON API; errors are FHIR OperationOutcomes.

pub mod paging;
pub mod resources;
pub mod routes;
pub mod search;
pub mod search_routes;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::problem::ApiError;

/// The media type FHIR servers answer with.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A FHIR resource as the response body.
pub struct Fhir(pub Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        let mut r = axum::Json(self.0).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r
    }
}

/// An API error answered as an OperationOutcome with the same status code.
pub struct FhirError(pub ApiError);

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        FhirError(e)
    }
}

impl From<crate::store::StoreError> for FhirError {
    fn from(e: crate::store::StoreError) -> Self {
        FhirError(e.into())
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        // FHIR's IssueType codes (http://hl7.org/fhir/issue-type).
        let code = match status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::TOO_MANY_REQUESTS => "throttled",
            s if s.is_client_error() => "invalid",
            _ => "exception",
        };
        let diagnostics = if status.is_server_error() { "internal error".to_string() } else { self.0.to_string() };
        if status.is_server_error() {
            tracing::error!(error = %self.0, "fhir request failed");
        }
        let body = json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        });
        let mut r = (status, axum::Json(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r
    }
}

pub type FhirResult = Result<Fhir, FhirError>;
