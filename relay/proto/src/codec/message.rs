//! Decoding a STUN message without copying it.

use super::{HEADER_LEN, MAGIC_COOKIE, TransactionId, attr};
use thiserror::Error;

/// Upper bound on the attributes of a message other than the closing ones (MESSAGE-INTEGRITY,
/// MESSAGE-INTEGRITY-SHA256, FINGERPRINT). Real requests carry fewer than 15; a datagram with
/// more is treated as malformed rather than growing a heap structure for an attacker. The
/// closing attributes do not count against it: they are bounded by the message's structure
/// (at most one of each is recorded), and a message of [`MAX_ATTRIBUTES`] attributes must still
/// decode once it is signed and fingerprinted. The writer refuses the attribute after the
/// [`MAX_ATTRIBUTES`]th ([`super::EncodeError::TooManyAttributes`]), so anything it writes
/// decodes.
pub const MAX_ATTRIBUTES: usize = 32;

/// The closing attributes a message records at most: MESSAGE-INTEGRITY, then
/// MESSAGE-INTEGRITY-SHA256, then FINGERPRINT, one of each (RFC 8489 §14.5-§14.7).
pub const MAX_CLOSING_ATTRIBUTES: usize = 3;

const RECORDED: usize = MAX_ATTRIBUTES + MAX_CLOSING_ATTRIBUTES;

/// Whether an attribute type closes a message (integrity or fingerprint), and so does not
/// count against [`MAX_ATTRIBUTES`].
pub const fn is_closing(attr_type: u16) -> bool {
    matches!(attr_type, attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT)
}

/// The message class: the two class bits of the message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    const fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// A STUN method (12 bits). The TURN methods are those of RFC 8656 §18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    pub const BINDING: Method = Method(0x001);
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// The 14-bit message type for this method in the given class (RFC 8489 §5, Figure 3: class
    /// bits are interleaved with the method bits).
    pub const fn message_type(self, class: Class) -> u16 {
        let m = self.0;
        let c = class.bits();
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }

    fn split(message_type: u16) -> (Method, Class) {
        let m = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2);
        let class = match ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        (Method(m), class)
    }
}

/// Why a datagram is not a STUN message we accept. Each maps to a drop counter; none is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("the two leading bits are not zero")]
    NotStun,
    #[error("magic cookie missing (RFC 3489 clients are not served)")]
    NoMagicCookie,
    #[error("message length is not a multiple of four")]
    UnalignedLength,
    #[error("message length does not match the datagram")]
    LengthMismatch,
    #[error("an attribute runs past the end of the message")]
    TruncatedAttribute,
    #[error("more attributes than a real client sends")]
    TooManyAttributes,
    #[error("attribute after FINGERPRINT, which must be last")]
    AttributeAfterFingerprint,
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
}

/// One attribute: its type and the byte range of its value inside the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attribute {
    pub attr_type: u16,
    /// Offset of the value from the start of the message. u32: in a maximal message (20 +
    /// 65532 bytes) a value can start past byte 65535.
    pub offset: u32,
    /// Length of the value, without padding.
    pub len: u16,
}

/// A decoded STUN message borrowing the datagram it came in.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    bytes: &'a [u8],
    method: Method,
    class: Class,
    attrs: [Attribute; RECORDED],
    attr_count: u8,
    /// Index into `attrs` of MESSAGE-INTEGRITY, if present.
    integrity: Option<u8>,
    /// Index into `attrs` of MESSAGE-INTEGRITY-SHA256, if present.
    integrity_sha256: Option<u8>,
    has_fingerprint: bool,
}

/// Whether the datagram looks like STUN (leading bits 00 and the magic cookie): the cheap test
/// used to tell STUN from ChannelData (01) before decoding.
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] & 0xC0 == 0 && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
}

impl<'a> Message<'a> {
    /// Decodes one message that must fill `bytes` exactly (as a UDP datagram or a framed TCP
    /// message does). Checks FINGERPRINT when present; MESSAGE-INTEGRITY is checked separately,
    /// once the key is known ([`Message::verify_integrity`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort);
        }
        if bytes[0] & 0xC0 != 0 {
            return Err(DecodeError::NotStun);
        }
        if bytes[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(DecodeError::NoMagicCookie);
        }
        let length = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        if length % 4 != 0 {
            return Err(DecodeError::UnalignedLength);
        }
        if HEADER_LEN + length != bytes.len() {
            return Err(DecodeError::LengthMismatch);
        }
        let (method, class) = Method::split(u16::from_be_bytes([bytes[0], bytes[1]]));
        let mut msg = Message {
            bytes,
            method,
            class,
            attrs: [Attribute::default(); RECORDED],
            attr_count: 0,
            integrity: None,
            integrity_sha256: None,
            has_fingerprint: false,
        };
        let mut pos = HEADER_LEN;
        let mut ordinary = 0;
        while pos < bytes.len() {
            if pos + 4 > bytes.len() {
                return Err(DecodeError::TruncatedAttribute);
            }
            let attr_type = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]);
            let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
            let value_start = pos + 4;
            let padded = (len + 3) & !3;
            if value_start + padded > bytes.len() {
                return Err(DecodeError::TruncatedAttribute);
            }
            if msg.has_fingerprint {
                // FINGERPRINT must be last (RFC 8489 §14.7).
                return Err(DecodeError::AttributeAfterFingerprint);
            }
            // After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count; after
            // MESSAGE-INTEGRITY-SHA256 only FINGERPRINT. Anything else there is ignored (RFC 8489
            // §14.5, §14.6): it was not authenticated, so it is not even recorded.
            let after_integrity = msg.integrity.is_some() || msg.integrity_sha256.is_some();
            if after_integrity {
                let counted = attr_type == attr::FINGERPRINT
                    || (attr_type == attr::MESSAGE_INTEGRITY_SHA256 && msg.integrity_sha256.is_none());
                if !counted {
                    pos = value_start + padded;
                    continue;
                }
            }
            let index = msg.attr_count as usize;
            if !is_closing(attr_type) {
                if ordinary == MAX_ATTRIBUTES {
                    return Err(DecodeError::TooManyAttributes);
                }
                ordinary += 1;
            }
            // Unreachable (one of each closing attribute at most, see above), but an index out
            // of bounds must never be the way to find out.
            if index == RECORDED {
                return Err(DecodeError::TooManyAttributes);
            }
            msg.attrs[index] = Attribute { attr_type, offset: value_start as u32, len: len as u16 };
            msg.attr_count += 1;
            match attr_type {
                attr::MESSAGE_INTEGRITY => msg.integrity = Some(index as u8),
                attr::MESSAGE_INTEGRITY_SHA256 => msg.integrity_sha256 = Some(index as u8),
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(DecodeError::BadFingerprint);
                    }
                    let expected = super::integrity::fingerprint_of(&bytes[..pos]);
                    if bytes[value_start..value_start + 4] != expected.to_be_bytes() {
                        return Err(DecodeError::BadFingerprint);
                    }
                    msg.has_fingerprint = true;
                }
                _ => {}
            }
            pos = value_start + padded;
        }
        Ok(msg)
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn class(&self) -> Class {
        self.class
    }

    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.bytes[8..20]);
        id
    }

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs[..self.attr_count as usize]
    }

    /// The value of the first attribute of this type (RFC 8489 §14: later duplicates are
    /// ignored).
    pub fn get(&self, attr_type: u16) -> Option<&'a [u8]> {
        self.attributes()
            .iter()
            .find(|a| a.attr_type == attr_type)
            .map(|a| &self.bytes[a.offset as usize..a.offset as usize + a.len as usize])
    }

    /// All values of attributes of this type, in order (XOR-PEER-ADDRESS may repeat in
    /// CreatePermission).
    pub fn get_all(&self, attr_type: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.attributes()
            .iter()
            .filter(move |a| a.attr_type == attr_type)
            .map(move |a| &bytes[a.offset as usize..a.offset as usize + a.len as usize])
    }

    pub fn has(&self, attr_type: u16) -> bool {
        self.attributes().iter().any(|a| a.attr_type == attr_type)
    }

    /// Comprehension-required attributes this server does not understand, for a 420 answer.
    /// Attributes after the integrity attributes were never recorded, so they do not count.
    pub fn unknown_required(&self) -> impl Iterator<Item = u16> + '_ {
        self.attributes()
            .iter()
            .map(|a| a.attr_type)
            .filter(|t| attr::is_comprehension_required(*t) && !attr::is_understood(*t))
    }

    pub fn has_fingerprint(&self) -> bool {
        self.has_fingerprint
    }

    pub(crate) fn integrity_attr(&self) -> Option<Attribute> {
        self.integrity.map(|i| self.attrs[i as usize])
    }

    pub(crate) fn integrity_sha256_attr(&self) -> Option<Attribute> {
        self.integrity_sha256.map(|i| self.attrs[i as usize])
    }

    /// Whether the message carries MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE) as UTF-8.
    pub fn text(&self, attr_type: u16) -> Option<&'a str> {
        self.get(attr_type).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A 32-bit attribute (LIFETIME).
    pub fn u32_value(&self, attr_type: u16) -> Option<u32> {
        let v = self.get(attr_type)?;
        (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_every_method_and_class() {
        for m in 0..0x1000u16 {
            for class in [Class::Request, Class::Indication, Class::Success, Class::Error] {
                let t = Method(m).message_type(class);
                assert_eq!(t & 0xC000, 0);
                assert_eq!(Method::split(t), (Method(m), class));
            }
        }
    }

    #[test]
    fn well_known_message_types() {
        assert_eq!(Method::BINDING.message_type(Class::Request), 0x0001);
        assert_eq!(Method::BINDING.message_type(Class::Success), 0x0101);
        assert_eq!(Method::BINDING.message_type(Class::Error), 0x0111);
        assert_eq!(Method::ALLOCATE.message_type(Class::Request), 0x0003);
        assert_eq!(Method::SEND.message_type(Class::Indication), 0x0016);
        assert_eq!(Method::DATA.message_type(Class::Indication), 0x0017);
        assert_eq!(Method::CHANNEL_BIND.message_type(Class::Success), 0x0109);
    }

    #[test]
    fn rejects_short_and_misaligned() {
        assert_eq!(Message::decode(&[0; 10]).unwrap_err(), DecodeError::TooShort);
        let mut m = [0u8; 24];
        m[1] = 1;
        m[3] = 2;
        m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert_eq!(Message::decode(&m).unwrap_err(), DecodeError::UnalignedLength);
        m[3] = 8;
        assert_eq!(Message::decode(&m).unwrap_err(), DecodeError::LengthMismatch);
        m[3] = 4;
        m[20..24].copy_from_slice(&[0x00, 0x06, 0x00, 0x08]);
        assert_eq!(Message::decode(&m).unwrap_err(), DecodeError::TruncatedAttribute);
    }
}
