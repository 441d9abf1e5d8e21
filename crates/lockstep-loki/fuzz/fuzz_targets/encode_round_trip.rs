//! Outside input reaches this crate as label names/values, lines, metadata (from
//! records) and response bodies (from the server). Build all of them from fuzz
//! bytes and check: encoding never fails or panics, protobuf+snappy and JSON each
//! decode back to exactly the input entries (stream labels, timestamp, line, metadata;
//! compared with the input, not with another encoding), each stream sorted by time,
//! rendered label names are valid, and body truncation plus classification never panic.
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
    // What each encoding must carry: (rendered stream labels, ts_ns, line, metadata).
    let mut want: Vec<Flat> = Vec::new();
    for (i, rec) in data[2..].split(|&b| b == 0xff).enumerate() {
        let f: Vec<String> = rec
            .split(|&b| b == 0xfe)
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect();
        let get = |n: usize| f.get(n).cloned().unwrap_or_default();
        let mut labels = BTreeMap::new();
        labels.insert(get(0), get(1));
        labels.insert("host".to_string(), "h".to_string());
        // Any i64 nanosecond time (negative too): Loki's Timestamp range holds it.
        let ts = i128::from(rec.iter().fold(i as i64, |a, &b| {
            a.wrapping_mul(0x5851_f42d_4c95_7f2d)
                .wrapping_add(i64::from(b) - 100)
        }));
        let mut e = Entry::new(ts, get(2));
        if f.len() > 3 {
            e.structured_metadata.push((get(3), get(4)));
        }
        want.push((
            render_labels(&labels),
            ts,
            e.line.clone(),
            e.structured_metadata.clone(),
        ));
        items.push((labels, e));
    }
    want.sort();
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
    let mut got: Vec<Flat> = Vec::new();
    let mut labels_seen = std::collections::BTreeSet::new();
    for s in &req.streams {
        assert!(
            labels_seen.insert(s.labels.clone()),
            "stream {} twice",
            s.labels
        );
        let mut last = i128::MIN;
        for e in &s.entries {
            let t = e.timestamp.clone().unwrap_or_default();
            assert!((0..1_000_000_000).contains(&t.nanos), "{t:?}");
            let ts = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
            assert!(ts >= last, "stream {} not sorted by time", s.labels);
            last = ts;
            let md = e
                .structured_metadata
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect();
            got.push((s.labels.clone(), ts, e.line.clone(), md));
        }
    }
    got.sort();
    assert_eq!(got, want, "protobuf differs from the input");
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
    let mut got: Vec<Flat> = Vec::new();
    for s in v["streams"].as_array().expect("streams") {
        let labels: BTreeMap<String, String> = s["stream"]
            .as_object()
            .expect("stream")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
            .collect();
        for e in s["values"].as_array().expect("values") {
            let ts: i128 = e[0].as_str().expect("ts").parse().expect("ts digits");
            let line = e[1].as_str().expect("line").to_string();
            let md = e
                .get(2)
                .map(|m| {
                    m.as_object()
                        .expect("metadata")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            got.push((render_labels(&labels), ts, line, md));
        }
    }
    got.sort();
    assert_eq!(got, want, "JSON differs from the input");
});

/// One entry as sent: stream labels as rendered, ts_ns, line, structured metadata.
type Flat = (String, i128, String, Vec<(String, String)>);
