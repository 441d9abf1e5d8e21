//! Per-record cost of mapping OTLP log records (Fluent Bit's `opentelemetry` input: a
//! group with the resource and scope, records with `otlp` metadata) into spool payloads:
//! `otlp_mapping loki` (as Loki's OTLP ingestion) against `otlp_mapping off` (the body as
//! JSON, before issue 27), and `off` with the same structured metadata as static pairs.
//! The records are those of `scripts/diff-otlp-loki.py --bench`: a string body, three
//! attributes, a trace and span id, severity; a resource of two attributes.
//! `cargo bench -p lockstep-map --bench otlp`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fluent_bit_chunk::Chunk;
use lockstep_map::{MapStats, Mapping, MappingConfig, OtlpConfig, Scratch};
use rmpv::Value as V;
use std::hint::black_box;

fn event(sec: u32, meta: V, body: V) -> Vec<u8> {
    let mut t = sec.to_be_bytes().to_vec();
    t.extend_from_slice(&0u32.to_be_bytes());
    let ev = V::Array(vec![V::Array(vec![V::Ext(0, t), meta]), body]);
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, &ev).unwrap();
    b
}

fn m(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (V::from(k), v)).collect())
}

fn chunk(n: usize) -> Vec<u8> {
    let mut c = event(
        u32::MAX,
        m(vec![
            ("schema", V::from("otlp")),
            ("resource_id", V::from(0)),
            ("scope_id", V::from(0)),
        ]),
        m(vec![
            (
                "resource",
                m(vec![(
                    "attributes",
                    m(vec![
                        ("service.name", V::from("bench")),
                        ("host.name", V::from("edge")),
                    ]),
                )]),
            ),
            (
                "scope",
                m(vec![("name", V::from("bench")), ("version", V::from(""))]),
            ),
        ]),
    );
    for i in 0..n {
        c.extend(event(
            1_796_000_000 + i as u32,
            m(vec![(
                "otlp",
                m(vec![
                    (
                        "timestamp",
                        V::from(1_796_000_000_000_000_000u64 + i as u64),
                    ),
                    (
                        "observed_timestamp",
                        V::from(1_796_000_000_000_001_000u64 + i as u64),
                    ),
                    ("severity_number", V::from(9)),
                    ("severity_text", V::from("INFO")),
                    (
                        "attributes",
                        m(vec![
                            ("http.route", V::from("/cart")),
                            ("http.status_code", V::from(200)),
                            ("duration_ms", V::from(12.5)),
                        ]),
                    ),
                    (
                        "trace_id",
                        V::Binary((0..16).map(|b| b as u8 ^ i as u8).collect()),
                    ),
                    (
                        "span_id",
                        V::Binary((0..8).map(|b| b as u8 ^ i as u8).collect()),
                    ),
                    ("trace_flags", V::from(1)),
                ]),
            )]),
            m(vec![("log", V::from(format!("request {i} handled")))]),
        ));
    }
    c.extend(event(u32::MAX - 1, m(vec![]), m(vec![])));
    c
}

fn bench(c: &mut Criterion) {
    let n = 500;
    let bytes = chunk(n);
    let configs: [(&str, MappingConfig); 3] = [
        ("loki", MappingConfig::default()),
        (
            "off",
            MappingConfig {
                otlp: OtlpConfig {
                    mapping: Some("off".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        (
            "off_static_metadata",
            MappingConfig {
                structured_metadata: Some(
                    "http_route=/cart, http_status_code=200, duration_ms=12.5, \
                     observed_timestamp=1796620639611634412, severity_number=9, \
                     severity_text=INFO, flags=1, trace_id=5b8aa5a2d2c872e8321cf37308d69df2, \
                     span_id=051581bf3cb55c13, host_name=edge, scope_name=bench"
                        .into(),
                ),
                otlp: OtlpConfig {
                    mapping: Some("off".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("otlp_map");
    g.throughput(Throughput::Elements(n as u64));
    for (name, cfg) in configs {
        let mp = Mapping::new(&cfg).unwrap();
        let mut sc = Scratch::default();
        let mut out = Vec::with_capacity(bytes.len() * 4);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut st = MapStats::default();
                for r in Chunk::new(black_box(&bytes)).records() {
                    let r = r.unwrap();
                    mp.encode_record(
                        "v1_logs",
                        1,
                        r.event.body,
                        r.event.metadata,
                        r.group.map(|g| (g.metadata, g.attributes)),
                        &mut st,
                        &mut sc,
                        &mut out,
                    );
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
