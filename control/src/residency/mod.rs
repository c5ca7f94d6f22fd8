//! Data residency (KVKK art. 9): practices and patients carry a data region, transfer bases
//! are recorded, and ICE credentials name only relays in a region the rule
//! (`domain::residency`) permits. This module loads what the rule needs and applies its answer;
//! `practices` and `bases` are the admin routes.
//!
//! Whose media a credential carries decides the rule's input: for a consultation
//! (an appointment), its patient; for a patient's own request without an appointment, that
//! patient; for staff without an appointment, nobody's (no patient data in the media): no
//! restriction.

pub mod bases;
pub mod practices;

use uuid::Uuid;

use crate::audit::Audit;
use crate::auth::extract::Caller;
use crate::config::RelayEntry;
use crate::domain::residency::{self, Permitted, Region, ResidencyFacts, TransferBasis};
use crate::problem::{ApiError, ApiResult};
use crate::state::{AppState, ClientIp};
use crate::store::{Consent, ConsentDecision, LegalBasis, PatientRecord, Role};

pub const PRACTICE_CREATE: &str = "practice.create";
pub const PRACTICE_UPDATE: &str = "practice.update";
/// A patient's data region set or changed (target: `<patient> <old> -> <new>`).
pub const PATIENT_REGION_CHANGE: &str = "patient.region.change";
pub const TRANSFER_BASIS_RECORD: &str = "transfer-basis.record";
pub const TRANSFER_BASIS_WITHDRAW: &str = "transfer-basis.withdraw";
pub const TRANSFER_BASIS_READ: &str = "transfer-basis.read";
/// ICE credentials refused because no usable relay is in a permitted region.
pub const ICE_REFUSE: &str = "ice.credentials.refuse";

/// A region label (`tr`, `eu-de`) as a request gives it, checked by [`region_field`].
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[schema(pattern = r"^[a-z0-9-]{1,32}$")]
pub struct RegionLabel(pub String);

/// A region label from a request, or a 422 naming the field.
pub fn region_field(field: &str, label: &str) -> ApiResult<Region> {
    Region::parse(label).map_err(|e| ApiError::field(field, e.to_string()))
}

/// The transfer bases in force for `patient` now: their consents to a transfer purpose under
/// the current notice, and the legal bases an admin recorded.
pub async fn bases_in_force(state: &AppState, patient: &PatientRecord) -> ApiResult<Vec<TransferBasis>> {
    let (current, consents) = match patient.user_id {
        Some(user_id) => (
            crate::privacy::notices::current_notice(state).await?.map(|n| n.version),
            state.store().consents(user_id).await?,
        ),
        None => (None, Vec::new()),
    };
    let legal_bases = state.store().legal_bases(patient.id).await?;
    Ok(bases_from(patient, current.as_ref(), &consents, &legal_bases, state.clock().now()))
}

/// The transfer bases in force at `now` among a patient's consents (given to a transfer
/// purpose under the `current` notice) and legal bases.
fn bases_from(
    patient: &PatientRecord,
    current: Option<&String>,
    consents: &[Consent],
    legal_bases: &[LegalBasis],
    now: time::OffsetDateTime,
) -> Vec<TransferBasis> {
    let mut bases = Vec::new();
    if patient.user_id.is_some() {
        for c in crate::privacy::consents::latest_per_purpose(consents).values() {
            if c.decision == ConsentDecision::Given && Some(&c.notice_version) == current {
                bases.extend(TransferBasis::from_consent_purpose(&c.purpose));
            }
        }
    }
    for b in legal_bases {
        if b.in_force(now) {
            let destinations =
                b.destinations.as_ref().map(|d| d.iter().filter_map(|r| Region::parse(r).ok()).collect());
            bases.push(TransferBasis { destinations });
        }
    }
    bases
}

/// The rule's answer for one patient now.
pub async fn permitted_for_patient(state: &AppState, patient: &PatientRecord) -> ApiResult<Permitted> {
    let bases = bases_in_force(state, patient).await?;
    Ok(permitted_with(state, patient, &bases))
}

fn permitted_with(state: &AppState, patient: &PatientRecord, bases: &[TransferBasis]) -> Permitted {
    let region = patient.data_region.as_deref().and_then(|r| Region::parse(r).ok());
    residency::permitted_regions(ResidencyFacts {
        deployment: state.config().deployment_region.as_ref(),
        patient: region.as_ref(),
        bases,
    })
}

/// Whose media a credential carries (see the module documentation), and the rule's answer.
async fn permitted_for(state: &AppState, caller: &Caller, appointment: Option<Uuid>) -> ApiResult<(String, Permitted)> {
    let patient = match appointment {
        Some(id) => {
            let a = state.store().appointment(id).await?.ok_or(ApiError::NotFound)?;
            state.store().patient(a.patient_id).await?
        }
        // A patient's own credentials, fetched again and again by the client: one read of
        // everything the rule needs, which the store may serve from its cache (read_cache.rs).
        None if caller.role == Role::Patient => {
            let facts = state.store().patient_residency(caller.user_id).await?;
            let subject = format!("user:{}", caller.user_id);
            let Some(patient) = &facts.patient else {
                return Ok((subject, permitted_without_record(state)));
            };
            let bases = bases_from(
                patient,
                facts.current_notice_version.as_ref(),
                &facts.consents,
                &facts.legal_bases,
                state.clock().now(),
            );
            return Ok((subject, permitted_with(state, patient, &bases)));
        }
        None => return Ok((format!("user:{}", caller.user_id), Permitted::Anywhere)),
    };
    let subject = appointment.map_or_else(|| format!("user:{}", caller.user_id), |a| format!("appointment:{a}"));
    let permitted = match patient {
        Some(p) => permitted_for_patient(state, &p).await?,
        None => permitted_without_record(state),
    };
    Ok((subject, permitted))
}

/// A patient account without its record yet: the deployment's region.
fn permitted_without_record(state: &AppState) -> Permitted {
    residency::permitted_regions(ResidencyFacts {
        deployment: state.config().deployment_region.as_ref(),
        patient: None,
        bases: &[],
    })
}

/// The relays of `offered` (best first) that the rule permits for this credential. None
/// permitted: a 503 naming the reason, audited as `ice.credentials.refuse` and counted in
/// `teletip_ice_region_refusals_total`.
pub async fn permitted_relays(
    state: &AppState,
    ip: &ClientIp,
    caller: &Caller,
    appointment: Option<Uuid>,
    offered: Vec<RelayEntry>,
) -> ApiResult<Vec<RelayEntry>> {
    let (subject, permitted) = permitted_for(state, caller, appointment).await?;
    let deployment = state.config().deployment_region.as_ref();
    let (kept, left_out): (Vec<RelayEntry>, Vec<RelayEntry>) =
        offered.into_iter().partition(|r| permitted.allows(r.region.as_deref(), deployment));
    if !kept.is_empty() {
        return Ok(kept);
    }
    let regions: Vec<Option<&str>> = left_out.iter().map(|r| r.region.as_deref()).collect();
    let reason = residency::refusal_reason(&permitted, &regions, deployment);
    metrics::counter!("teletip_ice_region_refusals_total").increment(1);
    tracing::warn!(%subject, "ICE credentials refused: {reason}");
    state
        .audit(
            Audit::new(ICE_REFUSE, ip)
                .actor(caller.user_id)
                .target(format!("{subject} {reason}"))
                .outcome("refused:region"),
        )
        .await?;
    Err(ApiError::Unavailable(reason))
}

/// Residency: the routes, each served and described from its `#[utoipa::path]`.
pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    practices::router().merge(bases::router())
}
