//! Shared by the micro-benchmarks: a shard in memory with a binder that opens nothing, and a
//! client that performs the TURN exchanges on it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use teletip_turn_proto::codec::{self, Class, IntegrityKey, IntegrityKind, Message, MessageWriter, Method, attr};
use teletip_turn_proto::credentials::{PasswordAlgorithm, Secret, issue, long_term_key};
use teletip_turn_proto::limits::SharedQuotas;
use teletip_turn_proto::server::{
    Action, BindError, BindRequest, BoundRelay, Controls, FiveTuple, Payload, RelayBinder, RelayId, ServerConfig,
    Shard, Transport,
};
use teletip_turn_proto::time::Millis;

pub const T0: Millis = Millis::from_secs(1_800_000_000);
pub const REALM: &str = "bench.test";
pub const SECRET: &[u8] = b"bench-secret-0123456789";
pub const SERVER: &str = "192.0.2.1:3478";

/// Relayed addresses 93.184.216.1:(10000 + n) (public, so that the peer policy allows
/// them), never a socket.
#[derive(Default)]
pub struct NullBinder {
    next: u32,
}

impl RelayBinder for NullBinder {
    fn bind(&mut self, _: &BindRequest) -> Result<BoundRelay, BindError> {
        self.next += 1;
        let addr = SocketAddr::new([93, 184, 216, 1].into(), 10_000 + (self.next % 50_000) as u16);
        Ok(BoundRelay { id: RelayId(self.next), addr, reservation_token: None })
    }

    fn release(&mut self, _: RelayId) {}
}

pub fn shard() -> Shard<NullBinder> {
    shard_with(controls())
}

/// The run-time controls with the bench's secret; shards given clones share them.
pub fn controls() -> Controls {
    Controls::new(vec![Secret::new("k", SECRET.to_vec())])
}

pub fn shard_with(controls: Controls) -> Shard<NullBinder> {
    let mut config = ServerConfig::new(REALM, [7; 32]);
    config.unauth_rate = 0;
    config.max_bps = 0;
    Shard::new(Arc::new(config), controls, Arc::new(SharedQuotas::new(0, 0, 0)), NullBinder::default())
}

pub fn tuple(i: u32) -> FiveTuple {
    let client = SocketAddr::new([198, 18, (i >> 8) as u8, i as u8].into(), 40_000 + (i % 1000) as u16);
    FiveTuple { client, server: SERVER.parse().unwrap(), transport: Transport::Udp }
}

pub struct BenchClient {
    pub tuple: FiveTuple,
    pub username: String,
    pub key: IntegrityKey,
    pub nonce: Vec<u8>,
    pub relayed: Option<SocketAddr>,
    txid: u32,
}

impl BenchClient {
    pub fn new(i: u32) -> Self {
        let (username, password) = issue(SECRET, &format!("user-{i}"), T0.unix_secs() + 3600);
        let key = long_term_key(PasswordAlgorithm::Md5, &username, REALM, &password);
        BenchClient { tuple: tuple(i), username, key, nonce: Vec::new(), relayed: None, txid: i << 8 }
    }

    /// An authenticated request (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY, FINGERPRINT).
    pub fn request(&mut self, method: Method, body: impl FnOnce(&mut MessageWriter<'_>)) -> Vec<u8> {
        self.txid += 1;
        let mut txid = [9u8; 12];
        txid[8..].copy_from_slice(&self.txid.to_be_bytes());
        let mut buf = vec![0u8; 1024];
        let mut w = MessageWriter::new(&mut buf, method, Class::Request, txid).unwrap();
        body(&mut w);
        w.bytes(attr::USERNAME, self.username.as_bytes()).unwrap();
        w.bytes(attr::REALM, REALM.as_bytes()).unwrap();
        w.bytes(attr::NONCE, &self.nonce).unwrap();
        w.integrity(IntegrityKind::Sha1, &self.key).unwrap();
        let n = w.finish_with_fingerprint().unwrap();
        buf.truncate(n);
        buf
    }

    /// Allocate (through the 401 challenge) and return the relayed address.
    pub fn allocate(&mut self, s: &mut Shard<NullBinder>) -> SocketAddr {
        let mut out = vec![0u8; 2048];
        let mut unauth = vec![0u8; 64];
        let mut w = MessageWriter::new(&mut unauth, Method::ALLOCATE, Class::Request, [1; 12]).unwrap();
        w.bytes(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        let n = w.finish();
        let Action::ToClient { payload: Payload::Output(len), .. } =
            s.handle_client(T0, self.tuple, &unauth[..n], &mut out)
        else {
            panic!("no challenge")
        };
        self.nonce = Message::decode(&out[..len]).unwrap().get(attr::NONCE).unwrap().to_vec();
        let req = self.request(Method::ALLOCATE, |w| {
            w.bytes(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
        });
        let Action::ToClient { payload: Payload::Output(len), .. } = s.handle_client(T0, self.tuple, &req, &mut out)
        else {
            panic!("no answer")
        };
        let m = Message::decode(&out[..len]).unwrap();
        assert_eq!(m.class(), Class::Success);
        let relayed =
            codec::decode_xor_address(m.get(attr::XOR_RELAYED_ADDRESS).unwrap(), &m.transaction_id()).unwrap();
        self.relayed = Some(relayed);
        relayed
    }

    pub fn channel_bind(&mut self, s: &mut Shard<NullBinder>, channel: u16, peer: SocketAddr) {
        let req = self.request(Method::CHANNEL_BIND, |w| {
            w.bytes(attr::CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0]).unwrap();
            w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        });
        let mut out = vec![0u8; 2048];
        let Action::ToClient { payload: Payload::Output(len), .. } = s.handle_client(T0, self.tuple, &req, &mut out)
        else {
            panic!("no answer")
        };
        assert_eq!(Message::decode(&out[..len]).unwrap().class(), Class::Success);
    }
}

/// A ChannelData frame with `len` bytes of payload.
pub fn channel_data(channel: u16, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; 4 + len];
    codec::ChannelData::write_header(channel, len, &mut v);
    v
}
