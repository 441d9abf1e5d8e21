//! Fluent Bit 5.1.1's `sampling` processor semantics against
//! shared/facts/fluent-bit-sampling-processor.md, and the import of a Fluent Bit YAML.

use lockstep_policy::import::{detect, import_config, import_fluent_bit, render, Source};
use lockstep_policy::*;
use serde_json::json;

fn policy(yaml: &str) -> Policy {
    compile_policy(yaml, Format::Yaml, "fb.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(yaml: &str) -> String {
    compile_policy(yaml, Format::Yaml, "fb.yaml")
        .err()
        .unwrap_or_else(|| panic!("compiled: {yaml}"))
        .to_string()
}

/// (keep, reason name), through the fast scanner and the serde path alike.
fn decide(p: &Policy, rec: serde_json::Value) -> (bool, String) {
    let mut e = Engine::new(p.clone());
    let text = rec.to_string();
    let (d, scan_err) = e.decide_json(text.as_bytes());
    assert!(scan_err.is_none(), "{scan_err:?}");
    assert_eq!(d, e.decide_de(&rec).unwrap(), "{text}");
    (d.keep, p.reason_name(d.reason).to_string())
}

fn tail(conditions: &str) -> String {
    format!(
        "processors:\n  traces:\n    - name: sampling\n      type: tail\n      sampling_settings: {{decision_wait: 30s}}\n      conditions:\n{conditions}"
    )
}

#[test]
fn latency_is_per_line_with_both_bounds_inclusive() {
    let p = policy(&tail(
        "        - {type: latency, threshold_ms_low: 100, threshold_ms_high: 400}\n",
    ));
    assert!(p.is_fluent_bit());
    let d = |ms: f64| decide(&p, json!({"level": "info", "duration_ms": ms})).0;
    // low keeps the fast lines: 5 ms and 1 ms kept, truncated 100.9 is 100 <= 100
    assert!(d(5.0) && d(1.0) && d(100.0) && d(100.9));
    assert!(!d(101.0) && !d(250.0) && !d(399.999));
    // high: 400 inclusive, 399.999 not
    assert!(d(400.0) && d(400.9) && d(5000.0));
    // seconds and Go duration strings go through the same aliases
    assert!(decide(&p, json!({"duration": 0.4})).0);
    assert!(!decide(&p, json!({"latency": "250ms"})).0);
    // no duration: no latency match
    assert_eq!(
        decide(&p, json!({"level": "info"})),
        (false, "not_sampled".into())
    );
    // 0 disables a side: high only never keeps the fast ones
    let p = policy(&tail("        - {type: latency, threshold_ms_high: 200}\n"));
    assert_eq!(
        decide(&p, json!({"duration_ms": 1})),
        (false, "not_sampled".into())
    );
    assert_eq!(
        decide(&p, json!({"duration_ms": 200})),
        (true, "latency".into())
    );
    // the collector mirror decides 200 ms the other way (exclusive), on the same record
    let col = compile_policy(
        "policies: [{name: slow, type: latency, latency: {threshold_ms: 200}}]",
        Format::Yaml,
        "c",
    )
    .unwrap();
    assert!(!decide(&col, json!({"duration_ms": 200})).0);
}

#[test]
fn conditions_are_a_plain_or_and_no_conditions_keep_everything() {
    let p = policy(&tail(
        "        - {type: status_code, status_codes: [ERROR]}\n        - {type: latency, threshold_ms_high: 200}\n        - {type: latency, threshold_ms_low: 2}\n",
    ));
    assert_eq!(
        p.names().collect::<Vec<_>>(),
        vec!["status_code", "latency", "latency#2"]
    );
    assert_eq!(
        decide(&p, json!({"level": "error", "duration_ms": 50})),
        (true, "status_code".into())
    );
    assert_eq!(
        decide(&p, json!({"level": "info", "duration_ms": 300})),
        (true, "latency".into())
    );
    assert_eq!(
        decide(&p, json!({"level": "info", "duration_ms": 1.5})),
        (true, "latency#2".into())
    );
    assert_eq!(
        decide(&p, json!({"level": "info", "duration_ms": 50})),
        (false, "not_sampled".into())
    );
    // first matching condition in order names the reason
    assert_eq!(
        decide(&p, json!({"level": "error", "duration_ms": 300})),
        (true, "status_code".into())
    );

    let p = policy(
        "processors:\n  traces:\n    - {name: sampling, type: tail, sampling_settings: {}}\n",
    );
    assert_eq!(decide(&p, json!({"level": "debug"})), (true, "tail".into()));
}

#[test]
fn status_codes_are_case_insensitive_and_unset_covers_levelless_lines() {
    let p = policy(&tail(
        "        - {type: status_code, status_codes: [error, Ok]}\n",
    ));
    assert!(decide(&p, json!({"level": "ERR"})).0);
    assert!(decide(&p, json!({"level": "info"})).0);
    assert!(!decide(&p, json!({"msg": "no level"})).0);
    let p = policy(&tail(
        "        - {type: status_code, status_codes: [UNSET]}\n",
    ));
    assert!(decide(&p, json!({"msg": "no level"})).0);
    assert!(!decide(&p, json!({"level": "fatal"})).0);
}

const T_DROP_BOTH: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T_KEEP_50: &str = "5b8aa5a2d2c872e8321cf37308d69df2";
const T_KEEP_10: &str = "19581e27de7ced00ff1ce50b2047e7a5";
const T_EDGE_DROP_10: &str = "00000000000186a0ffffffffffffffff";
const T_EDGE_KEEP_10: &str = "000000000001869fffffffffffffffff";

fn probabilistic(pct: &str) -> Policy {
    policy(&format!(
        "processors:\n  traces:\n    - name: sampling\n      type: probabilistic\n      sampling_settings:\n        sampling_percentage: {pct}\n"
    ))
}

#[test]
fn probabilistic_is_bit_exact_on_the_facts_vectors() {
    let p10 = probabilistic("10");
    let p50 = probabilistic("50");
    let keep = |p: &Policy, t: &str| decide(p, json!({"trace_id": t, "level": "info"})).0;
    for (t, at10, at50) in [
        (T_DROP_BOTH, false, false),
        (T_KEEP_50, false, true),
        (T_KEEP_10, true, true),
        (T_EDGE_DROP_10, false, true),
        (T_EDGE_KEEP_10, true, true),
    ] {
        assert_eq!(keep(&p10, t), at10, "{t} at 10 %");
        assert_eq!(keep(&p50, t), at50, "{t} at 50 %");
        // the id in any supported form: upper case, W3C traceparent, camelCase key
        assert_eq!(keep(&p10, &t.to_uppercase()), at10);
        let tp = format!("00-{t}-00f067aa0ba902b7-01");
        assert_eq!(decide(&p10, json!({"traceparent": tp})).0, at10);
        assert_eq!(decide(&p10, json!({"traceId": t})).0, at10);
    }
    assert_eq!(
        decide(&p10, json!({"trace_id": T_DROP_BOTH})),
        (false, "probabilistic".into())
    );
    assert_eq!(
        decide(&p10, json!({"trace_id": T_KEEP_10})),
        (true, "probabilistic".into())
    );
    // atoi: 10.9 is 10, "50" is 50, the default is 10
    let p109 = probabilistic("10.9");
    assert!(keep(&p109, T_EDGE_KEEP_10) && !keep(&p109, T_EDGE_DROP_10));
    assert!(keep(&probabilistic("\"50\""), T_KEEP_50));
    let pdef = policy("processors:\n  traces:\n    - {name: sampling, type: probabilistic, sampling_settings: {}}\n");
    assert!(keep(&pdef, T_EDGE_KEEP_10) && !keep(&pdef, T_EDGE_DROP_10));
    // Fluent Bit's int: 4294967306 wraps to 10; a float is read by atoi (warned)
    let wrapped = probabilistic("4294967306");
    assert!(keep(&wrapped, T_EDGE_KEEP_10) && !keep(&wrapped, T_EDGE_DROP_10));
    assert!(
        p109.warnings()
            .iter()
            .any(|w| w.contains("write a plain integer")),
        "{:?}",
        p109.warnings()
    );
    assert!(p10.warnings().is_empty());
    // 0 drops everything, 100 keeps everything
    assert!(!keep(&probabilistic("0"), T_KEEP_10));
    assert!(keep(&probabilistic("100"), T_DROP_BOTH));
    // no trace id: hashed as 0 (as Fluent Bit hashes a short id), kept above 0 %
    assert!(decide(&p10, json!({"level": "info"})).0);
    assert!(!decide(&probabilistic("0"), json!({"level": "info"})).0);
}

#[test]
fn processors_chain_as_and_in_pipeline_order() {
    let p = policy(
        "processors:
  traces:
    - name: sampling
      type: probabilistic
      sampling_settings: {sampling_percentage: 50}
    - name: sampling
      type: tail
      sampling_settings: {decision_wait: 5s}
      conditions:
        - {type: status_code, status_codes: [ERROR]}
",
    );
    assert_eq!(
        decide(&p, json!({"trace_id": T_DROP_BOTH, "level": "error"})),
        (false, "probabilistic".into())
    );
    assert_eq!(
        decide(&p, json!({"trace_id": T_KEEP_50, "level": "error"})),
        (true, "status_code".into()),
        "a kept record names the tail condition that matched"
    );
    assert_eq!(
        decide(&p, json!({"trace_id": T_KEEP_50, "level": "info"})),
        (false, "not_sampled".into())
    );
}

#[test]
fn attribute_conditions_are_typed_as_fluent_bit_types_span_attributes() {
    let p = policy(&tail(
        "        - {type: string_attribute, key: http.route, values: [/checkout, /pay]}
        - {type: string_attribute, key: user.id, match_type: exists}
        - {type: numeric_attribute, key: http.status_code, min_value: 500, max_value: 599}
        - {type: numeric_attribute, key: retries, min_value: -10, max_value: -1}
        - {type: boolean_attribute, key: debug, value: true}
",
    ));
    let names: Vec<_> = p.names().collect();
    assert_eq!(
        names,
        vec![
            "string_attribute",
            "string_attribute#2",
            "numeric_attribute",
            "numeric_attribute#2",
            "boolean_attribute"
        ]
    );
    let d = |r: serde_json::Value| decide(&p, r);
    // strict: exact, case-sensitive, strings only
    assert_eq!(
        d(json!({"http": {"route": "/pay"}})),
        (true, "string_attribute".into())
    );
    assert!(!d(json!({"http.route": "/PAY"})).0);
    assert!(!d(json!({"http.route": "/pay/x"})).0);
    // exists: any string value, nothing else
    assert_eq!(
        d(json!({"user.id": "u-1"})),
        (true, "string_attribute#2".into())
    );
    assert!(!d(json!({"user.id": 42})).0);
    // numeric: numbers (int or float) in the inclusive range; never numeric strings
    assert_eq!(
        d(json!({"http.status_code": 503})),
        (true, "numeric_attribute".into())
    );
    assert!(d(json!({"http.status_code": 599.0})).0);
    assert!(d(json!({"http.status_code": 500})).0);
    assert!(!d(json!({"http.status_code": "503"})).0);
    assert!(!d(json!({"http.status_code": 600})).0);
    assert_eq!(
        d(json!({"retries": -3})),
        (true, "numeric_attribute#2".into())
    );
    // boolean: a JSON boolean, never the string "true"
    assert_eq!(
        d(json!({"debug": true})),
        (true, "boolean_attribute".into())
    );
    assert!(!d(json!({"debug": "true"})).0);
    assert!(!d(json!({"debug": false})).0);
    // exists variants
    let p = policy(&tail(
        "        - {type: numeric_attribute, key: n, match_type: exists, min_value: 0, max_value: 0}\n        - {type: boolean_attribute, key: b, match_type: exists, value: false}\n",
    ));
    assert!(decide(&p, json!({"n": 12345})).0);
    assert!(!decide(&p, json!({"n": "1"})).0);
    assert!(decide(&p, json!({"b": false})).0);
    assert!(decide(&p, json!({"b": true})).0, "exists ignores the value");
    assert!(!decide(&p, json!({"b": "false"})).0);
    // where the collector mirror compares numbers as text, Fluent Bit's types do not
    let col = compile_policy(
        "policies: [{name: code, type: string_attribute, string_attribute: {key: code, values: ['404']}}]",
        Format::Yaml,
        "c",
    )
    .unwrap();
    let fb = policy(&tail(
        "        - {type: string_attribute, key: code, values: ['404']}\n",
    ));
    assert!(decide(&col, json!({"code": 404})).0);
    assert!(!decide(&fb, json!({"code": 404})).0);
    assert!(decide(&fb, json!({"code": "404"})).0);
}

#[test]
fn regex_never_matches_as_in_5_1_1_and_says_so() {
    let p = policy(&tail(
        "        - {type: string_attribute, key: path, match_type: regex, values: ['.*']}\n",
    ));
    assert!(!decide(&p, json!({"path": "/anything"})).0);
    // not even a value equal to the pattern matches (a strict match would)
    let p = policy(&tail(
        "        - {type: string_attribute, key: path, match_type: regex, values: ['/admin']}\n",
    ));
    assert!(!decide(&p, json!({"path": "/admin"})).0);
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("regex never matches in Fluent Bit 5.1.1")
                && w.contains("processors.traces[0].conditions[0]")),
        "{:?}",
        p.warnings()
    );
    // Fluent Bit compiles patterns with Onigmo, which takes lookarounds Rust's regex
    // refuses: not compiled here, so not refused.
    let p = policy(&tail(
        "        - {type: string_attribute, key: path, match_type: regex, values: ['(?=a)b']}\n",
    ));
    assert!(!decide(&p, json!({"path": "b"})).0);
}

#[test]
fn surprising_but_accepted_settings_are_warnings() {
    let p = policy(
        "processors:
  traces:
    - name: sampling
      type: tail
      sampling_settings: {decision_wait: 500ms}
    - name: sampling
      type: probabilistic
      conditions: [{type: latency, threshold_ms_high: 1}]
    - name: content_modifier
      action: insert
      key: x
      value: y
  logs:
    - name: content_modifier
",
    );
    let w = p.warnings().join("\n");
    assert!(
        w.contains("\"500ms\" is read by Fluent Bit 5.1.1 as 500 s"),
        "{w}"
    );
    assert!(
        w.contains("processors.traces[1]: no `sampling_settings`: Fluent Bit 5.1.1 crashes"),
        "{w}"
    );
    assert!(w.contains("traces[1].conditions: ignored"), "{w}");
    assert!(w.contains("processor \"content_modifier\""), "{w}");
    assert!(w.contains("processors.logs: not trace processors"), "{w}");
    assert_eq!(p.names().collect::<Vec<_>>(), vec!["tail", "probabilistic"]);
    // collector files have no warnings
    assert!(Policy::default_policy().warnings().is_empty());
}

#[test]
fn what_fluent_bit_refuses_is_refused_with_its_complaint() {
    let cases: &[(&str, &str)] = &[
        (
            "processors:\n  traces:\n    - {name: sampling, type: tail, sampling_settings: {sampling_percentage: 5}}\n",
            "tail: unknown configuration property 'sampling_percentage'. The following properties are allowed: decision_wait, max_traces, and legacy_reconcile.",
        ),
        (
            "processors:\n  traces:\n    - {name: sampling, type: probabilistic, sampling_settings: {max_traces: 5}}\n",
            "allowed: sampling_percentage.",
        ),
        (
            "processors:\n  traces:\n    - {name: sampling, type: test, sampling_settings: {}}\n",
            "no plugin context found for sampling type 'test'",
        ),
        (
            "processors:\n  traces:\n    - {name: sampling, sampling_settings: {}}\n",
            "`type` is mandatory",
        ),
        (&tail("        - {type: latency, threshold_ms_high: \"400\"}\n"), "threshold_ms_high must be an unsigned integer"),
        (&tail("        - {type: latency, threshold_ms_low: 0}\n"), "either threshold_ms_low or threshold_ms_high must be set"),
        (&tail("        - {type: numeric_attribute, key: k, min_value: 5, max_value: 1}\n"), "'min_value' must be less than 'max_value'"),
        (&tail("        - {type: numeric_attribute, key: k, min_value: 1.5, max_value: 9}\n"), "min_value must be an integer"),
        (&tail("        - {type: numeric_attribute, key: k, max_value: 9}\n"), "missing 'min_value'"),
        (&tail("        - {type: boolean_attribute, key: k, value: \"true\"}\n"), "value must be true or false"),
        (&tail("        - {type: string_attribute, key: k}\n"), "values must be an array"),
        (&tail("        - {type: string_attribute, key: k, match_type: fuzzy, values: [a]}\n"), "invalid match_type 'fuzzy'"),
        (&tail("        - {type: status_code, status_codes: [BROKEN]}\n"), "unknown status code"),
        (&tail("        - {type: span_count, min_spans: 1, max_spans: 2}\n"), "span_count cannot be mirrored onto logs"),
        (&tail("        - {type: trace_state, values: [a=b]}\n"), "trace_state cannot be mirrored onto logs"),
        (&tail("        - {type: everything}\n"), "unknown condition type 'everything'"),
        (&tail("        - {type: boolean_attribute, key: k, match_type: exists}\n"), "missing boolean 'value' in condition"),
        (
            "processors:\n  traces:\n    - name: sampling\n      type: tail\n      sampling_settings:\n",
            "rules must be a map",
        ),
        (
            "processors:\n  traces:\n    - {name: sampling, type: probabilistic, sampling_settings: {}, conditions: [{type: latency}]}\n",
            "processors.traces[0].conditions[0]: either threshold_ms_low or threshold_ms_high must be set",
        ),
        (
            "processors:\n  traces:\n    - {name: content_modifier}\n",
            "no `name: sampling` processor",
        ),
        (
            "policies: [{name: a, type: always_sample}]\nprocessors:\n  traces:\n    - {name: sampling, type: tail, sampling_settings: {}}\n",
            "either `policies:`",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(yaml);
        assert!(e.contains(want), "{yaml}\n=> {e}\nwanted: {want}");
        assert!(e.starts_with("fb.yaml: "), "names the file: {e}");
    }
    // errors name the condition's path
    let e = err(&tail(
        "        - {type: status_code, status_codes: [ERROR]}\n        - {type: latency}\n",
    ));
    assert!(e.contains("processors.traces[0].conditions[1]"), "{e}");
}

#[test]
fn json_policy_files_and_lockstep_settings_apply() {
    let text = r#"{"processors":{"traces":[{"name":"sampling","type":"tail","sampling_settings":{},
        "conditions":[{"type":"latency","threshold_ms_high":200}]}]},
        "lockstep":{"no_trace_id":"drop","fields":{"duration":{"aliases":[{"key":"took","unit":"s"}]}}}}"#;
    let p = compile_policy(text, Format::Json, "fb.json").unwrap();
    assert_eq!(
        decide(&p, json!({"took": 0.3})),
        (false, "no_trace_id".into())
    );
    assert_eq!(
        decide(&p, json!({"took": 0.3, "trace_id": T_KEEP_10})),
        (true, "latency".into())
    );
}

const FLUENT_BIT_YAML: &str = r#"
service:
  flush: 1
  log_level: info
pipeline:
  inputs:
    - name: opentelemetry
      alias: otel_edge
      listen: 127.0.0.1
      port: 4318
      processors:
        traces:
          - name: sampling
            type: tail
            sampling_settings:
              decision_wait: 30s
              max_traces: 50000
            conditions:
              - type: status_code
                status_codes: [ERROR]
              - type: latency
                threshold_ms_high: 400
              - type: latency
                threshold_ms_low: 5
              - type: string_attribute
                key: http.route
                values: [/checkout]
              - type: string_attribute
                key: enduser.id
                match_type: exists
              - type: string_attribute
                key: http.target
                match_type: regex
                values: ["^/admin"]
              - type: numeric_attribute
                key: http.status_code
                min_value: 500
                max_value: 599
              - type: boolean_attribute
                key: sampling.priority
                value: true
              - type: span_count
                min_spans: 2
                max_spans: 50
              - type: trace_state
                values: ["sampled=yes"]
        logs:
          - name: content_modifier
            action: insert
            key: edge
            value: node-1
    - name: opentelemetry
      alias: otel_batch
      port: 4319
      processors:
        traces:
          - name: content_modifier
            action: insert
            key: pipeline
            value: batch
          - name: sampling
            type: probabilistic
            sampling_settings:
              sampling_percentage: 10
    - name: tail
      path: /var/log/app/*.log
  outputs:
    - name: stdout
      match: "*"
"#;

#[test]
fn import_a_realistic_fluent_bit_config() {
    assert_eq!(
        detect(FLUENT_BIT_YAML, Format::Yaml, "fluent-bit.yaml").unwrap(),
        Source::FluentBit
    );
    let procs = import_fluent_bit(FLUENT_BIT_YAML, Format::Yaml, "fluent-bit.yaml").unwrap();
    let ids: Vec<_> = procs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["pipeline.inputs[0]", "pipeline.inputs[1]"]);
    let tail = &procs[0];
    assert!(
        tail.matches("otel_edge")
            && tail.matches("pipeline.inputs[0]")
            && !tail.matches("otel_batch")
    );
    assert_eq!(tail.converted.len(), 8, "{:?}", tail.converted);
    // the decision_wait to pair lockstep_loki with (5.1.1 reads whole seconds)
    assert!(
        tail.notes.iter().any(|n| n
            .starts_with("processors.traces[0].sampling_settings.decision_wait")
            && n.contains("decision_wait 30s with policy_file, 45s with decision_feed")),
        "{:?}",
        tail.notes
    );
    let skipped: Vec<(&str, &str)> = tail
        .skipped
        .iter()
        .map(|s| (s.kind.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("span_count", "processors.traces[0].conditions[8]"),
            ("trace_state", "processors.traces[0].conditions[9]"),
        ]
    );
    assert!(
        tail.skipped[0]
            .reason
            .contains("no single log record carries it"),
        "{:?}",
        tail.skipped
    );
    let notes = tail.notes.join("\n");
    assert!(notes.contains("regex never matches"), "{notes}");
    assert!(
        notes.contains("latency reads each record's own duration"),
        "{notes}"
    );

    // The rendered file compiles and decides as Fluent Bit's conditions do.
    let text = render(tail).unwrap();
    assert!(
        text.contains("# NOT mirrored") && text.contains("span_count"),
        "{text}"
    );
    let p = policy(&text);
    assert!(p.is_fluent_bit());
    assert_eq!(p.names().count(), 8);
    let d = |r: serde_json::Value| decide(&p, r).0;
    assert!(d(json!({"level": "error"})));
    assert!(d(json!({"duration_ms": 400})));
    assert!(d(json!({"duration_ms": 5.9})));
    assert!(!d(json!({"duration_ms": 6})));
    assert!(d(json!({"http.route": "/checkout"})));
    assert!(d(json!({"enduser.id": "alice"})));
    assert!(
        !d(json!({"http.target": "/admin/users"})),
        "regex never matches"
    );
    assert!(d(json!({"http.status_code": 502})));
    assert!(d(json!({"sampling.priority": true})));
    assert!(!d(
        json!({"level": "info", "duration_ms": 50, "http.route": "/cart"})
    ));

    let prob = &procs[1];
    assert!(prob.matches("otel_batch"));
    assert!(prob.skipped.is_empty());
    assert!(
        prob.notes.iter().any(|n| n.contains("content_modifier")),
        "{:?}",
        prob.notes
    );
    let p = policy(&render(prob).unwrap());
    assert_eq!(p.names().collect::<Vec<_>>(), vec!["probabilistic"]);
    assert!(decide(&p, json!({"trace_id": T_KEEP_10})).0);
    assert!(!decide(&p, json!({"trace_id": T_KEEP_50})).0);

    // import_config detects the kind; --from forces it
    let (src, procs2) = import_config(FLUENT_BIT_YAML, Format::Yaml, "f", None).unwrap();
    assert_eq!((src, procs2.len()), (Source::FluentBit, 2));
    let (_, as_collector) =
        import_config(FLUENT_BIT_YAML, Format::Yaml, "f", Some(Source::Collector)).unwrap();
    assert!(as_collector.is_empty());
}

#[test]
fn import_refuses_what_it_cannot_mirror_whole() {
    // A tail whose only conditions cannot be decided from a log line would become a
    // keep-everything tail: nothing is written.
    let y = "pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {}\n            conditions:\n              - {type: span_count, min_spans: 1, max_spans: 3}\n";
    let procs = import_fluent_bit(y, Format::Yaml, "f.yaml").unwrap();
    assert_eq!(procs.len(), 1);
    assert!(procs[0].is_empty());
    assert_eq!(procs[0].skipped.len(), 1);
    assert!(
        procs[0]
            .notes
            .iter()
            .any(|n| n.contains("would keep every trace")),
        "{:?}",
        procs[0].notes
    );
    // A processor Fluent Bit refuses: listed, nothing written.
    let y = "pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {window: 5}\n";
    let procs = import_fluent_bit(y, Format::Yaml, "f.yaml").unwrap();
    assert!(procs[0].is_empty());
    assert!(
        procs[0].skipped[0]
            .reason
            .contains("unknown configuration property 'window'"),
        "{:?}",
        procs[0].skipped
    );
    // A condition Fluent Bit refuses: listed, and nothing is written (the config would not start).
    let y = "pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {}\n            conditions:\n              - {type: status_code, status_codes: [ERROR]}\n              - {type: latency}\n";
    let procs = import_fluent_bit(y, Format::Yaml, "f.yaml").unwrap();
    assert!(procs[0].is_empty(), "{:?}", procs[0]);
    assert!(
        procs[0].skipped[0].reason.contains("refuses to start"),
        "{:?}",
        procs[0].skipped
    );
    // A tail under an output: imported, with the crash noted.
    let y = "pipeline:\n  outputs:\n    - name: stdout\n      match: '*'\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {}\n            conditions: [{type: status_code, status_codes: [ERROR]}]\n";
    let procs = import_fluent_bit(y, Format::Yaml, "f.yaml").unwrap();
    assert_eq!(procs[0].id, "pipeline.outputs[0]");
    assert!(!procs[0].is_empty());
    assert!(
        procs[0].notes.iter().any(|n| n.contains("SIGSEGV")),
        "{:?}",
        procs[0].notes
    );
}

#[test]
fn detect_tells_the_formats_apart() {
    let classic = "# edge\n[SERVICE]\n    Flush 1\n[INPUT]\n    Name opentelemetry\n";
    let e = detect(classic, Format::Yaml, "fluent-bit.conf")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("fluent-bit.conf: a classic Fluent Bit .conf cannot hold processors"),
        "{e}"
    );
    let e = import_config(
        classic,
        Format::Yaml,
        "fluent-bit.conf",
        Some(Source::FluentBit),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot hold processors"), "{e}");
    let col = "processors:\n  tail_sampling:\n    policies: []\nservice:\n  pipelines:\n    traces: {processors: [tail_sampling]}\n";
    assert_eq!(detect(col, Format::Yaml, "c").unwrap(), Source::Collector);
    let both = "pipeline: {inputs: []}\nprocessors: {tail_sampling: {}}\n";
    assert!(detect(both, Format::Yaml, "b")
        .unwrap_err()
        .to_string()
        .contains("--from"));
    let neither = "foo: 1\n";
    assert!(detect(neither, Format::Yaml, "n")
        .unwrap_err()
        .to_string()
        .contains("--from"));
}
