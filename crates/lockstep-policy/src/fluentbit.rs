//! Fluent Bit 5.1.1's trace `sampling` processor, mirrored for log records
//! (`shared/facts/fluent-bit-sampling-processor.md`).
//!
//! A policy file holding `processors: {traces: [...]}` (an input's processor block pasted
//! verbatim) is compiled here into a chain of stages, evaluated in pipeline order; a
//! record is kept only when every stage keeps it (a trace that one processor drops never
//! reaches the next):
//! - `type: probabilistic`: the first 8 bytes of the trace id, big-endian, modulo
//!   1,000,000, divided by 10,000, strictly below an integer percentage
//!   ([`crate::sampling::fluent_bit_keep`]); no salt; `conditions` are ignored, as
//!   Fluent Bit ignores them.
//! - `type: tail`: a plain OR over its conditions, nothing vetoes; no conditions keeps
//!   everything. Each condition reads the record's own fields the way Fluent Bit reads
//!   one span:
//!   - `latency`: the record's duration truncated to whole ms; matches when
//!     `low != 0 && d <= low` or `high != 0 && d >= high` (both inclusive; `low` keeps
//!     the *fast* ones; a negative duration never matches);
//!   - `status_code`: level error|fatal ↔ `ERROR`, other known levels ↔ `OK` or `UNSET`,
//!     no level ↔ `UNSET` (codes case-insensitive, as Fluent Bit reads them);
//!   - `string_attribute`: the value must be a string; `strict` is exact and
//!     case-sensitive, `exists` needs only a string value, and `regex` never matches
//!     (Fluent Bit 5.1.1 compares an attribute-type constant with a variant-type
//!     constant there; the policy compiles with a warning saying so);
//!   - `numeric_attribute`: the value must be a number (not a numeric string) with
//!     `min_value <= v <= max_value`; JSON integers stand for OTLP's signed `intValue`;
//!     `exists` needs only a number;
//!   - `boolean_attribute`: the value must be a boolean (not the string `"true"`) equal
//!     to `value`; `exists` needs only a boolean.
//!   - `span_count` and `trace_state` need the whole trace or span data no log record
//!     carries: refused with the reason (import lists them).
//!
//! Values are checked as Fluent Bit checks them at start (unsigned integers for the
//! latency bounds, integer min/max, the allowed `sampling_settings` keys per type), so
//! a config Fluent Bit refuses is refused here with the same complaint. Behaviour that
//! Fluent Bit accepts but that surprises operators becomes a [`Policy::warnings`] entry:
//! a missing `sampling_settings` (5.1.1 crashes at start), `decision_wait: 500ms` (read
//! as 500 s), regex matching, conditions under `probabilistic`.
//!
//! [`Policy::warnings`]: crate::Policy::warnings

pub use crate::conf::atoi;
use crate::conf::key_ci;
use crate::model::FluentBitProcessors;
use crate::rule::{status_set, Compiler, FbMatch, Rule};
use crate::PolicyError;
use serde_json::Value;

/// Condition types Fluent Bit has that a per-record log filter cannot decide.
pub fn unmirrorable_condition(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "span_count" => "counts the spans collected for the trace; no single log record carries it",
        "trace_state" => "reads the spans' W3C tracestate, which log records do not carry",
        _ => return None,
    })
}

/// Condition types this module mirrors.
pub const MIRRORED_CONDITIONS: &[&str] = &[
    "status_code",
    "latency",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
];

/// `a.`, `a, and b.`, `a, b, and c.`: how Fluent Bit lists the allowed properties.
fn fb_list(items: &[&str]) -> String {
    match items {
        [] => ".".into(),
        [one] => format!("{one}."),
        [init @ .., last] => format!("{}, and {last}.", init.join(", ")),
    }
}

/// A scalar's text as Fluent Bit's config maps see it.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One processor entry, read.
pub(crate) enum Stage {
    Probabilistic { percentage: i64 },
    Tail { conditions: Vec<Value> },
}

/// What compiling the chain produced: rules in order, each stage a range of them.
pub(crate) struct Chain {
    pub rules: Vec<(String, Rule)>,
    pub stages: Vec<(u16, u16)>,
    pub warnings: Vec<String>,
}

/// Reads one entry of `processors.traces`. `Ok(None)`: not a `sampling` processor
/// (noted in `warnings`).
pub(crate) fn read_processor(
    p: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Stage>, PolicyError> {
    let m = p
        .as_object()
        .ok_or_else(|| PolicyError::invalid(path, "a processor must be a map"))?;
    let name = key_ci(m, "name")
        .and_then(Value::as_str)
        .ok_or_else(|| PolicyError::invalid(path, "a processor needs a `name`"))?;
    if !name.eq_ignore_ascii_case("sampling") {
        warnings.push(format!(
            "{path}: processor {name:?} decides nothing about which traces are kept; ignored"
        ));
        return Ok(None);
    }
    let kind = key_ci(m, "type")
        .and_then(Value::as_str)
        .ok_or_else(|| PolicyError::invalid(path, "`type` is mandatory (probabilistic or tail)"))?;
    let is_tail = if kind.eq_ignore_ascii_case("tail") {
        true
    } else if kind.eq_ignore_ascii_case("probabilistic") {
        false
    } else {
        return Err(PolicyError::invalid(
            path,
            format!("no plugin context found for sampling type '{kind}' (probabilistic or tail)"),
        ));
    };
    for k in m.keys() {
        let known = [
            "name",
            "alias",
            "type",
            "debug",
            "sampling_settings",
            "conditions",
        ];
        if !known.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            warnings.push(format!("{path}: unknown processor key {k:?}; ignored"));
        }
    }
    let allowed: &[&str] = if is_tail {
        &["decision_wait", "max_traces", "legacy_reconcile"]
    } else {
        &["sampling_percentage"]
    };
    let empty = serde_json::Map::new();
    let settings = match key_ci(m, "sampling_settings") {
        None => {
            warnings.push(format!(
                "{path}: no `sampling_settings`: Fluent Bit 5.1.1 crashes at start without it \
                 (add `sampling_settings: {{}}`); mirrored with its defaults"
            ));
            &empty
        }
        Some(Value::Object(s)) => s,
        // `sampling_settings:` with nothing after it is a null, which Fluent Bit 5.1.1
        // refuses ("rules must be a map") and then aborts.
        Some(_) => {
            return Err(PolicyError::invalid(
                format!("{path}.sampling_settings"),
                "rules must be a map (an empty `sampling_settings:` is not one; write `sampling_settings: {}`)",
            ))
        }
    };
    for k in settings.keys() {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)) {
            return Err(PolicyError::invalid(
                format!("{path}.sampling_settings"),
                format!(
                    "{kind}: unknown configuration property '{k}'. The following properties are allowed: {}",
                    fb_list(allowed)
                ),
            ));
        }
    }
    let conditions = key_ci(m, "conditions");
    if is_tail {
        if let Some(w) = key_ci(settings, "decision_wait").and_then(scalar_text) {
            let t = w.trim();
            if t.to_ascii_lowercase().ends_with("ms") {
                warnings.push(format!(
                    "{path}.sampling_settings.decision_wait: {t:?} is read by Fluent Bit 5.1.1 as {} s \
                     (whole seconds; an `ms` suffix is not understood)",
                    atoi(t)
                ));
            }
        }
        let conditions = match conditions {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(PolicyError::invalid(
                    format!("{path}.conditions"),
                    "conditions must be an array",
                ))
            }
        };
        Ok(Some(Stage::Tail { conditions }))
    } else {
        if let Some(c) = conditions.filter(|c| !c.is_null()) {
            // Fluent Bit parses them (a bad one fails its start) but never consults them.
            let list = c.as_array().ok_or_else(|| {
                PolicyError::invalid(format!("{path}.conditions"), "conditions must be an array")
            })?;
            for (j, cond) in list.iter().enumerate() {
                let kind = condition_type(cond).unwrap_or_default();
                if unmirrorable_condition(&kind).is_none() {
                    let mut attrs = Vec::new();
                    let mut comp = Compiler::for_import(&mut attrs);
                    condition(
                        cond,
                        &format!("{path}.conditions[{j}]"),
                        &mut comp,
                        &mut Vec::new(),
                    )?;
                }
            }
            warnings.push(format!(
                "{path}.conditions: ignored: the probabilistic type never consults conditions"
            ));
        }
        let percentage = match key_ci(settings, "sampling_percentage") {
            None => 10,
            Some(v) => {
                let text = scalar_text(v).ok_or_else(|| {
                    PolicyError::invalid(
                        format!("{path}.sampling_settings.sampling_percentage"),
                        "must be a number",
                    )
                })?;
                if v.is_f64() {
                    warnings.push(format!(
                        "{path}.sampling_settings.sampling_percentage: {text} is read by Fluent Bit with atoi \
                         on the text as written (10.9 is 10, but 1e3 is 1); mirrored as {}: write a plain integer",
                        atoi(&text)
                    ));
                }
                atoi(&text)
            }
        };
        Ok(Some(Stage::Probabilistic { percentage }))
    }
}

/// The condition's type, lower-cased (Fluent Bit matches it case-insensitively).
pub fn condition_type(c: &Value) -> Option<String> {
    c.as_object()
        .and_then(|m| key_ci(m, "type"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

fn uint(m: &serde_json::Map<String, Value>, key: &str, path: &str) -> Result<u64, PolicyError> {
    match m.get(key) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            PolicyError::invalid(
                path,
                format!("{key} must be an unsigned integer (a plain number, not quoted)"),
            )
        }),
    }
}

fn int(m: &serde_json::Map<String, Value>, key: &str, path: &str) -> Result<i64, PolicyError> {
    let v = m
        .get(key)
        .ok_or_else(|| PolicyError::invalid(path, format!("missing '{key}' in condition")))?;
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    // Fluent Bit casts a UINT to int64.
    v.as_u64()
        .map(|u| u as i64)
        .ok_or_else(|| PolicyError::invalid(path, format!("{key} must be an integer")))
}

fn match_type(
    m: &serde_json::Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<String, PolicyError> {
    match m.get("match_type") {
        None => Ok("strict".into()),
        Some(Value::String(s)) => {
            let l = s.to_ascii_lowercase();
            if allowed.contains(&l.as_str()) {
                Ok(l)
            } else {
                Err(PolicyError::invalid(
                    path,
                    format!("invalid match_type '{s}'"),
                ))
            }
        }
        Some(_) => Err(PolicyError::invalid(path, "match_type must be a string")),
    }
}

fn strings(v: Option<&Value>, path: &str, what: &str) -> Result<Vec<String>, PolicyError> {
    let a = v
        .and_then(Value::as_array)
        .ok_or_else(|| PolicyError::invalid(path, format!("{what} must be an array")))?;
    a.iter()
        .map(|x| {
            x.as_str().map(str::to_string).ok_or_else(|| {
                PolicyError::invalid(path, format!("each of {what} must be a string"))
            })
        })
        .collect()
}

/// Compiles one tail condition.
pub(crate) fn condition(
    c: &Value,
    path: &str,
    comp: &mut Compiler<'_>,
    warnings: &mut Vec<String>,
) -> Result<Rule, PolicyError> {
    let m = c
        .as_object()
        .ok_or_else(|| PolicyError::invalid(path, "condition must be a map"))?;
    let kind = condition_type(c)
        .ok_or_else(|| PolicyError::invalid(path, "condition must have a 'type' key (a string)"))?;
    if let Some(why) = unmirrorable_condition(&kind) {
        return Err(PolicyError::invalid(
            path,
            format!("condition {kind} cannot be mirrored onto logs: {why}"),
        ));
    }
    let key = |m: &serde_json::Map<String, Value>| -> Result<String, PolicyError> {
        match m.get("key") {
            Some(Value::String(k)) => Ok(k.clone()),
            Some(_) => Err(PolicyError::invalid(path, "key must be a string")),
            None => Err(PolicyError::invalid(path, "missing 'key' in condition")),
        }
    };
    Ok(match kind.as_str() {
        "status_code" => {
            let codes = strings(m.get("status_codes"), path, "status_codes")?;
            let upper: Vec<String> = codes.iter().map(|c| c.to_ascii_uppercase()).collect();
            status_set(&upper, path)?
        }
        "latency" => {
            let low = uint(m, "threshold_ms_low", path)?;
            let high = uint(m, "threshold_ms_high", path)?;
            if low == 0 && high == 0 {
                return Err(PolicyError::invalid(
                    path,
                    "either threshold_ms_low or threshold_ms_high must be set",
                ));
            }
            Rule::FbLatency {
                low: i64::try_from(low).unwrap_or(i64::MAX),
                high: i64::try_from(high).unwrap_or(i64::MAX),
            }
        }
        "string_attribute" => {
            let k = key(m)?;
            let mt = match_type(m, path, &["strict", "exists", "regex"])?;
            let values = if mt == "exists" {
                vec![]
            } else {
                strings(m.get("values"), path, "values")?
            };
            let how = match mt.as_str() {
                "exists" => FbMatch::Exists,
                "regex" => {
                    // Fluent Bit compiles these with Onigmo (lookarounds, back-references), not
                    // Rust's regex; they never match in 5.1.1 anyway, so they are not compiled here.
                    warnings.push(format!(
                        "{path}: string_attribute with match_type regex never matches in Fluent Bit 5.1.1 \
                         (its type check compares two different constants); mirrored as never matching, \
                         so these logs follow the traces Fluent Bit really keeps"
                    ));
                    FbMatch::Never
                }
                _ => FbMatch::Strict,
            };
            Rule::FbStr {
                slot: comp.slot(&k, path)?,
                values,
                how,
            }
        }
        "numeric_attribute" => {
            let k = key(m)?;
            let mt = match_type(m, path, &["strict", "exists"])?;
            let (min, max) = (int(m, "min_value", path)?, int(m, "max_value", path)?);
            if min > max {
                return Err(PolicyError::invalid(
                    path,
                    "'min_value' must be less than 'max_value'",
                ));
            }
            if m.contains_key("invert_match") {
                warnings.push(format!(
                    "{path}: invert_match is never read by Fluent Bit 5.1.1; ignored here too"
                ));
            }
            Rule::FbNum {
                slot: comp.slot(&k, path)?,
                min,
                max,
                exists: mt == "exists",
            }
        }
        "boolean_attribute" => {
            let k = key(m)?;
            let mt = match_type(m, path, &["strict", "exists"])?;
            let value = match m.get("value") {
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(PolicyError::invalid(
                        path,
                        "value must be true or false (unquoted)",
                    ))
                }
                // Required even with `match_type: exists`: Fluent Bit refuses the condition.
                None => {
                    return Err(PolicyError::invalid(
                        path,
                        "missing boolean 'value' in condition",
                    ))
                }
            };
            Rule::FbBool {
                slot: comp.slot(&k, path)?,
                value,
                exists: mt == "exists",
            }
        }
        other => {
            return Err(PolicyError::invalid(
                path,
                format!("unknown condition type '{other}'"),
            ))
        }
    })
}

/// Compiles `processors.traces` into stages.
pub(crate) fn compile(
    procs: &FluentBitProcessors,
    comp: &mut Compiler<'_>,
) -> Result<Chain, PolicyError> {
    let mut chain = Chain {
        rules: vec![],
        stages: vec![],
        warnings: vec![],
    };
    for k in procs.other.keys() {
        chain
            .warnings
            .push(format!("processors.{k}: not trace processors; ignored"));
    }
    let mut names: Vec<String> = vec![];
    let mut add = |chain: &mut Chain, base: &str, rule: Rule| {
        let n = names.iter().filter(|x| x.as_str() == base).count();
        names.push(base.to_string());
        let name = if n == 0 {
            base.to_string()
        } else {
            format!("{base}#{}", n + 1)
        };
        chain.rules.push((name, rule));
    };
    for (i, p) in procs.traces.iter().enumerate() {
        let path = format!("processors.traces[{i}]");
        let Some(stage) = read_processor(p, &path, &mut chain.warnings)? else {
            continue;
        };
        let first = chain.rules.len();
        match stage {
            Stage::Probabilistic { percentage } => add(
                &mut chain,
                "probabilistic",
                Rule::FbProbabilistic { percentage },
            ),
            Stage::Tail { conditions } if conditions.is_empty() => {
                add(&mut chain, "tail", Rule::Always)
            }
            Stage::Tail { conditions } => {
                for (j, c) in conditions.iter().enumerate() {
                    let cpath = format!("{path}.conditions[{j}]");
                    let rule = condition(c, &cpath, comp, &mut chain.warnings)?;
                    let kind = condition_type(c).unwrap_or_default();
                    add(&mut chain, &kind, rule);
                }
            }
        }
        let to_u16 = |n: usize| {
            u16::try_from(n)
                .map_err(|_| PolicyError::invalid("processors.traces", "too many conditions"))
        };
        chain
            .stages
            .push((to_u16(first)?, to_u16(chain.rules.len())?));
    }
    if chain.stages.is_empty() {
        return Err(PolicyError::invalid(
            "processors.traces",
            "no `name: sampling` processor: nothing would decide which traces are kept",
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_reads_like_c() {
        assert_eq!(atoi("10"), 10);
        assert_eq!(atoi("10.9"), 10);
        assert_eq!(atoi(" 50"), 50);
        assert_eq!(atoi("+7x"), 7);
        assert_eq!(atoi("-3"), -3);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi(""), 0);
        // glibc: strtol saturates at 64 bits, the int cast wraps at 32
        assert_eq!(atoi("99999999999999999999999"), -1);
        assert_eq!(atoi("4294967296"), 0);
        assert_eq!(atoi("4294967306"), 10);
        assert_eq!(atoi("2147483647"), 2147483647);
        assert_eq!(fb_list(&["a"]), "a.");
        assert_eq!(fb_list(&["a", "b", "c"]), "a, b, and c.");
    }
}
