//! The codec checked from outside: against the RFC 5769 test vectors, against the `stun` crate
//! (webrtc-rs) as an independent implementation in both directions, and by properties over
//! arbitrary input. Only the crate's public API is used, so these tests hold the wire format
//! still while the internals change.

use proptest::prelude::*;
use std::net::SocketAddr;
use std::ops::Range;
use stun::agent::TransactionId as StunTransactionId;
use stun::attributes::{
    ATTR_LIFETIME, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_REQUESTED_TRANSPORT, ATTR_SOFTWARE,
    ATTR_USERNAME, AttrType,
};
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE, METHOD_BINDING, MessageType,
    Setter,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use teletip_turn_proto::codec::{
    self, Attribute, ChannelData, Class, DecodeError, EncodeError, HEADER_LEN, MAGIC_COOKIE, MAX_ATTRIBUTES, Message,
    MessageWriter, Method, TransactionId, attr,
};
use teletip_turn_proto::credentials::{PasswordAlgorithm, long_term_key};
use teletip_turn_proto::{IntegrityKey, IntegrityKind};

// ---------------------------------------------------------------------------------------------
// RFC 5769 test vectors
// ---------------------------------------------------------------------------------------------

const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e7400240004\
6e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
80280004e57a3bcf";
const RFC5769_RESPONSE_V4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f72200020000800\
01a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
const RFC5769_RESPONSE_V6: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f72200020001400\
02a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c";
const RFC5769_LONG_TERM_REQUEST: &str = "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e3\
82afe382b900000015001c662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f7267000008\
0014f67024656dd64a3e02b8e0712e85c9a28ca89666";

/// The transaction id shared by the vectors of RFC 5769 §2.1-2.3.
const RFC5769_TXID: TransactionId = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];
const RFC5769_SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const RFC5769_SOFTWARE_RESPONSE: &str = "test vector";
const RFC5769_MAPPED_V4: &str = "192.0.2.1:32853";
const RFC5769_MAPPED_V6: &str = "[2001:db8:1234:5678:11:2233:4455:6677]:32853";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector is valid hex")
}

fn short_term_key() -> IntegrityKey {
    IntegrityKey::ShortTerm(RFC5769_SHORT_TERM_PASSWORD.to_vec())
}

/// RFC 5769 §2.4's credentials. Its password is "The\u{AD}M\u{AA}tr\u{2168}", given here after
/// SASLprep because `long_term_key` does not prepare strings itself.
fn rfc5769_long_term_key() -> IntegrityKey {
    long_term_key(PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrIX")
}

fn types(msg: &Message<'_>) -> Vec<u16> {
    msg.attributes().iter().map(|a| a.attr_type).collect()
}

fn attribute(msg: &Message<'_>, attr_type: u16) -> Attribute {
    *msg.attributes().iter().find(|a| a.attr_type == attr_type).expect("attribute present")
}

fn value_range(a: &Attribute) -> Range<usize> {
    a.offset as usize..a.offset as usize + a.len as usize
}

fn padding_range(a: &Attribute) -> Range<usize> {
    let end = a.offset as usize + a.len as usize;
    end..a.offset as usize + ((a.len as usize + 3) & !3)
}

/// Asserts that `ours` and `theirs` have the same length and differ only inside `allowed`.
fn assert_equal_outside(ours: &[u8], theirs: &[u8], allowed: &[Range<usize>]) {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if a != b {
            assert!(allowed.iter().any(|r| r.contains(&i)), "byte {i} differs: ours {a:#04x}, theirs {b:#04x}");
        }
    }
}

#[test]
fn rfc5769_vectors_have_the_documented_lengths() {
    // A transcription slip in a hex constant would otherwise show up as a confusing decode error.
    assert_eq!(unhex(RFC5769_REQUEST).len(), 108);
    assert_eq!(unhex(RFC5769_RESPONSE_V4).len(), 80);
    assert_eq!(unhex(RFC5769_RESPONSE_V6).len(), 92);
    assert_eq!(unhex(RFC5769_LONG_TERM_REQUEST).len(), 116);
}

#[test]
fn rfc5769_sample_request_decodes_with_space_padding_and_verifies() {
    let bytes = unhex(RFC5769_REQUEST);
    let msg = Message::decode(&bytes).expect("RFC 5769 §2.1 decodes (FINGERPRINT checked)");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.transaction_id(), RFC5769_TXID);
    assert!(msg.has_fingerprint());
    assert!(msg.has_integrity());
    assert_eq!(
        types(&msg),
        [
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(msg.text(attr::SOFTWARE), Some("STUN test client"));
    assert_eq!(msg.u32_value(attr::PRIORITY), Some(0x6e00_01ff));
    assert_eq!(msg.get(attr::ICE_CONTROLLED), Some(&unhex("932ff9b151263b36")[..]));
    assert_eq!(msg.text(attr::USERNAME), Some("evtj:h6vY"));
    // The vector pads USERNAME with spaces: receivers must ignore padding whatever it holds.
    assert_eq!(&bytes[padding_range(&attribute(&msg, attr::USERNAME))], b"   ");
    assert_eq!(msg.unknown_required().count(), 0);
    assert_eq!(msg.verify_integrity(&short_term_key()), Some(IntegrityKind::Sha1));
    assert_eq!(msg.verify_integrity(&IntegrityKey::ShortTerm(b"VOkJxbRl1RmTxUk/WvJxBu".to_vec())), None);
}

#[test]
fn rfc5769_sample_request_padding_is_authenticated() {
    // Padding is ignored when reading values but is part of what FINGERPRINT and
    // MESSAGE-INTEGRITY cover, so changing it must be detected.
    let mut bytes = unhex(RFC5769_REQUEST);
    let pad = {
        let msg = Message::decode(&bytes).unwrap();
        padding_range(&attribute(&msg, attr::USERNAME)).start
    };
    bytes[pad] = 0;
    assert_eq!(Message::decode(&bytes).unwrap_err(), DecodeError::BadFingerprint);
}

#[test]
fn rfc5769_sample_request_re_encodes_except_padding() {
    let rfc = unhex(RFC5769_REQUEST);
    let theirs = Message::decode(&rfc).unwrap();
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, RFC5769_TXID).unwrap();
    w.bytes(attr::SOFTWARE, b"STUN test client")
        .unwrap()
        .u32(attr::PRIORITY, 0x6e00_01ff)
        .unwrap()
        .bytes(attr::ICE_CONTROLLED, &unhex("932ff9b151263b36"))
        .unwrap()
        .bytes(attr::USERNAME, b"evtj:h6vY")
        .unwrap()
        .integrity(IntegrityKind::Sha1, &short_term_key())
        .unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    let ours = &buf[..n];

    // We pad with zeros, the RFC with spaces; the MAC and CRC cover the padding and so differ
    // too. Everything else must be the RFC's bytes.
    let username = attribute(&theirs, attr::USERNAME);
    let allowed = [
        padding_range(&username),
        value_range(&attribute(&theirs, attr::MESSAGE_INTEGRITY)),
        value_range(&attribute(&theirs, attr::FINGERPRINT)),
    ];
    assert_equal_outside(ours, &rfc, &allowed);
    assert!(ours[padding_range(&username)].iter().all(|&b| b == 0));
    let msg = Message::decode(ours).unwrap();
    assert!(msg.has_fingerprint());
    assert_eq!(msg.verify_integrity(&short_term_key()), Some(IntegrityKind::Sha1));
    assert_eq!(types(&msg), types(&theirs));

    // The `stun` crate, given the same attributes, must produce exactly our bytes, MAC and CRC
    // included: that pins the MAC and CRC computation where the RFC vector cannot.
    let mut m = stun_message(BINDING_REQUEST_TYPE, RFC5769_TXID);
    m.add(ATTR_SOFTWARE, b"STUN test client");
    m.add(AttrType(attr::PRIORITY), &0x6e00_01ffu32.to_be_bytes());
    m.add(AttrType(attr::ICE_CONTROLLED), &unhex("932ff9b151263b36"));
    m.add(ATTR_USERNAME, b"evtj:h6vY");
    MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into()).add_to(&mut m).unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    assert_eq!(hex::encode(ours), hex::encode(&m.raw));
}

fn check_rfc5769_response(vector: &str, mapped: &str) {
    let mapped: SocketAddr = mapped.parse().unwrap();
    let rfc = unhex(vector);
    let theirs = Message::decode(&rfc).expect("RFC 5769 response decodes (FINGERPRINT checked)");
    assert_eq!(theirs.method(), Method::BINDING);
    assert_eq!(theirs.class(), Class::Success);
    assert_eq!(theirs.transaction_id(), RFC5769_TXID);
    assert!(theirs.has_fingerprint());
    assert_eq!(types(&theirs), [attr::SOFTWARE, attr::XOR_MAPPED_ADDRESS, attr::MESSAGE_INTEGRITY, attr::FINGERPRINT]);
    assert_eq!(theirs.text(attr::SOFTWARE), Some(RFC5769_SOFTWARE_RESPONSE));
    let xma = theirs.get(attr::XOR_MAPPED_ADDRESS).unwrap();
    assert_eq!(codec::decode_xor_address(xma, &theirs.transaction_id()), Some(mapped));
    assert_eq!(theirs.verify_integrity(&short_term_key()), Some(IntegrityKind::Sha1));
    let software = attribute(&theirs, attr::SOFTWARE);
    assert_eq!(&rfc[padding_range(&software)], b" ");

    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Success, RFC5769_TXID).unwrap();
    w.bytes(attr::SOFTWARE, RFC5769_SOFTWARE_RESPONSE.as_bytes())
        .unwrap()
        .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
        .unwrap()
        .integrity(IntegrityKind::Sha1, &short_term_key())
        .unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    let ours = &buf[..n];

    // Byte for byte except the SOFTWARE padding (RFC: 0x20, ours: 0x00) and so the MAC and CRC
    // over it. The XOR-MAPPED-ADDRESS encoding in particular must match exactly.
    let allowed = [
        padding_range(&software),
        value_range(&attribute(&theirs, attr::MESSAGE_INTEGRITY)),
        value_range(&attribute(&theirs, attr::FINGERPRINT)),
    ];
    assert_equal_outside(ours, &rfc, &allowed);
    assert_eq!(ours[padding_range(&software)], [0]);
    let msg = Message::decode(ours).unwrap();
    assert!(msg.has_fingerprint());
    assert_eq!(msg.verify_integrity(&short_term_key()), Some(IntegrityKind::Sha1));
    assert_eq!(msg.text(attr::SOFTWARE), Some(RFC5769_SOFTWARE_RESPONSE));
    assert_eq!(codec::decode_xor_address(msg.get(attr::XOR_MAPPED_ADDRESS).unwrap(), &RFC5769_TXID), Some(mapped));

    let mut m = stun_message(BINDING_SUCCESS_TYPE, RFC5769_TXID);
    TextAttribute::new(ATTR_SOFTWARE, RFC5769_SOFTWARE_RESPONSE.into()).add_to(&mut m).unwrap();
    XorMappedAddress { ip: mapped.ip(), port: mapped.port() }.add_to(&mut m).unwrap();
    MessageIntegrity::new_short_term_integrity("VOkJxbRl1RmTxUk/WvJxBt".into()).add_to(&mut m).unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();
    assert_eq!(hex::encode(ours), hex::encode(&m.raw));
}

#[test]
fn rfc5769_ipv4_response_decodes_and_re_encodes() {
    check_rfc5769_response(RFC5769_RESPONSE_V4, RFC5769_MAPPED_V4);
}

#[test]
fn rfc5769_ipv6_response_decodes_and_re_encodes() {
    check_rfc5769_response(RFC5769_RESPONSE_V6, RFC5769_MAPPED_V6);
}

#[test]
fn rfc5769_long_term_request_verifies_and_re_encodes_exactly() {
    let rfc = unhex(RFC5769_LONG_TERM_REQUEST);
    let msg = Message::decode(&rfc).expect("RFC 5769 §2.4 decodes");
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.class(), Class::Request);
    assert!(!msg.has_fingerprint());
    assert_eq!(types(&msg), [attr::USERNAME, attr::NONCE, attr::REALM, attr::MESSAGE_INTEGRITY]);
    assert_eq!(msg.text(attr::USERNAME), Some("マトリックス"));
    assert_eq!(msg.text(attr::NONCE), Some("f//499k954d6OL34oL9FSTvy64sA"));
    assert_eq!(msg.text(attr::REALM), Some("example.org"));
    assert_eq!(msg.verify_integrity(&rfc5769_long_term_key()), Some(IntegrityKind::Sha1));
    let wrong = long_term_key(PasswordAlgorithm::Md5, "マトリックス", "example.org", "TheMatrix");
    assert_eq!(msg.verify_integrity(&wrong), None);

    // This vector pads with zeros, so our encoding must reproduce it exactly, MAC included.
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, msg.transaction_id()).unwrap();
    w.bytes(attr::USERNAME, "マトリックス".as_bytes())
        .unwrap()
        .bytes(attr::NONCE, b"f//499k954d6OL34oL9FSTvy64sA")
        .unwrap()
        .bytes(attr::REALM, b"example.org")
        .unwrap()
        .integrity(IntegrityKind::Sha1, &rfc5769_long_term_key())
        .unwrap();
    let n = w.finish();
    assert_eq!(hex::encode(&buf[..n]), hex::encode(&rfc));

    // The `stun` crate agrees on the key and the MAC.
    let mut m = stun::message::Message::new();
    m.unmarshal_binary(&rfc).unwrap();
    let stun_key =
        MessageIntegrity::new_long_term_integrity("マトリックス".into(), "example.org".into(), "TheMatrIX".into());
    assert_eq!(stun_key.0, rfc5769_long_term_key().as_bytes());
    stun_key.check(&mut m).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Differential tests with the `stun` crate
// ---------------------------------------------------------------------------------------------

const USERNAME: &str = "1700000000:alice";
const REALM: &str = "teletip.example";
const PASSWORD: &str = "kKq0kq9oP6Xgt7y0XG5tbtgH0oA=";
const NONCE: &str = "nonce-3f2a9c0d1e5b7a64";
const TXID: TransactionId = [0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0xa5];

const BINDING_REQUEST_TYPE: MessageType = MessageType { method: METHOD_BINDING, class: CLASS_REQUEST };
const BINDING_SUCCESS_TYPE: MessageType = MessageType { method: METHOD_BINDING, class: CLASS_SUCCESS_RESPONSE };
const ALLOCATE_REQUEST_TYPE: MessageType = MessageType { method: METHOD_ALLOCATE, class: CLASS_REQUEST };
const ALLOCATE_ERROR_TYPE: MessageType = MessageType { method: METHOD_ALLOCATE, class: CLASS_ERROR_RESPONSE };

fn our_key() -> IntegrityKey {
    long_term_key(PasswordAlgorithm::Md5, USERNAME, REALM, PASSWORD)
}

fn stun_integrity() -> MessageIntegrity {
    MessageIntegrity::new_long_term_integrity(USERNAME.into(), REALM.into(), PASSWORD.into())
}

fn stun_wrong_integrity() -> MessageIntegrity {
    MessageIntegrity::new_long_term_integrity(USERNAME.into(), REALM.into(), "not-the-password".into())
}

/// An empty `stun` message with its header written.
fn stun_message(typ: MessageType, txid: TransactionId) -> stun::message::Message {
    let mut m = stun::message::Message::new();
    m.typ = typ;
    m.transaction_id = StunTransactionId(txid);
    m.write_header();
    m
}

/// Our bytes as the `stun` crate reads them, with the header fields it must agree on checked.
fn stun_decode(bytes: &[u8], typ: MessageType) -> stun::message::Message {
    let mut m = stun::message::Message::new();
    m.unmarshal_binary(bytes).expect("stun crate decodes our message");
    assert_eq!(m.typ, typ);
    assert_eq!(m.transaction_id.0, TXID);
    assert_eq!(m.length as usize, bytes.len() - HEADER_LEN);
    m
}

fn stun_text(m: &stun::message::Message, t: AttrType) -> String {
    TextAttribute::get_from_as(m, t).unwrap().text
}

fn encode_binding_success(addr: SocketAddr, software: &str) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Success, TXID).unwrap();
    w.xor_address(attr::XOR_MAPPED_ADDRESS, addr)
        .unwrap()
        .bytes(attr::SOFTWARE, software.as_bytes())
        .unwrap()
        .integrity(IntegrityKind::Sha1, &our_key())
        .unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    buf[..n].to_vec()
}

#[test]
fn stun_crate_reads_our_binding_success_v4_and_v6() {
    for addr in ["203.0.113.7:49152", "[2001:db8::1:0:0:42]:3478", RFC5769_MAPPED_V6, "0.0.0.0:0"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let bytes = encode_binding_success(addr, "teletip");
        let mut m = stun_decode(&bytes, BINDING_SUCCESS_TYPE);
        let mut xma = XorMappedAddress::default();
        xma.get_from(&m).unwrap();
        assert_eq!(SocketAddr::new(xma.ip, xma.port), addr);
        assert_eq!(stun_text(&m, ATTR_SOFTWARE), "teletip");
        FINGERPRINT.check(&m).expect("stun crate accepts our FINGERPRINT");
        stun_integrity().check(&mut m).expect("stun crate accepts our MESSAGE-INTEGRITY");
        assert!(stun_wrong_integrity().check(&mut m).is_err());
    }
}

#[test]
fn stun_crate_reads_our_allocate_request() {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf, Method::ALLOCATE, Class::Request, TXID).unwrap();
    w.bytes(attr::REQUESTED_TRANSPORT, &[attr::TRANSPORT_UDP, 0, 0, 0])
        .unwrap()
        .u32(attr::LIFETIME, 600)
        .unwrap()
        .bytes(attr::USERNAME, USERNAME.as_bytes())
        .unwrap()
        .bytes(attr::REALM, REALM.as_bytes())
        .unwrap()
        .bytes(attr::NONCE, NONCE.as_bytes())
        .unwrap()
        .integrity(IntegrityKind::Sha1, &our_key())
        .unwrap();
    let n = w.finish_with_fingerprint().unwrap();

    let mut m = stun_decode(&buf[..n], ALLOCATE_REQUEST_TYPE);
    assert_eq!(m.get(ATTR_REQUESTED_TRANSPORT).unwrap(), [17, 0, 0, 0]);
    assert_eq!(m.get(ATTR_LIFETIME).unwrap(), 600u32.to_be_bytes());
    assert_eq!(stun_text(&m, ATTR_USERNAME), USERNAME);
    assert_eq!(stun_text(&m, ATTR_REALM), REALM);
    assert_eq!(stun_text(&m, ATTR_NONCE), NONCE);
    assert_eq!(stun_integrity().0, our_key().as_bytes(), "both derive the same MD5 long-term key");
    FINGERPRINT.check(&m).unwrap();
    stun_integrity().check(&mut m).unwrap();
    assert!(stun_wrong_integrity().check(&mut m).is_err());
}

fn encode_allocate_error(code: u16, reason: &str, with_integrity: bool) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf, Method::ALLOCATE, Class::Error, TXID).unwrap();
    w.error_code(code, reason)
        .unwrap()
        .bytes(attr::REALM, REALM.as_bytes())
        .unwrap()
        .bytes(attr::NONCE, NONCE.as_bytes())
        .unwrap();
    if with_integrity {
        w.integrity(IntegrityKind::Sha1, &our_key()).unwrap();
    }
    let n = w.finish_with_fingerprint().unwrap();
    buf[..n].to_vec()
}

#[test]
fn stun_crate_reads_our_401_challenge() {
    // A challenge answers a request that proved no key, so it carries no MESSAGE-INTEGRITY.
    let bytes = encode_allocate_error(401, "Unauthorized", false);
    let m = stun_decode(&bytes, ALLOCATE_ERROR_TYPE);
    let mut ec = ErrorCodeAttribute::default();
    ec.get_from(&m).unwrap();
    assert_eq!(ec.code.0, 401);
    assert_eq!(ec.reason, b"Unauthorized");
    assert_eq!(stun_text(&m, ATTR_REALM), REALM);
    assert_eq!(stun_text(&m, ATTR_NONCE), NONCE);
    assert!(!m.contains(ATTR_MESSAGE_INTEGRITY));
    FINGERPRINT.check(&m).unwrap();
}

#[test]
fn stun_crate_reads_our_authenticated_error_response() {
    // Errors after authentication (437, 441, 486...) are signed with the request's key.
    let bytes = encode_allocate_error(437, "Allocation Mismatch", true);
    let mut m = stun_decode(&bytes, ALLOCATE_ERROR_TYPE);
    let mut ec = ErrorCodeAttribute::default();
    ec.get_from(&m).unwrap();
    assert_eq!(ec.code.0, 437);
    assert_eq!(ec.reason, b"Allocation Mismatch");
    FINGERPRINT.check(&m).unwrap();
    stun_integrity().check(&mut m).unwrap();
    assert!(stun_wrong_integrity().check(&mut m).is_err());
}

/// Asserts our decoder's view of a message the `stun` crate built with its long-term key.
fn check_stun_built(raw: &[u8]) -> Message<'_> {
    let msg = Message::decode(raw).expect("we decode the stun crate's message");
    assert_eq!(msg.transaction_id(), TXID);
    assert!(msg.has_fingerprint());
    assert_eq!(msg.verify_integrity(&our_key()), Some(IntegrityKind::Sha1));
    let wrong = long_term_key(PasswordAlgorithm::Md5, USERNAME, REALM, "not-the-password");
    assert_eq!(msg.verify_integrity(&wrong), None);
    // The same key under the other hash is a different key altogether.
    let sha256 = long_term_key(PasswordAlgorithm::Sha256, USERNAME, REALM, PASSWORD);
    assert_eq!(msg.verify_integrity(&sha256), None);
    msg
}

#[test]
fn we_read_stun_crate_binding_success_v4_and_v6() {
    for addr in ["203.0.113.7:49152", "[2001:db8::1:0:0:42]:3478", RFC5769_MAPPED_V4, "[::ffff:192.0.2.9]:1"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut m = stun_message(BINDING_SUCCESS_TYPE, TXID);
        XorMappedAddress { ip: addr.ip(), port: addr.port() }.add_to(&mut m).unwrap();
        TextAttribute::new(ATTR_SOFTWARE, "webrtc-rs".into()).add_to(&mut m).unwrap();
        stun_integrity().add_to(&mut m).unwrap();
        FINGERPRINT.add_to(&mut m).unwrap();

        let msg = check_stun_built(&m.raw);
        assert_eq!(msg.method(), Method::BINDING);
        assert_eq!(msg.class(), Class::Success);
        let xma = msg.get(attr::XOR_MAPPED_ADDRESS).unwrap();
        assert_eq!(codec::decode_xor_address(xma, &TXID), Some(addr));
        assert_eq!(msg.text(attr::SOFTWARE), Some("webrtc-rs"));
        // Same attributes through our writer give the same bytes: encoding is canonical.
        let ours = encode_binding_success(addr, "webrtc-rs");
        assert_eq!(hex::encode(&ours), hex::encode(&m.raw));
    }
}

#[test]
fn we_read_stun_crate_allocate_request() {
    let mut m = stun_message(ALLOCATE_REQUEST_TYPE, TXID);
    m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    m.add(ATTR_LIFETIME, &3600u32.to_be_bytes());
    TextAttribute::new(ATTR_USERNAME, USERNAME.into()).add_to(&mut m).unwrap();
    TextAttribute::new(ATTR_REALM, REALM.into()).add_to(&mut m).unwrap();
    TextAttribute::new(ATTR_NONCE, NONCE.into()).add_to(&mut m).unwrap();
    stun_integrity().add_to(&mut m).unwrap();
    FINGERPRINT.add_to(&mut m).unwrap();

    let msg = check_stun_built(&m.raw);
    assert_eq!(msg.method(), Method::ALLOCATE);
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(
        types(&msg),
        [
            attr::REQUESTED_TRANSPORT,
            attr::LIFETIME,
            attr::USERNAME,
            attr::REALM,
            attr::NONCE,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(msg.get(attr::REQUESTED_TRANSPORT), Some(&[17, 0, 0, 0][..]));
    assert_eq!(msg.u32_value(attr::LIFETIME), Some(3600));
    assert_eq!(msg.text(attr::USERNAME), Some(USERNAME));
    assert_eq!(msg.text(attr::REALM), Some(REALM));
    assert_eq!(msg.text(attr::NONCE), Some(NONCE));
    assert_eq!(msg.unknown_required().count(), 0);
}

#[test]
fn we_read_stun_crate_error_responses() {
    for (code, reason, signed) in [(401u16, "Unauthorized", false), (437, "Allocation Mismatch", true)] {
        let mut m = stun_message(ALLOCATE_ERROR_TYPE, TXID);
        ErrorCodeAttribute { code: ErrorCode(code), reason: reason.as_bytes().to_vec() }.add_to(&mut m).unwrap();
        TextAttribute::new(ATTR_REALM, REALM.into()).add_to(&mut m).unwrap();
        TextAttribute::new(ATTR_NONCE, NONCE.into()).add_to(&mut m).unwrap();
        if signed {
            stun_integrity().add_to(&mut m).unwrap();
        }
        FINGERPRINT.add_to(&mut m).unwrap();

        let msg = if signed {
            check_stun_built(&m.raw)
        } else {
            let msg = Message::decode(&m.raw).unwrap();
            assert!(msg.has_fingerprint());
            assert!(!msg.has_integrity());
            assert_eq!(msg.verify_integrity(&our_key()), None);
            msg
        };
        assert_eq!(msg.class(), Class::Error);
        let ec = msg.get(attr::ERROR_CODE).unwrap();
        assert_eq!(u16::from(ec[2] & 0x07) * 100 + u16::from(ec[3]), code);
        assert_eq!(&ec[4..], reason.as_bytes());
        assert_eq!(hex::encode(encode_allocate_error(code, reason, signed)), hex::encode(&m.raw));
    }
}

#[test]
fn stun_crate_and_we_agree_on_tampering() {
    let bytes = encode_binding_success("198.51.100.1:5000".parse().unwrap(), "teletip");
    for i in HEADER_LEN..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let ours = Message::decode(&t);
        let mut m = stun::message::Message::new();
        if m.unmarshal_binary(&t).is_ok() && m.contains(stun::attributes::ATTR_FINGERPRINT) {
            // Whenever the stun crate still finds a FINGERPRINT, both must reject the CRC.
            assert!(FINGERPRINT.check(&m).is_err(), "byte {i}");
            assert!(ours.as_ref().map_or(true, |msg| !msg.has_fingerprint()), "byte {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Calls every accessor and checks the invariants that hold for any message that decoded.
fn exercise(msg: &Message<'_>, bytes: &[u8]) {
    assert!(codec::is_stun(bytes));
    assert_eq!(msg.bytes(), bytes);
    assert_eq!(msg.transaction_id()[..], bytes[8..20]);
    let attrs = msg.attributes();
    assert!(attrs.iter().filter(|a| !codec::is_closing(a.attr_type)).count() <= MAX_ATTRIBUTES);
    assert!(attrs.len() <= MAX_ATTRIBUTES + codec::MAX_CLOSING_ATTRIBUTES);
    for (i, a) in attrs.iter().enumerate() {
        assert!(a.offset as usize >= HEADER_LEN + 4 && a.offset as usize + a.len as usize <= bytes.len());
        assert_eq!(u16::from_be_bytes([bytes[a.offset as usize - 4], bytes[a.offset as usize - 3]]), a.attr_type);
        if a.attr_type == attr::FINGERPRINT {
            assert_eq!(i, attrs.len() - 1, "FINGERPRINT is last");
        }
        let value = &bytes[value_range(a)];
        assert_eq!(msg.get(a.attr_type), msg.get_all(a.attr_type).next());
        assert!(msg.get_all(a.attr_type).any(|v| v == value));
        assert!(msg.has(a.attr_type));
        assert_eq!(msg.text(a.attr_type).is_some(), std::str::from_utf8(msg.get(a.attr_type).unwrap()).is_ok());
        assert_eq!(msg.u32_value(a.attr_type).is_some(), msg.get(a.attr_type).unwrap().len() == 4);
        let _ = codec::decode_xor_address(value, &msg.transaction_id());
    }
    assert_eq!(msg.has_fingerprint(), attrs.last().is_some_and(|a| a.attr_type == attr::FINGERPRINT));
    assert_eq!(
        msg.has_integrity(),
        attrs.iter().any(|a| matches!(a.attr_type, attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256))
    );
    for t in msg.unknown_required() {
        assert!(t < 0x8000 && !attr::is_understood(t));
    }
    for key in [IntegrityKey::ShortTerm(Vec::new()), IntegrityKey::Md5([7; 16]), IntegrityKey::Sha256([9; 32])] {
        let kind = msg.verify_integrity(&key);
        assert!(kind.is_none() || msg.has_integrity());
    }
}

fn exercise_channel_data(bytes: &[u8]) {
    if let Some(cd) = ChannelData::decode(bytes) {
        assert!(codec::is_channel_data(bytes));
        assert!(codec::is_channel_number(cd.channel));
        let declared = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        assert_eq!(cd.data.len(), declared);
        assert_eq!(cd.data, &bytes[codec::CHANNEL_DATA_HEADER_LEN..codec::CHANNEL_DATA_HEADER_LEN + declared]);
        assert!(bytes.len() - codec::CHANNEL_DATA_HEADER_LEN - declared <= 3);
    }
}

/// A message as the tests describe it before encoding.
#[derive(Debug, Clone)]
struct Spec {
    method: u16,
    class: Class,
    txid: TransactionId,
    attrs: Vec<(u16, Vec<u8>)>,
    integrity: Option<(IntegrityKind, Vec<u8>)>,
    fingerprint: bool,
}

impl Spec {
    fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = MessageWriter::new(&mut buf, Method(self.method), self.class, self.txid).unwrap();
        for (t, v) in &self.attrs {
            w.bytes(*t, v).unwrap();
        }
        if let Some((kind, key)) = &self.integrity {
            w.integrity(*kind, &IntegrityKey::ShortTerm(key.clone())).unwrap();
        }
        let n = if self.fingerprint { w.finish_with_fingerprint().unwrap() } else { w.finish() };
        buf.truncate(n);
        buf
    }
}

fn any_class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Request), Just(Class::Indication), Just(Class::Success), Just(Class::Error)]
}

/// Attribute types the writer appends through its own calls are left out: they end a message.
fn plain_attr_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        any::<u16>(),
        prop::sample::select(vec![attr::USERNAME, attr::SOFTWARE, attr::XOR_PEER_ADDRESS, attr::LIFETIME, attr::DATA]),
    ]
    .prop_filter("integrity and fingerprint close a message", |t| {
        !matches!(*t, attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT)
    })
}

fn any_spec() -> impl Strategy<Value = Spec> {
    let attrs =
        prop::collection::vec((plain_attr_type(), prop::collection::vec(any::<u8>(), 0..48)), 0..=MAX_ATTRIBUTES);
    let integrity = prop::option::of((
        prop_oneof![Just(IntegrityKind::Sha1), Just(IntegrityKind::Sha256)],
        prop::collection::vec(any::<u8>(), 0..80),
    ));
    (0u16..0x1000, any_class(), any::<TransactionId>(), attrs, integrity, any::<bool>()).prop_map(
        |(method, class, txid, attrs, integrity, fingerprint)| Spec {
            method,
            class,
            txid,
            attrs,
            integrity,
            fingerprint,
        },
    )
}

/// A key HMAC does not treat as equal to `key`: appending zeros would not do, because HMAC pads
/// short keys with zeros.
fn other_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match k.first_mut() {
        Some(b) => *b ^= 0xff,
        None => k.push(1),
    }
    k
}

/// Datagrams that pass the header checks, made of well-formed TLVs whose types favour the
/// attributes with special rules, sometimes closed by a correct FINGERPRINT: random bytes alone
/// almost never get past the magic cookie.
fn stun_shaped() -> impl Strategy<Value = Vec<u8>> {
    let attr_type = prop_oneof![
        any::<u16>(),
        prop::sample::select(vec![
            attr::MESSAGE_INTEGRITY,
            attr::MESSAGE_INTEGRITY_SHA256,
            attr::FINGERPRINT,
            attr::XOR_MAPPED_ADDRESS,
            attr::XOR_PEER_ADDRESS,
            attr::USERNAME,
            attr::LIFETIME,
        ]),
    ];
    let tlvs = prop::collection::vec((attr_type, prop::collection::vec(any::<u8>(), 0..40)), 0..40);
    (any::<u16>(), any::<TransactionId>(), tlvs, any::<bool>()).prop_map(|(msg_type, txid, tlvs, fingerprint)| {
        let mut b = Vec::new();
        b.extend_from_slice(&(msg_type & 0x3fff).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        b.extend_from_slice(&txid);
        for (t, v) in tlvs {
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&(v.len() as u16).to_be_bytes());
            b.extend_from_slice(&v);
            b.resize((b.len() + 3) & !3, 0);
        }
        let set_len = |b: &mut Vec<u8>, extra: usize| {
            let len = (b.len() - HEADER_LEN + extra) as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
        };
        if fingerprint {
            set_len(&mut b, 8);
            let crc = codec::fingerprint_of(&b);
            b.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
            b.extend_from_slice(&4u16.to_be_bytes());
            b.extend_from_slice(&crc.to_be_bytes());
        } else {
            set_len(&mut b, 0);
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(msg) = Message::decode(&bytes) {
            exercise(&msg, &bytes);
        }
        exercise_channel_data(&bytes);
    }

    #[test]
    fn stun_shaped_bytes_never_panic(bytes in stun_shaped()) {
        if let Ok(msg) = Message::decode(&bytes) {
            exercise(&msg, &bytes);
        }
        exercise_channel_data(&bytes);
    }

    #[test]
    fn written_messages_round_trip(spec in any_spec()) {
        let bytes = spec.encode();
        let msg = Message::decode(&bytes).expect("our own encoding decodes");
        exercise(&msg, &bytes);
        prop_assert_eq!(msg.method(), Method(spec.method));
        prop_assert_eq!(msg.class(), spec.class);
        prop_assert_eq!(msg.transaction_id(), spec.txid);
        let mut expected_types: Vec<u16> = spec.attrs.iter().map(|(t, _)| *t).collect();
        match spec.integrity {
            Some((IntegrityKind::Sha1, _)) => expected_types.push(attr::MESSAGE_INTEGRITY),
            Some((IntegrityKind::Sha256, _)) => expected_types.push(attr::MESSAGE_INTEGRITY_SHA256),
            None => {}
        }
        if spec.fingerprint {
            expected_types.push(attr::FINGERPRINT);
        }
        prop_assert_eq!(types(&msg), expected_types);
        for (a, (_, value)) in msg.attributes().iter().zip(&spec.attrs) {
            prop_assert_eq!(&bytes[value_range(a)], &value[..]);
            prop_assert!(bytes[padding_range(a)].iter().all(|&b| b == 0));
        }
        for (t, _) in &spec.attrs {
            let expected: Vec<&[u8]> = spec.attrs.iter().filter(|(u, _)| u == t).map(|(_, v)| &v[..]).collect();
            prop_assert_eq!(msg.get_all(*t).collect::<Vec<_>>(), expected);
        }
        prop_assert_eq!(msg.has_fingerprint(), spec.fingerprint);
        match &spec.integrity {
            Some((kind, key)) => {
                prop_assert_eq!(msg.verify_integrity(&IntegrityKey::ShortTerm(key.clone())), Some(*kind));
                prop_assert_eq!(msg.verify_integrity(&IntegrityKey::ShortTerm(other_key(key))), None);
            }
            None => prop_assert_eq!(msg.verify_integrity(&IntegrityKey::ShortTerm(Vec::new())), None),
        }
    }

    #[test]
    fn any_single_byte_change_defeats_the_fingerprint(
        spec in any_spec(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let spec = Spec { fingerprint: true, ..spec };
        let bytes = spec.encode();
        let original = Message::decode(&bytes).unwrap();
        let i = at.index(bytes.len());
        let mut tampered = bytes.clone();
        tampered[i] ^= mask;
        let result = Message::decode(&tampered);
        let err = result.as_ref().err().copied();

        // CRC-32 detects every single-byte error, so no change ever leaves a valid FINGERPRINT.
        // A decode that succeeds is one where the change turned FINGERPRINT into an ordinary
        // attribute (it is optional), or re-framed the attributes so that none is FINGERPRINT.
        prop_assert!(result.as_ref().map_or(true, |m| !m.has_fingerprint()), "byte {} still fingerprinted", i);

        let attrs = original.attributes();
        let in_value = attrs.iter().any(|a| (a.offset as usize..padding_range(a).end).contains(&i));
        let in_plain_type = attrs
            .iter()
            .any(|a| a.attr_type != attr::FINGERPRINT && (a.offset as usize - 4..a.offset as usize - 2).contains(&i));
        match i {
            0 if tampered[0] & 0xc0 != 0 => prop_assert_eq!(err, Some(DecodeError::NotStun)),
            2 | 3 => prop_assert!(matches!(err, Some(DecodeError::UnalignedLength | DecodeError::LengthMismatch))),
            4..8 => prop_assert_eq!(err, Some(DecodeError::NoMagicCookie)),
            // The framing is untouched, so only the CRC can notice.
            0 | 1 | 8..20 => prop_assert_eq!(err, Some(DecodeError::BadFingerprint), "byte {}", i),
            _ if in_value => prop_assert_eq!(err, Some(DecodeError::BadFingerprint), "byte {}", i),
            // A new type may itself be FINGERPRINT, checked (and failing) before the real one.
            _ if in_plain_type => prop_assert!(
                matches!(err, Some(DecodeError::BadFingerprint | DecodeError::AttributeAfterFingerprint)),
                "byte {}: {:?}", i, err
            ),
            _ => {}
        }
    }

    #[test]
    fn channel_data_round_trips(
        channel in 0x4000u16..=codec::RFC5766_MAX_CHANNEL,
        data in prop::collection::vec(any::<u8>(), 0..600),
        padding in 0usize..=4,
    ) {
        let mut bytes = vec![0u8; codec::CHANNEL_DATA_HEADER_LEN];
        ChannelData::write_header(channel, data.len(), &mut bytes);
        bytes.extend_from_slice(&data);
        bytes.resize(bytes.len() + padding, 0);
        let decoded = ChannelData::decode(&bytes);
        if padding <= 3 {
            prop_assert_eq!(decoded, Some(ChannelData { channel, data: &data }));
        } else {
            prop_assert_eq!(decoded, None);
        }
        prop_assert!(!codec::is_stun(&bytes));
    }

    #[test]
    fn channel_data_needs_leading_bits_01(
        channel in any::<u16>().prop_filter("outside 0x4000-0x7FFF", |c| !(0x4000..=0x7fff).contains(c)),
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![0u8; codec::CHANNEL_DATA_HEADER_LEN];
        ChannelData::write_header(channel, data.len(), &mut bytes);
        bytes.extend_from_slice(&data);
        prop_assert_eq!(ChannelData::decode(&bytes), None);
        prop_assert!(!codec::is_channel_data(&bytes));
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the codec fuzz target (fuzz/fuzz_targets/codec.rs, issue 18 item 6)
// ---------------------------------------------------------------------------------------------

/// A request of `count` zero-length SOFTWARE attributes, as the fuzzer's input had (any
/// non-closing type does).
fn request_with_attributes(count: usize) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0..2].copy_from_slice(&Method::BINDING.message_type(Class::Request).to_be_bytes());
    b[2..4].copy_from_slice(&((count * 4) as u16).to_be_bytes());
    b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b[8..20].copy_from_slice(&TXID);
    for _ in 0..count {
        b.extend_from_slice(&attr::SOFTWARE.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
    }
    b
}

/// Re-encodes the attributes of `msg` (closing ones left out) and closes with `closing`.
fn re_encode_signed(msg: &Message<'_>, closing: &[IntegrityKind], fingerprint: bool) -> Result<Vec<u8>, EncodeError> {
    let mut buf = vec![0u8; msg.bytes().len() + 128];
    let mut w = MessageWriter::new(&mut buf, msg.method(), msg.class(), msg.transaction_id())?;
    for a in msg.attributes().iter().filter(|a| !codec::is_closing(a.attr_type)) {
        w.bytes(a.attr_type, &msg.bytes()[value_range(a)])?;
    }
    for kind in closing {
        w.integrity(*kind, &our_key())?;
    }
    let n = if fingerprint { w.finish_with_fingerprint()? } else { w.finish() };
    buf.truncate(n);
    Ok(buf)
}

/// The fuzzer's second finding: a message of 32 attributes decoded, but written back with
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (34 attributes) it no longer decoded
/// (`TooManyAttributes`): the encoder produced what the decoder refused. The limit now counts
/// the attributes besides the closing ones, so all three closing attributes fit.
#[test]
fn a_message_of_the_most_attributes_still_decodes_once_signed_and_fingerprinted() {
    let input = request_with_attributes(MAX_ATTRIBUTES);
    let msg = Message::decode(&input).expect("32 attributes decode");
    for (closing, fingerprint) in [
        (&[IntegrityKind::Sha256][..], true),
        (&[IntegrityKind::Sha1][..], true),
        (&[IntegrityKind::Sha1, IntegrityKind::Sha256][..], true),
        (&[IntegrityKind::Sha1, IntegrityKind::Sha256][..], false),
    ] {
        let signed = re_encode_signed(&msg, closing, fingerprint).expect("the writer takes them");
        let again = Message::decode(&signed).unwrap_or_else(|e| panic!("{closing:?} {fingerprint}: {e}"));
        assert_eq!(again.attributes().len(), MAX_ATTRIBUTES + closing.len() + usize::from(fingerprint));
        assert_eq!(again.verify_integrity(&our_key()), Some(*closing.last().unwrap()));
        assert_eq!(again.has_fingerprint(), fingerprint);
        exercise(&again, &signed);
    }
    assert_eq!(
        Message::decode(&request_with_attributes(MAX_ATTRIBUTES + 1)).unwrap_err(),
        DecodeError::TooManyAttributes
    );
}

/// The input `cargo +nightly fuzz run codec` found at the commit before the fix
/// (fuzz/artifacts/codec/crash-e7b8c8bf0f26d9724e4d020bde162bcb9b1d4b7b): a Binding request of
/// 32 attributes that, written back with MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, did not
/// decode (`TooManyAttributes`).
const FUZZ_CRASH_TOO_MANY_ATTRIBUTES: &str = "000100e02112a44278ad3433c6ad72007478616d706c004e000700520000000400000000000000000000000000000000\
000000000000000000160000000000000000000000080000000000000000000000000000000000000000000000000002\
000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\
000000000000000024000000000000000000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000014f66924656dd64a3d02b8e0712e85c9a2\
8ca89676";

#[test]
fn the_fuzzers_too_many_attributes_input_decodes_once_signed() {
    let input = unhex(FUZZ_CRASH_TOO_MANY_ATTRIBUTES);
    let msg = Message::decode(&input).expect("the fuzzer's input decodes");
    exercise(&msg, &input);
    let signed = re_encode_signed(&msg, &[IntegrityKind::Sha256], true).expect("the writer takes it");
    let again = Message::decode(&signed).expect("our own encoding decodes");
    assert_eq!(again.verify_integrity(&our_key()), Some(IntegrityKind::Sha256));
    assert!(again.has_fingerprint());
}

/// The other half of the same invariant: the writer refuses the attribute the decoder would
/// not read, with a typed error, and still closes the message.
#[test]
fn the_writer_refuses_an_attribute_the_decoder_would_not_read() {
    let mut buf = [0u8; 1024];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, TXID).unwrap();
    for _ in 0..MAX_ATTRIBUTES {
        w.bytes(attr::SOFTWARE, b"").unwrap();
    }
    assert_eq!(w.bytes(attr::SOFTWARE, b"").err(), Some(EncodeError::TooManyAttributes));
    assert_eq!(w.error_code(400, "").err(), Some(EncodeError::TooManyAttributes));
    w.integrity(IntegrityKind::Sha1, &our_key()).unwrap();
    w.integrity(IntegrityKind::Sha256, &our_key()).unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    let msg = Message::decode(&buf[..n]).expect("what the writer wrote decodes");
    assert_eq!(msg.attributes().len(), MAX_ATTRIBUTES + 3);
}

/// The fuzzer's first finding was in its own check: an XOR address whose reserved first byte
/// is not zero decodes (RFC 8489 §14.1, §14.2: receivers ignore it), and re-encodes to the same
/// value except that byte, which we write as zero.
#[test]
fn an_xor_address_with_a_nonzero_reserved_byte_decodes_and_re_encodes_but_for_it() {
    for value in [
        vec![0xFF, codec::FAMILY_IPV4, 0x11, 0x22, 1, 2, 3, 4],
        [&[0x01, codec::FAMILY_IPV6, 0x11, 0x22][..], &[7u8; 16][..]].concat(),
    ] {
        let addr = codec::decode_xor_address(&value, &TXID).expect("reserved byte ignored");
        let mut out = [0u8; 20];
        let n = codec::encode_xor_address_value(addr, &TXID, &mut out);
        assert_eq!(n, value.len());
        assert_eq!(out[0], 0);
        assert_eq!(&out[1..n], &value[1..]);
    }
}

/// Unsigned answers carry an ERROR-CODE without reason phrase (docs/relay-security.md §5): the
/// `stun` crate, which the `turn` crate reads answers with, takes it.
#[test]
fn stun_crate_reads_an_error_code_without_reason_phrase() {
    let bytes = encode_allocate_error(401, "", false);
    let m = stun_decode(&bytes, ALLOCATE_ERROR_TYPE);
    let mut ec = ErrorCodeAttribute::default();
    ec.get_from(&m).unwrap();
    assert_eq!(ec.code.0, 401);
    assert!(ec.reason.is_empty());
    assert_eq!(stun_text(&m, ATTR_NONCE), NONCE);
}

// ---------------------------------------------------------------------------------------------
// Known defect, kept as a failing test for whoever fixes src
// ---------------------------------------------------------------------------------------------

/// A message of the largest legal size (20 + 65532 bytes) whose last attribute is a 16-byte
/// MESSAGE-INTEGRITY-SHA256 starting at offset 65536.
fn maximal_message_with_sha256_at_the_end() -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN + 65_532];
    b[0..2].copy_from_slice(&Method::BINDING.message_type(Class::Request).to_be_bytes());
    b[2..4].copy_from_slice(&65_532u16.to_be_bytes());
    b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b[8..20].copy_from_slice(&TXID);
    // One DATA attribute filling everything up to 65532, then the integrity attribute.
    let filler = 65_532 - HEADER_LEN - 4;
    b[20..22].copy_from_slice(&attr::DATA.to_be_bytes());
    b[22..24].copy_from_slice(&(filler as u16).to_be_bytes());
    b[65_532..65_534].copy_from_slice(&attr::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
    b[65_534..65_536].copy_from_slice(&16u16.to_be_bytes());
    b[65_536..].fill(0xab);
    b
}

/// `Attribute::offset` is a u16 but a value can start at up to byte 65552 of a legal message
/// (a TCP-framed one; UDP cannot carry it). The offset wraps to 0, so `get` returns header bytes
/// and `verify_integrity` computes `offset - 4` and panics (debug: subtraction overflow; release:
/// slice index out of range).
#[test]
fn values_past_byte_65535_are_read_from_the_right_place() {
    let bytes = maximal_message_with_sha256_at_the_end();
    let msg = Message::decode(&bytes).expect("length and layout are legal");
    let value = msg.get(attr::MESSAGE_INTEGRITY_SHA256).map(<[u8]>::to_vec);
    let verified = std::panic::catch_unwind(|| msg.verify_integrity(&IntegrityKey::Md5([0; 16])));
    assert!(verified.is_ok(), "verify_integrity panicked");
    assert_eq!(verified.unwrap(), None);
    assert_eq!(value.as_deref(), Some(&bytes[65_536..]), "value read from the wrapped offset");
}
