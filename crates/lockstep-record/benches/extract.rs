//! Extraction cost on ~200-byte JSON lines (fast path and serde path).
//! `cargo bench -p lockstep-record --bench extract`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_record::{Extractor, FieldTable, Matcher};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let lines = lockstep_record::samples::four_schema_lines();
    let avg = lines.iter().map(|l| l.len()).sum::<usize>() / lines.len();
    let mut g = c.benchmark_group(format!("extract_{avg}B"));
    g.throughput(Throughput::Elements(lines.len() as u64));
    let mut ex = Extractor::new(Matcher::new(FieldTable::default(), &[]).unwrap());
    g.bench_function("fast_json", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(ex.extract_json(black_box(l.as_bytes())).unwrap().level);
            }
        })
    });
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    g.bench_function("serde_value", |b| {
        b.iter(|| {
            for v in &values {
                black_box(ex.extract_value(black_box(v)).unwrap().level);
            }
        })
    });
    g.bench_function("serde_json_parse_only", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(l)).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
