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
    let fb = root
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case("pipeline")));
    let col = root.get("processors").is_some_and(Value::is_object)
        || bare_block(&root).is_some()
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
    let procs = root
        .get("processors")
        .and_then(Value::as_object)
        .or_else(|| bare_block(&root));
    let mut out = Vec::new();
    let Some(procs) = procs else {
        return Ok(out);
    };
    for (id, cfg) in procs {
        if id != "tail_sampling" && !id.starts_with("tail_sampling/") {
            continue;
        }
        let pipelines = pipelines_using(&root, id);
        out.push(convert(id, cfg, pipelines));
    }
    Ok(out)
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

fn convert(id: &str, cfg: &Value, pipelines: Vec<String>) -> Processor {
    let mut p = Processor::new(id, pipelines);
    let empty = serde_json::Map::new();
    let obj = cfg.as_object().unwrap_or(&empty);
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
                let ms = match v {
                    Value::String(s) => lockstep_record::duration::go_duration_ms(s.trim()),
                    // A bare number in a Collector config is nanoseconds (time.Duration).
                    Value::Number(n) => n.as_f64().map(|ns| ns / 1e6),
                    _ => None,
                };
                p.notes.push(pairing_note("decision_wait", ms));
            }
            other if IGNORED_COLLECTOR_KEYS.contains(&other) => p.notes.push(format!(
                "{other}: {v} has no meaning for a per-record log filter (ignored)"
            )),
            other => p
                .notes
                .push(format!("{other}: unknown tail_sampling setting (ignored)")),
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
                p.skipped.push(Skipped {
                    path,
                    name,
                    kind,
                    reason: format!("malformed: {e}"),
                });
                continue;
            }
        };
        // Check it compiles on its own (names the exact problem).
        let probe = PolicyFile {
            policies: vec![spec.clone()],
            ..PolicyFile::default()
        };
        if let Err(e) = Policy::compile(&probe) {
            p.skipped.push(Skipped {
                path,
                name,
                kind,
                reason: match e {
                    PolicyError::Invalid { msg, .. } => msg,
                    other => other.to_string(),
                },
            });
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

/// The first unmirrorable policy type in `pol` or its sub-policies, with the reason.
fn unmirrorable_in(pol: &Value, path: &str) -> Option<(String, String)> {
    let kind = pol.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(why) = unmirrorable_reason(kind) {
        return Some((path.to_string(), format!("{kind}: {why}")));
    }
    if !kind.is_empty() && !MIRRORED_TYPES.contains(&kind) {
        return Some((path.to_string(), format!("unknown policy type {kind:?}")));
    }
    let subs: Vec<(String, &Value)> = match kind {
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
    };
    for (p, sub) in subs {
        if let Some((sp, why)) = unmirrorable_in(sub, &p) {
            let sub_name = sub.get("name").and_then(Value::as_str).unwrap_or("?");
            return Some((sp, format!("sub-policy {sub_name:?} is not mirrorable ({why}), so the whole {kind} policy is not")));
        }
    }
    None
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
    fluentbit::key_ci(v.as_object()?, key)
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
            out.push(convert_fluent_bit(
                &id,
                section == "outputs",
                traces,
                pipelines,
            ));
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
                p.skipped.push(Skipped {
                    path: path.clone(),
                    name: "sampling".into(),
                    kind: kind.clone(),
                    reason: format!(
                        "Fluent Bit refuses to start with this processor: {}",
                        msg_of(e)
                    ),
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
                    .and_then(|m| fluentbit::key_ci(m, "sampling_settings"))
                    .and_then(Value::as_object)
                    .and_then(|s| fluentbit::key_ci(s, "decision_wait"))
                    .map(|w| match w {
                        Value::String(x) => fluentbit::atoi(x),
                        other => fluentbit::atoi(&other.to_string()),
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
                        let mut comp = crate::engine::Compiler::for_import(&mut attrs);
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
