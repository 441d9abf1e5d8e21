//! `lockstep check`: a schema-drift report over a sample of log lines: which fields were
//! found and by which alias, which were not, level values and duration-like fields no
//! alias covers, and the keep ratio by reason.

use lockstep_policy::{Engine, Policy};
use lockstep_record::drift::{self, DriftKind};
use lockstep_record::duration::Unit;
use lockstep_record::fields::FieldTable;
use lockstep_record::{DurationState, IdState, LevelState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What to do about a suspect unit, in one line.
pub fn unit_hint(s: &UnitSuspect) -> String {
    format!(
        "{} (read as {}): median {} {} = {} over {} records; as {} it would be {}: set the alias' unit, lockstep: {{fields: {{duration: {{aliases: [{{key: {}, unit: {}}}]}}}}}}",
        s.alias,
        unit_name(s.unit),
        s.median_raw,
        unit_name(s.unit),
        human_ms(s.median_ms),
        s.records,
        unit_name(s.suggested),
        human_ms(s.suggested_ms),
        s.alias,
        unit_name(s.suggested),
    )
}

/// The report, accumulated line by line ([`Check::add`]).
pub struct Check {
    table: FieldTable,
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
    /// Per duration alias: its unit and the bare numbers read from it (in that unit).
    dur_raw: BTreeMap<String, (Unit, Vec<f64>)>,
    uncovered_trace: BTreeMap<String, u64>,
    nested_candidates: BTreeMap<String, u64>,
}

/// At most this many values per duration alias are kept for the median.
const MAX_DURATION_SAMPLES: usize = 100_000;

/// A duration whose median, read in its alias' unit, is no request's duration.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSuspect {
    pub alias: String,
    pub unit: Unit,
    pub records: usize,
    pub median_raw: f64,
    pub median_ms: f64,
    /// The unit that reads the median most plausibly, and what it reads as.
    pub suggested: Unit,
    pub suggested_ms: f64,
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Ns => "ns",
        Unit::Us => "us",
        Unit::Ms => "ms",
        Unit::S => "s",
    }
}

/// A duration in words: `12.3 ms`, `41 s`, `3416.7 h`.
fn human_ms(ms: f64) -> String {
    let r = |x: f64| (x * 10.0).round() / 10.0;
    if ms < 1.0 {
        format!("{} µs", r(ms * 1000.0))
    } else if ms < 1000.0 {
        format!("{} ms", r(ms))
    } else if ms < 3_600_000.0 {
        format!("{} s", r(ms / 1000.0))
    } else {
        format!("{} h", r(ms / 3_600_000.0))
    }
}

/// The median of a duration alias' bare numbers is implausible for a request when read
/// in the alias' unit: above 10 s (Go's `slog`/`logrus` write a `time.Duration` as integer
/// nanoseconds, a pino/Express middleware writes `duration` in ms, where the default
/// alias reads seconds) or under 1 µs. The suggestion is the unit that puts the median
/// nearest 100 ms.
pub fn unit_suspect(alias: &str, unit: Unit, values: &[f64]) -> Option<UnitSuspect> {
    let mut v: Vec<f64> = values
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let median_raw = v[v.len() / 2];
    let median_ms = median_raw * unit.to_ms();
    if (0.001..=10_000.0).contains(&median_ms) {
        return None;
    }
    let score = |u: Unit| ((median_raw * u.to_ms()).log10() - 2.0).abs();
    let suggested = [Unit::Ns, Unit::Us, Unit::Ms, Unit::S]
        .into_iter()
        .filter(|u| *u != unit)
        .min_by(|a, b| score(*a).total_cmp(&score(*b)))?;
    Some(UnitSuspect {
        alias: alias.to_string(),
        unit,
        records: values.len(),
        median_raw,
        median_ms,
        suggested,
        suggested_ms: median_raw * suggested.to_ms(),
    })
}

/// The bare number at `key` (a flat key, or a dotted path into objects): what the
/// alias' unit applies to (a Go duration string carries its own unit).
fn bare_number(v: &Value, key: &str) -> Option<f64> {
    let x = v
        .get(key)
        .or_else(|| key.split('.').try_fold(v, |cur, k| cur.get(k)))?;
    match x {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
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

/// `n` of `d` in percent, one decimal.
pub fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / d as f64).round() / 10.0
    }
}

impl Check {
    pub fn new(policy: &Policy) -> Check {
        Check {
            table: policy.matcher().table().clone(),
            records: 0,
            unreadable: 0,
            trace: BTreeMap::new(),
            span: BTreeMap::new(),
            level: BTreeMap::new(),
            duration: BTreeMap::new(),
            trace_src: BTreeMap::new(),
            level_src: BTreeMap::new(),
            duration_src: BTreeMap::new(),
            unknown_levels: BTreeMap::new(),
            uncovered_duration: BTreeMap::new(),
            uncovered_level: BTreeMap::new(),
            reasons: BTreeMap::new(),
            first_error: None,
            dur_raw: BTreeMap::new(),
            uncovered_trace: BTreeMap::new(),
            nested_candidates: BTreeMap::new(),
        }
    }

    /// Counts line `n` of the sample, decided by `engine` (built from the same policy).
    pub fn add(&mut self, engine: &mut Engine, n: usize, line: &str) {
        self.records += 1;
        let (d, err) = engine.decide_json(line.as_bytes());
        let reason = engine.policy().reason_name(d.reason).to_string();
        bump(
            &mut self.reasons,
            (reason, if d.keep { "keep" } else { "drop" }),
        );
        if let Some(e) = err {
            self.unreadable += 1;
            self.first_error
                .get_or_insert_with(|| format!("line {n}: {e}"));
            return;
        }
        let e = engine.extracted();
        bump(&mut self.trace, id_state(&e.trace_state()));
        bump(&mut self.span, id_state(&e.span_state()));
        let level = match e.level {
            LevelState::Known(_) => "known".to_string(),
            LevelState::Absent => "absent".into(),
            LevelState::Unknown => {
                bump(&mut self.unknown_levels, e.level_raw().to_string());
                "unknown".into()
            }
        };
        bump(&mut self.level, level);
        bump(
            &mut self.duration,
            match e.duration {
                DurationState::Ms(_) => "valid",
                DurationState::Absent => "absent",
                DurationState::Invalid => "invalid",
            }
            .to_string(),
        );
        if let Some(i) = e.trace_source() {
            bump(&mut self.trace_src, self.table.trace_id[i].key.clone());
        }
        if let Some(i) = e.level_source() {
            bump(&mut self.level_src, self.table.level[i].key.clone());
        }
        let dur_alias = e.duration_source().map(|i| {
            (
                self.table.duration[i].key.clone(),
                self.table.duration[i].unit,
            )
        });
        if let Some((k, _)) = &dur_alias {
            bump(&mut self.duration_src, k.clone());
        }
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some((k, unit)) = dur_alias {
                if let Some(x) = bare_number(&v, &k) {
                    let e = self.dur_raw.entry(k).or_insert((unit, Vec::new()));
                    if e.1.len() < MAX_DURATION_SAMPLES {
                        e.1.push(x);
                    }
                }
            }
            for path in drift::uncovered_trace_ids(engine.policy().matcher(), &v) {
                bump(&mut self.uncovered_trace, path);
            }
            for path in drift::nested_json_candidates(engine.policy().matcher(), &v) {
                bump(&mut self.nested_candidates, path);
            }
            for (path, kind) in drift::uncovered(engine.policy().matcher(), &v) {
                match kind {
                    DriftKind::Duration => bump(&mut self.uncovered_duration, path),
                    DriftKind::Level => bump(&mut self.uncovered_level, path),
                }
            }
        }
    }

    /// Counts every line of a JSON-lines text.
    pub fn add_text(&mut self, engine: &mut Engine, text: &str) {
        for (n, line) in crate::lines(text) {
            self.add(engine, n, line);
        }
    }

    /// Duration aliases whose values look written in another unit.
    pub fn unit_suspects(&self) -> Vec<UnitSuspect> {
        self.dur_raw
            .iter()
            .filter_map(|(k, (u, v))| unit_suspect(k, *u, v))
            .collect()
    }

    fn nested_json_candidates_empty(&self) -> bool {
        self.nested_candidates.is_empty()
    }

    fn kept(&self) -> u64 {
        self.reasons
            .iter()
            .filter(|((_, k), _)| *k == "keep")
            .map(|(_, n)| n)
            .sum()
    }

    /// The report as `lockstep check --json` prints it.
    pub fn report(&self) -> Value {
        let kept = self.kept();
        let reasons: Vec<Value> = self
            .reasons
            .iter()
            .map(|((r, k), n)| json!({"reason": r, "decision": k, "records": n, "share_pct": pct(*n, self.records)}))
            .collect();
        json!({
            "records": self.records,
            "unreadable": self.unreadable,
            "first_unreadable": self.first_error,
            "kept": kept,
            "keep_pct": pct(kept, self.records),
            "trace_id": self.trace, "trace_id_from": self.trace_src,
            "span_id": self.span,
            "level": self.level, "level_from": self.level_src, "unknown_levels": self.unknown_levels,
            "duration": self.duration, "duration_from": self.duration_src,
            "uncovered_duration_fields": self.uncovered_duration,
            "uncovered_level_fields": self.uncovered_level,
            "uncovered_trace_id_fields": self.uncovered_trace,
            "nested_json_candidates": self.nested_candidates,
            "implausible_durations": self.unit_suspects().iter().map(|s| json!({
                "alias": s.alias,
                "unit": unit_name(s.unit),
                "records": s.records,
                "median": s.median_raw,
                "median_ms": crate::explain::round_ms(s.median_ms),
                "suggested_unit": unit_name(s.suggested),
                "suggested_median_ms": crate::explain::round_ms(s.suggested_ms),
                "hint": unit_hint(s),
            })).collect::<Vec<_>>(),
            "reasons": reasons,
        })
    }

    /// The report as `lockstep check` prints it for a terminal.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let kept = self.kept();
        let total = self.records;
        let _ = writeln!(
            o,
            "records: {}   unreadable: {}   kept: {} ({}%)",
            total,
            self.unreadable,
            kept,
            pct(kept, total)
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(o, "  first unreadable: {e}");
        }
        let mut section = |name: &str, m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, n)| format!("{k} {n} ({}%)", pct(*n, total)))
                .collect();
            let _ = writeln!(
                o,
                "{name:<12}{}",
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            );
        };
        section("trace_id:", &self.trace);
        section("  from:", &self.trace_src);
        section("span_id:", &self.span);
        section("level:", &self.level);
        section("  from:", &self.level_src);
        section("duration:", &self.duration);
        section("  from:", &self.duration_src);
        if !self.unknown_levels.is_empty() {
            let _ = writeln!(o, "DRIFT unknown level values (no level word or numeric scheme maps them; fix the service, or point the alias at a numeric scheme):");
            for (k, n) in &self.unknown_levels {
                let _ = writeln!(o, "  {k:?}: {n}");
            }
        }
        if !self.uncovered_duration.is_empty() {
            let _ = writeln!(
                o,
                "DRIFT duration-like fields no alias covers (latency rules cannot see them):"
            );
            for (k, n) in &self.uncovered_duration {
                let _ = writeln!(o, "  {k}: {n}");
            }
        }
        if !self.uncovered_level.is_empty() {
            let _ = writeln!(o, "DRIFT level-like fields no alias covers:");
            for (k, n) in &self.uncovered_level {
                let _ = writeln!(o, "  {k}: {n}");
            }
        }
        let suspects = self.unit_suspects();
        if !suspects.is_empty() {
            let _ = writeln!(
                o,
                "DRIFT implausible durations (read in the alias' unit, the median is no request's duration; latency rules misjudge them):"
            );
            for s in &suspects {
                let _ = writeln!(o, "  {}", unit_hint(s));
            }
        }
        if !self.uncovered_trace.is_empty() {
            let _ = writeln!(
                o,
                "DRIFT trace-id-like fields no alias covers (add one: lockstep.fields.trace_id, README \"Field aliases\"):"
            );
            for (k, n) in &self.uncovered_trace {
                let _ = writeln!(o, "  {k}: {n}");
            }
        }
        if !self.nested_json_candidates_empty() {
            let _ = writeln!(
                o,
                "DRIFT string fields holding a JSON object with known keys (read them with lockstep.fields.nested_json):"
            );
            for (k, n) in &self.nested_candidates {
                let _ = writeln!(
                    o,
                    "  {k}: {n}   e.g. lockstep: {{fields: {{nested_json: [{k}]}}}}"
                );
            }
        }
        let _ = writeln!(o, "decisions by reason:");
        for ((r, k), n) in &self.reasons {
            let _ = writeln!(o, "  {k:<5} {r:<20} {n:>8} ({}%)", pct(*n, total));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_and_reasons_are_counted() {
        let policy = Policy::default_policy();
        let mut engine = Engine::new(policy.clone());
        let mut c = Check::new(&policy);
        c.add_text(
            &mut engine,
            concat!(
                r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","level":"ERR","duration_ms":5}"#,
                "\n",
                r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4737","level":"info","upstream_ms":900}"#,
                "\n",
                r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4738","level":"loud","duration_ms":1}"#,
                "\n",
                "{not json\n",
            ),
        );
        let r = c.report();
        assert_eq!(r["records"], 4);
        assert_eq!(r["unreadable"], 1);
        assert!(
            r["first_unreadable"]
                .as_str()
                .unwrap()
                .starts_with("line 4: "),
            "{r}"
        );
        // The error line, and the unreadable one (on_error: keep, failing open).
        assert_eq!(r["kept"], 2, "{r}");
        assert_eq!(r["keep_pct"], 50.0);
        assert_eq!(r["unknown_levels"]["loud"], 1, "{r}");
        assert_eq!(r["uncovered_duration_fields"]["upstream_ms"], 1, "{r}");
        assert_eq!(r["duration_from"]["duration_ms"], 2, "{r}");
        let text = c.render_text();
        assert!(
            text.contains("DRIFT duration-like fields no alias covers"),
            "{text}"
        );
        assert!(text.contains("  upstream_ms: 1"), "{text}");
    }
}
