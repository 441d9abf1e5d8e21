//! Policy files, collector configs and Fluent Bit configs are operator input: parsing,
//! compiling, detecting and importing must never panic, whatever the bytes. An imported
//! policy, rendered and loaded again, must be the same policy: the same rules
//! (fingerprint) and the same decisions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_policy::import::{detect, import_collector, import_fluent_bit, Processor};
use lockstep_policy::{compile_policy, Engine, Format, Policy, PolicyError};

/// Records the rendered and the imported policy must decide alike.
const PROBES: &[&[u8]] = &[
    br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
    br#"{"level":"info","duration_ms":5,"trace_id":"00000000000000000000000000000001"}"#,
    br#"{"severity":"WARN","latency":"1.5s","traceId":"ffffffffffffffffffffffffffffffff","http.status_code":503}"#,
    br#"{"msg":"no trace"}"#,
];

/// A collector config and a Fluent Bit config whose rules and values come from `data`,
/// so that the import round trip runs on configs that import, whatever the bytes.
fn templated(data: &[u8]) -> [String; 2] {
    let mut b = data.iter().copied().chain(std::iter::repeat(7));
    let mut next = || b.next().unwrap_or(0);
    let word = |x: u8| ["checkout", "/healthz", "a.b", "x", "503", "true", "é"][x as usize % 7];
    let (mut collector, mut fluent_bit) = (String::new(), String::new());
    for i in 0..2 + next() % 5 {
        let (x, y, z) = (next(), next(), next());
        let (lo, hi) = (u16::from(y) * 3, u16::from(y) * 3 + u16::from(z));
        collector.push_str(&match x % 7 {
            0 => format!("      - {{name: p{i}, type: status_code, status_code: {{status_codes: [ERROR]}}}}\n"),
            1 => format!("      - {{name: p{i}, type: latency, latency: {{threshold_ms: {lo}}}}}\n"),
            2 => format!("      - {{name: p{i}, type: probabilistic, probabilistic: {{sampling_percentage: {}}}}}\n", y % 101),
            3 => format!("      - {{name: p{i}, type: string_attribute, string_attribute: {{key: \"{}\", values: [\"{}\"]}}}}\n", word(y), word(z)),
            4 => format!("      - {{name: p{i}, type: numeric_attribute, numeric_attribute: {{key: http.status_code, min_value: {lo}, max_value: {hi}}}}}\n"),
            5 => format!("      - {{name: p{i}, type: always_sample}}\n"),
            _ => format!("      - {{name: p{i}, type: boolean_attribute, boolean_attribute: {{key: \"{}\", value: {}}}}}\n", word(y), z % 2 == 0),
        });
        fluent_bit.push_str(&match x % 5 {
            0 => "              - {type: status_code, status_codes: [ERROR]}\n".to_string(),
            1 => format!("              - {{type: latency, threshold_ms_low: {lo}, threshold_ms_high: {hi}}}\n"),
            2 => format!("              - {{type: string_attribute, key: \"{}\", values: [\"{}\"]}}\n", word(y), word(z)),
            3 => format!("              - {{type: numeric_attribute, key: http.status_code, min_value: {lo}, max_value: {hi}}}\n"),
            _ => format!("              - {{type: span_count, min_spans: {}, max_spans: {}}}\n", y % 4 + 1, y % 4 + 1 + z % 9),
        });
    }
    let first = if next() % 2 == 0 { "true" } else { "false" };
    [
        format!("processors:\n  tail_sampling:\n    decision_wait: 10s\n    sample_on_first_match: {first}\n    policies:\n{collector}"),
        format!("pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {{decision_wait: 2s}}\n            conditions:\n{fluent_bit}"),
    ]
}

fuzz_target!(|data: &[u8]| {
    // One input in eight (the round trip is slow) also fills the templates.
    if data.len() % 8 == 0 {
        let [collector, fluent_bit] = templated(data);
        round_trip(import_collector(&collector, Format::Yaml, "templated"));
        round_trip(import_fluent_bit(&fluent_bit, Format::Yaml, "templated"));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
});

fn check(text: &str) {
    for fmt in [Format::Json, Format::Yaml] {
        if let Ok(p) = compile_policy(text, fmt, "fuzz") {
            // A policy that compiles must evaluate any record without panicking.
            let mut e = Engine::new(p);
            let _ = e.decide_json(br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#);
            let _ = e.decide_json(text.as_bytes());
        }
        let _ = detect(text, fmt, "fuzz");
        round_trip(import_collector(text, fmt, "fuzz"));
        round_trip(import_fluent_bit(text, fmt, "fuzz"));
    }
}

/// Each imported processor, rendered and loaded again, is the policy the import made.
fn round_trip(procs: Result<Vec<Processor>, PolicyError>) {
    for p in procs.iter().flatten() {
        let (false, Ok(r)) = (p.is_empty(), lockstep_policy::import::render(p)) else {
            continue;
        };
        // What a Fluent Bit import writes must load again.
        let loaded = compile_policy(&r, Format::Yaml, "rendered");
        if p.policy.processors.is_some() {
            assert!(
                loaded.is_ok(),
                "an imported policy compiles: {:?}",
                loaded.err()
            );
        }
        // And be the policy the import made, not merely a policy.
        let Ok(imported) = Policy::compile(&p.policy) else {
            continue;
        };
        let loaded = loaded.expect("the imported policy compiles, so must its rendering");
        assert_eq!(
            loaded.fingerprint(),
            imported.fingerprint(),
            "rendered:\n{r}"
        );
        let (mut a, mut b) = (Engine::new(imported), Engine::new(loaded));
        for probe in PROBES {
            let (x, y) = (a.decide_json(probe), b.decide_json(probe));
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "rendered:\n{r}");
        }
    }
}
