//! Per-record cost of the sampling stage's decision work on the flush path, without
//! disk: msgpack extraction (+ OTLP metadata), the policy's facts, the table. Beside it,
//! the filter's reading of the same records as JSON text (what `lockstep_filter.wasm`
//! runs per record, here natively), and one trace decision.
//! `cargo bench -p lockstep-tail --bench intake`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fluent_bit_chunk::Chunk;
use lockstep_policy::{Policy, TraceFacts};
use lockstep_tail::{Admit, Table, TableConfig};
use std::hint::black_box;

fn chunk_of(lines: &[String]) -> Vec<u8> {
    let mut b = Vec::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        b.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x80]);
        b.extend_from_slice(&rmp_serde::to_vec(&v).unwrap());
    }
    b
}

fn bench(c: &mut Criterion) {
    let lines = lockstep_record::samples::four_schema_lines();
    let bytes = chunk_of(&lines);
    let policy = Policy::default_policy();
    let mut g = c.benchmark_group("sampling_intake");
    g.throughput(Throughput::Elements(lines.len() as u64));
    let mut ex = policy.extractor();
    g.bench_function("extract_msgpack", |b| {
        b.iter(|| {
            for r in Chunk::new(black_box(&bytes)).records() {
                let r = r.unwrap();
                ex.extract_msgpack(r.event.body);
                ex.merge_otlp_metadata(r.event.metadata);
                black_box(ex.last().level);
            }
        })
    });
    g.bench_function("extract_observe_admit", |b| {
        let mut table = Table::new(TableConfig {
            decision_wait_ns: u64::MAX / 2,
            num_traces: usize::MAX,
            cache_sampled: 0,
            cache_not_sampled: 0,
            max_pinned: usize::MAX,
            cache_reported: 0,
            hold_max_ns: 0,
        });
        let mut now = 0u64;
        b.iter(|| {
            for r in Chunk::new(black_box(&bytes)).records() {
                let r = r.unwrap();
                ex.extract_msgpack(r.event.body);
                ex.merge_otlp_metadata(r.event.metadata);
                let e = ex.last();
                now += 1;
                if let Some(t) = e.trace_id() {
                    let mut f = TraceFacts::new(Some(t));
                    policy.observe(e, &mut f);
                    if let Admit::Wait { .. } = table.admit(&t, now) {
                        table.landed(&t, Some(&f));
                    }
                } else {
                    black_box(policy.decide(e));
                }
            }
        })
    });
    g.bench_function("filter_json_reading", |b| {
        b.iter(|| {
            for l in &lines {
                let e = ex.extract_json(black_box(l.as_bytes())).unwrap();
                black_box(policy.decide(e));
            }
        })
    });
    g.finish();
    let mut f = TraceFacts::new(Some([7; 16]));
    let e = ex
        .extract_json(lines[lines.len() - 1].as_bytes())
        .unwrap()
        .clone();
    policy.observe(&e, &mut f);
    c.bench_function("decide_trace", |b| {
        b.iter(|| black_box(policy.decide_trace(black_box(&f))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
