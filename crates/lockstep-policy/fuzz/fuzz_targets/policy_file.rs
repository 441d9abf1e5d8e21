//! Policy files and collector configs are operator input: parsing, compiling and
//! importing must never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_policy::{compile_policy, import::import_collector, Engine, Format};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for fmt in [Format::Json, Format::Yaml] {
        if let Ok(p) = compile_policy(text, fmt, "fuzz") {
            // A policy that compiles must evaluate any record without panicking.
            let mut e = Engine::new(p);
            let _ = e.decide_json(br#"{"level":"error","duration_ms":250,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#);
            let _ = e.decide_json(text.as_bytes());
        }
        if let Ok(procs) = import_collector(text, fmt, "fuzz") {
            for p in &procs {
                let _ = lockstep_policy::import::render(p);
            }
        }
    }
});
