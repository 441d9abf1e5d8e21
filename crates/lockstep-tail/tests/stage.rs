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
            max_pinned: 1000,
            cache_reported: 100,
            hold_max_ns: 300_000_000_000,
        },
        fingerprint: Policy::default_policy().fingerprint(),
        spool: SpoolConfig::default(),
        time: TimeSource::System,
        decision_reserve: None,
        source: DecisionSource::Policy,
        has_policy: true,
        feed_silence_ns: 300_000_000_000,
    }
}

/// `cfg` on a clock the test moves.
fn manual(num_traces: usize) -> (StageConfig, Arc<ManualTime>) {
    let clock = ManualTime::new(1_700_000_000_000_000_000);
    let mut c = cfg(num_traces);
    c.time = TimeSource::Manual(clock.clone());
    (c, clock)
}

/// A small spool: `max` bytes in segments of `max / 4`.
fn small(max: u64) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: max / 4,
        max_bytes: max,
        ..SpoolConfig::default()
    }
}

struct Rig {
    main: Arc<Spool>,
    stage: Stage,
    moved: Arc<AtomicUsize>,
    rec: Recovered,
}

fn open(dir: &Path, cfg: StageConfig, policy: Policy) -> Rig {
    open_with(dir, cfg, policy, SpoolConfig::default(), msg_mapper())
}

fn open_with(
    dir: &Path,
    cfg: StageConfig,
    policy: Policy,
    main_cfg: SpoolConfig,
    mapper: Mapper,
) -> Rig {
    let main = Arc::new(Spool::open(dir.join("main"), main_cfg).unwrap());
    let moved = Arc::new(AtomicUsize::new(0));
    let m = moved.clone();
    let (stage, rec) = Stage::open(
        policy,
        cfg,
        &dir.join("main").join("waiting"),
        main.clone(),
        mapper,
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
    try_flush_events(stage, events).unwrap()
}

fn try_flush(stage: &Stage, bodies: &[Value]) -> Result<usize, IntakeError> {
    let events: Vec<(Value, Value)> = bodies.iter().map(|b| (json!({}), b.clone())).collect();
    try_flush_events(stage, &events)
}

fn try_flush_events(stage: &Stage, events: &[(Value, Value)]) -> Result<usize, IntakeError> {
    try_flush_bytes(stage, &chunk(events))
}

/// Flushes a chunk's bytes as the plugin does (the intake is told the chunk's bytes).
fn try_flush_bytes(stage: &Stage, bytes: &[u8]) -> Result<usize, IntakeError> {
    let mut intake = stage.intake("t");
    intake.chunk(bytes);
    for r in Chunk::new(bytes).records() {
        intake.add(&r.unwrap().event);
    }
    intake.commit()
}

fn bodies_chunk(bodies: &[Value]) -> Vec<u8> {
    let events: Vec<(Value, Value)> = bodies.iter().map(|b| (json!({}), b.clone())).collect();
    chunk(&events)
}

/// Takes everything out of the main queue (as the drain would after delivery).
fn drain_main(main: &Spool) -> Vec<String> {
    let got = main_entries(main);
    let b = main.peek(usize::MAX, usize::MAX).unwrap();
    main.ack(&b).unwrap();
    got
}

/// Fills a spool with 100-byte records until it is full.
fn fill(main: &Spool) {
    while main.append(&[vec![b'x'; 100]]).is_ok() {}
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
        // trace 3's lines come in two chunks
        flush(&rig.stage, &request(3, true)[..2]);
        flush(&rig.stage, &request(3, true)[2..]);
        drop(rig); // no tick: the process dies with everything waiting
    }
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    assert_eq!(rig.rec.pending_lines, 9);
    assert_eq!(rig.rec.waiting_traces, 3);
    // not yet due: they wait decision_wait from the restart at least
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

/// A trace kept for its first line, half swept (its later line is behind a trace still
/// waiting), then a crash: its decision record decides the rest. Recovery that ignored
/// the record would re-decide the trace over its info line alone and drop it.
#[test]
fn decisions_survive_a_restart_after_a_partial_sweep() {
    let policy = Policy::default_policy();
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = manual(1000);
    let t0 = clock.wall();
    {
        let rig = open(dir.path(), c.clone(), policy.clone());
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(6), "level": "error", "msg": "6 boom"})],
        );
        clock.advance(1_000_000_000);
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(7), "level": "info", "msg": "7 waits"})],
        );
        clock.advance(1_000_000_000);
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(6), "level": "info", "msg": "6 after"})],
        );
        let tick = rig.stage.tick(t0 + WAIT).unwrap();
        assert_eq!((tick.decided, tick.moved), (1, 1), "{tick:?}");
        assert_eq!(main_entries(&rig.main), vec!["6 boom"]);
        // the process dies here
    }
    let rig = open(dir.path(), c, policy);
    assert_eq!(rig.rec.decisions, 1);
    assert_eq!((rig.rec.waiting_traces, rig.rec.pinned_traces), (1, 1));
    rig.stage.tick(t0 + 3 * WAIT).unwrap();
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

fn compile(yaml: &str) -> Policy {
    let f = lockstep_policy::parse_policy(yaml, lockstep_policy::Format::Yaml, "p.yaml").unwrap();
    Policy::compile(&f).unwrap()
}

const ALWAYS: &str = "policies:\n  - {name: all, type: always_sample}\n";

/// After a policy edit, lines without a decision are decided over facts read again
/// from the lines under the new policy (not kept blindly), and decisions already on
/// disk stand (a backlog of dropped traces is not delivered).
#[test]
fn after_a_policy_edit_waiting_lines_are_read_again_and_recorded_decisions_stand() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    let t0 = clock.wall();
    let always = compile(ALWAYS);
    {
        // the main queue is full (Loki down): decided lines stay in the waiting queue
        let rig = open_with(
            dir.path(),
            c.clone(),
            Policy::default_policy(),
            small(8192),
            msg_mapper(),
        );
        fill(&rig.main);
        flush(&rig.stage, &request(1, true)); // kept, blocked: the main queue is full
        flush(&rig.stage, &request(2, false)); // dropped by the default policy
        rig.stage.tick(t0 + WAIT).unwrap();
        assert_eq!(
            rig.stage.decided(),
            vec![(false, "not_sampled".into(), 1), (true, "errors".into(), 1)]
        );
        clock.advance(WAIT);
        flush(&rig.stage, &request(3, false)); // waits, undecided
    }
    // restarted under an always_sample policy (other rules, other fingerprint)
    c.fingerprint = always.fingerprint();
    assert_ne!(c.fingerprint, Policy::default_policy().fingerprint());
    let rig = open(dir.path(), c, always);
    assert_eq!(rig.rec.recomputed_lines, 9);
    assert_eq!(rig.rec.decisions, 2);
    rig.stage.tick(t0 + 3 * WAIT).unwrap();
    let got: Vec<String> = main_entries(&rig.main)
        .into_iter()
        .filter(|e| !e.starts_with("xx"))
        .collect();
    assert_eq!(
        got,
        vec![
            "1 started",
            "1 db",
            "1 finished",
            "3 started",
            "3 db",
            "3 finished"
        ],
        "trace 2 stays dropped; trace 3 is kept by the new policy"
    );
}

/// And the other way: lines written under an always_sample policy are dropped when the
/// new policy, reading them again, drops them (failing open would keep them).
#[test]
fn lines_under_another_policy_are_decided_by_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(1000);
    let always = compile(ALWAYS);
    c.fingerprint = always.fingerprint();
    {
        let rig = open(dir.path(), c.clone(), always);
        flush(&rig.stage, &request(1, false));
        flush(&rig.stage, &request(2, true));
    }
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    assert_eq!(rig.stage.metrics().recovered_other_policy.load(Relaxed), 6);
    rig.stage.tick(lockstep_spool::now_ns() + WAIT).unwrap();
    assert_eq!(
        main_entries(&rig.main),
        vec!["2 started", "2 db", "2 finished"]
    );
}

#[test]
fn a_policy_fingerprint_follows_the_rules_not_the_text() {
    let a = compile("policies:\n  - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: all, type: always_sample}\n");
    let b = compile("# edited by hand\npolicies:\n  - name: e\n    type: status_code\n    status_code: {status_codes: [ERROR]}   # errors\n  - {name: all, type: always_sample}\n");
    let c = compile("policies:\n  - {name: all, type: always_sample}\n  - {name: e, type: status_code, status_code: {status_codes: [ERROR]}}\n");
    assert_eq!(
        a.fingerprint(),
        b.fingerprint(),
        "a comment is not a policy change"
    );
    assert_ne!(a.fingerprint(), c.fingerprint(), "renumbered rules are");
}

/// A trace id seen again after its decision was swept and forgotten is a new trace,
/// also after a crash while the old decision record is still in the waiting queue.
#[test]
fn a_reused_trace_id_is_a_new_trace_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.table.cache_sampled = 0; // forgotten as soon as swept
    let t0 = clock.wall();
    {
        let rig = open(dir.path(), c.clone(), Policy::default_policy());
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(3), "level": "error", "msg": "3 old"})],
        );
        clock.advance(1_000_000_000);
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(4), "level": "info", "msg": "4"})],
        );
        // 3 is decided (kept) and swept; its decision record stays behind trace 4's line
        rig.stage.tick(t0 + WAIT).unwrap();
        assert_eq!(main_entries(&rig.main), vec!["3 old"]);
        clock.advance(1_000_000_000);
        let n = flush(
            &rig.stage,
            &[json!({"trace_id": tid(3), "level": "info", "msg": "3 new"})],
        );
        assert_eq!(n, 1);
        assert_eq!(rig.stage.metrics().late_new_trace.load(Relaxed), 1);
    }
    let rig = open(dir.path(), c, Policy::default_policy());
    assert_eq!(rig.rec.waiting_traces, 2, "trace 4, and trace 3 anew");
    rig.stage.tick(t0 + 3 * WAIT).unwrap();
    assert_eq!(
        main_entries(&rig.main),
        vec!["3 old"],
        "the new trace 3 (info only) is dropped, not kept by the old decision"
    );
}

/// With the waiting queue full and the main queue full, decisions cannot be written:
/// no line of those traces leaves before its decision is on disk (a crash would
/// re-decide a half-swept trace over the rest); the failures are counted and retried.
#[test]
fn no_line_leaves_before_its_decision_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(16384);
    c.decision_reserve = Some(0);
    c.table.hold_max_ns = 0; // the refused flush below holds no trace: not this test's point
    let t0 = clock.wall();
    let rig = open_with(
        dir.path(),
        c.clone(),
        Policy::default_policy(),
        small(8192),
        msg_mapper(),
    );
    fill(&rig.main);
    // ten traces, each kept for its first line (their decision record is larger than
    // any room a line leaves)
    for k in 1..=10u8 {
        flush(
            &rig.stage,
            &[json!({"trace_id": tid(k), "level": "error", "msg": format!("{k} boom")})],
        );
    }
    let mut i = 0u32;
    while try_flush(
        &rig.stage,
        &[json!({"trace_id": tid(1), "level": "info", "msg": format!("1 line {i}")})],
    )
    .is_ok()
    {
        i += 1;
    }
    let t = rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!((t.decided, t.unwritten), (10, 10), "{t:?}");
    assert!(rig.stage.metrics().decision_write_failures.load(Relaxed) > 0);
    // Loki is back: the main queue empties, but the decision is still not on disk
    drain_main(&rig.main);
    let t = rig.stage.tick(t0 + WAIT + 1).unwrap();
    assert_eq!((t.moved, t.unwritten), (0, 10), "{t:?}");
    assert!(main_entries(&rig.main).is_empty());
    drop(rig); // crash
               // a restart with room decides the traces over all their lines: kept whole
    c.decision_reserve = None;
    c.spool = small(65536);
    let rig = open(dir.path(), c, Policy::default_policy());
    rig.stage.tick(t0 + 3 * WAIT).unwrap();
    let got = main_entries(&rig.main);
    assert_eq!(got.len(), i as usize + 10);
    assert_eq!(got[0], "1 boom");
}

/// The reserve: flushes are refused before the waiting queue is full, so decisions
/// still fit and the queue can always be swept.
#[test]
fn a_full_waiting_queue_still_takes_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(64 << 10);
    let t0 = clock.wall();
    let rig = open_with(
        dir.path(),
        c,
        Policy::default_policy(),
        small(8192),
        msg_mapper(),
    );
    assert_eq!(
        rig.stage.reserve_bytes(),
        32 << 10,
        "half the budget at most"
    );
    fill(&rig.main);
    let mut traces = 0u8;
    while try_flush(&rig.stage, &request(traces + 1, traces.is_multiple_of(2))).is_ok() {
        traces += 1;
    }
    assert!(traces > 10);
    let t = rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!((t.decided, t.unwritten), (usize::from(traces), 0), "{t:?}");
    assert_eq!(rig.stage.metrics().decision_write_failures.load(Relaxed), 0);
}

/// Decided traces waiting for room in the main queue are bounded: past
/// `max_pinned` a new trace is refused (the flush answers retry), until the sweep moves.
#[test]
fn pinned_decisions_are_bounded_and_a_flush_of_a_new_trace_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.table.max_pinned = 3;
    let t0 = clock.wall();
    let rig = open_with(
        dir.path(),
        c,
        Policy::default_policy(),
        small(8192),
        msg_mapper(),
    );
    fill(&rig.main);
    for i in 1..=3u8 {
        flush(&rig.stage, &request(i, true));
    }
    rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!(rig.stage.table_sizes(), (0, 3, 0));
    let e = try_flush(&rig.stage, &request(4, true)).unwrap_err();
    assert!(matches!(e, IntakeError::Busy { pinned: 3 }), "{e}");
    assert_eq!(rig.stage.table_sizes(), (0, 3, 0), "nothing of it recorded");
    // a late line of a decided trace still goes
    assert_eq!(
        try_flush(&rig.stage, &[json!({"trace_id": tid(1), "msg": "1 late"})]).unwrap(),
        1
    );
    drain_main(&rig.main);
    rig.stage.tick(t0 + WAIT + 1).unwrap();
    assert_eq!(rig.stage.table_sizes().1, 0);
    assert_eq!(flush(&rig.stage, &request(4, true)), 3);
    assert_eq!(rig.stage.metrics().busy_refusals.load(Relaxed), 1);
}

/// A record whose mapping panics is retried, then set aside (counted, written to the
/// quarantine file): the lines behind it move on.
#[test]
fn a_poison_record_is_quarantined_and_the_stage_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = manual(1000);
    let t0 = clock.wall();
    let inner = msg_mapper();
    let mapper: Mapper = Box::new(move |tag, event, out| {
        inner(tag, event, out)?;
        if out.ends_with(b"poison") {
            panic!("mapper bug");
        }
        Ok(())
    });
    let rig = open_with(
        dir.path(),
        c,
        Policy::default_policy(),
        SpoolConfig::default(),
        mapper,
    );
    flush(
        &rig.stage,
        &[
            json!({"trace_id": tid(1), "level": "error", "msg": "1 a"}),
            json!({"trace_id": tid(1), "msg": "poison"}),
            json!({"trace_id": tid(1), "msg": "1 c"}),
        ],
    );
    flush(&rig.stage, &request(2, true));
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ticks: Vec<Tick> = (0..POISON_TRIES as u64)
        .map(|i| rig.stage.tick(t0 + WAIT + i).unwrap())
        .collect();
    std::panic::set_hook(prev);
    assert!(ticks[..ticks.len() - 1]
        .iter()
        .all(|t| t.poisoned && t.moved == 0));
    assert_eq!(ticks.last().unwrap().moved, 5, "{ticks:?}");
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 a", "1 c", "2 started", "2 db", "2 finished"]
    );
    assert_eq!(rig.stage.metrics().quarantined_records.load(Relaxed), 1);
    assert_eq!(rig.stage.table_sizes().1, 0, "trace 1 fully swept");
    let q = std::fs::read_to_string(dir.path().join("main/waiting").join(QUARANTINE_FILE)).unwrap();
    let v: Value = serde_json::from_str(q.lines().next().unwrap()).unwrap();
    assert_eq!(v["trace_id"], tid(1));
    assert_eq!(v["panic"], "mapper bug");
}

/// A batch of kept lines split in halves (too large for the main queue's budget at
/// once) whose second half hits a full queue: on the retry the first half is not
/// appended again.
#[test]
fn a_split_append_is_not_repeated_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = manual(1000);
    let t0 = clock.wall();
    let pad = "p".repeat(200);
    let mapper: Mapper = Box::new(move |tag, event, out| {
        msg_mapper()(tag, event, out)?;
        out.extend_from_slice(pad.as_bytes());
        Ok(())
    });
    let rig = open_with(dir.path(), c, Policy::default_policy(), small(4096), mapper);
    let lines: Vec<Value> = (0..30)
        .map(|i| json!({"trace_id": tid(5), "level": "error", "msg": format!("5.{i:02}")}))
        .collect();
    flush(&rig.stage, &lines);
    let mut got = Vec::new();
    for i in 0..20 {
        let t = rig.stage.tick(t0 + WAIT + i).unwrap();
        got.extend(drain_main(&rig.main));
        if !t.blocked && rig.stage.waiting_gauges().records == 0 {
            break;
        }
    }
    let want: Vec<String> = (0..30)
        .map(|i| format!("5.{i:02}{}", "p".repeat(200)))
        .collect();
    assert_eq!(got, want, "each line once, in order");
}

/// A failed chunk's lines never count: the trace is decided over what was stored.
#[test]
fn a_line_whose_chunk_was_not_stored_does_not_decide_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(16384);
    // Holds off: a held trace would wait for the refused chunk (tested below); here
    // the point is that the refused line's facts never count.
    c.table.hold_max_ns = 0;
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(
        &rig.stage,
        &[json!({"trace_id": tid(8), "level": "info", "msg": "8 info"})],
    );
    let mut i = 0u32;
    while try_flush(
        &rig.stage,
        &[json!({"trace_id": tid(8), "msg": format!("8 filler {i}")})],
    )
    .is_ok()
    {
        i += 1;
    }
    let e = try_flush(
        &rig.stage,
        &[json!({"trace_id": tid(8), "level": "error", "msg": "8 boom"})],
    );
    assert!(matches!(
        e,
        Err(IntakeError::Spool(lockstep_spool::SpoolError::Full { .. }))
    ));
    let t = rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!(
        (t.decided, t.dropped, t.moved),
        (1, i as usize + 1, 0),
        "{t:?}"
    );
}

/// `decision_wait` runs on a monotonic clock: a step of the wall clock forward decides
/// nothing early, a step back does not stall the decider thread.
#[test]
fn a_wall_clock_step_neither_rushes_nor_stalls_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.table.decision_wait_ns = 200_000_000;
    let w0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(&rig.stage, &request(1, true));
    clock.set_wall(w0 + 3_600_000_000_000); // an hour forward
    assert_eq!(rig.stage.tick(rig.stage.now_ns()).unwrap().decided, 0);
    clock.set_wall(w0 - 3_600_000_000_000); // an hour back
    rig.stage
        .start("decide".into(), Box::new(|| Box::new(())))
        .unwrap();
    clock.advance(200_000_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rig.moved.load(Relaxed) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(rig.moved.load(Relaxed), 3);
    rig.stage.stop();
}

/// A graceful stop decides what comes due before the deadline and sweeps it (the
/// drain then sends it); what is not due by then stays, and is reported.
#[test]
fn a_graceful_stop_delivers_what_comes_due_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(1000);
    c.table.decision_wait_ns = 300_000_000;
    let rig = open(dir.path(), c, Policy::default_policy());
    rig.stage
        .start("decide".into(), Box::new(|| Box::new(())))
        .unwrap();
    flush(&rig.stage, &request(1, true));
    flush(&rig.stage, &request(2, false));
    let left = rig.stage.stop_by(Some(rig.stage.now_ns() + 5_000_000_000));
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished"]
    );
    assert_eq!(left, Left::default());
    // a deadline before the traces are due: they stay for the next start
    let dir = tempfile::tempdir().unwrap();
    let rig = open(dir.path(), cfg(1000), Policy::default_policy());
    flush(&rig.stage, &request(3, true));
    rig.stage
        .start("decide".into(), Box::new(|| Box::new(())))
        .unwrap();
    let left = rig.stage.stop_by(Some(rig.stage.now_ns() + 50_000_000));
    assert_eq!((left.waiting_traces, left.records), (1, 3));
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

/// A trace with a line still being written (its flush has classified it but not yet
/// appended it) is not decided: deciding it then would judge it without that line (here
/// its error line) and the line would land after the decision.
#[test]
fn a_trace_is_not_decided_while_one_of_its_lines_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = manual(1000);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(
        &rig.stage,
        &[json!({"trace_id": tid(4), "level": "info", "msg": "4 a"})],
    );
    flush(&rig.stage, &request(5, false));
    let bytes = chunk(&[(
        json!({}),
        json!({"trace_id": tid(4), "level": "error", "msg": "4 b"}),
    )]);
    let mut intake = rig.stage.intake("t");
    for r in Chunk::new(&bytes).records() {
        assert!(intake.add(&r.unwrap().event));
    }
    // the flush is mid-append: trace 4 waits, trace 5 (due too) is decided
    let t = rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!((t.decided, t.moved), (1, 0), "{t:?}");
    assert_eq!(intake.commit().unwrap(), 1);
    let t = rig.stage.tick(t0 + WAIT + 1).unwrap();
    assert_eq!((t.decided, t.moved), (1, 2), "{t:?}");
    assert_eq!(main_entries(&rig.main), vec!["4 a", "4 b"]);
}

// ---- the decision feed -------------------------------------------------------------

fn id(i: u8) -> TraceId {
    [i; 16]
}

fn feed_cfg(source: DecisionSource) -> (StageConfig, Arc<ManualTime>) {
    let (mut c, clock) = manual(1000);
    c.source = source;
    (c, clock)
}

/// With `feed`, the sampler's report decides: a reported trace's lines go at once (no
/// need to wait out decision_wait), an unreported one is dropped at its time, whatever
/// its lines say.
#[test]
fn feed_a_reported_trace_goes_at_once_and_an_unreported_one_is_dropped_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = feed_cfg(DecisionSource::Feed);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(&rig.stage, &request(1, false)); // info only: a policy would drop it
    flush(&rig.stage, &request(2, true)); // an error: a policy would keep it
    assert_eq!(rig.stage.report_kept(&[id(1)]).unwrap(), 1);
    clock.advance(1_000_000);
    // long before decision_wait
    let t = rig.stage.tick(t0 + 1_000_000).unwrap();
    assert_eq!((t.decided, t.moved), (0, 3), "{t:?}");
    let t = rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!((t.decided, t.dropped), (1, 3), "{t:?}");
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished"]
    );
    assert_eq!(
        rig.stage.decided(),
        vec![(false, "not_reported".into(), 1), (true, "feed".into(), 1)]
    );
    assert_eq!(rig.stage.metrics().kept_by_feed.load(Relaxed), 1);
    let text = rig.stage.render_metrics("x", t0);
    assert!(
        text.contains("lockstep_loki_traces_kept_total{instance=\"x\",source=\"feed\"} 1\n"),
        "{text}"
    );
}

/// A report that comes before any line of its trace is remembered: the lines are kept
/// as they arrive.
#[test]
fn feed_a_report_before_the_lines_keeps_them_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = feed_cfg(DecisionSource::Feed);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    rig.stage.report_kept(&[id(3)]).unwrap();
    assert_eq!(rig.stage.reported_ids(), 1);
    assert_eq!(flush(&rig.stage, &request(3, false)), 3);
    let t = rig.stage.tick(t0 + 1).unwrap();
    assert_eq!((t.decided, t.moved), (0, 3), "{t:?}");
    assert_eq!(rig.stage.metrics().feed_ids_ahead.load(Relaxed), 1);
}

/// The report is durable before `report_kept` returns (the feed's 200): after a crash
/// right after it, the trace is still kept, whether its lines were waiting or not yet
/// there.
#[test]
fn feed_a_report_survives_a_crash_right_after_it_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = feed_cfg(DecisionSource::Feed);
    let t0 = clock.wall();
    {
        let rig = open(dir.path(), c.clone(), Policy::default_policy());
        flush(&rig.stage, &request(4, false));
        rig.stage.report_kept(&[id(4), id(5)]).unwrap();
        // the process dies before any tick
    }
    let rig = open(dir.path(), c, Policy::default_policy());
    assert_eq!(rig.rec.reports, 2);
    assert_eq!(flush(&rig.stage, &request(5, false)), 3);
    rig.stage.tick(t0 + 1).unwrap();
    let got = main_entries(&rig.main);
    assert_eq!(
        got,
        vec![
            "4 started",
            "4 db",
            "4 finished",
            "5 started",
            "5 db",
            "5 finished"
        ]
    );
}

/// A report after its trace was dropped is counted (the operator raises
/// decision_wait); lines after it are kept.
#[test]
fn feed_a_late_report_is_counted_and_later_lines_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = feed_cfg(DecisionSource::Feed);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(&rig.stage, &request(6, true));
    rig.stage.tick(t0 + WAIT).unwrap();
    assert!(main_entries(&rig.main).is_empty());
    rig.stage.report_kept(&[id(6)]).unwrap();
    assert_eq!(rig.stage.metrics().feed_late_reports.load(Relaxed), 1);
    flush(&rig.stage, &[json!({"trace_id": tid(6), "msg": "6 late"})]);
    rig.stage.tick(t0 + WAIT + 1).unwrap();
    assert_eq!(main_entries(&rig.main), vec!["6 late"]);
}

/// A silent feed (the sampler down, or its exporter misrouted): past
/// `decision_feed_silence` the policy decides (or, without one, lines are kept) —
/// never dropped for want of a report; counted once per episode; recovery is automatic.
#[test]
fn feed_silence_falls_back_to_the_policy_once_per_episode() {
    for has_policy in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, clock) = feed_cfg(DecisionSource::Feed);
        c.feed_silence_ns = 2 * WAIT;
        c.has_policy = has_policy;
        let t0 = clock.wall();
        let rig = open(dir.path(), c, Policy::default_policy());
        // within the silence allowance: unreported means dropped
        flush(&rig.stage, &request(1, true));
        rig.stage.tick(t0 + WAIT).unwrap();
        clock.advance(2 * WAIT);
        flush(&rig.stage, &request(2, true));
        flush(&rig.stage, &request(3, false));
        rig.stage.tick(t0 + 3 * WAIT).unwrap();
        let m = rig.stage.metrics();
        assert_eq!(m.feed_silence_episodes.load(Relaxed), 1);
        let want: Vec<&str> = if has_policy {
            vec!["2 started", "2 db", "2 finished"]
        } else {
            vec![
                "2 started",
                "2 db",
                "2 finished",
                "3 started",
                "3 db",
                "3 finished",
            ]
        };
        assert_eq!(main_entries(&rig.main), want, "has_policy {has_policy}");
        // the feed is back: its reports decide again; a new silence is a new episode
        rig.stage.report_kept(&[]).unwrap();
        clock.advance(WAIT);
        flush(&rig.stage, &request(4, true));
        rig.stage.tick(t0 + 4 * WAIT).unwrap();
        assert_eq!(
            main_entries(&rig.main).len(),
            want.len(),
            "4 unreported: dropped"
        );
        assert_eq!(m.feed_silence_episodes.load(Relaxed), 1);
        clock.advance(3 * WAIT);
        flush(&rig.stage, &request(5, true));
        rig.stage.tick(t0 + 8 * WAIT).unwrap();
        assert_eq!(m.feed_silence_episodes.load(Relaxed), 2);
        assert_eq!(
            m.kept_by_fallback.load(Relaxed),
            if has_policy { 2 } else { 3 }
        );
    }
}

/// `feed_or_policy`: kept when either keeps it.
#[test]
fn feed_or_policy_keeps_what_either_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let (c, clock) = feed_cfg(DecisionSource::FeedOrPolicy);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(&rig.stage, &request(1, false)); // reported
    flush(&rig.stage, &request(2, true)); // the policy keeps it
    flush(&rig.stage, &request(3, false)); // neither
    rig.stage.report_kept(&[id(1)]).unwrap();
    rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!(
        main_entries(&rig.main),
        vec![
            "1 started",
            "1 db",
            "1 finished",
            "2 started",
            "2 db",
            "2 finished"
        ]
    );
    let m = rig.stage.metrics();
    assert_eq!(
        (m.kept_by_feed.load(Relaxed), m.kept_by_policy.load(Relaxed)),
        (1, 1)
    );
}

/// Past num_traces a trace is decided before its report could come: with the feed, the
/// fallback (the policy, or keep) decides it, not "not reported".
#[test]
fn feed_a_trace_decided_early_is_decided_by_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = feed_cfg(DecisionSource::Feed);
    c.table.num_traces = 2;
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    flush(&rig.stage, &request(1, true));
    flush(&rig.stage, &request(2, false));
    flush(&rig.stage, &request(3, false));
    flush(&rig.stage, &request(4, false));
    let t = rig.stage.tick(t0 + 1).unwrap();
    assert_eq!(t.decided, 2, "{t:?}");
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished"],
        "1 kept by the policy, 2 dropped by it"
    );
    let m = rig.stage.metrics();
    assert_eq!(m.kept_by_fallback.load(Relaxed), 1);
    assert_eq!(m.feed_silence_episodes.load(Relaxed), 0, "not a silence");
}

/// A trace whose wait overlapped a silence is decided by the fallback even when it comes
/// due after the feed reports again (found in the real-host drill: the last
/// decision_wait of every silent period was dropped as "not reported").
#[test]
fn feed_a_trace_that_waited_through_a_silence_is_decided_by_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = feed_cfg(DecisionSource::Feed);
    c.feed_silence_ns = 2 * WAIT;
    c.has_policy = false;
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    clock.advance(2 * WAIT + WAIT / 2); // silent since t0 + 2 WAIT
    flush(&rig.stage, &request(1, false)); // arrives during the silence
    clock.advance(WAIT / 4);
    rig.stage.report_kept(&[id(9)]).unwrap(); // the feed is back (another trace)
    clock.advance(WAIT / 4);
    flush(&rig.stage, &request(2, false)); // arrives after the silence
    let t = rig.stage.tick(t0 + 3 * WAIT + WAIT / 2).unwrap();
    assert_eq!(t.decided, 1, "{t:?}");
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished"],
        "kept by the fallback (no policy: keep)"
    );
    let t = rig.stage.tick(t0 + 4 * WAIT).unwrap();
    assert_eq!(
        (t.decided, t.dropped),
        (1, 3),
        "2 waited with the feed alive: not reported"
    );
    assert_eq!(rig.stage.metrics().kept_by_fallback.load(Relaxed), 1);
}

/// A chunk that could never fit beside the decision reserve (a small spool_max_bytes,
/// a large Fluent Bit chunk) is taken into the reserve instead of being answered retry
/// forever (found by the real-host drill: stuck in Fluent Bit's buffer, the waiting
/// queue empty).
#[test]
fn a_chunk_larger_than_the_room_beside_the_reserve_is_still_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(64 << 10);
    let t0 = clock.wall();
    let rig = open(dir.path(), c, Policy::default_policy());
    assert_eq!(rig.stage.reserve_bytes(), 32 << 10);
    let pad = "p".repeat(400);
    let lines: Vec<Value> = (0..100)
        .map(|i| json!({"trace_id": tid(3), "level": "error", "msg": format!("3.{i}"), "pad": pad}))
        .collect();
    assert_eq!(
        try_flush(&rig.stage, &lines).unwrap(),
        100,
        "about 45 KB: over 64 K - 32 K"
    );
    rig.stage.tick(t0 + WAIT).unwrap();
    assert_eq!(main_entries(&rig.main).len(), 100);
}

/// `n` lines of traces of their own (ids from `first`), info, ~450 bytes each as waiting
/// records: dropped by the default policy.
fn fillers(first: u16, n: u16) -> Vec<Value> {
    let pad = "p".repeat(400);
    (first..first + n)
        .map(|i| json!({"trace_id": format!("{i:032x}"), "level": "info", "msg": format!("f{i}"), "pad": pad}))
        .collect()
}

/// Under back-pressure the stage itself holds back the rest of a trace: its first lines
/// were taken, the chunk with its deciding line was answered retry (the waiting queue
/// full), and Fluent Bit offers that chunk again later. The trace is held (not decided
/// on time without it); its lines at the head of the waiting queue move to the tail so
/// the lines behind them are swept and free the room the refused chunk needs; the
/// chunk is taken when offered again, and the trace is kept whole.
#[test]
fn a_trace_whose_rest_is_in_a_refused_chunk_is_decided_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(64 << 10);
    let rig = open(dir.path(), c, Policy::default_policy());
    let r1 = request(1, true);
    let mut a = r1[..2].to_vec();
    a.extend(fillers(100, 50));
    assert_eq!(
        try_flush(&rig.stage, &a).unwrap(),
        52,
        "about 23 KB of 32 KB"
    );
    let mut b = vec![r1[2].clone()];
    b.extend(fillers(200, 25));
    let b = bodies_chunk(&b);
    let e = try_flush_bytes(&rig.stage, &b).unwrap_err();
    assert!(
        matches!(
            e,
            IntakeError::Spool(lockstep_spool::SpoolError::Full { .. })
        ),
        "{e}"
    );
    let ((chunks, traces), _) = rig.stage.holds();
    assert_eq!(
        (chunks, traces),
        (1, 26),
        "the refused chunk holds its 26 traces"
    );

    clock.advance(WAIT + 1);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(
        t.decided, 50,
        "the fillers are due and decided; trace 1 is held: {t:?}"
    );
    assert_eq!(t.dropped, 50, "and swept past trace 1's lines: {t:?}");
    assert_eq!(rig.stage.metrics().lines_requeued.load(Relaxed), 2);
    assert!(main_entries(&rig.main).is_empty());

    // Fluent Bit offers the same chunk again: there is room now
    clock.advance(2_000_000_000);
    assert_eq!(try_flush_bytes(&rig.stage, &b).unwrap(), 26);
    let ((chunks, traces), hc) = rig.stage.holds();
    assert_eq!(
        (chunks, traces, hc.chunks_refused, hc.chunks_taken),
        (0, 0, 1, 1)
    );
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(
        t.decided, 1,
        "trace 1, due since long, over its three lines: {t:?}"
    );
    assert_eq!(
        main_entries(&rig.main),
        vec!["1 started", "1 db", "1 finished"]
    );
    assert_eq!(
        rig.stage.metrics().late_followed_dropped.load(Relaxed),
        0,
        "no line followed a decision made without it"
    );
}

/// A refused chunk that Fluent Bit does not offer again (it gave up: `Retry_Limit`)
/// holds its traces `hold_max` at most, counted.
#[test]
fn a_hold_ends_after_hold_max() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.table.max_pinned = 1;
    c.table.hold_max_ns = 3 * WAIT;
    let rig = open_with(
        dir.path(),
        c,
        Policy::default_policy(),
        small(8192),
        msg_mapper(),
    );
    fill(&rig.main);
    let r2 = request(2, true);
    flush(&rig.stage, &request(1, true));
    clock.advance(WAIT / 2);
    flush(&rig.stage, &r2[..2]);
    clock.advance(WAIT / 2);
    rig.stage.tick(rig.stage.now_ns()).unwrap();
    // trace 1 is pinned (the main queue is full): a chunk with trace 2's last line and
    // a new trace 3 is refused
    let refused = bodies_chunk(&[r2[2].clone(), json!({"trace_id": tid(3), "msg": "3"})]);
    assert!(matches!(
        try_flush_bytes(&rig.stage, &refused),
        Err(IntakeError::Busy { pinned: 1 })
    ));
    assert_eq!(rig.stage.holds().0, (1, 2));
    drain_main(&rig.main);
    clock.advance(WAIT);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(t.decided, 0, "trace 2 is due but held: {t:?}");
    clock.advance(2 * WAIT);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(
        t.decided, 1,
        "hold_max passed: trace 2 is decided without it: {t:?}"
    );
    let (held, hc) = rig.stage.holds();
    assert_eq!((held, hc.chunks_expired, hc.chunks_taken), ((0, 0), 1, 0));
}

/// A `kill -9` with a trace held: after the restart its lines wait again (from the
/// start, not from their arrival long ago), Fluent Bit offers the refused chunk again
/// from its buffer, and the trace is decided with it.
#[test]
fn after_a_restart_a_trace_waits_for_the_chunks_fluent_bit_offers_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.table.max_pinned = 1;
    let mk = |c: &StageConfig| {
        open_with(
            dir.path(),
            c.clone(),
            Policy::default_policy(),
            small(8192),
            msg_mapper(),
        )
    };
    let r2 = request(2, true);
    let refused = bodies_chunk(&[r2[2].clone(), json!({"trace_id": tid(3), "msg": "3"})]);
    {
        let rig = mk(&c);
        fill(&rig.main);
        flush(&rig.stage, &request(1, true));
        clock.advance(WAIT / 2);
        flush(&rig.stage, &r2[..2]);
        clock.advance(WAIT / 2);
        rig.stage.tick(rig.stage.now_ns()).unwrap();
        // trace 1 pinned: the chunk with trace 2's rest and a new trace is refused
        assert!(try_flush_bytes(&rig.stage, &refused).is_err());
        assert_eq!(rig.stage.holds().0, (1, 2));
        drop(rig); // killed
    }
    clock.advance(10 * WAIT);
    c.time = TimeSource::Manual(clock.clone());
    let rig = mk(&c);
    assert_eq!((rig.rec.waiting_traces, rig.rec.pinned_traces), (1, 1));
    drain_main(&rig.main);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(t.decided, 0, "trace 2 waits from the restart: {t:?}");
    clock.advance(1_000_000_000);
    assert_eq!(try_flush_bytes(&rig.stage, &refused).unwrap(), 2);
    clock.advance(WAIT);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(
        (t.decided, t.dropped),
        (2, 1),
        "trace 2 kept, trace 3 dropped: {t:?}"
    );
    let got = main_entries(&rig.main);
    assert!(
        got.ends_with(&["2 started".into(), "2 db".into(), "2 finished".into()]),
        "{got:?}"
    );
}

/// A held trace whose lines cannot be moved out of the way (the waiting queue is full
/// to its last byte) is decided without its rest: room comes before completeness,
/// counted.
#[test]
fn a_held_trace_that_fills_the_waiting_queue_is_decided_without_its_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(64 << 10);
    c.decision_reserve = Some(0);
    let rig = open(dir.path(), c, Policy::default_policy());
    let pad = "p".repeat(400);
    let line =
        |i: u32| json!({"trace_id": tid(1), "level": "info", "msg": format!("1.{i}"), "pad": pad});
    let mut i = 0;
    while try_flush(&rig.stage, &[line(i)]).is_ok() {
        i += 1;
    }
    assert!(i > 100, "{i} lines of trace 1 fill the queue");
    let rest = bodies_chunk(&[
        json!({"trace_id": tid(1), "level": "error", "msg": "1.end", "pad": "p".repeat(600)}),
    ]);
    assert!(try_flush_bytes(&rig.stage, &rest).is_err());
    clock.advance(WAIT + 1);
    rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(rig.stage.holds().1.traces_forced, 1);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!((t.decided, t.dropped), (1, i as usize), "{t:?}");
}

/// A refused chunk offered again holds the rest of held traces, whose lines take the
/// room it needs: it may use half the room kept for decisions, where a new chunk of the
/// same size may not.
#[test]
fn a_chunk_offered_again_may_use_half_the_decision_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _clock) = manual(1000);
    c.spool = small(64 << 10);
    let rig = open(dir.path(), c, Policy::default_policy());
    assert_eq!(rig.stage.reserve_bytes(), 32 << 10);
    let r1 = request(1, true);
    let mut a = r1[..2].to_vec();
    a.extend(fillers(100, 50));
    try_flush(&rig.stage, &a).unwrap();
    let mut b = vec![r1[2].clone()];
    b.extend(fillers(200, 25));
    let b = bodies_chunk(&b);
    assert!(
        try_flush_bytes(&rig.stage, &b).is_err(),
        "about 11 KB, 9 KB free"
    );
    let new = bodies_chunk(&fillers(300, 26));
    assert!(
        try_flush_bytes(&rig.stage, &new).is_err(),
        "a new chunk of that size is refused"
    );
    assert_eq!(
        try_flush_bytes(&rig.stage, &b).unwrap(),
        26,
        "offered again: taken"
    );
    assert_eq!(
        rig.stage.holds().0,
        (1, 26),
        "the new chunk's traces stay held"
    );
}

/// Held lines are moved to the tail only when what follows them can be swept: moving
/// them in front of a trace still waiting would free nothing (and be done again and
/// again, every tick).
#[test]
fn held_lines_move_only_when_what_follows_can_be_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, clock) = manual(1000);
    c.spool = small(64 << 10);
    let rig = open(dir.path(), c, Policy::default_policy());
    let r1 = request(1, true);
    try_flush(&rig.stage, &r1[..2]).unwrap();
    clock.advance(WAIT / 2);
    let mut a = request(2, false);
    a.extend(fillers(100, 50));
    try_flush(&rig.stage, &a).unwrap();
    let mut b = vec![r1[2].clone()];
    b.extend(fillers(200, 25));
    assert!(
        try_flush_bytes(&rig.stage, &bodies_chunk(&b)).is_err(),
        "~11 KB, 9 KB free"
    );
    clock.advance(WAIT / 2 + 1);
    for _ in 0..3 {
        let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
        assert_eq!(t.decided, 0, "trace 1 held, trace 2 not due: {t:?}");
    }
    assert_eq!(rig.stage.metrics().lines_requeued.load(Relaxed), 0);
    clock.advance(WAIT / 2);
    let t = rig.stage.tick(rig.stage.now_ns()).unwrap();
    assert_eq!(
        (t.decided, t.dropped),
        (51, 53),
        "trace 2 and the fillers swept past trace 1: {t:?}"
    );
    assert_eq!(rig.stage.metrics().lines_requeued.load(Relaxed), 2);
}
