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
