//! Data-protection rights and duties (KVKK art. 5, 7, 10, 11; HIPAA 164.316, 164.524):
//! versioned privacy notices and explicit consents, the access export, erasure, and the
//! retention job. Every change and every read of personal data here is audited.

pub mod consents;
pub mod erasure;
pub mod export;
pub mod notices;
pub mod retention;
