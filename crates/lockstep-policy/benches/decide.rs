//! Extraction + decision on ~200-byte JSON lines, one core.
//! `cargo bench -p lockstep-policy --bench decide`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lockstep_policy::{compile_policy, Engine, Format, Policy};
use std::hint::black_box;

fn lines() -> Vec<String> {
    let t = "4bf92f3577b34da6a3ce929d0e0e4736";
    vec![
        format!(r#"{{"ts":1795000000248,"level":"info","service":"api","trace_id":"{t}","span_id":"559c854d6e2aad4e","msg":"request finished","duration_ms":12.5,"http":{{"method":"GET","status":200}}}}"#),
        format!(r#"{{"time":1795000000.2939992,"level":"ERR","svc":"billing","trace_id":"{t}","span_id":"1d31690a8ff606eb","message":"charge complete","duration":0.199999,"attempt":1}}"#),
        format!(r#"{{"level":30,"time":1795000000063,"pid":7,"hostname":"edge-1","traceId":"{t}","spanId":"75c454fa23d82792","req":{{"method":"GET","url":"/cart"}},"responseTime":41.2,"msg":"request completed"}}"#),
        format!(r#"{{"timestamp":"1795000000135566888","severity_number":9,"severity_text":"INFO","trace_id":"{t}","span_id":"3e103337b166af8e","body":"ledger write","latency":"250.3ms","resource":{{"service.name":"ledger"}}}}"#),
    ]
}

fn bench(c: &mut Criterion) {
    let lines = lines();
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
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
