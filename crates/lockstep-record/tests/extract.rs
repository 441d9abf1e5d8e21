//! Extraction through both input paths: every id form, level variant and duration
//! unit, precedence, nested JSON, and the property that both paths agree.

use lockstep_record::ids::to_hex;
use lockstep_record::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const S: &str = "00f067aa0ba902b7";

fn extractor(attrs: &[&str]) -> Extractor {
    let keys: Vec<String> = attrs.iter().map(|s| s.to_string()).collect();
    Extractor::new(Matcher::new(FieldTable::default(), &keys).unwrap())
}

fn nested_extractor() -> Extractor {
    let t = FieldTable {
        nested_json: vec!["log".into()],
        ..FieldTable::default()
    };
    Extractor::new(Matcher::new(t, &["http.method".into()]).unwrap())
}

/// Everything observable about an extraction, for comparing paths.
#[derive(Debug, PartialEq)]
struct Summary {
    trace: IdState<16>,
    span: IdState<8>,
    level: LevelState,
    duration: DurationState,
    sources: [Option<usize>; 4],
    level_raw: String,
    attrs: Vec<String>,
}

fn summary(e: &Extracted) -> Summary {
    Summary {
        trace: e.trace_state(),
        span: e.span_state(),
        level: e.level,
        duration: e.duration,
        sources: [
            e.trace_source(),
            e.span_source(),
            e.level_source(),
            e.duration_source(),
        ],
        level_raw: e.level_raw().to_string(),
        attrs: (0..e.attr_count())
            .map(|i| format!("{:?}", e.attr(i)))
            .collect(),
    }
}

/// Runs the fast path and the serde path (JSON text and msgpack) and checks they agree.
fn both(ex: &mut Extractor, v: &Value) -> Summary {
    let text = serde_json::to_string(v).unwrap();
    let fast = summary(ex.extract_json(text.as_bytes()).unwrap());
    let via_value = summary(ex.extract_value(v).unwrap());
    assert_eq!(fast, via_value, "fast vs Value path on {text}");
    let mp = rmp_serde::to_vec(v).unwrap();
    let via_msgpack = summary(
        ex.extract_de(&mut rmp_serde::Deserializer::new(&mp[..]))
            .unwrap(),
    );
    assert_eq!(fast, via_msgpack, "fast vs msgpack path on {text}");
    fast
}

fn trace_hex(s: &Summary) -> Option<String> {
    match s.trace {
        IdState::Valid(t) => Some(to_hex(&t)),
        _ => None,
    }
}
fn span_hex(s: &Summary) -> Option<String> {
    match s.span {
        IdState::Valid(t) => Some(to_hex(&t)),
        _ => None,
    }
}

#[test]
fn every_trace_context_form() {
    let mut ex = extractor(&[]);
    let dd = u64::from_str_radix(&T[16..], 16).unwrap();
    let cases = vec![
        (json!({"trace_id": T, "span_id": S}), T.to_string(), Some(S)),
        (
            json!({"traceId": T.to_uppercase(), "spanId": S}),
            T.to_string(),
            Some(S),
        ),
        (json!({"traceID": T, "spanID": S}), T.to_string(), Some(S)),
        (json!({"trace.id": T, "span.id": S}), T.to_string(), Some(S)),
        (
            json!({"trace": {"id": T}, "span": {"id": S}}),
            T.to_string(),
            Some(S),
        ),
        (
            json!({"traceparent": format!("00-{T}-{S}-01")}),
            T.to_string(),
            Some(S),
        ),
        (
            json!({"dd.trace_id": dd, "dd.span_id": dd}),
            format!("{:032x}", dd),
            Some("a3ce929d0e0e4736"),
        ),
        (
            json!({"dd": {"trace_id": dd.to_string(), "span_id": "1"}}),
            format!("{:032x}", dd),
            Some("0000000000000001"),
        ),
        (
            json!({"logging.googleapis.com/trace": format!("projects/p1/traces/{T}"), "logging.googleapis.com/spanId": S}),
            T.to_string(),
            Some(S),
        ),
        (
            json!({"X-B3-TraceId": &T[16..], "X-B3-SpanId": S}),
            format!("0000000000000000{}", &T[16..]),
            Some(S),
        ),
    ];
    for (rec, want_t, want_s) in cases {
        let s = both(&mut ex, &rec);
        assert_eq!(trace_hex(&s).as_deref(), Some(want_t.as_str()), "{rec}");
        assert_eq!(span_hex(&s).as_deref(), want_s, "{rec}");
    }
}

#[test]
fn invalid_ids_are_reported_never_guessed() {
    let mut ex = extractor(&[]);
    let cases = vec![
        (
            json!({"trace_id": "00000000000000000000000000000000"}),
            IdError::AllZero,
        ),
        (
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e473"}),
            IdError::WrongLength(31),
        ),
        (
            json!({"trace_id": "zbf92f3577b34da6a3ce929d0e0e4736"}),
            IdError::NotHex,
        ),
        (json!({"trace_id": 12345}), IdError::NotAString),
        (json!({"dd.trace_id": -3}), IdError::NotDecimal),
    ];
    for (rec, e) in cases {
        assert_eq!(both(&mut ex, &rec).trace, IdState::Invalid(e), "{rec}");
    }
    let s = both(&mut ex, &json!({"traceparent": format!("ff-{T}-{S}-01")}));
    assert!(matches!(s.trace, IdState::Invalid(IdError::Traceparent(_))));
    assert!(matches!(s.span, IdState::Invalid(IdError::Traceparent(_))));
    // null and "" are absent
    assert_eq!(
        both(&mut ex, &json!({"trace_id": null, "span_id": ""})).trace,
        IdState::Absent
    );
}

#[test]
fn precedence_first_alias_wins_and_repeats_overwrite() {
    let mut ex = extractor(&[]);
    let other = "11111111111111111111111111111111";
    // trace_id (rank 0) beats traceparent (rank 4) in either document order
    let s = both(
        &mut ex,
        &json!({"traceparent": format!("00-{other}-{S}-01"), "trace_id": T}),
    );
    assert_eq!(trace_hex(&s).as_deref(), Some(T));
    assert_eq!(s.sources[0], Some(0));
    // but the span id comes from traceparent when no span alias ranks higher
    assert_eq!(span_hex(&s).as_deref(), Some(S));
    // null in a higher alias does not block a lower one
    let s = both(&mut ex, &json!({"trace_id": null, "traceId": T}));
    assert_eq!(trace_hex(&s).as_deref(), Some(T));
    // an invalid higher-precedence id is reported, not replaced by a lower one
    let s = both(&mut ex, &json!({"trace_id": "bad", "traceId": T}));
    assert_eq!(s.trace, IdState::Invalid(IdError::WrongLength(3)));
    // duplicate keys (only expressible in text): last wins on both paths
    let text =
        format!(r#"{{"level":"info","level":"error","trace_id":"{other}","trace_id":"{T}"}}"#);
    let fast = summary(ex.extract_json(text.as_bytes()).unwrap());
    let slow = summary(
        ex.extract_de(&mut serde_json::Deserializer::from_str(&text))
            .unwrap(),
    );
    assert_eq!(fast, slow);
    assert_eq!(fast.level, LevelState::Known(Level::Error));
    assert_eq!(trace_hex(&fast).as_deref(), Some(T));
}

#[test]
fn levels_from_every_source() {
    let mut ex = extractor(&[]);
    let cases = vec![
        (json!({"level": "ERR"}), Some(Level::Error)),
        (json!({"level": "warning"}), Some(Level::Warn)),
        (json!({"level": 50}), Some(Level::Error)),
        (json!({"level": 30}), Some(Level::Info)),
        (
            json!({"severity_number": 17, "severity_text": "whatever"}),
            Some(Level::Error),
        ),
        (json!({"severityText": "WARN"}), Some(Level::Warn)),
        (json!({"severity": "CRITICAL"}), Some(Level::Fatal)),
        (json!({"severity": 3}), Some(Level::Error)),
        (
            json!({"levelname": "ERROR", "levelno": 40}),
            Some(Level::Error),
        ),
        (json!({"levelno": 20}), Some(Level::Info)),
        (json!({"log": {"level": "debug"}}), Some(Level::Debug)),
        (json!({"log.level": "dbug"}), Some(Level::Debug)),
        (json!({"@l": "Fatal"}), Some(Level::Fatal)),
    ];
    for (rec, want) in cases {
        assert_eq!(both(&mut ex, &rec).level.known(), want, "{rec}");
    }
    let s = both(&mut ex, &json!({"level": "LOUD"}));
    assert_eq!(s.level, LevelState::Unknown);
    assert_eq!(s.level_raw, "LOUD");
    let s = both(&mut ex, &json!({"level": 35}));
    assert_eq!((s.level, s.level_raw.as_str()), (LevelState::Unknown, "35"));
    assert_eq!(
        both(&mut ex, &json!({"msg": "x"})).level,
        LevelState::Absent
    );
}

#[test]
fn durations_with_units() {
    let mut ex = extractor(&[]);
    let cases = vec![
        (json!({"duration_ms": 250}), 250.0),
        (json!({"latency_ms": 12.5}), 12.5),
        (json!({"elapsed_ms": "300"}), 300.0),
        (json!({"took": 7}), 7.0),
        (json!({"responseTime": 201}), 201.0),
        (json!({"duration": 0.25}), 250.0),
        (json!({"request_time": "0.350"}), 350.0),
        (json!({"upstream_response_time": "0.1, 0.2"}), 300.0),
        (json!({"event": {"duration": 250_000_000u64}}), 250.0),
        (json!({"event.duration": 1_000_000u64}), 1.0),
        (json!({"duration": "1m2s"}), 62000.0),
        (json!({"latency": "250ms"}), 250.0),
        (json!({"duration": "1500µs"}), 1.5),
        // ms alias beats seconds alias
        (json!({"duration": 9.0, "duration_ms": 5}), 5.0),
        // "-" is absent and does not block a lower alias
        (
            json!({"request_time": "-", "upstream_response_time": "0.2"}),
            200.0,
        ),
    ];
    for (rec, want) in cases {
        assert_eq!(
            both(&mut ex, &rec).duration,
            DurationState::Ms(want),
            "{rec}"
        );
    }
    assert_eq!(
        both(&mut ex, &json!({"duration_ms": -1})).duration,
        DurationState::Invalid
    );
    assert_eq!(
        both(&mut ex, &json!({"duration": "soon"})).duration,
        DurationState::Invalid
    );
    assert_eq!(
        both(&mut ex, &json!({"upstream_response_time": "-"})).duration,
        DurationState::Absent
    );
}

#[test]
fn nested_json_string_is_read_when_configured() {
    let inner = json!({"level": "error", "trace_id": T, "http": {"method": "POST"}}).to_string();
    let rec = json!({"log": inner, "stream": "stderr"});
    let mut plain = extractor(&[]);
    assert_eq!(both(&mut plain, &rec).level, LevelState::Absent);
    let mut ex = nested_extractor();
    let s = both(&mut ex, &rec);
    assert_eq!(s.level, LevelState::Known(Level::Error));
    assert_eq!(trace_hex(&s).as_deref(), Some(T));
    assert_eq!(s.attrs, vec![r#"Str("POST")"#.to_string()]);
    // A string that is not a whole JSON object is left alone, on both paths.
    let s = both(&mut ex, &json!({"log": "{\"level\":\"error\"} trailing"}));
    assert_eq!(s.level, LevelState::Absent);
    let s = both(&mut ex, &json!({"log": "{\"level\":\"error\""}));
    assert_eq!(s.level, LevelState::Absent);
}

#[test]
fn attributes_any_type() {
    let mut ex = extractor(&["http.status_code", "service.name", "ok", "missing"]);
    let s = both(
        &mut ex,
        &json!({"http": {"status_code": 503}, "service.name": "checkout\n\"quoted\"", "ok": true}),
    );
    assert_eq!(
        s.attrs,
        vec![
            "UInt(503)",
            "Str(\"checkout\\n\\\"quoted\\\"\")",
            "Bool(true)",
            "Absent"
        ]
    );
}

#[test]
fn fast_path_rejects_invalid_json_with_offsets() {
    let mut ex = extractor(&[]);
    let e = ex
        .extract_json(br#"{"level":"error","x":NaN}"#)
        .unwrap_err();
    assert_eq!(e.offset, 21);
    assert!(e.to_string().contains("byte offset 21"));
    assert!(ex.extract_json(b"[1,2]").is_err());
    // The trailing NUL Fluent Bit appends is accepted.
    assert!(ex.extract_json(b"{\"level\":\"error\"}\0").is_ok());
}

// ---- property: the two paths agree on any valid JSON object ----

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        Just(json!(T)),
        Just(json!(T.to_uppercase())),
        Just(json!(&T[..16])),
        Just(json!(format!("00-{T}-{S}-01"))),
        Just(json!(format!("projects/x/traces/{T}"))),
        Just(json!("00000000000000000000000000000000")),
        prop::sample::select(vec![
            "ERR",
            "info",
            "Warning",
            "E",
            "crit",
            "30",
            "17",
            "LOUD",
            "",
            "-",
            "0.1, 0.2",
            "250ms",
            "1m2s",
            "1.5s",
            "x\"y\\z\n\u{1}é😀"
        ])
        .prop_map(|s| json!(s)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    let mut keys: Vec<String> = vec![];
    let t = FieldTable::default();
    keys.extend(t.trace_id.iter().map(|a| a.key.clone()));
    keys.extend(t.span_id.iter().map(|a| a.key.clone()));
    keys.extend(t.level.iter().map(|a| a.key.clone()));
    keys.extend(t.duration.iter().map(|a| a.key.clone()));
    keys.extend(
        [
            "trace", "span", "dd", "event", "log", "id", "http", "method", "msg", "a\"b", "é",
        ]
        .map(String::from),
    );
    prop_oneof![4 => prop::sample::select(keys), 1 => "\\PC{0,6}"]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            prop::collection::vec(inner, 0..4).prop_map(Value::Array),
            // a nested-JSON string
            prop::collection::vec((key(), leaf()), 0..4)
                .prop_map(|kv| Value::String(Value::Object(kv.into_iter().collect()).to_string())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]
    #[test]
    fn fast_path_equals_serde_path(kv in prop::collection::vec((key(), value()), 0..10)) {
        // Written by hand so duplicate keys survive into the text.
        let mut text = String::from("{");
        for (i, (k, v)) in kv.iter().enumerate() {
            if i > 0 { text.push(','); }
            text.push_str(&serde_json::to_string(k).unwrap());
            text.push(':');
            text.push_str(&serde_json::to_string(v).unwrap());
        }
        text.push('}');
        let mut ex = nested_extractor();
        let fast = summary(ex.extract_json(text.as_bytes()).unwrap());
        let slow = summary(ex.extract_de(&mut serde_json::Deserializer::from_str(&text)).unwrap());
        prop_assert_eq!(&fast, &slow);
        let obj = Value::Object(kv.into_iter().collect());
        let text2 = obj.to_string();
        let fast2 = summary(ex.extract_json(text2.as_bytes()).unwrap());
        let mp = rmp_serde::to_vec(&obj).unwrap();
        let via_mp = summary(ex.extract_de(&mut rmp_serde::Deserializer::new(&mp[..])).unwrap());
        prop_assert_eq!(fast2, via_mp);
    }

    #[test]
    fn scanner_never_panics_and_matches_serde_validity(bytes in prop::collection::vec(any::<u8>(), 0..64), s in "\\PC{0,40}") {
        let mut ex = nested_extractor();
        let _ = ex.extract_json(&bytes);
        let ours = ex.extract_json(s.as_bytes()).is_ok();
        let theirs = serde_json::from_str::<serde_json::Map<String, Value>>(&s).is_ok();
        prop_assert_eq!(ours, theirs, "{:?}", s);
    }
}

// ---- property: the filter's fast reading of host text equals the reference reading ----

type Reading = Result<(Summary, bool), String>;

/// A record as Fluent Bit's msgpack → JSON conversion may write it: JSON, plus bare
/// `nan`/`inf` values and unquoted non-string keys, sometimes with whitespace.
fn host_text(kv: &[(String, Value)], tokens: &[(usize, u8)], spaced: bool) -> String {
    let sep = if spaced { " " } else { "" };
    let mut text = String::from("{");
    for (i, (k, v)) in kv.iter().enumerate() {
        if i > 0 {
            text.push(',');
            text.push_str(sep);
        }
        let token = tokens.iter().find(|t| t.0 == i).map(|t| t.1);
        match token {
            Some(0) => text.push('1'),
            Some(1) => text.push_str("true"),
            Some(2) => text.push_str("-2.5"),
            _ => text.push_str(&serde_json::to_string(k).unwrap()),
        }
        text.push(':');
        text.push_str(sep);
        match token {
            Some(3) => text.push_str("nan"),
            Some(4) => text.push_str("-nan"),
            Some(5) => text.push_str("inf"),
            Some(6) => text.push_str("-inf"),
            Some(7) => text.push_str("[1,nan,{2:inf}]"),
            _ => text.push_str(&serde_json::to_string(v).unwrap()),
        }
    }
    text.push('}');
    text
}

fn host_reading(ex: &mut Extractor, text: &[u8]) -> (Reading, Reading) {
    let fast = ex
        .extract_host_json(text)
        .map(|(e, f)| (summary(e), f))
        .map_err(|e| e.to_string());
    let reference = ex
        .extract_host_json_reference(text)
        .map(|(e, f)| (summary(e), f))
        .map_err(|e| e.to_string());
    (fast, reference)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]
    #[test]
    fn fast_host_reading_equals_reference(
        kv in prop::collection::vec((key(), value()), 0..10),
        tokens in prop::collection::vec((0usize..10, 0u8..10), 0..3),
        spaced in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        mutate in 0u8..4,
    ) {
        let mut text = host_text(&kv, &tokens, spaced).into_bytes();
        match mutate {
            1 if !text.is_empty() => { let i = cut.index(text.len()); text.truncate(i); }
            2 if !text.is_empty() => { let i = flip.index(text.len()); text[i] = byte; }
            3 => { let i = flip.index(text.len() + 1); text.insert(i, byte); }
            _ => {}
        }
        let mut ex = nested_extractor();
        let (fast, reference) = host_reading(&mut ex, &text);
        prop_assert_eq!(fast.is_ok(), reference.is_ok(), "{} fast {:?} reference {:?}", String::from_utf8_lossy(&text), fast, reference);
        prop_assert_eq!(fast.ok(), reference.ok(), "{}", String::from_utf8_lossy(&text));
    }
}

#[test]
fn fast_host_reading_names_the_opening_quote_of_an_unterminated_string() {
    let mut ex = nested_extractor();
    // a long key (its first eight bytes are skipped by the word) and a short one
    for (text, at) in [
        (&br#"{"a":1,"abcdefghijklmnop"#[..], 7),
        (br#"{"ab"#, 1),
        (br#"{"a":"xyz"#, 5),
    ] {
        let e = ex.extract_host_json(text).unwrap_err();
        assert_eq!(e.offset, at, "{}: {e}", String::from_utf8_lossy(text));
        assert_eq!(e.msg, "unterminated string");
    }
}

#[test]
fn fast_host_reading_edge_cases() {
    let deep_ok = format!("{{\"a\":{}1{}}}", "[".repeat(127), "]".repeat(127));
    let deep_bad = format!("{{\"a\":{}1{}}}", "[".repeat(128), "]".repeat(128));
    let cases: Vec<Vec<u8>> = vec![
        b"{}".to_vec(),
        b" { } ".to_vec(),
        b"{\"level\":\"error\"}\0".to_vec(),
        br#"{"a":[],"b":{},"c":[[],{}],"level":"warn"}"#.to_vec(),
        br#"{"a":[1,]}"#.to_vec(),
        br#"{"a":{"b":1,}}"#.to_vec(),
        br#"{"a":01}"#.to_vec(),
        br#"{"a":1.}"#.to_vec(),
        br#"{"a":1e}"#.to_vec(),
        br#"{"a":-}"#.to_vec(),
        br#"{"a":"\x41"}"#.to_vec(),
        br#"{"a":"\u12"}"#.to_vec(),
        "{\"a\":\"\u{1}\"}".as_bytes().to_vec(),
        b"{\"a\":\"\x01\"}".to_vec(),
        b"{\"a\":\"\xff\",\"level\":\"error\"}".to_vec(),
        "{\"a\":\"é\",\"level\":\"error\"}".as_bytes().to_vec(),
        b"{\xc3\xa9:1}".to_vec(),
        br#"{"tr\u0061ce_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#.to_vec(),
        br#"{"logging.googleapis.com/trace":"projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"}"#
            .to_vec(),
        br#"{"trace":{"id":"4bf92f3577b34da6a3ce929d0e0e4736"},"http":{"method":"GET"}}"#.to_vec(),
        br#"{"log":"{\"level\":\"error\"}"}"#.to_vec(),
        br#"{1:2,"a":nan,"b":-inf,"c":[inf,-nan]}"#.to_vec(),
        br#"{"a":nanx}"#.to_vec(),
        br#"{"a":1}x"#.to_vec(),
        br#"{"a" : 1 , "level" : "error" }"#.to_vec(),
        deep_ok.into_bytes(),
        deep_bad.into_bytes(),
    ];
    let mut ex = nested_extractor();
    for text in cases {
        let (fast, reference) = host_reading(&mut ex, &text);
        assert_eq!(
            fast.is_ok(),
            reference.is_ok(),
            "{}: fast {fast:?} reference {reference:?}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(
            fast.ok(),
            reference.ok(),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }
}

// ---- the msgpack path (the output plugin's sampling) ----

#[cfg(feature = "msgpack")]
mod msgpack {
    use super::*;
    use fluent_bit_chunk::Chunk;

    /// One Fluent Bit V2 event `[[EventTime, metadata], body]` around msgpack maps.
    pub(super) fn event(meta: &[u8], body: &[u8]) -> Vec<u8> {
        let mut b = vec![0x92, 0x92, 0xd7, 0x00];
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(meta);
        b.extend_from_slice(body);
        b
    }

    pub(super) fn extract_mp(ex: &mut Extractor, meta: &[u8], body: &[u8]) -> (Summary, OtlpSeen) {
        let bytes = event(meta, body);
        let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
        let _ = ex.extract_msgpack(rec.event.body);
        let seen = ex.merge_otlp_metadata(rec.event.metadata);
        (summary(ex.last()), seen)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        #[test]
        fn msgpack_path_equals_json_path(kv in prop::collection::vec((key(), value()), 0..10)) {
            let obj = Value::Object(kv.into_iter().collect());
            let text = obj.to_string();
            let mut ex = nested_extractor();
            let json = summary(ex.extract_json(text.as_bytes()).unwrap());
            let body = rmp_serde::to_vec(&obj).unwrap();
            let (mp, seen) = extract_mp(&mut ex, &[0x80], &body);
            prop_assert_eq!(json, mp, "{}", text);
            prop_assert!(!seen.otlp);
        }
    }

    fn mp(v: &Value) -> Vec<u8> {
        rmp_serde::to_vec(v).unwrap()
    }

    /// `{"otlp": {...}}` with `trace_id`/`span_id` as msgpack bin, as the
    /// `opentelemetry` input writes them (fluent-bit-otlp-logs.md §3).
    fn otlp_meta(trace: &[u8], span: &[u8], rest: &[(&str, Value)]) -> Vec<u8> {
        let mut m = vec![0x81, 0xa4];
        m.extend_from_slice(b"otlp");
        m.push(0x80 | (2 + rest.len() as u8));
        for (k, id) in [("trace_id", trace), ("span_id", span)] {
            m.extend_from_slice(&mp(&json!(k)));
            m.push(0xc4);
            m.push(id.len() as u8);
            m.extend_from_slice(id);
        }
        for (k, v) in rest {
            m.extend_from_slice(&mp(&json!(k)));
            m.extend_from_slice(&mp(v));
        }
        m
    }

    #[test]
    fn otlp_metadata_supplies_ids_level_and_attributes_the_body_lacks() {
        let trace: Vec<u8> = (1..=16).collect();
        let span: Vec<u8> = (1..=8).collect();
        let meta = otlp_meta(
            &trace,
            &span,
            &[
                ("severity_number", json!(17)),
                ("severity_text", json!("INFO")),
                (
                    "attributes",
                    json!({"http.method": "POST", "duration_ms": 250}),
                ),
            ],
        );
        let mut ex = nested_extractor();
        let (s, seen) = extract_mp(&mut ex, &meta, &mp(&json!({"log": "payment failed"})));
        assert_eq!(
            seen,
            OtlpSeen {
                otlp: true,
                trace_id: true,
                span_id: true,
                level: true
            }
        );
        assert_eq!(s.trace, IdState::Valid(trace.clone().try_into().unwrap()));
        assert_eq!(s.span, IdState::Valid(span.clone().try_into().unwrap()));
        // severity_number 17 is ERROR even though severity_text says INFO
        assert_eq!(s.level, LevelState::Known(Level::Error));
        assert_eq!(s.duration, DurationState::Ms(250.0));
        assert_eq!(s.attrs, vec!["Str(\"POST\")".to_string()]);
    }

    #[test]
    fn otlp_metadata_overrides_the_body_and_rejects_bad_ids() {
        let mut ex = nested_extractor();
        let body = mp(&json!({"trace_id": T, "level": "info"}));
        // wrong length: invalid, never repaired, and it outranks the body's valid id
        let meta = otlp_meta(&[0xab; 3], &[0; 8], &[("severity_text", json!("fatal"))]);
        let (s, _) = extract_mp(&mut ex, &meta, &body);
        assert_eq!(s.trace, IdState::Invalid(IdError::WrongLength(3)));
        assert_eq!(s.span, IdState::Invalid(IdError::AllZero));
        assert_eq!(s.level, LevelState::Known(Level::Fatal));
        // an empty bin (`""` on the JSON path) is absent: the body's id stands
        let meta = otlp_meta(&[], &[], &[("severity_number", json!("9"))]);
        let (s, _) = extract_mp(&mut ex, &meta, &body);
        assert_eq!(to_hex(s.trace.valid().unwrap()), T);
        assert_eq!(s.level, LevelState::Known(Level::Info));
        // no otlp map: the body alone
        let (s, seen) = extract_mp(&mut ex, &mp(&json!({"other": 1})), &body);
        assert!(!seen.otlp);
        assert_eq!(to_hex(s.trace.valid().unwrap()), T);
    }

    #[test]
    fn deep_bodies_are_skipped_without_recursion() {
        // 100,000 nested arrays under an unwanted key, then the level: one pass, no
        // stack growth (this runs on a 64 KiB coroutine stack in Fluent Bit).
        let mut body = vec![0x82, 0xa1, b'x'];
        body.extend(std::iter::repeat_n(0x91, 100_000));
        body.push(0xc0);
        body.extend_from_slice(&mp(&json!("level"))[..]);
        body.extend_from_slice(&mp(&json!("ERR"))[..]);
        let mut ex = nested_extractor();
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || extract_mp(&mut ex, &[0x80], &body).0.level)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, LevelState::Known(Level::Error));
    }
}
