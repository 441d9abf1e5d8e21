//! Deciding by whole trace: rules over all of a trace's lines (any line matches; the
//! longest duration; the trace id), the same precedence as one line, and the byte form
//! that lets a line waiting on disk carry its facts.

use lockstep_policy::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn policy(yaml: &str) -> Policy {
    compile_policy(yaml, Format::Yaml, "p.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// (keep, reason) of a trace made of `lines`, and of each line decided alone.
fn trace(p: &Policy, lines: &[Value]) -> ((bool, String), Vec<bool>) {
    let mut ex = p.extractor();
    let mut f = TraceFacts::new(Some([7; 16]));
    let mut alone = Vec::new();
    for l in lines {
        let e = ex.extract_json(l.to_string().as_bytes()).unwrap();
        p.observe(e, &mut f);
        alone.push(p.decide(e).keep);
    }
    assert_eq!(f.lines() as usize, lines.len());
    // the byte form decides the same
    let mut b = Vec::new();
    f.encode(&mut b);
    let (g, used) = TraceFacts::decode(f.trace_id().copied(), &b).unwrap();
    assert_eq!(used, b.len());
    assert_eq!(g, f);
    let d = p.decide_trace(&f);
    ((d.keep, p.reason_name(d.reason).to_string()), alone)
}

#[test]
fn the_deciding_line_keeps_the_lines_before_it() {
    let p = Policy::default_policy();
    let lines = [
        json!({"msg": "request started", "level": "info"}),
        json!({"msg": "db query", "level": "debug", "duration_ms": 3}),
        json!({"msg": "request finished", "level": "ERR", "duration_ms": 12}),
    ];
    let (d, alone) = trace(&p, &lines);
    assert_eq!(d, (true, "errors".into()));
    assert_eq!(alone, vec![false, false, true]);
    // latency reads the longest duration of any line
    let lines = [
        json!({"msg": "request started", "level": "info"}),
        json!({"msg": "slow query", "level": "info", "latency_ms": 250}),
        json!({"msg": "request finished", "level": "info", "duration_ms": 40}),
    ];
    assert_eq!(trace(&p, &lines).0, (true, "slow".into()));
    // a fast, clean trace is dropped whole
    let lines = [
        json!({"level": "info", "duration_ms": 20}),
        json!({"level": "warn", "duration_ms": 199}),
    ];
    assert_eq!(trace(&p, &lines).0, (false, "not_sampled".into()));
}

#[test]
fn and_combines_trace_level_verdicts_across_lines() {
    let p = policy(
        "policies:
  - name: slow_checkout
    type: and
    and: {and_sub_policy: [
      {name: svc, type: string_attribute, string_attribute: {key: service, values: [checkout]}},
      {name: lat, type: latency, latency: {threshold_ms: 100}}]}
",
    );
    let lines = [
        json!({"service": "checkout", "duration_ms": 5}),
        json!({"service": "db", "duration_ms": 300}),
    ];
    let (d, alone) = trace(&p, &lines);
    // the tail sampler evaluates each sub-policy over the whole trace
    assert_eq!(d, (true, "slow_checkout".into()));
    assert_eq!(alone, vec![false, false]);
}

#[test]
fn invert_match_is_vetoed_by_any_line_that_matches() {
    let p = policy(
        "policies:
  - name: not_health
    type: string_attribute
    string_attribute: {key: path, values: [/health], invert_match: true}
",
    );
    let lines = [
        json!({"path": "/api"}),
        json!({"path": "/health"}),
        json!({}),
    ];
    let (d, alone) = trace(&p, &lines);
    // collector: invert yields NotSampled when any span has the value
    assert_eq!(d, (false, "not_sampled".into()));
    assert_eq!(alone, vec![true, false, true]);
    assert_eq!(trace(&p, &lines[..1]).0, (true, "not_health".into()));
}

#[test]
fn drop_policies_and_probabilistic_read_the_trace() {
    let p = policy(
        "policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - name: no_bots
    type: drop
    drop: {drop_sub_policy: [{name: bot, type: boolean_attribute, boolean_attribute: {key: bot, value: true}}]}
",
    );
    let lines = [json!({"level": "error"}), json!({"bot": true})];
    assert_eq!(trace(&p, &lines).0, (false, "no_bots".into()));
    let p = policy(
        "policies:
  - {name: ten, type: probabilistic, probabilistic: {sampling_percentage: 25}}
",
    );
    // 0af7651916cd43dd8448eb211c80319c hashes to 0x33bf83d45f51634c: kept at 25 %
    let mut f = TraceFacts::new(Some(
        hex("0af7651916cd43dd8448eb211c80319c").try_into().unwrap(),
    ));
    let e = p.extractor().extract_json(b"{}").unwrap().clone();
    p.observe(&e, &mut f);
    assert!(p.decide_trace(&f).keep);
    let mut f = TraceFacts::new(Some(hex(T).try_into().unwrap()));
    p.observe(&e, &mut f);
    assert!(!p.decide_trace(&f).keep);
}

#[test]
fn fluent_bit_tail_conditions_match_any_span() {
    let p = policy(
        "processors:
  traces:
    - name: sampling
      type: tail
      sampling_settings: {decision_wait: 30s}
      conditions:
        - {type: latency, threshold_ms_high: 500}
        - {type: status_code, status_codes: [ERROR]}
",
    );
    let lines = [json!({"duration_ms": 600}), json!({"level": "info"})];
    assert_eq!(trace(&p, &lines).0 .0, true);
    let lines = [json!({"duration_ms": 60}), json!({"level": "info"})];
    assert_eq!(trace(&p, &lines).0 .0, false);
}

#[test]
fn no_level_and_no_duration_apply_when_no_line_had_one() {
    let p = policy(
        "policies:
  - {name: slow, type: latency, latency: {threshold_ms: 100}}
lockstep: {no_duration: keep, no_level: drop}
",
    );
    let lines = [json!({"level": "info"}), json!({"msg": "x"})];
    assert_eq!(trace(&p, &lines).0, (true, "no_duration".into()));
    let lines = [json!({"level": "info"}), json!({"duration_ms": 20})];
    assert_eq!(trace(&p, &lines).0, (false, "not_sampled".into()));
    let lines = [json!({"duration_ms": 500}), json!({"msg": "x"})];
    assert_eq!(trace(&p, &lines).0, (false, "no_level".into()));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const POLICIES: &[&str] = &[
    lockstep_policy::DEFAULT_POLICY_YAML,
    "policies:
  - {name: s, type: string_attribute, string_attribute: {key: svc, values: [a, b], invert_match: true}}
  - {name: n, type: numeric_attribute, numeric_attribute: {key: code, min_value: 500}}
  - {name: b, type: boolean_attribute, boolean_attribute: {key: ok, value: false}}
  - {name: st, type: status_code, status_code: {status_codes: [OK, UNSET]}}
  - name: x
    type: and
    and: {and_sub_policy: [{name: l, type: latency, latency: {threshold_ms: 10, upper_threshold_ms: 90}},
                           {name: nn, type: not, not: {not_sub_policy: {name: q, type: string_attribute, string_attribute: {key: svc, values: [c]}}}}]}
  - name: d
    type: drop
    drop: {drop_sub_policy: [{name: dd, type: boolean_attribute, boolean_attribute: {key: bot, value: true}}]}
sample_on_first_match: true
",
    "policies:
  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: 40}}
  - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}
lockstep: {no_level: drop}
",
];

fn line() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec![
            "info", "ERR", "debug", "fatal", "LOUD",
        ])),
        prop::option::of(0u32..400),
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec![
            json!(200),
            json!(503),
            json!("502"),
        ])),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        any::<[u8; 16]>(),
    )
        .prop_map(|(lv, d, svc, code, ok, bot, t)| {
            let mut m = serde_json::Map::new();
            let t: String = t.iter().map(|b| format!("{b:02x}")).collect();
            m.insert("trace_id".into(), json!(t));
            if let Some(v) = lv {
                m.insert("level".into(), json!(v));
            }
            if let Some(v) = d {
                m.insert("duration_ms".into(), json!(v));
            }
            if let Some(v) = svc {
                m.insert("svc".into(), json!(v));
            }
            if let Some(v) = code {
                m.insert("code".into(), v);
            }
            if let Some(v) = ok {
                m.insert("ok".into(), json!(v));
            }
            if let Some(v) = bot {
                m.insert("bot".into(), json!(v));
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// A trace of one line is decided exactly as that line alone.
    #[test]
    fn a_one_line_trace_decides_as_the_line(which in 0..POLICIES.len(), l in line()) {
        let p = policy(POLICIES[which]);
        let mut ex = p.extractor();
        let e = ex.extract_json(l.to_string().as_bytes()).unwrap();
        let mut f = TraceFacts::new(e.trace_id());
        p.observe(e, &mut f);
        prop_assert_eq!(p.decide_trace(&f), p.decide(e), "{}", l);
    }

    /// Facts are a join: merging lines in any grouping gives the same facts and the
    /// same decision, and a line merged twice changes nothing.
    #[test]
    fn facts_merge_in_any_order(which in 0..POLICIES.len(), ls in prop::collection::vec(line(), 1..6)) {
        let p = policy(POLICIES[which]);
        let mut ex = p.extractor();
        let mut whole = TraceFacts::new(Some([1; 16]));
        let mut parts = Vec::new();
        for l in &ls {
            let e = ex.extract_json(l.to_string().as_bytes()).unwrap();
            p.observe(e, &mut whole);
            let mut one = TraceFacts::new(Some([1; 16]));
            p.observe(e, &mut one);
            parts.push(one);
        }
        let mut rev = TraceFacts::new(Some([1; 16]));
        for f in parts.iter().rev() {
            let mut b = Vec::new();
            f.encode(&mut b);
            rev.merge(&TraceFacts::decode(Some([1; 16]), &b).unwrap().0);
        }
        prop_assert_eq!(&rev, &whole);
        prop_assert_eq!(p.decide_trace(&rev), p.decide_trace(&whole));
        // A line merged twice (a replayed line) changes no fact and no decision; only
        // the line count adds up.
        let without_count = |f: &TraceFacts| {
            let mut b = Vec::new();
            f.encode(&mut b);
            b.drain(1..5); // flags u8, then lines u32
            b
        };
        for part in &parts {
            let mut twice = whole.clone();
            twice.merge(part);
            prop_assert_eq!(twice.lines(), whole.lines() + 1);
            prop_assert_eq!(without_count(&twice), without_count(&whole));
            prop_assert_eq!(p.decide_trace(&twice), p.decide_trace(&whole));
        }
    }

    #[test]
    fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = TraceFacts::decode(None, &b);
    }
}

#[test]
fn the_samplers_own_timing_is_read_from_the_file() {
    let f = parse_policy(
        "decision_wait: 10s\nnum_traces: 2000\ndecision_cache: {sampled_cache_size: 300, non_sampled_cache_size: 40}\npolicies:\n  - {name: a, type: always_sample}\n",
        Format::Yaml,
        "c.yaml",
    )
    .unwrap();
    assert_eq!(
        f.trace_timing(),
        TraceTiming {
            decision_wait_ms: Some(10_000.0),
            num_traces: Some(2000),
            sampled_cache_size: Some(300),
            non_sampled_cache_size: Some(40),
        }
    );
    let f = parse_policy(
        "processors:\n  traces:\n    - {name: sampling, type: tail, sampling_settings: {decision_wait: 500ms, max_traces: 7}}\n",
        Format::Yaml,
        "fb.yaml",
    )
    .unwrap();
    // 5.1.1 reads `500ms` as 500 whole seconds
    assert_eq!(
        f.trace_timing(),
        TraceTiming {
            decision_wait_ms: Some(500_000.0),
            num_traces: Some(7),
            ..TraceTiming::default()
        }
    );
    let f = parse_policy(lockstep_policy::DEFAULT_POLICY_YAML, Format::Yaml, "d").unwrap();
    assert_eq!(f.trace_timing(), TraceTiming::default());
}
