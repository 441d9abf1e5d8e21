//! Property tests: label text parses back to the effective labels; protobuf and
//! JSON encodings carry every entry unchanged.

use std::collections::BTreeMap;

use lockstep_loki::*;
use proptest::prelude::*;
use prost::Message;

/// Reference parser for `{name="value", ...}` with `\\ \" \n \r \t` escapes.
fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        if !is_valid_label_name(&name) || chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(match chars.next()? {
                    '\\' => '\\',
                    '"' => '"',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    _ => return None,
                }),
                '\n' => return None,
                c => value.push(c),
            }
        }
        out.insert(name, value);
        match chars.next() {
            None => break,
            Some(',') => {
                if chars.next()? != ' ' {
                    return None;
                }
            }
            Some(_) => return None,
        }
    }
    Some(out)
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..6)
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<i64>(),
        ".{0,20}",
        proptest::collection::vec(("[a-z_]{1,5}", ".{0,6}"), 0..3),
    )
        .prop_map(|(ts, line, sm)| Entry {
            ts_ns: ts as i128,
            line,
            structured_metadata: sm,
        })
}

/// Any stream, ungrouped: empty label sets, empty lines and metadata names, zero and
/// negative times, times past the `i64` seconds range.
fn raw_stream() -> impl Strategy<Value = Stream> {
    let ts = prop_oneof![
        Just(0i128),
        any::<i64>().prop_map(i128::from),
        any::<i128>(),
        (0i64..3).prop_map(|s| i128::from(s) * 1_000_000_000),
    ];
    let entry = (
        ts,
        ".{0,20}",
        proptest::collection::vec((".{0,5}", ".{0,6}"), 0..3),
    )
        .prop_map(|(ts_ns, line, structured_metadata)| Entry {
            ts_ns,
            line,
            structured_metadata,
        });
    (label_map(), proptest::collection::vec(entry, 0..5))
        .prop_map(|(labels, entries)| Stream { labels, entries })
}

proptest! {
    #[test]
    fn direct_protobuf_is_byte_for_byte_prost(streams in proptest::collection::vec(raw_stream(), 0..5)) {
        let mut direct = Vec::new();
        encode_push_request(&streams, &mut direct);
        prop_assert_eq!(direct, to_push_request(&streams).encode_to_vec());
    }

    #[test]
    fn rendered_labels_parse_back(labels in label_map()) {
        let text = render_labels(&labels);
        let parsed = parse_labels(&text);
        prop_assert_eq!(parsed, Some(effective_labels(&labels)), "{}", text);
    }

    #[test]
    fn protobuf_round_trip(items in proptest::collection::vec((label_map(), entry()), 0..12)) {
        let streams = group_entries(items.clone());
        prop_assert_eq!(streams.iter().map(|s| s.entries.len()).sum::<usize>(), items.len());
        for s in &streams {
            prop_assert!(s.entries.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
        }
        let body = encode_protobuf_snappy(&streams).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = PushRequest::decode(raw.as_slice()).unwrap();
        prop_assert_eq!(req.streams.len(), streams.len());
        for (got, want) in req.streams.iter().zip(&streams) {
            prop_assert_eq!(parse_labels(&got.labels), Some(want.labels.clone()));
            prop_assert_eq!(got.entries.len(), want.entries.len());
            for (g, w) in got.entries.iter().zip(&want.entries) {
                let ts = g.timestamp.clone().unwrap();
                prop_assert!((0..1_000_000_000).contains(&ts.nanos));
                prop_assert_eq!(ts.seconds as i128 * 1_000_000_000 + ts.nanos as i128, w.ts_ns);
                prop_assert_eq!(&g.line, &w.line);
                let sm: Vec<(String, String)> = g.structured_metadata.iter()
                    .map(|p| (p.name.clone(), p.value.clone())).collect();
                prop_assert_eq!(&sm, &w.structured_metadata);
            }
        }
    }

    #[test]
    fn json_round_trip(items in proptest::collection::vec((label_map(), entry()), 1..8)) {
        let streams = group_entries(items);
        let v: serde_json::Value = serde_json::from_slice(&encode_json(&streams)).unwrap();
        let arr = v["streams"].as_array().unwrap();
        prop_assert_eq!(arr.len(), streams.len());
        for (got, want) in arr.iter().zip(&streams) {
            for (k, val) in &want.labels {
                prop_assert_eq!(got["stream"][k].as_str(), Some(val.as_str()));
            }
            for (g, w) in got["values"].as_array().unwrap().iter().zip(&want.entries) {
                prop_assert_eq!(g[0].as_str().unwrap().parse::<i128>().unwrap(), w.ts_ns);
                prop_assert_eq!(g[1].as_str(), Some(w.line.as_str()));
                prop_assert_eq!(g.as_array().unwrap().len(), if w.structured_metadata.is_empty() { 2 } else { 3 });
            }
        }
    }
}
