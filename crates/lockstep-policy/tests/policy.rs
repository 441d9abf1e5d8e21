//! Policy semantics against the collector's rules (shared/facts/tail-sampling.md).

use lockstep_policy::import::{import_collector, render};
use lockstep_policy::*;
use serde_json::json;

fn engine(yaml: &str) -> Engine {
    Engine::new(compile_policy(yaml, Format::Yaml, "test.yaml").unwrap())
}

/// (keep, reason name)
fn decide(e: &mut Engine, rec: serde_json::Value) -> (bool, String) {
    let text = rec.to_string();
    let (d, err) = e.decide_json(text.as_bytes());
    assert!(err.is_none(), "{err:?}");
    // the serde path decides the same
    let d2 = e.decide_de(&rec).unwrap();
    assert_eq!(d, d2, "{text}");
    (d.keep, e.policy().reason_name(d.reason).to_string())
}

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn default_policy_keeps_errors_and_slow() {
    let mut e = Engine::new(Policy::default_policy());
    assert_eq!(
        decide(&mut e, json!({"level": "error", "duration_ms": 5})),
        (true, "errors".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "ERR"})),
        (true, "errors".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration_ms": 201})),
        (true, "slow".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration": 0.25})),
        (true, "slow".into())
    );
    // exclusive by default (collector >= 0.157), and truncated to whole ms
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration_ms": 200})),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration_ms": 200.9})),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration_ms": 12})),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&mut e, json!({"msg": "no fields"})),
        (false, "not_sampled".into())
    );
    // unreadable record: fail open
    let (d, err) = e.decide_json(b"{\"level\":\"info\",bad}");
    assert!(err.is_some());
    assert!(d.keep);
    assert_eq!(e.policy().reason_name(d.reason), "unparsed");
}

#[test]
fn built_in_default_matches_its_documented_yaml() {
    let doc = compile_policy(DEFAULT_POLICY_YAML, Format::Yaml, "doc").unwrap();
    let built = Policy::default_policy();
    assert_eq!(
        doc.names().collect::<Vec<_>>(),
        built.names().collect::<Vec<_>>()
    );
    let (mut a, mut b) = (Engine::new(doc), Engine::new(built));
    for rec in [
        json!({"level": "error"}),
        json!({"duration_ms": 201}),
        json!({"duration_ms": 200}),
        json!({"level": "info"}),
    ] {
        assert_eq!(decide(&mut a, rec.clone()), decide(&mut b, rec));
    }
}

#[test]
fn latency_inclusive_and_upper_bound() {
    let incl = "lockstep: {latency_threshold: inclusive}\npolicies: [{name: slow, type: latency, latency: {threshold_ms: 200}}]";
    let mut e = engine(incl);
    assert!(decide(&mut e, json!({"duration_ms": 200})).0);
    assert!(!decide(&mut e, json!({"duration_ms": 199.9})).0);
    // seconds that are not exact in binary truncate as their nanoseconds would
    let mut e = engine("policies: [{name: s, type: latency, latency: {threshold_ms: 1000}}]");
    assert!(decide(&mut e, json!({"duration": 1.001})).0);
    assert!(!decide(&mut e, json!({"duration": 1.0009999})).0);
    let band = "policies: [{name: band, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 300}}]";
    let mut e = engine(band);
    assert!(!decide(&mut e, json!({"duration_ms": 100})).0);
    assert!(decide(&mut e, json!({"duration_ms": 101})).0);
    assert!(decide(&mut e, json!({"duration_ms": 300})).0);
    assert!(!decide(&mut e, json!({"duration_ms": 301})).0);
}

#[test]
fn status_codes_map_to_levels() {
    let mut e =
        engine("policies: [{name: ok, type: status_code, status_code: {status_codes: [OK]}}]");
    assert!(decide(&mut e, json!({"level": "info"})).0);
    assert!(!decide(&mut e, json!({"level": "fatal"})).0);
    assert!(!decide(&mut e, json!({"msg": "no level"})).0);
    let mut e = engine(
        "policies: [{name: unset, type: status_code, status_code: {status_codes: [UNSET]}}]",
    );
    assert!(decide(&mut e, json!({"msg": "no level"})).0);
    assert!(decide(&mut e, json!({"level": "LOUD"})).0);
    assert!(!decide(&mut e, json!({"level": "error"})).0);
    assert!(matches!(
        compile_policy(
            "policies: [{name: x, type: status_code, status_code: {status_codes: [BAD]}}]",
            Format::Yaml,
            "p"
        ),
        Err(_)
    ));
}

#[test]
fn probabilistic_is_bit_exact() {
    let p10 =
        "policies: [{name: ten, type: probabilistic, probabilistic: {sampling_percentage: 10}}]";
    let p25 =
        "policies: [{name: q, type: probabilistic, probabilistic: {sampling_percentage: 25}}]";
    let mut e10 = engine(p10);
    let mut e25 = engine(p25);
    let a = "0af7651916cd43dd8448eb211c80319c";
    assert!(!decide(&mut e10, json!({"trace_id": a})).0);
    assert!(decide(&mut e25, json!({"trace_id": a})).0);
    assert!(!decide(&mut e10, json!({"trace_id": T})).0);
    assert!(
        decide(
            &mut e10,
            json!({"trace_id": "ffffffffffffffffffffffffffffffff"})
        )
        .0
    );
    // the same trace in any id form decides the same
    assert!(
        decide(
            &mut e10,
            json!({"traceparent": "00-ffffffffffffffffffffffffffffffff-00f067aa0ba902b7-01"})
        )
        .0
    );
    // a salt changes the hash: over many ids, about 10 % kept, and different ones
    let salted = "policies: [{name: s, type: probabilistic, probabilistic: {sampling_percentage: 10, hash_salt: other}}]";
    let mut es = engine(salted);
    let (mut k, mut ks, mut differ) = (0, 0, 0);
    for i in 0..2000u64 {
        let id = format!("{:016x}{:016x}", i.wrapping_mul(0x9e3779b97f4a7c15), i + 1);
        let a = decide(&mut e10, json!({"trace_id": id})).0;
        let b = decide(&mut es, json!({"trace_id": id})).0;
        k += a as u32;
        ks += b as u32;
        differ += (a != b) as u32;
    }
    assert!((150..250).contains(&k), "{k}");
    assert!((150..250).contains(&ks), "{ks}");
    assert!(differ > 100);
    // no trace id: the rule cannot evaluate and is skipped (counted)
    let text = json!({"level": "info"}).to_string();
    let (d, _) = e10.decide_json(text.as_bytes());
    assert!(!d.keep);
    assert_eq!(d.skipped, 1);
}

#[test]
fn attribute_rules() {
    let y = r#"
policies:
  - {name: post, type: string_attribute, string_attribute: {key: http.method, values: [POST, PUT]}}
  - {name: checkout, type: string_attribute, string_attribute: {key: service.name, values: ["check"], enabled_regex_matching: true}}
  - {name: fivexx, type: numeric_attribute, numeric_attribute: {key: status, min_value: 500, max_value: 599}}
  - {name: flagged, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}
"#;
    let mut e = engine(y);
    assert_eq!(
        decide(&mut e, json!({"http": {"method": "POST"}})),
        (true, "post".into())
    );
    assert_eq!(
        decide(&mut e, json!({"http.method": "GET"})),
        (false, "not_sampled".into())
    );
    // regex is unanchored
    assert_eq!(
        decide(&mut e, json!({"service.name": "my-checkout-svc"})),
        (true, "checkout".into())
    );
    assert_eq!(
        decide(&mut e, json!({"status": 500})),
        (true, "fivexx".into())
    );
    assert_eq!(
        decide(&mut e, json!({"status": 599.0})),
        (true, "fivexx".into())
    );
    assert_eq!(
        decide(&mut e, json!({"status": "503"})),
        (true, "fivexx".into())
    );
    assert_eq!(
        decide(&mut e, json!({"status": 600})),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&mut e, json!({"debug": true})),
        (true, "flagged".into())
    );
    assert_eq!(
        decide(&mut e, json!({"debug": false})),
        (false, "not_sampled".into())
    );
    // numbers compared as their text by string_attribute
    let mut e = engine("policies: [{name: code, type: string_attribute, string_attribute: {key: code, values: ['404']}}]");
    assert!(decide(&mut e, json!({"code": 404})).0);
    // invert_match: absent or unmatched samples, matched does not
    let mut e = engine("policies: [{name: not-health, type: string_attribute, string_attribute: {key: path, values: [/health], invert_match: true}}]");
    assert!(decide(&mut e, json!({"path": "/api"})).0);
    assert!(decide(&mut e, json!({"msg": "x"})).0);
    assert!(!decide(&mut e, json!({"path": "/health"})).0);
}

#[test]
fn composition_and_precedence() {
    let y = r#"
policies:
  - name: slow-post
    type: and
    and: {and_sub_policy: [
      {name: s, type: latency, latency: {threshold_ms: 100}},
      {name: p, type: string_attribute, string_attribute: {key: method, values: [POST]}}]}
  - name: not-debug
    type: not
    not: {not_sub_policy: {name: d, type: status_code, status_code: {status_codes: [OK, UNSET]}}}
  - name: drop-health
    type: drop
    drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: path, values: [/health]}}]}
"#;
    let mut e = engine(y);
    assert_eq!(
        decide(
            &mut e,
            json!({"duration_ms": 150, "method": "POST", "level": "info"})
        ),
        (true, "slow-post".into())
    );
    assert_eq!(
        decide(
            &mut e,
            json!({"duration_ms": 150, "method": "GET", "level": "info"})
        ),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "error"})),
        (true, "not-debug".into())
    );
    // Dropped beats Sampled, whatever the order
    assert_eq!(
        decide(&mut e, json!({"level": "error", "path": "/health"})),
        (false, "drop-health".into())
    );
}

#[test]
fn sample_on_first_match_and_reason_order() {
    let y = "sample_on_first_match: true\npolicies:\n  - {name: a, type: always_sample}\n  - {name: b, type: status_code, status_code: {status_codes: [ERROR]}}";
    let mut e = engine(y);
    assert_eq!(
        decide(&mut e, json!({"level": "error"})),
        (true, "a".into())
    );
}

#[test]
fn missing_field_settings() {
    let y = "lockstep: {no_trace_id: drop, no_level: keep}\npolicies: [{name: all, type: always_sample}]";
    let mut e = engine(y);
    assert_eq!(
        decide(&mut e, json!({"level": "info"})),
        (false, "no_trace_id".into())
    );
    assert_eq!(
        decide(&mut e, json!({"trace_id": "bad", "level": "info"})),
        (false, "no_trace_id".into())
    );
    assert_eq!(
        decide(&mut e, json!({"trace_id": T})),
        (true, "no_level".into())
    );
    assert_eq!(
        decide(&mut e, json!({"trace_id": T, "level": "info"})),
        (true, "all".into())
    );
    let mut e = engine("lockstep: {no_duration: keep, on_error: drop}\npolicies: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]");
    assert_eq!(
        decide(&mut e, json!({"level": "info"})),
        (true, "no_duration".into())
    );
    let (d, _) = e.decide_json(b"not json");
    assert!(!d.keep);
}

#[test]
fn field_aliases_from_the_policy_file() {
    let y = r#"
lockstep:
  fields:
    duration: {aliases: [{key: dur, unit: s}]}
    level: {aliases: [{key: sev, numbers: syslog}]}
    nested_json: [log]
policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 200}}
"#;
    let mut e = engine(y);
    assert_eq!(decide(&mut e, json!({"dur": 0.3})), (true, "slow".into()));
    assert_eq!(decide(&mut e, json!({"sev": 3})), (true, "errors".into()));
    assert_eq!(
        decide(&mut e, json!({"log": "{\"level\":\"error\"}"})),
        (true, "errors".into())
    );
}

#[test]
fn errors_name_file_line_column_and_key() {
    let e = compile_policy(
        "policies:\n  - name: x\n    type: latency\n    latency: {threshold: 5}\n",
        Format::Yaml,
        "p.yaml",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("p.yaml:"), "{msg}");
    assert!(msg.contains("threshold"), "{msg}");
    assert_eq!(e.location().map(|l| l.0), Some(4), "{msg}");
    let e = compile_policy("{\"policies\": [}", Format::Json, "p.json").unwrap_err();
    assert_eq!(e.location(), Some((1, 15)), "{e}");
    let e = compile_policy(
        "policies: [{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}]",
        Format::Yaml,
        "p.yaml",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("p.yaml") && msg.contains("policies[0]") && msg.contains("stateful"),
        "{msg}"
    );
    let e = compile_policy("polices: []", Format::Yaml, "p.yaml").unwrap_err();
    assert!(e.to_string().contains("polices"), "{e}");
    let e = compile_policy(
        "policies: [{name: a, type: latency, latency: {threshold_ms: 5}, colour: red}]",
        Format::Yaml,
        "p.yaml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    // a pasted collector block with its non-policy keys is fine
    compile_policy(
        "decision_wait: 10s\nnum_traces: 100\npolicies: [{name: a, type: always_sample}]",
        Format::Yaml,
        "p.yaml",
    )
    .unwrap();
}

const COLLECTOR: &str = r#"
receivers:
  otlp: {protocols: {grpc: {}}}
processors:
  batch: {}
  tail_sampling:
    decision_wait: 10s
    num_traces: 50000
    sample_on_first_match: true
    policies:
      - name: errors-policy
        type: status_code
        status_code: {status_codes: [ERROR]}
      - name: slow-traces
        type: latency
        latency: {threshold_ms: 200}
      - name: rate
        type: rate_limiting
        rate_limiting: {spans_per_second: 35}
      - name: baseline
        type: probabilistic
        probabilistic: {sampling_percentage: 10}
      - name: big
        type: span_count
        span_count: {min_spans: 50}
      - name: combo
        type: and
        and:
          and_sub_policy:
            - name: svc
              type: string_attribute
              string_attribute: {key: service.name, values: [checkout]}
            - name: st
              type: trace_state
              trace_state: {key: vendor, values: [x]}
      - name: composite-policy
        type: composite
        composite: {max_total_spans_per_second: 1000}
      - name: cond
        type: ottl_condition
        ottl_condition: {span: ['attributes["x"] == 1']}
      - name: health
        type: drop
        drop:
          drop_sub_policy:
            - {name: h, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}
  tail_sampling/other:
    policies: [{name: all, type: always_sample}]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling, batch]
"#;

#[test]
fn import_realistic_collector_config() {
    let procs = import_collector(COLLECTOR, Format::Yaml, "otelcol.yaml").unwrap();
    assert_eq!(procs.len(), 2);
    let p = procs.iter().find(|p| p.id == "tail_sampling").unwrap();
    assert_eq!(p.pipelines, vec!["traces"]);
    assert_eq!(
        p.converted,
        vec!["errors-policy", "slow-traces", "baseline", "health"]
    );
    let skipped: Vec<(&str, &str)> = p
        .skipped
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("rate", "rate_limiting"),
            ("big", "span_count"),
            ("combo", "and"),
            ("composite-policy", "composite"),
            ("cond", "ottl_condition")
        ]
    );
    let combo = &p.skipped[2];
    assert!(
        combo.reason.contains("\"st\"") && combo.path.contains("and_sub_policy[1]"),
        "{combo:?}"
    );
    assert!(p.policy.sample_on_first_match);
    // the decision_wait to pair with: the sampler's with policy_file, + 15 s with a feed
    assert!(
        p.notes.iter().any(|n| n.starts_with("decision_wait")
            && n.contains("decision_wait 10s with policy_file, 25s with decision_feed")),
        "{:?}",
        p.notes
    );
    let other = procs
        .iter()
        .find(|p| p.id == "tail_sampling/other")
        .unwrap();
    assert!(
        other
            .notes
            .iter()
            .any(|n| n.contains("default 30s") && n.contains("45s with decision_feed")),
        "{:?}",
        other.notes
    );
    // the rendered policy loads and behaves like the collector's mirrorable part
    let text = render(p).unwrap();
    assert!(
        text.contains("# NOT mirrored") && text.contains("rate (rate_limiting"),
        "{text}"
    );
    let mut e = Engine::new(compile_policy(&text, Format::Yaml, "imported.yaml").unwrap());
    assert_eq!(
        decide(&mut e, json!({"level": "error"})),
        (true, "errors-policy".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "error", "http.route": "/healthz"})),
        (false, "health".into())
    );
    assert_eq!(
        decide(&mut e, json!({"level": "info", "duration_ms": 250})),
        (true, "slow-traces".into())
    );
}
