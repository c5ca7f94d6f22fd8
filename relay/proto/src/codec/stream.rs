//! Framing of STUN and ChannelData over a byte stream (TURN over TCP or TLS, RFC 8656 §3.1 and
//! §12.5). A stream carries no datagram boundaries, so each message's length is read from its
//! own header: a STUN message is its 20-byte header plus the header's length field, and a
//! ChannelData message is its 4-byte header plus its length field, padded to a multiple of four
//! (over a stream the padding is mandatory, so that the next header starts where expected).

use super::channel_data::CHANNEL_DATA_HEADER_LEN;
use super::{HEADER_LEN, MAGIC_COOKIE};

/// Why the bytes at the head of a stream cannot start a message: the stream has lost its
/// framing and cannot be resynchronised (nothing in STUN or ChannelData marks a boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream is not STUN or ChannelData (first byte {0:#04x})")]
pub struct FramingError(pub u8);

/// The length of the message at the head of `buf`, padding included: `Ok(None)` until enough
/// of its header has arrived to know it.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let declared = || (buf.len() >= 4).then(|| usize::from(u16::from_be_bytes([buf[2], buf[3]])));
    match first >> 6 {
        // STUN: the length field counts the attributes, always a multiple of four. Without the
        // magic cookie it is not STUN (a TLS ClientHello on the plain port starts with 0x16).
        0b00 if buf.len() < 8 => Ok(None),
        0b00 if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE => Err(FramingError(first)),
        0b00 => Ok(declared().map(|len| HEADER_LEN + len)),
        // ChannelData: the length field counts the data; the padding follows it.
        0b01 => Ok(declared().map(|len| CHANNEL_DATA_HEADER_LEN + len + stream_padding(len))),
        _ => Err(FramingError(first)),
    }
}

/// What [`Framer::next`] found at the read position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A whole message (padding included) at this range of the buffer.
    Frame(std::ops::Range<usize>),
    /// A message longer than the framer's limit began here: it is being skipped whole, so
    /// that the stream keeps its framing (drop it and count it, like an oversized datagram).
    Oversized,
    /// The rest has not arrived yet.
    NeedMore,
}

/// Cuts a stream's buffered bytes into messages, skipping any longer than `max_frame` without
/// holding them (a peer cannot make the relay buffer 64 KiB per connection by declaring it).
#[derive(Debug, Clone)]
pub struct Framer {
    max_frame: usize,
    /// Bytes of an oversized message still to come and be thrown away.
    skipping: usize,
}

impl Framer {
    pub fn new(max_frame: usize) -> Self {
        Framer { max_frame, skipping: 0 }
    }

    /// The next message of `buf` from `*pos`, advancing `*pos` past what it consumed.
    pub fn next(&mut self, buf: &[u8], pos: &mut usize) -> Result<Next, FramingError> {
        if self.skipping > 0 {
            let n = self.skipping.min(buf.len() - *pos);
            *pos += n;
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(Next::NeedMore);
            }
        }
        let rest = &buf[*pos..];
        match frame_len(rest)? {
            None => Ok(Next::NeedMore),
            Some(len) if len > self.max_frame => {
                self.skipping = len;
                Ok(Next::Oversized)
            }
            Some(len) if len > rest.len() => Ok(Next::NeedMore),
            Some(len) => {
                let start = *pos;
                *pos += len;
                Ok(Next::Frame(start..start + len))
            }
        }
    }
}

/// Bytes of zero padding a message of `len` bytes needs on a stream to end on a multiple of
/// four (only ChannelData can need any).
pub const fn stream_padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stun_frame_is_its_header_plus_its_length() {
        let mut header = [0u8; 20];
        header[0..2].copy_from_slice(&0x0003u16.to_be_bytes());
        header[2..4].copy_from_slice(&24u16.to_be_bytes());
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert_eq!(frame_len(&header), Ok(Some(44)));
        assert_eq!(frame_len(&header[..8]), Ok(Some(44)), "the length is known once the cookie is in");
        assert_eq!(frame_len(&header[..7]), Ok(None));
        assert_eq!(frame_len(&[]), Ok(None));
    }

    #[test]
    fn channel_data_is_padded_to_four_on_a_stream() {
        for (len, framed) in [(0u16, 4), (1, 8), (3, 8), (4, 8), (5, 12), (160, 164), (1201, 1208)] {
            let mut head = vec![0x40, 0x01];
            head.extend_from_slice(&len.to_be_bytes());
            assert_eq!(frame_len(&head), Ok(Some(framed)), "data of {len} bytes");
        }
        assert_eq!(frame_len(&[0x7f, 0xff]), Ok(None));
    }

    #[test]
    fn other_leading_bits_are_a_lost_stream() {
        for first in [0x80u8, 0xC0, 0xFF] {
            assert_eq!(frame_len(&[first, 0, 0, 0]), Err(FramingError(first)));
        }
        // A TLS ClientHello sent to the plain TCP port has the leading bits of STUN but no
        // magic cookie.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        assert_eq!(frame_len(&hello), Err(FramingError(0x16)));
    }

    fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
        let mut v = channel.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v.resize(v.len() + stream_padding(data.len()), 0);
        v
    }

    #[test]
    fn the_framer_cuts_pipelined_messages_and_waits_for_split_ones() {
        let mut stream = channel_data(0x4001, b"hello");
        stream.extend(channel_data(0x4002, b"four"));
        stream.extend(channel_data(0x4003, b"split across reads"));
        let mut f = Framer::new(1500);
        let mut pos = 0;
        let cut = stream.len() - 5;
        assert_eq!(f.next(&stream[..cut], &mut pos), Ok(Next::Frame(0..12)));
        assert_eq!(f.next(&stream[..cut], &mut pos), Ok(Next::Frame(12..20)));
        assert_eq!(f.next(&stream[..cut], &mut pos), Ok(Next::NeedMore));
        assert_eq!(pos, 20, "an incomplete message is not consumed");
        assert_eq!(f.next(&stream, &mut pos), Ok(Next::Frame(20..stream.len())));
        assert_eq!(f.next(&stream, &mut pos), Ok(Next::NeedMore));
    }

    #[test]
    fn an_oversized_message_is_skipped_across_reads_and_the_next_one_is_found() {
        let big = channel_data(0x4001, &[7u8; 2000]);
        let small = channel_data(0x4002, b"ok");
        let mut f = Framer::new(1500);
        let (mut pos, first) = (0, &big[..1000]);
        assert_eq!(f.next(first, &mut pos), Ok(Next::Oversized));
        assert_eq!(f.next(first, &mut pos), Ok(Next::NeedMore));
        assert_eq!(pos, 1000, "what arrived of it is dropped at once");
        // The next read: the rest of the big one, then a small one.
        let mut second = big[1000..].to_vec();
        second.extend(&small);
        let mut pos = 0;
        assert_eq!(f.next(&second, &mut pos), Ok(Next::Frame(1004..1004 + small.len())));
    }

    #[test]
    fn padding_rounds_up_to_four() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(stream_padding), [0, 3, 2, 1, 0, 3]);
    }
}
