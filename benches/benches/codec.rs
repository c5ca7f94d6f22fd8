//! The codec on the per-packet path: ChannelData parsing, and the authenticated requests a
//! client repeats for the whole call (Refresh) plus the Send indication.

mod common;

use common::*;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use teletip_turn_proto::codec::{self, Class, Message, MessageWriter, Method, attr};

fn codec_benches(c: &mut Criterion) {
    let frame = channel_data(0x4000, 1200);
    c.bench_function("parse ChannelData 1200 B", |b| {
        b.iter(|| codec::ChannelData::decode(black_box(&frame)).map(|f| f.data.len()))
    });

    let mut client = BenchClient::new(1);
    client.nonce = b"obMatJos2AAABBBCCCDDD".to_vec();
    let refresh = client.request(Method::REFRESH, |w| {
        w.u32(attr::LIFETIME, 600).unwrap();
    });
    c.bench_function("parse + verify Refresh (MESSAGE-INTEGRITY, FINGERPRINT)", |b| {
        b.iter(|| {
            let m = Message::decode(black_box(&refresh)).unwrap();
            m.verify_integrity(&client.key).unwrap()
        })
    });

    let mut buf = vec![0u8; 2048];
    let peer = "93.184.216.1:10001".parse().unwrap();
    let n = {
        let mut w = MessageWriter::new(&mut buf, Method::SEND, Class::Indication, [3; 12]).unwrap();
        w.xor_address(attr::XOR_PEER_ADDRESS, peer).unwrap();
        w.bytes(attr::DATA, &[0u8; 160]).unwrap();
        w.finish()
    };
    let send = buf[..n].to_vec();
    c.bench_function("parse Send indication 160 B + XOR-PEER-ADDRESS", |b| {
        b.iter(|| {
            let m = Message::decode(black_box(&send)).unwrap();
            let peer = codec::decode_xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap(), &m.transaction_id());
            (peer, m.get(attr::DATA).map(<[u8]>::len))
        })
    });
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
