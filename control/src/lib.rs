//! `teletip-control`: the control plane. Modules by capability, each owning its routes,
//! types and queries; `store` is the one persistence trait with SQLite and PostgreSQL behind
//! it.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod edge;
pub mod fhir;
pub mod ice;
pub mod keys;
pub mod notify;
pub mod observability;
pub mod openapi;
pub mod ops;
pub mod privacy;
pub mod problem;
pub mod ratelimit;
pub mod relays;
pub mod residency;
pub mod revocation;
pub mod scheduling;
pub mod signaling;
pub mod state;
pub mod store;
pub mod users;
pub mod web;
