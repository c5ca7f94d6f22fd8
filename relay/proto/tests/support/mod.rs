//! A harness for driving a `Shard` in memory: a fake binder and a TURN client that builds its
//! requests with the crate's own writer and reads the answers with its own decoder.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use teletip_turn_proto::codec::{self, Class, IntegrityKind, Message, MessageWriter, Method, attr};
use teletip_turn_proto::credentials::{PasswordAlgorithm, Secret, issue, long_term_key};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{
    Action, BindError, BindRequest, BoundRelay, Controls, FiveTuple, Payload, RelayBinder, RelayId, ServerConfig,
    Shard, Transport,
};
use teletip_turn_proto::time::Millis;

pub const T0: Millis = Millis::from_secs(1_800_000_000);
pub const REALM: &str = "teletip.test";
pub const SECRET: &[u8] = b"current-secret";
pub const OLD_SECRET: &[u8] = b"previous-secret";
pub const SERVER: &str = "192.0.2.1:3478";

/// Hands out relayed addresses on 203.0.113.1 (and 2001:db8::1 when `v6` is set) from port
/// 50000 up; IPv4 unless `no_v4` is set. Remembers what it released and holds reservations like
/// the real one does.
#[derive(Default)]
pub struct FakeBinder {
    pub next_port: u16,
    pub v6: bool,
    pub no_v4: bool,
    pub bound: HashMap<RelayId, SocketAddr>,
    pub released: Vec<RelayId>,
    pub reservations: HashMap<u64, (u16, Millis)>,
    pub exhausted: bool,
    next_id: u32,
}

impl RelayBinder for FakeBinder {
    fn bind(&mut self, r: &BindRequest) -> Result<BoundRelay, BindError> {
        if r.family == teletip_turn_proto::server::Family::V6 && !self.v6 {
            return Err(BindError::FamilyUnsupported);
        }
        if r.family == teletip_turn_proto::server::Family::V4 && self.no_v4 {
            return Err(BindError::FamilyUnsupported);
        }
        if self.exhausted {
            return Err(BindError::NoPorts);
        }
        let port = if let Some(token) = r.reservation {
            match self.reservations.remove(&token) {
                Some((port, expires)) if expires > r.now => port,
                _ => return Err(BindError::UnknownReservation),
            }
        } else {
            if self.next_port == 0 {
                self.next_port = 50000;
            }
            if r.even_port && self.next_port % 2 == 1 {
                self.next_port += 1;
            }
            let p = self.next_port;
            self.next_port += if r.reserve_next { 2 } else { 1 };
            p
        };
        let token = r.reserve_next.then(|| {
            let token = 0x1122_3344_5566_0000 + u64::from(port);
            self.reservations.insert(token, (port + 1, r.now.plus_secs(30)));
            token
        });
        self.next_id += 1;
        let id = RelayId(self.next_id);
        let ip = if r.family == teletip_turn_proto::server::Family::V6 { "2001:db8::1" } else { "203.0.113.1" };
        let addr = SocketAddr::new(ip.parse().unwrap(), port);
        self.bound.insert(id, addr);
        Ok(BoundRelay { id, addr, reservation_token: token })
    }

    fn release(&mut self, relay: RelayId) {
        self.bound.remove(&relay);
        self.released.push(relay);
    }
}

pub fn config() -> ServerConfig {
    let mut c = ServerConfig::new(REALM, [42; 32]);
    c.unauth_rate = 0;
    c
}

/// The secrets every test shard accepts: k2 (current), then k1.
pub fn controls() -> Controls {
    Controls::new(vec![Secret::new("k2", SECRET.to_vec()), Secret::new("k1", OLD_SECRET.to_vec())])
}

pub fn shard_with(config: ServerConfig, quotas: SharedQuotas) -> Shard<FakeBinder> {
    Shard::new(Arc::new(config), controls(), Arc::new(quotas), FakeBinder::default())
}

pub fn shard() -> Shard<FakeBinder> {
    shard_with(config(), SharedQuotas::new(0, 0, 0))
}

pub fn tuple(client: &str) -> FiveTuple {
    FiveTuple { client: client.parse().unwrap(), server: SERVER.parse().unwrap(), transport: Transport::Udp }
}

/// An owned copy of an answer, decoded on demand.
#[derive(Debug, Clone)]
pub struct Answer(pub Vec<u8>);

impl Answer {
    pub fn msg(&self) -> Message<'_> {
        Message::decode(&self.0).expect("the server sends valid STUN")
    }

    pub fn class(&self) -> Class {
        self.msg().class()
    }

    pub fn error_code(&self) -> Option<u16> {
        let v = self.msg().get(attr::ERROR_CODE)?.to_vec();
        Some(u16::from(v[2] & 0x7) * 100 + u16::from(v[3]))
    }

    pub fn xor_addr(&self, attr_type: u16) -> Option<SocketAddr> {
        let m = self.msg();
        codec::decode_xor_address(m.get(attr_type)?, &m.transaction_id())
    }

    pub fn u32(&self, attr_type: u16) -> Option<u32> {
        self.msg().u32_value(attr_type)
    }
}

/// A TURN client with REST credentials.
pub struct Client {
    pub tuple: FiveTuple,
    pub username: String,
    pub password: String,
    pub nonce: Option<Vec<u8>>,
    /// The realm it signs with (the server's must match).
    pub realm: String,
    pub algorithm: PasswordAlgorithm,
    pub sha256_integrity: bool,
    pub fingerprint: bool,
    txid_counter: u32,
}

impl Client {
    pub fn new(client: &str, id: &str) -> Self {
        Self::with_secret(client, id, SECRET, T0.unix_secs() + 3600)
    }

    pub fn with_secret(client: &str, id: &str, secret: &[u8], expiry: u64) -> Self {
        let (username, password) = issue(secret, id, expiry);
        Client {
            tuple: tuple(client),
            username,
            password,
            nonce: None,
            realm: REALM.into(),
            algorithm: PasswordAlgorithm::Md5,
            sha256_integrity: false,
            fingerprint: true,
            txid_counter: 0,
        }
    }

    pub fn next_txid(&mut self) -> codec::TransactionId {
        self.txid_counter += 1;
        let mut t = [0xA5u8; 12];
        t[8..].copy_from_slice(&self.txid_counter.to_be_bytes());
        t
    }

    pub fn key(&self) -> teletip_turn_proto::IntegrityKey {
        long_term_key(self.algorithm, &self.username, &self.realm, &self.password)
    }

    /// Builds a request; `attrs` adds the method's attributes. Credentials are added when the
    /// client has a nonce.
    pub fn build(
        &mut self,
        method: Method,
        class: Class,
        txid: codec::TransactionId,
        attrs: impl FnOnce(&mut MessageWriter<'_>),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let mut w = MessageWriter::new(&mut buf, method, class, txid).unwrap();
        attrs(&mut w);
        if let Some(nonce) = self.nonce.clone() {
            w.bytes(attr::USERNAME, self.username.as_bytes()).unwrap();
            w.bytes(attr::REALM, self.realm.as_bytes()).unwrap();
            w.bytes(attr::NONCE, &nonce).unwrap();
            if self.algorithm == PasswordAlgorithm::Sha256 {
                w.bytes(attr::PASSWORD_ALGORITHMS, &[0, 2, 0, 0, 0, 1, 0, 0]).unwrap();
                w.bytes(attr::PASSWORD_ALGORITHM, &[0, 2, 0, 0]).unwrap();
            }
            let kind = if self.sha256_integrity { IntegrityKind::Sha256 } else { IntegrityKind::Sha1 };
            w.integrity(kind, &self.key()).unwrap();
        }
        let n = if self.fingerprint { w.finish_with_fingerprint().unwrap() } else { w.finish() };
        buf.truncate(n);
        buf
    }

    pub fn request(&mut self, method: Method, attrs: impl FnOnce(&mut MessageWriter<'_>)) -> Vec<u8> {
        let txid = self.next_txid();
        self.build(method, Class::Request, txid, attrs)
    }
}

/// Sends `packet` from the client and returns the answer (if any).
pub fn send(shard: &mut Shard<FakeBinder>, now: Millis, client: &Client, packet: &[u8]) -> Option<Answer> {
    let mut out = [0u8; 2048];
    match shard.handle_client(now, client.tuple, packet, &mut out) {
        Action::None => None,
        Action::ToClient { tuple, payload: Payload::Output(n) } => {
            assert_eq!(tuple, client.tuple, "answers go back to the asking 5-tuple");
            Some(Answer(out[..n].to_vec()))
        }
        other => panic!("a request must be answered to the client, got {other:?}"),
    }
}

/// Sends a request, answering the 401/438 challenge as a real client does.
pub fn call(
    shard: &mut Shard<FakeBinder>,
    now: Millis,
    client: &mut Client,
    method: Method,
    attrs: impl Fn(&mut MessageWriter<'_>),
) -> Answer {
    for _ in 0..2 {
        let packet = client.request(method, &attrs);
        let answer = send(shard, now, client, &packet).expect("requests are answered");
        match answer.error_code() {
            Some(401) | Some(438) if client.nonce.is_none() || answer.error_code() == Some(438) => {
                client.nonce = Some(answer.msg().get(attr::NONCE).expect("challenge carries a nonce").to_vec());
            }
            _ => return answer,
        }
    }
    panic!("the server kept challenging valid credentials");
}

/// Learns a nonce the way a client does: an Allocate without credentials draws a 401.
pub fn learn_nonce(shard: &mut Shard<FakeBinder>, now: Millis, client: &mut Client) {
    let saved = client.nonce.take();
    let packet = client.request(Method::ALLOCATE, requested_udp);
    let answer = send(shard, now, client, &packet).expect("challenged");
    assert_eq!(answer.error_code(), Some(401));
    client.nonce = Some(answer.msg().get(attr::NONCE).unwrap().to_vec());
    drop(saved);
}

pub fn requested_udp(w: &mut MessageWriter<'_>) {
    w.bytes(attr::REQUESTED_TRANSPORT, &[codec::TRANSPORT_UDP, 0, 0, 0]).unwrap();
}

pub fn allocate(shard: &mut Shard<FakeBinder>, now: Millis, client: &mut Client) -> SocketAddr {
    let a = call(shard, now, client, Method::ALLOCATE, requested_udp);
    assert_eq!(a.class(), Class::Success, "allocate failed: {:?}", a.error_code());
    a.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap()
}

pub fn peer_attr(peer: SocketAddr) -> impl Fn(&mut MessageWriter<'_>) {
    move |w| {
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
    }
}

pub fn channel_attrs(number: u16, peer: SocketAddr) -> impl Fn(&mut MessageWriter<'_>) {
    move |w| {
        w.bytes(attr::CHANNEL_NUMBER, &[(number >> 8) as u8, number as u8, 0, 0]).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
    }
}
