//! A TURN-over-TCP/TLS byte stream as the relay reads it: the bytes arrive in chunks of sizes
//! the input chooses and a `Framer` cuts them into messages. Checked: the frames move forward,
//! lie within the buffer and are of the length `frame_len` gives, each one starting as STUN or
//! ChannelData; an oversized message is skipped whole; nothing is buffered past `max_frame`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teletip_turn_proto::codec::{self, Framer, Next, frame_len};

fuzz_target!(|input: &[u8]| {
    let Some((&[limit, chunk], data)) = input.split_first_chunk::<2>() else { return };
    // 20..=65555 (a STUN header up to the 64 KiB STUN limit), skewed to small limits so that
    // the oversized path is reached often.
    let max_frame = 20 + usize::from(limit) * usize::from(limit);
    let chunk = usize::from(chunk).max(1);
    let mut framer = Framer::new(max_frame);
    // The relay's read loop: append what arrived, take every whole frame, drop consumed bytes.
    let mut buf: Vec<u8> = Vec::new();
    let mut consumed_total = 0usize;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut pos = 0usize;
        loop {
            let before = pos;
            match framer.next(&buf, &mut pos) {
                Ok(Next::Frame(range)) => {
                    // The rest of an oversized message may be skipped first, in the same call.
                    assert!(range.start >= before, "frames move forward");
                    assert!(range.end <= buf.len() && range.end == pos);
                    let frame = &buf[range.clone()];
                    assert!(frame.len() <= max_frame);
                    assert_eq!(frame_len(frame), Ok(Some(frame.len())), "a frame is its own declared length");
                    match frame[0] >> 6 {
                        0 => assert!(frame.len() >= codec::HEADER_LEN, "a STUN frame holds its header"),
                        1 => assert_eq!(frame.len() % 4, 0, "ChannelData on a stream is padded to four"),
                        _ => panic!("a frame starting with {:#04x}", frame[0]),
                    }
                }
                Ok(Next::Oversized) => {
                    assert!(pos >= before);
                }
                Ok(Next::NeedMore) => break,
                // A lost stream: the relay closes the connection.
                Err(_) => return,
            }
            assert!(pos <= buf.len());
        }
        buf.drain(..pos);
        consumed_total += pos;
        // What is kept is one partial message the framer may still accept, or a header too
        // short to tell its length: a peer cannot make the relay hold more by declaring it.
        assert!(buf.len() < max_frame.max(8), "buffered {} with a limit of {max_frame}", buf.len());
    }
    assert!(consumed_total <= data.len());
});
