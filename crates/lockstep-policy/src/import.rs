//! Importing a trace sampler's config, nothing dropped silently:
//! - an OpenTelemetry Collector config: every `tail_sampling` processor, its mirrorable
//!   policies converted, every other policy listed with the reason;
//! - a Fluent Bit YAML config: every `processors.traces` list under `pipeline.inputs`
//!   (and `pipeline.outputs`) that holds a `sampling` processor, copied as Fluent Bit
//!   wrote it, minus the conditions a log line cannot decide (`span_count`,
//!   `trace_state`), which are listed with the reason.
//!
//! [`detect`] tells the two apart by shape (`pipeline:` vs `processors:`/`service:`
//! pipelines), and refuses Fluent Bit's classic `.conf` format, which cannot hold
//! processors.

use crate::conf;
use crate::fluentbit::{self, Stage};
use crate::model::*;
use crate::{parse_any, Format, Policy, PolicyError};
use serde_json::Value;

/// Which sampler a config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// OpenTelemetry Collector (`processors: tail_sampling…`).
    Collector,
    /// Fluent Bit YAML (`pipeline: inputs: … processors: traces: - name: sampling`).
    FluentBit,
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "otelcol" | "collector" => Ok(Source::Collector),
            "fluent-bit" | "fluentbit" => Ok(Source::FluentBit),
            other => Err(format!("unknown source {other:?} (fluent-bit or otelcol)")),
        }
    }
}

/// True when the text is Fluent Bit's classic `.conf` format (`[INPUT]` sections).
pub fn is_classic_conf(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let u = l.to_ascii_uppercase();
            [
                "[SERVICE]",
                "[INPUT]",
                "[FILTER]",
                "[OUTPUT]",
                "[PARSER]",
                "[MULTILINE_PARSER]",
                "[PLUGINS]",
                "@INCLUDE",
                "@SET",
            ]
            .iter()
            .any(|h| u.starts_with(h))
        })
}

/// Tells a Fluent Bit YAML config from a collector config by its shape. Errors name the
/// file: a classic `.conf`, a config with both shapes or neither (pass `--from`).
pub fn detect(text: &str, format: Format, origin: &str) -> Result<Source, PolicyError> {
    if is_classic_conf(text) {
        return Err(PolicyError::Format {
            file: origin.into(),
            msg: "a classic Fluent Bit .conf cannot hold processors (Fluent Bit reads `processors:` only \
                  from YAML configs; a classic [PROCESSORS] group fails with \"failed to load 'traces' \
                  processors\"): put the pipeline in a fluent-bit.yaml and import that"
                .into(),
        });
    }
    let root: Value = parse_any(text, format, origin)?;
    let root = collector_root(root, origin)?;
    let fb = root
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case("pipeline")));
    let col = root.get("processors").is_some_and(Value::is_object)
        || bare_block(&root).is_some()
        || block_body(&root)
        || root.pointer("/service/pipelines").is_some()
        || root.get("receivers").is_some()
        || root.get("exporters").is_some();
    match (fb, col) {
        (true, false) => Ok(Source::FluentBit),
        (false, true) => Ok(Source::Collector),
        (true, true) => Err(PolicyError::Format {
            file: origin.into(),
            msg: "has both a Fluent Bit `pipeline:` and collector sections; choose with --from fluent-bit|otelcol".into(),
        }),
        (false, false) => Err(PolicyError::Format {
            file: origin.into(),
            msg: "neither a Fluent Bit config (no `pipeline:`) nor a collector config (no `processors:`, \
                  `receivers:` or `service.pipelines`); choose with --from fluent-bit|otelcol"
                .into(),
        }),
    }
}

/// Imports a config of either kind: `from` forces the kind, otherwise [`detect`]ed.
pub fn import_config(
    text: &str,
    format: Format,
    origin: &str,
    from: Option<Source>,
) -> Result<(Source, Vec<Processor>), PolicyError> {
    let source = match from {
        Some(s) => s,
        None => detect(text, format, origin)?,
    };
    let procs = match source {
        Source::Collector => import_collector(text, format, origin)?,
        Source::FluentBit => import_fluent_bit(text, format, origin)?,
    };
    Ok((source, procs))
}

/// A policy that was not converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Path in the processor, e.g. `policies[3]` or `policies[1].and.and_sub_policy[0]`.
    pub path: String,
    pub name: String,
    pub kind: String,
    pub reason: String,
}

/// One sampler found in the config: a collector `tail_sampling` processor, or the trace
/// processor list of one Fluent Bit input (or output).
#[derive(Debug, Clone)]
pub struct Processor {
    /// The collector processor id (`tail_sampling` or `tail_sampling/NAME`), or the
    /// Fluent Bit plugin holding the list (`pipeline.inputs[0]`).
    pub id: String,
    /// Collector: the trace pipelines that use it. Fluent Bit: the plugin's name (and
    /// alias or tag) that `--processor` also accepts.
    pub pipelines: Vec<String>,
    /// The converted policy file (mirrorable policies or conditions only).
    pub policy: PolicyFile,
    pub converted: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Collector settings with no per-record meaning, noted for the operator.
    pub notes: Vec<String>,
    /// What the sampler itself would refuse to start with (a typo in a policy, a wrong
    /// type, an unknown policy type or setting, an unset environment variable): an
    /// import of this sampler must stop, not write the rest.
    pub refused: Vec<Refusal>,
}

/// Something the sampler would refuse, with where it is in the config text when found.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Path in the processor, e.g. `policies[0].latency`.
    pub path: String,
    pub msg: String,
    /// 1-based line and column of the offending key or value in the text.
    pub location: Option<(usize, usize)>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.location {
            Some((l, c)) => write!(f, "line {l}, column {c}: {}: {}", self.path, self.msg),
            None => write!(f, "{}: {}", self.path, self.msg),
        }
    }
}

impl Processor {
    fn new(id: &str, pipelines: Vec<String>) -> Processor {
        Processor {
            id: id.into(),
            pipelines,
            policy: PolicyFile::default(),
            converted: vec![],
            skipped: vec![],
            notes: vec![],
            refused: vec![],
        }
    }

    /// True when nothing could be mirrored (no policy file should be written).
    pub fn is_empty(&self) -> bool {
        self.policy.policies.is_empty() && self.policy.processors.is_none()
    }

    /// True when `sel` names this processor: its id, or (Fluent Bit) the plugin's name,
    /// alias or tag.
    pub fn matches(&self, sel: &str) -> bool {
        self.id == sel
            || (self.policy.processors.is_some() && self.pipelines.iter().any(|p| p == sel))
    }
}

/// A collector's `tail_sampling:` block pasted alone (the processor without the config
/// around it): the top level, when it holds a `tail_sampling` or `tail_sampling/NAME` key.
fn bare_block(root: &Value) -> Option<&serde_json::Map<String, Value>> {
    root.as_object().filter(|m| {
        m.keys()
            .any(|k| k == "tail_sampling" || k.starts_with("tail_sampling/"))
    })
}

/// Reads a collector config (YAML or JSON), or a `tail_sampling:` block pasted alone, and
/// converts every `tail_sampling` processor.
pub fn import_collector(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<Processor>, PolicyError> {
    let root: Value = parse_any(text, format, origin)?;
    let root = collector_root(root, origin)?;
    let procs = root
        .get("processors")
        .and_then(Value::as_object)
        .or_else(|| bare_block(&root));
    let mut out = Vec::new();
    let Some(procs) = procs else {
        if block_body(&root) {
            // The body of a `tail_sampling:` block pasted alone (`decision_wait`,
            // `policies`, …): one processor.
            out.push(convert_expanded("tail_sampling", &root, vec![], text));
        }
        return Ok(out);
    };
    for (id, cfg) in procs {
        if id != "tail_sampling" && !id.starts_with("tail_sampling/") {
            continue;
        }
        let pipelines = pipelines_using(&root, id);
        out.push(convert_expanded(id, cfg, pipelines, text));
    }
    Ok(out)
}

/// The body of a `tail_sampling:` block on its own: a `policies:` list at the top level,
/// with no `lockstep:` section (a lockstep policy file) or pipeline around it.
fn block_body(root: &Value) -> bool {
    root.as_object().is_some_and(|m| {
        m.get("policies").is_some_and(Value::is_array)
            && !m.contains_key("lockstep")
            && !m.keys().any(|k| k.eq_ignore_ascii_case("pipeline"))
    })
}

/// A Kubernetes `OpenTelemetryCollector` resource (the operator's CRD) holds the
/// collector config under `spec.config`, as a YAML string or a map: that config.
/// Anything else is returned as is.
pub fn collector_root(root: Value, origin: &str) -> Result<Value, PolicyError> {
    let is_crd = root.get("kind").and_then(Value::as_str) == Some("OpenTelemetryCollector");
    if !is_crd {
        return Ok(root);
    }
    match root.pointer("/spec/config") {
        Some(Value::String(s)) => parse_any(s, Format::Yaml, &format!("{origin} (spec.config)")),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        _ => Err(PolicyError::Format {
            file: origin.into(),
            msg: "an OpenTelemetryCollector resource without `spec.config` (a string or a map)"
                .into(),
        }),
    }
}

/// `${env:VAR}` and `${VAR}` (`${env:VAR:-default}` too) in string values, expanded from
/// the environment as the Collector and Fluent Bit expand them; `$$` is a literal `$`
/// (Collector). A value that is a reference alone takes the type its text reads as (an
/// integer, a number, a boolean), as the Collector's YAML does. `errs` gets
/// `(path, message, the reference)` for each variable that is unset or unsupported.
pub fn expand_env(
    v: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errs: &mut Vec<(String, String, String)>,
) {
    match v {
        Value::String(s) => match expand_str(s, lookup) {
            Ok(Some(new)) => *v = new,
            Ok(None) => {}
            Err((msg, token)) => errs.push((path.to_string(), msg, token)),
        },
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                expand_env(x, &format!("{path}[{i}]"), lookup, errs);
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand_env(x, &p, lookup, errs);
            }
        }
        _ => {}
    }
}

fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Value>, (String, String)> {
    if !s.contains('$') {
        return Ok(None);
    }
    let whole = s.starts_with("${") && s.find('}') == Some(s.len() - 1);
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
            continue;
        }
        let Some(end) = tail.strip_prefix("${").and_then(|t| t.find('}')) else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let token = &tail[..end + 3];
        let inner = &tail[2..end + 2];
        let (scheme, spec) = match inner.split_once(':') {
            Some((sc, r))
                if !sc.is_empty()
                    && !sc.starts_with('-')
                    && sc.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                (Some(sc), r)
            }
            _ => (None, inner),
        };
        if let Some(sc) = scheme.filter(|sc| *sc != "env") {
            return Err((
                format!("{token}: the {sc:?} config provider is not read by lockstep import; resolve it first"),
                token.to_string(),
            ));
        }
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        let valid = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err((
                format!("{token}: not an environment variable reference"),
                token.to_string(),
            ));
        }
        match lookup(name).or_else(|| default.map(str::to_string)) {
            Some(val) => out.push_str(&val),
            None => {
                return Err((
                    format!(
                        "{token}: environment variable {name} is not set (the sampler would not \
                         start): set it in the environment the sampler starts with"
                    ),
                    token.to_string(),
                ))
            }
        }
        rest = &tail[end + 3..];
    }
    out.push_str(rest);
    if whole {
        let t = out.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Some(Value::from(n)));
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Some(Value::from(n)));
        }
        if t.bytes().any(|b| b.is_ascii_digit()) && !t.contains(|c: char| c.is_ascii_alphabetic()) {
            if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                return Ok(Some(Value::Number(n)));
            }
        }
        match t {
            "true" => return Ok(Some(Value::Bool(true))),
            "false" => return Ok(Some(Value::Bool(false))),
            _ => {}
        }
    }
    Ok(Some(Value::String(out)))
}

/// The environment the sampler would start with.
fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// 1-based line and column of the first of `needles` on or after line `from` (0-based).
fn locate(text: &str, needles: &[String], from: usize) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate().skip(from) {
        let code = line.split(" #").next().unwrap_or(line);
        for n in needles {
            if let Some(c) = code.find(n.as_str()) {
                return Some((i + 1, line[..c].chars().count() + 1));
            }
        }
    }
    None
}

/// The spellings of `key:` in YAML or JSON.
fn key_needles(key: &str) -> Vec<String> {
    vec![
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
        format!("{key} :"),
    ]
}

/// The first `` `word` `` or `'word'` in a message (serde names the field that way).
fn quoted_word(msg: &str) -> Option<&str> {
    for q in ['`', '\''] {
        if let Some(a) = msg.find(q) {
            if let Some(b) = msg[a + 1..].find(q) {
                let w = &msg[a + 1..a + 1 + b];
                if !w.is_empty() && !w.contains(' ') {
                    return Some(w);
                }
            }
        }
    }
    None
}

/// [`convert`] after expanding environment references in `cfg`; an unset variable is a
/// refusal (the sampler would not start) located at the reference.
fn convert_expanded(id: &str, cfg: &Value, pipelines: Vec<String>, text: &str) -> Processor {
    let mut cfg = cfg.clone();
    let mut errs = Vec::new();
    expand_env(&mut cfg, "", &env_lookup, &mut errs);
    let mut p = convert(id, &cfg, pipelines, text);
    if !errs.is_empty() {
        // What failed only because a reference stayed unexpanded says nothing more.
        p.refused.retain(|r| !r.msg.contains("${"));
    }
    for (path, msg, token) in errs.into_iter().rev() {
        p.refused.insert(
            0,
            Refusal {
                path,
                msg,
                location: locate(text, &[token], 0),
            },
        );
    }
    p
}

fn pipelines_using(root: &Value, id: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(ps) = root
        .pointer("/service/pipelines")
        .and_then(Value::as_object)
    {
        for (name, p) in ps {
            let uses = p
                .get("processors")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id)));
            if uses {
                v.push(name.clone());
            }
        }
    }
    v
}

/// What `decision_wait` to give `lockstep_loki` for a sampler deciding `ms` after a
/// trace's first span (README, "Pairing `decision_wait`").
fn pairing_note(path: &str, ms: Option<f64>) -> String {
    match ms.filter(|m| m.is_finite() && *m >= 0.0) {
        Some(ms) => {
            let s = (ms / 1000.0).ceil() as u64;
            format!(
                "{path}: the sampler decides {s} s after a trace's first span: give lockstep_loki \
                 decision_wait {s}s with policy_file, {}s with decision_feed (its decision_wait + \
                 15 s for span export and exporter delays; a per-record filter ignores it)",
                s + 15
            )
        }
        None => format!("{path}: not a duration the sampler reads"),
    }
}

fn convert(id: &str, cfg: &Value, pipelines: Vec<String>, text: &str) -> Processor {
    let mut p = Processor::new(id, pipelines);
    let empty = serde_json::Map::new();
    let obj = cfg.as_object().unwrap_or(&empty);
    // Where this processor starts in the text (its id's line), and where policy `name`
    // starts after it: locations are searched from there.
    let proc_line = locate(text, &key_needles(id), 0).map_or(0, |(l, _)| l - 1);
    let refuse = |p: &mut Processor, path: String, msg: String, key: Option<&str>, from: usize| {
        let location = key.and_then(|k| locate(text, &key_needles(k), from));
        p.refused.push(Refusal {
            path,
            msg,
            location,
        });
    };
    if !obj.contains_key("decision_wait") {
        p.notes
            .push(pairing_note("decision_wait (default 30s)", Some(30_000.0)));
    }
    for (k, v) in obj {
        match k.as_str() {
            "policies" => {}
            "sample_on_first_match" => {
                p.policy.sample_on_first_match = v.as_bool().unwrap_or(false)
            }
            "decision_wait" => {
                let ms = go_duration(v);
                if ms.is_none() {
                    refuse(
                        &mut p,
                        k.clone(),
                        format!("{v} is not a duration (e.g. 10s)"),
                        Some(k),
                        proc_line,
                    );
                }
                p.notes.push(pairing_note("decision_wait", ms));
                // lockstep_loki reads it from the policy file (policy_file).
                p.policy.other.insert(k.clone(), v.clone());
            }
            "decision_wait_after_root_received" => match go_duration(v) {
                Some(ms) => p.notes.push(format!(
                    "{k}: the sampler decides a trace {} s after its root span arrives when that \
                     comes before decision_wait; lockstep_loki decides by decision_wait alone \
                     (policy_file: the same decisions, later), and with decision_feed the \
                     reports simply come earlier",
                    ms / 1000.0
                )),
                None => refuse(
                    &mut p,
                    k.clone(),
                    format!("{v} is not a duration (e.g. 2s)"),
                    Some(k),
                    proc_line,
                ),
            },
            "sampling_strategy" => match v.as_str() {
                Some("trace-complete") => p.notes.push(format!(
                    "{k}: trace-complete (the default): the sampler decides each trace once, \
                     decision_wait after its first span, as this policy is decided"
                )),
                Some("span-ingest") => p.notes.push(format!(
                    "{k}: span-ingest: the sampler decides spans as they arrive, not the whole \
                     trace at once; a policy over one log line (or one trace, policy_file) can \
                     keep other traces than it does: use decision_feed for logs to follow its \
                     decisions exactly"
                )),
                _ => refuse(
                    &mut p,
                    k.clone(),
                    format!("unknown sampling_strategy {v} (trace-complete or span-ingest)"),
                    Some(k),
                    proc_line,
                ),
            },
            "num_traces" | "decision_cache" => {
                // lockstep_loki reads both from the policy file (policy_file): how many
                // traces wait, how many decisions are remembered for late lines.
                p.notes.push(format!(
                    "{k}: {v} carried into the policy (lockstep_loki with policy_file reads it)"
                ));
                p.policy.other.insert(k.clone(), v.clone());
            }
            other if IGNORED_COLLECTOR_KEYS.contains(&other) => p.notes.push(format!(
                "{other}: {v} has no meaning for a per-record log filter (ignored)"
            )),
            other => refuse(
                &mut p,
                other.to_string(),
                "unknown tail_sampling setting: the Collector refuses to start with it \
                 (a typo?)"
                    .into(),
                Some(other),
                proc_line,
            ),
        }
    }
    let policies = obj
        .get("policies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if policies.is_empty() {
        p.notes.push("no policies in this processor".into());
    }
    for (i, pol) in policies.iter().enumerate() {
        let path = format!("policies[{i}]");
        let name = pol
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = pol
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // The policy's own line: its name after the processor's id.
        let pol_line = if name.is_empty() {
            proc_line
        } else {
            text.lines()
                .enumerate()
                .skip(proc_line)
                .find(|(_, l)| l.contains("name") && l.contains(name.as_str()))
                .map_or(proc_line, |(i, _)| i)
        };
        if let Some((sub_path, why)) = unknown_type_in(pol, &path) {
            refuse(
                &mut p,
                sub_path,
                format!("{why}: the Collector refuses to start with it"),
                Some("type"),
                pol_line,
            );
            continue;
        }
        if let Some((sub_path, why)) = unmirrorable_in(pol, &path) {
            p.skipped.push(Skipped {
                path: sub_path,
                name,
                kind,
                reason: why,
            });
            continue;
        }
        let spec: PolicySpec = match serde_json::from_value(pol.clone()) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                let key = quoted_word(&msg)
                    .filter(|_| msg.starts_with("unknown field"))
                    .or(Some(kind.as_str()))
                    .map(str::to_string);
                refuse(
                    &mut p,
                    format!("{path} ({name:?})"),
                    format!("{msg}: the Collector refuses to start with it"),
                    key.as_deref(),
                    pol_line,
                );
                continue;
            }
        };
        // Check it compiles on its own (names the exact problem).
        let probe = PolicyFile {
            policies: vec![spec.clone()],
            ..PolicyFile::default()
        };
        if let Err(e) = Policy::compile(&probe) {
            let msg = match e {
                PolicyError::Invalid { path: ip, msg } => {
                    // The compiler names the first policy `policies[0]`: this one.
                    let ip = ip.replacen("policies[0]", &path, 1);
                    format!("{ip}: {msg}")
                }
                other => other.to_string(),
            };
            let key = quoted_word(&msg).map(str::to_string);
            refuse(
                &mut p,
                format!("{path} ({name:?})"),
                format!("{msg}; `policy validate` refuses it too"),
                key.as_deref().or(Some(kind.as_str())),
                pol_line,
            );
            continue;
        }
        match kind.as_str() {
            "status_code" => p.notes.push(format!("{name}: status_code mirrors ERROR as log level error|fatal")),
            "latency" => p.notes.push(format!(
                "{name}: latency reads each record's own duration; it matches the trace decision when a service logs one summary line per request"
            )),
            _ => {}
        }
        p.converted.push(name);
        p.policy.policies.push(spec);
    }
    p
}

/// The sub-policies of an `and`, `drop` or `not` policy, with their paths.
fn sub_policies<'v>(pol: &'v Value, kind: &str, path: &str) -> Vec<(String, &'v Value)> {
    match kind {
        "and" => list(
            pol.pointer("/and/and_sub_policy"),
            &format!("{path}.and.and_sub_policy"),
        ),
        "drop" => list(
            pol.pointer("/drop/drop_sub_policy"),
            &format!("{path}.drop.drop_sub_policy"),
        ),
        "not" => pol
            .pointer("/not/not_sub_policy")
            .map(|v| vec![(format!("{path}.not.not_sub_policy"), v)])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The first unmirrorable policy type in `pol` or its sub-policies, with the reason.
fn unmirrorable_in(pol: &Value, path: &str) -> Option<(String, String)> {
    let kind = pol.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(why) = unmirrorable_reason(kind) {
        return Some((path.to_string(), format!("{kind}: {why}")));
    }
    let subs = sub_policies(pol, kind, path);
    for (p, sub) in subs {
        if let Some((sp, why)) = unmirrorable_in(sub, &p) {
            let sub_name = sub.get("name").and_then(Value::as_str).unwrap_or("?");
            return Some((sp, format!("sub-policy {sub_name:?} is not mirrorable ({why}), so the whole {kind} policy is not")));
        }
    }
    None
}

/// The first policy (or sub-policy) with no `type` or a type the Collector does not
/// know, with what is wrong.
fn unknown_type_in(pol: &Value, path: &str) -> Option<(String, String)> {
    let kind = match pol.get("type") {
        None => return Some((path.to_string(), "no `type`".into())),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Some((path.to_string(), format!("type {other} is not a string"))),
    };
    if unmirrorable_reason(kind).is_none() && !MIRRORED_TYPES.contains(&kind) {
        return Some((path.to_string(), format!("unknown policy type {kind:?}")));
    }
    let subs = sub_policies(pol, kind, path);
    subs.into_iter()
        .find_map(|(p, sub)| unknown_type_in(sub, &p))
}

/// A Collector duration: a Go duration string, or a bare number of nanoseconds.
fn go_duration(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => lockstep_record::duration::go_duration_ms(s.trim()),
        Value::Number(n) => n.as_f64().map(|ns| ns / 1e6),
        _ => None,
    }
    .filter(|ms| ms.is_finite() && *ms >= 0.0)
}

fn list<'v>(v: Option<&'v Value>, path: &str) -> Vec<(String, &'v Value)> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, x)| (format!("{path}[{i}]"), x))
                .collect()
        })
        .unwrap_or_default()
}

/// Renders a converted processor as a policy file with a header that lists what was
/// not mirrored.
pub fn render(p: &Processor) -> Result<String, PolicyError> {
    let mut out = String::new();
    if p.policy.processors.is_some() {
        out.push_str(&format!(
            "# lockstep policy imported from Fluent Bit's sampling processors of {} ({})\n\
             # Decided with Fluent Bit 5.1.1's semantics: conditions ORed, latency per line, both bounds\n\
             # inclusive; probabilistic on the trace id's first 8 bytes.\n",
            p.id,
            p.pipelines.join(", ")
        ));
    } else {
        out.push_str(&format!(
            "# lockstep policy imported from processor {}\n",
            p.id
        ));
    }
    if !p.skipped.is_empty() {
        out.push_str("# NOT mirrored (no per-record equivalent):\n");
        for s in &p.skipped {
            out.push_str(&format!(
                "#   {} ({}, {}): {}\n",
                s.name, s.kind, s.path, s.reason
            ));
        }
    }
    let body = serde_json::to_value(&p.policy)
        .map_err(|e| PolicyError::invalid("import", e.to_string()))?;
    #[cfg(feature = "yaml")]
    out.push_str(
        &serde_norway::to_string(&body)
            .map_err(|e| PolicyError::invalid("import", e.to_string()))?,
    );
    #[cfg(not(feature = "yaml"))]
    out.push_str(
        &serde_json::to_string_pretty(&body)
            .map_err(|e| PolicyError::invalid("import", e.to_string()))?,
    );
    Ok(out)
}

fn get_ci<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    conf::key_ci(v.as_object()?, key)
}

/// Reads a Fluent Bit YAML config and converts the trace processor list of every input
/// and output that holds a `sampling` processor.
pub fn import_fluent_bit(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<Processor>, PolicyError> {
    if is_classic_conf(text) {
        return detect(text, format, origin).map(|_| vec![]);
    }
    let root: Value = parse_any(text, format, origin)?;
    let mut out = Vec::new();
    let Some(pipeline) = get_ci(&root, "pipeline") else {
        return Ok(out);
    };
    for section in ["inputs", "outputs"] {
        let Some(plugins) = get_ci(pipeline, section).and_then(Value::as_array) else {
            continue;
        };
        for (i, plugin) in plugins.iter().enumerate() {
            let Some(traces) = get_ci(plugin, "processors")
                .and_then(|p| get_ci(p, "traces"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            let is_sampling = |p: &Value| {
                get_ci(p, "name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case("sampling"))
            };
            if !traces.iter().any(is_sampling) {
                continue;
            }
            let id = format!("pipeline.{section}[{i}]");
            let mut pipelines = Vec::new();
            for k in ["name", "alias", "tag"] {
                if let Some(v) = get_ci(plugin, k).and_then(Value::as_str) {
                    pipelines.push(v.to_string());
                }
            }
            // `${VAR}` as Fluent Bit expands it when it reads the file.
            let mut traces = traces.clone();
            let mut errs = Vec::new();
            for (j, t) in traces.iter_mut().enumerate() {
                expand_env(
                    t,
                    &format!("{id}.processors.traces[{j}]"),
                    &env_lookup,
                    &mut errs,
                );
            }
            let anchor = get_ci(plugin, "name")
                .and_then(Value::as_str)
                .and_then(|n| locate(text, &[n.to_string()], 0))
                .map_or(0, |(l, _)| l - 1);
            let mut p = convert_fluent_bit(&id, section == "outputs", &traces, pipelines);
            for r in &mut p.refused {
                r.location =
                    quoted_word(&r.msg).and_then(|w| locate(text, &key_needles(w), anchor));
            }
            if !errs.is_empty() {
                // What failed only because a reference stayed unexpanded says nothing more.
                p.refused.clear();
            }
            for (path, msg, token) in errs.into_iter().rev() {
                p.refused.insert(
                    0,
                    Refusal {
                        path,
                        msg,
                        location: locate(text, &[token], 0),
                    },
                );
            }
            out.push(p);
        }
    }
    if get_ci(&root, "includes").is_some() {
        if let Some(p) = out.first_mut() {
            p.notes.push(
                "`includes:` files are not followed; import each included YAML file on its own"
                    .into(),
            );
        }
    }
    Ok(out)
}

fn convert_fluent_bit(
    id: &str,
    on_output: bool,
    traces: &[Value],
    pipelines: Vec<String>,
) -> Processor {
    let mut p = Processor::new(id, pipelines);
    let mut kept: Vec<Value> = Vec::new();
    let mut chain_broken = false;
    for (j, entry) in traces.iter().enumerate() {
        let path = format!("processors.traces[{j}]");
        let kind = get_ci(entry, "type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut warnings = Vec::new();
        let stage = match fluentbit::read_processor(entry, &path, &mut warnings) {
            Ok(s) => s,
            Err(e) => {
                let reason = format!(
                    "Fluent Bit refuses to start with this processor: {}",
                    msg_of(e)
                );
                p.refused.push(Refusal {
                    path: path.clone(),
                    msg: reason.clone(),
                    location: None,
                });
                p.skipped.push(Skipped {
                    path: path.clone(),
                    name: "sampling".into(),
                    kind: kind.clone(),
                    reason,
                });
                chain_broken = true;
                continue;
            }
        };
        p.notes.extend(warnings);
        let Some(stage) = stage else { continue };
        let mut entry = entry.clone();
        match stage {
            Stage::Probabilistic { percentage } => {
                p.converted
                    .push(format!("{path}: probabilistic, {percentage} %"));
            }
            Stage::Tail { conditions } => {
                if on_output {
                    p.notes.push(format!(
                        "{path}: a tail sampler under an output crashed Fluent Bit 5.1.1 at decision time \
                         (SIGSEGV); put it under the input"
                    ));
                }
                p.notes.push(format!(
                    "{path}: decision_wait, max_traces and legacy_reconcile shape when and how Fluent Bit emits \
                     traces; a log line is decided as it passes"
                ));
                // 5.1.1 reads decision_wait in whole seconds (atoi), 30 by default.
                let wait = entry
                    .as_object()
                    .and_then(|m| conf::key_ci(m, "sampling_settings"))
                    .and_then(Value::as_object)
                    .and_then(|s| conf::key_ci(s, "decision_wait"))
                    .map(|w| match w {
                        Value::String(x) => conf::atoi(x),
                        other => conf::atoi(&other.to_string()),
                    })
                    .unwrap_or(30)
                    .max(0);
                p.notes.push(pairing_note(
                    &format!("{path}.sampling_settings.decision_wait"),
                    Some(wait as f64 * 1000.0),
                ));
                let mut mirrored = Vec::new();
                for (k, c) in conditions.iter().enumerate() {
                    let cpath = format!("{path}.conditions[{k}]");
                    let ctype = fluentbit::condition_type(c).unwrap_or_default();
                    let reason = if let Some(why) = fluentbit::unmirrorable_condition(&ctype) {
                        Some(format!("{ctype}: {why}; logs of traces kept only by this condition are dropped"))
                    } else {
                        // Checked alone: the exact complaint, as Fluent Bit would make it.
                        let mut attrs = Vec::new();
                        let mut comp = crate::rule::Compiler::for_import(&mut attrs);
                        fluentbit::condition(c, &cpath, &mut comp, &mut p.notes)
                            .err()
                            .map(|e| {
                                // Fluent Bit would not start: nothing of this list is written.
                                chain_broken = true;
                                format!(
                                    "Fluent Bit refuses to start with this condition: {}",
                                    msg_of(e)
                                )
                            })
                    };
                    if let Some(r) = reason.as_ref().filter(|r| r.contains("refuses to start")) {
                        p.refused.push(Refusal {
                            path: cpath.clone(),
                            msg: r.clone(),
                            location: None,
                        });
                    }
                    match reason {
                        Some(reason) => p.skipped.push(Skipped {
                            path: cpath,
                            name: ctype.clone(),
                            kind: ctype,
                            reason,
                        }),
                        None => {
                            p.converted
                                .push(format!("{cpath}: {}", describe_condition(c)));
                            if ctype == "latency" {
                                p.notes.push(format!(
                                    "{cpath}: latency reads each record's own duration, as Fluent Bit reads each span's \
                                     own; logs follow the traces when every service logs its span's duration on one line"
                                ));
                            }
                            mirrored.push(c.clone());
                        }
                    }
                }
                if !conditions.is_empty() && mirrored.is_empty() {
                    p.notes.push(format!(
                        "{path}: none of its conditions can be decided from a log line; without them the tail \
                         sampler would keep every trace, so nothing is mirrored"
                    ));
                    chain_broken = true;
                    continue;
                }
                if mirrored.len() != conditions.len() {
                    if let Some(m) = entry.as_object_mut() {
                        let key = m
                            .keys()
                            .find(|k| k.eq_ignore_ascii_case("conditions"))
                            .cloned()
                            .unwrap_or_else(|| "conditions".into());
                        m.insert(key, Value::Array(mirrored));
                    }
                }
                if conditions.is_empty() {
                    p.converted.push(format!(
                        "{path}: tail with no conditions (keeps every trace)"
                    ));
                }
            }
        }
        kept.push(entry);
    }
    if chain_broken {
        // A stage that cannot be mirrored would silently keep (or drop) every trace:
        // write nothing rather than a policy that decides otherwise than Fluent Bit.
        p.notes.push(
            "no policy written: every sampling processor of the list must be mirrorable".into(),
        );
        return p;
    }
    let policy = PolicyFile {
        processors: Some(FluentBitProcessors {
            traces: kept,
            other: Default::default(),
        }),
        ..PolicyFile::default()
    };
    match Policy::compile(&policy) {
        Ok(_) => p.policy = policy,
        Err(e) => p.notes.push(format!("no policy written: {e}")),
    }
    p
}

fn msg_of(e: PolicyError) -> String {
    match e {
        PolicyError::Invalid { path, msg } => format!("{path}: {msg}"),
        other => other.to_string(),
    }
}

/// A condition in one line, for the import summary.
fn describe_condition(c: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = c.as_object() {
        for (k, v) in m {
            if k.eq_ignore_ascii_case("type") {
                continue;
            }
            parts.push(format!("{k}={v}"));
        }
    }
    format!(
        "{} {}",
        fluentbit::condition_type(c).unwrap_or_default(),
        parts.join(" ")
    )
    .trim_end()
    .to_string()
}
