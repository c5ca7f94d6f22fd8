//! Patients. Identifying fields (national id, phone, e-mail, notes) are encrypted before they
//! reach the store and decrypted only for callers allowed to see the record; every read and
//! every refused read is audited (KVKK, HIPAA 164.312(b)).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{RecordAccess, Scope, authorize_patient, care_window, scope};
use super::actions;
use super::practitioners::text;
use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::crypto::field;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::residency::{PATIENT_REGION_CHANGE, region_field};
use crate::state::{AppState, ClientIp};
use crate::store::{PatientFilter, PatientRecord, Role};

// Birth dates as FHIR and every client write them: YYYY-MM-DD.
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePatient {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub display_name: String,
    /// Not in the future.
    #[serde(default, with = "iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<Date>,
    #[schema(max_length = 32)]
    pub national_id: Option<String>,
    #[schema(max_length = 32)]
    pub phone: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^\s.\x00-\x1f\x7f-\x9f]([^\s\x00-\x1f\x7f-\x9f]*\.)+[^\s.\x00-\x1f\x7f-\x9f]$"
    )]
    pub email: Option<String>,
    #[schema(max_length = 4000)]
    pub notes: Option<String>,
    /// The patient's login account (role patient), if any. A patient creating their own
    /// record must give their own id.
    pub user_id: Option<Uuid>,
    /// Where the patient's data and consultation media stay (a region label; staff only).
    /// Absent: the region of the registering practitioner's practice, else the deployment's.
    #[schema(pattern = r"^[a-z0-9-]{1,32}$")]
    pub data_region: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientView {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub display_name: String,
    #[serde(with = "iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<Date>,
    pub national_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
    /// Absent: the deployment's region.
    pub data_region: Option<String>,
}

fn decrypt(state: &AppState, name: &str, value: &Option<String>) -> ApiResult<Option<String>> {
    value
        .as_deref()
        .map(|v| state.fields().decrypt(name, v).map_err(|e| ApiError::Internal(format!("{name}: {e}"))))
        .transpose()
}

pub(crate) fn view(state: &AppState, p: &PatientRecord) -> ApiResult<PatientView> {
    Ok(PatientView {
        id: p.id,
        user_id: p.user_id,
        display_name: p.display_name.clone(),
        birth_date: p.birth_date,
        national_id: decrypt(state, field::NATIONAL_ID, &p.national_id_enc)?,
        phone: decrypt(state, field::PHONE, &p.phone_enc)?,
        email: decrypt(state, field::EMAIL, &p.email_enc)?,
        notes: decrypt(state, field::NOTES, &p.notes_enc)?,
        data_region: p.data_region.clone(),
    })
}

/// Only staff set a patient's data region: a patient asking to is refused, audited as a
/// denied `patient.region.change`.
async fn require_staff_for_region(state: &AppState, ip: &ClientIp, caller: &Caller, target: &str) -> ApiResult<()> {
    if caller.role != Role::Patient {
        return Ok(());
    }
    let audit = Audit::new(PATIENT_REGION_CHANGE, ip).actor(caller.user_id).target(target.to_owned()).outcome("denied");
    state.audit(audit).await?;
    Err(ApiError::Forbidden("only staff (admins, the patient's practitioners) set a patient's data region".into()))
}

/// The data region of a patient `caller` registers without naming one: their practice's if
/// they work for one that has a region, else the deployment's.
async fn default_region(state: &AppState, caller: &Caller) -> ApiResult<Option<String>> {
    let deployment = state.config().deployment_region.as_ref().map(|r| r.to_string());
    if caller.role != Role::Practitioner {
        return Ok(deployment);
    }
    let practice_id = state.store().practitioner_by_user(caller.user_id).await?.and_then(|p| p.practice_id);
    let practice = match practice_id {
        Some(id) => state.store().practice(id).await?,
        None => None,
    };
    Ok(practice.and_then(|p| p.data_region).or(deployment))
}

/// Encrypts an optional field and computes its blind index.
fn sealed(
    state: &AppState,
    name: &str,
    value: Option<&str>,
    max: usize,
) -> ApiResult<(Option<String>, Option<String>)> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok((None, None));
    };
    if v.chars().count() > max {
        return Err(ApiError::field(name.trim_start_matches("patient."), format!("must be at most {max} characters")));
    }
    Ok((Some(state.fields().encrypt(name, v)), Some(state.fields().blind_index(name, v))))
}

/// Register a patient: admins and practitioners for anyone, a patient for their own account.
#[utoipa::path(post, path = "/v1/patients", tag = "scheduling", request_body = CreatePatient, security(("bearer" = [])),
    responses((status = 201, body = PatientView), (status = 403, body = crate::problem::Problem), (status = 422, body = crate::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiJson(req): ApiJson<CreatePatient>,
) -> ApiResult<(StatusCode, Json<PatientView>)> {
    if caller.role == Role::Patient && req.user_id != Some(caller.user_id) {
        return Err(ApiError::Forbidden("a patient may register only their own record (userId = your account)".into()));
    }
    if let Some(user_id) = req.user_id {
        match state.store().user_by_id(user_id).await? {
            Some(u) if u.role == Role::Patient => {}
            _ => return Err(ApiError::field("userId", "must be an existing account with the role patient")),
        }
    }
    if let Some(email) = &req.email {
        crate::users::validate_email(&email.trim().to_lowercase())?;
    }
    let data_region = match &req.data_region {
        Some(label) => {
            require_staff_for_region(&state, &ip, &caller, "new patient").await?;
            Some(region_field("dataRegion", label)?.to_string())
        }
        None => default_region(&state, &caller).await?,
    };
    if req.birth_date.is_some_and(|d| d > state.clock().now().date()) {
        return Err(ApiError::field("birthDate", "must not be in the future"));
    }
    let now = state.clock().now();
    let (national_id_enc, national_id_index) = sealed(&state, field::NATIONAL_ID, req.national_id.as_deref(), 32)?;
    let (phone_enc, phone_index) = sealed(&state, field::PHONE, req.phone.as_deref(), 32)?;
    let (email_enc, email_index) = sealed(&state, field::EMAIL, req.email.as_deref(), 254)?;
    let (notes_enc, _) = sealed(&state, field::NOTES, req.notes.as_deref(), 4000)?;
    let record = PatientRecord {
        id: Uuid::new_v4(),
        user_id: req.user_id,
        display_name: text("displayName", &req.display_name, 200)?,
        birth_date: req.birth_date,
        national_id_enc,
        national_id_index,
        phone_enc,
        phone_index,
        email_enc,
        email_index,
        notes_enc,
        anonymized_at: None,
        retain_until: None,
        data_region,
        created_at: now,
        updated_at: now,
    };
    let audit = Audit::new(actions::PATIENT_CREATE, &ip).actor(caller.user_id).target(record.id.to_string());
    let p = state.store().create_patient(record, audit.into_event()).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => ApiError::Conflict("that account already has a patient record".into()),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(view(&state, &p)?)))
}

/// A patient's record: the patient, their practitioners (a care relationship, see
/// `scheduling::access`), admins; other practitioners only with `Break-Glass-Reason`. Every
/// read and every refusal is audited.
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "scheduling", params(("id" = Uuid, Path),
        ("Break-Glass-Reason" = Option<String>, Header, description = "Emergency access without a care relationship: why (20 to 500 characters); audited as patient.read.emergency")),
    security(("bearer" = [])),
    responses((status = 200, body = PatientView), (status = 403, body = crate::problem::Problem), (status = 404, body = crate::problem::Problem),
        (status = 422, body = crate::problem::Problem)))]
pub async fn get(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PatientView>> {
    let audit = authorize_patient(&state, &ip, &caller, &headers, id, RecordAccess::Read).await?;
    let p = state.store().patient(id).await?.ok_or(ApiError::NotFound)?;
    state.audit(audit).await?;
    Ok(Json(view(&state, &p)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePatient {
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub display_name: Option<String>,
    #[serde(default, with = "iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub birth_date: Option<Date>,
    /// For each identifying field: a value replaces it, an empty string removes it, absence
    /// keeps it.
    #[schema(max_length = 32)]
    pub national_id: Option<String>,
    #[schema(max_length = 32)]
    pub phone: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^$|^[^@\s\x00-\x1f\x7f-\x9f]+@[^\s.\x00-\x1f\x7f-\x9f]([^\s\x00-\x1f\x7f-\x9f]*\.)+[^\s.\x00-\x1f\x7f-\x9f]$"
    )]
    pub email: Option<String>,
    #[schema(max_length = 4000)]
    pub notes: Option<String>,
    /// A new data region (staff only; audited as `patient.region.change`).
    #[schema(pattern = r"^[a-z0-9-]{1,32}$")]
    pub data_region: Option<String>,
}

/// Applies one optional sealed-field change to the pair the record keeps.
fn reseal(
    state: &AppState,
    name: &str,
    value: Option<&str>,
    max: usize,
    current: (&mut Option<String>, Option<&mut Option<String>>),
) -> ApiResult<()> {
    let Some(v) = value else { return Ok(()) };
    let (enc, index) = sealed(state, name, Some(v), max)?;
    *current.0 = enc;
    if let Some(slot) = current.1 {
        *slot = index;
    }
    Ok(())
}

/// Correct a patient's record (KVKK art. 11 right to rectification): the patient, their
/// practitioners, admins. Audited.
#[utoipa::path(patch, path = "/v1/patients/{id}", tag = "scheduling", params(("id" = Uuid, Path),
        ("Break-Glass-Reason" = Option<String>, Header, description = "Emergency access without a care relationship: why (20 to 500 characters); audited as patient.update.emergency")),
    request_body = UpdatePatient, security(("bearer" = [])),
    responses((status = 200, body = PatientView), (status = 403, body = crate::problem::Problem),
        (status = 404, body = crate::problem::Problem), (status = 409, body = crate::problem::Problem),
        (status = 422, body = crate::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdatePatient>,
) -> ApiResult<Json<PatientView>> {
    let audit = authorize_patient(&state, &ip, &caller, &headers, id, RecordAccess::Update).await?;
    let region = match &req.data_region {
        Some(label) => {
            require_staff_for_region(&state, &ip, &caller, &id.to_string()).await?;
            Some(region_field("dataRegion", label)?.to_string())
        }
        None => None,
    };
    let mut p = state.store().patient(id).await?.ok_or(ApiError::NotFound)?;
    if p.anonymized_at.is_some() {
        return Err(ApiError::Conflict("this record was anonymised on an erasure request".into()));
    }
    if let Some(name) = &req.display_name {
        p.display_name = text("displayName", name, 200)?;
    }
    if let Some(birth) = req.birth_date {
        if birth > state.clock().now().date() {
            return Err(ApiError::field("birthDate", "must not be in the future"));
        }
        p.birth_date = Some(birth);
    }
    if let Some(email) = req.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        crate::users::validate_email(&email.to_lowercase())?;
    }
    reseal(
        &state,
        field::NATIONAL_ID,
        req.national_id.as_deref(),
        32,
        (&mut p.national_id_enc, Some(&mut p.national_id_index)),
    )?;
    reseal(&state, field::PHONE, req.phone.as_deref(), 32, (&mut p.phone_enc, Some(&mut p.phone_index)))?;
    reseal(&state, field::EMAIL, req.email.as_deref(), 254, (&mut p.email_enc, Some(&mut p.email_index)))?;
    reseal(&state, field::NOTES, req.notes.as_deref(), 4000, (&mut p.notes_enc, None))?;
    p.updated_at = state.clock().now();
    if !state.store().update_patient(&p, audit.into_event()).await? {
        return Err(ApiError::NotFound);
    }
    if let Some(region) = region.filter(|r| p.data_region.as_ref() != Some(r)) {
        let before = p.data_region.as_deref().unwrap_or("none");
        let change =
            Audit::new(PATIENT_REGION_CHANGE, &ip).actor(caller.user_id).target(format!("{id} {before}->{region}"));
        if !state.store().set_patient_region(id, Some(&region), p.updated_at, change.into_event()).await? {
            return Err(ApiError::NotFound);
        }
        p.data_region = Some(region);
    }
    Ok(Json(view(&state, &p)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PatientQuery {
    /// Exact national id (looked up through its blind index, never decrypted in the database).
    pub national_id: Option<String>,
    /// Exact phone number.
    pub phone: Option<String>,
    /// Exact e-mail address (case-insensitive).
    pub email: Option<String>,
    /// At most 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// At most 1,000,000,000 (far past any list; a bound JSON Schema's doubles state exactly).
    #[serde(default, deserialize_with = "crate::problem::in_range::<_, _, 0, 1_000_000_000>")]
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<i64>,
}

/// Patients I may see: all (admins), mine (practitioners: those in a care relationship with me),
/// myself (patients). Equality search by national id, phone or e-mail. Each returned record is
/// an audited read.
#[utoipa::path(get, path = "/v1/patients", tag = "scheduling", params(PatientQuery), security(("bearer" = [])),
    responses((status = 200, body = [PatientView]), (status = 400, body = crate::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ip: ClientIp,
    caller: Caller,
    ApiQuery(q): ApiQuery<PatientQuery>,
) -> ApiResult<Json<Vec<PatientView>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) || q.offset.is_some_and(|o| o < 0) {
        return Err(ApiError::BadRequest("limit must be 1 to 100 and offset not negative".into()));
    }
    let index = |name: &str, v: &Option<String>| {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(|v| state.fields().blind_index(name, v))
    };
    let email = q.email.as_ref().map(|e| e.trim().to_lowercase());
    let mut filter = PatientFilter {
        national_id_index: index(field::NATIONAL_ID, &q.national_id),
        phone_index: index(field::PHONE, &q.phone),
        email_index: index(field::EMAIL, &email),
        limit,
        offset: q.offset.unwrap_or(0),
        ..Default::default()
    };
    let found = match scope(&state, &caller).await? {
        Scope::All => state.store().list_patients(&filter).await?,
        Scope::Practitioner(p) => {
            filter.practitioner_id = Some(p);
            filter.care = Some(care_window(&state));
            state.store().list_patients(&filter).await?
        }
        // A patient's list is their own record, if it matches the search.
        Scope::Patient(own) => {
            let record = state.store().patient(own).await?;
            let matches = |mine: &Option<String>, wanted: &Option<String>| wanted.is_none() || mine == wanted;
            record
                .filter(|p| {
                    matches(&p.national_id_index, &filter.national_id_index)
                        && matches(&p.phone_index, &filter.phone_index)
                        && matches(&p.email_index, &filter.email_index)
                        && filter.offset == 0
                })
                .into_iter()
                .collect()
        }
        Scope::Nothing => Vec::new(),
    };
    let mut views = Vec::with_capacity(found.len());
    for p in &found {
        state.audit(Audit::new(actions::PATIENT_READ, &ip).actor(caller.user_id).target(p.id.to_string())).await?;
        views.push(view(&state, p)?);
    }
    Ok(Json(views))
}

/// Patients: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get, update))
}
