//! Transfer bases of one patient (admins): the documented legal bases an admin records and
//! withdraws, and what an auditor checks: the patient's region, the regions their media may
//! use now, the legal bases' history and the transfer consents' history.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{TRANSFER_BASIS_READ, TRANSFER_BASIS_RECORD, TRANSFER_BASIS_WITHDRAW, permitted_for_patient, region_field};
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::domain::residency::{Permitted, TRANSFER_CONSENT};
use crate::privacy::consents::ConsentView;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::scheduling::practitioners::text;
use crate::state::{AppState, ClientIp};
use crate::store::{LegalBasis, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordLegalBasis {
    /// Where the basis is documented (a contract, a board decision, a permission), 1 to 500
    /// characters.
    #[schema(max_length = 500, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub reference: String,
    /// The regions it covers (1 to 20 region labels); absent: any region.
    #[schema(min_items = 1, max_items = 20)]
    pub destinations: Option<Vec<super::RegionLabel>>,
    /// When it ends by itself; absent: until withdrawn. A time already past records a basis
    /// that is not in force (history).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegalBasisView {
    pub id: Uuid,
    pub reference: String,
    /// Absent: any region.
    pub destinations: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub recorded_by: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub withdrawn_at: Option<OffsetDateTime>,
    pub withdrawn_by: Option<Uuid>,
    /// Neither withdrawn nor expired now.
    pub in_force: bool,
}

impl LegalBasisView {
    fn new(b: &LegalBasis, now: OffsetDateTime) -> Self {
        LegalBasisView {
            id: b.id,
            reference: b.reference.clone(),
            destinations: b.destinations.clone(),
            expires_at: b.expires_at,
            recorded_by: b.recorded_by,
            recorded_at: b.recorded_at,
            withdrawn_at: b.withdrawn_at,
            withdrawn_by: b.withdrawn_by,
            in_force: b.in_force(now),
        }
    }
}

/// A patient's residency as an auditor checks it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientResidency {
    pub patient_id: Uuid,
    /// The patient's data region; absent: the deployment's.
    pub data_region: Option<String>,
    pub deployment_region: Option<String>,
    /// The relay regions the patient's media may use now; absent: any.
    pub permitted_regions: Option<Vec<String>>,
    /// Every legal basis recorded, oldest first.
    pub legal_bases: Vec<LegalBasisView>,
    /// Every decision of the patient on a transfer consent purpose (`cross-border-transfer`,
    /// `cross-border-transfer-<region>`), oldest first.
    pub transfer_consents: Vec<ConsentView>,
}

async fn residency_of(state: &AppState, patient_id: Uuid) -> ApiResult<PatientResidency> {
    let patient = state.store().patient(patient_id).await?.ok_or(ApiError::NotFound)?;
    let permitted = permitted_for_patient(state, &patient).await?;
    let now = state.clock().now();
    let legal_bases =
        state.store().legal_bases(patient_id).await?.iter().map(|b| LegalBasisView::new(b, now)).collect();
    let transfer_consents = match patient.user_id {
        Some(user_id) => state
            .store()
            .consents(user_id)
            .await?
            .iter()
            .filter(|c| c.purpose.starts_with(TRANSFER_CONSENT))
            .map(ConsentView::from)
            .collect(),
        None => Vec::new(),
    };
    Ok(PatientResidency {
        patient_id,
        data_region: patient.data_region,
        deployment_region: state.config().deployment_region.as_ref().map(|r| r.to_string()),
        permitted_regions: match permitted {
            Permitted::Anywhere => None,
            Permitted::Only(set) => Some(set.iter().map(|r| r.to_string()).collect()),
        },
        legal_bases,
        transfer_consents,
    })
}

/// A patient's data region, permitted relay regions and transfer bases with their history
/// (admins; audited).
#[utoipa::path(get, path = "/v1/patients/{id}/transfer-bases", tag = "residency", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = PatientResidency), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PatientResidency>> {
    caller.require(&[Role::Admin])?;
    let view = residency_of(&state, id).await?;
    state.audit(Audit::new(TRANSFER_BASIS_READ, &ip).actor(caller.user_id).target(id.to_string())).await?;
    Ok(Json(view))
}

/// Record a documented legal basis for transferring this patient's data to other regions
/// (admins; audited). It permits relays in those regions for the patient's consultations
/// while in force.
#[utoipa::path(post, path = "/v1/patients/{id}/transfer-bases", tag = "residency", params(("id" = Uuid, Path)),
    request_body = RecordLegalBasis, security(("bearer" = [])),
    responses((status = 201, body = LegalBasisView), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn record(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RecordLegalBasis>,
) -> ApiResult<(StatusCode, Json<LegalBasisView>)> {
    caller.require(&[Role::Admin])?;
    let reference = text("reference", &req.reference, 500)?;
    let destinations = match &req.destinations {
        None => None,
        Some(list) if list.is_empty() || list.len() > 20 => {
            return Err(ApiError::field("destinations", "name 1 to 20 regions, or leave it out for any region"));
        }
        Some(list) => {
            let mut regions = Vec::with_capacity(list.len());
            for (i, label) in list.iter().enumerate() {
                regions.push(region_field(&format!("destinations[{i}]"), &label.0)?.to_string());
            }
            regions.sort();
            regions.dedup();
            Some(regions)
        }
    };
    let now = state.clock().now();
    state.store().patient(id).await?.ok_or(ApiError::NotFound)?;
    let basis = LegalBasis {
        id: Uuid::new_v4(),
        patient_id: id,
        reference,
        destinations,
        expires_at: req.expires_at,
        recorded_by: caller.user_id,
        recorded_at: now,
        withdrawn_at: None,
        withdrawn_by: None,
    };
    let to = basis.destinations.as_ref().map_or_else(|| "any".to_owned(), |d| d.join(","));
    let audit =
        Audit::new(TRANSFER_BASIS_RECORD, &ip).actor(caller.user_id).target(format!("{id} basis:{} to:{to}", basis.id));
    let b = state.store().record_legal_basis(basis, audit.into_event()).await?;
    Ok((StatusCode::CREATED, Json(LegalBasisView::new(&b, now))))
}

/// Withdraw a legal basis (admins; audited): from now on it permits nothing. Credentials
/// issued before keep naming the relays they named until they expire.
#[utoipa::path(post, path = "/v1/patients/{id}/transfer-bases/{basis}/withdraw", tag = "residency",
    params(("id" = Uuid, Path), ("basis" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = LegalBasisView), (status = 403, body = crate::problem::Problem),
              (status = 404, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem)))]
pub async fn withdraw(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiPath((id, basis)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<LegalBasisView>> {
    caller.require(&[Role::Admin])?;
    let now = state.clock().now();
    let existing =
        state.store().legal_bases(id).await?.into_iter().find(|b| b.id == basis).ok_or(ApiError::NotFound)?;
    if existing.withdrawn_at.is_some() {
        return Err(ApiError::Conflict("this legal basis is already withdrawn".into()));
    }
    let audit = Audit::new(TRANSFER_BASIS_WITHDRAW, &ip).actor(caller.user_id).target(format!("{id} basis:{basis}"));
    if !state.store().withdraw_legal_basis(id, basis, caller.user_id, now, audit.into_event()).await? {
        return Err(ApiError::Conflict("this legal basis is already withdrawn".into()));
    }
    let withdrawn = LegalBasis { withdrawn_at: Some(now), withdrawn_by: Some(caller.user_id), ..existing };
    Ok(Json(LegalBasisView::new(&withdrawn, now)))
}

/// Transfer bases: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, record)).routes(routes!(withdraw))
}
