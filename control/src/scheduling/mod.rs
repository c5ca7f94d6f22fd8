//! Clinical scheduling: practitioners' availability, appointments and the consultations they become.

pub mod access;
pub mod actions;
pub mod appointments;
pub mod availability;
pub mod patients;
pub mod practitioners;
pub mod schedule;
pub mod session;
pub mod sweeper;
