//! Relay nodes: the QUIC server they dial (`link`), what is known of each (`registry`), and the
//! admin routes that list them and drain them (`routes`). ICE credentials hand out the relays
//! the registry finds healthy, least loaded first; without a link, or before any relay has
//! registered, the static `ice.relays` list.

pub mod link;
pub mod registry;
pub mod routes;

pub use registry::Registry;
