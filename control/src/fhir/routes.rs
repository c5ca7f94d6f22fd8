//! The FHIR endpoints. Each answers with the resource or an OperationOutcome, applies the same
//! access rules as the JSON API (through `scheduling::access`) and writes the same audit events.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use uuid::Uuid;

use super::{Fhir, FhirError, FhirResult, resources, search};
use crate::app::{AppState, ClientIp};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::ApiError;
use crate::scheduling::access::scope;
use crate::scheduling::appointments::visible;
use crate::scheduling::availability::MAX_RANGE_DAYS;
use crate::scheduling::patients::view as patient_view;
use crate::scheduling::schedule::free_slots_of;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/R4/metadata", get(metadata))
        .route("/fhir/R4/Patient/{id}", get(patient))
        .route("/fhir/R4/Practitioner/{id}", get(practitioner))
        .route("/fhir/R4/Schedule/{id}", get(schedule))
        .route("/fhir/R4/Appointment/{id}", get(appointment))
        .route("/fhir/R4/Slot", get(slots))
}

/// The absolute base of this façade as the client reached it (for Bundle.entry.fullUrl).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    let proto = if proto == "https" { "https" } else { "http" };
    format!("{proto}://{host}/fhir/R4")
}

/// A FHIR logical id that is not one of ours names nothing: 404, as FHIR servers answer.
fn logical_id(id: &str) -> Result<Uuid, FhirError> {
    Uuid::parse_str(id).map_err(|_| FhirError(ApiError::NotFound))
}

async fn metadata(headers: HeaderMap) -> FhirResult {
    Ok(Fhir(resources::capability_statement(&base_url(&headers), env!("CARGO_PKG_VERSION"), crate::clock::now())))
}

async fn patient(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    let caller = caller?;
    let id = logical_id(&id)?;
    let audit = Audit::new("patient.read", &ip).actor(caller.user_id).target(id.to_string());
    if !scope(&state, &caller).await?.sees_patient(&state, id).await? {
        state.audit(audit.outcome("denied")).await?;
        return Err(FhirError(ApiError::Forbidden("you may not read this patient's record".into())));
    }
    let p = state.store().patient(id).await?.ok_or(ApiError::NotFound)?;
    state.audit(audit).await?;
    Ok(Fhir(resources::patient(&patient_view(&state, &p)?, p.updated_at, p.anonymized_at.is_some())))
}

async fn practitioner(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    caller?;
    let p = state.store().practitioner(logical_id(&id)?).await?.ok_or(ApiError::NotFound)?;
    Ok(Fhir(resources::practitioner(&p)))
}

async fn schedule(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    caller?;
    let p = state.store().practitioner(logical_id(&id)?).await?.ok_or(ApiError::NotFound)?;
    Ok(Fhir(resources::schedule(&p)))
}

async fn appointment(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    let caller = caller?;
    let id = logical_id(&id)?;
    let a = visible(&state, &ip, &caller, id, "appointment.read").await?;
    state.audit(Audit::new("appointment.read", &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Fhir(resources::appointment(&a)))
}

/// `GET /fhir/R4/Slot?schedule=Schedule/<id>&start=ge…&start=lt…`: free slots (searchset).
async fn slots(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> FhirResult {
    caller?;
    let mut schedule = None;
    let mut starts = Vec::new();
    for (name, value) in &params {
        match name.as_str() {
            "schedule" => schedule = Some(value.trim_start_matches("Schedule/").to_string()),
            "start" => starts.push(value.clone()),
            "status" if value == "free" => {}
            "status" => return Err(ApiError::BadRequest("only status=free slots are searchable".into()).into()),
            "_count" | "_format" => {}
            other => return Err(ApiError::BadRequest(format!("unsupported search parameter {other:?}")).into()),
        }
    }
    let schedule = schedule.ok_or_else(|| ApiError::BadRequest("the schedule parameter is required".into()))?;
    let practitioner_id = Uuid::parse_str(&schedule)
        .map_err(|_| ApiError::BadRequest("schedule must be Schedule/<practitioner id>".into()))?;
    let (from, to) = search::start_range(&starts).map_err(ApiError::BadRequest)?;
    // Without bounds: from now, over the next two weeks.
    let from = from.unwrap_or_else(jiff::Timestamp::now);
    let to = to.unwrap_or(from + jiff::SignedDuration::from_hours(14 * 24));
    if to <= from || to.duration_since(from) > jiff::SignedDuration::from_hours(MAX_RANGE_DAYS * 24) {
        return Err(ApiError::BadRequest(format!(
            "start must name a non-empty range of at most {MAX_RANGE_DAYS} days"
        ))
        .into());
    }
    let (_, slots) = free_slots_of(&state, practitioner_id, from, to).await?;
    let base = base_url(&headers);
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let self_url = format!("{base}/Slot?{}", query.join("&"));
    let found = slots.iter().map(|s| resources::slot(practitioner_id, s)).collect();
    Ok(Fhir(resources::searchset(&base, &self_url, found)))
}
