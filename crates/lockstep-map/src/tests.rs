use super::*;
use crate::{line::*, payload::*};
use fluent_bit_chunk::Chunk;
use fluent_bit_chunk::MapView;
use lockstep_ship::SpooledEntry;
use rmpv::Value as V;

fn encode(body: &V) -> Vec<u8> {
    let ev = V::Array(vec![
        V::Array(vec![
            V::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 0]),
            V::Map(vec![]),
        ]),
        body.clone(),
    ]);
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, &ev).unwrap();
    b
}

fn body(bytes: &[u8]) -> MapView<'_> {
    Chunk::new(bytes)
        .records()
        .next()
        .unwrap()
        .unwrap()
        .event
        .body
}

fn m(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (V::from(k), v)).collect())
}

fn s(x: &str) -> V {
    V::from(x)
}

fn mapping(f: impl FnOnce(&mut MappingConfig)) -> Mapping {
    let mut c = MappingConfig::default();
    f(&mut c);
    Mapping::new(&c).unwrap()
}

fn err(f: impl FnOnce(&mut MappingConfig)) -> String {
    let mut c = MappingConfig::default();
    f(&mut c);
    Mapping::new(&c).unwrap_err().to_string()
}

fn run(mp: &Mapping, rec: &V) -> (SpooledEntry, MapStats) {
    run_tag(mp, "", rec)
}

fn invalid_utf8(mut bytes: Vec<u8>) -> Vec<u8> {
    let mut n = 0;
    for i in 0..bytes.len().saturating_sub(3) {
        if bytes[i..i + 4] == [0xa3, b'a', b'~', b'b'] {
            bytes[i + 2] = 0xff;
            n += 1;
        }
    }
    assert!(n > 0);
    bytes
}

fn run_bytes(mp: &Mapping, bytes: &[u8]) -> (SpooledEntry, MapStats) {
    let mut st = MapStats::default();
    let e = mp.map(42, body(bytes), &mut st);
    (e, st)
}

fn run_tag(mp: &Mapping, tag: &str, rec: &V) -> (SpooledEntry, MapStats) {
    let bytes = encode(rec);
    let mut st = MapStats::default();
    let e = mp.map_tagged(tag, 42, body(&bytes), &mut st);
    (e, st)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn some(x: &str) -> Option<String> {
    Some(x.to_string())
}

#[test]
fn no_labels_gives_job_fluent_bit_and_json_line() {
    let mp = mapping(|_| {});
    assert!(!mp.has_labels());
    let (e, st) = run(&mp, &m(vec![("key", s("value"))]));
    assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
    assert_eq!(e.line, r#"{"key":"value"}"#);
    assert_eq!(e.ts_ns, 42);
    assert_eq!(e.tenant, None);
    assert!(e.structured_metadata.is_empty());
    assert_eq!(st, MapStats::default());
}

#[test]
fn static_labels_are_sorted_and_leave_the_line_alone() {
    let mp = mapping(|c| c.labels = some("b=2, a = 1 ,c=x=y"));
    assert!(mp.has_labels());
    let (e, _) = run(&mp, &m(vec![("a", s("v")), ("b", s("w"))]));
    assert_eq!(e.labels, labels(&[("a", "1"), ("b", "2"), ("c", "x=y")]));
    assert_eq!(e.line, r#"{"a":"v","b":"w"}"#);
}

#[test]
fn accessor_labels_name_and_remove_like_the_builtin() {
    // tests/runtime/out_loki.c flb_test_label_keys: $data['l_key'] -> data_l_key.
    let rec = m(vec![
        ("key", s("value")),
        ("foo", s("bar")),
        ("data", m(vec![("l_key", s("test"))])),
    ]);
    let mp = mapping(|c| c.label_keys = some("$data['l_key']"));
    let (e, _) = run(&mp, &rec);
    assert_eq!(e.labels, labels(&[("data_l_key", "test")]));
    assert_eq!(e.line, r#"{"key":"value","foo":"bar","data":{}}"#);

    let mp = mapping(|c| c.labels = some("$data['l_key'], who=$foo, env=prod"));
    let (e, _) = run(&mp, &rec);
    assert_eq!(
        e.labels,
        labels(&[("data_l_key", "test"), ("env", "prod"), ("who", "bar")])
    );
    assert_eq!(e.line, r#"{"key":"value","data":{}}"#);
}

#[test]
fn nested_accessors_with_indexes_and_quotes() {
    let rec = m(vec![
        (
            "kubernetes",
            m(vec![
                ("labels", m(vec![("app", s("web")), ("it's", s("q"))])),
                ("ids", V::Array(vec![s("zero"), s("one")])),
            ]),
        ),
        ("log", s("hello")),
    ]);
    let mp = mapping(|c| {
        c.labels = some("app=$kubernetes['labels']['app'], $kubernetes['ids'][1]");
        c.label_keys = some("$kubernetes['labels']['it''s']");
    });
    let (e, st) = run(&mp, &rec);
    assert_eq!(
        e.labels,
        labels(&[
            ("app", "web"),
            ("kubernetes_ids_1", "one"),
            ("kubernetes_labels_it_s", "q")
        ])
    );
    assert_eq!(st.label_names_sanitised, 1, "it's -> it_s");
    assert_eq!(
        e.line,
        r#"{"kubernetes":{"labels":{},"ids":["zero"]},"log":"hello"}"#
    );
}

#[test]
fn missing_targets_give_no_label_and_then_the_default() {
    let mp = mapping(|c| c.labels = some("$nope, x=$a['b']['c'], y=$arr[5]"));
    let (e, st) = run(
        &mp,
        &m(vec![
            ("a", m(vec![("b", s("not a map"))])),
            ("arr", V::Array(vec![])),
        ]),
    );
    assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
    assert_eq!(st, MapStats::default());
    assert_eq!(e.line, r#"{"a":{"b":"not a map"},"arr":[]}"#);
}

#[test]
fn label_value_types_follow_flb_ra_translate() {
    let rec = m(vec![
        ("s", s("str")),
        ("u", V::from(7u64)),
        ("i", V::from(-3i64)),
        ("f", V::F64(1.5)),
        ("t", V::Boolean(true)),
        ("n", V::Nil),
        ("m", m(vec![("k", s("v")), ("z", V::from(1))])),
        ("a", V::Array(vec![V::from(1)])),
        ("b", V::Binary(vec![0xde, 0xad])),
        ("e", s("")),
        ("x", V::Ext(5, vec![1])),
    ]);
    let mp = mapping(|c| {
        c.label_keys = some("$s,$u,$i,$f,$t,$n,$m,$a,$b,$e,$x");
    });
    let (e, _) = run(&mp, &rec);
    assert_eq!(
        e.labels,
        labels(&[
            ("b", "dead"),
            ("f", "1.500000"),
            ("i", "-3"),
            ("m", r#"{"k":"v","z":1}"#),
            ("n", "null"),
            ("s", "str"),
            ("t", "true"),
            ("u", "7"),
        ])
    );
    // Every key read for a label leaves the line, found or not usable.
    assert_eq!(e.line, "{}");
}

#[test]
fn templates_with_literal_text_and_tag() {
    let mp = mapping(|c| {
        c.labels = some("job=$TAG, part=$TAG[1], host=$h.local, $svc");
    });
    assert!(mp.uses_tag());
    let rec = m(vec![
        ("h", s("box")),
        ("svc", s("api")),
        ("keep", V::from(1)),
    ]);
    let (e, _) = run_tag(&mp, "app.web", &rec);
    assert_eq!(
        e.labels,
        labels(&[
            ("host", "box.local"),
            ("job", "app.web"),
            ("part", "web"),
            ("svc", "api")
        ])
    );
    assert_eq!(e.line, r#"{"keep":1}"#);
    assert!(!mapping(|c| c.labels = some("a=$b")).uses_tag());
}

#[test]
fn label_names_are_sanitised_and_counted() {
    let mp = mapping(|c| c.labels = some("my-app=x, 9lives=y, ok=z, $a['b.c']"));
    let (e, st) = run(&mp, &m(vec![("a", m(vec![("b.c", s("w"))]))]));
    assert_eq!(
        e.labels,
        labels(&[
            ("_9lives", "y"),
            ("a_b_c", "w"),
            ("my_app", "x"),
            ("ok", "z")
        ])
    );
    assert_eq!(st.label_names_sanitised, 3);
    for (k, _) in &e.labels {
        assert!(is_valid_label_name(k), "{k}");
    }
}

#[test]
fn long_label_values_are_cut_on_a_char_boundary() {
    let long = format!("a{}", "é".repeat(2000)); // 4001 bytes
    let mp = mapping(|c| c.label_keys = some("$v, $w"));
    let (e, st) = run(&mp, &m(vec![("v", s(&long)), ("w", s(&"x".repeat(2048)))]));
    let v = &e.labels.iter().find(|l| l.0 == "v").unwrap().1;
    assert_eq!(v.len(), 2047);
    assert!(long.starts_with(v.as_str()));
    let w = &e.labels.iter().find(|l| l.0 == "w").unwrap().1;
    assert_eq!(w.len(), 2048, "exactly the limit is kept");
    assert_eq!(st.label_values_truncated, 1);
}

/// OTLP logs keep their ids in the event metadata: `$trace_id` / `$span_id` read
/// them (as hex) when the body has none; the body wins when it has one.
#[test]
fn trace_and_span_id_metadata_fall_back_to_the_otlp_ids() {
    let mp = mapping(|c| {
        c.structured_metadata = some("trace_id=$trace_id, span_id=$span_id, t=$trace_id_x")
    });
    let meta = rmpv::Value::Map(vec![(
        "otlp".into(),
        rmpv::Value::Map(vec![
            ("trace_id".into(), rmpv::Value::Binary((1..=16).collect())),
            ("span_id".into(), rmpv::Value::Binary(vec![0; 8])),
        ]),
    )]);
    // an event whose body is the metadata map, to get a view of it
    let mb = encode(&meta);
    let encode_with = |rec: &V| {
        let bytes = encode(rec);
        let mut out = Vec::new();
        let mut st = MapStats::default();
        mp.encode_event(
            "t",
            42,
            body(&bytes),
            body(&mb),
            &mut st,
            &mut Scratch::default(),
            &mut out,
        );
        SpooledEntry::decode(0, &out).unwrap()
    };
    let e = encode_with(&m(vec![("msg", s("x"))]));
    // the all-zero span id is no id
    assert_eq!(
        e.structured_metadata,
        vec![(
            "trace_id".to_string(),
            "0102030405060708090a0b0c0d0e0f10".to_string()
        )]
    );
    let e = encode_with(&m(vec![("trace_id", s("abc"))]));
    assert_eq!(
        e.structured_metadata,
        vec![("trace_id".to_string(), "abc".to_string())]
    );
    // without metadata, nothing
    let (e, _) = run(&mp, &m(vec![("msg", s("x"))]));
    assert!(e.structured_metadata.is_empty());
}

#[test]
fn duplicate_label_names_last_with_a_value_wins() {
    let mp = mapping(|c| {
        c.labels = some("env=static, env=$e");
        c.label_keys = some("$x");
    });
    let (e, _) = run(&mp, &m(vec![("e", s("dyn"))]));
    assert_eq!(e.labels, labels(&[("env", "dyn")]));
    let (e, _) = run(&mp, &m(vec![("other", s("z"))]));
    assert_eq!(e.labels, labels(&[("env", "static")]));
}

#[test]
fn trace_and_span_ids_are_refused_as_labels() {
    for (labels_v, label_keys_v, what) in [
        (Some("$trace_id"), None, "trace_id"),
        (None, Some("$span_id"), "span_id"),
        (Some("TraceID=$x"), None, "TraceID"),
        (Some("tid=$trace_id"), None, "trace_id"),
        (Some("$otel['SpanId']"), None, "SpanId"),
        (Some("$otel['spanid']"), None, "spanid"),
    ] {
        let msg = err(|c| {
            c.labels = labels_v.map(str::to_string);
            c.label_keys = label_keys_v.map(str::to_string);
        });
        let key = if labels_v.is_some() {
            "labels:"
        } else {
            "label_keys:"
        };
        assert!(msg.starts_with(key), "{msg}");
        assert!(msg.contains(labels_v.or(label_keys_v).unwrap()), "{msg}");
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains("structured_metadata"), "{msg}");
    }
    // Neighbours are fine.
    mapping(|c| c.labels = some("trace=$t, $trace_ids, x=$trace_idx"));
    mapping(|c| c.structured_metadata = some("$trace_id, span_id=$s"));
}

#[test]
fn config_errors_name_key_and_text() {
    let e = err(|c| c.label_keys = some("foo"));
    assert!(
        e.contains("label_keys") && e.contains("'foo'") && e.contains("'$'"),
        "{e}"
    );
    let e = err(|c| c.labels = some("a=b, novalue"));
    assert!(e.contains("labels") && e.contains("'novalue'"), "{e}");
    let e = err(|c| c.labels = some("a="));
    assert!(e.contains("labels") && e.contains("'a='"), "{e}");
    let e = err(|c| c.labels = some("=b"));
    assert!(e.contains("'=b'"), "{e}");
    let e = err(|c| c.labels = some("$1abc"));
    assert!(e.contains("$1abc") && e.contains("digit"), "{e}");
    let e = err(|c| c.labels = some("$a['x"));
    assert!(e.contains("unterminated") && e.contains("$a['x"), "{e}");
    let e = err(|c| c.labels = some("$a[x]"));
    assert!(e.contains("$a[x]"), "{e}");
    let e = err(|c| c.labels = some("$a['x'"));
    assert!(e.contains("missing ']'"), "{e}");
    let e = err(|c| c.labels = some("$a[01]"));
    assert!(e.contains("01"), "{e}");
    let e = err(|c| c.labels = some("$TAG"));
    assert!(e.contains("$TAG") && e.contains("name=$TAG"), "{e}");
    let e = err(|c| c.structured_metadata = some("k=$"));
    assert!(
        e.starts_with("structured_metadata") && e.contains("k=$"),
        "{e}"
    );
    let e = err(|c| c.remove_keys = some("$TAG"));
    assert!(e.starts_with("remove_keys") && e.contains("$TAG"), "{e}");
    let e = err(|c| c.line_format = some("xml"));
    assert_eq!(
        e,
        "invalid 'line_format' value 'xml': expected json or key_value"
    );
    let e = err(|c| c.drop_single_key = some("maybe"));
    assert!(
        e.contains("'drop_single_key'") && e.contains("'maybe'"),
        "{e}"
    );
    let e = err(|c| c.tenant_id_key = some("$TAG"));
    assert!(e.starts_with("tenant_id_key"), "{e}");
}

#[test]
fn accepted_spellings() {
    for v in ["json", "JSON", " Json "] {
        assert_eq!(
            mapping(|c| c.line_format = some(v)).line_format,
            LineFormat::Json
        );
    }
    assert_eq!(
        mapping(|c| c.line_format = some("Key_Value")).line_format,
        LineFormat::KeyValue
    );
    for (v, want) in [
        ("on", DropSingleKey::On),
        ("true", DropSingleKey::On),
        ("Yes", DropSingleKey::On),
        ("off", DropSingleKey::Off),
        ("false", DropSingleKey::Off),
        ("no", DropSingleKey::Off),
        ("RAW", DropSingleKey::Raw),
    ] {
        assert_eq!(
            mapping(|c| c.drop_single_key = some(v)).drop_single_key,
            want,
            "{v}"
        );
    }
}

#[test]
fn structured_metadata_forms_values_and_removal() {
    let rec = m(vec![
        ("msg", s("hi")),
        ("trace_id", s("abc")),
        ("otel", m(vec![("span_id", s("def")), ("keep", V::from(1))])),
        ("f", V::F64(1.5)),
        ("arr", V::Array(vec![V::from(1), s("x")])),
        ("obj", m(vec![("a", V::Boolean(false))])),
        ("empty", s("")),
        ("ext", V::Ext(1, vec![0])),
        ("n", V::from(12)),
    ]);
    let mp = mapping(|c| {
        c.structured_metadata = some(
            "trace_id=$trace_id, $otel['span_id'], env=prod, f=$f, $arr, $obj, \
             e=$empty, x=$ext, missing=$nope, n=$n",
        )
    });
    let (e, st) = run(&mp, &rec);
    assert_eq!(
        e.structured_metadata,
        labels(&[
            ("trace_id", "abc"),
            ("otel_span_id", "def"),
            ("env", "prod"),
            ("f", "1.5"),
            ("arr", r#"[1,"x"]"#),
            ("obj", r#"{"a":false}"#),
            ("n", "12"),
        ])
    );
    assert_eq!(st.metadata_dropped, 2, "empty and ext");
    assert_eq!(e.line, r#"{"msg":"hi","otel":{"keep":1}}"#);
    assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
}

#[test]
fn structured_metadata_duplicate_names_last_wins() {
    let mp = mapping(|c| c.structured_metadata = some("k=one, k=$v, j=x"));
    let (e, st) = run(&mp, &m(vec![("v", s("two"))]));
    assert_eq!(e.structured_metadata, labels(&[("k", "two"), ("j", "x")]));
    assert_eq!(st.metadata_dropped, 1);
    let (e, st) = run(&mp, &m(vec![]));
    assert_eq!(e.structured_metadata, labels(&[("k", "one"), ("j", "x")]));
    assert_eq!(st.metadata_dropped, 0);
}

#[test]
fn remove_keys_like_the_builtin() {
    // flb_test_remove_keys: "foo, $data['l_key']".
    let rec = m(vec![
        ("key", s("value")),
        ("foo", s("bar")),
        ("data", m(vec![("l_key", s("test"))])),
    ]);
    let mp = mapping(|c| c.remove_keys = some("foo, $data['l_key']"));
    let (e, _) = run(&mp, &rec);
    assert_eq!(e.line, r#"{"key":"value","data":{}}"#);
    // flb_test_remove_map: a whole nested map.
    let mp = mapping(|c| c.remove_keys = some("key"));
    let (e, _) = run(&mp, &m(vec![("key", m(vec![("nest", s("value_nested"))]))]));
    assert_eq!(e.line, "{}");
}

#[test]
fn remove_keys_duplicates_arrays_and_dotted_names() {
    // A repeated key: the accessor (and so the removal) is the last one.
    let rec = V::Map(vec![
        (s("a"), V::from(1)),
        (s("b"), V::from(2)),
        (s("a"), V::from(3)),
    ]);
    let mp = mapping(|c| c.remove_keys = some("a"));
    assert_eq!(run(&mp, &rec).0.line, r#"{"a":1,"b":2}"#);
    let mp = mapping(|c| c.label_keys = some("$a"));
    assert_eq!(run(&mp, &rec).0.labels, labels(&[("a", "3")]));

    let mp = mapping(|c| c.remove_keys = some("$arr[1]"));
    let rec = m(vec![(
        "arr",
        V::Array(vec![V::from(0), V::from(1), V::from(2)]),
    )]);
    assert_eq!(run(&mp, &rec).0.line, r#"{"arr":[0,2]}"#);

    // As in Fluent Bit, an accessor ends at '.': `log.level` removes `log`.
    let mp = mapping(|c| c.remove_keys = some("log.level"));
    let rec = m(vec![("log", s("x")), ("log.level", s("y"))]);
    assert_eq!(run(&mp, &rec).0.line, r#"{"log.level":"y"}"#);
    // Quoted subkeys may hold dots.
    let mp = mapping(|c| c.remove_keys = some("$k['a.b']"));
    let rec = m(vec![("k", m(vec![("a.b", V::from(1)), ("c", V::from(2))]))]);
    assert_eq!(run(&mp, &rec).0.line, r#"{"k":{"c":2}}"#);
}

#[test]
fn tenant_id_key_does_not_leave_the_line() {
    let mp = mapping(|c| {
        c.tenant_id = some("default");
        c.tenant_id_key = some("tenant");
    });
    let (e, _) = run(&mp, &m(vec![("tenant", s("t1")), ("x", V::from(1))]));
    assert_eq!(e.tenant.as_deref(), Some("t1"));
    assert_eq!(e.line, r#"{"tenant":"t1","x":1}"#);
    for rec in [
        m(vec![("tenant", s(""))]),
        m(vec![("tenant", V::from(5))]),
        m(vec![("other", s("t2"))]),
    ] {
        assert_eq!(run(&mp, &rec).0.tenant.as_deref(), Some("default"), "{rec}");
    }
    let mp = mapping(|c| c.tenant_id_key = some("$org['id']"));
    let (e, _) = run(&mp, &m(vec![("org", m(vec![("id", s("t3"))]))]));
    assert_eq!(e.tenant.as_deref(), Some("t3"));
    assert_eq!(run(&mp, &m(vec![])).0.tenant, None);
    let mp = mapping(|c| c.tenant_id = some("  "));
    assert_eq!(run(&mp, &m(vec![])).0.tenant, None);
}

#[test]
fn key_value_lines() {
    // flb_test_line_format: key="value".
    let mp = mapping(|c| c.line_format = some("key_value"));
    assert_eq!(
        run(&mp, &m(vec![("key", s("value"))])).0.line,
        r#"key="value""#
    );
    let rec = V::Map(vec![
        (s("s"), s("a \"q\"")),
        (V::from(1), s("skipped")),
        (s("u"), V::from(1)),
        (s("i"), V::from(-2)),
        (s("f"), V::F64(1.0)),
        (s("g"), V::F64(1.3)),
        (s("t"), V::Boolean(true)),
        (s("n"), V::Nil),
        (
            s("arr"),
            V::Array(vec![V::from(1), s("x"), V::Array(vec![])]),
        ),
        (
            s("m"),
            V::Map(vec![
                (V::from(9), s("nonstring key")),
                (s("a"), s("b")),
                (s("c"), m(vec![("d", V::F64(0.5))])),
            ]),
        ),
        (s("bin"), V::Binary(vec![1])),
    ]);
    assert_eq!(
        run(&mp, &rec).0.line,
        r#"s="a "q"" u=1 i=-2 f=1.0 g=1.3 t=true n=null arr="[1 "x" "[]"]" m="map[ a:"b" c:"map[d:0.5]"]" bin="#
    );
    // Removal applies before formatting; nested separators count kept entries.
    let mp = mapping(|c| {
        c.line_format = some("key_value");
        c.remove_keys = some("$m['a'], x");
    });
    let rec = m(vec![
        ("x", V::from(1)),
        ("m", m(vec![("a", V::from(1)), ("b", V::from(2))])),
        ("y", V::from(3)),
    ]);
    assert_eq!(run(&mp, &rec).0.line, r#"m="map[b:2]" y=3"#);
    let mp = mapping(|c| c.line_format = some("key_value"));
    assert_eq!(run(&mp, &m(vec![])).0.line, "");
}

#[test]
fn drop_single_key_json() {
    let one = m(vec![("key", s("value"))]);
    let on = mapping(|c| c.drop_single_key = some("on"));
    let raw = mapping(|c| c.drop_single_key = some("raw"));
    let off = mapping(|c| c.drop_single_key = some("off"));
    assert_eq!(run(&on, &one).0.line, r#""value""#);
    assert_eq!(run(&raw, &one).0.line, "value");
    assert_eq!(run(&off, &one).0.line, r#"{"key":"value"}"#);
    let num = m(vec![("n", V::from(5))]);
    assert_eq!(run(&on, &num).0.line, "5");
    assert_eq!(run(&raw, &num).0.line, "5");
    let map = m(vec![("m", m(vec![("a", s("b"))]))]);
    assert_eq!(run(&raw, &map).0.line, r#"{"a":"b"}"#);
    let two = m(vec![("a", s("x")), ("b", s("y"))]);
    assert_eq!(run(&raw, &two).0.line, r#"{"a":"x","b":"y"}"#);
    // The count is taken after removal (label keys included).
    let mp = mapping(|c| {
        c.drop_single_key = some("raw");
        c.label_keys = some("$b");
        c.remove_keys = some("$a['gone']");
    });
    let rec = m(vec![
        ("a", m(vec![("gone", V::from(1)), ("k", V::from(2))])),
        ("b", s("y")),
    ]);
    let (e, _) = run(&mp, &rec);
    assert_eq!(e.line, r#"{"k":2}"#);
    assert_eq!(e.labels, labels(&[("b", "y")]));
    let mp = mapping(|c| {
        c.drop_single_key = some("raw");
        c.label_keys = some("$b");
    });
    assert_eq!(run(&mp, &two).0.line, "x");
}

#[test]
fn drop_single_key_key_value() {
    let on = mapping(|c| {
        c.drop_single_key = some("on");
        c.line_format = some("key_value");
    });
    assert_eq!(run(&on, &m(vec![("key", s("value"))])).0.line, "value");
    assert_eq!(run(&on, &m(vec![("f", V::F64(2.0))])).0.line, "2.0");
    assert_eq!(
        run(&on, &m(vec![("m", m(vec![("a", s("b"))]))])).0.line,
        r#""map[a:"b"]""#
    );
    assert_eq!(
        run(&on, &m(vec![("a", s("x")), ("b", s("y"))])).0.line,
        r#"a="x" b="y""#
    );
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    // Every str "a~b" becomes "a\xffb" in the encoded record.
    let bad = s("a~b");
    let rec = V::Map(vec![
        (bad.clone(), bad.clone()),
        (s("lbl"), bad.clone()),
        (s("md"), bad.clone()),
        (s("ten"), bad.clone()),
        (s("bin"), V::Binary(vec![0xc3])),
    ]);
    let mp = mapping(|c| {
        c.labels = some("l=$lbl");
        c.structured_metadata = some("md=$md");
        c.tenant_id_key = some("ten");
    });
    let (e, st) = run_bytes(&mp, &invalid_utf8(encode(&rec)));
    assert_eq!(e.labels, labels(&[("l", "a\u{fffd}b")]));
    assert_eq!(e.structured_metadata, labels(&[("md", "a\u{fffd}b")]));
    assert_eq!(e.tenant.as_deref(), Some("a\u{fffd}b"));
    assert_eq!(
        e.line,
        "{\"a\u{fffd}b\":\"a\u{fffd}b\",\"ten\":\"a\u{fffd}b\",\"bin\":\"\u{fffd}\"}"
    );
    // key + value + tenant value in the line, the binary, label, metadata, tenant.
    assert_eq!(st.invalid_utf8_fixed, 7);

    let kv = mapping(|c| c.line_format = some("key_value"));
    let (e, st) = run_bytes(
        &kv,
        &invalid_utf8(encode(&V::Map(vec![(bad.clone(), bad)]))),
    );
    assert_eq!(e.line, "a\u{fffd}b=\"a\u{fffd}b\"");
    assert_eq!(st.invalid_utf8_fixed, 2);
}

#[test]
fn json_line_matches_json_rs_for_odd_keys_and_values() {
    let rec = V::Map(vec![
        (V::from(1), s("int key")),
        (V::Array(vec![]), s("array key")),
        (s("f"), V::F64(0.1)),
        (s("nl"), s("a\nb\"c")),
        (s("x"), V::Ext(3, vec![1])),
    ]);
    let mp = mapping(|_| {});
    let (e, _) = run(&mp, &rec);
    let bytes = encode(&rec);
    assert_eq!(e.line, body(&bytes).to_json());
    assert_eq!(
        e.line,
        r#"{"1":"int key","<array>":"array key","f":0.1,"nl":"a\nb\"c","x":null}"#
    );
}

#[test]
fn c_float_formats() {
    for (f, want) in [
        (1.3, "1.3"),
        (0.1, "0.1"),
        (2.5, "2.5"),
        (1.0 / 3.0, "0.3333333333333333"),
        (1e20, "1e+20"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (123456789012345680.0, "1.234567890123457e+17"),
        (1e16, "1e+16"),
        (999999999999999.9, "999999999999999.9"),
        (-2.25e-7, "-2.25e-07"),
        (0.0, "0"),
        (f64::INFINITY, "inf"),
        (f64::NAN, "nan"),
    ] {
        assert_eq!(c_g16(f), want, "{f:?}");
    }
    assert_eq!(kv_float(2.0), "2.0");
    assert_eq!(kv_float(-0.0), "-0.0");
    assert_eq!(kv_float(1e18), "1000000000000000000.0");
    assert_eq!(kv_float(1e300), "1e+300");
    assert_eq!(kv_float(9.223_372_036_854_776e18), "9.223372036854776e+18");
    assert_eq!(kv_float(0.5), "0.5");
    assert_eq!(c_fixed6(1.5), "1.500000");
    assert_eq!(c_fixed6(-0.0000004), "-0.000000");
    assert_eq!(c_fixed6(f64::NEG_INFINITY), "-inf");
}

#[test]
fn mapping_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mapping>();
}

// ---- OTLP records (Fluent Bit's `opentelemetry` input) mapped as Loki's OTLP ingestion ----

fn event(ts_sec: u32, meta: V, body: V) -> Vec<u8> {
    let mut t = ts_sec.to_be_bytes().to_vec();
    t.extend_from_slice(&0u32.to_be_bytes());
    let ev = V::Array(vec![V::Array(vec![V::Ext(0, t), meta]), body]);
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, &ev).unwrap();
    b
}

/// The group and records of the facts file's §3 request, as the protobuf path gives them.
fn otlp_chunk(records: Vec<(V, V)>) -> Vec<u8> {
    let mut c = event(
        u32::MAX,
        m(vec![
            ("schema", s("otlp")),
            ("resource_id", V::from(0)),
            ("scope_id", V::from(0)),
        ]),
        m(vec![
            (
                "resource",
                m(vec![(
                    "attributes",
                    m(vec![
                        ("service.name", s("checkout")),
                        ("k8s.pod.name", s("pod-1")),
                        ("host.name", s("edge-7")),
                        ("team", s("payments")),
                    ]),
                )]),
            ),
            (
                "scope",
                m(vec![
                    ("name", s("my.lib")),
                    ("version", s("1.2.3")),
                    ("attributes", m(vec![("scope.attr", V::from(true))])),
                ]),
            ),
        ]),
    );
    for (meta, body) in records {
        c.extend(event(1_700_000_000, meta, body));
    }
    c.extend(event(u32::MAX - 1, m(vec![]), m(vec![])));
    c
}

fn map_otlp(mp: &Mapping, chunk: &[u8]) -> Vec<SpooledEntry> {
    let mut sc = Scratch::default();
    Chunk::new(chunk)
        .records()
        .map(|r| {
            let r = r.unwrap();
            let mut out = Vec::new();
            mp.encode_record(
                "v1_logs",
                1_700_000_000_000_000_000,
                r.event.body,
                r.event.metadata,
                r.group.map(|g| (g.metadata, g.attributes)),
                &mut MapStats::default(),
                &mut sc,
                &mut out,
            );
            SpooledEntry::decode(0, &out).unwrap()
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

#[test]
fn otlp_records_are_mapped_as_loki_s_otlp_ingestion_maps_them() {
    let mp = mapping(|_| {});
    let rec1 = (
        m(vec![(
            "otlp",
            m(vec![
                ("timestamp", V::from(1_700_000_000_123_456_789u64)),
                ("observed_timestamp", V::from(1_700_000_000_200_000_000u64)),
                ("severity_number", V::from(9)),
                ("severity_text", s("INFO")),
                (
                    "attributes",
                    m(vec![
                        ("http.status_code", V::from(500)),
                        ("user", s("alice")),
                        ("ratio", V::from(0.5)),
                        ("ok", V::from(false)),
                        ("tags", V::Array(vec![s("a"), s("b")])),
                        ("db", m(vec![("rows", V::from(3)), ("sys", s("pg"))])),
                    ]),
                ),
                ("trace_id", V::Binary((1..=16).collect())),
                ("span_id", V::Binary((1..=8).collect())),
                ("trace_flags", V::from(1)),
            ]),
        )]),
        m(vec![("log", s("payment failed"))]),
    );
    let rec2 = (
        m(vec![(
            "otlp",
            m(vec![
                ("timestamp", V::from(0)),
                ("observed_timestamp", V::from(1_700_000_001_000_000_000u64)),
                ("severity_number", V::from(17)),
                ("trace_flags", V::from(0)),
                ("trace_id", V::Binary(vec![0; 16])),
            ]),
        )]),
        m(vec![("n", V::from(7)), ("msg", s("structured"))]),
    );
    let got = map_otlp(&mp, &otlp_chunk(vec![rec1, rec2]));
    let labels = pairs(&[("k8s_pod_name", "pod-1"), ("service_name", "checkout")]);
    assert_eq!(
        got[0].labels, labels,
        "the default index labels only; no job"
    );
    assert_eq!(got[0].line, "payment failed", "a string body as is");
    assert_eq!(
        sorted(got[0].structured_metadata.clone()),
        pairs(&[
            ("http_status_code", "500"),
            ("user", "alice"),
            ("ratio", "0.5"),
            ("ok", "false"),
            ("tags", r#"["a","b"]"#),
            ("db_rows", "3"),
            ("db_sys", "pg"),
            ("observed_timestamp", "1700000000200000000"),
            ("severity_number", "9"),
            ("severity_text", "INFO"),
            ("flags", "1"),
            ("trace_id", "0102030405060708090a0b0c0d0e0f10"),
            ("span_id", "0102030405060708"),
            ("host_name", "edge-7"),
            ("team", "payments"),
            ("scope_attr", "true"),
            ("scope_name", "my.lib"),
            ("scope_version", "1.2.3"),
        ])
    );
    assert_eq!(
        got[1].line, r#"{"msg":"structured","n":7}"#,
        "a map body: sorted JSON"
    );
    assert_eq!(
        sorted(got[1].structured_metadata.clone()),
        pairs(&[
            ("severity_number", "17"),
            ("host_name", "edge-7"),
            ("team", "payments"),
            ("scope_attr", "true"),
            ("scope_name", "my.lib"),
            ("scope_version", "1.2.3"),
        ]),
        "no observed_timestamp without the record's own time, no zero flags or id"
    );
}

#[test]
fn otlp_mapping_keys_change_what_becomes_a_label_and_what_is_sent() {
    let rec = || {
        (
            m(vec![(
                "otlp",
                m(vec![(
                    "attributes",
                    m(vec![("secret", s("x")), ("a", s("1"))]),
                )]),
            )]),
            m(vec![("log", V::Nil)]),
        )
    };
    let mp = mapping(|c| {
        c.otlp.resource_index_labels = some("host.name, regex:te.*");
        c.otlp.resource_drop = some("k8s.pod.name");
        c.otlp.log_drop = some("secret");
        c.otlp.scope_drop = some("regex:scope\\..*");
        c.labels = some("job=edge");
    });
    let e = &map_otlp(&mp, &otlp_chunk(vec![rec()]))[0];
    assert_eq!(
        e.labels,
        pairs(&[
            ("host_name", "edge-7"),
            ("job", "edge"),
            ("k8s_pod_name", "pod-1"),
            ("service_name", "checkout"),
            ("team", "payments"),
        ]),
        "a default is dropped only with otlp_ignore_defaults, as in Loki"
    );
    assert_eq!(e.line, "", "an absent body is an empty line");
    assert_eq!(
        sorted(e.structured_metadata.clone()),
        pairs(&[
            ("a", "1"),
            ("scope_name", "my.lib"),
            ("scope_version", "1.2.3")
        ])
    );
    let mp = mapping(|c| {
        c.otlp.ignore_defaults = some("on");
        c.otlp.resource_drop = some("k8s.pod.name");
        c.otlp.severity_text_as_label = some("on");
    });
    let e = &map_otlp(&mp, &otlp_chunk(vec![rec()]))[0];
    assert_eq!(
        e.labels,
        pairs(&[("job", "fluent-bit")]),
        "service.name not indexed: no service_name label (as Loki), the default job"
    );
    assert!(e
        .structured_metadata
        .iter()
        .any(|(k, v)| k == "service_name" && v == "checkout"));
    assert!(!e
        .structured_metadata
        .iter()
        .any(|(k, _)| k == "k8s_pod_name"));
    // off: an OTLP record is mapped as any other record
    let mp = mapping(|c| c.otlp.mapping = some("off"));
    let e = &map_otlp(&mp, &otlp_chunk(vec![rec()]))[0];
    assert_eq!(e.labels, pairs(&[("job", "fluent-bit")]));
    assert_eq!(e.line, r#"{"log":null}"#);
    assert!(Mapping::new(&MappingConfig {
        otlp: OtlpConfig {
            mapping: some("loud"),
            ..Default::default()
        },
        ..Default::default()
    })
    .is_err());
}

#[test]
fn a_record_without_otlp_metadata_keeps_today_s_mapping() {
    let mp = mapping(|c| c.labels = some("job=x"));
    let bytes = encode(&m(vec![("log", s("hello")), ("level", s("info"))]));
    let r = Chunk::new(&bytes).records().next().unwrap().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    mp.encode_record(
        "t",
        5,
        r.event.body,
        r.event.metadata,
        None,
        &mut MapStats::default(),
        &mut Scratch::default(),
        &mut a,
    );
    mp.encode_event(
        "t",
        5,
        r.event.body,
        r.event.metadata,
        &mut MapStats::default(),
        &mut Scratch::default(),
        &mut b,
    );
    assert_eq!(a, b);
}

#[test]
fn otlp_values_and_names_follow_loki() {
    let mp = mapping(|_| {});
    let rec = (
        m(vec![(
            "otlp",
            m(vec![(
                "attributes",
                m(vec![
                    ("big", V::from(1e21)),
                    ("tiny", V::from(1.5e-7)),
                    ("nan", V::from(f64::NAN)),
                    ("bad", V::Array(vec![V::from(f64::NAN)])),
                    ("bytes", V::Binary(b"hi".to_vec())),
                    ("1st", s("x")),
                    ("...", s("gone")),
                    ("empty", m(vec![])),
                    ("html", V::Array(vec![s("<a&b>")])),
                ]),
            )]),
        )]),
        m(vec![
            ("b", s("2")),
            ("a", m(vec![("z", V::from(1)), ("y", V::Nil)])),
        ]),
    );
    let e = &map_otlp(&mp, &otlp_chunk(vec![rec]))[0];
    let md: std::collections::BTreeMap<_, _> = e.structured_metadata.iter().cloned().collect();
    assert_eq!(md["big"], "1e+21");
    assert_eq!(md["tiny"], "1.5e-7");
    assert_eq!(md["nan"], "NaN");
    assert_eq!(md["bad"], "", "a NaN inside an array: Go's encoder fails");
    assert_eq!(md["bytes"], "aGk=");
    assert_eq!(md["key_1st"], "x");
    assert_eq!(md["html"], r#"["<a&b>"]"#);
    assert!(!md.contains_key("empty") && !md.keys().any(|k| k.trim_matches('_').is_empty()));
    assert_eq!(e.line, r#"{"a":{"y":null,"z":1},"b":"2"}"#);
}

#[test]
fn otlp_labels_past_loki_s_limit_keep_service_name_and_the_last_of_a_name() {
    let mp = mapping(|c| c.otlp.resource_index_labels = some("regex:.*"));
    let attrs: Vec<(String, V)> = (0..20)
        .map(|i| (format!("a{i:02}"), s("v")))
        .chain([
            ("zz.top".to_string(), s("first")),
            ("zz_top".to_string(), s("last")),
            ("service.name".to_string(), s("svc")),
        ])
        .collect();
    let mut c = event(
        u32::MAX,
        m(vec![("schema", s("otlp"))]),
        m(vec![(
            "resource",
            m(vec![(
                "attributes",
                V::Map(attrs.into_iter().map(|(k, v)| (V::from(k), v)).collect()),
            )]),
        )]),
    );
    // ts 0 (Fluent Bit's JSON path with "timeUnixNano":"0"): the observed time is used
    c.extend(event(
        0,
        m(vec![(
            "otlp",
            m(vec![
                ("observed_timestamp", V::from(1_700_000_005_000_000_000u64)),
                ("event_name", s("e")),
                (
                    "attributes",
                    m(vec![("event_name", s("dup")), ("k", s("x"))]),
                ),
            ]),
        )]),
        m(vec![("log", s("x"))]),
    ));
    let r = Chunk::new(&c).records().next().unwrap().unwrap();
    let mut out = Vec::new();
    mp.encode_record(
        "t",
        0,
        r.event.body,
        r.event.metadata,
        r.group.map(|g| (g.metadata, g.attributes)),
        &mut MapStats::default(),
        &mut Scratch::default(),
        &mut out,
    );
    let e = SpooledEntry::decode(0, &out).unwrap();
    assert_eq!(e.ts_ns, 1_700_000_005_000_000_000);
    let labels: std::collections::BTreeMap<_, _> = e.labels.iter().cloned().collect();
    assert_eq!(labels.get("service_name").map(String::as_str), Some("svc"));
    assert_eq!(
        e.labels.iter().filter(|(k, _)| k != "service_name").count(),
        MAX_LABELS
    );
    assert!(
        !labels.contains_key("zz_top"),
        "spilled from the end: {labels:?}"
    );
    let md: Vec<_> = e
        .structured_metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(
        md.contains(&("zz_top", "last")),
        "the last of a name: {md:?}"
    );
    assert!(!md.contains(&("zz_top", "first")));
    assert_eq!(md.iter().filter(|(k, _)| *k == "event_name").count(), 1);
    assert!(md.contains(&("event_name", "e")));
}
