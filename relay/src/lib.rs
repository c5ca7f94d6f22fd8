//! `teletip-relay`: the TURN/STUN relay daemon. The protocol lives in `teletip-turn-proto`
//! (sans-IO); this crate is the I/O shell around it: configuration, sockets, worker threads,
//! metrics and the command line.

pub mod config;
pub mod control_link;
pub mod daemon;
pub mod firewall;
pub mod metrics;
pub mod net;
pub mod secret_sources;
pub mod xdp;
