//! The network layer: sockets, relayed-port binding and the per-worker event loops.

pub mod binder;
pub mod idle;
pub mod memory;
pub mod overload;
pub mod socket;
pub mod stream;
pub mod tls;
pub mod worker;
