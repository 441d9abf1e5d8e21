//! The golden replay through the output: a golden set's records (bodies, and the event
//! metadata of OTLP-shaped sets) through the real `lockstep_out_loki.so` in the proxy
//! host, with the set's policy as `policy_file` (sampling by whole trace, no filter),
//! into a Loki. Then completeness against the trace-side truth
//! ([`GoldenSet::trace_decisions`]): every line of every kept trace stored, no line of a
//! dropped trace, and what the filter alone would have kept of the same lines.
//!
//! Each record carries its golden line number in the key `golden_line`, which the output
//! moves into structured metadata (and so out of the line), so a stored entry names the
//! line it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmpv::Value;

use crate::golden::{GoldenSet, POLICY_FILE};
use crate::proxy::{ChunkBuilder, FlushCode, HostOptions, LogSource, ProxyHost};

/// JSON to msgpack as Fluent Bit holds it; `{"$bin": "<hex>"}` is a msgpack bin (the
/// form OTLP ids take in the `opentelemetry` input's metadata).
pub fn to_rmpv(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => Value::F64(f),
            _ => Value::Nil,
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(to_rmpv).collect()),
        J::Object(o) => {
            if let (1, Some(J::String(hex))) = (o.len(), o.get("$bin")) {
                let bytes = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                return Value::Binary(bytes);
            }
            Value::Map(
                o.iter()
                    .map(|(k, v)| (Value::from(k.as_str()), to_rmpv(v)))
                    .collect(),
            )
        }
    }
}

/// How to run the replay.
#[derive(Debug, Clone)]
pub struct OutputReplay {
    pub plugin: PathBuf,
    /// The push URL (or a base URL without a path).
    pub url: String,
    /// Scratch directory for the queue (created, not removed).
    pub work: PathBuf,
    pub decision_wait: Duration,
    /// Records per flush.
    pub chunk: usize,
    /// Static labels (`job=…, run=…`).
    pub labels: String,
}

/// What the replay found.
#[derive(Debug, Clone, Default)]
pub struct OutputReport {
    pub records_in: usize,
    pub traces: usize,
    pub traces_kept: usize,
    pub kept_trace_lines: usize,
    pub kept_trace_lines_stored: usize,
    pub dropped_trace_lines: usize,
    pub dropped_trace_lines_stored: usize,
    pub untraced_lines: usize,
    pub untraced_lines_stored: usize,
    /// Entries stored more than once (beyond the first).
    pub duplicates: usize,
    /// Lines of kept traces not stored; lines of dropped traces stored.
    pub missing: Vec<usize>,
    pub leaked: Vec<usize>,
    /// Of the kept traces' lines, how many the filter alone (each line decided alone,
    /// kept-trace memory on, the body only as `filter_wasm` hands it) would keep.
    pub filter_alone_kept: usize,
    /// The plugin's warnings and errors.
    pub plugin_log: Vec<String>,
    pub flush_seconds: f64,
}

impl OutputReport {
    /// Every line of every kept trace stored, none of a dropped trace.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.leaked.is_empty()
    }

    pub fn render(&self) -> String {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        let mut s = String::new();
        s.push_str(&format!(
            "records in: {}; traces: {} ({} kept by the trace sampler)\n",
            self.records_in, self.traces, self.traces_kept
        ));
        s.push_str(&format!(
            "lines of kept traces: {} of {} stored ({:.1} %); the filter alone keeps {} of them ({:.1} %)\n",
            self.kept_trace_lines_stored,
            self.kept_trace_lines,
            pct(self.kept_trace_lines_stored, self.kept_trace_lines),
            self.filter_alone_kept,
            pct(self.filter_alone_kept, self.kept_trace_lines),
        ));
        s.push_str(&format!(
            "lines of dropped traces: {} of {} stored\n",
            self.dropped_trace_lines_stored, self.dropped_trace_lines
        ));
        s.push_str(&format!(
            "lines with no trace: {} of {} stored (each decided alone)\n",
            self.untraced_lines_stored, self.untraced_lines
        ));
        if self.duplicates > 0 {
            s.push_str(&format!("duplicate entries: {}\n", self.duplicates));
        }
        if !self.missing.is_empty() {
            s.push_str(&format!(
                "MISSING lines of kept traces: {:?}\n",
                first(&self.missing)
            ));
        }
        if !self.leaked.is_empty() {
            s.push_str(&format!(
                "LEAKED lines of dropped traces: {:?}\n",
                first(&self.leaked)
            ));
        }
        for l in &self.plugin_log {
            s.push_str(&format!("plugin: {l}\n"));
        }
        s.push_str(if self.complete() {
            "COMPLETE: every line of every kept trace, no line of a dropped trace\n"
        } else {
            "INCOMPLETE\n"
        });
        s
    }
}

fn first(v: &[usize]) -> &[usize] {
    &v[..v.len().min(20)]
}

/// Flushes the set through the plugin, waits `decision_wait`, stops the host (its exit
/// decides what is due and delivers it), then asks `stored` for the golden line numbers
/// the Loki holds (one per entry) and compares.
pub fn replay_output(
    set: &GoldenSet,
    opts: &OutputReplay,
    stored: impl Fn(usize) -> Result<Vec<usize>, String>,
) -> Result<OutputReport, String> {
    let decisions = set.trace_decisions()?;
    let policy_path = set.dir.join(POLICY_FILE);
    std::fs::create_dir_all(&opts.work).map_err(|e| format!("{}: {e}", opts.work.display()))?;
    let spool = opts.work.join("spool");
    let s = |p: &Path| p.display().to_string();
    let wait = format!("{}ms", opts.decision_wait.as_millis());
    let mut host =
        ProxyHost::load(&opts.plugin, HostOptions::default()).map_err(|e| e.to_string())?;
    host.add_output(
        "lockstep_loki",
        &[
            ("match", "*"),
            ("url", &opts.url),
            ("spool_dir", &s(&spool)),
            ("policy_file", &s(&policy_path)),
            ("decision_wait", &wait),
            ("labels", &opts.labels),
            (
                "structured_metadata",
                "golden_line=$golden_line, trace_id=$trace_id",
            ),
            ("line_format", "json"),
            ("linger", "100ms"),
            ("shutdown_grace", "30s"),
        ],
    )
    .map_err(|e| e.to_string())?;
    let plugin_log = |host: &mut ProxyHost| -> Vec<String> {
        host.take_logs()
            .into_iter()
            .filter(|l| l.source == LogSource::Plugin && l.level <= 2)
            .map(|l| l.message)
            .collect()
    };
    if let Err(e) = host.start() {
        return Err(format!("{e}: {:?}", plugin_log(&mut host)));
    }
    let now = lockstep_spool_now();
    let n = set.logs.len();
    let t0 = now - n as u64 * 1_000_000;
    let started = Instant::now();
    for (c, idx) in (0..n)
        .collect::<Vec<_>>()
        .chunks(opts.chunk.max(1))
        .enumerate()
    {
        let mut b = ChunkBuilder::new();
        for &i in idx {
            let mut body: serde_json::Value =
                serde_json::from_str(&set.logs[i]).map_err(|e| format!("line {}: {e}", i + 1))?;
            if let Some(o) = body.as_object_mut() {
                o.insert("golden_line".into(), serde_json::json!(i + 1));
            }
            let meta = set
                .metadata
                .get(i)
                .map(to_rmpv)
                .unwrap_or_else(|| Value::Map(vec![]));
            let ts = t0 + i as u64 * 1_000_000;
            b = b.record(
                (ts / 1_000_000_000) as u32,
                (ts % 1_000_000_000) as u32,
                meta,
                to_rmpv(&body),
            );
        }
        let r = host
            .flush(0, "golden", &b.build())
            .map_err(|e| e.to_string())?;
        if r.code != FlushCode::Ok {
            return Err(format!(
                "flush {c} answered {:?}: {:?}",
                r.code,
                plugin_log(&mut host)
            ));
        }
    }
    let flush_seconds = started.elapsed().as_secs_f64();
    // Every trace is due decision_wait after its first line; the exit's last round
    // decides them and the drain delivers before it returns.
    std::thread::sleep(opts.decision_wait + Duration::from_millis(200));
    host.shutdown(false);
    let log = plugin_log(&mut host);
    drop(host);

    let mut r = OutputReport {
        records_in: n,
        traces: decisions.len(),
        traces_kept: decisions.values().filter(|k| **k).count(),
        plugin_log: log,
        flush_seconds,
        ..Default::default()
    };
    let want: usize = set
        .lines
        .iter()
        .filter(|l| {
            l.trace_id
                .as_ref()
                .is_some_and(|t| decisions.get(t) == Some(&true))
        })
        .count();
    let got = stored(want)?;
    let mut count: BTreeMap<usize, usize> = BTreeMap::new();
    for g in got {
        *count.entry(g).or_default() += 1;
    }
    r.duplicates = count.values().map(|c| c - 1).sum();
    let policy = lockstep_policy::load_policy(&policy_path).map_err(|e| e.to_string())?;
    let mut filter = lockstep_filter::Filter::new(policy);
    for (i, truth) in set.lines.iter().enumerate() {
        let line = i + 1;
        let is_stored = count.contains_key(&line);
        let host_text = serde_json::from_str::<serde_json::Value>(&set.logs[i])
            .map(|v| v.to_string())
            .unwrap_or_else(|_| set.logs[i].clone());
        let filter_keeps = !matches!(
            filter.process(host_text.as_bytes()),
            lockstep_filter::Outcome::Drop
        );
        match truth.trace_id.as_ref().map(|t| decisions.get(t).copied()) {
            None => {
                r.untraced_lines += 1;
                r.untraced_lines_stored += usize::from(is_stored);
            }
            Some(None) => return Err(format!("line {line}: its trace has no spans")),
            Some(Some(true)) => {
                r.kept_trace_lines += 1;
                r.filter_alone_kept += usize::from(filter_keeps);
                if is_stored {
                    r.kept_trace_lines_stored += 1;
                } else {
                    r.missing.push(line);
                }
            }
            Some(Some(false)) => {
                r.dropped_trace_lines += 1;
                if is_stored {
                    r.dropped_trace_lines_stored += 1;
                    r.leaked.push(line);
                }
            }
        }
    }
    Ok(r)
}

fn lockstep_spool_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Golden line numbers of the entries a [`crate::loki_receiver::LokiReceiver`] holds for
/// tenant `fake` (waiting up to 10 s for `want` of them).
pub fn receiver_lines(
    rx: &crate::loki_receiver::LokiReceiver,
    want: usize,
) -> Result<Vec<usize>, String> {
    rx.wait_for(want as u64, Duration::from_secs(10));
    let mut out = Vec::new();
    for entries in rx.entries("fake").values() {
        for e in entries {
            let g = e
                .structured_metadata
                .iter()
                .find(|(k, _)| k == "golden_line")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| format!("an entry without golden_line: {}", e.line))?;
            out.push(g);
        }
    }
    Ok(out)
}
