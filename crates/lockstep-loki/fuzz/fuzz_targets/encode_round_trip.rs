//! Outside input reaches this crate as label names/values, lines, metadata (from
//! records) and response bodies (from the server). Build all of them from fuzz
//! bytes and check: encoding never fails or panics, protobuf+snappy and JSON decode
//! back to the same entries, rendered label names are valid, and body truncation
//! plus classification never panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lockstep_loki::*;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 1000;
    let o = Outcome::from_status(status, truncate_body(&data[2..]));
    assert_eq!(o.status(), Some(status));
    assert!(o
        .body()
        .is_none_or(|b| b.chars().count() <= MAX_BODY_CHARS + 20));

    // Records separated by 0xff; fields within a record by 0xfe:
    // label name, label value, line, metadata name, metadata value.
    let mut items = Vec::new();
    for (i, rec) in data[2..].split(|&b| b == 0xff).enumerate() {
        let f: Vec<String> = rec
            .split(|&b| b == 0xfe)
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect();
        let get = |n: usize| f.get(n).cloned().unwrap_or_default();
        let mut labels = BTreeMap::new();
        labels.insert(get(0), get(1));
        labels.insert("host".to_string(), "h".to_string());
        let ts = rec.iter().fold(i as i128, |a, &b| {
            a.wrapping_mul(31).wrapping_add(b as i128 - 100)
        });
        let mut e = Entry::new(ts, get(2));
        if f.len() > 3 {
            e.structured_metadata.push((get(3), get(4)));
        }
        items.push((labels, e));
    }
    let total = items.len();
    let streams = group_entries(items);
    assert_eq!(
        streams.iter().map(|s| s.entries.len()).sum::<usize>(),
        total
    );

    let body = encode_protobuf_snappy(&streams).expect("encode");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let req = PushRequest::decode(raw.as_slice()).expect("protobuf");
    assert_eq!(req, to_push_request(&streams));
    for (s, want) in req.streams.iter().zip(&streams) {
        assert_eq!(s.labels, render_labels(&want.labels));
        for name in effective_labels(&want.labels).keys() {
            assert!(is_valid_label_name(name));
        }
        for (g, w) in s.entries.iter().zip(&want.entries) {
            assert_eq!(g.line, w.line);
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&encode_json(&streams)).expect("json");
    assert_eq!(
        v["streams"].as_array().map(|a| a.len()),
        Some(streams.len())
    );
});
