//! Importing an OpenTelemetry Collector config: every `tail_sampling` processor, its
//! mirrorable policies converted, every other policy listed with the reason. Nothing is
//! dropped silently.

use crate::model::*;
use crate::{parse_any, Format, Policy, PolicyError};
use serde_json::Value;

/// A policy that was not converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Path in the processor, e.g. `policies[3]` or `policies[1].and.and_sub_policy[0]`.
    pub path: String,
    pub name: String,
    pub kind: String,
    pub reason: String,
}

/// One `tail_sampling` processor found in the config.
#[derive(Debug, Clone)]
pub struct Processor {
    /// The processor id (`tail_sampling` or `tail_sampling/NAME`).
    pub id: String,
    /// Trace pipelines that use it.
    pub pipelines: Vec<String>,
    /// The converted policy file (mirrorable policies only).
    pub policy: PolicyFile,
    pub converted: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Collector settings with no per-record meaning, noted for the operator.
    pub notes: Vec<String>,
}

/// Reads a collector config (YAML or JSON) and converts every `tail_sampling` processor.
pub fn import_collector(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<Vec<Processor>, PolicyError> {
    let root: Value = parse_any(text, format, origin)?;
    let procs = root.get("processors").and_then(Value::as_object);
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

fn convert(id: &str, cfg: &Value, pipelines: Vec<String>) -> Processor {
    let mut p = Processor {
        id: id.into(),
        pipelines,
        policy: PolicyFile::default(),
        converted: vec![],
        skipped: vec![],
        notes: vec![],
    };
    let empty = serde_json::Map::new();
    let obj = cfg.as_object().unwrap_or(&empty);
    for (k, v) in obj {
        match k.as_str() {
            "policies" => {}
            "sample_on_first_match" => {
                p.policy.sample_on_first_match = v.as_bool().unwrap_or(false)
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
    out.push_str(&format!(
        "# lockstep policy imported from processor {}\n",
        p.id
    ));
    if !p.skipped.is_empty() {
        out.push_str("# NOT mirrored (these collector policies have no per-record equivalent):\n");
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
