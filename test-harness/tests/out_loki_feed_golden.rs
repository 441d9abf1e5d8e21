//! golden/unmirrorable through the real `lockstep_out_loki.so` in the proxy host: traces
//! decided by a Collector whose policies lockstep cannot mirror (`rate_limiting`, a
//! span-only attribute), with logs whose levels and durations disagree with the spans.
//! With the mirror as `policy_file` lines are orphaned in both directions; with the
//! decision feed reporting the sampler's kept traces, every line of every kept trace is
//! stored and none of a dropped one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lockstep_harness::artifacts::build_cdylib;
use lockstep_hosts::golden::GoldenSet;
use lockstep_hosts::loki_receiver::LokiReceiver;
use lockstep_hosts::output_replay::{
    receiver_lines, replay_output_with, Decisions, OutputReplay, OutputReport,
};

fn plugin() -> PathBuf {
    build_cdylib("out-loki").unwrap_or_else(|e| panic!("building out-loki: {e}"))
}

fn set(name: &str) -> GoldenSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("golden")
        .join(name);
    GoldenSet::load(&dir).unwrap()
}

fn replay(set: &GoldenSet, how: Decisions) -> OutputReport {
    let rx = LokiReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = OutputReplay {
        plugin: plugin(),
        url: rx.url(),
        work: dir.path().to_path_buf(),
        // With the feed, a kept trace's lines wait from its first line until the report
        // after the chunk holding its last line (two flushes later at most here): 3 s
        // covers slow fsyncs on a busy machine. Dropped traces' lines are dropped then.
        decision_wait: Duration::from_millis(match how {
            Decisions::Policy => 500,
            Decisions::Feed => 3000,
        }),
        chunk: 64,
        labels: "job=golden".into(),
    };
    let r = replay_output_with(set, &opts, how, |want| receiver_lines(&rx, want)).unwrap();
    println!("{}", r.render());
    assert!(
        r.plugin_log.iter().all(|l| !l.contains("error")),
        "{:?}",
        r.plugin_log
    );
    r
}

/// kept_traces.jsonl agrees with the spans wherever the spans alone decide: every trace
/// with an ERROR span, longer than 200 ms or of a gold customer is kept; the rest were
/// decided by the token bucket, which keeps some and drops others.
#[test]
fn the_recorded_decisions_agree_with_the_spans_where_the_spans_decide() {
    let set = set("unmirrorable");
    let decisions = set.trace_decisions().unwrap();
    let recorded = set.sampler.as_ref().expect("kept_traces.jsonl");
    let mut by: BTreeMap<&str, (u64, u64, bool, bool)> = BTreeMap::new();
    for s in &set.spans {
        let e = by.entry(&s.trace_id).or_insert((u64::MAX, 0, false, false));
        e.0 = e.0.min(s.start_ns);
        e.1 = e.1.max(s.end_ns);
        e.2 |= s.status == "ERROR";
        e.3 |= s.attributes.get("customer.tier").and_then(|v| v.as_str()) == Some("gold");
    }
    assert_eq!(by.len(), recorded.len());
    let mut by_policy: BTreeMap<String, usize> = BTreeMap::new();
    for d in recorded {
        let (start, end, error, gold) = by[d.trace_id.as_str()];
        let slow = (end - start) / 1_000_000 > 200;
        let first = [(error, "errors"), (slow, "slow"), (gold, "gold-customers")]
            .into_iter()
            .find(|(hit, _)| *hit)
            .map(|(_, name)| name);
        match first {
            Some(name) => assert_eq!(d.by.as_deref(), Some(name), "{}", d.trace_id),
            None => assert!(d.by.as_deref() == Some("budget") || !d.kept, "{d:?}"),
        }
        assert_eq!(d.kept, d.by.is_some(), "{d:?}");
        assert_eq!(decisions[&d.trace_id], d.kept);
        *by_policy
            .entry(d.by.clone().unwrap_or_else(|| "dropped".into()))
            .or_default() += 1;
    }
    // every policy decides some trace, and some are dropped
    for p in ["errors", "slow", "gold-customers", "budget", "dropped"] {
        assert!(by_policy.get(p).copied().unwrap_or(0) > 0, "{by_policy:?}");
    }
}

/// The mirror (`lockstep policy import otelcol.yaml`) as `policy_file`: kept traces whose
/// lines say nothing the mirror keeps (kept by the budget or a gold customer, an error
/// logged as warn, a slow trace whose handlers log fast) lose their lines, and dropped
/// traces with an error line keep theirs. That is what this set is for.
#[test]
fn under_the_mirror_lines_are_orphaned_both_ways() {
    let set = set("unmirrorable");
    let r = replay(&set, Decisions::Policy);
    assert!(!r.complete(), "{}", r.render());
    assert!(
        !r.missing.is_empty() && r.missing_traces > 0,
        "no kept-trace line lost: {}",
        r.render()
    );
    assert!(
        !r.leaked.is_empty() && r.leaked_traces > 0,
        "no dropped-trace line kept: {}",
        r.render()
    );
    assert_eq!(r.duplicates, 0);
    // and what the mirror does keep of a kept trace, it keeps whole
    assert_eq!(
        r.kept_trace_lines_stored + r.missing.len(),
        r.kept_trace_lines
    );
    let missing: BTreeSet<_> = r
        .missing
        .iter()
        .map(|l| set.lines[l - 1].trace_id.clone())
        .collect();
    assert_eq!(missing.len(), r.missing_traces);
}

/// The decision feed, reported the sampler's kept traces as a Collector's `otlp_http`
/// exporter would: every line of every kept trace once, none of a dropped one.
#[test]
fn with_the_feed_every_line_of_every_kept_trace_and_none_of_a_dropped_one() {
    let set = set("unmirrorable");
    let r = replay(&set, Decisions::Feed);
    assert!(r.complete(), "{}", r.render());
    assert_eq!(r.kept_trace_lines_stored, r.kept_trace_lines);
    assert_eq!(r.dropped_trace_lines_stored, 0);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.feed_traces, r.traces_kept);
    assert!(
        r.kept_trace_lines > 100 && r.dropped_trace_lines > 100,
        "{r:?}"
    );
    // The mirror would have kept far less of them (the filter alone, line by line).
    assert!(
        r.filter_alone_kept < r.kept_trace_lines / 2,
        "{}",
        r.render()
    );
}

/// A set without kept_traces.jsonl: the feed reports what its policy decides from the
/// spans, and the output follows it exactly.
#[test]
fn the_feed_on_a_set_without_recorded_decisions() {
    let set = set("four-schemas");
    assert!(set.sampler.is_none());
    let r = replay(&set, Decisions::Feed);
    assert!(r.complete(), "{}", r.render());
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.feed_traces, r.traces_kept);
}
