//! The test-output plugin (built on fluent-bit-plugin) driven through the
//! proxy host exactly as Fluent Bit 5.1 drives a `-e` plugin.

use std::path::{Path, PathBuf};

use lockstep_harness::artifacts::build_cdylib;
use lockstep_hosts::proxy::rmpv::Value;
use lockstep_hosts::proxy::{
    Call, ChunkBuilder, FlushCode, HostError, HostOptions, InstanceState, LogLine, LogSource,
    ProxyHost, Registration,
};
use serde_json::json;

fn plugin() -> PathBuf {
    build_cdylib("test-output").unwrap_or_else(|e| panic!("building test-output: {e}"))
}

fn load() -> ProxyHost {
    ProxyHost::load(plugin(), HostOptions::default()).expect("load")
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record lines are JSON"))
        .collect()
}

fn events_of<'a>(recs: &'a [serde_json::Value], id: &str) -> Vec<&'a str> {
    recs.iter()
        .filter(|r| r["id"] == id)
        .map(|r| r["event"].as_str().unwrap())
        .collect()
}

fn plugin_lines(logs: &[LogLine]) -> Vec<&LogLine> {
    logs.iter()
        .filter(|l| l.source == LogSource::Plugin)
        .collect()
}

fn symbols(calls: &[Call]) -> Vec<(&'static str, Option<usize>, Option<i64>)> {
    calls
        .iter()
        .map(|c| (c.symbol, c.instance, c.arg))
        .collect()
}

fn simple_chunk() -> Vec<u8> {
    ChunkBuilder::new()
        .record(1_700_000_000, 5, map(&[]), map(&[("log", "hello".into())]))
        .build()
}

#[test]
fn register_fills_the_def_and_the_host_copies_the_name() {
    let host = load();
    assert_eq!(host.registration(), &Registration::Registered);
    assert_eq!(host.plugin_name().as_deref(), Some("test-output"));
    let def = host.def_snapshot().unwrap();
    assert_eq!(
        (def.plugin_type, def.proxy, def.flags, def.event_type),
        (2, 11, 0, 0)
    );
    assert!(def.config_map_is_null);
    // The name was strdup'ed (a different allocation), the description kept.
    assert_ne!(def.name_ptr, def.host_name_ptr);
    assert_eq!(def.description_ptr, def.host_description_ptr);
    assert_eq!(
        host.description().as_deref(),
        Some("lockstep test output plugin")
    );
    assert_eq!(
        symbols(&host.calls()),
        [("FLBPluginRegister", None, None)],
        "the plugin exports no FLBPluginPreRegister"
    );
    assert_eq!(host.calls()[0].ret, Some(0));
}

#[test]
fn init_reads_typed_config_from_the_property_map() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let mut host = load();
    let i = host
        .add_output(
            "TEST-OUTPUT",
            &[
                ("ID", "a"),
                ("Match", "*"),
                ("Flush_Interval", "250ms"),
                ("buffer_size", "10MB"),
                ("record_file", rec.to_str().unwrap()),
                ("id", "shadowed: the first one wins"),
            ],
        )
        .unwrap();
    host.start().unwrap();
    assert_eq!(host.state(i), Some(InstanceState::Running));
    let recs = records(&rec);
    assert_eq!(recs[0]["event"], "init");
    assert_eq!(recs[0]["id"], "a");
    assert_eq!(recs[0]["flush_interval_ms"], 250);
    assert_eq!(recs[0]["buffer_size"], 10 * 1024 * 1024);
    let lookups = host.property_lookups(i);
    assert!(lookups.iter().any(|k| k == "flush_interval"), "{lookups:?}");
    let info: Vec<_> = host
        .take_logs()
        .into_iter()
        .filter(|l| l.message.contains("initialised a"))
        .collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].level, 3);
    assert_eq!(info[0].format.as_deref(), Some("%s"));
}

#[test]
fn defaults_apply_when_keys_are_unset_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let mut host = load();
    host.add_output(
        "test-output",
        &[
            ("id", "d"),
            ("buffer_size", ""),
            ("record_file", rec.to_str().unwrap()),
        ],
    )
    .unwrap();
    host.start().unwrap();
    let recs = records(&rec);
    assert_eq!(recs[0]["flush_interval_ms"], 5000);
    assert_eq!(recs[0]["buffer_size"], 1 << 20);
}

fn start_error(props: &[(&str, &str)]) -> (HostError, Vec<LogLine>, ProxyHost) {
    let mut host = load();
    host.add_output("test-output", props).unwrap();
    let err = host.start().unwrap_err();
    let logs = host.take_logs();
    (err, logs, host)
}

#[test]
fn failing_init_returns_an_error_code_and_logs_the_reason() {
    let (err, logs, host) = start_error(&[("id", "x"), ("fail_init", "on")]);
    assert!(
        matches!(err, HostError::InitFailed { instance: 0, code, .. } if code <= 0),
        "{err}"
    );
    assert_eq!(host.state(0), Some(InstanceState::Failed));
    drop(host);
    let plugin = plugin_lines(&logs);
    assert!(
        plugin
            .iter()
            .any(|l| l.level == 1 && l.message.contains("instance x: fail_init is set")),
        "{logs:#?}"
    );
    assert!(logs
        .iter()
        .any(|l| l.source == LogSource::Host && l.message.contains("failed to initialize")));

    let (_, logs, host) = start_error(&[("buffer_size", "lots"), ("id", "y")]);
    drop(host);
    assert!(
        logs.iter().any(|l| l.level == 1
            && l.message.contains("`buffer_size`")
            && l.message.contains("`lots`")),
        "{logs:#?}"
    );

    let (_, logs, host) = start_error(&[("record_file", "/dev/null")]);
    drop(host);
    assert!(
        logs.iter().any(|l| l.level == 1
            && l.message
                .contains("missing required configuration key `id`")),
        "{logs:#?}"
    );
}

#[test]
fn a_failed_init_stops_the_start_and_shutdown_still_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let rec = rec.to_str().unwrap();
    let mut host = load();
    host.add_output("test-output", &[("id", "ok"), ("record_file", rec)])
        .unwrap();
    host.add_output(
        "test-output",
        &[("id", "bad"), ("fail_init", "yes"), ("record_file", rec)],
    )
    .unwrap();
    host.add_output("test-output", &[("id", "never"), ("record_file", rec)])
        .unwrap();
    assert!(matches!(
        host.start(),
        Err(HostError::InitFailed { instance: 1, .. })
    ));
    assert_eq!(
        host.state(2),
        Some(InstanceState::Created),
        "init stops at the failure"
    );
    host.shutdown(false);
    let calls = symbols(&host.calls());
    assert_eq!(
        calls,
        [
            ("FLBPluginRegister", None, None),
            ("FLBPluginInit", Some(0), None),
            ("FLBPluginInit", Some(1), None),
            ("FLBPluginOutputPreExit", Some(0), Some(0)),
            ("FLBPluginExitCtx", Some(0), None),
            ("FLBPluginOutputPreExit", Some(1), Some(0)),
            ("FLBPluginExitCtx", Some(1), None),
            ("FLBPluginOutputPreExit", Some(2), Some(0)),
            ("FLBPluginExitCtx", Some(2), None),
        ]
    );
    let recs = records(Path::new(rec));
    assert_eq!(events_of(&recs, "ok"), ["init", "pre_exit", "exit"]);
    assert!(events_of(&recs, "bad").is_empty());
    assert!(events_of(&recs, "never").is_empty());
}

#[test]
fn a_panic_in_init_is_a_failed_init_not_an_abort() {
    let (err, logs, _host) = start_error(&[("id", "p"), ("panic_in", "init")]);
    assert!(
        matches!(err, HostError::InitFailed { code: -1, .. }),
        "{err}"
    );
    assert!(
        logs.iter().any(|l| l.level == 1
            && l.message.contains("panic in FLBPluginInit")
            && l.message.contains("told to panic in init")),
        "{logs:#?}"
    );
}

#[test]
fn flush_decodes_both_layouts_and_group_markers() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let mut host = load();
    host.add_output(
        "test-output",
        &[("id", "f"), ("record_file", rec.to_str().unwrap())],
    )
    .unwrap();
    host.start().unwrap();
    let attrs = map(&[("resource", map(&[("service.name", "checkout".into())]))]);
    let chunk = ChunkBuilder::new()
        .group_start(map(&[("schema", "otlp".into())]), attrs)
        .record(
            1_700_000_001,
            250_000_000,
            map(&[("trace_id", "abc".into())]),
            map(&[("log", "in group".into()), ("n", Value::from(-3))]),
        )
        .group_end()
        .legacy(
            Value::from(1_600_000_000u64),
            map(&[("log", "legacy int".into())]),
        )
        .legacy(
            Value::F64(1_600_000_000.5),
            map(&[("log", "legacy float".into())]),
        )
        .build();
    let report = host.flush(0, "app.logs", &chunk).unwrap();
    assert_eq!((report.code, report.raw), (FlushCode::Ok, 1));

    let recs = records(&rec);
    let flush = recs
        .iter()
        .find(|r| r["event"] == "flush")
        .expect("a flush record");
    assert_eq!(flush["tag"], "app.logs");
    let events = flush["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["kind"], "group_start");
    assert_eq!(events[0]["sec"], 0xFFFF_FFFFu64);
    assert_eq!(events[0]["metadata"], json!({"schema": "otlp"}));
    assert_eq!(
        events[0]["body"],
        json!({"resource": {"service.name": "checkout"}})
    );
    assert_eq!(
        events[1],
        json!({
            "kind": "record", "layout": "v2", "sec": 1_700_000_001u64, "nsec": 250_000_000,
            "metadata": {"trace_id": "abc"}, "body": {"log": "in group", "n": -3}
        })
    );
    assert_eq!(events[2]["kind"], "group_end");
    assert_eq!(
        events[3],
        json!({
            "kind": "record", "layout": "v1", "sec": 1_600_000_000u64, "nsec": 0,
            "metadata": {}, "body": {"log": "legacy int"}
        })
    );
    assert_eq!(events[4]["sec"], 1_600_000_000u64);
    assert_eq!(events[4]["nsec"], 500_000_000);
    assert_eq!(
        flush["record_groups"],
        json!([{"resource": {"service.name": "checkout"}}, null, null])
    );
}

#[test]
fn log_levels_follow_each_instances_log_level() {
    let mut host = load();
    host.add_output(
        "test-output",
        &[
            ("id", "quiet"),
            ("Log_Level", "error"),
            ("probe_logs", "on"),
        ],
    )
    .unwrap();
    host.add_output(
        "test-output",
        &[("id", "loud"), ("log_level", "debug"), ("probe_logs", "on")],
    )
    .unwrap();
    host.start().unwrap();
    host.take_logs();
    host.flush(0, "t", &simple_chunk()).unwrap();
    host.flush(1, "tag%s%n", &simple_chunk()).unwrap();
    let logs = host.take_logs();
    let plugin = plugin_lines(&logs);
    assert!(
        plugin.iter().all(|l| l.format.as_deref() == Some("%s")),
        "{plugin:#?}"
    );
    let probes = |id: &str| -> Vec<i32> {
        plugin
            .iter()
            .filter(|l| l.message.contains("probe") && l.message.ends_with(&format!(" {id}")))
            .map(|l| l.level)
            .collect()
    };
    assert_eq!(probes("quiet"), [1], "error only");
    assert_eq!(probes("loud"), [1, 2, 3, 4], "everything but trace");
    let loud_probe = plugin
        .iter()
        .find(|l| l.message.contains("probe warn loud"))
        .unwrap();
    assert!(loud_probe.file.ends_with("lib.rs"), "{loud_probe:?}");
    assert!(loud_probe.line > 0);
    // A tag full of printf directives arrives verbatim: "%s" is the format.
    assert!(
        plugin
            .iter()
            .any(|l| l.level == 4 && l.message.contains("for tag tag%s%n")),
        "{plugin:#?}"
    );
}

#[test]
fn a_panic_in_flush_is_flb_error_and_an_error_log() {
    let mut host = load();
    host.add_output("test-output", &[("id", "boom"), ("panic_in", "flush")])
        .unwrap();
    host.add_output("test-output", &[("id", "fine")]).unwrap();
    host.start().unwrap();
    host.take_logs();
    let report = host.flush(0, "t", &simple_chunk()).unwrap();
    assert_eq!((report.code, report.raw), (FlushCode::Error, 0));
    let logs = host.take_logs();
    assert!(
        logs.iter().any(|l| l.level == 1
            && l.message.contains("panic in flush")
            && l.message.contains("told to panic in flush")
            && l.message.contains("lib.rs")),
        "{logs:#?}"
    );
    // The process and the other instance carry on.
    assert_eq!(
        host.flush(1, "t", &simple_chunk()).unwrap().code,
        FlushCode::Ok
    );
    assert_eq!(
        host.flush(0, "t", &simple_chunk()).unwrap().code,
        FlushCode::Error
    );
    host.shutdown(false);
    assert!(
        host.calls()
            .iter()
            .filter(|c| c.symbol == "FLBPluginExitCtx")
            .count()
            == 2
    );
}

#[test]
fn malformed_chunks_are_flb_error_with_the_byte_offset_logged() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let mut host = load();
    host.add_output(
        "test-output",
        &[("id", "m"), ("record_file", rec.to_str().unwrap())],
    )
    .unwrap();
    host.start().unwrap();
    let good = ChunkBuilder::new().record(1, 0, map(&[]), map(&[("a", 1.into())]));
    let offset = good.len();
    let chunk = good.raw(&[0x92, 0xc1]).build();
    host.take_logs();
    let report = host.flush(0, "bad.tag", &chunk).unwrap();
    assert_eq!(report.code, FlushCode::Error);
    let logs = host.take_logs();
    let expected = format!("reserved msgpack marker 0xc1 at byte offset {}", offset + 1);
    assert!(
        logs.iter().any(|l| l.level == 1
            && l.message.contains(&expected)
            && l.message.contains("bad.tag")),
        "{logs:#?}"
    );
    // All or nothing: the valid event before the damage was not recorded.
    assert!(records(&rec).iter().all(|r| r["event"] != "flush"));

    // Truncated input reads past nothing: the chunk ends at a guard page.
    let truncated = &simple_chunk()[..10];
    assert_eq!(
        host.flush(0, "t", truncated).unwrap().code,
        FlushCode::Error
    );
    let logs = host.take_logs();
    assert!(
        logs.iter().any(|l| l.message.contains("truncated input")),
        "{logs:#?}"
    );
}

#[test]
fn several_instances_keep_separate_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["one", "two", "three"];
    let mut host = load();
    for id in ids {
        let rec = dir.path().join(format!("{id}.jsonl"));
        host.add_output(
            "test-output",
            &[("id", id), ("record_file", rec.to_str().unwrap())],
        )
        .unwrap();
    }
    host.start().unwrap();
    for (i, id) in ids.iter().enumerate().rev() {
        host.flush(i, &format!("tag.{id}"), &simple_chunk())
            .unwrap();
    }
    host.shutdown(false);
    let mut labels = Vec::new();
    for id in ids {
        let recs = records(&dir.path().join(format!("{id}.jsonl")));
        assert!(recs.iter().all(|r| r["id"] == id), "{recs:?}");
        assert_eq!(
            events_of(&recs, id),
            ["init", "pre_run", "flush", "pre_exit", "exit"]
        );
        let flush = recs.iter().find(|r| r["event"] == "flush").unwrap();
        assert_eq!(flush["tag"], format!("tag.{id}"));
        labels.push(recs[0]["instance"].as_str().unwrap().to_string());
    }
    labels.dedup();
    assert_eq!(
        labels.len(),
        3,
        "each instance has its own handle: {labels:?}"
    );
}

#[test]
fn pre_run_pre_exit_and_exit_run_in_order_and_stop_plugin_threads() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let rec = rec.to_str().unwrap();
    let opts = HostOptions {
        enable_hot_reload: true,
        ..HostOptions::default()
    };
    let mut host = ProxyHost::load(plugin(), opts).unwrap();
    host.add_output(
        "test-output",
        &[("id", "a"), ("worker", "on"), ("record_file", rec)],
    )
    .unwrap();
    host.add_output(
        "test-output",
        &[("id", "b"), ("worker", "on"), ("record_file", rec)],
    )
    .unwrap();
    host.start().unwrap();
    host.flush(1, "t", &simple_chunk()).unwrap();
    host.shutdown(true);
    assert_eq!(
        symbols(&host.calls()),
        [
            ("FLBPluginRegister", None, None),
            ("FLBPluginInit", Some(0), None),
            ("FLBPluginInit", Some(1), None),
            ("FLBPluginOutputPreRun", Some(0), Some(1)),
            ("FLBPluginOutputPreRun", Some(1), Some(1)),
            ("FLBPluginFlushCtx", Some(1), None),
            ("FLBPluginOutputPreExit", Some(0), Some(1)),
            ("FLBPluginExitCtx", Some(0), None),
            ("FLBPluginOutputPreExit", Some(1), Some(1)),
            ("FLBPluginExitCtx", Some(1), None),
        ]
    );
    let recs = records(Path::new(rec));
    let seq: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["event"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("a", "init"),
        ("b", "init"),
        ("a", "pre_run"),
        ("b", "pre_run"),
        ("b", "flush"),
        ("a", "pre_exit"),
        ("a", "exit"),
        ("b", "pre_exit"),
        ("b", "exit"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seq, expect);
    for r in recs.iter().filter(|r| r["event"] == "pre_run") {
        assert_eq!(r["enable_hot_reload"], true);
    }
    for r in recs
        .iter()
        .filter(|r| r["event"] == "pre_exit" || r["event"] == "exit")
    {
        assert_eq!(r["reason"], "HotReload");
    }
    for r in recs.iter().filter(|r| r["event"] == "exit") {
        assert_eq!(r["worker_joined"], true);
    }
    // The workers logged through their instance from their own threads.
    let logs = host.take_logs();
    for id in ["a", "b"] {
        assert!(
            logs.iter()
                .any(|l| l.message.contains(&format!("worker {id} started"))),
            "{logs:#?}"
        );
        assert!(
            logs.iter()
                .any(|l| l.message.contains(&format!("worker {id} stopping"))),
            "{logs:#?}"
        );
    }
}

#[test]
fn hot_reload_exits_then_loads_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let rec = rec.to_str().unwrap();
    let mut host = load();
    host.add_output("test-output", &[("id", "gen1"), ("record_file", rec)])
        .unwrap();
    host.start().unwrap();
    assert_eq!(
        host.flush(0, "t", &simple_chunk()).unwrap().code,
        FlushCode::Ok
    );
    host.shutdown(true);
    drop(host);

    let opts = HostOptions {
        hot_reloading: true,
        enable_hot_reload: true,
        ..HostOptions::default()
    };
    let mut host = ProxyHost::load(plugin(), opts).unwrap();
    assert_eq!(host.registration(), &Registration::Registered);
    host.add_output("test-output", &[("id", "gen2"), ("record_file", rec)])
        .unwrap();
    host.start().unwrap();
    assert_eq!(
        host.flush(0, "t", &simple_chunk()).unwrap().code,
        FlushCode::Ok
    );
    host.shutdown(false);
    let recs = records(Path::new(rec));
    assert_eq!(
        events_of(&recs, "gen1"),
        ["init", "pre_run", "flush", "pre_exit", "exit"]
    );
    assert_eq!(
        events_of(&recs, "gen2"),
        ["init", "pre_run", "flush", "pre_exit", "exit"]
    );
    let reasons: Vec<_> = recs
        .iter()
        .filter(|r| r["event"] == "exit")
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(reasons, [json!("HotReload"), json!("Shutdown")]);
}

#[test]
fn retry_and_concurrent_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.jsonl");
    let mut host = load();
    host.add_output("test-output", &[("id", "r"), ("result", "retry")])
        .unwrap();
    host.add_output(
        "test-output",
        &[("id", "c"), ("record_file", rec.to_str().unwrap())],
    )
    .unwrap();
    host.start().unwrap();
    let report = host.flush(0, "t", &simple_chunk()).unwrap();
    assert_eq!((report.code, report.raw), (FlushCode::Retry, 2));

    let chunks: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            ChunkBuilder::new()
                .record(i, 0, map(&[]), map(&[("i", Value::from(i))]))
                .build()
        })
        .collect();
    let reports = host.flush_concurrently(1, "par", &chunks);
    assert!(reports
        .iter()
        .all(|r| r.as_ref().unwrap().code == FlushCode::Ok));
    let mut seen: Vec<u64> = records(&rec)
        .iter()
        .filter(|r| r["event"] == "flush")
        .map(|r| r["events"][0]["body"]["i"].as_u64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn flush_fits_the_default_coroutine_stack() {
    let mut host = load();
    host.add_output(
        "test-output",
        &[("id", "s"), ("Log_Level", "trace"), ("probe_logs", "on")],
    )
    .unwrap();
    host.start().unwrap();
    let mut chunk = ChunkBuilder::new();
    for i in 0..200 {
        chunk = chunk.record(
            i,
            0,
            map(&[("k", "v".into())]),
            map(&[("log", "x".repeat(200).into())]),
        );
    }
    let report = host.flush(0, "t", &chunk.build()).unwrap();
    assert_eq!(report.code, FlushCode::Ok);
    eprintln!(
        "test-output flush peak stack: {} bytes of 65536",
        report.stack_peak
    );
    assert!(report.stack_peak > 0, "the flush ran on the measured stack");
    assert!(
        report.stack_peak < 48 * 1024,
        "peak {} leaves too little headroom",
        report.stack_peak
    );
}

#[test]
fn flb_prefixed_files_and_unknown_outputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("flb-test-output.so");
    std::fs::copy(plugin(), &copy).unwrap();
    assert!(matches!(
        ProxyHost::load(&copy, HostOptions::default()),
        Err(HostError::CPluginName(_))
    ));
    let mut host = load();
    assert!(matches!(
        host.add_output("loki", &[]),
        Err(HostError::UnknownOutput(_))
    ));
    assert!(matches!(
        host.add_output("test-output", &[("id", "x"), ("log_level", "loud")]),
        Err(HostError::BadProperty { .. })
    ));
}

#[test]
fn the_flush_stack_has_a_guard_page() {
    if std::env::var_os("LOCKSTEP_OVERFLOW_CHILD").is_some() {
        // Child: recurse until the 64 KiB stack runs into its guard page.
        fn deep(n: u64) -> u64 {
            let buf = [n as u8; 512];
            std::hint::black_box(&buf);
            if n == 0 {
                0
            } else {
                deep(n - 1) + u64::from(buf[7])
            }
        }
        lockstep_hosts::proxy::run_on_flush_stack(64 * 1024, || {
            std::hint::black_box(deep(100_000));
        });
        eprintln!("overflow child: survived, the guard page is missing");
        std::process::exit(0);
    }
    // A shallow function fits and its use is measured.
    let peak = lockstep_hosts::proxy::run_on_flush_stack(64 * 1024, || {
        let buf = [7u8; 4096];
        std::hint::black_box(&buf);
    })
    .unwrap();
    assert!((4096..64 * 1024).contains(&peak), "peak {peak}");

    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "the_flush_stack_has_a_guard_page",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOCKSTEP_OVERFLOW_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc_sigsegv()),
        "the child must die of SIGSEGV: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn libc_sigsegv() -> i32 {
    11
}

#[test]
fn panics_in_pre_run_pre_exit_and_exit_are_logged_and_contained() {
    for hook in ["pre_run", "pre_exit", "exit"] {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec.jsonl");
        let mut host = load();
        host.add_output(
            "test-output",
            &[
                ("id", hook),
                ("panic_in", hook),
                ("record_file", rec.to_str().unwrap()),
            ],
        )
        .unwrap();
        host.add_output(
            "test-output",
            &[("id", "bystander"), ("record_file", rec.to_str().unwrap())],
        )
        .unwrap();
        host.start().unwrap();
        assert_eq!(
            host.flush(1, "t", &simple_chunk()).unwrap().code,
            FlushCode::Ok
        );
        host.shutdown(false);
        let logs = host.take_logs();
        assert!(
            logs.iter().any(|l| l.level == 1
                && l.message.contains(&format!("panic in {hook}"))
                && l.message.contains(&format!("told to panic in {hook}"))),
            "{hook}: {logs:#?}"
        );
        let recs = records(&rec);
        assert_eq!(
            events_of(&recs, "bystander"),
            ["init", "pre_run", "flush", "pre_exit", "exit"],
            "{hook}"
        );
        if hook == "pre_exit" {
            // exit still runs after a panicking pre-exit.
            assert_eq!(events_of(&recs, hook), ["init", "pre_run", "exit"]);
        }
    }
}
