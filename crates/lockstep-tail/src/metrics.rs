//! The stage's Prometheus text, appended to the output's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::Stage;

fn add(s: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(s, "{name}{{{labels}}} {v}");
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn render(stage: &Stage, instance: &str, now_ns: u64) -> String {
    let inst = format!("instance=\"{}\"", esc(instance));
    let l = |extra: &str| format!("{inst},{extra}");
    let m = stage.metrics();
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
    let (waiting, pinned, cached) = stage.table_sizes();
    let g = stage.waiting_gauges();
    let mut s = String::with_capacity(2048);
    add(
        &mut s,
        "lockstep_loki_traces_waiting",
        "gauge",
        "Traces waiting for their decision (bounded by num_traces).",
        &[(inst.clone(), waiting as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_decisions_pinned",
        "gauge",
        "Decided traces whose lines are still being swept out of the waiting queue.",
        &[(inst.clone(), pinned as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_decisions_cached",
        "gauge",
        "Decisions remembered for late lines (decision_cache_*_size).",
        &[(inst.clone(), cached as f64)],
    );
    let decided: Vec<(String, f64)> = stage
        .decided()
        .into_iter()
        .map(|(keep, reason, n)| {
            let d = if keep { "keep" } else { "drop" };
            (
                l(&format!("decision=\"{d}\",reason=\"{}\"", esc(&reason))),
                n as f64,
            )
        })
        .collect();
    add(
        &mut s,
        "lockstep_loki_traces_decided_total",
        "counter",
        "Traces decided, by decision and by the policy (or rule) that decided.",
        &decided,
    );
    add(
        &mut s,
        "lockstep_loki_traces_decided_early_total",
        "counter",
        "Traces decided before decision_wait because num_traces traces were waiting.",
        &[(inst.clone(), r(&m.decided_early))],
    );
    add(
        &mut s,
        "lockstep_loki_policy_lines_total",
        "counter",
        "Lines by decision: of decided traces (trace), without a trace id (alone), after their trace's decision (late).",
        &[
            (l("decision=\"keep\",by=\"trace\""), r(&m.lines_kept_trace)),
            (l("decision=\"drop\",by=\"trace\""), r(&m.lines_dropped_trace)),
            (l("decision=\"keep\",by=\"alone\""), r(&m.lines_kept_alone)),
            (l("decision=\"drop\",by=\"alone\""), r(&m.lines_dropped_alone)),
            (l("decision=\"keep\",by=\"late\""), r(&m.late_followed_kept)),
            (l("decision=\"drop\",by=\"late\""), r(&m.late_followed_dropped)),
        ],
    );
    add(
        &mut s,
        "lockstep_loki_late_lines_total",
        "counter",
        "Lines that arrived after their trace was decided: followed the remembered decision, or started a new trace (decision forgotten).",
        &[
            (
                l("outcome=\"followed\""),
                r(&m.late_followed_kept) + r(&m.late_followed_dropped),
            ),
            (l("outcome=\"new_trace\""), r(&m.late_new_trace)),
        ],
    );
    add(
        &mut s,
        "lockstep_loki_waiting_records",
        "gauge",
        "Records in the waiting queue (lines of undecided traces, and decided lines not yet swept).",
        &[(inst.clone(), g.records as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_waiting_bytes",
        "gauge",
        "Payload bytes in the waiting queue.",
        &[(inst.clone(), g.bytes as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_waiting_oldest_age_seconds",
        "gauge",
        "Age of the oldest record in the waiting queue (about decision_wait when healthy).",
        &[(
            inst.clone(),
            g.oldest_age(now_ns).map_or(0.0, |d| d.as_secs_f64()),
        )],
    );
    add(
        &mut s,
        "lockstep_loki_decision_write_failures_total",
        "counter",
        "Decision records the waiting queue could not take (retried; the trace's lines wait until it is on disk).",
        &[(inst.clone(), r(&m.decision_write_failures))],
    );
    add(
        &mut s,
        "lockstep_loki_quarantined_total",
        "counter",
        "Waiting lines whose mapping panicked repeatedly (set aside in quarantine.jsonl), and traces whose decision panicked repeatedly (kept).",
        &[
            (l("kind=\"record\""), r(&m.quarantined_records)),
            (l("kind=\"decision\""), r(&m.quarantined_decisions)),
        ],
    );
    add(
        &mut s,
        "lockstep_loki_pinned_full_total",
        "counter",
        "Flushes answered retry because max_pinned_traces decided traces waited for room in the main queue.",
        &[(inst.clone(), r(&m.busy_refusals))],
    );
    let ((held_chunks, held_traces), hc) = stage.holds();
    add(
        &mut s,
        "lockstep_loki_traces_held",
        "gauge",
        "Trace ids with lines in a chunk answered retry: their decision waits for that chunk (decision_hold_max).",
        &[(inst.clone(), held_traces as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_chunks_held",
        "gauge",
        "Chunks answered retry whose traces are held until Fluent Bit offers them again.",
        &[(inst.clone(), held_chunks as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_held_chunks_total",
        "counter",
        "Chunks answered retry that held traces, by outcome: taken later (the traces' rest arrived), expired (not offered again within decision_hold_max), overflow (2 x num_traces trace ids held already: not held).",
        &[
            (l("outcome=\"refused\""), hc.chunks_refused as f64),
            (l("outcome=\"taken\""), hc.chunks_taken as f64),
            (l("outcome=\"expired\""), hc.chunks_expired as f64),
            (l("outcome=\"overflow\""), hc.chunks_overflow as f64),
        ],
    );
    add(
        &mut s,
        "lockstep_loki_held_traces_forced_total",
        "counter",
        "Held traces decided without waiting for their chunk: the waiting queue was full to its last byte.",
        &[(inst.clone(), hc.traces_forced as f64)],
    );
    add(
        &mut s,
        "lockstep_loki_waiting_requeued_total",
        "counter",
        "Lines of held traces moved from the head of the waiting queue to its tail so the lines behind them could be swept.",
        &[(inst.clone(), r(&m.lines_requeued))],
    );
    if stage.source() != crate::DecisionSource::Policy {
        add(
            &mut s,
            "lockstep_loki_traces_kept_total",
            "counter",
            "Traces kept, by what kept them: the decision feed, the policy, the fallback while the feed was silent.",
            &[
                (l("source=\"feed\""), r(&m.kept_by_feed)),
                (l("source=\"policy\""), r(&m.kept_by_policy)),
                (l("source=\"fallback\""), r(&m.kept_by_fallback)),
            ],
        );
        add(
            &mut s,
            "lockstep_loki_feed_ids_ahead_total",
            "counter",
            "Trace ids the feed reported kept before any of their lines arrived (remembered; their lines are kept as they come).",
            &[(inst.clone(), r(&m.feed_ids_ahead))],
        );
        add(
            &mut s,
            "lockstep_loki_feed_ids_remembered",
            "gauge",
            "Trace ids reported kept whose lines have not arrived, remembered (decision_feed_cache_size).",
            &[(inst.clone(), stage.reported_ids() as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_feed_late_reports_total",
            "counter",
            "Feed reports that came after their trace's lines were dropped: raise decision_wait above the sampler's decision_wait plus its exporter's delay.",
            &[(inst.clone(), r(&m.feed_late_reports))],
        );
        add(
            &mut s,
            "lockstep_loki_feed_silence_episodes_total",
            "counter",
            "Times the feed was silent past decision_feed_silence while lines waited (the fallback decided).",
            &[(inst.clone(), r(&m.feed_silence_episodes))],
        );
    }
    add(
        &mut s,
        "lockstep_loki_waiting_unreadable_total",
        "counter",
        "Waiting-queue records that could not be read or mapped (skipped), kept lines too large for the main queue (skipped), and recovered lines written under another policy (their facts read again under the current one).",
        &[
            (l("kind=\"record\""), r(&m.unreadable_records)),
            (l("kind=\"too_large\""), r(&m.too_large)),
            (l("kind=\"other_policy\""), r(&m.recovered_other_policy)),
        ],
    );
    s
}
