//! The control plane's rules as plain functions, the way the relay's sans-IO core is built:
//! no axum, sqlx, socketioxide or clock reads here. Each function takes `now` and the records
//! the caller loaded and returns a decision; the HTTP, Socket.IO and FHIR handlers load, ask,
//! and translate the decision into their own answer. Unit tests run in memory.

pub mod appointment;
pub mod booking;
pub mod consultation;
pub mod ice_lifetime;
pub mod residency;
pub mod retention;
pub mod revocation;
