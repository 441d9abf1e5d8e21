//! Flush-path mapping on arbitrary chunks: whatever the records hold, mapping never
//! panics, labels stay valid for Loki, the spooled form round-trips, and Flush's direct
//! encoding (one scratch reused across records) writes exactly the entry's payload.
#![no_main]

use std::sync::OnceLock;

use fluent_bit_chunk::Chunk;
use libfuzzer_sys::fuzz_target;
use lockstep_map::{MapStats, Mapping, MappingConfig, Scratch};
use lockstep_ship::SpooledEntry;

fn mappings() -> &'static [Mapping] {
    static M: OnceLock<Vec<Mapping>> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = |labels: &str, sm: &str, fmt: &str, single: &str, remove: &str| MappingConfig {
            labels: Some(labels.into()),
            label_keys: Some("$level, $k['a'][0]".into()),
            structured_metadata: Some(sm.into()),
            remove_keys: Some(remove.into()),
            line_format: Some(fmt.into()),
            drop_single_key: Some(single.into()),
            tenant_id: None,
            tenant_id_key: Some("$tenant".into()),
            otlp: Default::default(),
        };
        vec![
            Mapping::new(&cfg("job=x, app=$app", "trace_id=$trace_id, m=$m", "json", "off", "log")).unwrap(),
            Mapping::new(&cfg("$a['b'], h=$TAG", "x=$x['y']", "key_value", "on", "a")).unwrap(),
            Mapping::new(&cfg("j=$j", "t=$tenant", "json", "raw", "z")).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let chunk = Chunk::new(data);
    if chunk.validate().is_err() {
        return;
    }
    let mut scratch: Vec<Scratch> = mappings().iter().map(|_| Scratch::default()).collect();
    for r in chunk.records().flatten() {
        for (m, sc) in mappings().iter().zip(&mut scratch) {
            let mut stats = MapStats::default();
            let e = m.map_tagged("app.x", 0, r.event.body, &mut stats);
            for w in e.labels.windows(2) {
                assert!(w[0].0 < w[1].0, "labels sorted and unique: {:?}", e.labels);
            }
            for (k, v) in &e.labels {
                assert!(lockstep_loki::is_valid_label_name(k), "label name {k:?}");
                assert!(!v.is_empty() && v.len() <= 2048, "label value {v:?}");
            }
            assert_eq!(SpooledEntry::decode(1, &e.encode()).unwrap(), e);
            let (mut direct, mut stats2) = (Vec::new(), MapStats::default());
            m.encode_tagged("app.x", 0, r.event.body, &mut stats2, sc, &mut direct);
            assert_eq!(direct, e.encode());
            assert_eq!(stats2, stats);
            // with its metadata and group: an OTLP record as Loki's OTLP ingestion maps it
            let mut out = Vec::new();
            m.encode_record(
                "v1_logs",
                0,
                r.event.body,
                r.event.metadata,
                r.group.map(|g| (g.metadata, g.attributes)),
                &mut stats2,
                sc,
                &mut out,
            );
            let e = SpooledEntry::decode(1, &out).unwrap();
            assert!(!e.labels.is_empty());
            let counted = e.labels.iter().filter(|(k, _)| k != "service_name").count();
            assert!(counted <= lockstep_map::MAX_LABELS, "{:?}", e.labels);
            for w in e.labels.windows(2) {
                assert!(w[0].0 < w[1].0, "labels sorted and unique: {:?}", e.labels);
            }
            for (k, v) in &e.labels {
                assert!(lockstep_loki::is_valid_label_name(k), "label name {k:?}");
                assert!(!v.is_empty() && v.len() <= 2048, "label value {v:?}");
            }
            for (k, _) in &e.structured_metadata {
                let mut again = String::new();
                assert!(lockstep_map::loki_name(k, &mut again) && again == *k, "metadata name {k:?}");
            }
        }
    }
});
