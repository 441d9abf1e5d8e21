//! Decoder tests: both layouts, timestamps, groups, nesting, and malformed
//! input with exact byte offsets.

use fluent_bit_chunk::decode::{
    ArrayView, Chunk, DecodeErrorKind, EventKind, Layout, MapView, Timestamp, ValueRef,
};
use proptest::prelude::*;
use rmpv::Value;

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn event_time(sec: u32, nsec: u32) -> Value {
    let mut payload = sec.to_be_bytes().to_vec();
    payload.extend_from_slice(&nsec.to_be_bytes());
    Value::Ext(0, payload)
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn v2(ts: Value, metadata: Value, body: Value) -> Value {
    Value::Array(vec![Value::Array(vec![ts, metadata]), body])
}

fn v1(ts: Value, body: Value) -> Value {
    Value::Array(vec![ts, body])
}

/// Converts a view back into an owned value (recursive: tests only).
fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Nil => Value::Nil,
        ValueRef::Bool(b) => Value::Boolean(b),
        ValueRef::UInt(u) => Value::from(u),
        ValueRef::Int(i) => Value::from(i),
        ValueRef::F32(f) => Value::F32(f),
        ValueRef::F64(f) => Value::F64(f),
        ValueRef::Str(s) => match s.as_str() {
            Some(s) => Value::from(s),
            None => Value::Binary(s.as_bytes().to_vec()),
        },
        ValueRef::Bin(b) => Value::Binary(b.to_vec()),
        ValueRef::Ext(t, b) => Value::Ext(t, b.to_vec()),
        ValueRef::Array(a) => owned_array(a),
        ValueRef::Map(m) => owned_map(m),
    }
}

fn owned_map(m: MapView<'_>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (owned(k), owned(v))).collect())
}

fn owned_array(a: ArrayView<'_>) -> Value {
    Value::Array(a.iter().map(owned).collect())
}

#[test]
fn current_layout_with_event_time_and_metadata() {
    let body = map(&[("log", "hello".into()), ("n", 7.into())]);
    let md = map(&[("otlp", map(&[("severity", "INFO".into())]))]);
    let data = enc(&v2(
        event_time(1_700_000_000, 123_456_789),
        md.clone(),
        body.clone(),
    ));
    let events: Vec<_> = Chunk::new(&data)
        .events()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 1);
    let e = events[0];
    assert_eq!(e.kind, EventKind::Record);
    assert_eq!(e.layout, Layout::WithMetadata);
    assert_eq!(
        e.timestamp,
        Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789
        }
    );
    assert_eq!(e.timestamp.unix_nanos(), 1_700_000_000_123_456_789);
    assert_eq!(e.body.get("log").and_then(|v| v.as_str()), Some("hello"));
    assert_eq!(e.body.get("n").and_then(|v| v.as_u64()), Some(7));
    assert_eq!(e.body.get("missing"), None);
    assert_eq!(owned_map(e.body), body);
    assert_eq!(owned_map(e.metadata), md);
    assert_eq!(e.raw, &data[..]);
    // Zero-copy: the string borrows from the chunk.
    let s = e.body.get("log").unwrap().as_str().unwrap();
    let range = data.as_ptr_range();
    assert!(range.contains(&s.as_ptr()));
}

#[test]
fn legacy_layout_and_integer_and_float_timestamps() {
    let mut data = enc(&v1(Value::from(1_600_000_000u64), map(&[("a", 1.into())])));
    data.extend(enc(&v1(Value::F64(1.5), map(&[("b", 2.into())]))));
    data.extend(enc(&v1(Value::F32(2.25), map(&[]))));
    let events: Vec<_> = Chunk::new(&data)
        .events()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.layout == Layout::Legacy && e.metadata.is_empty()));
    assert_eq!(
        events[0].timestamp,
        Timestamp {
            sec: 1_600_000_000,
            nsec: 0
        }
    );
    assert_eq!(
        events[1].timestamp,
        Timestamp {
            sec: 1,
            nsec: 500_000_000
        }
    );
    assert_eq!(
        events[2].timestamp,
        Timestamp {
            sec: 2,
            nsec: 250_000_000
        }
    );
    assert_eq!(events[1].body.get("b").and_then(|v| v.as_i64()), Some(2));
    assert_eq!(
        events[1].offset,
        enc(&v1(Value::from(1_600_000_000u64), map(&[("a", 1.into())]))).len()
    );
}

#[test]
fn group_markers_carry_resource_attributes_to_records() {
    let res = map(&[("resource", map(&[("service.name", "api".into())]))]);
    let mut data = Vec::new();
    data.extend(enc(&v2(
        event_time(0xFFFF_FFFF, 0),
        map(&[("schema", "otlp".into())]),
        res.clone(),
    )));
    data.extend(enc(&v2(
        event_time(10, 1),
        map(&[]),
        map(&[("log", "in group".into())]),
    )));
    data.extend(enc(&v2(event_time(0xFFFF_FFFE, 0), map(&[]), map(&[]))));
    data.extend(enc(&v2(
        event_time(11, 2),
        map(&[]),
        map(&[("log", "after".into())]),
    )));

    let kinds: Vec<_> = Chunk::new(&data)
        .events()
        .map(|e| e.unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::GroupStart,
            EventKind::Record,
            EventKind::GroupEnd,
            EventKind::Record
        ]
    );

    let records: Vec<_> = Chunk::new(&data)
        .records()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 2);
    let g = records[0].group.expect("first record is inside the group");
    assert_eq!(g.offset, 0);
    assert_eq!(owned_map(g.attributes), res);
    assert_eq!(
        g.metadata.get("schema").and_then(|v| v.as_str()),
        Some("otlp")
    );
    assert_eq!(
        records[0].event.body.get("log").unwrap().as_str(),
        Some("in group")
    );
    assert!(records[1].group.is_none(), "group end closes the group");
    assert_eq!(Chunk::new(&data).validate(), Ok(4));
}

#[test]
fn nested_values_and_non_utf8_strings() {
    let body = map(&[
        (
            "arr",
            Value::Array(vec![1.into(), Value::from(-5), Value::Nil, true.into()]),
        ),
        ("obj", map(&[("inner", map(&[("deep", "x".into())]))])),
        ("bin", Value::Binary(vec![0, 1, 2])),
        ("f", Value::F64(0.5)),
    ]);
    let data = enc(&v2(event_time(1, 0), map(&[]), body.clone()));
    let e = Chunk::new(&data).events().next().unwrap().unwrap();
    let arr = e.body.get("arr").unwrap().as_array().unwrap();
    assert_eq!(arr.len(), 4);
    let items: Vec<_> = arr.iter().collect();
    assert_eq!(items[1].as_i64(), Some(-5));
    let deep = e
        .body
        .get("obj")
        .unwrap()
        .as_map()
        .unwrap()
        .get("inner")
        .unwrap()
        .as_map()
        .unwrap();
    assert_eq!(deep.get("deep").unwrap().as_str(), Some("x"));
    assert_eq!(owned_map(e.body), body);

    // [1, {"bad": str(ff fe 61)}]: a non-UTF-8 string decodes, as bytes.
    let data = [
        0x92, 0x01, 0x81, 0xa3, b'b', b'a', b'd', 0xa3, 0xff, 0xfe, b'a',
    ];
    let e = Chunk::new(&data).events().next().unwrap().unwrap();
    let ValueRef::Str(bad) = e.body.get("bad").unwrap() else {
        panic!("a string")
    };
    assert_eq!(bad.as_str(), None);
    assert_eq!(bad.as_bytes(), &[0xff, 0xfe, b'a']);
    assert_eq!(bad.to_str_lossy(), "\u{fffd}\u{fffd}a");
}

#[test]
fn hostile_nesting_validates_on_a_64k_stack() {
    // 200k nested arrays inside the body: a recursive decoder would need
    // megabytes of stack; this one must pass on Fluent Bit's 64 KiB.
    let depth = 200_000;
    let mut data = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
    data.extend(std::iter::repeat_n(0x91u8, depth));
    data.push(0xc0);
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let chunk = Chunk::new(&data);
            let n = chunk.validate().unwrap();
            let e = chunk.events().next().unwrap().unwrap();
            let mut v = e.body.get("k").unwrap();
            let mut levels = 0;
            while let ValueRef::Array(a) = v {
                v = a.iter().next().unwrap();
                levels += 1;
                if levels > 3 {
                    break;
                }
            }
            n
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), 1);
}

fn first_error(data: &[u8]) -> fluent_bit_chunk::DecodeError {
    Chunk::new(data)
        .events()
        .find_map(|e| e.err())
        .expect("an error")
}

#[test]
fn malformed_input_names_the_byte_offset() {
    let good = enc(&v2(event_time(5, 0), map(&[]), map(&[("a", 1.into())])));
    let glen = good.len();

    // Not an array, at the start of the second event.
    let mut data = good.clone();
    data.extend(enc(&map(&[("a", 1.into())])));
    let e = first_error(&data);
    assert_eq!((e.offset, e.event_offset, e.index), (glen, glen, 1));
    assert_eq!(e.kind, DecodeErrorKind::EventNotArray { found: "a map" });
    let msg = e.to_string();
    assert!(msg.contains(&format!("byte offset {glen}")), "{msg}");

    // Array of 3.
    let e = first_error(&enc(&Value::Array(vec![1.into(), 2.into(), 3.into()])));
    assert_eq!(
        (e.offset, e.kind),
        (0, DecodeErrorKind::EventArrayLen { len: 3 })
    );

    // Header array of 3: the header is at offset 1.
    let e = first_error(&enc(&Value::Array(vec![
        Value::Array(vec![1.into(), map(&[]), 3.into()]),
        map(&[]),
    ])));
    assert_eq!(
        (e.offset, e.kind),
        (1, DecodeErrorKind::HeaderArrayLen { len: 3 })
    );

    // Negative integer timestamp (legacy layout): timestamp at offset 1.
    let e = first_error(&enc(&v1(Value::from(-1), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (1, DecodeErrorKind::NegativeTimestamp { value: -1 })
    );

    // Ext timestamp of the wrong type, in the current layout: offset 2.
    let e = first_error(&enc(&v2(Value::Ext(1, vec![0; 8]), map(&[]), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (
            2,
            DecodeErrorKind::TimestampExt {
                ext_type: 1,
                len: 8
            }
        )
    );

    // String timestamp.
    let e = first_error(&enc(&v1("now".into(), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (1, DecodeErrorKind::TimestampType { found: "a string" })
    );

    // Negative float timestamp.
    let e = first_error(&enc(&v1(Value::F64(-2.0), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (1, DecodeErrorKind::BadFloatTimestamp { value: -2.0 })
    );

    // Nanoseconds out of range.
    let e = first_error(&enc(&v1(event_time(1, 1_000_000_000), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (
            1,
            DecodeErrorKind::NanosecondsOutOfRange {
                nsec: 1_000_000_000
            }
        )
    );

    // Metadata not a map: [[ts(10 bytes at 2), "x"], {}] -> metadata at 12.
    let e = first_error(&enc(&v2(event_time(1, 0), "x".into(), map(&[]))));
    assert_eq!(
        (e.offset, e.kind),
        (12, DecodeErrorKind::MetadataNotMap { found: "a string" })
    );

    // Body not a map, in the second event.
    let mut data = good.clone();
    data.extend(enc(&v1(Value::from(1), Value::Array(vec![]))));
    let e = first_error(&data);
    assert_eq!((e.offset, e.event_offset), (glen + 2, glen));
    assert_eq!(e.kind, DecodeErrorKind::BodyNotMap { found: "an array" });

    // Reserved marker inside the body: [1, {"k": 0xc1}] -> at offset 4.
    let e = first_error(&[0x92, 0x01, 0x81, 0xa1, b'k', 0xc1]);
    assert_eq!((e.offset, e.kind), (5, DecodeErrorKind::ReservedMarker));

    // A string claiming more bytes than remain: str8 of 200 at offset 5.
    let e = first_error(&[0x92, 0x01, 0x81, 0xa1, b'k', 0xd9, 200, b'a', b'b']);
    assert_eq!(e.offset, 5);
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnexpectedEof {
            needed: 202,
            available: 4
        }
    );

    // A map claiming a billion entries.
    let e = first_error(&[0x92, 0x01, 0xdf, 0x3b, 0x9a, 0xca, 0x00, 0xa1, b'k']);
    assert_eq!(e.offset, 9);
    assert!(
        matches!(e.kind, DecodeErrorKind::UnexpectedEof { .. }),
        "{e}"
    );

    // Events before the error were yielded; nothing after it.
    let mut data = good.clone();
    data.push(0xc1);
    data.extend(good.clone());
    let results: Vec<_> = Chunk::new(&data).events().collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().offset, glen);
    assert_eq!(Chunk::new(&data).validate().unwrap_err().offset, glen);
}

#[test]
fn empty_chunk_has_no_events() {
    assert_eq!(Chunk::new(&[]).events().count(), 0);
    assert_eq!(Chunk::new(&[]).validate(), Ok(0));
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("NaN breaks equality", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,40}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, b)| Value::Ext(t, b)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,8}", inner), 0..8).prop_map(|kv| {
                Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
            }),
        ]
    })
}

fn body_map() -> impl Strategy<Value = Value> {
    proptest::collection::vec(("[a-z]{1,8}", value()), 0..6)
        .prop_map(|kv| Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()))
}

#[derive(Debug, Clone)]
struct Spec {
    sec: u32,
    nsec: u32,
    current_layout: bool,
    metadata: Value,
    body: Value,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u32..0xFFFF_FFFD,
        0u32..1_000_000_000,
        any::<bool>(),
        body_map(),
        body_map(),
    )
        .prop_map(|(sec, nsec, current_layout, metadata, body)| Spec {
            sec,
            nsec,
            current_layout,
            metadata,
            body,
        })
}

fn encode_spec(s: &Spec) -> Vec<u8> {
    if s.current_layout {
        enc(&v2(
            event_time(s.sec, s.nsec),
            s.metadata.clone(),
            s.body.clone(),
        ))
    } else {
        enc(&v1(event_time(s.sec, s.nsec), s.body.clone()))
    }
}

proptest! {
    #[test]
    fn roundtrip_of_random_events(specs in proptest::collection::vec(spec(), 0..6)) {
        let mut data = Vec::new();
        let mut offsets = Vec::new();
        for s in &specs {
            offsets.push(data.len());
            data.extend(encode_spec(s));
        }
        let events: Vec<_> = Chunk::new(&data).events().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(events.len(), specs.len());
        for ((e, s), off) in events.iter().zip(&specs).zip(&offsets) {
            prop_assert_eq!(e.offset, *off);
            prop_assert_eq!(e.timestamp, Timestamp { sec: u64::from(s.sec), nsec: s.nsec });
            prop_assert_eq!(owned_map(e.body), s.body.clone());
            if s.current_layout {
                prop_assert_eq!(owned_map(e.metadata), s.metadata.clone());
            } else {
                prop_assert!(e.metadata.is_empty());
            }
        }
    }

    #[test]
    fn truncation_keeps_complete_events_and_reports_the_cut_event(
        specs in proptest::collection::vec(spec(), 1..5),
        cut_seed in any::<usize>(),
    ) {
        let mut data = Vec::new();
        let mut bounds = vec![0];
        for s in &specs {
            data.extend(encode_spec(s));
            bounds.push(data.len());
        }
        let cut = cut_seed % data.len();
        let truncated = &data[..cut];
        let results: Vec<_> = Chunk::new(truncated).events().collect();
        let complete = bounds.iter().filter(|b| **b <= cut).count() - 1;
        let at_boundary = bounds.contains(&cut);
        prop_assert_eq!(results.len(), complete + usize::from(!at_boundary));
        prop_assert!(results[..complete].iter().all(|r| r.is_ok()));
        if !at_boundary {
            let err = results[complete].as_ref().unwrap_err();
            prop_assert_eq!(err.event_offset, bounds[complete]);
            prop_assert_eq!(err.index, complete);
            prop_assert!(err.offset >= err.event_offset && err.offset <= cut);
            let is_eof = matches!(err.kind, DecodeErrorKind::UnexpectedEof { .. });
            prop_assert!(is_eof, "{}", err);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        for r in Chunk::new(&data).events() {
            match r {
                Ok(e) => {
                    prop_assert!(e.offset + e.raw.len() <= data.len());
                    let _ = owned_map(e.body);
                    let _ = owned_map(e.metadata);
                }
                Err(e) => prop_assert!(e.offset <= data.len() && e.event_offset <= e.offset),
            }
        }
    }
}

mod json {
    use super::*;
    use fluent_bit_chunk::json::to_json_string;

    fn owned_to_serde(v: &Value) -> serde_json::Value {
        match v {
            Value::Nil | Value::Ext(..) => serde_json::Value::Null,
            Value::Boolean(b) => serde_json::json!(b),
            Value::Integer(i) => {
                if let Some(u) = i.as_u64() {
                    serde_json::json!(u)
                } else {
                    serde_json::json!(i.as_i64().unwrap())
                }
            }
            Value::F32(f) => serde_json::Number::from_f64(f64::from(*f))
                .map_or(serde_json::Value::Null, Into::into),
            Value::F64(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::String(s) => serde_json::json!(s.as_str().unwrap()),
            Value::Binary(b) => serde_json::json!(String::from_utf8_lossy(b)),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(owned_to_serde).collect()),
            Value::Map(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    out.insert(k.as_str().unwrap().to_string(), owned_to_serde(v));
                }
                serde_json::Value::Object(out)
            }
        }
    }

    #[test]
    fn renders_records_as_json() {
        let body = map(&[
            ("log", "line \"quoted\"\n\t\u{1}".into()),
            ("n", Value::from(-3)),
            ("big", Value::from(u64::MAX)),
            ("f", Value::F64(0.25)),
            ("inf", Value::F64(f64::INFINITY)),
            (
                "nested",
                map(&[("a", Value::Array(vec![Value::Nil, true.into(), map(&[])]))]),
            ),
            ("empty", Value::Array(vec![])),
        ]);
        let data = enc(&v2(event_time(1, 0), map(&[]), body));
        let e = Chunk::new(&data).events().next().unwrap().unwrap();
        let text = e.body.to_json();
        assert_eq!(
            text,
            r#"{"log":"line \"quoted\"\n\t\u0001","n":-3,"big":18446744073709551615,"f":0.25,"inf":null,"nested":{"a":[null,true,{}]},"empty":[]}"#
        );
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
    }

    #[test]
    fn non_string_keys_become_strings() {
        // [1, {1: "a", nil: "b", [1]: "c"}]
        let data = [
            0x92, 0x01, 0x83, 0x01, 0xa1, b'a', 0xc0, 0xa1, b'b', 0x91, 0x01, 0xa1, b'c',
        ];
        let e = Chunk::new(&data).events().next().unwrap().unwrap();
        assert_eq!(e.body.to_json(), r#"{"1":"a","null":"b","<array>":"c"}"#);
    }

    #[test]
    fn deep_nesting_renders_on_a_64k_stack() {
        let depth = 100_000;
        let mut data = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
        data.extend(std::iter::repeat_n(0x91u8, depth));
        data.push(0xc0);
        let len = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let e = Chunk::new(&data).events().next().unwrap().unwrap();
                e.body.to_json().len()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(len, "{\"k\":".len() + 2 * depth + "null}".len());
    }

    proptest! {
        #[test]
        fn json_matches_serde_json(body in body_map()) {
            let data = enc(&v1(Value::from(1u64), body.clone()));
            let e = Chunk::new(&data).events().next().unwrap().unwrap();
            let text = to_json_string(ValueRef::Map(e.body));
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(parsed, owned_to_serde(&body));
        }
    }
}
