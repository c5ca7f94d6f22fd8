//! A practice's booking rules (`/v1/practices/{id}/booking-rules`, admins): lead time,
//! horizon, slot length, the patients' cancellation window and the proposal expiry. A practice
//! without its own books under the deployment's `[scheduling]` values; every change is audited
//! with the old and the new values. [`rules_for`] is what booking, rescheduling, cancelling,
//! the availability and the proposal expiry read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::actions;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::domain::booking::{BookingRules, RuleValues};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{PracticeRules, Role};

/// The rules a booking of `practitioner_id` is checked against: its practice's own, else the
/// deployment's.
pub async fn rules_for(state: &AppState, practitioner_id: Uuid) -> ApiResult<BookingRules> {
    Ok(values_of(state, state.store().practitioner_rules(practitioner_id).await?.as_ref()).rules())
}

fn values_of(state: &AppState, stored: Option<&PracticeRules>) -> RuleValues {
    stored.map_or_else(
        || state.config().scheduling.default_rule_values(),
        |r| RuleValues {
            min_lead_minutes: r.min_lead_minutes,
            max_horizon_days: r.max_horizon_days,
            slot_minutes: r.slot_minutes,
            patient_cancel_window_hours: r.patient_cancel_window_hours,
            proposal_expiry_hours: r.proposal_expiry_hours,
        },
    )
}

/// A practice's booking rules, all of them (a `PUT` replaces the whole set).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BookingRulesInput {
    /// A booking or rescheduling starts at least this many minutes after it is made (0 to 525600).
    #[schema(minimum = 0, maximum = 525600)]
    pub min_lead_minutes: i64,
    /// …and at most this many days after it (1 to 3650); more than the lead time.
    #[schema(minimum = 1, maximum = 3650)]
    pub max_horizon_days: i64,
    /// Slot length in minutes (10 to 240) replacing the `slotMinutes` of the practitioners'
    /// working patterns; `null`: each pattern's own.
    #[schema(minimum = 10, maximum = 240)]
    pub slot_minutes: Option<i64>,
    /// A patient cannot cancel or move a booked appointment less than this many hours before
    /// its start (0 to 8760).
    #[schema(minimum = 0, maximum = 8760)]
    pub patient_cancel_window_hours: i64,
    /// An unconfirmed `proposed` or `pending` appointment is cancelled this many hours after it
    /// was made, at its start at the latest (1 to 720).
    #[schema(minimum = 1, maximum = 720)]
    pub proposal_expiry_hours: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingRulesView {
    pub practice_id: Uuid,
    pub min_lead_minutes: i64,
    pub max_horizon_days: i64,
    pub slot_minutes: Option<i64>,
    pub patient_cancel_window_hours: i64,
    pub proposal_expiry_hours: i64,
    /// `practice`: the practice's own rules; `deployment`: the `[scheduling]` defaults.
    #[schema(example = "practice")]
    pub source: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
    pub updated_by: Option<Uuid>,
}

fn view(state: &AppState, practice_id: Uuid, stored: Option<&PracticeRules>) -> BookingRulesView {
    let v = values_of(state, stored);
    BookingRulesView {
        practice_id,
        min_lead_minutes: v.min_lead_minutes,
        max_horizon_days: v.max_horizon_days,
        slot_minutes: v.slot_minutes,
        patient_cancel_window_hours: v.patient_cancel_window_hours,
        proposal_expiry_hours: v.proposal_expiry_hours,
        source: if stored.is_some() { "practice" } else { "deployment" }.into(),
        updated_at: stored.map(|r| r.updated_at),
        updated_by: stored.map(|r| r.updated_by),
    }
}

/// The audit target of a change: the practice and every value, old and new.
fn change_target(practice_id: Uuid, old: &RuleValues, new: &RuleValues) -> String {
    let slot = |s: Option<i64>| s.map_or_else(|| "pattern".to_string(), |m| m.to_string());
    format!(
        "practice:{practice_id} minLeadMinutes:{}->{} maxHorizonDays:{}->{} slotMinutes:{}->{} \
         patientCancelWindowHours:{}->{} proposalExpiryHours:{}->{}",
        old.min_lead_minutes,
        new.min_lead_minutes,
        old.max_horizon_days,
        new.max_horizon_days,
        slot(old.slot_minutes),
        slot(new.slot_minutes),
        old.patient_cancel_window_hours,
        new.patient_cancel_window_hours,
        old.proposal_expiry_hours,
        new.proposal_expiry_hours,
    )
}

/// A practice's booking rules: its own, or the deployment's (`source`) (admins).
#[utoipa::path(get, path = "/v1/practices/{id}/booking-rules", tag = "scheduling", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = BookingRulesView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<BookingRulesView>> {
    caller.require(&[Role::Admin])?;
    state.store().practice(id).await?.ok_or(ApiError::NotFound)?;
    let stored = state.store().practice_rules(id).await?;
    Ok(Json(view(&state, id, stored.as_ref())))
}

/// Set a practice's booking rules, all of them (admins). Each value out of range is a `422`
/// naming the field; the change is audited (`practice.booking-rules.update`) with the old and
/// new values. Bookings made before keep their times; the proposal expiry applies to open
/// proposals at once.
#[utoipa::path(put, path = "/v1/practices/{id}/booking-rules", tag = "scheduling", params(("id" = Uuid, Path)),
    request_body = BookingRulesInput, security(("bearer" = [])),
    responses((status = 200, body = BookingRulesView), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn set(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<BookingRulesInput>,
) -> ApiResult<Json<BookingRulesView>> {
    caller.require(&[Role::Admin])?;
    let new = RuleValues {
        min_lead_minutes: req.min_lead_minutes,
        max_horizon_days: req.max_horizon_days,
        slot_minutes: req.slot_minutes,
        patient_cancel_window_hours: req.patient_cancel_window_hours,
        proposal_expiry_hours: req.proposal_expiry_hours,
    };
    new.validate().map_err(|e| ApiError::field(e.field, e.message))?;
    state.store().practice(id).await?.ok_or(ApiError::NotFound)?;
    let old = values_of(&state, state.store().practice_rules(id).await?.as_ref());
    let stored = PracticeRules {
        practice_id: id,
        min_lead_minutes: new.min_lead_minutes,
        max_horizon_days: new.max_horizon_days,
        slot_minutes: new.slot_minutes,
        patient_cancel_window_hours: new.patient_cancel_window_hours,
        proposal_expiry_hours: new.proposal_expiry_hours,
        updated_at: state.clock().now(),
        updated_by: caller.user_id,
    };
    let audit =
        Audit::new(actions::BOOKING_RULES_UPDATE, &ip).actor(caller.user_id).target(change_target(id, &old, &new));
    state.store().set_practice_rules(&stored, audit.into_event()).await?;
    Ok(Json(view(&state, id, Some(&stored))))
}

/// Drop a practice's own booking rules: it books under the deployment's again (admins;
/// audited `practice.booking-rules.reset` with the old and new values).
#[utoipa::path(delete, path = "/v1/practices/{id}/booking-rules", tag = "scheduling", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem)))]
pub async fn reset(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Admin])?;
    let Some(stored) = state.store().practice_rules(id).await? else {
        return Err(ApiError::NotFound);
    };
    let (old, new) = (values_of(&state, Some(&stored)), values_of(&state, None));
    let audit =
        Audit::new(actions::BOOKING_RULES_RESET, &ip).actor(caller.user_id).target(change_target(id, &old, &new));
    if !state.store().clear_practice_rules(id, audit.into_event()).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Booking rules of practices: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, set, reset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audited_change_names_every_old_and_new_value() {
        let old = RuleValues {
            min_lead_minutes: 0,
            max_horizon_days: 365,
            slot_minutes: None,
            patient_cancel_window_hours: 0,
            proposal_expiry_hours: 48,
        };
        let new = RuleValues { min_lead_minutes: 60, slot_minutes: Some(20), ..old };
        let id = Uuid::nil();
        assert_eq!(
            change_target(id, &old, &new),
            format!(
                "practice:{id} minLeadMinutes:0->60 maxHorizonDays:365->365 slotMinutes:pattern->20 \
                 patientCancelWindowHours:0->0 proposalExpiryHours:48->48"
            )
        );
    }
}
