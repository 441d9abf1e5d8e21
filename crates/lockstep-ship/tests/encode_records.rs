//! The drain reads queued entries in place and encodes its pushes from borrowed views:
//! its bodies must be byte for byte those of the owned path it replaced (every entry
//! decoded into a `SpooledEntry`; per tenant, tenants in order, streams by spooled label
//! list in order of appearance, merged with `lockstep_loki::group_streams` when Loki
//! would render two the same; encoded by the client), for both encodings.

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep_loki::{
    check_tenant, effective_labels, group_streams, ClientConfig, EncodeScratch, Encoding, Entry,
    LokiClient, Stream,
};
use lockstep_ship::drain::encode_records;
use lockstep_ship::{DrainConfig, SpooledEntry, TooOld};
use lockstep_spool::Record;
use proptest::prelude::*;

const HOUR_NS: i64 = 3_600_000_000_000;

fn client(encoding: Encoding) -> LokiClient {
    let mut cc = ClientConfig::new("http://127.0.0.1:9/loki/api/v1/push");
    cc.encoding = encoding;
    LokiClient::new(cc).unwrap()
}

fn cfg() -> DrainConfig {
    DrainConfig {
        too_old: TooOld::Drop,
        too_old_age: Duration::from_secs(3600),
        ..DrainConfig::default()
    }
}

/// What the drain sent before it read entries in place: owned entries, entries older
/// than the cutoff dropped; per tenant (in order), one stream per spooled label list in
/// order of appearance, each sorted by time, or, when a list is not as Loki renders it,
/// `group_streams`; tenants Loki cannot be sent dropped.
fn owned_path(client: &LokiClient, entries: &[SpooledEntry]) -> Vec<(Option<String>, Vec<u8>)> {
    let cutoff = lockstep_spool::now_ns() as i64 - HOUR_NS;
    type ByList = Vec<(Vec<(String, String)>, Vec<Entry>)>;
    let mut tenants: Vec<(Option<String>, ByList)> = Vec::new();
    for e in entries.iter().filter(|e| e.ts_ns >= cutoff) {
        let i = match tenants.iter().position(|(t, _)| *t == e.tenant) {
            Some(i) => i,
            None => {
                tenants.push((e.tenant.clone(), Vec::new()));
                tenants.len() - 1
            }
        };
        let lists = &mut tenants[i].1;
        let j = match lists.iter().position(|(l, _)| *l == e.labels) {
            Some(j) => j,
            None => {
                lists.push((e.labels.clone(), Vec::new()));
                lists.len() - 1
            }
        };
        lists[j].1.push(Entry {
            ts_ns: e.ts_ns.into(),
            line: e.line.clone(),
            structured_metadata: e.structured_metadata.clone(),
        });
    }
    tenants.sort_by(|a, b| a.0.cmp(&b.0));
    tenants
        .into_iter()
        .filter(|(t, _)| t.as_deref().is_none_or(|t| check_tenant(t).is_ok()))
        .map(|(t, lists)| {
            let mut streams: Vec<Stream> = lists
                .into_iter()
                .map(|(l, entries)| Stream {
                    labels: l.into_iter().collect::<BTreeMap<_, _>>(),
                    entries,
                })
                .collect();
            if streams
                .iter()
                .all(|s| effective_labels(&s.labels) == s.labels)
            {
                for s in &mut streams {
                    s.entries.sort_by_key(|e| e.ts_ns);
                }
            } else {
                streams = group_streams(streams);
            }
            (t, client.encode(&streams).unwrap())
        })
        .collect()
}

fn records(entries: &[SpooledEntry]) -> Vec<Record> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            seq: i as u64 + 1,
            ts_ns: 0,
            payload: e.encode(),
        })
        .collect()
}

fn entry() -> impl Strategy<Value = SpooledEntry> {
    let now = lockstep_spool::now_ns() as i64;
    (
        prop_oneof![
            Just(None),
            Just(Some("a".to_string())),
            Just(Some("b".to_string())),
            Just(Some("\n".to_string()))
        ],
        // Label sets as the mapping spools them (sorted, unique), some whose names Loki
        // sanitises into the same set ("a-b" and "a_b") or with empty values.
        proptest::collection::btree_map(
            prop_oneof!["[ab][-_]?[ab]", Just("app".to_string())],
            prop_oneof![Just(String::new()), "[xy]"],
            0..3,
        ),
        prop_oneof![
            (now - 60_000_000_000..now + 60_000_000_000),
            (now - 5..now + 5),
            // older than too_old_age: dropped
            (0i64..1000),
        ],
        ".{0,12}",
        proptest::collection::vec((".{0,4}", prop_oneof![".{0,6}", "[a-c]{120,140}"]), 0..12),
    )
        .prop_map(
            |(tenant, labels, ts_ns, line, structured_metadata)| SpooledEntry {
                tenant,
                labels: labels.into_iter().collect(),
                ts_ns,
                line,
                structured_metadata,
            },
        )
}

proptest! {
    #[test]
    fn bodies_are_the_owned_paths(entries in proptest::collection::vec(entry(), 0..40), json in any::<bool>(),
                                  before in proptest::collection::vec(entry(), 0..40)) {
        let c = client(if json { Encoding::Json } else { Encoding::ProtobufSnappy });
        // The scratch buffers the drain keeps from batch to batch hold another batch's
        // bytes first.
        let mut scratch = EncodeScratch::default();
        encode_records(&c, &cfg(), &records(&before), &mut scratch).unwrap();
        let got = encode_records(&c, &cfg(), &records(&entries), &mut scratch).unwrap();
        prop_assert_eq!(got, owned_path(&c, &entries));
    }
}

/// A batch as the OTLP mapping spools it: one stream, eleven metadata pairs an entry.
#[test]
fn an_otlp_batch_is_the_owned_paths() {
    let now = lockstep_spool::now_ns() as i64;
    let entries: Vec<SpooledEntry> = (0..500)
        .map(|i| SpooledEntry {
            tenant: None,
            labels: vec![("service_name".into(), "bench".into())],
            // out of order within the batch: the stream is sorted
            ts_ns: now - (i % 7) * 1000 + i,
            line: format!("request {i} handled"),
            structured_metadata: (0..11)
                .map(|k| (format!("key_{k}"), format!("value {i} {k}")))
                .collect(),
        })
        .collect();
    let c = client(Encoding::ProtobufSnappy);
    let got = encode_records(
        &c,
        &cfg(),
        &records(&entries),
        &mut EncodeScratch::default(),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got, owned_path(&c, &entries));
}
