//! The drain against the Loki-compatible receiver: delivery, faults, ordering,
//! too-old policy, dead letters and bounded shutdown.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_harness::wait_until;
use lockstep_hosts::loki_receiver::{LokiReceiver, Mode, ReceiverConfig};
use lockstep_loki::{BackoffConfig, BreakerConfig, ClientConfig, LokiClient};
use lockstep_ship::{Drain, DrainConfig, Metrics, SpooledEntry, TooOld, ORIGINAL_TS_KEY};
use lockstep_spool::{Spool, SpoolConfig};

const SEC: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    lockstep_spool::now_ns() as i64
}

fn entry(tenant: Option<&str>, app: &str, ts_ns: i64, line: String) -> SpooledEntry {
    SpooledEntry {
        tenant: tenant.map(str::to_string),
        labels: vec![("app".into(), app.into()), ("host".into(), "edge-1".into())],
        ts_ns,
        line,
        structured_metadata: vec![("trace_id".into(), format!("{:032x}", ts_ns))],
    }
}

fn fast_cfg() -> DrainConfig {
    DrainConfig {
        batch_entries: 100,
        linger: Duration::from_millis(20),
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(80),
            multiplier: 2,
        },
        breaker: BreakerConfig {
            failure_threshold: 3,
            hold: Duration::from_millis(400),
        },
        shutdown_grace: Duration::from_millis(500),
        ..DrainConfig::default()
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    drain: Drain,
}

fn rig(url: String, timeout: Duration, cfg: DrainConfig, pre: &[SpooledEntry]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path().join("q"), SpoolConfig::default()).unwrap());
    if !pre.is_empty() {
        let payloads: Vec<Vec<u8>> = pre.iter().map(SpooledEntry::encode).collect();
        spool.append(&payloads).unwrap();
    }
    let mut cc = ClientConfig::new(url);
    cc.timeout = timeout;
    let metrics = Arc::new(Metrics::default());
    let drain = Drain::start(
        "drain".into(),
        spool.clone(),
        LokiClient::new(cc).unwrap(),
        cfg,
        metrics.clone(),
        Box::new(|| Box::new(())),
    )
    .unwrap();
    Rig {
        _dir: dir,
        spool,
        metrics,
        drain,
    }
}

fn append(r: &Rig, entries: &[SpooledEntry]) {
    let payloads: Vec<Vec<u8>> = entries.iter().map(SpooledEntry::encode).collect();
    r.spool.append(&payloads).unwrap();
    r.drain.notify(entries.len());
}

#[test]
fn no_fault_delivers_every_entry_once_per_tenant_and_stream() {
    let rx = LokiReceiver::start();
    let t0 = now_ns() - 60 * SEC;
    // Interleaved tenants and streams, timestamps shuffled within each stream.
    let mut all = Vec::new();
    for i in 0..1000i64 {
        let tenant = if i % 2 == 0 { Some("team-a") } else { None };
        let app = ["api", "db", "web"][(i % 3) as usize];
        let ts = t0 + ((i * 7919) % 1000) * 1_000_000;
        all.push(entry(tenant, app, ts, format!("line {i}")));
    }
    let r = rig(rx.url(), Duration::from_secs(5), fast_cfg(), &all[..500]);
    append(&r, &all[500..]);
    assert!(
        rx.wait_for(1000, Duration::from_secs(20)),
        "stored {}",
        rx.total_stored()
    );
    assert!(wait_until(Duration::from_secs(5), || r
        .spool
        .gauges()
        .records
        == 0));
    let stats = rx.stats();
    assert_eq!(stats.entries_stored, 1000);
    assert_eq!(stats.entries_rejected, 0);
    assert_eq!(stats.duplicates_dropped, 0, "nothing was sent twice");
    assert_eq!(r.metrics.entries_sent.load(Relaxed), 1000);
    for (tenant, want) in [("team-a", 500usize), ("fake", 500)] {
        let streams = rx.entries(tenant);
        assert_eq!(streams.len(), 3, "{tenant}: {:?}", streams.keys());
        let mut n = 0;
        // A push holds the tenant's next `entries` records in append order: number them.
        let counts = rx
            .requests()
            .into_iter()
            .filter(|q| q.tenant == tenant && q.status == Some(204))
            .map(|q| q.entries);
        let mut lines = all
            .iter()
            .filter(|e| e.tenant.as_deref().unwrap_or("fake") == tenant)
            .map(|e| e.line.clone());
        let mut push_of = std::collections::HashMap::new();
        for (k, c) in counts.enumerate() {
            for line in lines.by_ref().take(c) {
                push_of.insert(line, k);
            }
        }
        assert_eq!(push_of.len(), want, "{tenant}: every entry in one push");
        for (labels, entries) in &streams {
            assert_eq!(labels.get("host").map(String::as_str), Some("edge-1"));
            n += entries.len();
            for e in entries {
                assert_eq!(e.structured_metadata[0].1, format!("{:032x}", e.ts_ns));
            }
            // Pushes go oldest batch first; each push sorts its streams by time.
            for w in entries.windows(2) {
                let (a, b) = (push_of[&w[0].line], push_of[&w[1].line]);
                assert!(
                    a <= b,
                    "{tenant}: {} (push {a}) before {} (push {b})",
                    w[0].line,
                    w[1].line
                );
                if a == b {
                    assert!(
                        w[0].ts_ns <= w[1].ts_ns,
                        "{tenant}: push {a} not sorted by time"
                    );
                }
            }
        }
        assert_eq!(n, want);
    }
    r.drain.stop();
}

#[test]
fn outage_then_recovery_sends_backlog_before_fresh_entries_with_bounded_requests() {
    let rx = LokiReceiver::start_with(ReceiverConfig {
        max_behind: Some(Duration::from_secs(3600)),
        ..ReceiverConfig::default()
    });
    rx.set_mode(Mode::ServerError(503));
    // A backlog two hours old: if anything fresher of the stream landed first, the
    // receiver (like Loki) would reject it as too far behind.
    let old: Vec<_> = (0..300)
        .map(|i| {
            entry(
                None,
                "api",
                now_ns() - 7200 * SEC + i * SEC,
                format!("old {i}"),
            )
        })
        .collect();
    let r = rig(rx.url(), Duration::from_secs(2), fast_cfg(), &old);
    let outage = Duration::from_millis(2500);
    std::thread::sleep(outage);
    let during = rx.request_count();
    // Threshold 3 failures, then one probe per 400 ms hold: about 3 + 2500/400 + 1 = 10;
    // without the breaker (20-80 ms backoff) it would be ~50. Slack for a loaded CI box.
    assert!(during >= 3, "the drain kept trying: {during}");
    assert!(
        during <= 16,
        "request rate not bounded during the outage: {during}"
    );
    assert_ne!(
        r.metrics.breaker_state.load(Relaxed),
        0,
        "breaker open (or half-open, probing) during the outage"
    );
    let before = r.metrics.pushes_failed.load(Relaxed);
    let consecutive = r.metrics.consecutive_failures.load(Relaxed);
    let after = r.metrics.pushes_failed.load(Relaxed);
    assert!(
        (before..=after).contains(&consecutive),
        "every push so far failed: {consecutive} consecutive, {before}..={after} failed"
    );
    let fresh: Vec<_> = (0..50)
        .map(|i| entry(None, "api", now_ns() + i, format!("fresh {i}")))
        .collect();
    append(&r, &fresh);
    rx.set_mode(Mode::Accept);
    assert!(
        rx.wait_for(350, Duration::from_secs(15)),
        "stored {}",
        rx.total_stored()
    );
    let stats = rx.stats();
    assert_eq!(stats.entries_rejected, 0, "nothing landed too far behind");
    let stream = rx.entries("fake").into_values().next().unwrap();
    let first_fresh = stream
        .iter()
        .position(|e| e.line.starts_with("fresh"))
        .unwrap();
    assert!(stream[..first_fresh]
        .iter()
        .all(|e| e.line.starts_with("old")));
    assert_eq!(first_fresh, 300);
    assert!(wait_until(Duration::from_secs(5), || r
        .metrics
        .entries_sent
        .load(Relaxed)
        == 350));
    assert_eq!(r.metrics.breaker_state.load(Relaxed), 0);
}

#[test]
fn black_hole_is_bounded_by_the_timeout_and_recovers() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::BlackHole);
    let es: Vec<_> = (0..150)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_millis(300), fast_cfg(), &es);
    std::thread::sleep(Duration::from_secs(3));
    let during = rx.request_count();
    assert!(
        (2..=12).contains(&during),
        "{during} requests in 3 s of black hole"
    );
    assert!(r.metrics.pushes_failed.load(Relaxed) >= 2);
    assert_eq!(rx.total_stored(), 0);
    rx.set_mode(Mode::Accept);
    assert!(rx.wait_for(150, Duration::from_secs(10)));
    assert!(wait_until(Duration::from_secs(5), || r
        .spool
        .gauges()
        .records
        == 0));
    assert_eq!(rx.stats().entries_stored, 150);
}

#[test]
fn partial_400_is_not_retried_and_is_dead_lettered() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::PartialReject { every_nth: 4 });
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dead.jsonl");
    let cfg = DrainConfig {
        dead_letter: Some(dl.clone()),
        ..fast_cfg()
    };
    let es: Vec<_> = (0..300)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
    assert!(wait_until(Duration::from_secs(10), || r
        .spool
        .gauges()
        .records
        == 0));
    let stats = rx.stats();
    assert_eq!(
        stats.requests, 3,
        "three batches of 100, each pushed once: {stats:?}"
    );
    assert_eq!(stats.by_status.get(&400), Some(&3));
    assert_eq!(stats.entries_stored + stats.entries_rejected, 300);
    assert_eq!(stats.entries_rejected, 75);
    assert_eq!(r.metrics.entries_rejected.load(Relaxed), 300);
    assert_eq!(r.metrics.pushes_rejected.load(Relaxed), 3);
    let text = std::fs::read_to_string(&dl).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 300);
    assert_eq!(r.metrics.dead_lettered.load(Relaxed), 300);
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["labels"]["app"], "api");
    assert!(lines.iter().any(|l| l["line"] == "l299"));
}

#[test]
fn status_260_is_counted_as_blocked_not_delivered_and_not_retried() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::Blocked260);
    let es: Vec<_> = (0..200)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(5), fast_cfg(), &es);
    assert!(wait_until(Duration::from_secs(10), || r
        .spool
        .gauges()
        .records
        == 0));
    assert_eq!(rx.stats().requests, 2);
    assert_eq!(r.metrics.entries_blocked.load(Relaxed), 200);
    assert_eq!(r.metrics.entries_sent.load(Relaxed), 0);
}

#[test]
fn too_old_entries_are_dropped_or_rewritten() {
    for policy in [TooOld::Drop, TooOld::Rewrite] {
        let rx = LokiReceiver::start();
        let cfg = DrainConfig {
            too_old: policy,
            too_old_age: Duration::from_secs(3600),
            ..fast_cfg()
        };
        let old_ts = now_ns() - 2 * 3600 * SEC;
        let mut es = vec![entry(None, "api", old_ts, "ancient".into())];
        es.push(entry(None, "api", now_ns(), "recent".into()));
        let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
        assert!(wait_until(Duration::from_secs(10), || r
            .spool
            .gauges()
            .records
            == 0));
        let stream = rx.entries("fake").into_values().next().unwrap();
        match policy {
            TooOld::Drop => {
                assert_eq!(stream.len(), 1);
                assert_eq!(stream[0].line, "recent");
                assert_eq!(r.metrics.entries_too_old_dropped.load(Relaxed), 1);
            }
            TooOld::Rewrite => {
                assert_eq!(stream.len(), 2);
                let a = stream.iter().find(|e| e.line == "ancient").unwrap();
                let cutoff = (now_ns() - 3600 * SEC) as i128;
                assert!(
                    (a.ts_ns - cutoff).abs() < (60 * SEC) as i128,
                    "stamped at the cutoff"
                );
                assert!(a
                    .structured_metadata
                    .contains(&(ORIGINAL_TS_KEY.into(), old_ts.to_string())));
                assert_eq!(r.metrics.entries_too_old_rewritten.load(Relaxed), 1);
            }
        }
    }
}

#[test]
fn stop_is_bounded_during_a_black_hole_and_leaves_the_batch_on_disk() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::BlackHole);
    let es: Vec<_> = (0..50)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    // The push in flight when stop comes keeps its own timeout (2 s); after it, no new
    // push starts: the drain is gone within grace + timeout.
    let r = rig(rx.url(), Duration::from_secs(2), fast_cfg(), &es);
    assert!(rx.wait_for_requests(1, Duration::from_secs(5)));
    let t = Instant::now();
    r.drain.stop();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "stop took {took:?} with grace 500 ms, timeout 2 s"
    );
    let requests = rx.request_count();
    assert!(requests <= 2, "no new push after the grace: {requests}");
    assert_eq!(
        r.spool.gauges().records,
        50,
        "the unsent batch stays queued"
    );
}

#[test]
fn stop_sends_what_is_queued_when_loki_is_up() {
    let rx = LokiReceiver::start();
    // A long linger: without the stop, these would wait.
    let cfg = DrainConfig {
        linger: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(5),
        ..fast_cfg()
    };
    let es: Vec<_> = (0..10)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.total_stored(), 0, "lingering");
    r.drain.stop();
    assert_eq!(rx.total_stored(), 10);
    assert_eq!(r.spool.gauges().records, 0);
}

#[test]
fn undecodable_records_are_counted_and_skipped() {
    let rx = LokiReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path().join("q"), SpoolConfig::default()).unwrap());
    let good = entry(None, "api", now_ns(), "good".into()).encode();
    spool.append(&[b"not an entry".to_vec(), good]).unwrap();
    let metrics = Arc::new(Metrics::default());
    let drain = Drain::start(
        "d".into(),
        spool.clone(),
        LokiClient::new(ClientConfig::new(rx.url())).unwrap(),
        DrainConfig {
            too_old_age: Duration::from_secs(3600),
            ..fast_cfg()
        },
        metrics.clone(),
        Box::new(|| Box::new(())),
    )
    .unwrap();
    assert!(rx.wait_for(1, Duration::from_secs(10)));
    assert!(wait_until(Duration::from_secs(5), || spool
        .gauges()
        .records
        == 0));
    assert_eq!(metrics.entries_undecodable.load(Relaxed), 1);
    drain.stop();
}

/// Rewritten entries are stamped at the cutoff, not now: the rest of an outage's
/// backlog (older than an hour, younger than the cutoff) must still be accepted by a
/// Loki that rejects entries more than an hour behind a stream's newest.
#[test]
fn rewrite_does_not_push_the_rest_of_the_backlog_too_far_behind() {
    let rx = LokiReceiver::start();
    let cfg = DrainConfig {
        too_old: TooOld::Rewrite,
        too_old_age: Duration::from_secs(2 * 3600),
        batch_entries: 10,
        ..fast_cfg()
    };
    let mut es: Vec<_> = (0..10)
        .map(|i| {
            entry(
                None,
                "api",
                now_ns() - 3 * 3600 * SEC + i,
                format!("ancient {i}"),
            )
        })
        .collect();
    es.extend((0..50).map(|i| {
        entry(
            None,
            "api",
            now_ns() - 5400 * SEC + i,
            format!("backlog {i}"),
        )
    }));
    let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
    assert!(wait_until(Duration::from_secs(10), || r
        .spool
        .gauges()
        .records
        == 0));
    let stats = rx.stats();
    assert_eq!(stats.entries_rejected, 0, "{stats:?}");
    assert_eq!(stats.entries_stored, 60);
    assert_eq!(r.metrics.entries_too_old_rewritten.load(Relaxed), 10);
}

/// A push that ages past the cutoff while the breaker is open is refreshed before the
/// half-open probe is taken: refreshing after taking it left the breaker waiting for a
/// probe that was never sent, and the drain sent nothing again until a restart.
#[test]
fn a_push_aging_in_retry_is_refreshed_without_wedging_the_breaker() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::ServerError(503));
    let cfg = DrainConfig {
        too_old: TooOld::Rewrite,
        too_old_age: Duration::from_secs(1),
        too_old_slack: Duration::from_millis(500),
        breaker: BreakerConfig {
            failure_threshold: 1,
            hold: Duration::from_secs(1),
        },
        ..fast_cfg()
    };
    // Young enough to pass the first prepare, old enough to need a refresh by the
    // time the breaker lets the first probe through.
    let es: Vec<_> = (0..20)
        .map(|i| entry(None, "api", now_ns() - 900_000_000 + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(2), cfg, &es);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.total_stored(), 0);
    rx.set_mode(Mode::Accept);
    assert!(
        rx.wait_for(20, Duration::from_secs(10)),
        "the drain stopped sending after a refresh: stored {}, {} requests",
        rx.total_stored(),
        rx.request_count()
    );
    assert!(r.metrics.entries_too_old_rewritten.load(Relaxed) >= 20);
    let stream = rx.entries("fake").into_values().next().unwrap();
    assert!(stream.iter().all(|e| e
        .structured_metadata
        .iter()
        .any(|(k, _)| k == ORIGINAL_TS_KEY)));
}

/// 413: Loki stored nothing, so the push is split and the halves sent; nothing is lost.
#[test]
fn a_413_splits_the_push_instead_of_dropping_it() {
    let rx = LokiReceiver::start_with(ReceiverConfig {
        max_body_bytes: 16 * 1024,
        ..ReceiverConfig::default()
    });
    // Lines that do not compress: 100 x ~600 bytes is far above 16 KiB.
    let es: Vec<_> = (0..100u64)
        .map(|i| {
            let line: String = (0..40u64)
                .map(|k| format!("{:016x}", (i * 40 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            entry(None, "api", now_ns() + i as i64, line)
        })
        .collect();
    let r = rig(rx.url(), Duration::from_secs(5), fast_cfg(), &es);
    assert!(wait_until(Duration::from_secs(10), || r
        .spool
        .gauges()
        .records
        == 0));
    // The receiver answers 413 before reading a body that is too large, so those
    // requests are not in its log. One batch of 100 went out as several requests, each
    // under the limit (unsplit, it would have been one rejected push).
    let stats = rx.stats();
    assert!(stats.requests >= 2, "{stats:?}");
    assert!(rx.requests().iter().all(|r| r.body_len <= 16 * 1024));
    assert_eq!(stats.entries_stored, 100);
    // Halves that overlapped would be stored once each: the receiver drops exact
    // duplicates, so only its count shows them.
    assert_eq!(stats.duplicates_dropped, 0, "{stats:?}");
    assert_eq!(r.metrics.entries_rejected.load(Relaxed), 0);
    // Each 413 answer is a rejected push in the metrics, though its entries were not.
    assert!(r.metrics.pushes_rejected.load(Relaxed) >= 1);
}

/// A record written by a newer format version is never dropped: the queue is held.
#[test]
fn an_unknown_entry_version_holds_the_queue_instead_of_dropping() {
    let rx = LokiReceiver::start();
    let mut newer = entry(None, "api", now_ns(), "from the future".into()).encode();
    newer[1] = lockstep_ship::ENTRY_VERSION + 1;
    let good = entry(None, "api", now_ns(), "good".into()).encode();
    // Too old, ahead of the newer record: a held batch must not count it as dropped
    // (it is not, and the batch is prepared again every 30 s).
    let ancient = entry(None, "api", now_ns() - 7200 * SEC, "ancient".into()).encode();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path().join("q"), SpoolConfig::default()).unwrap());
    spool.append(&[ancient, newer, good]).unwrap();
    let metrics = Arc::new(Metrics::default());
    let drain = Drain::start(
        "d".into(),
        spool.clone(),
        LokiClient::new(ClientConfig::new(rx.url())).unwrap(),
        DrainConfig {
            too_old_age: Duration::from_secs(3600),
            ..fast_cfg()
        },
        metrics.clone(),
        Box::new(|| Box::new(())),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || metrics
        .spool_errors
        .load(Relaxed)
        > 0));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(spool.gauges().records, 3, "nothing acknowledged");
    assert_eq!(rx.request_count(), 0);
    assert_eq!(metrics.entries_too_old_dropped.load(Relaxed), 0);
    drain.stop();
}

/// A second drain on the same queue, as the next start would run: returns after it had
/// `settle` to send whatever it found.
fn restart_and_settle(r: &Rig, url: String, settle: Duration) {
    let drain = Drain::start(
        "again".into(),
        r.spool.clone(),
        LokiClient::new(ClientConfig::new(url)).unwrap(),
        fast_cfg(),
        Arc::new(Metrics::default()),
        Box::new(|| Box::new(())),
    )
    .unwrap();
    std::thread::sleep(settle);
    drain.stop();
}

/// A push Loki completes after the stop bound is still acknowledged: before, a push
/// started during the stop got a timeout ending at the bound, gave up while Loki went
/// on to store it, and the next start sent the batch again.
#[test]
fn a_push_loki_completes_after_the_stop_bound_is_acknowledged_not_resent() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::Slow(Duration::from_millis(900)));
    let cfg = DrainConfig {
        linger: Duration::from_secs(60), // only the stop sends them
        shutdown_grace: Duration::from_millis(200),
        ..fast_cfg()
    };
    let es: Vec<_> = (0..10)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.request_count(), 0, "lingering");
    let t = Instant::now();
    r.drain.stop();
    assert!(
        t.elapsed() >= Duration::from_millis(850),
        "the push ran to Loki's answer"
    );
    assert_eq!(rx.total_stored(), 10);
    assert_eq!(
        r.spool.gauges().records,
        0,
        "the completed push was acknowledged"
    );
    rx.set_mode(Mode::Accept);
    restart_and_settle(&r, rx.url(), Duration::from_millis(500));
    assert_eq!(rx.total_stored(), 10);
    assert_eq!(rx.stats().duplicates_dropped, 0, "nothing sent twice");
    assert_eq!(rx.request_count(), 1);
}

/// A batch holding two tenants is two pushes: once the first went out, the second is
/// sent and the batch acknowledged even past the stop bound (the queue acknowledges
/// whole batches, so stopping between them would send the first tenant's again).
#[test]
fn a_batch_started_before_the_stop_bound_is_finished_and_acknowledged() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::Slow(Duration::from_millis(400)));
    let cfg = DrainConfig {
        linger: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(200),
        ..fast_cfg()
    };
    let mut es: Vec<_> = (0..5)
        .map(|i| entry(Some("a"), "api", now_ns() + i, format!("a{i}")))
        .collect();
    es.extend((0..5).map(|i| entry(Some("b"), "api", now_ns() + i, format!("b{i}"))));
    let r = rig(rx.url(), Duration::from_secs(5), cfg, &es);
    std::thread::sleep(Duration::from_millis(100));
    r.drain.stop();
    assert_eq!(rx.tenants().len(), 2, "both tenants' pushes went out");
    assert_eq!(rx.total_stored(), 10);
    assert_eq!(r.spool.gauges().records, 0);
    rx.set_mode(Mode::Accept);
    restart_and_settle(&r, rx.url(), Duration::from_millis(500));
    assert_eq!(rx.total_stored(), 10);
    // Stored entries cannot show a resend: the receiver drops exact duplicates.
    assert_eq!(rx.stats().duplicates_dropped, 0, "nothing sent twice");
    assert_eq!(rx.request_count(), 2, "one push per tenant");
}

/// With Loki down the stop gives up at once and keeps everything for the next start.
#[test]
fn stop_with_loki_refusing_is_quick_and_the_next_start_sends_all() {
    let rx = LokiReceiver::start();
    rx.set_mode(Mode::Refuse);
    let cfg = DrainConfig {
        shutdown_grace: Duration::from_secs(20),
        ..fast_cfg()
    };
    let es: Vec<_> = (0..300)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")))
        .collect();
    let r = rig(rx.url(), Duration::from_secs(2), cfg, &es);
    assert!(wait_until(Duration::from_secs(5), || r
        .metrics
        .pushes_failed
        .load(Relaxed)
        >= 1));
    let t = Instant::now();
    r.drain.stop();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "stop took {:?} with shutdown_grace 20 s and Loki refusing",
        t.elapsed()
    );
    assert_eq!(r.spool.gauges().records, 300);
    rx.set_mode(Mode::Accept);
    restart_and_settle(&r, rx.url(), Duration::from_secs(2));
    assert_eq!(rx.total_stored(), 300);
    assert_eq!(r.spool.gauges().records, 0);
}

/// Fails every checkpoint sync while set: each `Spool::ack` returns an I/O error.
#[derive(Default)]
struct FailingAcks {
    failing: std::sync::atomic::AtomicBool,
    failed: std::sync::atomic::AtomicU64,
}

impl lockstep_spool::SyncHook for FailingAcks {
    fn sync(
        &self,
        kind: lockstep_spool::SyncKind,
        file: &std::fs::File,
        path: &std::path::Path,
    ) -> std::io::Result<()> {
        if kind == lockstep_spool::SyncKind::Checkpoint && self.failing.load(Relaxed) {
            self.failed.fetch_add(1, Relaxed);
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        lockstep_spool::OsSync.sync(kind, file, path)
    }
}

/// A delivered batch whose acknowledgement fails is acknowledged later, never sent again.
#[test]
fn a_failed_ack_is_retried_without_sending_the_batch_again() {
    let rx = LokiReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(FailingAcks::default());
    hook.failing.store(true, Relaxed);
    let spool = Arc::new(
        Spool::open_with_sync_hook(dir.path().join("q"), SpoolConfig::default(), hook.clone())
            .unwrap(),
    );
    let es: Vec<Vec<u8>> = (0..50)
        .map(|i| entry(None, "api", now_ns() + i, format!("l{i}")).encode())
        .collect();
    spool.append(&es).unwrap();
    let metrics = Arc::new(Metrics::default());
    let drain = Drain::start(
        "drain".into(),
        spool.clone(),
        LokiClient::new(ClientConfig::new(rx.url())).unwrap(),
        fast_cfg(),
        metrics.clone(),
        Box::new(|| Box::new(())),
    )
    .unwrap();
    assert!(rx.wait_for(50, Duration::from_secs(10)));
    // The ack is retried (every second) while it fails; the batch stays queued.
    assert!(wait_until(Duration::from_secs(10), || hook
        .failed
        .load(Relaxed)
        >= 2));
    assert!(metrics.spool_errors.load(Relaxed) >= 1);
    assert_eq!(spool.gauges().records, 50);
    hook.failing.store(false, Relaxed);
    assert!(wait_until(Duration::from_secs(5), || spool
        .gauges()
        .records
        == 0));
    drain.stop();
    let stats = rx.stats();
    assert_eq!(stats.requests, 1, "one push: {stats:?}");
    assert_eq!(stats.duplicates_dropped, 0, "{stats:?}");
    assert_eq!(stats.entries_stored, 50);
    assert_eq!(metrics.entries_sent.load(Relaxed), 50);
}
