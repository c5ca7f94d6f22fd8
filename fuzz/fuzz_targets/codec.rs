//! Arbitrary bytes as the relay receives them: decoded as STUN and as ChannelData, then every
//! accessor of what decoded is called and the invariants the server relies on are asserted, so a
//! wrong answer crashes the fuzzer as surely as a panic does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use teletip_turn_proto::codec::{
    self, CHANNEL_DATA_HEADER_LEN, ChannelData, HEADER_LEN, MAX_ATTRIBUTES, MAX_CLOSING_ATTRIBUTES, Message,
    MessageWriter, attr,
};
use teletip_turn_proto::credentials::{PasswordAlgorithm, long_term_key};
use teletip_turn_proto::{IntegrityKey, IntegrityKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        check_message(&msg, data);
        re_encode(&msg);
    }
    check_channel_data(data);
});

/// The keys of the RFC 5769 vectors in seeds/, so that mutations of the seeds reach the
/// successful-verification path too, plus a SHA-256 long-term key.
fn keys() -> [IntegrityKey; 3] {
    [
        IntegrityKey::ShortTerm(b"VOkJxbRl1RmTxUk/WvJxBt".to_vec()),
        long_term_key(PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrIX"),
        long_term_key(PasswordAlgorithm::Sha256, "1700000000:fuzz", "teletip.example", "password"),
    ]
}

fn check_message(msg: &Message<'_>, data: &[u8]) {
    assert!(codec::is_stun(data));
    assert!(!codec::is_channel_data(data));
    assert_eq!(msg.bytes(), data);
    assert_eq!(msg.transaction_id()[..], data[8..HEADER_LEN]);
    let _ = (msg.method(), msg.class());

    let attrs = msg.attributes();
    assert!(attrs.iter().filter(|a| !codec::is_closing(a.attr_type)).count() <= MAX_ATTRIBUTES);
    assert!(attrs.len() <= MAX_ATTRIBUTES + MAX_CLOSING_ATTRIBUTES);
    for (i, a) in attrs.iter().enumerate() {
        let (start, end) = (a.offset as usize, a.offset as usize + a.len as usize);
        assert!(start >= HEADER_LEN + 4 && end <= data.len(), "attribute {i} out of bounds");
        if a.attr_type == attr::FINGERPRINT {
            assert_eq!(i, attrs.len() - 1, "FINGERPRINT is last");
        }
        let value = &data[start..end];
        let first = msg.get(a.attr_type).expect("get finds a recorded attribute");
        assert_eq!(msg.get_all(a.attr_type).next(), Some(first));
        assert!(msg.get_all(a.attr_type).any(|v| v == value));
        assert!(msg.has(a.attr_type));
        assert_eq!(msg.text(a.attr_type), std::str::from_utf8(first).ok());
        assert_eq!(msg.u32_value(a.attr_type).is_some(), first.len() == 4);
        // Every value, not only the XOR address types: a type confusion upstream would hand any
        // attribute to the address decoder.
        if let Some(addr) = codec::decode_xor_address(value, &msg.transaction_id()) {
            let mut out = [0u8; 20];
            let n = codec::encode_xor_address_value(addr, &msg.transaction_id(), &mut out);
            // The first byte is reserved: receivers ignore it (RFC 8489 §14.1) and we write 0.
            assert_eq!(out[0], 0);
            assert_eq!(&out[1..n], &value[1..], "XOR address re-encodes to its input, reserved byte aside");
        }
    }
    assert_eq!(msg.has_fingerprint(), attrs.last().is_some_and(|a| a.attr_type == attr::FINGERPRINT));
    for t in msg.unknown_required() {
        assert!(attr::is_comprehension_required(t) && !attr::is_understood(t));
    }
    for key in keys() {
        if msg.verify_integrity(&key).is_some() {
            assert!(msg.has_integrity());
        }
    }
}

/// Writes the decoded attributes back with MessageWriter, signs with a fixed key, and checks
/// that the result decodes to the same attributes and verifies.
fn re_encode(msg: &Message<'_>) {
    // Near the 64 KiB limit the added integrity attributes may not fit; libFuzzer's default
    // -max_len (4096) never gets there, and an error there is correct, not a finding.
    if msg.bytes().len() > 60_000 {
        return;
    }
    let plain = |t: u16| !codec::is_closing(t);
    let mut buf = vec![0u8; msg.bytes().len() + 64];
    let Ok(mut w) = MessageWriter::new(&mut buf, msg.method(), msg.class(), msg.transaction_id()) else {
        return;
    };
    for a in msg.attributes().iter().filter(|a| plain(a.attr_type)) {
        let value = &msg.bytes()[a.offset as usize..a.offset as usize + a.len as usize];
        // At most MAX_ATTRIBUTES of them decoded, so the writer takes them all.
        w.bytes(a.attr_type, value).expect("a value that decoded fits again");
    }
    let [key, ..] = keys();
    w.integrity(IntegrityKind::Sha256, &key).expect("room for MESSAGE-INTEGRITY-SHA256");
    let n = w.finish_with_fingerprint().expect("room for FINGERPRINT");

    let again = Message::decode(&buf[..n]).expect("our own encoding decodes");
    assert_eq!(
        (again.method(), again.class(), again.transaction_id()),
        (msg.method(), msg.class(), msg.transaction_id())
    );
    assert_eq!(again.verify_integrity(&key), Some(IntegrityKind::Sha256));
    assert!(again.has_fingerprint());
    let before = msg.attributes().iter().filter(|a| plain(a.attr_type));
    let after = again.attributes().iter().filter(|a| plain(a.attr_type));
    assert_eq!(before.clone().count(), after.clone().count());
    for (x, y) in before.zip(after) {
        assert_eq!(x.attr_type, y.attr_type);
        assert_eq!(
            &msg.bytes()[x.offset as usize..x.offset as usize + x.len as usize],
            &again.bytes()[y.offset as usize..y.offset as usize + y.len as usize]
        );
    }
}

fn check_channel_data(data: &[u8]) {
    let Some(cd) = ChannelData::decode(data) else {
        return;
    };
    assert!(codec::is_channel_data(data));
    assert!(!codec::is_stun(data));
    assert!(codec::is_channel_number(cd.channel));
    let declared = u16::from_be_bytes([data[2], data[3]]) as usize;
    assert_eq!(cd.data, &data[CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + declared]);
    assert!(data.len() - CHANNEL_DATA_HEADER_LEN - declared <= 3, "at most three bytes of padding");
    let mut header = [0u8; CHANNEL_DATA_HEADER_LEN];
    ChannelData::write_header(cd.channel, cd.data.len(), &mut header);
    assert_eq!(header, data[..CHANNEL_DATA_HEADER_LEN]);
}
