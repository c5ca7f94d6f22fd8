//! A practitioner's working pattern (weekly rules and exceptions) and the free slots computed
//! from it: `PUT /v1/practitioners/{id}/availability`, `GET /v1/availability`.

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::access::{Scope, scope};
use super::availability::{Busy, Exception, Slot, WeeklyRule, free_slots};
use crate::app::{AppState, ClientIp};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::store::{AppointmentFilter, StoredException, StoredRule};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkingPattern {
    pub rules: Vec<WeeklyRule>,
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityView {
    pub practitioner_id: Uuid,
    pub time_zone: String,
    pub slots: Vec<Slot>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    pub practitioner: Uuid,
    #[param(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[param(value_type = String, format = DateTime)]
    pub to: Timestamp,
}

fn to_jiff(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos()).expect("stored times are in jiff's range")
}

fn to_time(t: Timestamp) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).map_err(|_| ApiError::field("time", "out of range"))
}

fn minutes(t: Time) -> i32 {
    i32::from(t.hour()) * 60 + i32::from(t.minute())
}

fn stored_rule(r: &WeeklyRule) -> StoredRule {
    StoredRule {
        weekday: i16::from(r.weekday.to_monday_one_offset()),
        from_minute: minutes(r.from),
        to_minute: minutes(r.to),
        slot_minutes: r.slot_minutes as i32,
    }
}

fn weekly_rule(r: &StoredRule) -> ApiResult<WeeklyRule> {
    let time = |m: i32| Time::new((m / 60) as i8, (m % 60) as i8, 0, 0).map_err(|e| ApiError::Internal(e.to_string()));
    Ok(WeeklyRule {
        weekday: Weekday::from_monday_one_offset(r.weekday as i8).map_err(|e| ApiError::Internal(e.to_string()))?,
        from: time(r.from_minute)?,
        to: time(r.to_minute)?,
        slot_minutes: r.slot_minutes as u32,
    })
}

fn stored_exception(e: &Exception) -> ApiResult<StoredException> {
    Ok(match *e {
        Exception::Unavailable { from, to } => StoredException {
            kind: "unavailable".into(),
            starts_at: to_time(from)?,
            ends_at: to_time(to)?,
            slot_minutes: None,
        },
        Exception::ExtraHours { from, to, slot_minutes } => StoredException {
            kind: "extra-hours".into(),
            starts_at: to_time(from)?,
            ends_at: to_time(to)?,
            slot_minutes: Some(slot_minutes as i32),
        },
    })
}

fn exception(e: &StoredException) -> Exception {
    let (from, to) = (to_jiff(e.starts_at), to_jiff(e.ends_at));
    match e.slot_minutes {
        Some(m) if e.kind == "extra-hours" => Exception::ExtraHours { from, to, slot_minutes: m as u32 },
        _ => Exception::Unavailable { from, to },
    }
}

/// Set a practitioner's weekly rules and exceptions (the practitioner or an admin).
#[utoipa::path(put, path = "/v1/practitioners/{id}/availability", tag = "scheduling", params(("id" = Uuid, Path)),
    request_body = WorkingPattern, security(("bearer" = [])),
    responses((status = 200, body = WorkingPattern), (status = 403, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn set(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(pattern): ApiJson<WorkingPattern>,
) -> ApiResult<Json<WorkingPattern>> {
    match scope(&state, &caller).await? {
        Scope::All => {}
        Scope::Practitioner(p) if p == id => {}
        _ => return Err(ApiError::Forbidden("only the practitioner or an admin may change this schedule".into())),
    }
    let practitioner = state.store().practitioner(id).await?.ok_or(ApiError::NotFound)?;
    let zone = jiff::tz::TimeZone::get(&practitioner.time_zone).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The computation validates everything (slot lengths, empty rules and intervals).
    let now = Timestamp::now();
    free_slots(&zone, &pattern.rules, &pattern.exceptions, &[], now, now + jiff::SignedDuration::from_hours(24))
        .map_err(|e| ApiError::field("rules", e.to_string()))?;
    let exceptions = pattern.exceptions.iter().map(stored_exception).collect::<ApiResult<Vec<_>>>()?;
    let rules: Vec<StoredRule> = pattern.rules.iter().map(stored_rule).collect();
    state.store().set_availability(id, &rules, &exceptions).await?;
    state.audit(Audit::new("availability.update", &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Json(pattern))
}

/// Free slots of a practitioner in `[from, to)`: the weekly rules in the practitioner's time
/// zone (daylight-saving days handled), plus extra hours, minus leave and booked appointments.
#[utoipa::path(get, path = "/v1/availability", tag = "scheduling", params(AvailabilityQuery), security(("bearer" = [])),
    responses((status = 200, body = AvailabilityView), (status = 404, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn free(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AvailabilityQuery>,
) -> ApiResult<Json<AvailabilityView>> {
    let (practitioner, slots) = free_slots_of(&state, q.practitioner, q.from, q.to).await?;
    Ok(Json(AvailabilityView { practitioner_id: q.practitioner, time_zone: practitioner.time_zone, slots }))
}

/// The free slots of one practitioner in `[from, to)` (also the FHIR Slot search's source).
pub async fn free_slots_of(
    state: &AppState,
    practitioner_id: Uuid,
    from: Timestamp,
    to: Timestamp,
) -> ApiResult<(crate::store::Practitioner, Vec<Slot>)> {
    let practitioner = state.store().practitioner(practitioner_id).await?.ok_or(ApiError::NotFound)?;
    let zone = jiff::tz::TimeZone::get(&practitioner.time_zone).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (rules, exceptions) = state.store().availability(practitioner_id).await?;
    let rules = rules.iter().map(weekly_rule).collect::<ApiResult<Vec<_>>>()?;
    let exceptions: Vec<Exception> = exceptions.iter().map(exception).collect();
    let filter = AppointmentFilter {
        practitioner_id: Some(practitioner_id),
        from: Some(to_time(from)?),
        to: Some(to_time(to)?),
        limit: 10_000,
        ..Default::default()
    };
    let busy: Vec<Busy> = state
        .store()
        .list_appointments(&filter)
        .await?
        .iter()
        .filter(|a| a.status.holds_time())
        .map(|a| Busy { from: to_jiff(a.starts_at), to: to_jiff(a.ends_at) })
        .collect();
    let slots =
        free_slots(&zone, &rules, &exceptions, &busy, from, to).map_err(|e| ApiError::field("from", e.to_string()))?;
    Ok((practitioner, slots))
}
