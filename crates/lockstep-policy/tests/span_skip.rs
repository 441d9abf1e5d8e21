//! `Engine::without_span_ids` (the filter without `annotate`) leaves span ids unread
//! and decides every record as `Engine::new` does, unreadable ones included.

use lockstep_policy::*;
use proptest::prelude::*;
use std::path::Path;

fn golden_lines() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden");
    let mut lines = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&f).unwrap();
                lines.extend(text.lines().map(str::to_string));
            }
        }
    }
    lines.extend(lockstep_record::samples::four_schema_lines());
    lines
}

fn policies() -> Vec<Policy> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../golden");
    let mut out = vec![Policy::default_policy()];
    for d in ["four-schemas", "fluent-bit", "otlp", "unmirrorable"] {
        let p = root.join(d).join("lockstep-policy.yaml");
        let text = std::fs::read_to_string(&p).unwrap();
        out.push(compile_policy(&text, Format::Yaml, &p.display().to_string()).unwrap());
    }
    out.push(
        compile_policy(
            "policies:\n  - name: some\n    type: probabilistic\n    probabilistic: {sampling_percentage: 30}\n",
            Format::Yaml,
            "p.yaml",
        )
        .unwrap(),
    );
    out
}

/// Both engines on one record: same decision, same error, same host-token flag, same
/// trace id. Returns whether the full one read a span id the other left unread.
fn same(full: &mut Engine, skip: &mut Engine, text: &[u8]) -> bool {
    let (d1, e1, h1) = full.decide_host_json(text);
    let (d2, e2, h2) = skip.decide_host_json(text);
    let shown = String::from_utf8_lossy(text);
    assert_eq!(d1, d2, "{shown}");
    assert_eq!(e1.is_some(), e2.is_some(), "{shown}");
    assert_eq!(h1, h2, "{shown}");
    if e1.is_some() {
        return false;
    }
    assert_eq!(
        full.extracted().trace_id(),
        skip.extracted().trace_id(),
        "{shown}"
    );
    full.extracted().span_id().is_some() && skip.extracted().span_id().is_none()
}

#[test]
fn golden_lines_decide_alike_without_span_ids() {
    let lines = golden_lines();
    for p in policies() {
        let mut full = Engine::new(p.clone());
        let mut skip = Engine::without_span_ids(p);
        let mut with_span = 0;
        for l in &lines {
            with_span += usize::from(same(&mut full, &mut skip, l.as_bytes()));
        }
        // Most lines carry a hex span id: leaving them unread is seen, not vacuous.
        assert!(
            with_span > lines.len() / 4,
            "{with_span} of {}",
            lines.len()
        );
    }
}

/// A lone surrogate in a span id's value (or in a key under `span`) makes the record
/// unreadable, read or not (found by review: skipping span keys unmatched had accepted
/// such records).
#[test]
fn escaped_span_values_are_still_checked() {
    for text in [
        r#"{"span_id":"\ud800","level":"info"}"#,
        r#"{"spanId":"\ud83d","level":"info"}"#,
        r#"{"span":{"\ud800":1},"level":"info"}"#,
        r#"{"span":{"id":"\udc00"},"level":"info"}"#,
    ] {
        let mut skip = Engine::without_span_ids(Policy::default_policy());
        let (_, err, _) = skip.decide_host_json(text.as_bytes());
        assert!(err.is_some(), "{text}");
    }
}

#[test]
fn traceparent_still_names_the_trace() {
    let mut skip = Engine::without_span_ids(Policy::default_policy());
    let text = br#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","level":"info"}"#;
    skip.decide_host_json(text);
    assert!(skip.extracted().trace_id().is_some());
}

/// A plain hex span id under a span-only alias is left unread; the same record read by
/// `Engine::new` has it.
#[test]
fn a_plain_span_id_is_left_unread() {
    let text = br#"{"span_id":"d0c6d548d393c5f9","level":"info"}"#;
    let mut skip = Engine::without_span_ids(Policy::default_policy());
    let mut full = Engine::new(Policy::default_policy());
    skip.decide_host_json(text);
    full.decide_host_json(text);
    assert_eq!(skip.extracted().span_id(), None);
    assert!(full.extracted().span_id().is_some());
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""d0c6d548d393c5f9""#.to_string()),
        Just(r#""D0C6D548D393C5F9""#.to_string()),
        Just(r#""not hex at all!""#.to_string()),
        Just(r#""4bf92f3577b34da6a3ce929d0e0e4736""#.to_string()),
        Just(r#""error""#.to_string()),
        Just(r#""\u0041\n""#.to_string()),
        // Lone surrogates: an unreadable record whether or not the span id is read.
        Just(r#""\ud800""#.to_string()),
        Just(r#""\udc00x""#.to_string()),
        Just(r#""\u0064\u0030c6d548d393c5f9""#.to_string()),
        Just(r#"{"\ud800":1}"#.to_string()),
        Just(r#"{"id":"\udc00"}"#.to_string()),
        Just("12345678901234567890".to_string()),
        Just("250.5".to_string()),
        Just("-0".to_string()),
        Just("nan".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just(r#"{"span_id":"d0c6d548d393c5f9","id":7}"#.to_string()),
        Just("[1,{\"a\":[]}]".to_string()),
        "[a-f0-9]{0,20}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("span_id"),
        Just("spanId"),
        Just("span.id"),
        Just("dd.span_id"),
        Just("span"),
        Just("trace_id"),
        Just("traceparent"),
        Just("level"),
        Just("duration_ms"),
        Just("http"),
        Just("msg"),
        Just("span_idx"),
    ]
    .prop_map(str::to_string)
}

proptest! {
    /// Records built from span keys (every alias and near misses) and values of every
    /// kind, whole and cut short: the two engines agree.
    #[test]
    fn random_records_decide_alike(
        members in proptest::collection::vec((key(), value()), 0..8),
        cut in 0usize..400,
    ) {
        let body: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let text = format!("{{{}}}", body.join(","));
        let mut full = Engine::new(Policy::default_policy());
        let mut skip = Engine::without_span_ids(Policy::default_policy());
        same(&mut full, &mut skip, text.as_bytes());
        let cut = cut.min(text.len());
        same(&mut full, &mut skip, &text.as_bytes()[..cut]);
    }
}
