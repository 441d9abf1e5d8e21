use std::collections::BTreeMap;

use lockstep_loki::*;
use prost::Message;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample() -> Vec<Stream> {
    vec![
        Stream {
            labels: labels(&[("app", "api"), ("host", "h1")]),
            entries: vec![
                Entry {
                    ts_ns: 1_700_000_000_123_456_789,
                    line: "first ünïcode line".into(),
                    structured_metadata: vec![
                        ("trace_id".into(), "abc".into()),
                        ("span_id".into(), "def".into()),
                    ],
                },
                Entry::new(1_700_000_001_000_000_000, "second"),
            ],
        },
        Stream {
            labels: labels(&[("app", "db"), ("empty", "")]),
            entries: vec![Entry::new(-1, "before epoch")],
        },
    ]
}

#[test]
fn protobuf_snappy_round_trips() {
    let body = encode_protobuf_snappy(&sample()).unwrap();
    // Raw (block) snappy, not the framed stream format (which starts with 0xff "sNaPpY").
    assert_ne!(body.first(), Some(&0xff));
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let req = PushRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.streams.len(), 2);
    let s0 = &req.streams[0];
    assert_eq!(s0.labels, r#"{app="api", host="h1"}"#);
    assert_eq!(s0.entries.len(), 2);
    let e0 = &s0.entries[0];
    assert_eq!(
        e0.timestamp,
        Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789
        })
    );
    assert_eq!(e0.line, "first ünïcode line");
    assert_eq!(
        e0.structured_metadata,
        vec![
            LabelPairAdapter {
                name: "trace_id".into(),
                value: "abc".into()
            },
            LabelPairAdapter {
                name: "span_id".into(),
                value: "def".into()
            },
        ]
    );
    assert_eq!(s0.entries[1].line, "second");
    assert!(s0.entries[1].structured_metadata.is_empty());
    let s1 = &req.streams[1];
    // Empty-valued label is dropped.
    assert_eq!(s1.labels, r#"{app="db"}"#);
    // -1 ns = -1 s + 999_999_999 ns (nanos always non-negative).
    assert_eq!(
        s1.entries[0].timestamp,
        Some(Timestamp {
            seconds: -1,
            nanos: 999_999_999
        })
    );
    // And the whole message equals what we build directly.
    assert_eq!(req, to_push_request(&sample()));
}

#[test]
fn protobuf_field_numbers_match_logproto() {
    // One stream, one entry, hand-checked wire bytes: tag numbers per push.proto.
    let s = vec![Stream {
        labels: labels(&[("a", "b")]),
        entries: vec![Entry {
            ts_ns: 2_000_000_003,
            line: "x".into(),
            structured_metadata: vec![("k".into(), "v".into())],
        }],
    }];
    let raw = to_push_request(&s).encode_to_vec();
    let label_text = br#"{a="b"}"#;
    let mut ts = vec![0x08, 2, 0x10, 3]; // seconds=1 varint 2, nanos=2 varint 3
    let mut sm = vec![0x0a, 1, b'k', 0x12, 1, b'v'];
    let mut entry = vec![0x0a, ts.len() as u8];
    entry.append(&mut ts);
    entry.extend_from_slice(&[0x12, 1, b'x']);
    entry.push(0x1a);
    entry.push(sm.len() as u8);
    entry.append(&mut sm);
    let mut stream = vec![0x0a, label_text.len() as u8];
    stream.extend_from_slice(label_text);
    stream.push(0x12);
    stream.push(entry.len() as u8);
    stream.extend_from_slice(&entry);
    let mut want = vec![0x0a, stream.len() as u8];
    want.extend_from_slice(&stream);
    assert_eq!(raw, want);
}

#[test]
fn json_body_shape() {
    let body = encode_json(&sample());
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let want = serde_json::json!({
        "streams": [
            {
                "stream": {"app": "api", "host": "h1"},
                "values": [
                    ["1700000000123456789", "first ünïcode line", {"trace_id": "abc", "span_id": "def"}],
                    ["1700000001000000000", "second"]
                ]
            },
            {
                "stream": {"app": "db"},
                "values": [["-1", "before epoch"]]
            }
        ]
    });
    assert_eq!(v, want);
}

#[test]
fn json_sanitises_label_names() {
    let s = vec![Stream {
        labels: labels(&[("k8s.pod-name", "p"), ("1st", "x")]),
        entries: vec![Entry::new(5, "l")],
    }];
    let v = to_json_value(&s);
    assert_eq!(
        v["streams"][0]["stream"],
        serde_json::json!({"k8s_pod_name": "p", "_1st": "x"})
    );
}
