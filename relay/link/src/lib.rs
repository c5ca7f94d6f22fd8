//! The control link: relay nodes dial the control plane over QUIC with mutual TLS, register
//! the addresses clients reach them on, report their load, take drain orders, and receive the
//! secrets the control plane issues credentials with.
//!
//! One bidirectional stream per connection, opened by the relay, carrying length-prefixed JSON
//! frames ([`frame`]). JSON and not a binary encoding: a frame every few seconds per relay is
//! nothing to encode, and an operator can read a captured frame. The node's identity is its
//! client certificate ([`tls::node_identity`]), never what it says about itself.

pub mod frame;
pub mod message;
pub mod tls;

pub use frame::{FrameError, read_frame, write_frame};
pub use message::{ControlToRelay, Load, PushedSecret, REVOKE_BATCH, Registration, RelayToControl, RevokedSession};

/// ALPN protocol id of this link; a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"teletip-link/1";
