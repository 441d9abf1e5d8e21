//! Policy files, collector configs and Fluent Bit configs are operator input: parsing,
//! compiling, detecting and importing must never panic, whatever the bytes. An imported
//! policy, rendered and loaded again, must be the same policy: the same rules
//! (fingerprint) and the same decisions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_policy::import::{detect, import_collector, import_fluent_bit};
use lockstep_policy::{compile_policy, Engine, Format, Policy};

/// Records the rendered and the imported policy must decide alike.
const PROBES: &[&[u8]] = &[
    br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
    br#"{"level":"info","duration_ms":5,"trace_id":"00000000000000000000000000000001"}"#,
    br#"{"severity":"WARN","latency":"1.5s","traceId":"ffffffffffffffffffffffffffffffff","http.status_code":503}"#,
    br#"{"msg":"no trace"}"#,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for fmt in [Format::Json, Format::Yaml] {
        if let Ok(p) = compile_policy(text, fmt, "fuzz") {
            // A policy that compiles must evaluate any record without panicking.
            let mut e = Engine::new(p);
            let _ = e.decide_json(br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#);
            let _ = e.decide_json(text.as_bytes());
        }
        let _ = detect(text, fmt, "fuzz");
        for procs in [
            import_collector(text, fmt, "fuzz"),
            import_fluent_bit(text, fmt, "fuzz"),
        ]
        .into_iter()
        .flatten()
        {
            for p in &procs {
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
    }
});
