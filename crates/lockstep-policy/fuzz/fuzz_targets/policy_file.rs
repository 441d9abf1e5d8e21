//! Policy files, collector configs and Fluent Bit configs are operator input: parsing,
//! compiling, detecting and importing must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_policy::import::{detect, import_collector, import_fluent_bit};
use lockstep_policy::{compile_policy, Engine, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for fmt in [Format::Json, Format::Yaml] {
        if let Ok(p) = compile_policy(text, fmt, "fuzz") {
            // A policy that compiles must evaluate any record without panicking.
            let mut e = Engine::new(p);
            let _ = e.decide_json(br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#);
            let _ = e.decide_json(text.as_bytes());
        }
        let _ = detect(text, fmt, "fuzz");
        for procs in [import_collector(text, fmt, "fuzz"), import_fluent_bit(text, fmt, "fuzz")]
            .into_iter()
            .flatten()
        {
            for p in &procs {
                // What a Fluent Bit import writes must load again.
                if let (false, Ok(r)) = (p.is_empty(), lockstep_policy::import::render(p)) {
                    if p.policy.processors.is_some() {
                        compile_policy(&r, Format::Yaml, "rendered").expect("an imported policy compiles");
                    }
                }
            }
        }
    }
});
