//! Data residency as stored: practices and their data region, and the documented legal bases
//! for transferring a patient's data abroad (see `domain::residency` for the rule).

use time::OffsetDateTime;
use uuid::Uuid;

/// A practice (a clinic, a department): the data region of the patients its staff register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    pub id: Uuid,
    pub name: String,
    /// A region label; `None`: the deployment's region.
    pub data_region: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A documented legal basis (KVKK art. 9) for transferring one patient's data to other
/// regions, recorded by an admin. In force from `recorded_at` until `expires_at` or its
/// withdrawal, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalBasis {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// Where the basis is documented (a contract, a board decision, a Kurul permission).
    pub reference: String,
    /// The region labels it covers; `None`: any.
    pub destinations: Option<Vec<String>>,
    pub expires_at: Option<OffsetDateTime>,
    pub recorded_by: Uuid,
    pub recorded_at: OffsetDateTime,
    pub withdrawn_at: Option<OffsetDateTime>,
    pub withdrawn_by: Option<Uuid>,
}

impl LegalBasis {
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        self.withdrawn_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// What the residency rule reads for a patient account's own ICE credentials: its patient
/// record (if any), the current privacy notice's version, its consent history and its legal
/// bases (`ResidencyStore::patient_residency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientResidency {
    pub patient: Option<super::PatientRecord>,
    pub current_notice_version: Option<String>,
    /// Oldest first.
    pub consents: Vec<super::Consent>,
    /// Oldest first.
    pub legal_bases: Vec<LegalBasis>,
}
