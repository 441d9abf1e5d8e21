//! Locking, permissions, threads, sync modes, ack rules, gauges.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use lockstep_spool::{inspect, Spool, SpoolConfig, SpoolError, SyncHook, SyncKind, SyncMode};

#[test]
fn directory_is_locked_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, cfg(4096)).unwrap();
    fill(&s, 3, 2);
    let e = Spool::open(&dir, cfg(4096))
        .err()
        .expect("second open must fail");
    assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
    // Read-only inspection works beside the owner.
    assert_eq!(inspect(&dir).unwrap().records, 6);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(s);
    Spool::open(&dir, cfg(4096)).unwrap();
}

#[test]
fn one_appender_thread_and_one_consumer_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Spool::open(tmp.path(), cfg(8192)).unwrap());
    const BATCHES: usize = 300;
    let w = {
        let s = s.clone();
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                let recs: Vec<Vec<u8>> = (0..4).map(|i| payload(b, i)).collect();
                s.append(&recs).unwrap();
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < BATCHES * 4 {
        let b = s.peek(7, 1 << 20).unwrap();
        got.extend(b.records.iter().map(|r| r.payload.clone()));
        s.ack(&b).unwrap();
    }
    w.join().unwrap();
    let want: Vec<Vec<u8>> = (0..BATCHES)
        .flat_map(|b| (0..4).map(move |i| payload(b, i)))
        .collect();
    assert_eq!(got, want);
    let g = s.gauges();
    assert_eq!((g.records, g.segments), (0, 1));
    assert!(g.disk_bytes <= 8192);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_keep_batches_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(Spool::open(tmp.path(), cfg(1 << 20)).unwrap());
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for b in 0..50 {
                    let recs: Vec<Vec<u8>> = (0..5).map(|i| payload(t * 1000 + b, i)).collect();
                    s.append(&recs).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    // Sharing is proven by the next test; here the batches stay whole.
    let syncs = s.gauges().syncs;
    eprintln!("group commit: {syncs} sync rounds for 200 concurrent appends");
    let got = drain(&s);
    assert_eq!(got.len(), 4 * 50 * 5);
    // Each batch's records are contiguous and in order.
    for chunk in got.chunks(5) {
        let head = String::from_utf8_lossy(&chunk[0]).to_string();
        let b: usize = head[5..9].parse().unwrap();
        for (i, r) in chunk.iter().enumerate() {
            assert_eq!(r, &payload(b, i));
        }
    }
}

/// Once armed, holds the first segment sync until released, as a slow disk would.
#[derive(Default)]
struct Gate {
    armed: std::sync::atomic::AtomicBool,
    entered: std::sync::atomic::AtomicBool,
    released: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl SyncHook for Gate {
    fn sync(
        &self,
        kind: SyncKind,
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> std::io::Result<()> {
        if kind == SyncKind::SegmentData
            && self.armed.load(std::sync::atomic::Ordering::SeqCst)
            && !self.entered.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let mut r = self.released.lock().unwrap();
            while !*r {
                r = self.cv.wait(r).unwrap();
            }
        }
        lockstep_spool::OsSync.sync(kind, file, path)
    }
}

#[test]
fn appends_waiting_on_a_sync_share_the_next_round() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let s = Arc::new(Spool::open_with_sync_hook(tmp.path(), cfg(1 << 20), gate.clone()).unwrap());
    let append = |b: usize| {
        let s = s.clone();
        std::thread::spawn(move || s.append(&[payload(b, 0)]).unwrap())
    };
    gate.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = append(0);
    assert!(wait_until(|| gate
        .entered
        .load(std::sync::atomic::Ordering::SeqCst)));
    // Three more appends are written while the first one's sync is in progress.
    let others: Vec<_> = (1..4).map(append).collect();
    assert!(wait_until(|| s.gauges().records == 4));
    *gate.released.lock().unwrap() = true;
    gate.cv.notify_all();
    first.join().unwrap();
    for h in others {
        h.join().unwrap();
    }
    // The first round covered the first append; one more covered the three others.
    assert_eq!(s.gauges().syncs, 2);
    assert_eq!(drain(&s).len(), 4);
}

fn wait_until(f: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn always_mode_syncs_before_each_append_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(SyncLog::default());
    let s = Spool::open_with_sync_hook(tmp.path(), cfg(1024), log.clone()).unwrap();
    let dir_syncs = || {
        log.calls()
            .iter()
            .filter(|c| c.0 == SyncKind::Directory)
            .count()
    };
    for b in 0..60 {
        let (segs_before, dirs_before) = (segments(tmp.path()), dir_syncs());
        s.append(&[payload(b, 0), payload(b, 1)]).unwrap();
        // Every byte of every segment was synced before append returned.
        let segs = segments(tmp.path());
        for seg in &segs {
            let len = std::fs::metadata(seg).unwrap().len();
            assert_eq!(
                log.synced_len(seg),
                Some(len),
                "batch {b}: {}",
                seg.display()
            );
        }
        // A new segment's directory entry too.
        if segs.iter().any(|p| !segs_before.contains(p)) {
            assert!(
                dir_syncs() > dirs_before,
                "batch {b}: new segment, directory not synced"
            );
        }
        // Sequential appends cannot share: one sync round each, done before returning.
        assert_eq!(s.gauges().syncs, b as u64 + 1);
    }
    assert!(segments(tmp.path()).len() > 3, "segments rolled");
}

#[test]
fn interval_mode_defers_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        sync: SyncMode::Interval(Duration::from_secs(3600)),
        ..cfg(4096)
    };
    let s = Spool::open(tmp.path(), c).unwrap();
    fill(&s, 30, 2);
    assert_eq!(s.gauges().syncs, 0);
    // Unsynced records are on disk (counted) but not delivered yet.
    assert_eq!(s.gauges().records, 60);
    assert!(s.peek(10, 1 << 20).unwrap().is_empty());
    s.sync().unwrap();
    assert_eq!(s.gauges().syncs, 1);
    assert_eq!(s.peek(100, 1 << 20).unwrap().len(), 60);
}

#[test]
fn interval_mode_delivers_after_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        sync: SyncMode::Interval(Duration::from_millis(20)),
        ..cfg(4096)
    };
    let s = Spool::open(tmp.path(), c.clone()).unwrap();
    let recs = vec![b"one".to_vec(), b"two".to_vec()];
    s.append(&recs).unwrap();
    // The background thread syncs within the interval; the consumer then sees the batch.
    let mut seen = 0;
    for _ in 0..200 {
        seen = s.peek(10, 1 << 20).unwrap().len();
        if seen == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(seen, 2);
    s.append(&[b"three".to_vec()]).unwrap();
    s.sync().unwrap();
    assert_eq!(s.peek(10, 1 << 20).unwrap().len(), 3);
    drop(s);
    let s = Spool::open(tmp.path(), c).unwrap();
    assert_eq!(drain(&s).len(), 3);
}

#[test]
fn ack_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Spool::open(tmp.path().join("a"), cfg(4096)).unwrap();
    fill(&s, 4, 3);
    let b1 = s.peek(2, 1 << 20).unwrap();
    assert_eq!(s.peek(2, 1 << 20).unwrap().records, b1.records);
    s.ack(&b1).unwrap();
    let b2 = s.peek(2, 1 << 20).unwrap();
    assert_ne!(b2.records, b1.records);
    s.ack(&b2).unwrap();
    // Acking again, or acking an older batch, is a no-op.
    s.ack(&b2).unwrap();
    s.ack(&b1).unwrap();
    assert_eq!(s.gauges().records, 8);
    let b3 = s.peek(100, 1 << 20).unwrap();
    assert_eq!(b3.len(), 8);
    // A batch that starts beyond the consumer position (here: from another spool) is
    // refused and changes nothing.
    let other = Spool::open(tmp.path().join("b"), cfg(4096)).unwrap();
    other.append(&[b"x".to_vec()]).unwrap();
    let e = other.ack(&b3).unwrap_err();
    assert!(matches!(e, SpoolError::StaleAck { .. }), "{e}");
    assert!(e.to_string().contains("byte"), "{e}");
    assert_eq!(other.gauges().records, 1);
}

#[test]
fn gauges_report_age_and_give_space_back() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Spool::open(tmp.path(), cfg(1024)).unwrap();
    let now = lockstep_spool::now_ns();
    for b in 0..40u64 {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b as usize, i)).collect();
        s.append_at(now - 60_000_000_000 + b * 1_000_000_000, &recs)
            .unwrap();
    }
    let g = s.gauges();
    assert_eq!(g.records, 120);
    assert!(g.segments > 3);
    let age = g.oldest_age(now).unwrap();
    assert_eq!(age, Duration::from_secs(60));
    let peak = g.disk_bytes;
    let b = s.peek(60, 1 << 20).unwrap();
    s.ack(&b).unwrap();
    let g2 = s.gauges();
    assert_eq!(g2.records, 60);
    assert_eq!(g2.oldest_age(now).unwrap(), Duration::from_secs(40));
    assert!(
        g2.disk_bytes < peak * 2 / 3,
        "{} vs {}",
        g2.disk_bytes,
        peak
    );
    drain(&s);
    let g3 = s.gauges();
    assert_eq!((g3.records, g3.segments, g3.oldest_ts_ns), (0, 1, None));
    assert!(g3.disk_bytes <= 1024);
}

#[test]
fn spool_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Spool>();
    assert_send_sync::<lockstep_spool::Batch>();
}

#[test]
fn peek_after_reads_the_whole_backlog_in_pieces_without_acking() {
    let dir = tempfile::tempdir().unwrap();
    // small segments: the scan crosses several
    let spool = Spool::open(dir.path(), cfg(1024)).unwrap();
    let written: Vec<Vec<u8>> = fill(&spool, 60, 3).into_iter().flatten().collect();
    let first = spool.peek(1, usize::MAX).unwrap();
    spool.ack(&first).unwrap();
    let mut seen = Vec::new();
    let mut b = spool.peek(4, usize::MAX).unwrap();
    loop {
        seen.extend(b.records.iter().map(|r| r.payload.clone()));
        if b.is_empty() {
            break;
        }
        b = spool.peek_after(&b, 4, usize::MAX).unwrap();
    }
    assert_eq!(seen, written[1..]);
    // nothing was acknowledged by the scan, and acking ahead is refused
    let head = spool.peek(1, usize::MAX).unwrap();
    assert_eq!(head.records[0].payload, written[1]);
    let ahead = spool.peek_after(&head, 1, usize::MAX).unwrap();
    assert!(matches!(
        spool.ack(&ahead),
        Err(SpoolError::StaleAck { .. })
    ));
    // a prev that was acknowledged meanwhile: read from the oldest unacked record
    let two = spool.peek(2, usize::MAX).unwrap();
    spool.ack(&two).unwrap();
    let again = spool.peek_after(&head, 1, usize::MAX).unwrap();
    assert_eq!(again.records[0].payload, written[3]);
}

/// Fails the next `fail` syncs of one kind, then calls the kernel again.
struct FailNext {
    kind: SyncKind,
    fail: std::sync::atomic::AtomicU64,
}

impl SyncHook for FailNext {
    fn sync(
        &self,
        kind: SyncKind,
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if kind == self.kind && self.fail.load(SeqCst) > 0 {
            self.fail.fetch_sub(1, SeqCst);
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        lockstep_spool::OsSync.sync(kind, file, path)
    }
}

#[test]
fn a_failed_sync_poisons_the_spool_until_it_is_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Arc::new(FailNext {
        kind: SyncKind::SegmentData,
        fail: 0.into(),
    });
    let s = Spool::open_with_sync_hook(tmp.path(), cfg(1 << 20), hook.clone()).unwrap();
    s.append(&[payload(0, 0)]).unwrap();
    // One failing fdatasync: the append fails, even though a retry would succeed.
    hook.fail.store(1, std::sync::atomic::Ordering::SeqCst);
    let e = s.append(&[payload(1, 0)]).unwrap_err();
    assert!(matches!(e, SpoolError::Poisoned { .. }), "{e}");
    assert!(e.to_string().contains("fdatasync"), "{e}");
    // The disk works again, but what the failed sync covered may be lost: every later
    // append is refused without writing, and the unsynced record is never delivered.
    let seg = segments(tmp.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let e = s.append(&[payload(2, 0)]).unwrap_err();
    assert!(matches!(e, SpoolError::Poisoned { .. }), "{e}");
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len,
        "nothing written"
    );
    assert!(matches!(s.sync(), Err(SpoolError::Poisoned { .. })));
    let b = s.peek(10, 1 << 20).unwrap();
    assert_eq!(b.records.len(), 1);
    assert_eq!(b.records[0].payload, payload(0, 0));
    s.ack(&b).unwrap();
    drop(s);
    // Reopening recovers from what the disk holds, and appends work again.
    let s = Spool::open(tmp.path(), cfg(1 << 20)).unwrap();
    s.append(&[payload(3, 0)]).unwrap();
    let got = drain(&s);
    assert_eq!(got.last(), Some(&payload(3, 0)));
    assert!(!got.contains(&payload(0, 0)) && !got.contains(&payload(2, 0)));
}
