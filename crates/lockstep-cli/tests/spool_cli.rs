//! `lockstep spool inspect|peek` on a live spool (owned and locked by this process).

use std::process::Command;

use lockstep_spool::{Spool, SpoolConfig};

fn lockstep(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_and_peek_a_live_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let cfg = SpoolConfig {
        segment_bytes: 1024,
        ..SpoolConfig::default()
    };
    let spool = Spool::open(&dir, cfg).unwrap();
    let hour_ago = lockstep_spool::now_ns() - 3_600_000_000_000;
    for b in 0..30u64 {
        let recs: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("{{\"line\":\"batch {b} record {i}\"}}").into_bytes())
            .collect();
        spool
            .append_at(hour_ago + b * 1_000_000_000, &recs)
            .unwrap();
    }
    let first = spool.peek(10, 1 << 20).unwrap();
    spool.ack(&first).unwrap();
    let d = dir.to_str().unwrap();

    // JSON gauges, read while the spool is open and locked by this process.
    let (code, out, err) = lockstep(&["spool", "inspect", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let g = spool.gauges();
    assert_eq!(v["records"], 80);
    assert_eq!(v["records"], g.records);
    assert_eq!(v["bytes"], g.bytes);
    assert_eq!(v["segments"], g.segments);
    assert_eq!(v["disk_bytes"], g.disk_bytes);
    assert_eq!(v["acked_next_seq"], 11);
    assert_eq!(v["corrupt_records"], 0);
    let age_ms = v["oldest_age_ms"].as_u64().unwrap();
    // Record 10 (batch 3) was stamped an hour ago plus 3 s.
    assert!((3_590_000..3_600_000).contains(&age_ms), "{age_ms}");

    // Human-readable gauges.
    let (code, out, _) = lockstep(&["spool", "inspect", d]);
    assert_eq!(code, 0);
    assert!(out.contains("records queued   80"), "{out}");
    assert!(out.contains("oldest record    59m5"), "{out}");

    // Next records, oldest first, not consumed.
    let (code, out, _) = lockstep(&["spool", "peek", d, "-n", "2"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("seq 11 |") && lines[0].contains("batch 3 record 1"),
        "{out}"
    );
    assert!(lines[1].contains("batch 3 record 2"), "{out}");
    let (_, out, _) = lockstep(&["spool", "peek", d, "--count", "1", "--json"]);
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["seq"], 11);
    assert_eq!(r["payload"], "{\"line\":\"batch 3 record 1\"}");
    assert_eq!(spool.gauges().records, 80);

    // The CLI wrote nothing: the owner keeps working.
    spool.append(&[b"later".to_vec()]).unwrap();
    assert_eq!(spool.peek(100, 1 << 20).unwrap().len(), 81);
}

#[test]
fn missing_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("nope");
    let (code, _, err) = lockstep(&["spool", "inspect", d.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn peek_shows_the_loki_entry_of_a_lockstep_loki_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let spool = Spool::open(&dir, SpoolConfig::default()).unwrap();
    let e = lockstep_ship::SpooledEntry {
        tenant: Some("edge".into()),
        labels: vec![("app".into(), "api".into()), ("job".into(), "x".into())],
        ts_ns: 1_795_000_000_000_000_000,
        line: "{\"msg\":\"hello\"}".into(),
        structured_metadata: vec![("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into())],
    };
    spool.append(&[e.encode()]).unwrap();
    let d = dir.to_str().unwrap();
    let (code, out, err) = lockstep(&["spool", "peek", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["entry"]["tenant"], "edge");
    assert_eq!(r["entry"]["labels"]["app"], "api");
    assert_eq!(r["entry"]["line"], "{\"msg\":\"hello\"}");
    assert_eq!(
        r["entry"]["structured_metadata"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let (_, out, _) = lockstep(&["spool", "peek", d]);
    assert!(
        out.contains(r#"{"app":"api","job":"x"}"#) && out.contains("hello"),
        "{out}"
    );
}

#[test]
fn inspect_and_peek_show_the_waiting_queue_of_sampling_by_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let _main = Spool::open(&dir, SpoolConfig::default()).unwrap();
    let waiting = Spool::open(dir.join("waiting"), SpoolConfig::default()).unwrap();
    // One Fluent Bit event `[[EventTime, {}], {"msg": "started"}]`.
    let mut event = vec![0x92, 0x92, 0xd7, 0x00];
    event.extend_from_slice(&1_795_000_000u32.to_be_bytes());
    event.extend_from_slice(&0u32.to_be_bytes());
    event.push(0x80);
    event.extend_from_slice(&[0x81, 0xa3, b'm', b's', b'g', 0xa7]);
    event.extend_from_slice(b"started");
    let trace = [0xab; 16];
    let mut facts = lockstep_policy::TraceFacts::new(Some(trace));
    let p = lockstep_policy::Policy::default_policy();
    p.observe(
        p.extractor().extract_json(b"{\"level\":\"info\"}").unwrap(),
        &mut facts,
    );
    let mut pending = Vec::new();
    lockstep_tail::record::write_pending(&mut pending, 1, &trace, &facts, b"app.api", &[], &event);
    let mut dec = Vec::new();
    lockstep_tail::record::write_decisions(&mut dec, &[(trace, true)]);
    waiting.append(&[pending, dec]).unwrap();
    let d = dir.to_str().unwrap();
    let (code, out, err) = lockstep(&["spool", "inspect", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("waiting queue"), "{out}");
    assert!(!out.contains("quarantined"), "{out}");
    // lines the decider set aside (their mapping kept panicking) are counted
    std::fs::write(
        dir.join("waiting").join(lockstep_tail::QUARANTINE_FILE),
        "{\"seq\":1}\n{\"seq\":2}\n",
    )
    .unwrap();
    let (_, out, _) = lockstep(&["spool", "inspect", d]);
    assert!(
        out.contains("quarantined      2 records set aside"),
        "{out}"
    );
    let (_, out, _) = lockstep(&["spool", "inspect", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["waiting"]["quarantined"], 2);
    let w = dir.join("waiting");
    let (code, out, err) = lockstep(&["spool", "peek", w.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["waiting"]["waiting"], "pending");
    assert_eq!(lines[0]["waiting"]["trace_id"], "ab".repeat(16));
    assert_eq!(lines[0]["waiting"]["line"]["tag"], "app.api");
    assert_eq!(lines[0]["waiting"]["line"]["body"]["msg"], "started");
    assert_eq!(lines[1]["waiting"]["decisions"][0]["keep"], true);
}
