//! The golden replay through the output: a golden set's records (bodies, and the event
//! metadata of OTLP-shaped sets) through the real `lockstep_out_loki.so` in the proxy
//! host, with the set's policy as `policy_file` (sampling by whole trace, no filter),
//! into a Loki. Then completeness against the trace-side truth
//! ([`GoldenSet::trace_decisions`]): every line of every kept trace stored, no line of a
//! dropped trace, and what the filter alone would have kept of the same lines.
//!
//! With [`Decisions::Feed`] the plugin gets no `policy_file` but a `decision_feed`, and
//! the replay plays the sampler: right after the chunk that holds a kept trace's last
//! line it POSTs that trace's spans (from `spans.jsonl`) to the feed as an OTLP/HTTP
//! protobuf `ExportTraceServiceRequest`, as a Collector's `otlp_http` exporter would after
//! `tail_sampling` (each answer must be 200). Lines of a kept trace wait for the report
//! and are released at once; a dropped trace is never reported, and its lines are
//! dropped `decision_wait` after its first line. Which traces are kept: the set's
//! `kept_traces.jsonl` (the sampler's own decisions), else what its policy decides from
//! the spans.
//!
//! Each record carries its golden line number in the key `golden_line`, which the output
//! moves into structured metadata (and so out of the line), so a stored entry names the
//! line it came from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmpv::Value;

use crate::golden::{GoldenSet, Span, POLICY_FILE};
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

/// Who decides in the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decisions {
    /// `policy_file` = the set's `lockstep-policy.yaml` (the mirror of the sampler).
    #[default]
    Policy,
    /// `decision_feed` (no `policy_file`): the sampler's exports of the kept traces.
    Feed,
}

/// What the replay found.
#[derive(Debug, Clone, Default)]
pub struct OutputReport {
    pub decisions: Decisions,
    /// Feed: export requests sent (each answered 200) and the trace ids they reported.
    pub feed_requests: usize,
    pub feed_traces: usize,
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
    /// Kept traces with a line not stored; dropped traces with a line stored (the
    /// orphans in both directions, by trace).
    pub missing_traces: usize,
    pub leaked_traces: usize,
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
        s.push_str(&match self.decisions {
            Decisions::Policy => "decided by: policy_file (the mirror of the sampler's policy)\n".to_string(),
            Decisions::Feed => format!(
                "decided by: decision_feed ({} trace ids reported in {} OTLP export requests, each answered 200)\n",
                self.feed_traces, self.feed_requests
            ),
        });
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
        s.push_str(&format!(
            "orphans: {} lines of {} kept traces not stored; {} lines of {} dropped traces stored\n",
            self.missing.len(),
            self.missing_traces,
            self.leaked.len(),
            self.leaked_traces
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

/// [`replay_output_with`] with the set's policy as `policy_file`.
pub fn replay_output(
    set: &GoldenSet,
    opts: &OutputReplay,
    stored: impl Fn(usize) -> Result<Vec<usize>, String>,
) -> Result<OutputReport, String> {
    replay_output_with(set, opts, Decisions::Policy, stored)
}

/// Flushes the set through the plugin (with the feed: reporting each kept trace right
/// after the chunk holding its last line), waits `decision_wait`, stops the host (its
/// exit decides what is due and delivers it), then asks `stored` for the golden line
/// numbers the Loki holds (one per entry) and compares.
pub fn replay_output_with(
    set: &GoldenSet,
    opts: &OutputReplay,
    how: Decisions,
    stored: impl Fn(usize) -> Result<Vec<usize>, String>,
) -> Result<OutputReport, String> {
    let decisions = set.trace_decisions()?;
    let policy_path = set.dir.join(POLICY_FILE);
    std::fs::create_dir_all(&opts.work).map_err(|e| format!("{}: {e}", opts.work.display()))?;
    let spool = opts.work.join("spool");
    let s = |p: &Path| p.display().to_string();
    let wait = format!("{}ms", opts.decision_wait.as_millis());
    let feed_port = crate::free_port();
    let port_s = feed_port.to_string();
    let policy_s = s(&policy_path);
    let spool_s = s(&spool);
    let mut keys: Vec<(&str, &str)> = vec![
        ("match", "*"),
        ("url", &opts.url),
        ("spool_dir", &spool_s),
        ("decision_wait", &wait),
        ("labels", &opts.labels),
        (
            "structured_metadata",
            "golden_line=$golden_line, trace_id=$trace_id",
        ),
        ("line_format", "json"),
        ("linger", "100ms"),
        ("shutdown_grace", "30s"),
    ];
    match how {
        Decisions::Policy => keys.push(("policy_file", &policy_s)),
        Decisions::Feed => {
            keys.push(("decision_feed", &port_s));
            keys.push(("decision_source", "feed"));
        }
    }
    // Feed: each kept trace's spans, reported after the chunk that holds its last line
    // (kept traces with no line are reported after the last chunk).
    let kept_spans = if how == Decisions::Feed {
        set.kept_spans()?
    } else {
        Vec::new()
    };
    let mut last_line: HashMap<&str, usize> = HashMap::new();
    for (i, l) in set.lines.iter().enumerate() {
        if let Some(t) = &l.trace_id {
            last_line.insert(t.as_str(), i);
        }
    }
    let mut host =
        ProxyHost::load(&opts.plugin, HostOptions::default()).map_err(|e| e.to_string())?;
    host.add_output("lockstep_loki", &keys)
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
    let mut feed_requests = 0;
    let mut feed_traces = 0;
    let mut report = |batch: &[&(String, Vec<&Span>)]| -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let spans: Vec<&Span> = batch.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        post_traces(feed_port, &otlp_export_request(&spans)?)?;
        feed_requests += 1;
        feed_traces += batch.len();
        Ok(())
    };
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
        // The OTLP group (resource, scope) open in this chunk, as Fluent Bit's
        // `opentelemetry` input frames its records.
        let mut open: Option<&serde_json::Value> = None;
        for &i in idx {
            let group = set.groups.get(i).and_then(|g| g.as_ref());
            if group != open {
                if open.is_some() {
                    b = b.group_end();
                }
                if let Some(g) = group {
                    b = b.group_start(
                        to_rmpv(
                            &serde_json::json!({"schema": "otlp", "resource_id": 0, "scope_id": 0}),
                        ),
                        to_rmpv(g),
                    );
                }
                open = group;
            }
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
        if open.is_some() {
            b = b.group_end();
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
        let (lo, hi) = (idx[0], idx[idx.len() - 1]);
        let due: Vec<_> = kept_spans
            .iter()
            .filter(|(t, _)| {
                last_line
                    .get(t.as_str())
                    .is_some_and(|&l| (lo..=hi).contains(&l))
            })
            .collect();
        report(&due)?;
    }
    let lineless: Vec<_> = kept_spans
        .iter()
        .filter(|(t, _)| !last_line.contains_key(t.as_str()))
        .collect();
    report(&lineless)?;
    let flush_seconds = started.elapsed().as_secs_f64();
    // Every trace is due decision_wait after its first line; the exit's last round
    // decides them and the drain delivers before it returns.
    std::thread::sleep(opts.decision_wait + Duration::from_millis(200));
    host.shutdown(false);
    let log = plugin_log(&mut host);
    drop(host);

    let mut r = OutputReport {
        decisions: how,
        feed_requests,
        feed_traces,
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
    let mut missing_traces = BTreeSet::new();
    let mut leaked_traces = BTreeSet::new();
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
                    missing_traces.insert(truth.trace_id.clone());
                }
            }
            Some(Some(false)) => {
                r.dropped_trace_lines += 1;
                if is_stored {
                    r.dropped_trace_lines_stored += 1;
                    r.leaked.push(line);
                    leaked_traces.insert(truth.trace_id.clone());
                }
            }
        }
    }
    r.missing_traces = missing_traces.len();
    r.leaked_traces = leaked_traces.len();
    Ok(r)
}

/// An OTLP `ExportTraceServiceRequest` (protobuf) holding these spans: one
/// `ResourceSpans` per service (`service.name`), one `ScopeSpans`, each span with its
/// ids, name, times, status and string attributes. Hand-encoded: field numbers from
/// opentelemetry-proto (`trace/v1/trace.proto`, `common/v1/common.proto`).
pub fn otlp_export_request(spans: &[&Span]) -> Result<Vec<u8>, String> {
    let mut by_service: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        by_service.entry(&s.service).or_default().push(s);
    }
    let mut req = Vec::new();
    for (service, spans) in by_service {
        let mut resource = Vec::new();
        pb_bytes(&mut resource, 1, &pb_string_kv("service.name", service));
        let mut scope = Vec::new();
        let mut name = Vec::new();
        pb_bytes(&mut name, 1, b"golden");
        pb_bytes(&mut scope, 1, &name);
        for s in spans {
            let mut span = Vec::new();
            pb_bytes(&mut span, 1, &hex_bytes(&s.trace_id, 16)?);
            pb_bytes(&mut span, 2, &hex_bytes(&s.span_id, 8)?);
            if !s.parent_span_id.is_empty() {
                pb_bytes(&mut span, 4, &hex_bytes(&s.parent_span_id, 8)?);
            }
            pb_bytes(&mut span, 5, s.name.as_bytes());
            // SPAN_KIND_SERVER for roots, CLIENT for the calls under them
            pb_varint_field(
                &mut span,
                6,
                if s.parent_span_id.is_empty() { 2 } else { 3 },
            );
            pb_fixed64(&mut span, 7, s.start_ns);
            pb_fixed64(&mut span, 8, s.end_ns);
            for (k, v) in &s.attributes {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                pb_bytes(&mut span, 9, &pb_string_kv(k, &text));
            }
            let code = match s.status.as_str() {
                "OK" => 1,
                "ERROR" => 2,
                _ => 0,
            };
            if code != 0 {
                let mut status = Vec::new();
                pb_varint_field(&mut status, 3, code);
                pb_bytes(&mut span, 15, &status);
            }
            pb_bytes(&mut scope, 2, &span);
        }
        let mut rs = Vec::new();
        pb_bytes(&mut rs, 1, &resource);
        pb_bytes(&mut rs, 2, &scope);
        pb_bytes(&mut req, 1, &rs);
    }
    Ok(req)
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    pb_varint(out, field << 3 | 2);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn pb_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    pb_varint(out, field << 3);
    pb_varint(out, v);
}

fn pb_fixed64(out: &mut Vec<u8>, field: u64, v: u64) {
    pb_varint(out, field << 3 | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `KeyValue` with a string `AnyValue`.
fn pb_string_kv(key: &str, value: &str) -> Vec<u8> {
    let mut any = Vec::new();
    pb_bytes(&mut any, 1, value.as_bytes());
    let mut kv = Vec::new();
    pb_bytes(&mut kv, 1, key.as_bytes());
    pb_bytes(&mut kv, 2, &any);
    kv
}

fn hex_bytes(hex: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) if b.len() == len && hex.len() == 2 * len => Ok(b),
        _ => Err(format!("{hex:?} is not {len} bytes of hex")),
    }
}

/// POSTs an export request to the feed on 127.0.0.1:`port` (retrying the connection
/// for up to 10 s while the feed starts); the answer must be 200.
pub fn post_traces(port: u16, body: &[u8]) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("decision feed 127.0.0.1:{port}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .and_then(|_| conn.write_all(body))
        .map_err(|e| format!("decision feed: writing the request: {e}"))?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .map_err(|e| format!("decision feed: reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "decision feed answered {:?}",
            text.lines().next().unwrap_or("nothing")
        ));
    }
    Ok(())
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
