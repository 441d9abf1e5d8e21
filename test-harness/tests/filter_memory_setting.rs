//! `lockstep.kept_trace_memory` through the real `.wasm` in the filter_wasm host: the
//! largest accepted memory works, a larger one is refused by name (the filter then keeps
//! everything, as for any policy error), and neither traps. A memory too large for
//! wasm32 used to trap the module on every record (32-byte slots: 2^26 of them are
//! 2 GiB).
use lockstep_harness::artifacts::build_filter_wasm;
use lockstep_hosts::wasm::{FilterConfig, FilterResult, WasmFilterHost};

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn host(memory: usize) -> (WasmFilterHost, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("lockstep-policy.yaml"),
        format!(
            "lockstep: {{kept_trace_memory: {memory}}}\npolicies: [{{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}]"
        ),
    )
    .unwrap();
    let mut c = FilterConfig::new(build_filter_wasm(&[]).unwrap(), "lockstep_filter");
    c.accessible_paths = vec![d.path().to_path_buf()];
    (WasmFilterHost::new(c).unwrap(), d)
}

fn kept(h: &mut WasmFilterHost, level: &str) -> bool {
    let r = h
        .filter_text(
            "t",
            (0, 0),
            &format!(r#"{{"trace_id":"{T}","level":"{level}"}}"#),
        )
        .unwrap();
    !matches!(r, FilterResult::Dropped)
}

#[test]
fn the_largest_kept_trace_memory_works() {
    let (mut h, _d) = host(lockstep_policy::MAX_KEPT_TRACE_MEMORY);
    assert!(!kept(&mut h, "debug"), "no line of the trace kept yet");
    assert!(kept(&mut h, "error"));
    assert!(
        kept(&mut h, "debug"),
        "a later line of a kept trace: {}",
        h.stderr()
    );
    assert_eq!(h.traps, 0, "{}", h.stderr());
}

#[test]
fn a_larger_kept_trace_memory_is_refused_by_name_without_a_trap() {
    let (mut h, _d) = host(40_000_000);
    // Fail open: the policy did not load, so every record is kept.
    assert!(kept(&mut h, "debug"));
    assert!(kept(&mut h, "info"));
    assert_eq!(h.traps, 0, "{}", h.stderr());
    let err = h.stderr();
    assert!(
        err.contains("lockstep.kept_trace_memory") && err.contains("40000000"),
        "{err}"
    );
}
