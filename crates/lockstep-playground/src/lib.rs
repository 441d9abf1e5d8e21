//! # lockstep-playground
//!
//! The browser playground's module (`scripts/build-playground.sh` builds it with
//! wasm-bindgen into `dist/playground/`). It owns only the translation between
//! JavaScript strings and the reports: every decision, alias, drift count and import
//! comes from `lockstep-report`, the code behind `lockstep explain`, `check` and
//! `policy import`, so the page cannot disagree with the CLI.
//!
//! Invariants: every export takes strings and returns one JSON string, and never throws:
//! a bad policy or a bad line is reported inside the result, where it is (line and
//! column, byte offset). [`evaluate`] is plain Rust, tested natively.

use lockstep_policy::import::Source;
use lockstep_policy::Engine;
use lockstep_report::input::{self, Resolved};
use lockstep_report::{check::Check, explain};
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;

/// The policy part of a result: its kind, warnings, and for an imported config each
/// sampler with what was mirrored and what was not (and why).
fn policy_json(r: &Resolved) -> Value {
    let imported = r.imported.as_ref().map(|imp| {
        let procs: Vec<Value> = imp
            .processors
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "pipelines": p.pipelines,
                    "mirrored": p.converted,
                    "not_mirrored": p.skipped.iter().map(|s| json!({
                        "name": s.name, "type": s.kind, "path": s.path, "reason": s.reason,
                    })).collect::<Vec<_>>(),
                    "notes": p.notes,
                })
            })
            .collect();
        json!({
            "source": match imp.source { Source::Collector => "otelcol", Source::FluentBit => "fluent-bit" },
            "processors": procs,
            "chosen": imp.chosen().id,
            "messages": imp.messages,
            "policy_yaml": imp.render(lockstep_policy::Format::Yaml).unwrap_or_default(),
        })
    });
    json!({
        "ok": true,
        "kind": r.kind.as_str(),
        "semantics": if r.policy.is_fluent_bit() { "fluent-bit sampling processor" } else { "collector tail_sampling" },
        "policies": r.policy.names().collect::<Vec<_>>(),
        "warnings": r.warnings,
        "import": imported,
    })
}

/// The ids of every sampler in an importable config (empty otherwise).
fn sampler_ids(text: &str, kind: Option<input::Kind>) -> Vec<String> {
    let from = match kind {
        Some(input::Kind::Collector) => Source::Collector,
        Some(input::Kind::FluentBit) => Source::FluentBit,
        _ => return vec![],
    };
    lockstep_policy::import::import_config(text, input::format_of(text), "policy", Some(from))
        .map(|(_, procs)| procs.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
}

/// Everything the page shows for a policy text and a JSON-lines text: `policy` (or its
/// error with `line`/`column`), `explain` (the exact text `lockstep explain` prints) and
/// `check` (the report `lockstep check --json` prints). `processor` chooses among several
/// samplers of an imported config (empty: the CLI's rule).
pub fn evaluate_value(policy_text: &str, logs_text: &str, processor: &str) -> Value {
    let processor = (!processor.trim().is_empty()).then_some(processor.trim());
    let resolved = match input::resolve(policy_text, "policy", processor) {
        Ok(r) => r,
        Err(e) => {
            let kind = input::kind_of(policy_text, "policy");
            return json!({
                "policy": {
                    "ok": false,
                    "error": e.msg,
                    "line": e.location.map(|l| l.0),
                    "column": e.location.map(|l| l.1),
                    "kind": kind.map(|k| k.as_str()),
                    // For a config with several samplers and none chosen: the ids to choose from.
                    "processors": sampler_ids(policy_text, kind),
                },
            });
        }
    };
    let mut engine = Engine::new(resolved.policy.clone());
    let explained = explain::explain_text(&mut engine, logs_text);
    let mut engine = Engine::new(resolved.policy.clone());
    let mut check = Check::new(&resolved.policy);
    check.add_text(&mut engine, logs_text);
    json!({
        "policy": policy_json(&resolved),
        "explain": explained,
        "check": check.report(),
    })
}

/// [`evaluate_value`] as a JSON string, for JavaScript.
#[wasm_bindgen]
pub fn evaluate(policy_text: &str, logs_text: &str, processor: &str) -> String {
    evaluate_value(policy_text, logs_text, processor).to_string()
}

/// `lockstep explain` for JavaScript: JSON lines, or `{"error": …}` for a bad policy.
#[wasm_bindgen]
pub fn explain(policy_text: &str, logs_text: &str) -> String {
    match input::resolve(policy_text, "policy", None) {
        Ok(r) => explain::explain_text(&mut Engine::new(r.policy), logs_text),
        Err(e) => json!({"error": e.msg}).to_string(),
    }
}

/// `lockstep check --json` for JavaScript, or `{"error": …}` for a bad policy.
#[wasm_bindgen]
pub fn check(policy_text: &str, logs_text: &str) -> String {
    match input::resolve(policy_text, "policy", None) {
        Ok(r) => {
            let mut c = Check::new(&r.policy);
            c.add_text(&mut Engine::new(r.policy), logs_text);
            c.report().to_string()
        }
        Err(e) => json!({"error": e.msg}).to_string(),
    }
}

/// `lockstep policy import` for JavaScript: `{"policy_yaml", "messages", "not_mirrored"}`
/// for a collector or Fluent Bit config, or `{"error", "line", "column"}`.
#[wasm_bindgen]
pub fn import_config(config_text: &str, processor: &str) -> String {
    let which = (!processor.trim().is_empty()).then_some(processor.trim());
    let format = input::format_of(config_text);
    match lockstep_report::import::import(config_text, format, "config", None, which) {
        Ok(imp) => json!({
            "chosen": imp.chosen().id,
            "messages": imp.messages,
            "not_mirrored": imp.skipped().iter().map(|s| json!({
                "name": s.name, "type": s.kind, "path": s.path, "reason": s.reason,
            })).collect::<Vec<_>>(),
            "policy_yaml": imp.render(lockstep_policy::Format::Yaml).unwrap_or_default(),
        })
        .to_string(),
        Err(e) => {
            let loc = e.location();
            json!({"error": e.to_string(), "line": loc.map(|l| l.0), "column": loc.map(|l| l.1)})
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = concat!(
        r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","level":"info","duration_ms":150}"#,
        "\n",
        r#"{"traceId":"4bf92f3577b34da6a3ce929d0e0e4737","severity":"ERR","latency_ms":3}"#,
        "\n",
        "{\"level\":\"info\",\"duration_ms\":\n"
    );

    #[test]
    fn the_page_sees_what_the_cli_prints() {
        let policy = "policies:\n  - {name: slow, type: latency, latency: {threshold_ms: 100}}\n";
        let v = evaluate_value(policy, LINES, "");
        assert_eq!(v["policy"]["ok"], true, "{v}");
        assert_eq!(v["policy"]["kind"], "lockstep");
        let resolved = input::resolve(policy, "policy", None).unwrap();
        let cli = explain::explain_text(&mut Engine::new(resolved.policy), LINES);
        assert_eq!(v["explain"], cli);
        let lines: Vec<Value> = cli
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["decision"], "keep");
        assert_eq!(lines[0]["reason"], "slow");
        assert_eq!(lines[1]["decision"], "drop", "no error rule in this policy");
        assert!(lines[2]["error"].as_str().unwrap().contains("byte offset"));
        assert_eq!(v["check"]["records"], 3);
        assert_eq!(v["check"]["unreadable"], 1);
    }

    #[test]
    fn a_bad_policy_is_reported_with_its_place_and_nothing_is_decided() {
        let v: Value =
            serde_json::from_str(&evaluate("policies:\n  - name: [x\n", LINES, "")).unwrap();
        assert_eq!(v["policy"]["ok"], false);
        assert_eq!(v["policy"]["line"], 2, "{v}");
        assert_eq!(v["policy"]["column"], 11, "{v}");
        assert!(v.get("explain").is_none());
    }

    #[test]
    fn an_imported_config_lists_what_it_could_not_mirror() {
        let block = "tail_sampling:\n  policies:\n    - {name: slow, type: latency, latency: {threshold_ms: 100}}\n    - {name: big, type: span_count, span_count: {min_spans: 3}}\n";
        let v = evaluate_value(block, LINES, "");
        assert_eq!(v["policy"]["kind"], "otelcol", "{v}");
        let nm = &v["policy"]["import"]["processors"][0]["not_mirrored"];
        assert_eq!(nm[0]["name"], "big", "{v}");
        assert!(!nm[0]["reason"].as_str().unwrap().is_empty());
        let imp: Value = serde_json::from_str(&import_config(block, "")).unwrap();
        assert!(
            imp["policy_yaml"]
                .as_str()
                .unwrap()
                .contains("threshold_ms: 100"),
            "{imp}"
        );
    }
}
