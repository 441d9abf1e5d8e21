//! `lockstep ship`: the main job end to end. Golden logs go through the real filter
//! `.wasm` (in the filter_wasm host) and what it keeps goes through the real
//! `lockstep_out_loki.so` (in the proxy host, as Fluent Bit drives it) into the
//! built-in Loki-compatible receiver, or into a real Loki given by `--loki`.
//! Then it checks that Loki holds exactly one entry per kept record.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lockstep_hosts::golden::GoldenSet;
use lockstep_hosts::loki_receiver::LokiReceiver;
use lockstep_hosts::proxy::rmpv::Value;
use lockstep_hosts::proxy::{ChunkBuilder, FlushCode, HostOptions, LogSource, ProxyHost};
use lockstep_hosts::wasm::{FilterConfig, FilterResult, WasmFilterHost};

use lockstep_hosts::output_replay::to_rmpv;

/// Runs the job; returns the exit code (0: Loki holds exactly what the filter kept).
pub fn run(dir: &Path, wasm: &Path, plugin: &Path, loki: Option<&str>) -> Result<u8> {
    for (p, what) in [(wasm, "filter module"), (plugin, "output plugin")] {
        if !p.exists() {
            bail!(
                "{}: no such {what} (build it with scripts/build-plugins.sh)",
                p.display()
            );
        }
    }
    let set = GoldenSet::load(dir).map_err(anyhow::Error::msg)?;
    // The golden policy, with `annotate` on so the kept records carry the normalised
    // trace_id / level the output maps into labels and structured metadata.
    let work = std::env::temp_dir().join(format!("lockstep-ship-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("{}", work.display()))?;
    let policy =
        std::fs::read_to_string(dir.join("lockstep-policy.yaml")).context("golden policy")?;
    if policy.lines().any(|l| l.starts_with("lockstep:")) {
        bail!(
            "{}: the demo adds its own `lockstep:` section",
            dir.display()
        );
    }
    std::fs::write(
        work.join("lockstep-policy.yaml"),
        format!("{policy}\nlockstep:\n  annotate: true\n"),
    )?;
    let mut cfg = FilterConfig::new(wasm, "lockstep_filter");
    cfg.accessible_paths = vec![work.clone()];
    let mut filter = WasmFilterHost::new(cfg)?;

    let mut kept = Vec::new();
    for (i, text) in set.logs.iter().enumerate() {
        if i % 256 == 0 {
            filter.begin_chunk();
        }
        let host_text = serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| text.clone());
        match filter
            .filter_text("golden", (0, 0), &host_text)
            .map_err(|e| anyhow::anyhow!(e.0))?
        {
            FilterResult::Kept(records) => kept.extend(records),
            FilterResult::Dropped => {}
        }
    }
    let run_id = format!("{:x}", lockstep_spool::now_ns());
    println!(
        "filter: {} records in, {} kept ({} dropped) by {}",
        set.logs.len(),
        kept.len(),
        set.logs.len() - kept.len(),
        wasm.display()
    );

    let receiver = if loki.is_none() {
        Some(LokiReceiver::start())
    } else {
        None
    };
    let url = match (loki, &receiver) {
        // A URL without a path: the plugin pushes to /loki/api/v1/push.
        (Some(base), _) => base.to_string(),
        (None, Some(rx)) => rx.url(),
        (None, None) => unreachable!(),
    };
    let spool = work.join("spool");
    let spool_s = spool.to_str().context("spool path")?.to_string();
    let labels = format!("job=lockstep-demo, run={run_id}, level=$level");
    let mut host = ProxyHost::load(plugin, HostOptions::default())?;
    host.add_output(
        "lockstep_loki",
        &[
            ("match", "*"),
            ("url", &url),
            ("spool_dir", &spool_s),
            ("labels", &labels),
            (
                "structured_metadata",
                "trace_id=$trace_id, span_id=$span_id, lockstep_reason=$lockstep_reason",
            ),
            ("line_format", "json"),
            ("linger", "200ms"),
            ("shutdown_grace", "30s"),
        ],
    )?;
    if let Err(e) = host.start() {
        // The plugin says why through Fluent Bit's logger: show it.
        print_plugin_errors(&mut host);
        return Err(e.into());
    }
    // Timestamps: one millisecond apart, ending now (Loki refuses old or future entries).
    let now = lockstep_spool::now_ns();
    let t0 = now - kept.len() as u64 * 1_000_000;
    let t = Instant::now();
    for (c, part) in kept.chunks(256).enumerate() {
        let mut b = ChunkBuilder::new();
        for (j, rec) in part.iter().enumerate() {
            let ts = t0 + (c * 256 + j) as u64 * 1_000_000;
            b = b.record(
                (ts / 1_000_000_000) as u32,
                (ts % 1_000_000_000) as u32,
                Value::Map(vec![]),
                to_rmpv(rec),
            );
        }
        let r = host.flush(0, "golden", &b.build())?;
        if r.code != FlushCode::Ok {
            bail!("flush {c} answered {:?}", r.code);
        }
    }
    host.shutdown(false); // the exit sends what is queued (shutdown_grace 30 s)
    print_plugin_errors(&mut host);
    let left = lockstep_spool::inspect(&spool)
        .with_context(|| format!("reading the queue {} after the run", spool.display()))?
        .records;
    println!(
        "output: {} records flushed through {} to {url} in {:.2} s; {left} left queued",
        kept.len(),
        plugin.display(),
        t.elapsed().as_secs_f64()
    );

    let want_traces: BTreeSet<String> = kept
        .iter()
        .filter_map(|r| r["trace_id"].as_str().map(str::to_string))
        .collect();
    let (stored, traces) = match &receiver {
        Some(rx) => {
            rx.wait_for(kept.len() as u64, Duration::from_secs(10));
            let mut n = 0usize;
            let mut traces = BTreeSet::new();
            let streams = rx.entries("fake");
            for entries in streams.values() {
                n += entries.len();
                for e in entries {
                    for (k, v) in &e.structured_metadata {
                        if k == "trace_id" {
                            traces.insert(v.clone());
                        }
                    }
                }
            }
            println!(
                "receiver: {} streams, {n} entries stored, {} requests",
                streams.len(),
                rx.stats().requests
            );
            (n, traces)
        }
        None => query_loki(loki.unwrap_or_default(), &run_id, kept.len())?,
    };
    let _ = std::fs::remove_dir_all(&work);
    let ok = stored == kept.len() && traces == want_traces && left == 0;
    println!(
        "{}: {} kept records -> {stored} Loki entries; {} kept traces -> {} traces in structured metadata",
        if ok { "OK" } else { "MISMATCH" },
        kept.len(),
        want_traces.len(),
        traces.len()
    );
    Ok(if ok { 0 } else { 2 })
}

/// Counts what a real Loki holds for this run (`query_range` over the last hour).
fn query_loki(base: &str, run_id: &str, want: usize) -> Result<(usize, BTreeSet<String>)> {
    let query = format!("{{job=\"lockstep-demo\", run=\"{run_id}\"}}");
    let entries = query_entries(base, &query, want)?;
    let traces = entries
        .iter()
        .filter_map(|m| m.get("trace_id").cloned())
        .collect();
    Ok((entries.len(), traces))
}

/// The entries a real Loki holds for `query` over the last hour, each as its structured
/// metadata (polling up to 30 s until `want` are there).
pub fn query_entries(
    base: &str,
    query: &str,
    want: usize,
) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
    let end = lockstep_spool::now_ns() + 60_000_000_000;
    let start = end - 3_600_000_000_000 - 60_000_000_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!(
            "{}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit={}&direction=forward",
            base.trim_end_matches('/'),
            urlencode(query),
            (want + 100).min(5000) // Loki's default max_entries_limit_per_query
        );
        let body: serde_json::Value = ureq::get(&url).call()?.body_mut().read_json()?;
        let mut out = Vec::new();
        for s in body["data"]["result"].as_array().into_iter().flatten() {
            for v in s["values"].as_array().into_iter().flatten() {
                // Structured metadata comes back among the stream's labels, or as the
                // third element with `categorize-labels`.
                let mut m = std::collections::BTreeMap::new();
                let sources = [
                    v.get(2).and_then(|x| x.as_object()),
                    s["stream"].as_object(),
                ];
                for (k, val) in sources.into_iter().flatten().flatten() {
                    if let Some(t) = val.as_str() {
                        m.entry(k.clone()).or_insert_with(|| t.to_string());
                    }
                }
                out.push(m);
            }
        }
        if out.len() >= want || Instant::now() >= deadline {
            println!("loki: {} entries for {query}", out.len());
            return Ok(out);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `lockstep replay DIR --through-output`: the set through the real
/// `lockstep_out_loki.so` with its policy as `policy_file` (sampling by whole trace, no
/// filter), or with `feed` its `decision_feed` told the set's kept traces, into the
/// built-in receiver or a real Loki; completeness and drift reports.
pub fn replay_through_output(
    dir: &Path,
    plugin: &Path,
    loki: Option<&str>,
    decision_wait: Duration,
    feed: bool,
) -> Result<u8> {
    use lockstep_hosts::output_replay::{
        receiver_lines, replay_output_with, Decisions, OutputReplay,
    };
    if !plugin.exists() {
        bail!(
            "{}: no such output plugin (build it with scripts/build-plugins.sh)",
            plugin.display()
        );
    }
    let set = GoldenSet::load(dir).map_err(anyhow::Error::msg)?;
    let work = std::env::temp_dir().join(format!("lockstep-replay-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let run_id = format!("{:x}", lockstep_spool::now_ns());
    let receiver = loki.is_none().then(LokiReceiver::start);
    let url = match (loki, &receiver) {
        (Some(base), _) => base.to_string(),
        (None, Some(rx)) => rx.url(),
        (None, None) => unreachable!(),
    };
    let opts = OutputReplay {
        plugin: plugin.to_path_buf(),
        url: url.clone(),
        work: work.clone(),
        decision_wait,
        chunk: 64,
        labels: format!("job=lockstep-replay, run={run_id}"),
    };
    let how = if feed {
        let kept = dir.join(lockstep_hosts::golden::KEPT_TRACES_FILE);
        println!(
            "through {} with decision_feed (decision_wait {:?}) to {url}; kept traces from {}",
            plugin.display(),
            decision_wait,
            if set.sampler.is_some() {
                kept.display().to_string()
            } else {
                format!(
                    "{} over spans.jsonl (no {})",
                    dir.join("lockstep-policy.yaml").display(),
                    lockstep_hosts::golden::KEPT_TRACES_FILE
                )
            }
        );
        Decisions::Feed
    } else {
        println!(
            "through {} with policy_file {} (decision_wait {:?}) to {url}",
            plugin.display(),
            dir.join("lockstep-policy.yaml").display(),
            decision_wait
        );
        Decisions::Policy
    };
    let report = replay_output_with(&set, &opts, how, |want| match &receiver {
        Some(rx) => receiver_lines(rx, want),
        None => {
            let q = format!("{{job=\"lockstep-replay\", run=\"{run_id}\"}}");
            query_entries(loki.unwrap_or_default(), &q, want)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|m| {
                    m.get("golden_line")
                        .and_then(|g| g.parse().ok())
                        .ok_or_else(|| format!("an entry without golden_line: {m:?}"))
                })
                .collect()
        }
    })
    .map_err(anyhow::Error::msg)?;
    let _ = std::fs::remove_dir_all(&work);
    print!("{}", report.render());
    // Drift, over what the policy reads in the bodies.
    let policy = lockstep_policy::load_policy(&dir.join("lockstep-policy.yaml"))?;
    let mut engine = lockstep_policy::Engine::new(policy.clone());
    let mut check = lockstep_report::check::Check::new(&policy);
    for (i, l) in set.logs.iter().enumerate() {
        check.add(&mut engine, i + 1, l);
    }
    println!("-- drift (record bodies)");
    print!("{}", check.render_text());
    Ok(if report.complete() { 0 } else { 2 })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The plugin's errors and warnings, as Fluent Bit would log them.
fn print_plugin_errors(host: &mut ProxyHost) {
    for l in host.take_logs() {
        if l.source == LogSource::Plugin && l.level <= 2 {
            eprintln!("plugin: {}", l.message);
        }
    }
}
