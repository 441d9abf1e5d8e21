//! Criterion benches of the workload: batches of 1,000 records of ~200 bytes.
//!
//! `cargo bench -p lockstep-spool --bench spool` (runs on the disk under `target/`; set
//! `BENCH_TMP` to measure another one). See also `examples/spool_bench.rs` for p99 latency,
//! bytes per record and multi-threaded group commit.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_spool::{FullPolicy, Spool, SpoolConfig, SyncMode};

const PER: usize = 1000;
const SIZE: usize = 200;

fn batch() -> Vec<Vec<u8>> {
    (0..PER)
        .map(|i| {
            let mut v = format!("{{\"ts\":{i},\"level\":\"info\",\"msg\":\"").into_bytes();
            v.resize(SIZE, b'a' + (i % 26) as u8);
            v
        })
        .collect()
}

fn tmpdir() -> tempfile::TempDir {
    let base = std::env::var("BENCH_TMP").unwrap_or_else(|_| {
        // Cargo runs benches from the package directory: use the workspace target dir.
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string()
    });
    tempfile::Builder::new()
        .prefix("spool-bench")
        .tempdir_in(base)
        .unwrap()
}

fn cfg(sync: SyncMode, policy: FullPolicy, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        sync,
        full_policy: policy,
        max_bytes,
        ..SpoolConfig::default()
    }
}

fn append(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(PER as u64));
    for (name, sync) in [
        ("durable_always", SyncMode::Always),
        (
            "interval_200ms",
            SyncMode::Interval(Duration::from_millis(200)),
        ),
    ] {
        let tmp = tmpdir();
        // drop_oldest keeps the disk bounded however long criterion runs.
        let s = Spool::open(tmp.path(), cfg(sync, FullPolicy::DropOldest, 1 << 30)).unwrap();
        g.bench_function(name, |bn| bn.iter(|| s.append(&b).unwrap()));
    }
    g.finish();
}

fn drain(c: &mut Criterion) {
    let b = batch();
    let mut g = c.benchmark_group("drain");
    g.throughput(Throughput::Elements(PER as u64));
    let tmp = tmpdir();
    let s = Spool::open(
        tmp.path(),
        cfg(
            SyncMode::Interval(Duration::from_millis(200)),
            FullPolicy::Block,
            8 << 30,
        ),
    )
    .unwrap();
    g.bench_function("peek_ack_1000", |bn| {
        bn.iter_custom(|iters| {
            for _ in 0..iters {
                s.append(&b).unwrap();
            }
            s.sync().unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                let batch = s.peek(PER, 1 << 20).unwrap();
                assert_eq!(batch.len(), PER);
                s.ack(&batch).unwrap();
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = append, drain
}
criterion_main!(benches);
