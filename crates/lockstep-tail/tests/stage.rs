//! The decision stage over real queues: lines wait on disk, traces are decided on time
//! over all their lines, kept lines move to the main queue, dropped ones vanish, late
//! lines follow, a restart decides as the first run would have.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use fluent_bit_chunk::Chunk;
use lockstep_policy::Policy;
use lockstep_spool::{Spool, SpoolConfig};
use lockstep_tail::*;
use serde_json::{json, Value};

const WAIT: u64 = 30_000_000_000;

fn cfg(num_traces: usize) -> StageConfig {
    StageConfig {
        table: TableConfig {
            decision_wait_ns: WAIT,
            num_traces,
            cache_sampled: 100,
            cache_not_sampled: 100,
        },
        fingerprint: 7,
        spool: SpoolConfig::default(),
    }
}

struct Rig {
    main: Arc<Spool>,
    stage: Stage,
    moved: Arc<AtomicUsize>,
    rec: Recovered,
}

fn open(dir: &Path, cfg: StageConfig, policy: Policy) -> Rig {
    let main = Arc::new(Spool::open(dir.join("main"), SpoolConfig::default()).unwrap());
    let moved = Arc::new(AtomicUsize::new(0));
    let m = moved.clone();
    let (stage, rec) = Stage::open(
        policy,
        cfg,
        &dir.join("main").join("waiting"),
        main.clone(),
        msg_mapper(),
        Box::new(move |n| {
            m.fetch_add(n, Relaxed);
        }),
    )
    .unwrap();
    Rig {
        main,
        stage,
        moved,
        rec,
    }
}

/// The test's "entry": the body's `msg` (the event decoded again from its raw bytes).
fn msg_mapper() -> lockstep_tail::Mapper {
    Box::new(|_tag, event, out| {
        let r = Chunk::new(event)
            .records()
            .next()
            .ok_or("no record")?
            .map_err(|e| e.to_string())?;
        let msg = r
            .event
            .body
            .get("msg")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        out.extend_from_slice(msg.as_bytes());
        Ok(())
    })
}

/// A chunk of V2 events `[[EventTime, metadata], body]`.
fn chunk(events: &[(Value, Value)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (meta, body) in events {
        b.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00]);
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&rmp_serde::to_vec(meta).unwrap());
        b.extend_from_slice(&rmp_serde::to_vec(body).unwrap());
    }
    b
}

/// Flushes records (bodies, no metadata); the entry written is the body's `msg`.
fn flush(stage: &Stage, bodies: &[Value]) -> usize {
    let events: Vec<(Value, Value)> = bodies.iter().map(|b| (json!({}), b.clone())).collect();
    flush_events(stage, &events)
}

fn flush_events(stage: &Stage, events: &[(Value, Value)]) -> usize {
    let bytes = chunk(events);
    let mut intake = stage.intake("t");
    for r in Chunk::new(&bytes).records() {
        intake.add(&r.unwrap().event);
    }
    intake.commit().unwrap()
}

fn main_entries(main: &Spool) -> Vec<String> {
    let b = main.peek(usize::MAX, usize::MAX).unwrap();
    b.records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect()
}

fn tid(i: u8) -> String {
    format!("{:02x}", i).repeat(16)
}

fn request(i: u8, error: bool) -> Vec<Value> {
    let t = tid(i);
    vec![
        json!({"trace_id": t, "level": "info", "msg": format!("{i} started")}),
        json!({"trace_id": t, "level": "debug", "msg": format!("{i} db")}),
        json!({"trace_id": t, "level": if error {"error"} else {"info"}, "duration_ms": 20, "msg": format!("{i} finished")}),
    ]
}

#[test]
fn kept_traces_arrive_whole_and_dropped_ones_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    let mut lines = request(1, true);
    lines.extend(request(2, false));
    lines.push(json!({"level": "error", "msg": "untraced error"}));
    lines.push(json!({"level": "info", "msg": "untraced info"}));
    assert_eq!(flush(&rig.stage, &lines), 7, "6 waiting + 1 untraced kept");
    let now = lockstep_spool::now_ns();
    // before decision_wait: only the untraced error line moved
    let t = rig.stage.tick(now).unwrap();
    assert_eq!(
        (t.decided, t.moved),
        (0, 0),
        "the untraced line waits behind pending lines"
    );
    assert_eq!(rig.stage.table_sizes().0, 2);
    let t = rig.stage.tick(now + WAIT + 1).unwrap();
    assert_eq!((t.decided, t.moved, t.dropped), (2, 4, 3));
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished", "untraced error"]
    );
    assert_eq!(rig.moved.load(Relaxed), 4);
    let m = rig.stage.metrics();
    assert_eq!(m.lines_kept_trace.load(Relaxed), 3);
    assert_eq!(m.lines_dropped_trace.load(Relaxed), 3);
    assert_eq!(m.lines_dropped_alone.load(Relaxed), 1);
    assert_eq!(
        rig.stage.decided(),
        vec![(false, "not_sampled".into(), 1), (true, "errors".into(), 1)]
    );
    // the waiting queue is empty again; late lines follow the decisions
    assert_eq!(rig.stage.waiting_gauges().records, 0);
    flush(
        &rig.stage,
        &[
            json!({"trace_id": tid(1), "msg": "1 late"}),
            json!({"trace_id": tid(2), "msg": "2 late"}),
        ],
    );
    rig.stage.tick(now + WAIT + 2).unwrap();
    assert_eq!(main_entries(&rig.main).last().unwrap(), "1 late");
    assert_eq!(m.late_followed_kept.load(Relaxed), 1);
    assert_eq!(m.late_followed_dropped.load(Relaxed), 1);
    let text = rig.stage.render_metrics("lockstep_loki.0", now);
    assert!(text.contains("lockstep_loki_traces_decided_total{instance=\"lockstep_loki.0\",decision=\"keep\",reason=\"errors\"} 1\n"), "{text}");
    assert!(
        text.contains(
            "lockstep_loki_late_lines_total{instance=\"lockstep_loki.0\",outcome=\"followed\"} 2\n"
        ),
        "{text}"
    );
}

#[test]
fn otlp_metadata_ids_group_lines_into_traces() {
    let dir = tempfile::tempdir().unwrap();
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    // trace id as msgpack bin in the metadata (serde_bytes-free: an rmp Value)
    let meta = |sev: u64| rmpv_meta(&[0xab; 16], sev);
    let bytes = {
        let mut b = Vec::new();
        for (sev, msg) in [(9, "a"), (9, "b"), (17, "c")] {
            b.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00]);
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&meta(sev));
            b.extend_from_slice(&rmp_serde::to_vec(&json!({"log": msg, "msg": msg})).unwrap());
        }
        b
    };
    let mut intake = rig.stage.intake("v1_logs");
    for r in Chunk::new(&bytes).records() {
        assert!(intake.add(&r.unwrap().event));
    }
    assert_eq!(intake.commit().unwrap(), 3);
    assert_eq!(rig.stage.table_sizes().0, 1, "one trace, from the metadata");
    rig.stage.tick(lockstep_spool::now_ns() + WAIT + 1).unwrap();
    assert_eq!(main_entries(&rig.main), vec!["a", "b", "c"]);
}

/// `{"otlp": {"trace_id": bin, "severity_number": n}}`.
fn rmpv_meta(trace: &[u8; 16], sev: u64) -> Vec<u8> {
    let mut m = vec![0x81, 0xa4];
    m.extend_from_slice(b"otlp");
    m.push(0x82);
    m.extend_from_slice(&rmp_serde::to_vec("trace_id").unwrap());
    m.extend_from_slice(&[0xc4, 16]);
    m.extend_from_slice(trace);
    m.extend_from_slice(&rmp_serde::to_vec("severity_number").unwrap());
    m.extend_from_slice(&rmp_serde::to_vec(&sev).unwrap());
    m
}

#[test]
fn a_restart_decides_waiting_traces_as_they_would_have_been() {
    let dir = tempfile::tempdir().unwrap();
    let now = lockstep_spool::now_ns();
    {
        let rig = open(dir.path(), cfg(1000), Policy::default_policy());
        let mut lines = request(1, true);
        lines.extend(request(2, false));
        flush(&rig.stage, &lines);
        // trace 3 is decided (kept) and half swept before the "crash"
        flush(&rig.stage, &request(3, true)[..2]);
        flush(&rig.stage, &request(3, true)[2..]);
        drop(rig); // no tick: the process dies with everything waiting
    }
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    assert_eq!(rig.rec.pending_lines, 9);
    assert_eq!(rig.rec.waiting_traces, 3);
    // not yet due: they wait from their first line's arrival, not from the restart
    assert_eq!(rig.stage.tick(now).unwrap().decided, 0);
    let t = rig.stage.tick(now + WAIT + 1_000_000_000).unwrap();
    assert_eq!(t.decided, 3);
    let got = main_entries(&rig.main);
    assert_eq!(
        got,
        vec![
            "1 started",
            "1 db",
            "1 finished",
            "3 started",
            "3 db",
            "3 finished"
        ]
    );
}

#[test]
fn decisions_survive_a_restart_after_a_partial_sweep() {
    let policy = Policy::default_policy();
    // the error line comes first; the later line alone would be dropped
    let dir = tempfile::tempdir().unwrap();
    let now;
    {
        // a main queue with no room: the sweep stops after the decision is recorded
        let main_cfg = SpoolConfig {
            segment_bytes: 1024,
            max_bytes: 2048,
            ..SpoolConfig::default()
        };
        let main = Arc::new(Spool::open(dir.path().join("main"), main_cfg).unwrap());
        while main.append(&[vec![b'x'; 100]]).is_ok() {}
        let (stage, _) = Stage::open(
            policy.clone(),
            cfg(1000),
            &dir.path().join("main").join("waiting"),
            main.clone(),
            msg_mapper(),
            Box::new(|_| {}),
        )
        .unwrap();
        let t = tid(6);
        flush(
            &stage,
            &[json!({"trace_id": t, "level": "error", "msg": "6 boom"})],
        );
        flush(
            &stage,
            &[json!({"trace_id": t, "level": "info", "msg": "6 after"})],
        );
        now = lockstep_spool::now_ns();
        let tick = stage.tick(now + WAIT).unwrap();
        assert!(tick.blocked, "{tick:?}");
        assert_eq!(tick.decided, 1);
    }
    // reopened with room: the decision record stands, both lines are kept
    let rig = open(dir.path(), cfg(1000), policy);
    assert_eq!(rig.rec.decisions, 1);
    assert_eq!(rig.rec.waiting_traces, 0);
    let filler = rig.main.peek(usize::MAX, usize::MAX).unwrap();
    rig.main.ack(&filler).unwrap();
    rig.stage.tick(now + WAIT + 2).unwrap();
    assert_eq!(main_entries(&rig.main), vec!["6 boom", "6 after"]);
}

#[test]
fn past_num_traces_the_oldest_are_decided_early_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rig = open(dir.path(), cfg(5), Policy::default_policy());
    for i in 1..=8u8 {
        flush(&rig.stage, &request(i, i % 2 == 0));
    }
    assert_eq!(rig.stage.table_sizes().0, 8);
    let t = rig.stage.tick(lockstep_spool::now_ns()).unwrap();
    assert_eq!(t.decided, 3, "{t:?}");
    assert_eq!(rig.stage.metrics().decided_early.load(Relaxed), 3);
    assert_eq!(rig.stage.table_sizes().0, 5);
    // traces 1 and 3 dropped, 2 kept whole; the rest still wait
    assert_eq!(
        main_entries(&rig.main),
        vec!["2 started", "2 db", "2 finished"]
    );
}

#[test]
fn lines_under_another_policy_are_kept_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rig = open(dir.path(), cfg(1000), Policy::default_policy());
        flush(&rig.stage, &request(1, false));
    }
    let mut c = cfg(1000);
    c.fingerprint = 8;
    let rig = open(dir.path(), c, Policy::default_policy());
    assert_eq!(rig.stage.metrics().recovered_other_policy.load(Relaxed), 3);
    rig.stage.tick(lockstep_spool::now_ns()).unwrap();
    assert_eq!(main_entries(&rig.main).len(), 3);
}

/// Every metric the README's sampling section names is rendered, and nothing else.
#[test]
fn every_documented_metric_is_rendered() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("### Sampling by whole trace (`policy_file`)")
        .unwrap();
    let section = &readme[start..];
    let section = &section[..section.find("alerts.yaml").unwrap()];
    let documented: std::collections::BTreeSet<&str> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.starts_with("lockstep_loki_"))
        .map(|t| t.split('{').next().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let rig = open(dir.path(), cfg(10), Policy::default_policy());
    flush(&rig.stage, &request(1, true));
    rig.stage.tick(lockstep_spool::now_ns() + WAIT + 1).unwrap();
    let text = rig.stage.render_metrics("x", lockstep_spool::now_ns());
    let rendered: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(documented, rendered);
}
