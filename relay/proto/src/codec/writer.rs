//! Encoding a STUN message into a buffer the caller owns (no heap allocation).

use super::integrity::{IntegrityKind, hmac_sha1_with_length, hmac_sha256_with_length};
use super::{
    Class, HEADER_LEN, IntegrityKey, MAGIC_COOKIE, Method, TransactionId, attr, encode_address_value,
    encode_xor_address_value, fingerprint_of,
};
use std::net::SocketAddr;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("the output buffer is too small for the message")]
    BufferTooSmall,
    #[error("an attribute value is longer than 65535 bytes")]
    ValueTooLong,
    /// The decoder would refuse the message (`DecodeError::TooManyAttributes`): the writer
    /// never produces what the decoder does not read.
    #[error("more than {} attributes besides integrity and fingerprint", super::MAX_ATTRIBUTES)]
    TooManyAttributes,
}

/// Builds one message in `buf`. Attributes are appended in call order; the integrity and
/// fingerprint calls close the message and must come last, in that order.
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    txid: TransactionId,
    /// Attributes written so far that count against `MAX_ATTRIBUTES` (not the closing ones).
    ordinary: usize,
}

impl<'b> MessageWriter<'b> {
    pub fn new(buf: &'b mut [u8], method: Method, class: Class, txid: TransactionId) -> Result<Self, EncodeError> {
        if buf.len() < HEADER_LEN {
            return Err(EncodeError::BufferTooSmall);
        }
        buf[0..2].copy_from_slice(&method.message_type(class).to_be_bytes());
        buf[2..4].copy_from_slice(&0u16.to_be_bytes());
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&txid);
        Ok(MessageWriter { buf, len: HEADER_LEN, txid, ordinary: 0 })
    }

    pub fn transaction_id(&self) -> TransactionId {
        self.txid
    }

    /// Reserves an attribute header and a padded value of `len` bytes, returns the value slice.
    fn reserve(&mut self, attr_type: u16, len: usize) -> Result<&mut [u8], EncodeError> {
        if len > u16::MAX as usize {
            return Err(EncodeError::ValueTooLong);
        }
        let counted = !super::is_closing(attr_type);
        if counted && self.ordinary == super::MAX_ATTRIBUTES {
            return Err(EncodeError::TooManyAttributes);
        }
        let padded = (len + 3) & !3;
        let start = self.len;
        let end = start + 4 + padded;
        if end > self.buf.len() || end - HEADER_LEN > u16::MAX as usize {
            return Err(EncodeError::BufferTooSmall);
        }
        self.buf[start..start + 2].copy_from_slice(&attr_type.to_be_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        // Padding bytes are zero (RFC 8489 §14 says they SHOULD be; receivers ignore them).
        self.buf[start + 4 + len..end].fill(0);
        self.len = end;
        self.ordinary += usize::from(counted);
        self.set_length_field();
        Ok(&mut self.buf[start + 4..start + 4 + len])
    }

    fn set_length_field(&mut self) {
        let body = (self.len - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&body.to_be_bytes());
    }

    pub fn bytes(&mut self, attr_type: u16, value: &[u8]) -> Result<&mut Self, EncodeError> {
        self.reserve(attr_type, value.len())?.copy_from_slice(value);
        Ok(self)
    }

    pub fn u32(&mut self, attr_type: u16, value: u32) -> Result<&mut Self, EncodeError> {
        self.bytes(attr_type, &value.to_be_bytes())
    }

    pub fn xor_address(&mut self, attr_type: u16, addr: SocketAddr) -> Result<&mut Self, EncodeError> {
        let mut value = [0u8; 20];
        let n = encode_xor_address_value(addr, &self.txid, &mut value);
        self.bytes(attr_type, &value[..n])
    }

    /// A plain address attribute (ALTERNATE-SERVER).
    pub fn address(&mut self, attr_type: u16, addr: SocketAddr) -> Result<&mut Self, EncodeError> {
        let mut value = [0u8; 20];
        let n = encode_address_value(addr, &mut value);
        self.bytes(attr_type, &value[..n])
    }

    /// ERROR-CODE (RFC 8489 §14.8): class and number, then a short reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, EncodeError> {
        let value = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        value[0] = 0;
        value[1] = 0;
        value[2] = (code / 100) as u8;
        value[3] = (code % 100) as u8;
        value[4..].copy_from_slice(reason.as_bytes());
        Ok(self)
    }

    /// UNKNOWN-ATTRIBUTES: a list of 16-bit attribute types.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<&mut Self, EncodeError> {
        let value = self.reserve(attr::UNKNOWN_ATTRIBUTES, types.len() * 2)?;
        for (i, t) in types.iter().enumerate() {
            value[i * 2..i * 2 + 2].copy_from_slice(&t.to_be_bytes());
        }
        Ok(self)
    }

    /// Appends the integrity attribute of the given kind keyed with `key`.
    pub fn integrity(&mut self, kind: IntegrityKind, key: &IntegrityKey) -> Result<&mut Self, EncodeError> {
        match kind {
            IntegrityKind::Sha1 => {
                let start = self.len;
                self.reserve(attr::MESSAGE_INTEGRITY, 20)?;
                let adjusted = (self.len - HEADER_LEN) as u16;
                let mac = hmac_sha1_with_length(key.as_bytes(), &self.buf[..start], adjusted);
                self.buf[start + 4..start + 24].copy_from_slice(&mac);
            }
            IntegrityKind::Sha256 => {
                let start = self.len;
                self.reserve(attr::MESSAGE_INTEGRITY_SHA256, 32)?;
                let adjusted = (self.len - HEADER_LEN) as u16;
                let mac = hmac_sha256_with_length(key.as_bytes(), &self.buf[..start], adjusted);
                self.buf[start + 4..start + 36].copy_from_slice(&mac);
            }
        }
        Ok(self)
    }

    /// Appends FINGERPRINT and returns the finished message's length.
    pub fn finish_with_fingerprint(&mut self) -> Result<usize, EncodeError> {
        let start = self.len;
        self.reserve(attr::FINGERPRINT, 4)?;
        let crc = fingerprint_of(&self.buf[..start]);
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self.len)
    }

    /// The finished message's length (without FINGERPRINT).
    pub fn finish(&mut self) -> usize {
        self.len
    }
}
