//! ChannelData messages (RFC 8656 §12.4): a 4-byte header (channel number, length) in front of
//! application data, the compact framing that carries media once a channel is bound.

/// Bytes of the ChannelData header.
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// The channel numbers of RFC 8656 §12 (0x5000-0x7FFF are reserved there).
pub const RFC8656_MAX_CHANNEL: u16 = 0x4FFF;
/// The wider range of RFC 5766, which libwebrtc (Chrome) and coturn's client still draw
/// channel numbers from.
pub const RFC5766_MAX_CHANNEL: u16 = 0x7FFF;

/// Whether `n` can frame ChannelData at all (0x4000-0x7FFF: leading bits 01). Which of these a
/// client may bind is the server's policy.
pub const fn is_channel_number(n: u16) -> bool {
    n >= 0x4000 && n <= RFC5766_MAX_CHANNEL
}

/// First two bits 01: ChannelData rather than STUN (RFC 8656 §12, RFC 7983 demultiplexing).
pub fn is_channel_data(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & 0xC0 == 0x40)
}

/// A ChannelData message borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parses a ChannelData datagram. Over UDP the padding to four bytes is optional, so the
    /// datagram may be longer than 4 + length by up to 3 bytes; anything else is malformed.
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < CHANNEL_DATA_HEADER_LEN {
            return None;
        }
        let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
        if !is_channel_number(channel) {
            return None;
        }
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        let end = CHANNEL_DATA_HEADER_LEN + len;
        if end > bytes.len() || bytes.len() - end > 3 {
            return None;
        }
        Some(ChannelData { channel, data: &bytes[CHANNEL_DATA_HEADER_LEN..end] })
    }

    /// Writes a ChannelData header for `len` bytes of data into `header`.
    pub fn write_header(channel: u16, len: usize, header: &mut [u8]) {
        header[..2].copy_from_slice(&channel.to_be_bytes());
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_with_and_without_padding() {
        let unpadded = [0x40, 0x00, 0x00, 0x03, 1, 2, 3];
        assert_eq!(ChannelData::decode(&unpadded).unwrap().data, &[1, 2, 3]);
        let padded = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        assert_eq!(ChannelData::decode(&padded).unwrap().data, &[1, 2, 3]);
    }

    #[test]
    fn rejects_out_of_range_channel_and_bad_length() {
        assert!(ChannelData::decode(&[0x80, 0x00, 0x00, 0x00]).is_none());
        assert!(ChannelData::decode(&[0x7F, 0xFF, 0x00, 0x00]).is_some());
        assert!(ChannelData::decode(&[0x40, 0x00, 0x00, 0x08, 1, 2]).is_none());
        assert!(ChannelData::decode(&[0x40, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0]).is_none());
    }
}
