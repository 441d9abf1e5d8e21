//! `lockstep check`: a schema-drift report over a sample of log lines.

use crate::for_each_line;
use anyhow::Result;
use lockstep_policy::{Engine, Policy};
use lockstep_record::drift::{self, DriftKind};
use lockstep_record::{DurationState, IdState, LevelState};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Default)]
struct Counts {
    records: u64,
    unreadable: u64,
    trace: BTreeMap<String, u64>,
    span: BTreeMap<String, u64>,
    level: BTreeMap<String, u64>,
    duration: BTreeMap<String, u64>,
    trace_src: BTreeMap<String, u64>,
    level_src: BTreeMap<String, u64>,
    duration_src: BTreeMap<String, u64>,
    unknown_levels: BTreeMap<String, u64>,
    uncovered_duration: BTreeMap<String, u64>,
    uncovered_level: BTreeMap<String, u64>,
    reasons: BTreeMap<(String, &'static str), u64>,
    first_error: Option<String>,
}

fn bump<K: Ord>(m: &mut BTreeMap<K, u64>, k: K) {
    *m.entry(k).or_default() += 1;
}

fn id_state<const N: usize>(s: &IdState<N>) -> String {
    match s {
        IdState::Valid(_) => "valid".into(),
        IdState::Absent => "absent".into(),
        IdState::Invalid(e) => format!("invalid ({e})"),
    }
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / d as f64).round() / 10.0
    }
}

pub fn run(policy: &Policy, input: &str, as_json: bool) -> Result<u8> {
    let mut engine = Engine::new(policy.clone());
    let table = policy.matcher().table().clone();
    let mut c = Counts::default();
    for_each_line(input, |n, line| {
        c.records += 1;
        let (d, err) = engine.decide_json(line.as_bytes());
        let reason = engine.policy().reason_name(d.reason).to_string();
        bump(
            &mut c.reasons,
            (reason, if d.keep { "keep" } else { "drop" }),
        );
        if let Some(e) = err {
            c.unreadable += 1;
            c.first_error
                .get_or_insert_with(|| format!("line {n}: {e}"));
            return Ok(());
        }
        let e = engine.extracted();
        bump(&mut c.trace, id_state(&e.trace_id));
        bump(&mut c.span, id_state(&e.span_id));
        bump(
            &mut c.level,
            match e.level {
                LevelState::Known(_) => "known".into(),
                LevelState::Absent => "absent".into(),
                LevelState::Unknown => {
                    bump(&mut c.unknown_levels, e.level_raw().to_string());
                    "unknown".to_string()
                }
            },
        );
        bump(
            &mut c.duration,
            match e.duration {
                DurationState::Ms(_) => "valid",
                DurationState::Absent => "absent",
                DurationState::Invalid => "invalid",
            }
            .to_string(),
        );
        if let Some(i) = e.trace_source() {
            bump(&mut c.trace_src, table.trace_id[i].key.clone());
        }
        if let Some(i) = e.level_source() {
            bump(&mut c.level_src, table.level[i].key.clone());
        }
        if let Some(i) = e.duration_source() {
            bump(&mut c.duration_src, table.duration[i].key.clone());
        }
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            for (path, kind) in drift::uncovered(engine.policy().matcher(), &v) {
                match kind {
                    DriftKind::Duration => bump(&mut c.uncovered_duration, path),
                    DriftKind::Level => bump(&mut c.uncovered_level, path),
                }
            }
        }
        Ok(())
    })?;
    let kept: u64 = c
        .reasons
        .iter()
        .filter(|((_, k), _)| *k == "keep")
        .map(|(_, n)| n)
        .sum();
    let reasons: Vec<Value> = c
        .reasons
        .iter()
        .map(|((r, k), n)| json!({"reason": r, "decision": k, "records": n, "share_pct": pct(*n, c.records)}))
        .collect();
    let report = json!({
        "records": c.records,
        "unreadable": c.unreadable,
        "first_unreadable": c.first_error,
        "kept": kept,
        "keep_pct": pct(kept, c.records),
        "trace_id": c.trace, "trace_id_from": c.trace_src,
        "span_id": c.span,
        "level": c.level, "level_from": c.level_src, "unknown_levels": c.unknown_levels,
        "duration": c.duration, "duration_from": c.duration_src,
        "uncovered_duration_fields": c.uncovered_duration,
        "uncovered_level_fields": c.uncovered_level,
        "reasons": reasons,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!(
        "records: {}   unreadable: {}   kept: {} ({}%)",
        c.records,
        c.unreadable,
        kept,
        pct(kept, c.records)
    );
    if let Some(e) = &c.first_error {
        println!("  first unreadable: {e}");
    }
    let section = |name: &str, m: &BTreeMap<String, u64>| {
        let parts: Vec<String> = m
            .iter()
            .map(|(k, n)| format!("{k} {n} ({}%)", pct(*n, c.records)))
            .collect();
        println!(
            "{name:<12}{}",
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(", ")
            }
        );
    };
    section("trace_id:", &c.trace);
    section("  from:", &c.trace_src);
    section("span_id:", &c.span);
    section("level:", &c.level);
    section("  from:", &c.level_src);
    section("duration:", &c.duration);
    section("  from:", &c.duration_src);
    if !c.unknown_levels.is_empty() {
        println!("DRIFT unknown level values (no level word or numeric scheme maps them; fix the service, or point the alias at a numeric scheme):");
        for (k, n) in &c.unknown_levels {
            println!("  {k:?}: {n}");
        }
    }
    if !c.uncovered_duration.is_empty() {
        println!("DRIFT duration-like fields no alias covers (latency rules cannot see them):");
        for (k, n) in &c.uncovered_duration {
            println!("  {k}: {n}");
        }
    }
    if !c.uncovered_level.is_empty() {
        println!("DRIFT level-like fields no alias covers:");
        for (k, n) in &c.uncovered_level {
            println!("  {k}: {n}");
        }
    }
    println!("decisions by reason:");
    for ((r, k), n) in &c.reasons {
        println!("  {k:<5} {r:<20} {n:>8} ({}%)", pct(*n, c.records));
    }
    Ok(0)
}
