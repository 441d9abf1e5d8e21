//! The golden replay: a golden set's logs through the real filter `.wasm` in the
//! [`wasm`](crate::wasm) host, checked against each trace's decision computed
//! independently from its spans with the trace sampler's semantics.
//!
//! Trace side (no log-path code involved), for a collector policy: duration = latest
//! span end − earliest span start, truncated to ms; error if any span is `ERROR`;
//! probabilistic by the FNV rule; combined with the collector's precedence. For a Fluent
//! Bit policy (`processors:`), as Fluent Bit 5.1.1's `sampling` processor decides: every
//! processor in order must keep the trace; `probabilistic` by the first 8 bytes of the
//! id, big-endian, modulo 10^6 against the integer percentage; `tail` keeps the trace
//! when any span matches any condition, each span judged on its own duration (both
//! latency bounds inclusive) and status.
//!
//! A set with `kept_traces.jsonl` (the sampler's recorded decisions, for samplers whose
//! policies cannot be computed from the spans here: `rate_limiting`, span attributes) is
//! judged against those decisions instead.
//!
//! The log side is whatever the `.wasm` did. The 1:1 mapping holds when every kept trace
//! has a summary line kept and no kept line belongs to a dropped trace.

use crate::wasm::{FilterResult, HostAbort, WasmFilterHost};
use lockstep_policy::model::{LatencyThreshold, PolicyFile, PolicySpec};
use lockstep_policy::sampling;
use lockstep_record::drift::{self, DriftKind};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
pub struct Span {
    pub trace_id: String,
    #[serde(default)]
    pub span_id: String,
    #[serde(default)]
    pub parent_span_id: String,
    pub service: String,
    #[serde(default)]
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: String,
    /// Span attributes (`golden/unmirrorable`: `customer.tier`, which no log line has).
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// One line of `kept_traces.jsonl`: what the sampler decided for a trace, and by which
/// policy (the first that sampled it; none for a dropped trace).
#[derive(Debug, Clone, Deserialize)]
pub struct SamplerDecision {
    pub trace_id: String,
    pub kept: bool,
    #[serde(default)]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LineTruth {
    pub line: usize,
    pub trace_id: Option<String>,
    pub summary: bool,
    pub service: String,
}

/// A golden set on disk (see `golden/README.md`).
#[derive(Debug, Clone)]
pub struct GoldenSet {
    pub dir: PathBuf,
    pub spans: Vec<Span>,
    /// Each record's body as JSON text (`logs.jsonl`, or the bodies of `events.jsonl`).
    pub logs: Vec<String>,
    /// Each record's event metadata (`events.jsonl` only: OTLP-shaped sets, ids as
    /// `{"$bin": hex}`); empty for `logs.jsonl` sets.
    pub metadata: Vec<serde_json::Value>,
    /// Each record's group (`events.jsonl` only: the body of the group-start record of
    /// Fluent Bit's `opentelemetry` input, `{"resource": …, "scope": …}`), if any.
    pub groups: Vec<Option<serde_json::Value>>,
    pub lines: Vec<LineTruth>,
    pub policy: PolicyFile,
    /// `kept_traces.jsonl` when the set has one: the sampler's recorded decisions, which
    /// win over what the policy computes from the spans.
    pub sampler: Option<Vec<SamplerDecision>>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

pub const POLICY_FILE: &str = "lockstep-policy.yaml";
/// The sampler's recorded decisions (optional).
pub const KEPT_TRACES_FILE: &str = "kept_traces.jsonl";

impl GoldenSet {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let spans = read_jsonl(&dir.join("spans.jsonl"))?;
        let lines: Vec<LineTruth> = read_jsonl(&dir.join("lines.jsonl"))?;
        let logs_path = dir.join("logs.jsonl");
        let events_path = dir.join("events.jsonl");
        let (logs, metadata, groups) = if !logs_path.exists() && events_path.exists() {
            let events: Vec<serde_json::Value> = read_jsonl(&events_path)?;
            let mut logs = Vec::new();
            let mut meta = Vec::new();
            let mut groups = Vec::new();
            for (i, e) in events.into_iter().enumerate() {
                let (Some(m), Some(b)) = (e.get("metadata"), e.get("body")) else {
                    return Err(format!(
                        "{}:{}: an event needs `metadata` and `body`",
                        events_path.display(),
                        i + 1
                    ));
                };
                logs.push(b.to_string());
                meta.push(m.clone());
                groups.push(e.get("group").cloned());
            }
            (logs, meta, groups)
        } else {
            let logs: Vec<String> = std::fs::read_to_string(&logs_path)
                .map_err(|e| format!("{}: {e}", logs_path.display()))?
                .lines()
                .map(str::to_string)
                .collect();
            (logs, Vec::new(), Vec::new())
        };
        if logs.len() != lines.len() {
            return Err(format!(
                "{}: {} log lines but lines.jsonl describes {}",
                dir.display(),
                logs.len(),
                lines.len()
            ));
        }
        let pp = dir.join(POLICY_FILE);
        let text = std::fs::read_to_string(&pp).map_err(|e| format!("{}: {e}", pp.display()))?;
        let policy = lockstep_policy::parse_policy(
            &text,
            lockstep_policy::Format::Yaml,
            &pp.display().to_string(),
        )
        .map_err(|e| e.to_string())?;
        let kp = dir.join(KEPT_TRACES_FILE);
        let sampler = if kp.exists() {
            Some(read_jsonl::<SamplerDecision>(&kp)?)
        } else {
            None
        };
        Ok(GoldenSet {
            dir: dir.to_path_buf(),
            spans,
            logs,
            metadata,
            groups,
            lines,
            policy,
            sampler,
        })
    }

    /// Each trace's decision: the sampler's recorded one (`kept_traces.jsonl`), else
    /// computed from its spans alone.
    pub fn trace_decisions(&self) -> Result<HashMap<String, bool>, String> {
        let Some(recorded) = &self.sampler else {
            return self.computed_decisions();
        };
        let mut out = HashMap::new();
        for d in recorded {
            hex16(&d.trace_id)?;
            if out
                .insert(d.trace_id.to_ascii_lowercase(), d.kept)
                .is_some()
            {
                return Err(format!("{KEPT_TRACES_FILE}: trace {} twice", d.trace_id));
            }
        }
        if let Some(s) = self.spans.iter().find(|s| !out.contains_key(&s.trace_id)) {
            return Err(format!(
                "{KEPT_TRACES_FILE}: no decision for trace {} of spans.jsonl",
                s.trace_id
            ));
        }
        Ok(out)
    }

    /// The spans of each trace the sampler kept, in the order of each trace's first span
    /// in `spans.jsonl`: what the sampler exports (to the decision feed among others).
    pub fn kept_spans(&self) -> Result<Vec<(String, Vec<&Span>)>, String> {
        let decisions = self.trace_decisions()?;
        let mut order: Vec<String> = Vec::new();
        let mut by: HashMap<&str, Vec<&Span>> = HashMap::new();
        for s in &self.spans {
            if decisions.get(&s.trace_id) != Some(&true) {
                continue;
            }
            let e = by.entry(&s.trace_id).or_default();
            if e.is_empty() {
                order.push(s.trace_id.clone());
            }
            e.push(s);
        }
        Ok(order
            .into_iter()
            .map(|t| {
                let spans = by.remove(t.as_str()).unwrap_or_default();
                (t, spans)
            })
            .collect())
    }

    /// Each trace's decision from its spans alone.
    pub fn computed_decisions(&self) -> Result<HashMap<String, bool>, String> {
        if let Some(procs) = &self.policy.processors {
            return fluent_bit_decisions(&self.spans, &procs.traces);
        }
        let mut by: HashMap<&str, (u64, u64, BTreeSet<&str>)> = HashMap::new();
        for s in &self.spans {
            let e = by
                .entry(&s.trace_id)
                .or_insert((u64::MAX, 0, BTreeSet::new()));
            e.0 = e.0.min(s.start_ns);
            e.1 = e.1.max(s.end_ns);
            e.2.insert(&s.status);
        }
        let inclusive = self
            .policy
            .lockstep
            .as_ref()
            .is_some_and(|l| l.latency_threshold == LatencyThreshold::Inclusive);
        let mut out = HashMap::new();
        for (t, (start, end, statuses)) in by {
            let tr = Trace {
                id: hex16(t)?,
                dur_ms: ((end.saturating_sub(start)) / 1_000_000) as i64,
                statuses,
                inclusive,
            };
            let mut sampled = false;
            let mut dropped = false;
            for p in &self.policy.policies {
                match eval(p, &tr)? {
                    V::Sampled => sampled = true,
                    V::Dropped => dropped = true,
                    V::Not => {}
                }
            }
            out.insert(t.to_string(), sampled && !dropped);
        }
        Ok(out)
    }
}

/// Fluent Bit 5.1.1's `sampling` processors over the spans (see the module doc).
fn fluent_bit_decisions(
    spans: &[Span],
    processors: &[serde_json::Value],
) -> Result<HashMap<String, bool>, String> {
    let mut by: HashMap<&str, Vec<&Span>> = HashMap::new();
    for s in spans {
        by.entry(&s.trace_id).or_default().push(s);
    }
    let mut out = HashMap::new();
    for (t, spans) in by {
        let id = hex16(t)?;
        let mut keep = true;
        for p in processors {
            if !p["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("sampling"))
            {
                continue;
            }
            keep &= match p["type"].as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("probabilistic") => {
                    let pct = &p["sampling_settings"]["sampling_percentage"];
                    // plain integers (what the golden configs use); a float is truncated
                    let pct = pct
                        .as_f64()
                        .map(|f| f as i64)
                        .or_else(|| pct.as_str().and_then(|s| s.trim().parse().ok()))
                        .unwrap_or(10);
                    let mut first8 = [0u8; 8];
                    first8.copy_from_slice(&id[..8]);
                    let n = u64::from_be_bytes(first8);
                    ((n % 1_000_000) as f64 / 10_000.0) < pct as f64
                }
                Some("tail") => {
                    let conds = p["conditions"].as_array().cloned().unwrap_or_default();
                    let mut any = conds.is_empty();
                    for s in &spans {
                        for c in &conds {
                            any |= span_matches(s, c)?;
                        }
                    }
                    any
                }
                other => return Err(format!("sampling type {other:?} in the golden policy")),
            };
        }
        out.insert(t.to_string(), keep);
    }
    Ok(out)
}

fn span_matches(s: &Span, c: &serde_json::Value) -> Result<bool, String> {
    Ok(match c["type"].as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("status_code") => c["status_codes"]
            .as_array()
            .ok_or("status_code without status_codes")?
            .iter()
            .any(|code| code.as_str().is_some_and(|x| x.eq_ignore_ascii_case(&s.status))),
        Some("latency") => {
            if s.start_ns > s.end_ns {
                return Ok(false);
            }
            let d = (s.end_ns - s.start_ns) / 1_000_000;
            let low = c["threshold_ms_low"].as_u64().unwrap_or(0);
            let high = c["threshold_ms_high"].as_u64().unwrap_or(0);
            (low != 0 && d <= low) || (high != 0 && d >= high)
        }
        other => {
            return Err(format!(
                "the golden truth evaluates span-level conditions only; {other:?} needs span attributes"
            ))
        }
    })
}

fn hex16(s: &str) -> Result<[u8; 16], String> {
    let mut b = [0u8; 16];
    if s.len() != 32 {
        return Err(format!("span trace id {s:?} is not 32 hex"));
    }
    for i in 0..16 {
        b[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("span trace id {s:?} is not hex"))?;
    }
    Ok(b)
}

struct Trace<'a> {
    id: [u8; 16],
    dur_ms: i64,
    statuses: BTreeSet<&'a str>,
    inclusive: bool,
}

#[derive(PartialEq)]
enum V {
    Sampled,
    Not,
    Dropped,
}

fn eval(p: &PolicySpec, t: &Trace<'_>) -> Result<V, String> {
    let s = |b: bool| if b { V::Sampled } else { V::Not };
    Ok(match p.kind.as_str() {
        "always_sample" => V::Sampled,
        "latency" => {
            let c = p.latency.as_ref().ok_or("latency without config")?;
            let above = if t.inclusive {
                t.dur_ms >= c.threshold_ms
            } else {
                t.dur_ms > c.threshold_ms
            };
            s(above && (c.upper_threshold_ms == 0 || t.dur_ms <= c.upper_threshold_ms))
        }
        "status_code" => {
            let c = p.status_code.as_ref().ok_or("status_code without config")?;
            s(c.status_codes
                .iter()
                .any(|code| t.statuses.contains(code.as_str())))
        }
        "probabilistic" => {
            let c = p
                .probabilistic
                .as_ref()
                .ok_or("probabilistic without config")?;
            let salt = if c.hash_salt.is_empty() {
                sampling::DEFAULT_SALT
            } else {
                &c.hash_salt
            };
            s(sampling::hash_trace_id(salt.as_bytes(), &t.id)
                <= sampling::threshold(c.sampling_percentage))
        }
        "and" => {
            let subs = &p.and.as_ref().ok_or("and without config")?.and_sub_policy;
            let mut all = true;
            for x in subs {
                all &= eval(x, t)? == V::Sampled;
            }
            s(all)
        }
        "not" => match eval(
            &p.not.as_ref().ok_or("not without config")?.not_sub_policy,
            t,
        )? {
            V::Sampled => V::Not,
            V::Not => V::Sampled,
            V::Dropped => V::Dropped,
        },
        "drop" => {
            let subs = &p
                .drop
                .as_ref()
                .ok_or("drop without config")?
                .drop_sub_policy;
            let mut all = true;
            for x in subs {
                all &= eval(x, t)? == V::Sampled;
            }
            if all {
                V::Dropped
            } else {
                V::Not
            }
        }
        other => {
            return Err(format!(
            "the golden truth evaluates span-level policies only; {other:?} needs span attributes"
        ))
        }
    })
}

/// What a replay found.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub records_in: usize,
    pub kept: usize,
    pub dropped: usize,
    /// (reason, keep|drop) → records.
    pub by_reason: BTreeMap<(String, &'static str), usize>,
    pub traces: usize,
    pub traces_kept: usize,
    /// Kept traces whose summary line was dropped.
    pub orphan_traces: Vec<String>,
    /// Kept lines (1-based) that belong to a dropped trace.
    pub orphan_logs: Vec<usize>,
    /// Lines where the `.wasm` and the native filter disagreed.
    pub disagreements: Vec<usize>,
    /// Detail lines of kept traces that were dropped (they came before the deciding line).
    pub early_details_dropped: usize,
    /// service → role → alias key that supplied it.
    pub sources: BTreeMap<String, BTreeMap<&'static str, BTreeSet<String>>>,
    /// (service, field, kind) → lines: fields no alias covers.
    pub drift: BTreeMap<(String, String, String), usize>,
    /// (service, value) → lines: level values nobody maps.
    pub unknown_levels: BTreeMap<(String, String), usize>,
    /// The module's stderr.
    pub module_stderr: String,
}

impl ReplayReport {
    /// The 1:1 mapping holds.
    pub fn ok(&self) -> bool {
        self.orphan_traces.is_empty()
            && self.orphan_logs.is_empty()
            && self.disagreements.is_empty()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "records in: {}   kept: {}   dropped: {}",
            self.records_in, self.kept, self.dropped
        );
        for ((r, k), n) in &self.by_reason {
            let _ = writeln!(s, "  {k:<5} {r:<20} {n:>6}");
        }
        let _ = writeln!(
            s,
            "traces: {} ({} kept by the trace sampler)",
            self.traces, self.traces_kept
        );
        let _ = writeln!(
            s,
            "orphan traces (kept trace, summary line dropped): {}",
            self.orphan_traces.len()
        );
        for t in &self.orphan_traces {
            let _ = writeln!(s, "  {t}");
        }
        let _ = writeln!(
            s,
            "orphan logs (kept line of a dropped trace): {}",
            self.orphan_logs.len()
        );
        for l in &self.orphan_logs {
            let _ = writeln!(s, "  line {l}");
        }
        if !self.disagreements.is_empty() {
            let _ = writeln!(
                s,
                "the .wasm and the native filter disagree on lines {:?}",
                self.disagreements
            );
        }
        let _ = writeln!(
            s,
            "detail lines of kept traces dropped before their deciding line: {}",
            self.early_details_dropped
        );
        let _ = writeln!(s, "fields read, per service:");
        for (svc, roles) in &self.sources {
            let parts: Vec<String> = roles
                .iter()
                .map(|(r, keys)| {
                    format!(
                        "{r} from {}",
                        keys.iter().cloned().collect::<Vec<_>>().join("|")
                    )
                })
                .collect();
            let _ = writeln!(s, "  {svc}: {}", parts.join("; "));
        }
        if self.drift.is_empty() && self.unknown_levels.is_empty() {
            let _ = writeln!(s, "drift: none");
        }
        for ((svc, field, kind), n) in &self.drift {
            let _ = writeln!(
                s,
                "DRIFT {svc}: {kind}-like field {field:?} matches no alias ({n} lines)"
            );
        }
        for ((svc, v), n) in &self.unknown_levels {
            let _ = writeln!(s, "DRIFT {svc}: unknown level {v:?} ({n} lines)");
        }
        let _ = writeln!(
            s,
            "1:1 mapping: {}",
            if self.ok() { "holds" } else { "BROKEN" }
        );
        s
    }
}

/// Replays the set through `host` (a fresh host whose `Accessible_Paths` hold the set's
/// policy) in chunks of `chunk` records.
pub fn replay(
    set: &GoldenSet,
    host: &mut WasmFilterHost,
    chunk: usize,
) -> Result<ReplayReport, String> {
    let decisions = set.trace_decisions()?;
    let pp = set.dir.join(POLICY_FILE);
    let policy = lockstep_policy::load_policy(&pp).map_err(|e| e.to_string())?;
    let table = policy.matcher().table().clone();
    let mut native = lockstep_filter::Filter::new(policy.clone());
    let mut extractor = policy.extractor();
    let mut r = ReplayReport {
        traces: decisions.len(),
        traces_kept: decisions.values().filter(|k| **k).count(),
        ..Default::default()
    };
    let mut summary_kept: HashMap<&str, bool> = HashMap::new();
    for (i, (text, truth)) in set.logs.iter().zip(&set.lines).enumerate() {
        if i % chunk.max(1) == 0 {
            host.begin_chunk();
        }
        r.records_in += 1;
        // The host hands the filter its own msgpack→JSON rendering: compact JSON.
        let host_text = serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| text.clone());
        let kept = match host
            .filter_text("golden", (0, 0), &host_text)
            .map_err(|HostAbort(m)| m)?
        {
            FilterResult::Kept(_) => true,
            FilterResult::Dropped => false,
        };
        let native_kept = !matches!(
            native.process(host_text.as_bytes()),
            lockstep_filter::Outcome::Drop
        );
        if native_kept != kept {
            r.disagreements.push(truth.line);
        }
        *r.by_reason
            .entry((
                native.last_reason().to_string(),
                if kept { "keep" } else { "drop" },
            ))
            .or_default() += 1;
        if kept {
            r.kept += 1;
        } else {
            r.dropped += 1;
        }
        if let Some(t) = &truth.trace_id {
            let trace_kept = decisions
                .get(t)
                .copied()
                .ok_or_else(|| format!("line {}: trace {t} has no spans", truth.line))?;
            if kept && !trace_kept {
                r.orphan_logs.push(truth.line);
            }
            if truth.summary {
                // A trace can have one summary line per span (Fluent Bit sets): one kept is enough.
                *summary_kept.entry(t).or_default() |= kept;
            } else if trace_kept && !kept {
                r.early_details_dropped += 1;
            }
        }
        // Drift and sources, per service.
        if let Ok(e) = extractor.extract_json(host_text.as_bytes()) {
            let src = r.sources.entry(truth.service.clone()).or_default();
            if let Some(i) = e.trace_source() {
                src.entry("trace_id")
                    .or_default()
                    .insert(table.trace_id[i].key.clone());
            }
            if let Some(i) = e.level_source() {
                src.entry("level")
                    .or_default()
                    .insert(table.level[i].key.clone());
            }
            if let Some(i) = e.duration_source() {
                src.entry("duration")
                    .or_default()
                    .insert(table.duration[i].key.clone());
            }
            if e.level == lockstep_record::LevelState::Unknown {
                *r.unknown_levels
                    .entry((truth.service.clone(), e.level_raw().to_string()))
                    .or_default() += 1;
            }
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&host_text) {
            for (field, kind) in drift::uncovered(extractor.matcher(), &v) {
                let k = match kind {
                    DriftKind::Duration => "duration",
                    DriftKind::Level => "level",
                };
                *r.drift
                    .entry((truth.service.clone(), field, k.to_string()))
                    .or_default() += 1;
            }
        }
    }
    for (t, keep) in &decisions {
        if *keep && !summary_kept.get(t.as_str()).copied().unwrap_or(false) {
            r.orphan_traces.push(t.clone());
        }
    }
    r.orphan_traces.sort();
    r.module_stderr = host.stderr();
    Ok(r)
}
