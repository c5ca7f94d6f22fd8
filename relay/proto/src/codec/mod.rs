//! Zero-copy STUN (RFC 8489) and TURN (RFC 8656) wire format.
//!
//! [`Message`] borrows the datagram and records where each attribute lies, in a fixed-size
//! array: decoding never touches the heap. [`MessageWriter`] encodes into a buffer the caller
//! owns. Both are hand-written (not the `stun` crate) because they sit on the relay's per-packet
//! path, where a heap allocation per message is measurable; the `stun` crate checks them in tests.

mod addr;
pub mod attr;
mod channel_data;
mod integrity;
mod message;
mod stream;
mod writer;

pub use addr::{decode_xor_address, encode_address_value, encode_xor_address_value};
pub use attr::*;
pub use channel_data::{
    CHANNEL_DATA_HEADER_LEN, ChannelData, RFC5766_MAX_CHANNEL, RFC8656_MAX_CHANNEL, is_channel_data, is_channel_number,
};
pub use integrity::{IntegrityKey, IntegrityKind, fingerprint_of};
pub use message::{
    Attribute, Class, DecodeError, MAX_ATTRIBUTES, MAX_CLOSING_ATTRIBUTES, Message, Method, is_closing, is_stun,
};
pub use stream::{Framer, FramingError, Next, frame_len, stream_padding};
pub use writer::{EncodeError, MessageWriter};

/// The magic cookie every RFC 5389/8489 message carries at bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;
/// A transaction id: 96 random bits chosen by the requester.
pub type TransactionId = [u8; 12];
