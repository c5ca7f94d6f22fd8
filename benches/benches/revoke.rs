//! The revocation path: 10,000 sessions revoked in one burst, as the control link hands them
//! over (10 orders of 1,000, `teletip_link::REVOKE_BATCH`), until every worker has ended its
//! allocations of them. Two workers, each a thread owning its shard as the relay's workers do,
//! each holding 5,000 allocations of revoked sessions and 5,000 of sessions that stay (20,000
//! allocations in all). The workers wait as woken ones would: each turns, calling
//! `Shard::apply_revocations` (what a worker does at the start of every turn of its loop), until
//! it has ended its 5,000. Timed: from the first order's publication to the last worker done.
//! Also: the per-turn cost when nothing was revoked (one atomic load).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use criterion::{Criterion, SamplingMode, black_box, criterion_group, criterion_main};
use teletip_turn_proto::server::{Controls, Shard};

const WORKERS: u32 = 2;
const REVOKED_PER_WORKER: u32 = 5_000;
const KEPT_PER_WORKER: u32 = 5_000;
/// Sessions per order, as the control plane batches them (`teletip_link::REVOKE_BATCH`).
const BATCH: usize = 1_000;

/// Session ids are `user-<i>` (`BenchClient::new`): worker `w` holds the revoked sessions
/// `w * 5000 ..` and the kept ones from 10,000 on.
fn worker_shards(controls: &Controls) -> Vec<Shard<NullBinder>> {
    (0..WORKERS)
        .map(|w| {
            let mut s = shard_with(controls.clone());
            let revoked = w * REVOKED_PER_WORKER..(w + 1) * REVOKED_PER_WORKER;
            let kept_base = WORKERS * REVOKED_PER_WORKER + w * KEPT_PER_WORKER;
            for i in revoked.chain(kept_base..kept_base + KEPT_PER_WORKER) {
                BenchClient::new(i).allocate(&mut s);
            }
            s
        })
        .collect()
}

/// One burst: publishes the orders, returns the time until every worker applied them.
fn burst(ids: &[String]) -> Duration {
    let controls = controls();
    let shards = worker_shards(&controls);
    let start = Arc::new(Barrier::new(WORKERS as usize + 1));
    let expires = T0.unix_secs() + 3600;
    std::thread::scope(|scope| {
        let workers: Vec<_> = shards
            .into_iter()
            .map(|mut s| {
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    let mut ended = 0;
                    while ended < REVOKED_PER_WORKER as usize {
                        ended += s.apply_revocations(T0);
                        std::hint::spin_loop();
                    }
                    assert_eq!(s.allocation_count(), KEPT_PER_WORKER as usize);
                    Instant::now()
                })
            })
            .collect();
        start.wait();
        let published = Instant::now();
        for batch in ids.chunks(BATCH) {
            controls.revocations.revoke(batch.iter().map(|id| (id.as_str(), expires)), T0.unix_secs());
        }
        let done = workers.into_iter().map(|w| w.join().unwrap()).max().unwrap();
        done - published
    })
}

fn revoke_benches(c: &mut Criterion) {
    let ids: Vec<String> = (0..WORKERS * REVOKED_PER_WORKER).map(|i| format!("user-{i}")).collect();
    let mut group = c.benchmark_group("revocation");
    // Each burst first builds its 20,000 allocations (untimed, about a tenth of a second), so
    // few bursts are run: 10 samples over a short measurement time.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_millis(50)).measurement_time(Duration::from_millis(200));
    group.bench_function("10k sessions in 10 orders of 1k, until 2 workers ended them (20k allocations)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| burst(&ids)).sum())
    });
    group.finish();

    let controls = controls();
    let mut s = shard_with(controls.clone());
    for i in 0..10_000 {
        BenchClient::new(i).allocate(&mut s);
    }
    c.bench_function("Shard::apply_revocations with nothing new (every worker turn), 10k allocations", |b| {
        b.iter(|| s.apply_revocations(black_box(T0)))
    });
}

criterion_group!(benches, revoke_benches);
criterion_main!(benches);
