//! Extraction + decision on ~200-byte JSON lines, one core.
//! `cargo bench -p lockstep-policy --bench decide`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_policy::{compile_policy, Engine, Format, Policy};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let lines = lockstep_record::samples::four_schema_lines();
    let avg = lines.iter().map(|l| l.len()).sum::<usize>() / lines.len();
    let mut g = c.benchmark_group(format!("decide_{avg}B"));
    g.throughput(Throughput::Elements(lines.len() as u64));
    let policies = [
        ("default", Policy::default_policy()),
        (
            "with_probabilistic_and_attr",
            compile_policy(
                "policies:\n - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}\n - {name: s, type: latency, latency: {threshold_ms: 200}}\n - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n - {name: m, type: string_attribute, string_attribute: {key: http.method, values: [POST]}}\n",
                Format::Yaml,
                "bench",
            )
            .unwrap(),
        ),
    ];
    for (name, p) in policies {
        let mut e = Engine::new(p);
        g.bench_function(name, |b| {
            b.iter(|| {
                for l in &lines {
                    black_box(e.decide_json(black_box(l.as_bytes())).0.keep);
                }
            })
        });
        // The filter's path: the fast reading of what Fluent Bit hands over.
        g.bench_function(format!("{name}_host_fast"), |b| {
            b.iter(|| {
                for l in &lines {
                    black_box(e.decide_host_json(black_box(l.as_bytes())).0.keep);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
