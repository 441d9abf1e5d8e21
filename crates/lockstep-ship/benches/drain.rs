//! The drain's work on one batch, without the spool or the network: the queued entries
//! read, grouped into streams and encoded into the push body (protobuf + snappy), as
//! the OTLP mapping (`otlp_mapping loki`) queues Fluent Bit's OTLP log records: one
//! stream, the line, eleven structured-metadata pairs (those of
//! `scripts/diff-otlp-loki.py --bench`); and the same entries without metadata.
//! `cargo bench -p lockstep-ship --bench drain`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_loki::{ClientConfig, EncodeScratch, LokiClient};
use lockstep_ship::drain::encode_records;
use lockstep_ship::{DrainConfig, SpooledEntry};
use lockstep_spool::Record;
use std::hint::black_box;

fn entries(n: usize, metadata: bool) -> Vec<Record> {
    let now = lockstep_spool::now_ns() as i64;
    (0..n)
        .map(|i| {
            let sm: Vec<(String, String)> = if metadata {
                [
                    ("http_route", "/cart".to_string()),
                    ("http_status_code", "200".into()),
                    ("duration_ms", "12.5".into()),
                    ("observed_timestamp", (now + i as i64 + 1000).to_string()),
                    ("severity_number", "9".into()),
                    ("severity_text", "INFO".into()),
                    ("flags", "1".into()),
                    (
                        "trace_id",
                        format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
                    ),
                    ("span_id", format!("{:016x}", i as u64 * 0x9e37_79b9)),
                    ("host_name", "edge".into()),
                    ("scope_name", "bench".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
            } else {
                Vec::new()
            };
            let e = SpooledEntry {
                tenant: None,
                labels: vec![("service_name".into(), "bench".into())],
                ts_ns: now + i as i64,
                line: format!("request {i} handled"),
                structured_metadata: sm,
            };
            Record {
                seq: i as u64 + 1,
                ts_ns: now as u64,
                payload: e.encode(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = 1000;
    let client = LokiClient::new(ClientConfig::new("http://127.0.0.1:9/loki/api/v1/push")).unwrap();
    let cfg = DrainConfig::default();
    let mut g = c.benchmark_group("drain_prepare_encode");
    g.throughput(Throughput::Elements(n as u64));
    for (name, metadata) in [("otlp_11_metadata_pairs", true), ("no_metadata", false)] {
        let records = entries(n, metadata);
        let mut scratch = EncodeScratch::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                let bodies =
                    encode_records(&client, &cfg, black_box(&records), &mut scratch).unwrap();
                black_box(bodies.iter().map(|(_, b)| b.len()).sum::<usize>())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
