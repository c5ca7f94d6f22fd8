//! Measuring teletip-relay's data plane against other TURN servers and against the kernel.
//!
//! The load generator speaks standard TURN only (REST credentials, long-term auth, Allocate,
//! ChannelBind, CreatePermission, ChannelData, Send/Data indications), its clients over UDP, TCP
//! or TLS, so it drives any TURN server the same way; it reuses teletip's sans-IO codec for encoding and decoding, never its
//! server. See docs/performance.md for the method and the results.
//!
//! With the feature `control`, `ctl` drives teletip-control instead: HTTP and Socket.IO load
//! (`control-load`) and the trivial servers it is compared with (`ceiling`).

#[cfg(feature = "control")]
pub mod ctl;
pub mod flood;
pub mod flow;
pub mod hist;
pub mod kernel;
pub mod probe;
pub mod report;
pub mod sockets;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod turn;
