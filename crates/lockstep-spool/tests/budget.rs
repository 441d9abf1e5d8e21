//! Disk budget: both full policies, with their counters.

mod common;

use common::*;
use lockstep_spool::{inspect, FullPolicy, Spool, SpoolConfig, SpoolError};

fn budget_cfg(policy: FullPolicy) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 1024,
        max_bytes: 4096,
        full_policy: policy,
        ..SpoolConfig::default()
    }
}

fn dir_seg_bytes(dir: &std::path::Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn block_refuses_without_writing_and_recovers_after_drain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, budget_cfg(FullPolicy::Block)).unwrap();
    let mut accepted = Vec::new();
    let mut b = 0;
    let err = loop {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
        match s.append(&recs) {
            Ok(_) => accepted.extend(recs),
            Err(e) => break e,
        }
        b += 1;
        assert!(b < 1000, "budget never enforced");
    };
    assert!(matches!(err, SpoolError::Full { max: 4096, .. }), "{err}");
    assert!(err.to_string().contains("max_bytes 4096"));
    let g = s.gauges();
    assert!(g.disk_bytes <= 4096, "{}", g.disk_bytes);
    assert_eq!(g.disk_bytes, dir_seg_bytes(&dir));
    assert_eq!(g.records, accepted.len() as u64);
    assert_eq!(g.dropped_records, 0);
    // Still full: a retry fails the same way and writes nothing.
    let before = dir_seg_bytes(&dir);
    let retry: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
    assert!(matches!(s.append(&retry), Err(SpoolError::Full { .. })));
    assert_eq!(dir_seg_bytes(&dir), before);
    // Drain half: space comes back and appends succeed again.
    let half = s.peek(accepted.len() / 2, 1 << 20).unwrap();
    s.ack(&half).unwrap();
    assert!(
        dir_seg_bytes(&dir) < before,
        "{} {} {:?} {}",
        dir_seg_bytes(&dir),
        before,
        s.gauges(),
        half.len()
    );
    let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
    s.append(&recs).unwrap();
    accepted.extend(recs);
    let mut got: Vec<Vec<u8>> = half.records.iter().map(|r| r.payload.clone()).collect();
    got.extend(drain(&s));
    assert_eq!(got, accepted);
}

#[test]
fn drop_oldest_discards_whole_segments_and_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, budget_cfg(FullPolicy::DropOldest)).unwrap();
    let mut all = Vec::new();
    for b in 0..200 {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
        s.append(&recs).unwrap();
        all.extend(recs);
        let g = s.gauges();
        assert!(g.disk_bytes <= 4096, "batch {b}: {} bytes", g.disk_bytes);
        assert_eq!(g.disk_bytes, dir_seg_bytes(&dir));
    }
    let g = s.gauges();
    assert!(g.dropped_segments > 10, "{g:?}");
    assert_eq!(g.dropped_records + g.records, all.len() as u64);
    assert_eq!(
        g.dropped_bytes + g.bytes,
        all.iter().map(|r| r.len() as u64).sum::<u64>()
    );
    // The counters are persisted: another process sees them while the spool is live.
    let gi = inspect(&dir).unwrap();
    assert_eq!(
        (gi.dropped_records, gi.dropped_segments, gi.records),
        (g.dropped_records, g.dropped_segments, g.records)
    );
    drop(s);
    let s = Spool::open(&dir, budget_cfg(FullPolicy::DropOldest)).unwrap();
    assert_eq!(s.gauges().dropped_records, g.dropped_records);
    // What is left is the newest records, in order.
    let got = drain(&s);
    assert_eq!(got.len() as u64, g.records);
    assert_eq!(got[..], all[all.len() - got.len()..]);
}

#[test]
fn drop_under_an_in_flight_batch_is_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, budget_cfg(FullPolicy::DropOldest)).unwrap();
    let mut all = Vec::new();
    for b in 0..20 {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
        s.append(&recs).unwrap();
        all.extend(recs);
    }
    let inflight = s.peek(4, 1 << 20).unwrap();
    for b in 20..200 {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
        s.append(&recs).unwrap();
        all.extend(recs);
    }
    // The in-flight batch's segment was dropped: acking it is harmless.
    s.ack(&inflight).unwrap();
    let g = s.gauges();
    let got = drain(&s);
    assert_eq!(got.len() as u64, g.records);
    assert_eq!(got[..], all[all.len() - got.len()..]);
}

#[test]
fn oversized_input_is_refused_with_its_size() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = budget_cfg(FullPolicy::Block);
    cfg.max_record_bytes = 100;
    let s = Spool::open(tmp.path(), cfg.clone()).unwrap();
    let e = s.append(&[vec![0u8; 10], vec![0u8; 101]]).unwrap_err();
    assert!(
        matches!(
            e,
            SpoolError::RecordTooLarge {
                index: 1,
                len: 101,
                max: 100
            }
        ),
        "{e}"
    );
    let big: Vec<Vec<u8>> = (0..50).map(|_| vec![1u8; 100]).collect();
    let e = s.append(&big).unwrap_err();
    assert!(matches!(e, SpoolError::BatchTooLarge { .. }), "{e}");
    assert_eq!(s.gauges().records, 0);
    // A batch bigger than a segment but within the budget gets a segment of its own.
    let ok: Vec<Vec<u8>> = (0..20).map(|_| vec![2u8; 100]).collect();
    s.append(&ok).unwrap();
    assert_eq!(s.gauges().records, 20);
    assert_eq!(drain(&s), ok);
    let bad = SpoolConfig {
        max_bytes: 1500,
        ..cfg
    };
    assert!(matches!(
        Spool::open(tmp.path().join("x"), bad),
        Err(SpoolError::Config(_))
    ));
}

#[test]
fn overtaken_tells_the_consumer_its_batch_was_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, budget_cfg(FullPolicy::DropOldest)).unwrap();
    s.append(&[payload(0, 0), payload(0, 1)]).unwrap();
    let batch = s.peek(2, 1 << 20).unwrap();
    assert!(!s.overtaken(&batch), "nothing dropped yet");
    let mut b = 1;
    while s.gauges().dropped_records == 0 {
        s.append(&[payload(b, 0), payload(b, 1)]).unwrap();
        b += 1;
    }
    assert!(s.overtaken(&batch), "the peeked records were dropped");
    // Peeking again starts at what survived.
    let again = s.peek(2, 1 << 20).unwrap();
    assert!(!s.overtaken(&again));
    assert_ne!(again.records[0].payload, batch.records[0].payload);
}
