//! A practitioner's working pattern (weekly rules and exceptions) and the free slots computed
//! from it: `PUT /v1/practitioners/{id}/availability`, `GET /v1/availability`.

use axum::Json;
use axum::extract::State;
use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{Scope, scope};
use super::actions;
use super::availability::{Busy, Exception, MAX_RANGE_DAYS, Page, Slot, WeeklyRule, free_slots, free_slots_page};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{AppointmentFilter, StoredException, StoredRule};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkingPattern {
    pub rules: Vec<WeeklyRule>,
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

/// Most weekly rules a practitioner may keep (eight per weekday).
pub const MAX_RULES: usize = 56;
/// Most exceptions (leave, extra hours) a practitioner may keep.
pub const MAX_EXCEPTIONS: usize = 200;
/// Shortest slot a saved rule or extra hours may have, in minutes.
pub const MIN_SAVED_SLOT_MINUTES: u32 = 10;
/// Slots per answer: default and most (`limit` on /v1/availability, `_count` on FHIR).
pub const DEFAULT_PAGE: usize = 500;
pub const MAX_PAGE: usize = 1000;
/// Searches accept times in this span only, so that no bound or range end can leave the
/// range of the time libraries (issue 18, item 10: `start=ge9999-12-30` answered with an
/// internal overflow message).
pub const EARLIEST: &str = "1970-01-01T00:00:00Z";
pub const LATEST: &str = "9000-01-01T00:00:00Z";

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityView {
    pub practitioner_id: Uuid,
    pub time_zone: String,
    pub slots: Vec<Slot>,
    /// Present when more slots follow in the range: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    pub practitioner: Uuid,
    /// Range start, an RFC 3339 instant between 1970 and 9000.
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    /// Range end, at most 62 days after `from`.
    #[param(value_type = String, format = DateTime)]
    pub to: String,
    /// Slots per page, 1 to 1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// An RFC 3339 instant of a query, refused with a message naming the parameter, never the
/// time library's own (a year-9999 value overflowed inside it).
fn instant(name: &str, text: &str) -> ApiResult<Timestamp> {
    text.parse::<Timestamp>()
        .ok()
        .filter(|t| check_range(*t, *t + jiff::SignedDuration::from_nanos(1)).is_ok())
        .ok_or_else(|| {
            ApiError::field(name, format!("must be an RFC 3339 instant with an offset between {EARLIEST} and {LATEST}"))
        })
}

/// A page cursor: the last slot given, as its start and end in nanoseconds.
pub fn cursor(slot: &Slot) -> String {
    format!("{}_{}", slot.start.as_nanosecond(), slot.end.as_nanosecond())
}

/// Reads a cursor back; `None` if it is not one.
pub fn parse_cursor(text: &str) -> Option<Slot> {
    let (start, end) = text.split_once('_')?;
    let start = Timestamp::from_nanosecond(start.parse().ok()?).ok()?;
    let end = Timestamp::from_nanosecond(end.parse().ok()?).ok()?;
    Some(Slot { start, end })
}

/// Checks a slot search's range: a non-empty range of at most [`MAX_RANGE_DAYS`] days within
/// [`EARLIEST`]..[`LATEST`]. The error names what is wrong, for a 4xx.
pub fn check_range(from: Timestamp, to: Timestamp) -> Result<(), String> {
    let (earliest, latest): (Timestamp, Timestamp) =
        (EARLIEST.parse().expect("a valid instant"), LATEST.parse().expect("a valid instant"));
    if from < earliest || to > latest || from > latest || to < earliest {
        return Err(format!("times must lie between {EARLIEST} and {LATEST}"));
    }
    if to <= from || to.duration_since(from) > jiff::SignedDuration::from_hours(MAX_RANGE_DAYS * 24) {
        return Err(format!("the range must be non-empty and at most {MAX_RANGE_DAYS} days long"));
    }
    Ok(())
}

/// The limits on a saved working pattern, each refusal naming the offending rule or exception.
fn check_pattern_limits(pattern: &WorkingPattern) -> ApiResult<()> {
    if pattern.rules.len() > MAX_RULES {
        return Err(ApiError::field("rules", format!("at most {MAX_RULES} weekly rules, got {}", pattern.rules.len())));
    }
    if pattern.exceptions.len() > MAX_EXCEPTIONS {
        return Err(ApiError::field(
            "exceptions",
            format!("at most {MAX_EXCEPTIONS} exceptions, got {}", pattern.exceptions.len()),
        ));
    }
    for (i, r) in pattern.rules.iter().enumerate() {
        if r.slot_minutes < MIN_SAVED_SLOT_MINUTES {
            return Err(ApiError::field(
                &format!("rules[{i}].slotMinutes"),
                format!("slots must be at least {MIN_SAVED_SLOT_MINUTES} minutes, got {}", r.slot_minutes),
            ));
        }
    }
    for (i, e) in pattern.exceptions.iter().enumerate() {
        let extra_slot = match e {
            Exception::ExtraHours { slot_minutes, .. } => Some(*slot_minutes),
            Exception::Unavailable { .. } => None,
        };
        if let Some(slot_minutes) = extra_slot.filter(|m| *m < MIN_SAVED_SLOT_MINUTES) {
            return Err(ApiError::field(
                &format!("exceptions[{i}].slotMinutes"),
                format!("slots must be at least {MIN_SAVED_SLOT_MINUTES} minutes, got {slot_minutes}"),
            ));
        }
    }
    Ok(())
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
    check_pattern_limits(&pattern)?;
    let zone = jiff::tz::TimeZone::get(&practitioner.time_zone).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The computation validates the rest (slot lengths, empty rules and intervals).
    let now = Timestamp::now();
    free_slots(&zone, &pattern.rules, &pattern.exceptions, &[], now, now + jiff::SignedDuration::from_hours(24))
        .map_err(|e| ApiError::field("rules", e.to_string()))?;
    let exceptions = pattern.exceptions.iter().map(stored_exception).collect::<ApiResult<Vec<_>>>()?;
    let rules: Vec<StoredRule> = pattern.rules.iter().map(stored_rule).collect();
    state.store().set_availability(id, &rules, &exceptions).await?;
    state.audit(Audit::new(actions::AVAILABILITY_UPDATE, &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Json(pattern))
}

/// Free slots of a practitioner in `[from, to)`: the weekly rules in the practitioner's time
/// zone (daylight-saving days handled), plus extra hours, minus leave and booked appointments.
/// At most 62 days per request and `limit` slots per page; `nextCursor` fetches the next.
#[utoipa::path(get, path = "/v1/availability", tag = "scheduling", params(AvailabilityQuery), security(("bearer" = [])),
    responses((status = 200, body = AvailabilityView), (status = 404, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn free(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<AvailabilityQuery>,
) -> ApiResult<Json<AvailabilityView>> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(|| ApiError::field("cursor", "not a cursor this API gave")))
        .transpose()?;
    let (from, to) = (instant("from", &q.from)?, instant("to", &q.to)?);
    check_range(from, to).map_err(|e| ApiError::field("from", e))?;
    let (practitioner, page) = free_slots_of(&state, q.practitioner, from, to, after, limit).await?;
    let next_cursor = if page.more { page.slots.last().map(cursor) } else { None };
    Ok(Json(AvailabilityView {
        practitioner_id: q.practitioner,
        time_zone: practitioner.time_zone,
        slots: page.slots,
        next_cursor,
    }))
}

/// One page of the free slots of one practitioner in `[from, to)` after `after` (also the
/// FHIR Slot search's source). The caller checked the range with [`check_range`].
pub async fn free_slots_of(
    state: &AppState,
    practitioner_id: Uuid,
    from: Timestamp,
    to: Timestamp,
    after: Option<Slot>,
    limit: usize,
) -> ApiResult<(crate::store::Practitioner, Page)> {
    let calendar = calendar(state, practitioner_id).await?;
    let busy = busy(state, practitioner_id, from, to).await?;
    let page = free_slots_page(&calendar.zone, &calendar.rules, &calendar.exceptions, &busy, from, to, after, limit)
        .map_err(|e| ApiError::field("from", e.to_string()))?;
    Ok((calendar.practitioner, page))
}

/// Refuses (422, `booking-outside-availability`) a booking of `[start, end)` that is not one
/// slot or a run of consecutive slots of the practitioner's availability, computed exactly as
/// `GET /v1/availability` computes them (time zone, daylight saving, leave, extra hours, the
/// practice's slot length). Other bookings are left to the schema's no-overlap guarantee,
/// which answers a taken time with a 409 also under concurrency, and lets a rescheduling move
/// within its own time. A practitioner without any working pattern (no weekly rule, no
/// exception) has no slots: refused with `booking-no-working-pattern`, which says what to do.
pub async fn check_bookable(
    state: &AppState,
    practitioner_id: Uuid,
    start: OffsetDateTime,
    end: OffsetDateTime,
) -> ApiResult<()> {
    let calendar = calendar(state, practitioner_id).await?;
    if calendar.rules.is_empty() && calendar.exceptions.is_empty() {
        return Err(crate::domain::booking::BookingRefusal::NoWorkingPattern {
            practitioner: practitioner_id.to_string(),
        }
        .into());
    }
    let (from, to) = (to_jiff(start), to_jiff(end));
    check_range(from, to).map_err(|e| ApiError::field("start", e))?;
    let slots = free_slots(&calendar.zone, &calendar.rules, &calendar.exceptions, &[], from, to)
        .map_err(|e| ApiError::field("start", e.to_string()))?;
    let slots: Vec<(Timestamp, Timestamp)> = slots.iter().map(|slot| (slot.start, slot.end)).collect();
    if crate::domain::booking::covered_by_slots(&slots, from, to) {
        return Ok(());
    }
    let f = &time::format_description::well_known::Rfc3339;
    Err(crate::domain::booking::BookingRefusal::OutsideAvailability {
        start: start.format(f).unwrap_or_default(),
        end: end.format(f).unwrap_or_default(),
    }
    .into())
}

/// A practitioner's record, zone and working pattern, as the slot computation takes them.
struct Calendar {
    practitioner: crate::store::Practitioner,
    zone: jiff::tz::TimeZone,
    rules: Vec<WeeklyRule>,
    exceptions: Vec<Exception>,
}

/// The practitioner's calendar, with its practice's slot length (if it sets one) in place of
/// the pattern's own: the one place both the availability and the booking check read it.
async fn calendar(state: &AppState, practitioner_id: Uuid) -> ApiResult<Calendar> {
    let practitioner = state.store().practitioner(practitioner_id).await?.ok_or(ApiError::NotFound)?;
    let zone = jiff::tz::TimeZone::get(&practitioner.time_zone).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (rules, exceptions) = state.store().availability(practitioner_id).await?;
    let mut rules = rules.iter().map(weekly_rule).collect::<ApiResult<Vec<_>>>()?;
    let mut exceptions: Vec<Exception> = exceptions.iter().map(exception).collect();
    if let Some(slot) = super::booking_rules::rules_for(state, practitioner_id).await?.slot_minutes {
        with_slot_length(&mut rules, &mut exceptions, slot);
    }
    Ok(Calendar { practitioner, zone, rules, exceptions })
}

/// Lays every weekly rule's and extra hours' slots `minutes` long.
fn with_slot_length(rules: &mut [WeeklyRule], exceptions: &mut [Exception], minutes: u32) {
    for rule in rules.iter_mut() {
        rule.slot_minutes = minutes;
    }
    for exception in exceptions.iter_mut() {
        if let Exception::ExtraHours { slot_minutes, .. } = exception {
            *slot_minutes = minutes;
        }
    }
}

/// The practitioner's time held by appointments in `[from, to)`.
async fn busy(state: &AppState, practitioner_id: Uuid, from: Timestamp, to: Timestamp) -> ApiResult<Vec<Busy>> {
    let filter = AppointmentFilter {
        practitioner_id: Some(practitioner_id),
        from: Some(to_time(from)?),
        to: Some(to_time(to)?),
        limit: 10_000,
        ..Default::default()
    };
    Ok(state
        .store()
        .list_appointments(&filter)
        .await?
        .iter()
        .filter(|a| a.status.holds_time())
        .map(|a| Busy { from: to_jiff(a.starts_at), to: to_jiff(a.ends_at) })
        .collect())
}

/// Weekly hours and free slots: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(set)).routes(routes!(free))
}
