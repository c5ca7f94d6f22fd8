//! The FHIR endpoints. Each answers with the resource or an OperationOutcome, applies the same
//! access rules as the JSON API (through `scheduling::access`) and writes the same audit events.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Fhir, FhirError, FhirResult, resources, search, search_routes};
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

/// The FHIR routes, each served and described from its `#[utoipa::path]` (FHIR JSON bodies and
/// OperationOutcome errors, which `openapi::CommonProblems` leaves as they are).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata))
        .routes(routes!(search_routes::patients))
        .routes(routes!(patient))
        .routes(routes!(search_routes::practitioners))
        .routes(routes!(practitioner))
        .routes(routes!(schedule))
        .routes(routes!(search_routes::appointments))
        .routes(routes!(appointment))
        .routes(routes!(slots))
}

/// The absolute base of this façade (for Bundle.entry.fullUrl and Bundle links): the
/// configured `public-url`, never the request's `Host` or `X-Forwarded-*` headers, which a
/// client chooses (issue 18, item 10: a forged Host made the server hand out links to
/// another site).
pub(super) fn base_url(state: &AppState) -> String {
    format!("{}/fhir/R4", state.config().public_base())
}

/// A FHIR logical id that is not one of ours names nothing: 404, as FHIR servers answer.
fn logical_id(id: &str) -> Result<Uuid, FhirError> {
    Uuid::parse_str(id).map_err(|_| FhirError(ApiError::NotFound))
}

#[utoipa::path(get, path = "/fhir/R4/metadata", tag = "fhir",
    responses((status = 200, description = "CapabilityStatement", content_type = "application/fhir+json", body = Object)))]
async fn metadata(State(state): State<AppState>) -> FhirResult {
    Ok(Fhir(resources::capability_statement(&base_url(&state), env!("CARGO_PKG_VERSION"), state.clock().now())))
}

#[utoipa::path(get, path = "/fhir/R4/Patient/{id}", tag = "fhir", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Patient", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 403, description = "OperationOutcome (forbidden)", content_type = "application/fhir+json", body = Object),
              (status = 404, description = "OperationOutcome (not-found)", content_type = "application/fhir+json", body = Object),
              (status = 422, description = "OperationOutcome (invalid Break-Glass-Reason)", content_type = "application/fhir+json", body = Object)))]
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

#[utoipa::path(get, path = "/fhir/R4/Practitioner/{id}", tag = "fhir", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Practitioner", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 404, description = "OperationOutcome (not-found)", content_type = "application/fhir+json", body = Object)))]
async fn practitioner(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    caller?;
    let p = state.store().practitioner(logical_id(&id)?).await?.ok_or(ApiError::NotFound)?;
    Ok(Fhir(resources::practitioner(&p)))
}

#[utoipa::path(get, path = "/fhir/R4/Schedule/{id}", tag = "fhir", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Schedule", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 404, description = "OperationOutcome (not-found)", content_type = "application/fhir+json", body = Object)))]
async fn schedule(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    caller?;
    let p = state.store().practitioner(logical_id(&id)?).await?.ok_or(ApiError::NotFound)?;
    Ok(Fhir(resources::schedule(&p)))
}

#[utoipa::path(get, path = "/fhir/R4/Appointment/{id}", tag = "fhir", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "Appointment", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 403, description = "OperationOutcome (forbidden)", content_type = "application/fhir+json", body = Object),
              (status = 404, description = "OperationOutcome (not-found)", content_type = "application/fhir+json", body = Object)))]
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

#[utoipa::path(get, path = "/fhir/R4/Slot", tag = "fhir", security(("bearer" = [])),
    params(("schedule" = String, Query, description = "Schedule/<practitioner id>",
            pattern = "^(Schedule/)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
           ("start" = Option<String>, Query, description = "A day, with the prefix eq, ge or gt (repeatable, le and lt too: see the CapabilityStatement)",
            pattern = "^(eq|ge|gt)?(19[7-9][0-9]|[2-7][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$"),
           ("status" = Option<String>, Query, pattern = "^free$"),
           ("_count" = Option<usize>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, description = "Bundle (searchset) of free Slots", content_type = "application/fhir+json", body = Object),
              (status = 400, description = "OperationOutcome (invalid): a parameter the search does not support, a malformed value or range", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 404, description = "OperationOutcome (not-found): no such practitioner", content_type = "application/fhir+json", body = Object)))]
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
pub(super) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
