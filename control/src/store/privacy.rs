//! Privacy records as the store keeps them (KVKK, HIPAA): versioned notices, the consent
//! history, and what an erasure does to a patient.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// One processing purpose a notice asks consent for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NoticePurpose {
    /// A stable code, e.g. `health-data-processing`, `cross-border-transfer`.
    #[schema(pattern = r"^[a-z0-9-]{1,64}$")]
    pub code: String,
    /// Whether a patient must give it before booking or joining a consultation.
    pub required: bool,
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub description: String,
}

/// A published privacy notice (aydınlatma metni). Immutable once published: a change is a new
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyNotice {
    pub id: Uuid,
    pub version: String,
    pub language: String,
    pub title: String,
    pub body: String,
    pub purposes: Vec<NoticePurpose>,
    pub published_at: OffsetDateTime,
    pub published_by: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsentDecision {
    Given,
    Withdrawn,
}

impl ConsentDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentDecision::Given => "given",
            ConsentDecision::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<ConsentDecision> {
        match s {
            "given" => Some(ConsentDecision::Given),
            "withdrawn" => Some(ConsentDecision::Withdrawn),
            _ => None,
        }
    }
}

/// One consent decision: who, which notice version, which purpose, given or withdrawn, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: Uuid,
    pub user_id: Uuid,
    pub notice_version: String,
    pub purpose: String,
    pub decision: ConsentDecision,
    pub at: OffsetDateTime,
    pub source_ip: Option<String>,
}

/// Which patients to list. The blind indexes make equality lookups possible without the
/// store ever seeing the clear values.
#[derive(Debug, Clone, Default)]
pub struct PatientFilter {
    /// Only patients with a care relationship with this practitioner, within `care`.
    pub practitioner_id: Option<Uuid>,
    /// The care relationship's window; required with `practitioner_id`.
    pub care: Option<super::CareWindow>,
    pub national_id_index: Option<String>,
    pub phone_index: Option<String>,
    pub email_index: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// What anonymising a patient on an erasure request changes, in one transaction: the record
/// loses every identifying field, live appointments are cancelled, the login account is
/// disabled and stripped of its e-mail and name, and its sessions are revoked.
#[derive(Debug, Clone)]
pub struct Anonymisation {
    pub patient_id: Uuid,
    pub user_id: Option<Uuid>,
    /// The name the record keeps (no identifying content).
    pub placeholder_name: String,
    /// The login e-mail the account keeps: unique, undeliverable, not the person's.
    pub placeholder_email: String,
    pub retain_until: OffsetDateTime,
    pub cancel_reason: String,
    pub now: OffsetDateTime,
}
