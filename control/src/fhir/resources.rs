//! teletip records as FHIR R4 resources (JSON). Pure functions: no store, no clock.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::paging::{DEFAULT_COUNT, MAX_COUNT};
use super::search_routes::APPOINTMENT_INCLUDES;
use crate::scheduling::availability::Slot;
use crate::scheduling::patients::PatientView;
use crate::store::{Appointment, AppointmentStatus, Practitioner};

/// Where national ids come from, for `Patient.identifier.system`: teletip keeps one national
/// id per patient and does not know the issuing country, so it names its own system.
pub const NATIONAL_ID_SYSTEM: &str = "urn:teletip:national-id";

fn instant(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).expect("stored times format")
}

fn meta(updated: OffsetDateTime) -> Value {
    json!({ "lastUpdated": instant(updated) })
}

/// `Patient`. The free-text notes are not part of the resource (they are not demographics);
/// an anonymised record is inactive and carries nothing identifying.
pub fn patient(p: &PatientView, updated: OffsetDateTime, anonymised: bool) -> Value {
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("Patient"));
    r.insert("id".into(), json!(p.id));
    r.insert("meta".into(), meta(updated));
    r.insert("active".into(), json!(!anonymised));
    if let Some(id) = &p.national_id {
        r.insert(
            "identifier".into(),
            json!([{
                "use": "official",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI",
                                     "display": "National unique individual identifier"}]},
                "system": NATIONAL_ID_SYSTEM,
                "value": id,
            }]),
        );
    }
    r.insert("name".into(), json!([{ "text": p.display_name }]));
    let telecom: Vec<Value> = [("phone", &p.phone), ("email", &p.email)]
        .into_iter()
        .filter_map(|(system, v)| v.as_ref().map(|v| json!({"system": system, "value": v})))
        .collect();
    if !telecom.is_empty() {
        r.insert("telecom".into(), Value::Array(telecom));
    }
    if let Some(birth) = p.birth_date {
        r.insert(
            "birthDate".into(),
            json!(format!("{:04}-{:02}-{:02}", birth.year(), u8::from(birth.month()), birth.day())),
        );
    }
    Value::Object(r)
}

/// `Practitioner`, with the specialty as a qualification (text only: teletip does not code it).
pub fn practitioner(p: &Practitioner) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": p.id,
        "meta": meta(p.updated_at),
        "active": true,
        "name": [{ "text": p.display_name }],
        "qualification": [{ "code": { "text": p.specialty } }],
    })
}

/// `Schedule`: one per practitioner, with the practitioner's id, so that `Slot.schedule` can
/// name it.
pub fn schedule(p: &Practitioner) -> Value {
    json!({
        "resourceType": "Schedule",
        "id": p.id,
        "meta": meta(p.updated_at),
        "active": true,
        "actor": [{ "reference": format!("Practitioner/{}", p.id), "display": p.display_name }],
        "comment": format!("Video consultations; times in {}", p.time_zone),
    })
}

/// How each participant stands: a cancelled or no-show appointment was declined or missed.
fn participation(status: AppointmentStatus) -> &'static str {
    match status {
        AppointmentStatus::Proposed | AppointmentStatus::Pending => "needs-action",
        AppointmentStatus::Cancelled => "declined",
        _ => "accepted",
    }
}

/// `Appointment`. FHIR R4's status codes are teletip's own.
pub fn appointment(a: &Appointment) -> Value {
    let mut r = json!({
        "resourceType": "Appointment",
        "id": a.id,
        "meta": meta(a.updated_at),
        "status": a.status.as_str(),
        "serviceCategory": [{ "text": "Video consultation" }],
        "start": instant(a.starts_at),
        "end": instant(a.ends_at),
        "minutesDuration": (a.ends_at - a.starts_at).whole_minutes(),
        "created": instant(a.created_at),
        "participant": [
            { "actor": { "reference": format!("Patient/{}", a.patient_id) }, "required": "required",
              "status": participation(a.status) },
            { "actor": { "reference": format!("Practitioner/{}", a.practitioner_id) }, "required": "required",
              "status": participation(a.status) },
        ],
    });
    if let Some(reason) = &a.cancel_reason {
        // R4 spells it with one "l".
        r["cancelationReason"] = json!({ "text": reason });
    }
    r
}

/// A stable id for a computed free slot: the practitioner and the start second.
pub fn slot_id(practitioner: Uuid, slot: &Slot) -> String {
    format!("{practitioner}-{}", slot.start.as_second())
}

/// `Slot` (free) of a practitioner's schedule.
pub fn slot(practitioner: Uuid, s: &Slot) -> Value {
    json!({
        "resourceType": "Slot",
        "id": slot_id(practitioner, s),
        "schedule": { "reference": format!("Schedule/{practitioner}") },
        "status": "free",
        "start": s.start.to_string(),
        "end": s.end.to_string(),
    })
}

/// A `searchset` Bundle of `resources`, each with its absolute URL under `base`, with a `next`
/// link when another page follows. `total` (the number of matches of the whole search) is given
/// only when this page is the whole search: slots are computed a page at a time, so their
/// total is not known (R4 Bundle.total is optional).
pub fn searchset(base: &str, self_url: &str, next_url: Option<&str>, complete: bool, resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
            json!({ "fullUrl": url, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    if complete {
        bundle["total"] = json!(bundle["entry"].as_array().map_or(0, Vec::len));
    }
    bundle
}

/// A `searchset` Bundle of one page of a search: `matches` (search.mode `match`) and the
/// resources they `_include` (search.mode `include`), each under its absolute URL below `base`;
/// `total` counts the matches of the whole search, and `next` links the following page.
pub fn search_page(
    base: &str,
    self_url: &str,
    next_url: Option<&str>,
    total: i64,
    matches: Vec<Value>,
    included: Vec<Value>,
) -> Value {
    let entry = |mode: &str, r: Value| {
        let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
        json!({ "fullUrl": url, "resource": r, "search": { "mode": mode } })
    };
    let entries: Vec<Value> = matches
        .into_iter()
        .map(|r| entry("match", r))
        .chain(included.into_iter().map(|r| entry("include", r)))
        .collect();
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let mut bundle = json!({ "resourceType": "Bundle", "type": "searchset", "total": total, "link": links });
    // FHIR JSON has no empty arrays: a page without entries has no `entry`.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

/// What this façade serves.
pub fn capability_statement(base: &str, software_version: &str, date: OffsetDateTime) -> Value {
    let read = |t: &str| json!({ "type": t, "interaction": [{ "code": "read" }] });
    let paging = format!(
        "_count {DEFAULT_COUNT} per page unless asked (1 to {MAX_COUNT}); Bundle.total counts every match; \
         the next link carries an opaque _cursor; unknown parameters are refused (400 OperationOutcome) \
         unless Prefer: handling=lenient"
    );
    let search = |t: &str, params: Value, includes: &[&str]| {
        let mut r = json!({ "type": t, "interaction": [{ "code": "read" }, { "code": "search-type", "documentation": paging }],
                           "searchParam": params });
        if !includes.is_empty() {
            r["searchInclude"] = json!(includes);
        }
        r
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(date),
        "kind": "instance",
        "software": { "name": "teletip-control", "version": software_version },
        "implementation": { "description": "teletip FHIR R4 read façade", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": { "description": "OAuth-style bearer access token from POST /v1/auth/login" },
            "resource": [
                search("Patient", json!([
                    { "name": "identifier", "type": "token",
                      "documentation": format!("[system|]value: the national id, system {NATIONAL_ID_SYSTEM}") },
                ]), &[]),
                search("Practitioner", json!([
                    { "name": "name", "type": "string", "documentation": "the name or one of its words starts with this, ignoring case" },
                ]), &[]),
                search("Appointment", json!([
                    { "name": "patient", "type": "reference", "documentation": "Patient/<id>" },
                    { "name": "practitioner", "type": "reference", "documentation": "Practitioner/<id>" },
                    { "name": "actor", "type": "reference", "documentation": "Patient/<id> or Practitioner/<id>" },
                    { "name": "date", "type": "date", "documentation": "Appointment.start; eq/ge/gt/le/lt prefixes, a day (UTC) or an instant; repeat to bound both ends" },
                    { "name": "status", "type": "token", "documentation": "comma-separated: any of them" },
                ]), APPOINTMENT_INCLUDES),
                read("Schedule"),
                { "type": "Slot", "interaction": [{ "code": "search-type" }],
                  "searchParam": [
                      { "name": "schedule", "type": "reference", "documentation": "Schedule/<practitioner id> (required)" },
                      { "name": "start", "type": "date", "documentation": "ge/gt/le/lt/eq prefixes; at most 62 days, between 1970 and 9000; _count 1 to 1000 per page (default 500), next links" },
                  ] },
            ],
        }],
    })
}
