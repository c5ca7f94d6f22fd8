//! The allocation lookup: a shard holding 10,000 allocations handling one ChannelData from a
//! client (to a peer elsewhere, and to another allocation of the same shard, which is
//! delivered directly) and one datagram from a peer, end to end through the state machine.

mod common;

use common::*;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use teletip_turn_proto::codec::CHANNEL_DATA_HEADER_LEN;
use teletip_turn_proto::server::{Action, RelayId};

const ALLOCATIONS: u32 = 10_000;

fn shard_benches(c: &mut Criterion) {
    let mut s = shard();
    let mut clients: Vec<BenchClient> = (0..ALLOCATIONS).map(BenchClient::new).collect();
    let relayed: Vec<_> = clients.iter_mut().map(|cl| cl.allocate(&mut s)).collect();
    // Pairs bind to each other's relayed address, as two call legs on one relay do.
    for i in 0..ALLOCATIONS as usize {
        let peer = relayed[i ^ 1];
        clients[i].channel_bind(&mut s, 0x4000, peer);
    }
    assert_eq!(s.allocation_count(), ALLOCATIONS as usize);
    let elsewhere = "8.8.8.8:3478".parse().unwrap();
    clients[4321].channel_bind(&mut s, 0x4001, elsewhere);
    let mut out = vec![0u8; 2048];
    let tuple = clients[4321].tuple;
    let frame = channel_data(0x4001, 160);
    c.bench_function("Shard::handle_client ChannelData 160 B to a peer elsewhere, 10k allocations", |b| {
        b.iter(|| {
            let a = s.handle_client(T0, black_box(tuple), black_box(&frame), &mut out);
            assert!(matches!(a, Action::ToPeer { .. }));
            a
        })
    });
    let frame = channel_data(0x4000, 160);
    c.bench_function("Shard::handle_client ChannelData 160 B to an allocation of the shard, 10k allocations", |b| {
        b.iter(|| {
            let a = s.handle_client(T0, black_box(tuple), black_box(&frame), &mut out);
            assert!(matches!(a, Action::ToClient { .. }));
            a
        })
    });
    let mut buf = vec![0u8; 2048];
    let from = relayed[4320];
    c.bench_function("Shard::handle_peer 160 B to a channel, 10k allocations", |b| {
        b.iter(|| {
            let data = CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + 160;
            s.handle_peer(T0, black_box(RelayId(4322)), from, &mut buf, data, &mut out)
        })
    });
}

criterion_group!(benches, shard_benches);
criterion_main!(benches);
