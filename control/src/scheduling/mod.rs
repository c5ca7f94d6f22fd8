//! Clinical scheduling: practitioners' availability, appointments and the consultations they become.

pub mod access;
pub mod actions;
pub mod appointments;
pub mod availability;
pub mod booking_rules;
pub mod patients;
pub mod practitioners;
pub mod proposal_expiry;
pub mod schedule;
pub mod session;
pub mod sweeper;

/// Scheduling: every submodule's routes with their descriptions.
pub fn router() -> utoipa_axum::router::OpenApiRouter<crate::state::AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(practitioners::router())
        .merge(schedule::router())
        .merge(patients::router())
        .merge(appointments::router())
        .merge(session::router())
        .merge(booking_rules::router())
}
