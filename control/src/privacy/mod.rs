//! Data-protection rights and duties (KVKK art. 5, 7, 10, 11; HIPAA 164.316, 164.524):
//! versioned privacy notices and explicit consents, the access export, erasure, and the
//! retention job. Every change and every read of personal data here is audited.

pub mod consents;
pub mod erasure;
pub mod export;
pub mod notices;
pub mod retention;

/// Data-protection rights: every submodule's routes with their descriptions.
pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::state::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(notices::router())
        .merge(consents::router())
        .merge(export::router())
        .merge(erasure::router())
        .merge(retention::router())
}
