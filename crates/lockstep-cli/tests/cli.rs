//! The `lockstep` binary end to end: explain on the golden four-schema sample decides
//! every summary line as the trace sampler decides its trace; check reports drift;
//! policy import; error messages.

use lockstep_policy::sampling;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lockstep(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn hex16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    for i in 0..16 {
        b[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    b
}

/// The trace sampler's decision per trace, from the spans alone: duration = latest end -
/// earliest start truncated to ms, error if any span is ERROR, and the FNV rule.
fn trace_decisions(spans: &[Value], latency_ms: i64, pct: Option<f64>) -> HashMap<String, bool> {
    let mut by: HashMap<String, (u64, u64, bool)> = HashMap::new();
    for s in spans {
        let t = s["trace_id"].as_str().unwrap().to_string();
        let (st, en) = (
            s["start_ns"].as_u64().unwrap(),
            s["end_ns"].as_u64().unwrap(),
        );
        let e = by.entry(t).or_insert((u64::MAX, 0, false));
        e.0 = e.0.min(st);
        e.1 = e.1.max(en);
        e.2 |= s["status"] == "ERROR";
    }
    by.into_iter()
        .map(|(t, (st, en, err))| {
            let dur_ms = ((en - st) / 1_000_000) as i64;
            let prob = pct.is_some_and(|p| {
                sampling::hash_trace_id(sampling::DEFAULT_SALT.as_bytes(), &hex16(&t))
                    <= sampling::threshold(p)
            });
            (t, err || dur_ms > latency_ms || prob)
        })
        .collect()
}

fn check_golden(policy: Option<&str>, pct: Option<f64>) {
    let dir = root().join("golden/four-schemas");
    let spans = jsonl(&dir.join("spans.jsonl"));
    let lines = jsonl(&dir.join("lines.jsonl"));
    let decisions = trace_decisions(&spans, 200, pct);
    let mut args = vec!["explain"];
    if let Some(p) = policy {
        args.extend(["--policy", p]);
    }
    args.push("golden/four-schemas/logs.jsonl");
    let (code, out, err) = lockstep(&args);
    assert_eq!(code, 0, "{err}");
    let explained: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(explained.len(), lines.len());
    let (mut summaries, mut kept) = (0usize, 0usize);
    for (truth, ex) in lines.iter().zip(&explained) {
        assert_eq!(truth["line"], ex["line"]);
        // Every line's trace id is found, in whatever form the service wrote it.
        assert_eq!(
            truth["trace_id"], ex["trace_id"],
            "line {}: {ex}",
            truth["line"]
        );
        if truth["summary"] == true {
            summaries += 1;
            let want = decisions[truth["trace_id"].as_str().unwrap()];
            let got = ex["decision"] == "keep";
            assert_eq!(
                got, want,
                "summary line {} ({}): {ex}",
                truth["line"], truth["service"]
            );
            kept += got as usize;
        }
    }
    assert_eq!(summaries, decisions.len());
    assert!(
        kept > 10 && kept < summaries,
        "a sample that keeps all or nothing proves little: {kept}/{summaries}"
    );
}

#[test]
fn explain_decides_every_summary_line_as_the_trace_sampler() {
    check_golden(Some("golden/four-schemas/lockstep-policy.yaml"), Some(10.0));
}

#[test]
fn explain_with_the_default_policy() {
    check_golden(None, None);
}

#[test]
fn check_reports_coverage_and_drift() {
    let (code, out, err) = lockstep(&["check", "--json", "golden/four-schemas/logs.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let lines = jsonl(&root().join("golden/four-schemas/lines.jsonl"));
    let untraced = lines.iter().filter(|l| l["trace_id"].is_null()).count() as u64;
    let summaries = lines.iter().filter(|l| l["summary"] == true).count() as u64;
    assert_eq!(r["records"], lines.len() as u64);
    assert_eq!(r["trace_id"]["absent"], untraced);
    assert_eq!(r["duration"]["valid"], summaries);
    // all four duration aliases of the four schemas were used
    let from = r["duration_from"].as_object().unwrap();
    for k in ["duration_ms", "duration", "responseTime", "latency"] {
        assert!(from.contains_key(k), "{k} in {from:?}");
    }

    let (code, out, err) = lockstep(&["check", "--json", "golden/drift/logs.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["unreadable"], 1);
    assert_eq!(r["unknown_levels"]["LOUD"], 1);
    assert_eq!(r["uncovered_duration_fields"]["elapsedTime"], 1);
    assert_eq!(r["uncovered_duration_fields"]["http.server_duration_ms"], 1);
    assert_eq!(r["uncovered_level_fields"]["log_severity"], 1);
    assert_eq!(r["trace_id"]["invalid (wrong length 29)"], 1);
    assert_eq!(r["trace_id"]["invalid (all zero)"], 1);
    assert_eq!(r["duration"]["invalid"], 1);
    // the human report names the drifting fields
    let (_, text, _) = lockstep(&["check", "golden/drift/logs.jsonl"]);
    assert!(
        text.contains("elapsedTime") && text.contains("\"LOUD\""),
        "{text}"
    );
}

#[test]
fn explain_reports_unreadable_lines_and_fails_open() {
    let (code, out, _) = lockstep(&["explain", "golden/drift/logs.jsonl"]);
    assert_eq!(code, 0);
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["decision"], "keep");
    assert_eq!(last["reason"], "unparsed");
    assert!(last["error"].as_str().unwrap().contains("byte offset 0"));
}

#[test]
fn policy_import_writes_a_loadable_policy_and_lists_what_it_cannot_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let col = dir.path().join("otelcol.yaml");
    std::fs::write(
        &col,
        "processors:\n  tail_sampling:\n    policies:\n      - {name: errs, type: status_code, status_code: {status_codes: [ERROR]}}\n      - {name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 10}}\n",
    )
    .unwrap();
    let out = dir.path().join("policy.yaml");
    let (code, _, err) = lockstep(&[
        "policy",
        "import",
        col.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOT MIRRORED rl (rate_limiting)"), "{err}");
    let (code, stdout, err) = lockstep(&["policy", "validate", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("errs"));
    let (code, _, _) = lockstep(&[
        "policy",
        "import",
        "--strict",
        col.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
}

#[test]
fn a_bare_tail_sampling_block_imports_and_any_config_serves_as_policy() {
    let dir = tempfile::tempdir().unwrap();
    // The processor block alone, as an operator copies it out of a collector config.
    let block = dir.path().join("block.yaml");
    std::fs::write(
        &block,
        "tail_sampling:\n  decision_wait: 10s\n  policies:\n    - {name: slow, type: latency, latency: {threshold_ms: 100}}\n    - {name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 10}}\n",
    )
    .unwrap();
    let (code, stdout, err) = lockstep(&["policy", "import", block.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOT MIRRORED rl (rate_limiting)"), "{err}");
    assert!(stdout.contains("threshold_ms: 100"), "{stdout}");
    // explain --policy takes the block (or a whole collector or Fluent Bit config) as is.
    let logs = dir.path().join("logs.jsonl");
    std::fs::write(
        &logs,
        "{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"level\":\"info\",\"duration_ms\":150}\n",
    )
    .unwrap();
    let (code, stdout, err) = lockstep(&[
        "explain",
        "--policy",
        block.to_str().unwrap(),
        logs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("its sampler is imported"), "{err}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["decision"], "keep", "150 ms > 100 ms: {v}");
    assert_eq!(v["reason"], "slow");
    assert_eq!(v["duration_from"], "duration_ms");
}

#[test]
fn errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(
        &p,
        "policies:\n  - name: x\n    type: latency\n    latency: {threshold_ms: fast}\n",
    )
    .unwrap();
    let (code, _, err) = lockstep(&[
        "explain",
        "--policy",
        p.to_str().unwrap(),
        "golden/drift/logs.jsonl",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.yaml:4:"), "{err}");
    let (code, _, err) = lockstep(&[
        "explain",
        "--policy",
        "/nonexistent/p.yaml",
        "golden/drift/logs.jsonl",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/p.yaml"), "{err}");
    let (code, _, err) = lockstep(&["check", "/nonexistent/logs.jsonl"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/logs.jsonl"), "{err}");
}

#[test]
fn shipped_example_policies_compile() {
    for (p, semantics, a_policy) in [
        (
            "fluent-bit-conf/filter/lockstep-policy.yaml",
            "collector tail_sampling",
            "errors",
        ),
        (
            "golden/four-schemas/lockstep-policy.yaml",
            "collector tail_sampling",
            "errors",
        ),
        (
            "fluent-bit-conf/fluent-bit-sampling/lockstep-policy.yaml",
            "Fluent Bit sampling processor",
            "status_code",
        ),
        (
            "golden/fluent-bit/lockstep-policy.yaml",
            "Fluent Bit sampling processor",
            "status_code",
        ),
    ] {
        let (code, out, err) = lockstep(&["policy", "validate", p]);
        assert_eq!(code, 0, "{p}: {err}");
        assert!(
            out.contains(&format!("({semantics} semantics)")) && out.contains(a_policy),
            "{p}: {out}"
        );
    }
}

/// One policy file everywhere: each Fluent Bit policy we ship is exactly what `lockstep
/// policy import` makes of the processor config beside it.
#[test]
fn shipped_fluent_bit_policies_are_what_import_makes_of_their_configs() {
    for (config, policy) in [
        (
            "golden/fluent-bit/fluent-bit.yaml",
            "golden/fluent-bit/lockstep-policy.yaml",
        ),
        (
            "fluent-bit-conf/fluent-bit-sampling/fluent-bit.yaml",
            "fluent-bit-conf/fluent-bit-sampling/lockstep-policy.yaml",
        ),
    ] {
        let (code, out, err) = lockstep(&["policy", "import", config]);
        assert_eq!(code, 0, "{config}: {err}");
        let committed = std::fs::read_to_string(root().join(policy)).unwrap();
        assert_eq!(
            out, committed,
            "{policy} is stale: run lockstep policy import {config} -o {policy}"
        );
    }
}

#[test]
fn policy_import_reads_fluent_bit_configs() {
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("fluent-bit.yaml");
    std::fs::write(
        &fb,
        "pipeline:
  inputs:
    - name: opentelemetry
      alias: edge
      processors:
        traces:
          - name: sampling
            type: tail
            sampling_settings: {decision_wait: 500ms}
            conditions:
              - {type: status_code, status_codes: [ERROR]}
              - {type: span_count, min_spans: 2, max_spans: 9}
    - name: opentelemetry
      alias: batch
      processors:
        traces:
          - {name: sampling, type: probabilistic, sampling_settings: {sampling_percentage: 10}}
",
    )
    .unwrap();
    let f = fb.to_str().unwrap();
    // two plugins with sampling processors: the operator chooses
    let (code, _, err) = lockstep(&["policy", "import", f]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "several plugins with sampling processors (pipeline.inputs[0], pipeline.inputs[1])"
        ),
        "{err}"
    );
    let out = dir.path().join("policy.yaml");
    let o = out.to_str().unwrap();
    let (code, _, err) = lockstep(&["policy", "import", f, "--processor", "edge", "-o", o]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("NOT MIRRORED span_count (span_count) at processors.traces[0].conditions[1]"),
        "{err}"
    );
    assert!(err.contains("read by Fluent Bit 5.1.1 as 500 s"), "{err}");
    let (code, stdout, err) = lockstep(&["policy", "validate", o]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("Fluent Bit sampling processor semantics); policies: status_code"),
        "{stdout}"
    );
    assert!(err.contains("warning: ") && err.contains("500 s"), "{err}");
    let (code, _, _) = lockstep(&[
        "policy",
        "import",
        "--strict",
        f,
        "--processor",
        "edge",
        "-o",
        o,
    ]);
    assert_eq!(code, 3);
    // a .json output is JSON (what the filter's JSON-only build reads)
    let json_out = dir.path().join("lockstep-policy.json");
    let (code, _, err) = lockstep(&[
        "policy",
        "import",
        f,
        "--processor",
        "edge",
        "-o",
        json_out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(v["processors"]["traces"][0]["type"], "tail");
    let (code, stdout, err) = lockstep(&["policy", "validate", json_out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("policies: status_code"), "{stdout}");
    // a plugin name both inputs share is ambiguous: refused, not guessed
    let (code, _, err) = lockstep(&["policy", "import", f, "--processor", "opentelemetry"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("names several (pipeline.inputs[0], pipeline.inputs[1]); choose by id"),
        "{err}"
    );
    let (code, stdout, _) = lockstep(&["policy", "import", f, "--processor", "pipeline.inputs[1]"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("type: probabilistic"), "{stdout}");
    // decided as Fluent Bit decides: explain agrees with the facts file's vector
    std::fs::write(&out, &stdout).unwrap();
    let logs = dir.path().join("logs.jsonl");
    std::fs::write(&logs, "{\"trace_id\":\"19581e27de7ced00ff1ce50b2047e7a5\"}\n{\"trace_id\":\"5b8aa5a2d2c872e8321cf37308d69df2\"}\n").unwrap();
    let (code, stdout, err) = lockstep(&["explain", "--policy", o, logs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let d: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (d[0]["decision"].as_str(), d[0]["reason"].as_str()),
        (Some("keep"), Some("probabilistic"))
    );
    assert_eq!(
        (d[1]["decision"].as_str(), d[1]["reason"].as_str()),
        (Some("drop"), Some("probabilistic"))
    );

    // the classic format cannot hold processors: said, with the way out
    let classic = dir.path().join("fluent-bit.conf");
    std::fs::write(
        &classic,
        "[SERVICE]\n    Flush 1\n[INPUT]\n    Name opentelemetry\n",
    )
    .unwrap();
    let (code, _, err) = lockstep(&["policy", "import", classic.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("fluent-bit.conf: a classic Fluent Bit .conf cannot hold processors"),
        "{err}"
    );
    // ambiguous shape: --from decides
    let amb = dir.path().join("both.yaml");
    std::fs::write(
        &amb,
        "pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - {name: sampling, type: probabilistic, sampling_settings: {}}\nprocessors:\n  tail_sampling:\n    policies: [{name: all, type: always_sample}]\n",
    )
    .unwrap();
    let a = amb.to_str().unwrap();
    let (code, _, err) = lockstep(&["policy", "import", a]);
    assert_eq!(code, 1);
    assert!(err.contains("--from fluent-bit|otelcol"), "{err}");
    let (code, stdout, err) = lockstep(&["policy", "import", a, "--from", "fluent-bit"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("type: probabilistic"));
    let (code, stdout, err) = lockstep(&["policy", "import", a, "--from", "otelcol"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("always_sample"));
}

/// `lockstep ship` (the demo's main job) end to end with the real artifacts: every record
/// the filter keeps becomes one entry in the receiver, with its trace id in structured
/// metadata; and a plugin that cannot start says why.
#[test]
fn ship_delivers_every_kept_record_once() {
    let wasm = lockstep_harness::artifacts::build_filter_wasm(&[]).unwrap();
    let so = lockstep_harness::artifacts::build_cdylib("out-loki").unwrap();
    let (wasm, so) = (wasm.to_str().unwrap(), so.to_str().unwrap());
    let (code, out, err) = lockstep(&[
        "ship",
        "golden/four-schemas",
        "--wasm",
        wasm,
        "--plugin",
        so,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // "filter: N records in, K kept (D dropped) …" and "OK: K kept records -> E Loki entries; T kept traces -> T traces …"
    let kept: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("filter: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|k| k.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(kept > 0, "{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("OK: "))
        .unwrap_or_else(|| panic!("{out}"));
    let n: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n, vec![kept, kept, n[2], n[2]], "{summary}");
    assert!(out.contains("0 left queued"), "{out}");

    // A Loki URL the plugin refuses at start: the plugin's own message is shown.
    let (code, _, err) = lockstep(&[
        "ship",
        "golden/four-schemas",
        "--wasm",
        wasm,
        "--plugin",
        so,
        "--loki",
        "ftp://loki",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("plugin:") && err.contains("ftp://loki"),
        "{err}"
    );
}

/// golden/unmirrorable's policy is exactly what `lockstep policy import` makes of the
/// Collector config that decided it (what it cannot mirror listed on stderr).
#[test]
fn unmirrorable_policy_is_what_import_makes_of_its_collector_config() {
    let (config, policy) = (
        "golden/unmirrorable/otelcol.yaml",
        "golden/unmirrorable/lockstep-policy.yaml",
    );
    let (code, out, err) = lockstep(&["policy", "import", config]);
    assert_eq!(code, 0, "{config}: {err}");
    let committed = std::fs::read_to_string(root().join(policy)).unwrap();
    assert_eq!(
        out, committed,
        "{policy} is stale: run lockstep policy import {config} -o {policy}"
    );
    assert!(err.contains("NOT MIRRORED budget (rate_limiting)"), "{err}");
    // --strict says so with its exit code
    let (code, _, _) = lockstep(&["policy", "import", config, "--strict"]);
    assert_eq!(code, 3);
}

/// `replay --through-output` on golden/unmirrorable: with the policy mirror the lines
/// are orphaned both ways (exit 2, the point of the set); with `--feed` (the set's kept
/// traces reported to decision_feed) every kept trace is whole and no dropped line
/// arrives (exit 0).
#[test]
fn replay_through_output_with_the_feed_follows_the_sampler() {
    let so = lockstep_harness::artifacts::build_cdylib("out-loki").unwrap();
    let so = so.to_str().unwrap();
    let args = [
        "replay",
        "golden/unmirrorable",
        "--through-output",
        "--plugin",
        so,
        "--decision-wait",
        "500ms",
    ];
    let (code, out, err) = lockstep(&args);
    assert_eq!(code, 2, "{out}\n{err}");
    let orphans = out
        .lines()
        .find(|l| l.starts_with("orphans: "))
        .unwrap_or_else(|| panic!("{out}"));
    let n: Vec<usize> = orphans
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n.len() == 4 && n.iter().all(|&x| x > 0), "{orphans}");
    assert!(out.contains("INCOMPLETE"), "{out}");

    // a decision_wait the reports always beat (each comes a flush or two after the
    // trace's first line), even on a busy machine
    let feed = [&args[..5], &["--decision-wait", "3s", "--feed"]].concat();
    let (code, out, err) = lockstep(&feed);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("kept_traces.jsonl"), "{out}");
    assert!(
        out.contains(
            "orphans: 0 lines of 0 kept traces not stored; 0 lines of 0 dropped traces stored"
        ),
        "{out}"
    );
    assert!(out.contains("COMPLETE"), "{out}");

    // --feed needs --through-output
    let (code, _, err) = lockstep(&["replay", "golden/unmirrorable", "--feed"]);
    assert_eq!(code, 64, "a usage error: {err}");
    assert!(err.contains("--through-output"), "{err}");
}

// ---- issue 23: what operators feed the CLI (real configs and logs, typos, env values,
// bad bytes). One block; helper tests for other issues go above or below it. ----

fn write(dir: &Path, name: &str, text: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// Item 8: usage errors exit 64, distinct from 2 (a broken mapping in replay/ship).
#[test]
fn issue23_usage_errors_exit_64() {
    let (code, _, err) = lockstep(&["check"]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = lockstep(&["explain", "--no-such-flag"]);
    assert_eq!(code, 64, "{err}");
    let (code, out, _) = lockstep(&["--help"]);
    assert_eq!(code, 0, "{out}");
}

/// Item 8: every argument of check and policy validate has a help text.
#[test]
fn issue23_help_texts_are_not_empty() {
    let (_, out, _) = lockstep(&["check", "--help"]);
    let line = out
        .lines()
        .find(|l| l.contains("--policy"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("Policy file"), "{out}");
    let (_, out, _) = lockstep(&["policy", "validate", "--help"]);
    let line = out
        .lines()
        .find(|l| l.contains("<POLICY>") && !l.starts_with("Usage"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("policy file"), "{out}");
}

/// Item 8: a missing golden set is named before the module (run outside the repo root).
#[test]
fn issue23_replay_names_the_missing_set_first() {
    let (code, _, err) = lockstep(&["replay", "no/such/set"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no/such/set: no such golden set"), "{err}");
    assert!(!err.contains(".wasm"), "{err}");
}

/// Item 8: durations print without binary noise; the unparsed reason is `unparsed`; the
/// import summary counts in words that agree ("1 policy"); no "a otelcol config".
#[test]
fn issue23_small_things_in_output() {
    let dir = tempfile::tempdir().unwrap();
    let logs = write(
        dir.path(),
        "l.jsonl",
        b"{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"duration_ns\":12300000}\n{bad\n",
    );
    let (code, out, err) = lockstep(&["explain", &logs]);
    assert_eq!(code, 0, "{err}");
    let v: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["duration_ms"], 12.3, "{out}");
    assert!(!out.contains("12.29999"), "{out}");
    assert_eq!(v[1]["reason"], "unparsed", "{out}");
    let col = write(
        dir.path(),
        "c.yaml",
        b"processors:\n  tail_sampling:\n    decision_wait: 5s\n    policies:\n      - {name: slow, type: latency, latency: {threshold_ms: 200}}\n",
    );
    let (code, _, err) = lockstep(&["explain", "--policy", &col, &logs]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 policy mirrored"), "{err}");
    assert!(err.contains("an OpenTelemetry Collector config"), "{err}");
    assert!(!err.contains("a otelcol"), "{err}");
}

/// Item 3: an invalid UTF-8 byte (Latin-1 `é`) neither stops explain nor check: the line
/// is read lossily and reported with its line and byte offset.
#[test]
fn issue23_a_latin1_byte_is_read_lossily_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    text.extend_from_slice(
        b"{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"level\":\"info\"}\n",
    );
    text.extend_from_slice(b"{\"level\":\"info\",\"msg\":\"caf\xe9\"}\n");
    text.extend_from_slice(b"{\"level\":\"error\",\"msg\":\"after\"}\n");
    let logs = write(dir.path(), "latin1.jsonl", &text);
    let (code, out, err) = lockstep(&["explain", &logs]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    // line 2 starts at byte 63; the bad byte is its 27th (offset 26)
    assert!(err.contains(":2: invalid UTF-8 at byte offset 89"), "{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error", "{out}");
    let (code, out, err) = lockstep(&["check", "--json", &logs]);
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["records"], 3, "{out}");
    assert_eq!(r["unreadable"], 0, "{out}");
}

/// Item 4: `spool inspect` refuses what is not a spool and says a missing one is
/// missing; an empty spool says nothing was appended yet.
#[test]
fn issue23_spool_inspect_refuses_what_is_not_a_spool() {
    let (code, out, err) = lockstep(&["spool", "inspect", "/etc"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("/etc: not a spool"), "{err}");
    let (code, _, err) = lockstep(&["spool", "inspect", "/no/such/spool"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/spool: no such directory"), "{err}");
    let (code, _, err) = lockstep(&["spool", "peek", "Cargo.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a directory"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("spool");
    drop(lockstep_spool::Spool::open(&sp, lockstep_spool::SpoolConfig::default()).unwrap());
    let (code, out, err) = lockstep(&["spool", "inspect", sp.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("records queued   0"), "{out}");
    assert!(out.contains("nothing appended yet"), "{out}");
    assert!(!out.contains("acknowledged below 0"), "{out}");
}

fn lockstep_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lockstep"));
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Item 1: a policy the Collector would refuse (a typo) stops the import, naming the
/// key, line and column; `policy validate` and `--policy` refuse it the same way.
#[test]
fn issue23_import_refuses_a_typo_the_collector_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let col = write(
        dir.path(),
        "otelcol.yaml",
        b"receivers:\n  otlp: {}\nprocessors:\n  tail_sampling:\n    decision_wait: 10s\n    policies:\n      - name: errors\n        type: status_code\n        status_code: {status_codes: [ERROR]}\n      - name: slow\n        type: latency\n        latency: {threshhold_ms: 200}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}\n",
    );
    let out = dir.path().join("p.yaml");
    let (code, stdout, err) = lockstep(&["policy", "import", &col, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(err.contains("otelcol.yaml:12:19:"), "{err}");
    assert!(err.contains("unknown field `threshhold_ms`"), "{err}");
    assert!(!out.exists(), "nothing written");
    for cmd in [
        &["policy", "validate", &col][..],
        &["check", "--policy", &col, "golden/drift/logs.jsonl"],
    ] {
        let (code, _, err) = lockstep(cmd);
        assert_eq!(code, 1, "{cmd:?}: {err}");
        assert!(err.contains("threshhold_ms"), "{err}");
    }
    // an unknown setting and an unknown policy type are refusals too
    let bad = write(
        dir.path(),
        "bad.yaml",
        b"tail_sampling:\n  decison_wait: 10s\n  policies:\n    - {name: a, type: latncy, latency: {threshold_ms: 1}}\n",
    );
    let (code, _, err) = lockstep(&["policy", "import", &bad]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.yaml:2:3: decison_wait: unknown tail_sampling setting"),
        "{err}"
    );
    assert!(err.contains("unknown policy type \"latncy\""), "{err}");
}

/// Item 1: `${env:VAR}` and `${VAR}` are expanded as the Collector and Fluent Bit expand
/// them; an unset variable is an error naming it (not "must be an unsigned integer").
#[test]
fn issue23_import_expands_environment_references() {
    let dir = tempfile::tempdir().unwrap();
    let col = write(
        dir.path(),
        "env.yaml",
        b"processors:\n  tail_sampling:\n    policies:\n      - name: slow\n        type: latency\n        latency:\n          threshold_ms: ${env:SLOW_MS}\n      - {name: bot, type: string_attribute, string_attribute: {key: ua, values: [\"${BOT}\"]}}\n",
    );
    let (code, out, err) = lockstep_env(
        &["policy", "import", &col],
        &[("SLOW_MS", "250"), ("BOT", "crawler")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("threshold_ms: 250"), "{out}");
    assert!(out.contains("- crawler"), "{out}");
    let (code, _, err) = lockstep_env(&["policy", "import", &col], &[("BOT", "x")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("env.yaml:7:25:"), "{err}");
    assert!(
        err.contains("environment variable SLOW_MS is not set"),
        "{err}"
    );
    assert!(!err.contains("expected i64"), "{err}");
    let fb = write(
        dir.path(),
        "fluent-bit.yaml",
        b"pipeline:\n  inputs:\n    - name: opentelemetry\n      processors:\n        traces:\n          - name: sampling\n            type: tail\n            sampling_settings:\n              decision_wait: 2\n            conditions:\n              - type: latency\n                threshold_ms_high: ${SLOW_MS}\n",
    );
    let (code, _, err) = lockstep_env(&["policy", "import", &fb], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("environment variable SLOW_MS is not set"),
        "{err}"
    );
    assert!(!err.contains("unsigned integer"), "{err}");
    let (code, out, err) = lockstep_env(&["policy", "import", &fb], &[("SLOW_MS", "300")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("threshold_ms_high: 300"), "{out}");
}

/// Item 6: the body of a `tail_sampling:` block alone, and a Kubernetes
/// OpenTelemetryCollector resource (spec.config as a string or a map), import; with two
/// samplers and no --processor, the one chosen is named with the reason.
#[test]
fn issue23_import_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let body = write(
        dir.path(),
        "body.yaml",
        b"decision_wait: 10s\npolicies:\n  - {name: slow, type: latency, latency: {threshold_ms: 100}}\n  - {name: rl, type: rate_limiting, rate_limiting: {spans_per_second: 10}}\n",
    );
    let (code, out, err) = lockstep(&["policy", "import", &body]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOT MIRRORED rl (rate_limiting)"), "{err}");
    assert!(out.contains("threshold_ms: 100"), "{out}");
    let (code, _, err) = lockstep(&["check", "--policy", &body, "golden/drift/logs.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOT MIRRORED rl"), "{err}");
    let crd = write(
        dir.path(),
        "collector.yaml",
        b"apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nmetadata:\n  name: sampler\nspec:\n  config: |\n    receivers:\n      otlp: {}\n    processors:\n      tail_sampling/a:\n        policies:\n          - {name: slow, type: latency, latency: {threshold_ms: 100}}\n      tail_sampling/b:\n        decision_wait: 5s\n        policies:\n          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n    service:\n      pipelines:\n        traces: {receivers: [otlp], processors: [tail_sampling/b], exporters: [debug]}\n",
    );
    let (code, out, err) = lockstep(&["policy", "import", &crd]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("name: errors"), "{out}");
    assert!(
        err.contains("chose tail_sampling/b: of 2 tail_sampling processors it is the only one a pipeline uses (traces); tail_sampling/a is in no pipeline"),
        "{err}"
    );
    let map = write(
        dir.path(),
        "crd-map.yaml",
        b"apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nmetadata: {name: s}\nspec:\n  config:\n    processors:\n      tail_sampling:\n        policies: [{name: slow, type: latency, latency: {threshold_ms: 100}}]\n",
    );
    let (code, out, err) = lockstep(&["policy", "import", &map]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("threshold_ms: 100"), "{out}");
}

/// Item 7: the newest Collector keys are read where they matter (decision_wait,
/// num_traces, decision_cache carried into the policy lockstep_loki reads), reported
/// (sampling_strategy, decision_wait_after_root_received), or refused when invalid; a
/// `drop` policy imports and drops.
#[test]
fn issue23_newest_collector_keys() {
    let dir = tempfile::tempdir().unwrap();
    let col = write(
        dir.path(),
        "new.yaml",
        b"processors:\n  tail_sampling:\n    decision_wait: 5s\n    decision_wait_after_root_received: 1s\n    sampling_strategy: span-ingest\n    decision_cache: {sampled_cache_size: 1000, non_sampled_cache_size: 200}\n    policies:\n      - {name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: route, values: [/health]}}]}}\n      - {name: all, type: always_sample}\n",
    );
    let out = dir.path().join("p.yaml");
    let (code, _, err) = lockstep(&["policy", "import", &col, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("sampling_strategy: span-ingest"), "{err}");
    assert!(err.contains("decision_wait_after_root_received"), "{err}");
    let p = std::fs::read_to_string(&out).unwrap();
    assert!(p.contains("decision_wait: 5s"), "{p}");
    assert!(p.contains("sampled_cache_size: 1000"), "{p}");
    let logs = write(
        dir.path(),
        "l.jsonl",
        b"{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"route\":\"/health\"}\n{\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"route\":\"/pay\"}\n",
    );
    let (code, stdout, err) = lockstep(&["explain", "--policy", out.to_str().unwrap(), &logs]);
    assert_eq!(code, 0, "{err}");
    let v: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (v[0]["decision"].as_str(), v[0]["reason"].as_str()),
        (Some("drop"), Some("no-health"))
    );
    assert_eq!(v[1]["decision"], "keep");
    let bad = write(
        dir.path(),
        "bad.yaml",
        b"processors:\n  tail_sampling:\n    sampling_strategy: eventually\n    policies: [{name: all, type: always_sample}]\n",
    );
    let (code, _, err) = lockstep(&["policy", "import", &bad]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.yaml:3:5: sampling_strategy: unknown sampling_strategy"),
        "{err}"
    );
}

fn check_json(path: &str) -> Value {
    let (code, out, err) = lockstep(&["check", "--json", path]);
    assert_eq!(code, 0, "{path}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Items 2 and 5 and the done-when: `check` on sample lines as each library writes them
/// (golden/libraries) reports the right ids, levels, durations and hints.
#[test]
fn issue23_check_reads_each_library_and_hints() {
    let lib = |f: &str| check_json(&format!("golden/libraries/{f}"));
    // ids by the new aliases, levels, durations
    let r = lib("clickhouse-otel_logs.jsonl");
    assert_eq!(r["trace_id_from"]["TraceId"], 2, "{r}");
    assert_eq!(r["span_id"]["valid"], 2, "{r}");
    assert_eq!(r["level"]["known"], 2, "{r}");
    let r = lib("dotnet.jsonl");
    assert_eq!(r["trace_id_from"]["TraceId"], 2, "{r}");
    assert_eq!(r["level_from"]["LogLevel"], 2, "{r}");
    assert_eq!(
        r["uncovered_duration_fields"]["State.ElapsedMilliseconds"], 1,
        "{r}"
    );
    let r = lib("serilog.jsonl");
    assert_eq!(r["trace_id_from"]["@tr"], 2, "{r}");
    assert_eq!(r["span_id"]["valid"], 2, "{r}");
    assert_eq!(r["level_from"]["@l"], 2, "{r}");
    let r = lib("ecs.jsonl");
    assert_eq!(r["trace_id_from"]["trace.id"], 2, "{r}");
    assert_eq!(r["duration_from"]["event.duration"], 2, "{r}");
    assert_eq!(r["implausible_durations"], serde_json::json!([]), "{r}");
    let r = lib("zap.jsonl");
    assert_eq!(r["duration_from"]["latency"], 2, "{r}");
    assert_eq!(r["implausible_durations"], serde_json::json!([]), "{r}");
    // slog: levels with offsets; durations in ns flagged, ns suggested
    let r = lib("slog.jsonl");
    assert_eq!(r["level"]["known"], 3, "{r}");
    let d = &r["implausible_durations"][0];
    assert_eq!(
        (d["alias"].as_str(), d["unit"].as_str()),
        (Some("duration"), Some("s")),
        "{r}"
    );
    assert_eq!(d["suggested_unit"], "ns", "{r}");
    let r = lib("logrus.jsonl");
    assert_eq!(r["implausible_durations"][0]["suggested_unit"], "ns", "{r}");
    // pino/Express: duration in ms
    let r = lib("pino.jsonl");
    assert_eq!(r["implausible_durations"][0]["suggested_unit"], "ms", "{r}");
    assert_eq!(r["level"]["known"], 4, "{r}");
    // Docker: the app's JSON line inside `log`
    let r = lib("docker.jsonl");
    assert_eq!(r["nested_json_candidates"]["log"], 2, "{r}");
    let (_, out, _) = lockstep(&["check", "golden/libraries/docker.jsonl"]);
    assert!(out.contains("nested_json: [log]"), "{out}");
    // explain agrees on the slog levels
    let (_, out, _) = lockstep(&["explain", "golden/libraries/slog.jsonl"]);
    let levels: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["level"].to_string())
        .collect();
    assert_eq!(levels, ["\"info\"", "\"error\"", "\"info\""], "{out}");
    // the text names the unit to set
    let (_, out, _) = lockstep(&["check", "golden/libraries/slog.jsonl"]);
    assert!(out.contains("DRIFT implausible durations"), "{out}");
    assert!(out.contains("{key: duration, unit: ns}"), "{out}");
    // the existing golden samples raise no false unit alarm
    for set in [
        "four-schemas/logs.jsonl",
        "fluent-bit/logs.jsonl",
        "unmirrorable/logs.jsonl",
    ] {
        let r = check_json(&format!("golden/{set}"));
        assert_eq!(
            r["implausible_durations"],
            serde_json::json!([]),
            "{set}: {r}"
        );
    }
}

/// Item 5: a trace-id-like field no alias covers is hinted at.
#[test]
fn issue23_check_hints_at_uncovered_trace_ids() {
    let dir = tempfile::tempdir().unwrap();
    let logs = write(
        dir.path(),
        "l.jsonl",
        b"{\"level\":\"info\",\"otelTraceID\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}\n",
    );
    let r = check_json(&logs);
    assert_eq!(r["uncovered_trace_id_fields"]["otelTraceID"], 1, "{r}");
    let (_, out, _) = lockstep(&["check", &logs]);
    assert!(
        out.contains("DRIFT trace-id-like fields no alias covers"),
        "{out}"
    );
}
