//! Schema drift: fields that look like a duration or a level but match no alias.

use crate::Matcher;
use serde_json::Value;

/// What a drifting field looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DriftKind {
    Duration,
    Level,
}

/// A key name that suggests a duration (`*duration*`, `*latency*`, `*elapsed*`, `took`,
/// `*response_time*`, `*_ms`, `*_ns`, `*_us`, `*Ms`).
pub fn duration_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "duration",
        "latency",
        "elapsed",
        "took",
        "response_time",
        "responsetime",
        "time_ms",
        "time_taken",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_ms")
        || k.ends_with("_ns")
        || k.ends_with("_us")
        || key.ends_with("Ms")
}

/// A key name that suggests a level (`*level*`, `*severity*`, `lvl`).
pub fn level_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("level") || k.contains("severity") || k == "lvl"
}

/// Scalar fields (top level and one object level down, as dotted paths) that look like a
/// duration or a level but that no alias or attribute key covers.
pub fn uncovered(m: &Matcher, record: &Value) -> Vec<(String, DriftKind)> {
    let mut out = Vec::new();
    walk(m, record, "", 0, &mut out);
    out
}

fn walk(m: &Matcher, v: &Value, prefix: &str, depth: u32, out: &mut Vec<(String, DriftKind)>) {
    let Value::Object(map) = v else { return };
    for (k, val) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if val.is_object() && depth == 0 {
            walk(m, val, &path, depth + 1, out);
            continue;
        }
        if m.is_known_top_level(&path) || !(val.is_number() || val.is_string()) {
            continue;
        }
        if duration_like(k) {
            out.push((path, DriftKind::Duration));
        } else if level_like(k) {
            out.push((path, DriftKind::Level));
        }
    }
}

/// A key name that suggests a trace id (`*trace*id*`, `*traceid*`, `@tr`, `trace`).
pub fn trace_id_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "@tr" || k == "trace" || (k.contains("trace") && k.contains("id"))
}

/// A value that looks like a trace id: 32 hex digits (or 16: B3 64-bit), or a W3C
/// `traceparent`.
fn id_like(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let s = s.trim();
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    ((s.len() == 32 || s.len() == 16) && hex(s)) || (s.len() == 55 && s.as_bytes()[2] == b'-')
}

/// Fields (top level and one object level down) that look like a trace id, by name or
/// by value, that no alias or attribute key covers: a trace id the filter cannot see.
pub fn uncovered_trace_ids(m: &Matcher, record: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(map) = record else {
        return out;
    };
    let mut visit = |path: String, k: &str, val: &Value| {
        if m.is_known_top_level(&path) {
            return;
        }
        if (trace_id_like(k) && (val.is_string() || val.is_number()))
            || (k.to_ascii_lowercase().contains("trace") && id_like(val))
        {
            out.push(path);
        }
    };
    for (k, val) in map {
        if let Value::Object(inner) = val {
            for (k2, v2) in inner {
                if !v2.is_object() {
                    visit(format!("{k}.{k2}"), k2, v2);
                }
            }
        } else {
            visit(k.clone(), k, val);
        }
    }
    out
}

/// Top-level string fields whose text is a JSON object holding keys the aliases know
/// (Docker's `log`, a wrapped application line): what `lockstep.fields.nested_json`
/// would read. Returns the field names.
pub fn nested_json_candidates(m: &Matcher, record: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(map) = record else {
        return out;
    };
    for (k, val) in map {
        let Some(s) = val.as_str() else { continue };
        if !s.trim_start().starts_with('{') || m.table().nested_json.iter().any(|n| n == k) {
            continue;
        }
        if let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(s.trim()) {
            if inner.keys().any(|ik| m.is_known_top_level(ik)) {
                out.push(k.clone());
            }
        }
    }
    out
}
