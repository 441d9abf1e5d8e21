//! The filter_wasm host rules, pinned with hand-assembled probe modules, and the real
//! `lockstep_filter.wasm` run through them: the golden replay, policy loading from
//! Accessible_Paths, record sizes, invalid input.

use lockstep_harness::artifacts::build_filter_wasm;
use lockstep_hosts::golden::{replay, GoldenSet};
use lockstep_hosts::wasm::{
    EventFormat, FilterConfig, FilterResult, HostAbort, LogLevel, WasmFilterHost,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn filter_wasm() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build_filter_wasm(&[]).unwrap()).clone()
}

// ---- a tiny wasm assembler for probe modules ----
fn leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn sleb(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u64, out);
    out.extend(body);
}
fn name(s: &str, out: &mut Vec<u8>) {
    leb(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}
/// A module exporting `memory` and `f(tag, tag_len, sec, nsec, rec, rec_len) -> i32`
/// whose body is `body` (instructions, without the final `end`).
fn probe(body: &[u8]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    section(
        1,
        vec![1, 0x60, 6, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f],
        &mut m,
    );
    section(3, vec![1, 0], &mut m);
    section(5, vec![1, 0, 2], &mut m); // memory: min 2 pages
    let mut ex = vec![2];
    name("memory", &mut ex);
    ex.extend([2, 0]);
    name("f", &mut ex);
    ex.extend([0, 0]);
    section(7, ex, &mut m);
    let mut code = vec![0]; // no locals
    code.extend_from_slice(body);
    code.push(0x0b);
    let mut cs = vec![1];
    leb(code.len() as u64, &mut cs);
    cs.extend(code);
    section(10, cs, &mut m);
    m
}
fn echo_module() -> Vec<u8> {
    probe(&[0x20, 4]) // local.get 4: return the record pointer
}
fn const_module(v: i64) -> Vec<u8> {
    let mut b = vec![0x41];
    sleb(v, &mut b);
    probe(&b)
}

fn host_for(
    bytes: &[u8],
    cfg: impl FnOnce(&mut FilterConfig),
) -> (WasmFilterHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("probe.wasm");
    std::fs::write(&p, bytes).unwrap();
    let mut c = FilterConfig::new(&p, "f");
    c.accessible_paths = vec![dir.path().to_path_buf()];
    cfg(&mut c);
    (WasmFilterHost::new(c).unwrap(), dir)
}

fn kept(r: FilterResult) -> Vec<Value> {
    match r {
        FilterResult::Kept(v) => v,
        FilterResult::Dropped => panic!("dropped"),
    }
}

#[test]
fn host_parses_results_like_yyjson() {
    let (mut h, _d) = host_for(&echo_module(), |_| {});
    assert!(!h.module_allocates());
    h.begin_chunk();
    assert_eq!(
        h.filter_text("t", (0, 0), "").unwrap(),
        FilterResult::Dropped,
        "empty string drops"
    );
    assert_eq!(
        h.filter_text("t", (0, 0), "[1,2]").unwrap(),
        FilterResult::Dropped
    );
    assert!(h
        .logs
        .iter()
        .any(|(l, m)| *l == LogLevel::Error && m.contains("not an object")));
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"a":1} junk"#).unwrap()),
        vec![json!({"a":1})]
    );
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"a":1}{"b":2}"#).unwrap()).len(),
        2,
        "two objects pack as two records"
    );
    // invalid JSON after an earlier parse in the same chunk: the host's double free
    assert!(matches!(
        h.filter_text("t", (0, 0), r#"{"a":nan}"#),
        Err(HostAbort(_))
    ));
    // ... but not as the first return of a chunk
    h.begin_chunk();
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"a":nan}"#).unwrap(),
        FilterResult::Dropped
    );
}

#[test]
fn app_heap_without_exported_malloc() {
    // Wasm_Heap_Size 8192 → one 64 KiB page minus 1 KiB: 50 KB fits, 500 KB does not and
    // is dropped without any host log line (the function sees pointer 0).
    let (mut h, _d) = host_for(&echo_module(), |_| {});
    let rec = |n: usize| format!(r#"{{"pad":"{}"}}"#, "x".repeat(n));
    assert_eq!(
        kept(h.filter_text("t", (0, 0), &rec(50_000)).unwrap()).len(),
        1
    );
    let logs_before = h.logs.len();
    assert_eq!(
        h.filter_text("t", (0, 0), &rec(500_000)).unwrap(),
        FilterResult::Dropped
    );
    assert!(
        h.logs[logs_before..]
            .iter()
            .all(|(l, _)| *l == LogLevel::Debug),
        "no log line above debug for a failed copy: {:?}",
        h.logs
    );
    // A larger heap lets it through.
    let (mut h, _d) = host_for(&echo_module(), |c| c.heap_size = 1 << 20);
    assert_eq!(
        kept(h.filter_text("t", (0, 0), &rec(500_000)).unwrap()).len(),
        1
    );
}

#[test]
fn invalid_pointer_drops_and_leaves_a_stale_exception() {
    let (mut h, _d) = host_for(&const_module(0x7fff_fff0), |_| {});
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"a":1}"#).unwrap(),
        FilterResult::Dropped
    );
    assert!(h
        .logs
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("invalid")));
    // pointer 0 reads as "" (zeroed memory) and drops
    let (mut h0, _d0) = host_for(&const_module(0), |_| {});
    assert_eq!(
        h0.filter_text("t", (0, 0), r#"{"a":1}"#).unwrap(),
        FilterResult::Dropped
    );
    // the stale exception drops the next record too, even from a well-behaved call
    let n = h.logs.len();
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"a":1}"#).unwrap(),
        FilterResult::Dropped
    );
    assert!(h.logs[n..].iter().any(|(_, m)| m.contains("stale")));
}

#[test]
fn wrong_function_name_drops_every_record() {
    let (mut h, _d) = host_for(&echo_module(), |c| c.function_name = "nope".into());
    for _ in 0..2 {
        assert_eq!(
            h.filter_text("t", (0, 0), r#"{"a":1}"#).unwrap(),
            FilterResult::Dropped
        );
    }
    assert_eq!(
        h.logs
            .iter()
            .filter(|(_, m)| m.contains("nope wasm function is not found"))
            .count(),
        2
    );
}

#[test]
fn msgpack_mode_truncates_at_the_first_zero_byte() {
    // Why the filter uses JSON mode: the host reads msgpack results with strlen.
    let (mut h, _d) = host_for(&echo_module(), |c| c.event_format = EventFormat::Msgpack);
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"a":"x"}"#).unwrap()),
        vec![json!({"a":"x"})]
    );
    // integer 0 encodes a 0x00 byte: the echoed record is cut and lost
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"a":0,"b":"kept?"}"#)
            .unwrap(),
        FilterResult::Dropped
    );
    // lockstep_filter reads JSON: fed msgpack, it fails open with a JSON wrapper the
    // msgpack host cannot unpack either — JSON mode is the only working mode.
    let mut c = FilterConfig::new(filter_wasm(), "lockstep_filter");
    c.event_format = EventFormat::Msgpack;
    let mut h = WasmFilterHost::new(c).unwrap();
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"level":"error"}"#).unwrap(),
        FilterResult::Dropped
    );
}

fn lockstep_host(paths: Vec<PathBuf>) -> WasmFilterHost {
    let mut c = FilterConfig::new(filter_wasm(), "lockstep_filter");
    c.accessible_paths = paths;
    WasmFilterHost::new(c).unwrap()
}

#[test]
fn real_filter_keeps_records_intact_and_drops_with_empty_string() {
    let d = tempfile::tempdir().unwrap();
    let mut h = lockstep_host(vec![d.path().to_path_buf()]);
    assert!(h.module_allocates(), "exports malloc/free");
    let rec = r#"{"level":"ERR","n":1.0,"big":12345678901234567890,"z":null,"nested":{"k":[1,2]},"s":"é\"q"}"#;
    let out = kept(h.filter_text("t", (1, 2), rec).unwrap());
    assert_eq!(out, vec![serde_json::from_str::<Value>(rec).unwrap()]);
    assert_eq!(
        out[0].to_string(),
        rec,
        "key order, integral floats, big integers and nulls survive"
    );
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"level":"info","duration_ms":5}"#)
            .unwrap(),
        FilterResult::Dropped
    );
    assert!(h.stderr().contains("built-in policy"), "{}", h.stderr());
    // 4 MB records go through the module's own allocator
    let big = format!(r#"{{"level":"error","pad":"{}"}}"#, "x".repeat(4 << 20));
    assert_eq!(
        kept(h.filter_text("t", (0, 0), &big).unwrap())[0]["pad"]
            .as_str()
            .unwrap()
            .len(),
        4 << 20
    );
    // NaN from the host's conversion: kept, rewritten as valid JSON, never echoed
    h.begin_chunk();
    kept(h.filter_text("t", (0, 0), r#"{"level":"error"}"#).unwrap());
    let out = kept(
        h.filter_text("t", (0, 0), r#"{"level":"error","ratio":nan}"#)
            .unwrap(),
    );
    assert_eq!(out[0], json!({"level":"error","ratio":null}));
    // ... and decided like any record: a fast success carrying one is dropped, not kept
    // because it could not be read (issue 15)
    for rec in [
        r#"{"level":"info","duration_ms":12,"ratio":nan}"#,
        r#"{"level":"info","duration_ms":12,"limits":{"max":inf,"min":-inf}}"#,
        r#"{1:"a","level":"info","duration_ms":12}"#,
    ] {
        assert_eq!(
            h.filter_text("t", (0, 0), rec).unwrap(),
            FilterResult::Dropped,
            "{rec}"
        );
    }
    let out = kept(
        h.filter_text("t", (0, 0), r#"{7:"x","duration_ms":250,"r":[inf,-nan]}"#)
            .unwrap(),
    );
    assert_eq!(out[0], json!({"7":"x","duration_ms":250,"r":[null,null]}));
    // a token that only looks like one is still not JSON: wrapped (fail open)
    let out = kept(
        h.filter_text("t", (0, 0), r#"{"level":"error","x":nanx}"#)
            .unwrap(),
    );
    assert!(out[0]["lockstep_unparsed"].is_string());
    assert_eq!(h.traps, 0);
}

#[test]
fn policy_from_the_first_accessible_path_that_holds_one() {
    let empty = tempfile::tempdir().unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(
        a.path().join("lockstep-policy.yaml"),
        "policies: [{name: debug-only, type: status_code, status_code: {status_codes: [OK]}}]",
    )
    .unwrap();
    std::fs::write(
        b.path().join("lockstep-policy.yaml"),
        "policies: [{name: all, type: always_sample}]",
    )
    .unwrap();
    let mut h = lockstep_host(vec![empty.path().into(), a.path().into(), b.path().into()]);
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"level":"error"}"#).unwrap(),
        FilterResult::Dropped
    );
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"level":"debug"}"#).unwrap()).len(),
        1
    );
    assert!(h.stderr().contains("debug-only"), "{}", h.stderr());
    // a broken policy: reported once with path, line and reason; every record kept
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("lockstep-policy.yaml"),
        "policies:\n  - name: x\n    type: latency\n    latency: {threshold_ms: soon}\n",
    )
    .unwrap();
    let mut h = lockstep_host(vec![bad.path().into()]);
    for _ in 0..3 {
        assert_eq!(
            kept(h.filter_text("t", (0, 0), r#"{"level":"info"}"#).unwrap()).len(),
            1
        );
    }
    let err = h.stderr();
    assert_eq!(err.matches("fail-open").count(), 1, "{err}");
    assert!(err.contains("lockstep-policy.yaml:4:"), "{err}");
}

#[test]
fn golden_replay_through_the_real_wasm() {
    let dir = root().join("golden/four-schemas");
    let set = GoldenSet::load(&dir).unwrap();
    let mut h = lockstep_host(vec![dir.clone()]);
    let r = replay(&set, &mut h, 64).unwrap();
    println!("{}", r.render());
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.records_in, set.logs.len());
    assert!(r.traces_kept > 10 && r.traces_kept < r.traces);
    for reason in ["errors", "slow", "baseline", "not_sampled"] {
        assert!(
            r.by_reason.keys().any(|(k, _)| k == reason),
            "{reason}: {:?}",
            r.by_reason
        );
    }
    assert!(
        r.by_reason
            .keys()
            .any(|(k, d)| k == "kept_trace" && *d == "keep"),
        "later lines of kept traces are kept"
    );
    assert_eq!(
        r.sources["billing"]["duration"].iter().collect::<Vec<_>>(),
        vec!["duration"]
    );
    assert_eq!(
        r.sources["web"]["trace_id"].iter().collect::<Vec<_>>(),
        vec!["traceId"]
    );
    assert!(
        r.module_stderr.contains("lockstep-policy.yaml"),
        "{}",
        r.module_stderr
    );
}

#[test]
fn golden_replay_detects_a_broken_mapping() {
    // The Lua-style drift: a filter that only reads duration_ms. Slow requests logged in
    // other schemas lose their summary lines: orphan traces, named, and the report fails.
    let src = root().join("golden/four-schemas");
    let d = tempfile::tempdir().unwrap();
    for f in ["spans.jsonl", "logs.jsonl", "lines.jsonl"] {
        std::fs::copy(src.join(f), d.path().join(f)).unwrap();
    }
    let policy = std::fs::read_to_string(src.join("lockstep-policy.yaml")).unwrap();
    let drifted = format!("lockstep:\n  fields:\n    duration: {{replace_defaults: true, aliases: [{{key: duration_ms, unit: ms}}]}}\n{policy}");
    std::fs::write(d.path().join("lockstep-policy.yaml"), drifted).unwrap();
    let set = GoldenSet::load(d.path()).unwrap();
    let mut h = lockstep_host(vec![d.path().to_path_buf()]);
    let r = replay(&set, &mut h, 64).unwrap();
    assert!(!r.ok());
    assert!(!r.orphan_traces.is_empty());
    assert!(
        r.disagreements.is_empty(),
        "the native filter drifts the same way"
    );
    assert!(
        r.drift
            .keys()
            .any(|(svc, field, _)| svc == "billing" && field == "duration"),
        "{:?}",
        r.drift
    );
    assert!(r.render().contains("BROKEN"));
}

/// The Fluent Bit golden set: traces decided by Fluent Bit 5.1.1's sampling processor
/// (probabilistic 50 % then tail: ERROR, >= 200 ms, <= 10 ms, per span), the policy
/// imported from its fluent-bit.yaml, the logs through the real `.wasm`.
#[test]
fn golden_replay_fluent_bit_through_the_real_wasm() {
    let dir = root().join("golden/fluent-bit");
    let set = GoldenSet::load(&dir).unwrap();
    assert!(set.policy.processors.is_some(), "a Fluent Bit policy");
    let mut h = lockstep_host(vec![dir.clone()]);
    let r = replay(&set, &mut h, 64).unwrap();
    println!("{}", r.render());
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.records_in, set.logs.len());
    assert!(
        r.traces_kept > 10 && r.traces_kept < r.traces,
        "{}",
        r.render()
    );
    for (reason, decision) in [
        ("status_code", "keep"),
        ("latency", "keep"),
        ("latency#2", "keep"),
        ("probabilistic", "drop"),
        ("not_sampled", "drop"),
        ("kept_trace", "keep"),
    ] {
        assert!(
            r.by_reason.contains_key(&(reason.to_string(), decision)),
            "{reason}/{decision}: {:?}",
            r.by_reason
        );
    }
    assert!(
        r.module_stderr.contains(
            "fluent-bit/lockstep-policy.yaml: probabilistic, status_code, latency, latency#2"
        ),
        "{}",
        r.module_stderr
    );
}

/// The same logs and traces under the collector's rules (the same thresholds and
/// percentage pasted into a tail_sampling block) do not follow Fluent Bit's decisions:
/// the golden set tells the two semantics apart.
#[test]
fn fluent_bit_golden_set_is_not_followed_under_collector_semantics() {
    let src = root().join("golden/fluent-bit");
    let fb = GoldenSet::load(&src).unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("lockstep-policy.yaml"),
        "policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 200}}
  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 50}}
",
    )
    .unwrap();
    // The truth stays Fluent Bit's (fb.policy); the .wasm and the native filter both run
    // the collector policy from `d`.
    let mixed = GoldenSet {
        dir: d.path().to_path_buf(),
        ..fb.clone()
    };
    let collector = GoldenSet {
        policy: lockstep_policy::parse_policy(
            &std::fs::read_to_string(d.path().join("lockstep-policy.yaml")).unwrap(),
            lockstep_policy::Format::Yaml,
            "c",
        )
        .unwrap(),
        ..mixed.clone()
    };
    let (fbd, cold) = (
        fb.trace_decisions().unwrap(),
        collector.trace_decisions().unwrap(),
    );
    let differ = fbd.iter().filter(|(t, k)| cold[*t] != **k).count();
    assert!(differ >= 10, "only {differ} traces decided differently");
    let mut h = lockstep_host(vec![d.path().to_path_buf()]);
    let r = replay(&mixed, &mut h, 64).unwrap();
    assert!(r.disagreements.is_empty(), "{}", r.render());
    assert!(
        !r.orphan_traces.is_empty() && !r.orphan_logs.is_empty(),
        "a collector mirror both loses kept traces' lines and keeps dropped traces' lines: {}",
        r.render()
    );
    // ... while under its own truth the collector mirror holds (the harness is not biased)
    let mut h = lockstep_host(vec![d.path().to_path_buf()]);
    let r = replay(&collector, &mut h, 64).unwrap();
    assert!(r.ok(), "{}", r.render());
}

/// A Fluent Bit policy file through the real module: decided by Fluent Bit's rules, and
/// what 5.1.1 does surprisingly (a regex that never matches) is said on the module's
/// stderr, which Fluent Bit shows in its log.
#[test]
fn real_filter_reads_a_fluent_bit_policy_and_prints_its_warnings() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("lockstep-policy.yaml"),
        "processors:
  traces:
    - name: sampling
      type: tail
      sampling_settings: {decision_wait: 10s}
      conditions:
        - {type: latency, threshold_ms_low: 5, threshold_ms_high: 400}
        - {type: string_attribute, key: path, match_type: regex, values: ['^/admin']}
",
    )
    .unwrap();
    let mut h = lockstep_host(vec![d.path().to_path_buf()]);
    let mut keep = |rec: &str| {
        matches!(
            h.filter_text("t", (0, 0), rec).unwrap(),
            FilterResult::Kept(_)
        )
    };
    assert!(keep(r#"{"duration_ms":400}"#), "high bound inclusive");
    assert!(
        keep(r#"{"duration_ms":5.9}"#),
        "low bound keeps the fast lines"
    );
    assert!(!keep(r#"{"duration_ms":250}"#));
    assert!(
        !keep(r#"{"path":"/admin/x"}"#),
        "regex never matches in 5.1.1"
    );
    let err = h.stderr();
    assert!(
        err.contains("policy ") && err.contains("latency, string_attribute"),
        "{err}"
    );
    assert!(
        err.contains("warning: ") && err.contains("regex never matches in Fluent Bit 5.1.1"),
        "{err}"
    );
}

#[test]
fn json_only_build_uses_the_built_in_policy_and_json_files() {
    let wasm = build_filter_wasm(&["json-only"]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let host = |paths: Vec<PathBuf>| {
        let mut c = FilterConfig::new(&wasm, "lockstep_filter");
        c.accessible_paths = paths;
        WasmFilterHost::new(c).unwrap()
    };
    let mut h = host(vec![d.path().into()]);
    assert_eq!(
        h.filter_text("t", (0, 0), r#"{"level":"info"}"#).unwrap(),
        FilterResult::Dropped
    );
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"level":"error"}"#).unwrap()).len(),
        1
    );
    assert_eq!(h.traps, 0);
    std::fs::write(
        d.path().join("lockstep-policy.json"),
        r#"{"policies":[{"name":"all","type":"always_sample"}]}"#,
    )
    .unwrap();
    let mut h = host(vec![d.path().into()]);
    assert_eq!(
        kept(h.filter_text("t", (0, 0), r#"{"level":"info"}"#).unwrap()).len(),
        1
    );
    assert!(
        h.stderr().contains("lockstep-policy.json: all"),
        "{}",
        h.stderr()
    );
    // A Fluent Bit policy in JSON: the JSON-only build reads it too.
    std::fs::write(
        d.path().join("lockstep-policy.json"),
        r#"{"processors":{"traces":[{"name":"sampling","type":"probabilistic","sampling_settings":{"sampling_percentage":10}}]}}"#,
    )
    .unwrap();
    let mut h = host(vec![d.path().into()]);
    // 19581e27… is kept at 10 % by Fluent Bit's rule, 4bf92f35… is not.
    assert_eq!(
        kept(
            h.filter_text(
                "t",
                (0, 0),
                r#"{"trace_id":"19581e27de7ced00ff1ce50b2047e7a5"}"#
            )
            .unwrap()
        )
        .len(),
        1
    );
    assert_eq!(
        h.filter_text(
            "t",
            (0, 0),
            r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        )
        .unwrap(),
        FilterResult::Dropped
    );
}
