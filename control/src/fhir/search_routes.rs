//! The FHIR searches an EHR runs: Appointment by patient, practitioner (or actor), date and
//! status, with `_include` of their Patient and Practitioner; Patient by identifier;
//! Practitioner by name. Paged by `_count` with opaque `_cursor` next links. Each applies the
//! JSON API's access rules (`scheduling::access`) and writes its audit events: an appointment
//! search is audited as `GET /v1/appointments` is, every patient record returned (matched or
//! included) as a `patient.read`.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use uuid::Uuid;

use super::paging::{SearchRequest, cursor, lenient, time_cursor};
use super::routes::base_url;
use super::{Fhir, FhirError, FhirResult, resources, search};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::ApiError;
use crate::scheduling::access::{Scope, care_window, scope};
use crate::scheduling::actions;
use crate::scheduling::patients::view as patient_view;
use crate::state::{AppState, ClientIp};
use crate::store::{AppointmentSearch, AppointmentStatus, PatientSearch, PractitionerSearch};

/// The search parameters of each resource type, as the CapabilityStatement lists them.
pub const APPOINTMENT_PARAMS: &[&str] = &["patient", "practitioner", "actor", "date", "status"];
pub const APPOINTMENT_INCLUDES: &[&str] = &["Appointment:patient", "Appointment:practitioner"];
pub const PATIENT_PARAMS: &[&str] = &["identifier"];
pub const PRACTITIONER_PARAMS: &[&str] = &["name"];

fn bad(text: impl Into<String>) -> FhirError {
    FhirError(ApiError::BadRequest(text.into()))
}

/// A reference search value, `Type/<id>` or a bare id, naming a record of type `kind`.
fn reference(param: &str, value: &str, kind: &str) -> Result<Uuid, FhirError> {
    let id = value.strip_prefix(&format!("{kind}/")).unwrap_or(value);
    Uuid::parse_str(id).map_err(|_| bad(format!("{param} must be {kind}/<id> or <id>, not {value:?}")))
}

/// Reads the request's parameters; unknown ones refused unless the client prefers leniency.
fn request(
    params: &[(String, String)],
    headers: &HeaderMap,
    known: &[&str],
    includes: &[&str],
) -> Result<SearchRequest, FhirError> {
    SearchRequest::read(params, known, includes, lenient(headers)).map_err(bad)
}

#[utoipa::path(get, path = "/fhir/R4/Appointment", tag = "fhir", security(("bearer" = [])),
    params(("patient" = Option<String>, Query, description = "Patient/<id>", pattern = "^(Patient/)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
           ("practitioner" = Option<String>, Query, description = "Practitioner/<id>", pattern = "^(Practitioner/)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
           ("actor" = Option<String>, Query, description = "Patient/<id> or Practitioner/<id>", pattern = "^(Patient|Practitioner)/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
           ("date" = Option<String>, Query, description = "Appointment.start: a day or an instant, with the prefix eq, ge, gt, le or lt (repeatable)",
            pattern = "^(eq|ge|gt|le|lt)?[1-8][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z)?$"),
           ("status" = Option<String>, Query, description = "Appointment status codes, comma-separated: any of them",
            pattern = "^(proposed|pending|booked|arrived|checked-in|fulfilled|cancelled|noshow|entered-in-error)(,(proposed|pending|booked|arrived|checked-in|fulfilled|cancelled|noshow|entered-in-error))*$"),
           ("_include" = Option<String>, Query, description = "Appointment:patient or Appointment:practitioner (repeatable)",
            pattern = "^Appointment:(patient|practitioner)$"),
           ("_count" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Results per page (default 50)")),
    responses((status = 200, description = "Bundle (searchset) of Appointments, and the included Patients and Practitioners", content_type = "application/fhir+json", body = Object),
              (status = 400, description = "OperationOutcome (invalid): an unknown parameter, a malformed value or _cursor", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object),
              (status = 403, description = "OperationOutcome (forbidden): another patient's or practitioner's appointments", content_type = "application/fhir+json", body = Object)))]
/// `GET /fhir/R4/Appointment?patient=&practitioner=&actor=&date=&status=&_include=&_count=`
pub async fn appointments(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> FhirResult {
    let caller = caller?;
    let req = request(&params, &headers, APPOINTMENT_PARAMS, APPOINTMENT_INCLUDES)?;
    let mut s =
        AppointmentSearch { limit: req.count + 1, after: req.time_cursor().map_err(bad)?, ..Default::default() };
    let mut patient = req.single("patient").map_err(bad)?.map(|v| reference("patient", v, "Patient")).transpose()?;
    let mut practitioner =
        req.single("practitioner").map_err(bad)?.map(|v| reference("practitioner", v, "Practitioner")).transpose()?;
    // Parameters combine with AND: an actor other than the patient (or practitioner) asked
    // for matches nothing.
    let mut contradiction = false;
    if let Some(actor) = req.single("actor").map_err(bad)? {
        let (slot, id) = if actor.starts_with("Patient/") {
            (&mut patient, reference("actor", actor, "Patient")?)
        } else {
            (&mut practitioner, reference("actor", actor, "Practitioner")?)
        };
        contradiction = slot.is_some_and(|other| other != id);
        *slot = Some(id);
    }
    for value in req.values("status") {
        for code in value.split(',') {
            let status = AppointmentStatus::parse(code).ok_or_else(|| {
                bad(format!("status {code:?} is not an Appointment status (proposed, pending, booked, …)"))
            })?;
            s.statuses.push(status);
        }
    }
    let dates: Vec<String> = req.values("date").map(str::to_string).collect();
    let (from, to) = search::start_range(&dates).map_err(|e| bad(format!("date: {e}")))?;
    // Both engines keep microseconds: a bound is rounded up to the next one, so that `gt` an
    // instant (its period ends a nanosecond later) excludes that instant.
    let instant = |t: jiff::Timestamp| {
        let micros = t.as_nanosecond().div_euclid(1000) + i128::from(t.as_nanosecond().rem_euclid(1000) != 0);
        time::OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()
    };
    (s.start_from, s.start_before) = (from.and_then(instant), to.and_then(instant));

    // The JSON API's rule: admins see every appointment, a practitioner their own, a patient
    // theirs. Asking for someone else's is refused and audited rather than silently narrowed.
    let denied = |what: &str| {
        let audit = Audit::new(actions::APPOINTMENT_LIST, &ip).actor(caller.user_id).target(what.to_string());
        (audit.outcome("denied"), FhirError(ApiError::Forbidden(format!("these appointments are not yours ({what})"))))
    };
    let caller_scope = scope(&state, &caller).await?;
    match caller_scope {
        Scope::All => {}
        Scope::Practitioner(own) if practitioner.is_some_and(|p| p != own) => {
            let (audit, e) = denied("another practitioner's");
            state.audit(audit).await?;
            return Err(e);
        }
        Scope::Practitioner(own) => practitioner = Some(own),
        Scope::Patient(own) if patient.is_some_and(|p| p != own) => {
            let (audit, e) = denied("another patient's");
            state.audit(audit).await?;
            return Err(e);
        }
        Scope::Patient(own) => patient = Some(own),
        Scope::Nothing => {}
    }
    (s.patient_id, s.practitioner_id) = (patient, practitioner);
    let mut page = if caller_scope == Scope::Nothing || contradiction {
        crate::store::SearchPage { items: Vec::new(), total: 0 }
    } else {
        state.store().search_appointments(&s).await?
    };
    let more = page.items.len() as i64 > req.count;
    page.items.truncate(req.count as usize);
    state
        .audit(
            Audit::new(actions::APPOINTMENT_LIST, &ip)
                .actor(caller.user_id)
                .target(format!("{} results", page.items.len())),
        )
        .await?;

    let mut included = Vec::new();
    if req.includes.iter().any(|i| i == "Appointment:patient") {
        let ids: BTreeSet<Uuid> = page.items.iter().map(|a| a.patient_id).collect();
        for id in ids {
            // A practitioner's appointment may name a patient outside their care relationship
            // (one they booked themselves): that record is not included.
            if !caller_scope.sees_patient(&state, id).await? {
                continue;
            }
            let Some(p) = state.store().patient(id).await? else { continue };
            state.audit(Audit::new(actions::PATIENT_READ, &ip).actor(caller.user_id).target(id.to_string())).await?;
            included.push(resources::patient(&patient_view(&state, &p)?, p.updated_at, p.anonymized_at.is_some()));
        }
    }
    if req.includes.iter().any(|i| i == "Appointment:practitioner") {
        let ids: BTreeSet<Uuid> = page.items.iter().map(|a| a.practitioner_id).collect();
        for id in ids {
            if let Some(p) = state.store().practitioner(id).await? {
                included.push(resources::practitioner(&p));
            }
        }
    }
    let base = base_url(&state);
    let here = format!("{base}/Appointment");
    let self_url = req.link(&here, params.iter().find(|(k, _)| k == "_cursor").map(|(_, v)| v.as_str()));
    let next = page.items.last().filter(|_| more).map(|a| req.link(&here, Some(&time_cursor(a.starts_at, a.id))));
    let matches = page.items.iter().map(resources::appointment).collect();
    Ok(Fhir(resources::search_page(&base, &self_url, next.as_deref(), page.total, matches, included)))
}

#[utoipa::path(get, path = "/fhir/R4/Patient", tag = "fhir", security(("bearer" = [])),
    params(("identifier" = Option<String>, Query, description = "[system|]value: the national id under urn:teletip:national-id"),
           ("_count" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Results per page (default 50)")),
    responses((status = 200, description = "Bundle (searchset) of Patients", content_type = "application/fhir+json", body = Object),
              (status = 400, description = "OperationOutcome (invalid): an unknown parameter, a malformed value or _cursor", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object)))]
/// `GET /fhir/R4/Patient?identifier=[system|]value&_count=`: the records the caller may see
/// (as `GET /v1/patients`), each returned one an audited read.
pub async fn patients(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> FhirResult {
    let caller = caller?;
    let req = request(&params, &headers, PATIENT_PARAMS, &[])?;
    let mut s = PatientSearch { limit: req.count + 1, after: req.cursor.clone(), ..Default::default() };
    let mut no_match = false;
    if let Some(identifier) = req.single("identifier").map_err(bad)? {
        let (system, value) = match identifier.split_once('|') {
            Some((system, value)) => (Some(system), value),
            None => (None, identifier),
        };
        // teletip keeps one identifier, the national id, under its own system; a search in
        // another system (or with no system, `|value`) finds nothing. An empty value, as
        // FHIR prescribes for empty parameters, does not filter.
        no_match = system.is_some_and(|s| s != resources::NATIONAL_ID_SYSTEM);
        if !value.trim().is_empty() {
            s.national_id_index = Some(state.fields().blind_index(crate::crypto::field::NATIONAL_ID, value.trim()));
        }
    }
    match scope(&state, &caller).await? {
        Scope::All => {}
        Scope::Practitioner(p) => s.care_of = Some((p, care_window(&state))),
        Scope::Patient(own) => s.only = Some(own),
        Scope::Nothing => no_match = true,
    }
    let mut page = if no_match {
        crate::store::SearchPage { items: Vec::new(), total: 0 }
    } else {
        state.store().search_patients(&s).await?
    };
    let more = page.items.len() as i64 > req.count;
    page.items.truncate(req.count as usize);
    let mut matches = Vec::with_capacity(page.items.len());
    for p in &page.items {
        state.audit(Audit::new(actions::PATIENT_READ, &ip).actor(caller.user_id).target(p.id.to_string())).await?;
        matches.push(resources::patient(&patient_view(&state, p)?, p.updated_at, p.anonymized_at.is_some()));
    }
    let base = base_url(&state);
    let here = format!("{base}/Patient");
    let self_url = req.link(&here, params.iter().find(|(k, _)| k == "_cursor").map(|(_, v)| v.as_str()));
    let next = page.items.last().filter(|_| more).map(|p| req.link(&here, Some(&cursor(&p.display_name, p.id))));
    Ok(Fhir(resources::search_page(&base, &self_url, next.as_deref(), page.total, matches, Vec::new())))
}

#[utoipa::path(get, path = "/fhir/R4/Practitioner", tag = "fhir", security(("bearer" = [])),
    params(("name" = Option<String>, Query, description = "The name or one of its words starts with this (case-insensitive)"),
           ("_count" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Results per page (default 50)")),
    responses((status = 200, description = "Bundle (searchset) of Practitioners", content_type = "application/fhir+json", body = Object),
              (status = 400, description = "OperationOutcome (invalid): an unknown parameter, a malformed value or _cursor", content_type = "application/fhir+json", body = Object),
              (status = 401, description = "OperationOutcome (login)", content_type = "application/fhir+json", body = Object)))]
/// `GET /fhir/R4/Practitioner?name=&_count=`: whom one can book (any signed-in user, as
/// `GET /v1/practitioners`).
pub async fn practitioners(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> FhirResult {
    caller?;
    let req = request(&params, &headers, PRACTITIONER_PARAMS, &[])?;
    let name = req.single("name").map_err(bad)?.map(str::trim).filter(|n| !n.is_empty()).map(str::to_string);
    // No stored name holds a NUL (and PostgreSQL text cannot): such a name matches nothing.
    let impossible = name.as_deref().is_some_and(|n| n.contains('\0'));
    let s = PractitionerSearch { name, after: req.cursor.clone(), limit: req.count + 1 };
    let mut page = if impossible {
        crate::store::SearchPage { items: Vec::new(), total: 0 }
    } else {
        state.store().search_practitioners(&s).await?
    };
    let more = page.items.len() as i64 > req.count;
    page.items.truncate(req.count as usize);
    let base = base_url(&state);
    let here = format!("{base}/Practitioner");
    let self_url = req.link(&here, params.iter().find(|(k, _)| k == "_cursor").map(|(_, v)| v.as_str()));
    let next = page.items.last().filter(|_| more).map(|p| req.link(&here, Some(&cursor(&p.display_name, p.id))));
    let matches = page.items.iter().map(resources::practitioner).collect();
    Ok(Fhir(resources::search_page(&base, &self_url, next.as_deref(), page.total, matches, Vec::new())))
}
