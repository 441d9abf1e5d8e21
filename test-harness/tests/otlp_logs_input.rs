//! End to end, the emulated Fluent Bit 5.1.1 `opentelemetry` input
//! (`lockstep_hosts::otlp_logs`): a real OTLP exporter nobody here wrote (the
//! OpenTelemetry Python SDK's OTLP/HTTP log exporter, `scripts/otlp_log_client.py`)
//! sends a fixed list of records; the chunks the input produces decode, with the chunk
//! decoder output plugins use, to the records, groups and `otlp` metadata Fluent Bit
//! would hand an output.
//!
//! The Python packages come from PyPI (`.ci/run` installs them); without them these
//! tests say so and pass, unless `LOCKSTEP_REQUIRE_OTEL=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_hosts::otlp_logs::chunk_decoder::{Chunk, EventKind, MapView, Record, ValueRef};
use lockstep_hosts::otlp_logs::{OtlpLogsInput, SUCCESS_STATUS};

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/otlp_log_client.py")
}

fn have_otel() -> bool {
    lockstep_harness::have_otel(
        "opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http._log_exporter",
    )
}

/// Runs the Python client against `input`; the chunks it produced, concatenated (as
/// Fluent Bit would flush them together).
fn export(input: &OtlpLogsInput, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(client_script())
        .arg(input.url())
        .args(extra)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        stdout,
        "export SUCCESS\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    for a in input.answered() {
        assert_eq!(a.status, SUCCESS_STATUS, "{a:?}");
    }
    input.take_chunks().concat()
}

fn keys(m: MapView<'_>) -> Vec<String> {
    m.iter()
        .map(|(k, _)| k.as_str().expect("string key").to_string())
        .collect()
}

fn s<'a>(m: MapView<'a>, k: &str) -> &'a str {
    m.get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{k} is not a string in {m:?}"))
}

fn map<'a>(m: MapView<'a>, k: &str) -> MapView<'a> {
    m.get(k)
        .and_then(|v| v.as_map())
        .unwrap_or_else(|| panic!("{k} is not a map in {m:?}"))
}

fn strs(v: ValueRef<'_>) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e.as_str().expect("string").to_string())
        .collect()
}

fn otlp<'a>(r: &Record<'a>) -> MapView<'a> {
    map(r.event.metadata, "otlp")
}

const T0: u64 = 1_700_000_000_123_456_789;
const TRACE_ID: [u8; 16] = [
    0x5b, 0x8a, 0xa5, 0xa2, 0xd2, 0xc8, 0x72, 0xe8, 0x32, 0x1c, 0xf3, 0x73, 0x08, 0xd6, 0x9d, 0xf2,
];
const SPAN_ID: [u8; 8] = [0x05, 0x15, 0x81, 0xbf, 0x3c, 0xb5, 0x5c, 0x13];

fn ts(ns: u64) -> (u64, u32) {
    (ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

fn check(chunk: &[u8]) {
    let c = Chunk::new(chunk);
    c.validate().expect("the chunk decodes");
    let recs: Vec<Record<'_>> = c.records().map(|r| r.expect("record")).collect();
    assert_eq!(recs.len(), 6, "{recs:#?}");
    // Every group is one (resource, scope) with the SDK's single resource and logger.
    for e in c.events() {
        let e = e.unwrap();
        if e.kind != EventKind::GroupStart {
            continue;
        }
        assert_eq!(keys(e.metadata), ["schema", "resource_id", "scope_id"]);
        assert_eq!(s(e.metadata, "schema"), "otlp");
        assert_eq!(e.metadata.get("resource_id"), Some(ValueRef::UInt(0)));
        assert_eq!(e.metadata.get("scope_id"), Some(ValueRef::UInt(0)));
        assert_eq!(keys(e.body), ["resource", "scope"]);
        let res = map(e.body, "resource");
        assert_eq!(keys(res), ["attributes", "schema_url"]);
        assert_eq!(s(res, "schema_url"), "");
        let ra = map(res, "attributes");
        let pairs: Vec<(String, String)> = ra
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
            .collect();
        let want = [
            ("service.name", "checkout"),
            ("service.namespace", "shop"),
            ("deployment.environment", "prod"),
            ("k8s.pod.name", "pod-1"),
            ("host.name", "edge-7"),
            ("team", "payments"),
        ];
        assert_eq!(
            pairs,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
        let scope = map(e.body, "scope");
        assert_eq!(keys(scope), ["name", "version", "attributes"]);
        assert_eq!(s(scope, "name"), "lockstep.test");
        assert_eq!(s(scope, "version"), "1.2.3");
        let sa = map(scope, "attributes");
        assert_eq!(sa.get("scope.attr"), Some(ValueRef::Bool(true)));
        assert_eq!(s(sa, "scope.kind"), "unit");
    }
    for r in &recs {
        assert!(r.group.is_some(), "every record is in a group");
        let o = otlp(r);
        assert_eq!(o.get("trace_id"), Some(ValueRef::Bin(&TRACE_ID)));
        assert_eq!(o.get("trace_flags"), Some(ValueRef::UInt(1)));
    }

    // 0: string body, both severities, typed attributes
    let r = &recs[0];
    assert_eq!(keys(r.event.body), ["log"]);
    assert_eq!(s(r.event.body, "log"), "payment failed");
    assert_eq!(
        (r.event.timestamp.sec, r.event.timestamp.nsec),
        ts(T0),
        "time_unix_nano"
    );
    let o = otlp(r);
    assert_eq!(
        keys(o),
        [
            "observed_timestamp",
            "timestamp",
            "severity_number",
            "severity_text",
            "attributes",
            "trace_id",
            "span_id",
            "trace_flags"
        ]
    );
    assert_eq!(
        o.get("observed_timestamp"),
        Some(ValueRef::UInt(T0 + 1_000))
    );
    assert_eq!(o.get("timestamp"), Some(ValueRef::UInt(T0)));
    assert_eq!(o.get("severity_number"), Some(ValueRef::UInt(17)));
    assert_eq!(s(o, "severity_text"), "ERROR");
    assert_eq!(o.get("span_id"), Some(ValueRef::Bin(&SPAN_ID)));
    let a = map(o, "attributes");
    assert_eq!(
        keys(a),
        ["http.status_code", "big", "ratio", "retry", "tags", "user"]
    );
    assert_eq!(a.get("http.status_code"), Some(ValueRef::UInt(500)));
    assert_eq!(
        a.get("big"),
        Some(ValueRef::UInt(705_032_704)),
        "int AnyValues are truncated to int32"
    );
    assert_eq!(a.get("ratio"), Some(ValueRef::F64(0.25)));
    assert_eq!(a.get("retry"), Some(ValueRef::Bool(true)));
    assert_eq!(strs(a.get("tags").unwrap()), ["a", "b"]);
    let user = map(a, "user");
    assert_eq!(s(user, "id"), "u-1");
    assert_eq!(user.get("tier"), Some(ValueRef::UInt(2)));

    // 1: severity_number only
    let o = otlp(&recs[1]);
    assert_eq!(s(recs[1].event.body, "log"), "number only");
    assert_eq!(o.get("severity_number"), Some(ValueRef::UInt(9)));
    assert!(o.get("severity_text").is_none());
    assert!(o.get("attributes").is_none());

    // 2: severity_text only
    let o = otlp(&recs[2]);
    assert_eq!(s(recs[2].event.body, "log"), "text only");
    assert!(o.get("severity_number").is_none());
    assert_eq!(s(o, "severity_text"), "WARN");

    // 3: neither; its own span id
    let o = otlp(&recs[3]);
    assert_eq!(s(recs[3].event.body, "log"), "no severity");
    assert!(o.get("severity_number").is_none() && o.get("severity_text").is_none());
    assert_eq!(o.get("span_id"), Some(ValueRef::Bin(&[0x11; 8])));

    // 4: a map body is the record; event_name
    let r = &recs[4];
    assert_eq!(keys(r.event.body), ["msg", "n", "ok", "items", "inner"]);
    assert_eq!(s(r.event.body, "msg"), "structured");
    assert_eq!(r.event.body.get("n"), Some(ValueRef::UInt(7)));
    assert_eq!(r.event.body.get("ok"), Some(ValueRef::Bool(false)));
    assert_eq!(strs(r.event.body.get("items").unwrap()), ["x", "y"]);
    assert_eq!(s(map(r.event.body, "inner"), "k"), "v");
    let o = otlp(r);
    assert_eq!(o.get("severity_number"), Some(ValueRef::UInt(5)));
    assert_eq!(s(o, "severity_text"), "DEBUG");
    assert_eq!(s(o, "event_name"), "cart.checked");
    assert_eq!(keys(o).last().map(String::as_str), Some("event_name"));

    // 5: no time_unix_nano: the event time is the observed time, no `timestamp` key
    let r = &recs[5];
    assert_eq!(s(r.event.body, "log"), "unset timestamp");
    assert_eq!(
        (r.event.timestamp.sec, r.event.timestamp.nsec),
        ts(T0 + 5_000_000)
    );
    let o = otlp(r);
    assert!(o.get("timestamp").is_none());
    assert_eq!(
        o.get("observed_timestamp"),
        Some(ValueRef::UInt(T0 + 5_000_000))
    );
    assert_eq!(o.get("severity_number"), Some(ValueRef::UInt(13)));
}

#[test]
fn python_sdk_logs_become_fluent_bit_chunks() {
    if !have_otel() {
        return;
    }
    let input = OtlpLogsInput::start();
    let plain = export(&input, &[]);
    check(&plain);
    let gzip = export(&input, &["--gzip"]);
    check(&gzip);
    assert_eq!(
        plain, gzip,
        "fixed timestamps: the same records give the same bytes, compressed or not"
    );
}
