//! Policy text of any supported kind, told apart by its shape and resolved to one
//! compiled policy: what the playground's policy box accepts.
//!
//! - empty: the built-in default (errors + slower than 200 ms);
//! - a Fluent Bit YAML config (`pipeline:`): its `sampling` processors imported;
//! - an OpenTelemetry Collector config (`processors:` holding `tail_sampling…`,
//!   `receivers:`, `exporters:`, `service:`), or a bare `tail_sampling:` block: imported;
//! - anything else: a lockstep policy file (the collector's `policies:` schema, or an
//!   input's `processors: traces:` list, plus `lockstep:`).
//!
//! JSON text (starting with `{`) is read as JSON, anything else as YAML.

use crate::import::{import, ImportError, Imported};
use lockstep_policy::import::Source;
use lockstep_policy::{compile_policy, Format, Policy, PolicyError};
use serde_json::Value;

/// What kind of text the policy was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Default,
    Lockstep,
    Collector,
    FluentBit,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Default => "default",
            Kind::Lockstep => "lockstep",
            Kind::Collector => "otelcol",
            Kind::FluentBit => "fluent-bit",
        }
    }
}

/// A policy resolved from text.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub kind: Kind,
    pub policy: Policy,
    /// For an imported config: the samplers, the chosen one, what was not mirrored.
    pub imported: Option<Imported>,
    /// Warnings about the compiled policy (what the sampler does surprisingly).
    pub warnings: Vec<String>,
}

/// Why the text gave no policy; `location` is the line and column when known.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ResolveError {
    pub msg: String,
    pub location: Option<(usize, usize)>,
}

impl From<PolicyError> for ResolveError {
    fn from(e: PolicyError) -> Self {
        ResolveError {
            location: e.location(),
            msg: e.to_string(),
        }
    }
}

impl From<ImportError> for ResolveError {
    fn from(e: ImportError) -> Self {
        ResolveError {
            location: e.location(),
            msg: e.to_string(),
        }
    }
}

/// The format the text is read in: JSON when it starts with `{`, else YAML.
pub fn format_of(text: &str) -> Format {
    if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    }
}

/// The kind of a non-empty text, by the shape of its top level (`None` when it does not
/// parse: it is then read as a lockstep policy, whose parser reports where it breaks).
pub fn kind_of(text: &str, origin: &str) -> Option<Kind> {
    kind_in(text, format_of(text), origin)
}

/// [`kind_of`] for text read in `format`.
fn kind_in(text: &str, format: Format, origin: &str) -> Option<Kind> {
    if lockstep_policy::import::is_classic_conf(text) {
        // Not YAML: the importer says why it cannot be read.
        return Some(Kind::FluentBit);
    }
    let root: Value = lockstep_policy::parse_value(text, format, origin).ok()?;
    if root.get("kind").and_then(Value::as_str) == Some("OpenTelemetryCollector") {
        return Some(Kind::Collector);
    }
    let obj = root.as_object()?;
    let sampler_key = |k: &String| k == "tail_sampling" || k.starts_with("tail_sampling/");
    if obj.keys().any(|k| k.eq_ignore_ascii_case("pipeline")) {
        return Some(Kind::FluentBit);
    }
    let collector_processors = obj
        .get("processors")
        .and_then(Value::as_object)
        .is_some_and(|p| p.keys().any(sampler_key));
    if collector_processors
        || obj.keys().any(sampler_key)
        || ["receivers", "exporters", "service"]
            .iter()
            .any(|k| obj.contains_key(*k))
    {
        return Some(Kind::Collector);
    }
    Some(Kind::Lockstep)
}

/// A `policies:` list at the top level with no `lockstep:` section: what a
/// `tail_sampling:` block's body looks like (or a plain lockstep policy).
fn is_block_body(text: &str, format: Format, origin: &str) -> bool {
    lockstep_policy::parse_value(text, format, origin)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .is_some_and(|m| {
            m.get("policies").is_some_and(Value::is_array) && !m.contains_key("lockstep")
        })
}

/// Resolves policy text; `processor` chooses among several samplers of an imported
/// config. `origin` names the text in errors.
pub fn resolve(
    text: &str,
    origin: &str,
    processor: Option<&str>,
) -> Result<Resolved, ResolveError> {
    if text.trim().is_empty() {
        return Ok(Resolved {
            kind: Kind::Default,
            policy: Policy::default_policy(),
            imported: None,
            warnings: vec![],
        });
    }
    resolve_as(text, format_of(text), origin, processor)
}

/// Resolves non-empty policy text read in `format` (the CLI's file name decides it):
/// a lockstep policy is compiled, a config's sampler imported.
pub fn resolve_as(
    text: &str,
    format: Format,
    origin: &str,
    processor: Option<&str>,
) -> Result<Resolved, ResolveError> {
    let kind = kind_in(text, format, origin).unwrap_or(Kind::Lockstep);
    let (policy, imported) = match kind {
        Kind::Lockstep | Kind::Default => match compile_policy(text, format, origin) {
            Ok(p) => (p, None),
            // The body of a `tail_sampling:` block alone (`policies:` with no
            // `lockstep:`), holding what a lockstep policy cannot: imported as the
            // block would be, what cannot be mirrored listed.
            Err(e) if is_block_body(text, format, origin) => {
                match import(text, format, origin, Some(Source::Collector), processor) {
                    Ok(imp) if !imp.is_empty() => {
                        let policy = Policy::compile(&imp.chosen().policy)?;
                        return Ok(Resolved {
                            kind: Kind::Collector,
                            warnings: policy.warnings().to_vec(),
                            policy,
                            imported: Some(imp),
                        });
                    }
                    Err(ie @ ImportError::Refused { .. }) => return Err(ie.into()),
                    _ => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        },
        Kind::Collector | Kind::FluentBit => {
            let from = if kind == Kind::Collector {
                Source::Collector
            } else {
                Source::FluentBit
            };
            let imp = import(text, format, origin, Some(from), processor)?;
            if imp.is_empty() {
                return Err(ResolveError {
                    msg: format!(
                        "{origin}: {} has nothing that can be mirrored: {}",
                        imp.chosen().id,
                        imp.messages.join("; ")
                    ),
                    location: None,
                });
            }
            (Policy::compile(&imp.chosen().policy)?, Some(imp))
        }
    };
    Ok(Resolved {
        kind,
        warnings: policy.warnings().to_vec(),
        policy,
        imported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_policy::Engine;

    const SLOW_OK: &str =
        r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","level":"info","duration_ms":150}"#;

    fn keeps(r: &Resolved, line: &str) -> bool {
        Engine::new(r.policy.clone())
            .decide_json(line.as_bytes())
            .0
            .keep
    }

    #[test]
    fn empty_text_is_the_default_policy() {
        let r = resolve("  \n", "policy", None).unwrap();
        assert_eq!(r.kind, Kind::Default);
        assert!(!keeps(&r, SLOW_OK), "150 ms is under the default 200 ms");
    }

    #[test]
    fn each_kind_is_told_apart_and_decides_with_its_own_threshold() {
        let lockstep = "policies:\n  - {name: slow, type: latency, latency: {threshold_ms: 100}}\n";
        let block = "tail_sampling:\n  decision_wait: 10s\n  policies:\n    - {name: slow, type: latency, latency: {threshold_ms: 100}}\n    - {name: big, type: span_count, span_count: {min_spans: 3}}\n";
        let collector = format!("receivers: {{otlp: {{}}}}\nprocessors:\n{}service:\n  pipelines:\n    traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [debug]}}\n",
            block.lines().map(|l| format!("  {l}\n")).collect::<String>());
        let fluent_bit = "pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings: {decision_wait: 2s}\n            conditions:\n              - {type: latency, threshold_ms_high: 100}\n";
        for (text, kind, skipped) in [
            (lockstep.to_string(), Kind::Lockstep, 0),
            (block.to_string(), Kind::Collector, 1),
            (collector, Kind::Collector, 1),
            (fluent_bit.to_string(), Kind::FluentBit, 0),
        ] {
            let r = resolve(&text, "policy", None).unwrap_or_else(|e| panic!("{text}\n{e}"));
            assert_eq!(r.kind, kind, "{text}");
            assert!(keeps(&r, SLOW_OK), "{kind:?}: 150 ms is over 100 ms");
            assert_eq!(
                r.imported.as_ref().map_or(0, |i| i.skipped().len()),
                skipped,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_lockstep_policy_holding_fluent_bit_processors_is_not_mistaken_for_a_config() {
        let text = include_str!("../../../golden/fluent-bit/lockstep-policy.yaml");
        let r = resolve(text, "policy", None).unwrap();
        assert_eq!(r.kind, Kind::Lockstep);
        assert!(r.policy.is_fluent_bit());
        assert!(r.imported.is_none());
        // The config it was imported from is a Fluent Bit config, and decides the same.
        let config = include_str!("../../../golden/fluent-bit/fluent-bit.yaml");
        let c = resolve(config, "config", None).unwrap();
        assert_eq!(c.kind, Kind::FluentBit);
        for line in include_str!("../../../golden/fluent-bit/logs.jsonl").lines() {
            assert_eq!(keeps(&r, line), keeps(&c, line), "{line}");
        }
    }

    #[test]
    fn a_bad_policy_names_its_line_and_column() {
        let e = resolve(
            "policies:\n  - name: x\n    type: [latency\n",
            "policy",
            None,
        )
        .unwrap_err();
        assert_eq!(e.location, Some((3, 11)), "{e}");
        let e = resolve("policies:\n  - {name: x, type: latency}\n", "policy", None).unwrap_err();
        assert!(e.msg.contains("policies[0]"), "{e}");
        let e = resolve("[INPUT]\n  Name dummy\n", "policy", None).unwrap_err();
        assert!(e.msg.contains("classic"), "{e}");
    }

    #[test]
    fn several_samplers_need_a_choice() {
        let text = "processors:\n  tail_sampling/a:\n    policies: [{name: s, type: latency, latency: {threshold_ms: 100}}]\n  tail_sampling/b:\n    policies: [{name: s, type: latency, latency: {threshold_ms: 1000}}]\n";
        let e = resolve(text, "policy", None).unwrap_err();
        assert!(e.msg.contains("tail_sampling/a, tail_sampling/b"), "{e}");
        assert!(keeps(
            &resolve(text, "policy", Some("tail_sampling/a")).unwrap(),
            SLOW_OK
        ));
        assert!(!keeps(
            &resolve(text, "policy", Some("tail_sampling/b")).unwrap(),
            SLOW_OK
        ));
    }
}
