use super::*;
use crate::payload::*;
use fluent_bit_chunk::Chunk;
use proptest::prelude::*;
use rmpv::Value as V;
use std::collections::BTreeMap;

fn leaf() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Boolean),
        any::<i64>().prop_map(V::from),
        any::<u64>().prop_map(V::from),
        (-1e6f64..1e6).prop_map(V::F64),
        ".{0,6}".prop_map(|s| V::from(s.as_str())),
    ]
}

fn value() -> impl Strategy<Value = V> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4).prop_map(|m| {
                V::Map(
                    m.into_iter()
                        .map(|(k, v)| (V::from(k.as_str()), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn record() -> impl Strategy<Value = BTreeMap<String, V>> {
    proptest::collection::btree_map("[a-z]{1,3}", value(), 0..6)
}

fn encode(rec: &BTreeMap<String, V>) -> Vec<u8> {
    let body = V::Map(
        rec.iter()
            .map(|(k, v)| (V::from(k.as_str()), v.clone()))
            .collect(),
    );
    let ev = V::Array(vec![
        V::Array(vec![V::Ext(0, vec![0; 8]), V::Map(vec![])]),
        body,
    ]);
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, &ev).unwrap();
    b
}

proptest! {
    #[test]
    fn json_line_is_the_record_minus_removed_keys(rec in record(), pick in any::<prop::sample::Index>()) {
        let keys: Vec<&String> = rec.keys().collect();
        let removed = (!keys.is_empty()).then(|| keys[pick.index(keys.len())].clone());
        let cfg = MappingConfig { remove_keys: removed.clone(), ..Default::default() };
        let mp = Mapping::new(&cfg).unwrap();
        let bytes = encode(&rec);
        let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
        let mut st = MapStats::default();
        let e = mp.map(1, body, &mut st);
        let got: serde_json::Value = serde_json::from_str(&e.line).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        if let Some(k) = &removed {
            want.as_object_mut().unwrap().remove(k);
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(st, MapStats::default());
    }

    /// Flush's direct encoding, with one scratch reused across records (stale values
    /// from a longer record must never leak into the next), writes exactly the
    /// payload of the entry `map_tagged` builds.
    #[test]
    fn direct_encoding_is_the_entrys(recs in proptest::collection::vec(
                                         proptest::collection::btree_map("[a-d]", value(), 0..5), 1..6),
                                     cfg_pick in 0usize..4) {
        let cfg = [
            MappingConfig::default(),
            MappingConfig {
                labels: Some("job=x, $a, b=$b, b=$c, app=$a['b']".into()),
                structured_metadata: Some("m=$a, n=$b, m=$c, z=static".into()),
                tenant_id: Some("t0".into()),
                tenant_id_key: Some("$c".into()),
                remove_keys: Some("$b".into()),
                ..Default::default()
            },
            MappingConfig {
                label_keys: Some("$a,$b,$c".into()),
                line_format: Some("key_value".into()),
                drop_single_key: Some("raw".into()),
                ..Default::default()
            },
            MappingConfig {
                labels: Some("$tag, $a".into()),
                structured_metadata: Some("$b, $c".into()),
                drop_single_key: Some("on".into()),
                ..Default::default()
            },
        ][cfg_pick].clone();
        let mp = Mapping::new(&cfg).unwrap();
        let mut scratch = Scratch::default();
        for rec in &recs {
            let bytes = encode(rec);
            let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
            let (mut s1, mut s2) = (MapStats::default(), MapStats::default());
            let want = mp.map_tagged("a.b", -7, body, &mut s1).encode();
            let mut got = vec![0xAA];
            mp.encode_tagged("a.b", -7, body, &mut s2, &mut scratch, &mut got);
            prop_assert_eq!(&got[1..], &want[..]);
            prop_assert_eq!(s1, s2);
        }
    }

    #[test]
    fn labels_are_always_loki_valid(rec in record(), keys in proptest::collection::vec("[a-z]{1,3}", 0..4)) {
        let cfg = MappingConfig {
            label_keys: Some(keys.iter().map(|k| format!("${k}")).collect::<Vec<_>>().join(",")),
            line_format: Some("key_value".into()),
            ..Default::default()
        };
        let mp = Mapping::new(&cfg).unwrap();
        let bytes = encode(&rec);
        let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
        let e = mp.map(1, body, &mut MapStats::default());
        prop_assert!(!e.labels.is_empty());
        for w in e.labels.windows(2) {
            prop_assert!(w[0].0 < w[1].0, "sorted, unique: {:?}", e.labels);
        }
        for (k, v) in &e.labels {
            prop_assert!(is_valid_label_name(k));
            prop_assert!(!v.is_empty() && v.len() <= MAX_LABEL_VALUE_BYTES);
        }
        for k in &keys {
            if rec.contains_key(k) {
                prop_assert!(!e.line.split(' ').any(|kv| kv.starts_with(&format!("{k}="))),
                    "label key {} left in line {}", k, e.line);
            }
        }
    }
}
