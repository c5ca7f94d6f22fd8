//! The sans-IO protocol core of `teletip-relay`.
//!
//! Nothing here opens a socket or reads a clock: the network layer hands in
//! `(now, 5-tuple, bytes)` and carries out the [`server::Action`] it gets back. Everything in
//! this crate is therefore tested in memory, fuzzed, and deterministic.

pub mod codec;
pub mod credentials;
pub mod limits;
pub mod nonce;
pub mod policy;
pub mod revocations;
pub mod secrets;
pub mod server;
pub mod source_budget;
pub mod time;

pub use codec::IntegrityKey;
pub use codec::IntegrityKind;
