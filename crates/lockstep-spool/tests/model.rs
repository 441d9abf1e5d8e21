//! Model-based property test: append / peek / ack / reopen against an in-memory queue.

use std::collections::VecDeque;
use std::path::Path;

use lockstep_spool::{inspect, read_records, Batch, Spool, SpoolConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Peek(usize, usize),
    Ack,
    AckTwice,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..6).prop_map(Op::Append),
        3 => (1usize..8, 0usize..400).prop_map(|(n, b)| Op::Peek(n, b)),
        3 => Just(Op::Ack),
        1 => Just(Op::AckTwice),
        1 => Just(Op::Reopen),
    ]
}

fn cfg() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 1024,
        max_bytes: 1 << 30,
        ..SpoolConfig::default()
    }
}

fn seg_files(dir: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".seg") {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (n, bytes)
}

/// What the model says a peek returns.
fn expected_peek(model: &VecDeque<(u64, Vec<u8>)>, n: usize, b: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (ts, p) in model {
        if out.len() == n || (!out.is_empty() && bytes + p.len() > b) {
            break;
        }
        bytes += p.len();
        out.push((*ts, p.clone()));
    }
    out
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let mut spool = Some(Spool::open(&dir, cfg()).unwrap());
    let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut last: Option<Batch> = None;
    let mut ts = 1_000u64;
    let mut last_seq = 0u64;
    for op in ops {
        let s = spool.as_ref().unwrap();
        match op {
            Op::Append(recs) => {
                ts += 1;
                let a = s.append_at(ts, &recs).unwrap();
                prop_assert!(a.first_seq > last_seq);
                last_seq = a.first_seq + recs.len() as u64 - 1;
                for r in recs {
                    model.push_back((ts, r));
                }
            }
            Op::Peek(n, b) => {
                let batch = s.peek(n, b).unwrap();
                let got: Vec<(u64, Vec<u8>)> = batch
                    .records
                    .iter()
                    .map(|r| (r.ts_ns, r.payload.clone()))
                    .collect();
                prop_assert_eq!(got, expected_peek(&model, n, b));
                prop_assert!(batch.records.windows(2).all(|w| w[0].seq < w[1].seq));
                // Peek does not consume.
                let again = s.peek(n, b).unwrap();
                prop_assert_eq!(&again.records, &batch.records);
                last = Some(batch);
            }
            Op::Ack | Op::AckTwice => {
                if let Some(b) = last.take() {
                    s.ack(&b).unwrap();
                    if matches!(op, Op::AckTwice) {
                        s.ack(&b).unwrap(); // idempotent
                    }
                    for _ in 0..b.len() {
                        model.pop_front();
                    }
                    if model.is_empty() {
                        // Everything acknowledged: only the segment being written remains.
                        prop_assert_eq!(s.gauges().segments, 1);
                    }
                }
            }
            Op::Reopen => {
                drop(spool.take());
                last = None;
                let g = inspect(&dir).unwrap();
                prop_assert_eq!(g.records, model.len() as u64);
                let rr = read_records(&dir, 3).unwrap();
                let want: Vec<Vec<u8>> = model.iter().take(3).map(|m| m.1.clone()).collect();
                prop_assert_eq!(rr.into_iter().map(|r| r.payload).collect::<Vec<_>>(), want);
                spool = Some(Spool::open(&dir, cfg()).unwrap());
            }
        }
        let s = spool.as_ref().unwrap();
        let g = s.gauges();
        prop_assert_eq!(g.records, model.len() as u64);
        prop_assert_eq!(g.bytes, model.iter().map(|m| m.1.len() as u64).sum::<u64>());
        prop_assert_eq!(g.oldest_ts_ns, model.front().map(|m| m.0));
        prop_assert_eq!(g.corrupt_records, 0);
        let (n, bytes) = seg_files(&dir);
        prop_assert_eq!(g.segments, n);
        prop_assert_eq!(g.disk_bytes, bytes);
    }
    // Drain everything through a fresh handle.
    drop(spool.take());
    let s = Spool::open(&dir, cfg()).unwrap();
    let mut got = Vec::new();
    loop {
        let b = s.peek(7, 300).unwrap();
        if b.is_empty() {
            break;
        }
        got.extend(b.records.iter().map(|r| r.payload.clone()));
        s.ack(&b).unwrap();
    }
    prop_assert_eq!(got, model.into_iter().map(|m| m.1).collect::<Vec<_>>());
    prop_assert_eq!(s.gauges().segments, 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn spool_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
