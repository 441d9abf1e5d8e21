//! End to end, OTLP logs (issue 27): a real OTLP client (the OpenTelemetry Python SDK's
//! OTLP/HTTP log exporter, `scripts/otlp_log_client.py`) → the emulated Fluent Bit 5.1.1
//! `opentelemetry` input (`lockstep_hosts::otlp_logs`) → the real `lockstep_out_loki.so`
//! in the proxy host → the Loki-compatible receiver. What is stored must be what Loki's
//! own OTLP ingestion stores for the same records: the body as the line, the default
//! resource attributes as labels, everything else as structured metadata under Loki's
//! names. The expectations below are written out by hand from the client's records and
//! Loki's rules (`crates/lockstep-map/src/otlp.rs`), with sampling off and on.
//!
//! Without the Python SDK these tests say so and pass, unless `LOCKSTEP_REQUIRE_OTEL=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lockstep_harness::artifacts::build_cdylib;
use lockstep_hosts::loki_receiver::LokiReceiver;
use lockstep_hosts::otlp_logs::{OtlpLogsInput, TAG};
use lockstep_hosts::proxy::{FlushCode, HostOptions, ProxyHost};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn have_otel() -> bool {
    lockstep_harness::have_otel(
        "opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http._log_exporter",
    )
}

/// The chunks Fluent Bit's input would hand the output for the client's records.
fn client_chunks() -> Vec<Vec<u8>> {
    let input = OtlpLogsInput::start();
    let out = Command::new("python3")
        .arg(root().join("scripts/otlp_log_client.py"))
        .arg(input.url())
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "export SUCCESS\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chunks = input.take_chunks();
    assert!(!chunks.is_empty());
    chunks
}

type Entry = (BTreeMap<String, String>, String, BTreeMap<String, String>);

/// Every stored entry: (labels, line, structured metadata), by line.
fn stored(rx: &LokiReceiver) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let tenants = rx.tenants();
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    for (labels, entries) in rx.entries(&tenants[0]) {
        for e in entries {
            let md: BTreeMap<String, String> = e.structured_metadata.iter().cloned().collect();
            assert_eq!(md.len(), e.structured_metadata.len(), "a name twice: {e:?}");
            out.insert(e.line.clone(), (labels.clone(), e.line.clone(), md));
        }
    }
    out
}

fn kv(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const T0: u64 = 1_700_000_000_123_456_789;
const TRACE: &str = "5b8aa5a2d2c872e8321cf37308d69df2";
const SPAN: &str = "051581bf3cb55c13";

/// What Loki's OTLP ingestion stores for the client's six records.
fn expected() -> BTreeMap<String, Entry> {
    let labels = kv(&[
        ("deployment_environment", "prod"),
        ("k8s_pod_name", "pod-1"),
        ("service_name", "checkout"),
        ("service_namespace", "shop"),
    ]);
    let common = |extra: &[(&str, String)]| {
        let mut m = kv(&[
            ("host_name", "edge-7"),
            ("team", "payments"),
            ("scope_attr", "true"),
            ("scope_kind", "unit"),
            ("scope_name", "lockstep.test"),
            ("scope_version", "1.2.3"),
            ("flags", "1"),
            ("trace_id", TRACE),
            ("span_id", SPAN),
        ]);
        for (k, v) in extra {
            m.insert(k.to_string(), v.clone());
        }
        m
    };
    let obs = |d: u64| T0 + d;
    let mut e = BTreeMap::new();
    let mut add = |line: &str, md: BTreeMap<String, String>| {
        e.insert(line.to_string(), (labels.clone(), line.to_string(), md));
    };
    add(
        "payment failed",
        common(&[
            ("http_status_code", "500".into()),
            // Fluent Bit's protobuf path cuts integers to 32 bits (facts §2)
            ("big", "705032704".into()),
            ("ratio", "0.25".into()),
            ("retry", "true".into()),
            ("tags", r#"["a","b"]"#.into()),
            ("user_id", "u-1".into()),
            ("user_tier", "2".into()),
            ("observed_timestamp", obs(1_000).to_string()),
            ("severity_number", "17".into()),
            ("severity_text", "ERROR".into()),
        ]),
    );
    add(
        "number only",
        common(&[
            ("observed_timestamp", obs(1_001_000).to_string()),
            ("severity_number", "9".into()),
        ]),
    );
    add(
        "text only",
        common(&[
            ("observed_timestamp", obs(2_001_000).to_string()),
            ("severity_text", "WARN".into()),
        ]),
    );
    let mut no_sev = common(&[("observed_timestamp", obs(3_001_000).to_string())]);
    no_sev.insert("span_id".into(), "1111111111111111".into());
    add("no severity", no_sev);
    add(
        r#"{"inner":{"k":"v"},"items":["x","y"],"msg":"structured","n":7,"ok":false}"#,
        common(&[
            ("observed_timestamp", obs(4_001_000).to_string()),
            ("severity_number", "5".into()),
            ("severity_text", "DEBUG".into()),
            ("event_name", "cart.checked".into()),
        ]),
    );
    // no time of its own: no observed_timestamp (Loki adds it only when both are set)
    add(
        "unset timestamp",
        common(&[("severity_number", "13".into())]),
    );
    e
}

fn run(extra: &[(&str, &str)]) -> BTreeMap<String, Entry> {
    let chunks = client_chunks();
    let rx = LokiReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("q").display().to_string();
    let url = rx.url();
    let mut props = vec![
        ("match", "*"),
        ("url", url.as_str()),
        ("spool_dir", spool.as_str()),
        ("linger", "20ms"),
        // the client's records are from 2023: not "too old" here
        ("too_old_age", "87600h"),
    ];
    props.extend_from_slice(extra);
    let so = build_cdylib("out-loki").unwrap();
    let mut host = ProxyHost::load(so, HostOptions::default()).unwrap();
    host.add_output("lockstep_loki", &props).unwrap();
    host.start().unwrap();
    for c in &chunks {
        assert_eq!(host.flush(0, TAG, c).unwrap().code, FlushCode::Ok);
    }
    assert!(
        rx.wait_for(6, Duration::from_secs(20)),
        "{} stored",
        rx.total_stored()
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(host);
    stored(&rx)
}

#[test]
fn otlp_logs_are_stored_as_loki_s_otlp_ingestion_stores_them() {
    if !have_otel() {
        return;
    }
    assert_eq!(run(&[]), expected());
}

#[test]
fn otlp_logs_sampled_by_trace_keep_their_resource_and_scope() {
    if !have_otel() {
        return;
    }
    // The lines wait on disk with their group (resource, scope) and are mapped when their
    // trace is kept (the error line keeps it).
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, lockstep_policy::DEFAULT_POLICY_YAML).unwrap();
    let policy = policy.display().to_string();
    assert_eq!(
        run(&[("policy_file", policy.as_str()), ("decision_wait", "200ms")]),
        expected()
    );
}
