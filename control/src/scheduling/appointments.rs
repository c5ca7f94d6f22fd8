//! Appointments: booking (with Idempotency-Key), reading, listing, and the FHIR status
//! lifecycle. Only legal transitions pass (409 otherwise); no double booking is enforced by
//! the database schema (see the migrations), so a lost race is a clean 409 too.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{Scope, booked_by_patient_side, scope};
use super::actions;
use super::schedule::check_bookable;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::domain::appointment as rule;
use crate::domain::booking;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, OptionalJson};
use crate::state::{AppState, ClientIp};
use crate::store::{Appointment, AppointmentFilter, AppointmentStatus, Role, StoreError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BookAppointment {
    pub practitioner_id: Uuid,
    pub patient_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub end: OffsetDateTime,
    /// Staff only: `proposed` (awaiting the patient's `confirm`) or `pending` (awaiting the
    /// practitioner's or an admin's `confirm`); default `booked`.
    #[serde(default)]
    pub status: RequestedStatus,
}

/// The status a booking starts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestedStatus {
    Proposed,
    Pending,
    #[default]
    Booked,
}

impl From<RequestedStatus> for AppointmentStatus {
    fn from(s: RequestedStatus) -> Self {
        match s {
            RequestedStatus::Proposed => AppointmentStatus::Proposed,
            RequestedStatus::Pending => AppointmentStatus::Pending,
            RequestedStatus::Booked => AppointmentStatus::Booked,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentView {
    pub id: Uuid,
    pub practitioner_id: Uuid,
    pub patient_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub end: OffsetDateTime,
    pub status: AppointmentStatus,
    pub cancel_reason: Option<String>,
}

impl From<&Appointment> for AppointmentView {
    fn from(a: &Appointment) -> Self {
        AppointmentView {
            id: a.id,
            practitioner_id: a.practitioner_id,
            patient_id: a.patient_id,
            start: a.starts_at,
            end: a.ends_at,
            status: a.status,
            cancel_reason: a.cancel_reason.clone(),
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let key = v.to_str().map_err(|_| ApiError::BadRequest("Idempotency-Key must be printable ASCII".into()))?;
            if key.is_empty() || key.len() > 128 {
                return Err(ApiError::BadRequest("Idempotency-Key must be 1 to 128 characters".into()));
            }
            Ok(Some(key.to_string()))
        }
    }
}

fn check_times(start: OffsetDateTime, end: OffsetDateTime, now: OffsetDateTime) -> ApiResult<()> {
    rule::check_times(start, end, now).map_err(|r| ApiError::field(r.field(), r.to_string()))
}

/// Book an appointment. Patients book for themselves, practitioners for their own calendar,
/// admins for anyone. With `Idempotency-Key`, a repeated request returns the first result.
/// The time must be free slots of the practitioner's availability and respect the practice's
/// lead time and horizon (its practice's rules, else the deployment's): otherwise a 422 whose
/// `type` names the rule (`/problems/booking-outside-availability`,
/// `/problems/booking-no-working-pattern`, `/problems/booking-lead-time`,
/// `/problems/booking-horizon`). A `proposed` or `pending` booking nobody confirms expires
/// after the practice's proposal expiry (`scheduling::proposal_expiry`).
#[utoipa::path(post, path = "/v1/appointments", tag = "scheduling", request_body = BookAppointment,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe booking: 1 to 128 printable ASCII characters",
        min_length = 1, max_length = 128, pattern = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")), security(("bearer" = [])),
    responses((status = 201, body = AppointmentView), (status = 200, body = AppointmentView, description = "a repeated Idempotency-Key"),
              (status = 403, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn book(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BookAppointment>,
) -> ApiResult<(StatusCode, Json<AppointmentView>)> {
    let key = idempotency_key(&headers)?;
    if let Some(k) = &key {
        if let Some(existing) = state.store().appointment_by_idempotency_key(caller.user_id, k).await? {
            return repeated(&existing, &req);
        }
    }
    let allowed = match scope(&state, &caller).await? {
        Scope::All => true,
        Scope::Patient(p) => p == req.patient_id,
        Scope::Practitioner(p) => p == req.practitioner_id,
        Scope::Nothing => false,
    };
    let audit = Audit::new(actions::APPOINTMENT_CREATE, &ip).actor(caller.user_id);
    if !allowed {
        state
            .audit(
                audit
                    .target(format!("patient:{} practitioner:{}", req.patient_id, req.practitioner_id))
                    .outcome("denied"),
            )
            .await?;
        return Err(ApiError::Forbidden("you may book only your own appointments".into()));
    }
    crate::privacy::consents::require_patient_consent(&state, &caller).await?;
    check_times(req.start, req.end, state.clock().now())?;
    if caller.role == Role::Patient && req.status != RequestedStatus::Booked {
        return Err(ApiError::field("status", "a patient's own booking is booked at once; only staff propose"));
    }
    if state.store().practitioner(req.practitioner_id).await?.is_none() {
        return Err(ApiError::field("practitionerId", "no such practitioner"));
    }
    if state.store().patient(req.patient_id).await?.is_none() {
        return Err(ApiError::field("patientId", "no such patient"));
    }
    let now = state.clock().now();
    let rules = super::booking_rules::rules_for(&state, req.practitioner_id).await?;
    booking::check_lead_and_horizon(req.start, now, &rules)?;
    check_bookable(&state, req.practitioner_id, req.start, req.end).await?;
    let status = AppointmentStatus::from(req.status);
    let appointment = Appointment {
        id: Uuid::new_v4(),
        practitioner_id: req.practitioner_id,
        patient_id: req.patient_id,
        starts_at: req.start,
        ends_at: req.end,
        status,
        cancel_reason: None,
        created_by: caller.user_id,
        idempotency_key: key.clone(),
        created_at: now,
        updated_at: now,
        // Only the patient's own booking (or an admin's for them) makes a care relationship at
        // once; a practitioner's needs the patient's confirmation (scheduling::access).
        // A proposal awaits the patient's confirmation by definition.
        patient_confirmed_at: (booked_by_patient_side(&caller) && status != AppointmentStatus::Proposed).then_some(now),
    };
    // The booking and its audit event commit together: an acknowledged booking always has its
    // event, so an idempotent repeat that finds the booking finds it audited too.
    let created = audit.clone().target(appointment.id.to_string()).into_event();
    match state.store().create_appointment(appointment, created).await {
        Ok(a) => {
            crate::observability::booking(true);
            // A proposal or a request is announced when it is confirmed into a booking.
            if a.status == AppointmentStatus::Booked {
                crate::notify::booked(&state, &a).await;
            }
            Ok((StatusCode::CREATED, Json(AppointmentView::from(&a))))
        }
        Err(StoreError::DoubleBooking) => {
            crate::observability::booking(false);
            state
                .audit(audit.target(format!("practitioner:{}", req.practitioner_id)).outcome("refused:double-booking"))
                .await?;
            Err(ApiError::Conflict("the practitioner is already booked at that time".into()))
        }
        // The same key raced itself: the other request won; answer with its result.
        Err(StoreError::Conflict) if key.is_some() => {
            let existing =
                state.store().appointment_by_idempotency_key(caller.user_id, key.as_deref().unwrap_or("")).await?;
            existing.map_or(Err(ApiError::Conflict("Idempotency-Key already used".into())), |e| repeated(&e, &req))
        }
        Err(e) => Err(e.into()),
    }
}

fn repeated(existing: &Appointment, req: &BookAppointment) -> ApiResult<(StatusCode, Json<AppointmentView>)> {
    let same = existing.practitioner_id == req.practitioner_id
        && existing.patient_id == req.patient_id
        && existing.starts_at == req.start
        && existing.ends_at == req.end
        && existing.status == AppointmentStatus::from(req.status);
    if !same {
        return Err(ApiError::field("Idempotency-Key", "was used for a different booking"));
    }
    Ok((StatusCode::OK, Json(AppointmentView::from(existing))))
}

pub(crate) async fn visible(
    state: &AppState,
    ip: &ClientIp,
    caller: &Caller,
    id: Uuid,
    action: &str,
) -> ApiResult<Appointment> {
    let audit = Audit::new(action, ip).actor(caller.user_id).target(id.to_string());
    let a = state.store().appointment(id).await?.ok_or(ApiError::NotFound)?;
    if !scope(state, caller).await?.sees_appointment(&a) {
        state.audit(audit.outcome("denied")).await?;
        return Err(ApiError::Forbidden("this appointment is not yours".into()));
    }
    Ok(a)
}

/// One appointment (its participants and admins).
#[utoipa::path(get, path = "/v1/appointments/{id}", tag = "scheduling", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = AppointmentView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<AppointmentView>> {
    let a = visible(&state, &ip, &caller, id, actions::APPOINTMENT_READ).await?;
    state.audit(Audit::new(actions::APPOINTMENT_READ, &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Json(AppointmentView::from(&a)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppointmentQuery {
    pub practitioner: Option<Uuid>,
    pub patient: Option<Uuid>,
    pub status: Option<AppointmentStatus>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// At most 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Appointments the caller may see, filtered, in start order.
#[utoipa::path(get, path = "/v1/appointments", tag = "scheduling", params(AppointmentQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<AppointmentView>)))]
pub async fn list(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiQuery(q): ApiQuery<AppointmentQuery>,
) -> ApiResult<Json<Vec<AppointmentView>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 500"));
    }
    let mut filter = AppointmentFilter {
        practitioner_id: q.practitioner,
        patient_id: q.patient,
        status: q.status,
        from: q.from,
        to: q.to,
        limit,
    };
    match scope(&state, &caller).await? {
        Scope::All => {}
        Scope::Practitioner(p) => filter.practitioner_id = Some(p),
        Scope::Patient(p) => filter.patient_id = Some(p),
        Scope::Nothing => return Ok(Json(Vec::new())),
    }
    let found = state.store().list_appointments(&filter).await?;
    state
        .audit(
            Audit::new(actions::APPOINTMENT_LIST, &ip).actor(caller.user_id).target(format!("{} results", found.len())),
        )
        .await?;
    Ok(Json(found.iter().map(AppointmentView::from).collect()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusChange {
    /// Why (required to cancel).
    pub reason: Option<String>,
    /// New times (reschedule only).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<OffsetDateTime>,
}

/// Change an appointment: `confirm`, `cancel` (with a reason), `reschedule` (new start/end),
/// `arrive`, `check-in`, `complete`, `no-show`, `entered-in-error`. A patient's `confirm` of an
/// appointment booked for them records their confirmation (a care relationship) and leaves the
/// status as it is. Each change commits with its audit event, named by `scheduling::actions`.
#[utoipa::path(post, path = "/v1/appointments/{id}/{action}", tag = "scheduling",
    params(("id" = Uuid, Path), ("action" = String, Path, pattern = "^(confirm|cancel|reschedule|arrive|check-in|complete|no-show|entered-in-error)$")),
    request_body = Option<StatusChange>, security(("bearer" = [])),
    responses((status = 200, body = AppointmentView), (status = 403, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn change(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath((id, action)): ApiPath<(Uuid, String)>,
    body: OptionalJson<StatusChange>,
) -> ApiResult<Json<AppointmentView>> {
    use AppointmentStatus::*;
    let req = body.0.unwrap_or_default();
    let audit_action = actions::of_verb(&action).ok_or(ApiError::NotFound)?;
    let a = visible(&state, &ip, &caller, id, audit_action).await?;
    let (next, patient_may) = rule::verb(&action).ok_or(ApiError::NotFound)?;
    let audit = Audit::new(audit_action, &ip).actor(caller.user_id).target(id.to_string());
    if caller.role == Role::Patient && action == "confirm" {
        if req.reason.is_some() || req.start.is_some() || req.end.is_some() {
            return Err(ApiError::field("reason", "a confirmation takes no body fields"));
        }
        if !rule::patient_may_confirm(a.status) {
            return Err(ApiError::Conflict(format!("a {} appointment cannot be confirmed", a.status.as_str())));
        }
        let confirmed = state
            .store()
            .confirm_by_patient(id, state.clock().now(), audit.clone().outcome("success:patient").into_event())
            .await?
            .ok_or(ApiError::NotFound)?;
        if confirmed.status != Proposed {
            return Ok(Json(AppointmentView::from(&confirmed)));
        }
        // A proposal awaited exactly this: it becomes booked, now holding the time (the
        // schema refuses it if another booking took the time meanwhile).
        let booked = state
            .store()
            .transition_appointment(id, Proposed, Booked, None, None, state.clock().now(), audit.into_event())
            .await?
            .ok_or_else(|| ApiError::Conflict("the appointment changed meanwhile; read it again".into()))?;
        crate::notify::booked(&state, &booked).await;
        return Ok(Json(AppointmentView::from(&booked)));
    }
    if caller.role == Role::Patient && !patient_may {
        return Err(ApiError::Forbidden(format!("a patient may not {action} an appointment")));
    }
    if action == "reschedule" {
        return reschedule(&state, &ip, &caller, &a, req, audit).await.map(Json);
    }
    if !a.status.can_become(next) {
        return Err(ApiError::Conflict(format!(
            "an appointment cannot go from {} to {}",
            a.status.as_str(),
            next.as_str()
        )));
    }
    // Declining a proposal or a pending request is always possible; a patient's late
    // cancellation of an appointment the practice counts on is not.
    if caller.role == Role::Patient && next == Cancelled && !matches!(a.status, Proposed | Pending) {
        let rules = super::booking_rules::rules_for(&state, a.practitioner_id).await?;
        booking::check_patient_cancellation(a.starts_at, state.clock().now(), &rules)?;
    }
    let reason = match (next, req.reason) {
        (Cancelled, None) => return Err(ApiError::field("reason", "a cancellation needs a reason")),
        (Cancelled, Some(r)) => Some(super::practitioners::text("reason", &r, 500)?),
        // The reason is the cancellation's (FHIR Appointment.cancelationReason); another
        // action's reason would be stored as one.
        (_, Some(_)) => return Err(ApiError::field("reason", "only a cancellation takes a reason")),
        (_, None) => None,
    };
    let changed = state
        .store()
        .transition_appointment(id, a.status, next, None, reason, state.clock().now(), audit.into_event())
        .await
        .map_err(|e| match e {
            StoreError::DoubleBooking => ApiError::Conflict("the practitioner is already booked at that time".into()),
            other => other.into(),
        })?
        .ok_or_else(|| ApiError::Conflict("the appointment changed meanwhile; read it again".into()))?;
    if let Some(revoke) = crate::domain::revocation::on_appointment_status(id, next) {
        crate::revocation::follow(&state, revoke, Some(caller.user_id), Some(&ip)).await;
    }
    if next == Cancelled {
        crate::notify::cancelled(&state, &changed).await;
    }
    if next == Booked && a.status == Pending {
        crate::notify::booked(&state, &changed).await;
    }
    Ok(Json(AppointmentView::from(&changed)))
}

/// Moves a booked appointment to new times: the same checks as a booking (availability, lead
/// time, horizon), and for a patient the
/// cancellation window of the old time. One UPDATE under the schema's no-overlap guarantee
/// frees the old time and takes the new one, committed with its audit event, so a concurrent
/// booking or rescheduling of the same time gets a 409 and the appointment keeps its old time.
async fn reschedule(
    state: &AppState,
    ip: &ClientIp,
    caller: &Caller,
    a: &Appointment,
    req: StatusChange,
    audit: Audit,
) -> ApiResult<AppointmentView> {
    let (Some(start), Some(end)) = (req.start, req.end) else {
        return Err(ApiError::field("start", "reschedule needs start and end"));
    };
    let now = state.clock().now();
    check_times(start, end, now)?;
    if !rule::may_reschedule(a.status) {
        return Err(ApiError::Conflict(format!("a {} appointment cannot be rescheduled", a.status.as_str())));
    }
    if req.reason.is_some() {
        return Err(ApiError::field("reason", "only a cancellation takes a reason"));
    }
    let rules = super::booking_rules::rules_for(state, a.practitioner_id).await?;
    if caller.role == Role::Patient {
        booking::check_patient_cancellation(a.starts_at, now, &rules)?;
    }
    booking::check_lead_and_horizon(start, now, &rules)?;
    check_bookable(state, a.practitioner_id, start, end).await?;
    let moved = state
        .store()
        .transition_appointment(a.id, a.status, a.status, Some((start, end)), None, now, audit.into_event())
        .await
        .map_err(|e| match e {
            StoreError::DoubleBooking => ApiError::Conflict("the practitioner is already booked at that time".into()),
            other => other.into(),
        })?
        .ok_or_else(|| ApiError::Conflict("the appointment changed meanwhile; read it again".into()))?;
    crate::revocation::follow(state, crate::domain::revocation::on_reschedule(a.id), Some(caller.user_id), Some(ip))
        .await;
    crate::notify::rescheduled(state, &moved).await;
    Ok(AppointmentView::from(&moved))
}

/// Booking, reading and changing appointments: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, book)).routes(routes!(get)).routes(routes!(change))
}
