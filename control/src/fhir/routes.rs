//! The FHIR endpoints. Each answers with the resource or an OperationOutcome, applies the same
//! access rules as the JSON API (through `scheduling::access`) and writes the same audit events.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use uuid::Uuid;

use super::{Fhir, FhirError, FhirResult, resources, search};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::ApiError;
use crate::scheduling::access::{RecordAccess, authorize_patient};
use crate::scheduling::actions;
use crate::scheduling::appointments::visible;
use crate::scheduling::patients::view as patient_view;
use crate::scheduling::schedule::{
    DEFAULT_PAGE, EARLIEST, LATEST, MAX_PAGE, check_range, cursor, free_slots_of, parse_cursor,
};
use crate::state::{AppState, ClientIp};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/R4/metadata", get(metadata))
        .route("/fhir/R4/Patient/{id}", get(patient))
        .route("/fhir/R4/Practitioner/{id}", get(practitioner))
        .route("/fhir/R4/Schedule/{id}", get(schedule))
        .route("/fhir/R4/Appointment/{id}", get(appointment))
        .route("/fhir/R4/Slot", get(slots))
}

/// The absolute base of this façade (for Bundle.entry.fullUrl and Bundle links): the
/// configured `public-url`, never the request's `Host` or `X-Forwarded-*` headers, which a
/// client chooses (issue 18, item 10: a forged Host made the server hand out links to
/// another site).
fn base_url(state: &AppState) -> String {
    format!("{}/fhir/R4", state.config().public_base())
}

/// A FHIR logical id that is not one of ours names nothing: 404, as FHIR servers answer.
fn logical_id(id: &str) -> Result<Uuid, FhirError> {
    Uuid::parse_str(id).map_err(|_| FhirError(ApiError::NotFound))
}

async fn metadata(State(state): State<AppState>) -> FhirResult {
    Ok(Fhir(resources::capability_statement(&base_url(&state), env!("CARGO_PKG_VERSION"), state.clock().now())))
}

async fn patient(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult {
    let caller = caller?;
    let id = logical_id(&id)?;
    // The same care relationship and break-the-glass rule as GET /v1/patients/{id}.
    let audit = authorize_patient(&state, &ip, &caller, &headers, id, RecordAccess::Read).await?;
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
    let a = visible(&state, &ip, &caller, id, actions::APPOINTMENT_READ).await?;
    state.audit(Audit::new(actions::APPOINTMENT_READ, &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Fhir(resources::appointment(&a)))
}

/// `GET /fhir/R4/Slot?schedule=Schedule/<id>&start=ge…&start=lt…`: free slots (searchset),
/// `_count` per page (default 500, at most 1000) with a `next` link while more follow. The
/// slots are computed only up to the page's end (`free_slots_page`).
async fn slots(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Query(params): Query<Vec<(String, String)>>,
) -> FhirResult {
    caller?;
    let mut schedule = None;
    let mut starts = Vec::new();
    let mut count = DEFAULT_PAGE;
    let mut after = None;
    for (name, value) in &params {
        match name.as_str() {
            "schedule" => schedule = Some(value.trim_start_matches("Schedule/").to_string()),
            "start" => starts.push(value.clone()),
            "status" if value == "free" => {}
            "status" => return Err(ApiError::BadRequest("only status=free slots are searchable".into()).into()),
            "_count" => {
                count = value
                    .parse()
                    .ok()
                    .filter(|c| (1..=MAX_PAGE).contains(c))
                    .ok_or_else(|| ApiError::BadRequest(format!("_count must be between 1 and {MAX_PAGE}")))?;
            }
            "_cursor" => {
                after = Some(
                    parse_cursor(value)
                        .ok_or_else(|| ApiError::BadRequest("_cursor is not one this server gave".into()))?,
                )
            }
            "_format" => {}
            other => return Err(ApiError::BadRequest(format!("unsupported search parameter {other:?}")).into()),
        }
    }
    let schedule = schedule.ok_or_else(|| ApiError::BadRequest("the schedule parameter is required".into()))?;
    let practitioner_id = Uuid::parse_str(&schedule)
        .map_err(|_| ApiError::BadRequest("schedule must be Schedule/<practitioner id>".into()))?;
    let (from, to) = search::start_range(&starts).map_err(ApiError::BadRequest)?;
    // Without bounds: from now, over the next two weeks.
    let from = from.unwrap_or_else(jiff::Timestamp::now);
    let to = match to {
        Some(to) => to,
        None => from
            .checked_add(jiff::SignedDuration::from_hours(14 * 24))
            .map_err(|_| ApiError::BadRequest(format!("start: times must lie between {EARLIEST} and {LATEST}")))?,
    };
    check_range(from, to).map_err(|e| ApiError::BadRequest(format!("start: {e}")))?;
    let (_, page) = free_slots_of(&state, practitioner_id, from, to, after, count).await?;
    let base = base_url(&state);
    let query = |cursor: Option<&str>| {
        let mut pairs: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "_cursor")
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        if let Some(c) = cursor {
            pairs.push(format!("_cursor={c}"));
        }
        format!("{base}/Slot?{}", pairs.join("&"))
    };
    let self_url = query(after.as_ref().map(cursor).as_deref());
    let next_url = if page.more { page.slots.last().map(|last| query(Some(&cursor(last)))) } else { None };
    let found = page.slots.iter().map(|s| resources::slot(practitioner_id, s)).collect();
    Ok(Fhir(resources::searchset(&base, &self_url, next_url.as_deref(), after.is_none() && !page.more, found)))
}

/// Percent-encodes a query component (RFC 3986 section 3.4: everything but unreserved
/// characters), so that a link repeats the search exactly.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
