//! `lockstep`: the operator CLI. See `lockstep --help`.
//!
//! - `explain`: what the filter sees and decides for each line.
//! - `check`: a schema-drift report over a log sample.
//! - `policy import`: convert an OTel Collector `tail_sampling` config or Fluent Bit's
//!   `sampling` processors.
//! - `spool inspect|peek`: look into an output plugin's disk queue.

mod check;
mod explain;
mod ship;
mod spool_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lockstep_policy::Policy;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "lockstep",
    version,
    about = "Logs that live or die with their traces"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One JSON object per input line: trace_id, span_id, level, duration_ms, decision, reason.
    Explain {
        /// Policy file (YAML or JSON); the built-in default (errors + > 200 ms) without it.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Input file of JSON lines, or `-` for standard input.
        #[arg(default_value = "-")]
        input: String,
    },
    /// Schema-drift report: which fields were found, which were not, keep ratio per reason.
    Check {
        /// Policy file (YAML or JSON), or a collector / Fluent Bit config whose sampler is
        /// imported; the built-in default (errors + > 200 ms) without it.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Input file of JSON lines, or `-` for standard input.
        input: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a golden set through the real filter `.wasm` in the filter_wasm host and
    /// check the logs follow the traces 1:1 (non-zero exit when the mapping breaks).
    ///
    /// With `--through-output`: through the real `lockstep_out_loki.so` instead, with the
    /// set's policy as `policy_file` (sampling by whole trace, no filter), into the
    /// built-in Loki receiver (or `--loki URL`); checks every line of every kept trace is
    /// stored and no line of a dropped one, and prints the drift report.
    ///
    /// With `--through-output --feed`: no `policy_file`; the output gets a `decision_feed`
    /// and the replay plays the trace sampler, POSTing each kept trace's spans (from
    /// spans.jsonl) to it as OTLP/HTTP protobuf right after the chunk holding the trace's
    /// last line. The kept traces are the set's kept_traces.jsonl (the sampler's recorded
    /// decisions) or, for a set without one, what its lockstep-policy.yaml decides from
    /// the spans.
    Replay {
        /// The golden set directory (spans.jsonl, logs.jsonl or events.jsonl, lines.jsonl,
        /// lockstep-policy.yaml).
        golden_dir: PathBuf,
        /// The filter module.
        #[arg(long, default_value = "dist/lockstep_filter.wasm")]
        wasm: PathBuf,
        /// Records per chunk handed to the host.
        #[arg(long, default_value_t = 256)]
        chunk: usize,
        /// Through the output plugin with `policy_file`, not the filter.
        #[arg(long)]
        through_output: bool,
        /// The output plugin (`--through-output`).
        #[arg(long, default_value = "dist/lockstep_out_loki.so")]
        plugin: PathBuf,
        /// Base URL of a real Loki (`--through-output`); default: the built-in receiver.
        #[arg(long)]
        loki: Option<String>,
        /// `decision_wait` for `--through-output`.
        #[arg(long, default_value = "1s", value_parser = parse_wait)]
        decision_wait: std::time::Duration,
        /// With `--through-output`: decide by the decision feed (the set's kept traces
        /// reported over OTLP/HTTP) instead of the policy mirror.
        #[arg(long, requires = "through_output")]
        feed: bool,
    },
    /// The main job: golden logs through the real filter `.wasm` and the real
    /// `lockstep_out_loki.so` into the built-in Loki receiver, or a real Loki with
    /// `--loki` (e.g. `--loki "$LOKI_URL"`); checks Loki holds one entry per kept record.
    Ship {
        /// The golden set directory.
        golden_dir: PathBuf,
        /// The filter module.
        #[arg(long, default_value = "dist/lockstep_filter.wasm")]
        wasm: PathBuf,
        /// The output plugin.
        #[arg(long, default_value = "dist/lockstep_out_loki.so")]
        plugin: PathBuf,
        /// Base URL of a real Loki (e.g. http://localhost:3100); default: the built-in receiver.
        #[arg(long)]
        loki: Option<String>,
    },
    /// Policy file tools.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Inspect an output plugin's spool directory.
    Spool {
        #[command(subcommand)]
        cmd: spool_cmd::SpoolCmd,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Convert the trace sampler of a config: an OTel Collector's tail_sampling
    /// processor(s), or the `sampling` processors of a Fluent Bit YAML config (told apart
    /// by shape).
    Import {
        /// The config (YAML or JSON): an OTel Collector config or a Fluent Bit YAML config.
        config: PathBuf,
        /// Write the policy here (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Which sampler, when the config has several: a collector processor id
        /// (`tail_sampling/NAME`), or a Fluent Bit plugin (`pipeline.inputs[0]`, or its
        /// name, alias or tag).
        #[arg(long)]
        processor: Option<String>,
        /// The config's kind when its shape is ambiguous: fluent-bit or otelcol.
        #[arg(long, value_name = "fluent-bit|otelcol")]
        from: Option<lockstep_policy::import::Source>,
        /// Exit 3 when some policy could not be mirrored.
        #[arg(long)]
        strict: bool,
    },
    /// Parse and compile a policy file; print its policies.
    Validate {
        /// The policy file (YAML or JSON), or a collector / Fluent Bit config whose
        /// sampler is imported as `policy import` would.
        policy: PathBuf,
    },
}

/// The policy from `--policy`: a lockstep policy file, or a collector / Fluent Bit config
/// whose sampler is imported on the fly (kinds told apart as the playground tells them);
/// the built-in default without it. Warnings and what an import could not mirror go to
/// stderr.
pub(crate) fn policy_or_default(p: &Option<PathBuf>) -> Result<Policy> {
    let Some(path) = p else {
        return Ok(Policy::default_policy());
    };
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
    let r = lockstep_report::input::resolve_as(
        &text,
        lockstep_policy::Format::from_path(path),
        &origin,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(imp) = &r.imported {
        eprintln!(
            "{origin}: {}; its sampler is imported:",
            match r.kind {
                lockstep_report::input::Kind::FluentBit => "a Fluent Bit config",
                _ => "an OpenTelemetry Collector config",
            }
        );
        for m in &imp.messages {
            eprintln!("{m}");
        }
    }
    let policy = r.policy;
    for w in policy.warnings() {
        eprintln!("warning: {origin}: {w}");
    }
    Ok(policy)
}

/// Reads lines from a file or stdin, calling `f(line_no, line)`. A line that is not
/// valid UTF-8 (a Latin-1 byte in a real log) is read lossily (U+FFFD for each bad
/// sequence) and reported on stderr with its line number and byte offset; the lines
/// after it are read as usual.
pub(crate) fn for_each_line(
    input: &str,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<()> {
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(input).with_context(|| format!("{input}: cannot open"))?)
    };
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    let (mut n, mut offset, mut lossy) = (0usize, 0u64, 0u64);
    loop {
        buf.clear();
        let read = r
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{input}: read error after line {n}"))?;
        if read == 0 {
            if lossy > 5 {
                eprintln!("{input}: {lossy} lines held invalid UTF-8 in all (read lossily)");
            }
            return Ok(());
        }
        n += 1;
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(e) => {
                lossy += 1;
                if lossy <= 5 {
                    let at = e.valid_up_to();
                    eprintln!(
                        "{input}:{n}: invalid UTF-8 at byte offset {} (byte {at} of the line, \
                         0x{:02x}); read lossily, each bad sequence as U+FFFD",
                        offset + at as u64,
                        buf[at]
                    );
                }
                String::from_utf8_lossy(&buf)
            }
        };
        offset += read as u64;
        if let Some(line) = lockstep_report::line_of(&text) {
            f(n, line)?;
        }
    }
}

fn import(
    config: &Path,
    output: &Option<PathBuf>,
    which: &Option<String>,
    from: Option<lockstep_policy::import::Source>,
    strict: bool,
) -> Result<u8> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: cannot read", config.display()))?;
    let origin = config.display().to_string();
    let imported = lockstep_report::import::import(
        &text,
        lockstep_policy::Format::from_path(config),
        &origin,
        from,
        which.as_deref(),
    )?;
    for m in &imported.messages {
        eprintln!("{m}");
    }
    if imported.is_empty() {
        anyhow::bail!(
            "{origin}: {} has nothing that can be mirrored; no policy written",
            imported.chosen().id
        );
    }
    // A `.json` output is read as JSON (the filter's JSON-only build reads only that):
    // the policy alone, without the YAML header (what was not mirrored is on stderr).
    let format = output.as_deref().map_or(
        lockstep_policy::Format::Yaml,
        lockstep_policy::Format::from_path,
    );
    let rendered = imported.render(format)?;
    // Prove the output loads before writing it.
    lockstep_policy::compile_policy(&rendered, format, "<imported>")?;
    match output {
        Some(o) => {
            std::fs::write(o, &rendered)
                .with_context(|| format!("{}: cannot write", o.display()))?;
            eprintln!("wrote {}", o.display());
        }
        None => print!("{rendered}"),
    }
    Ok(if strict && !imported.skipped().is_empty() {
        3
    } else {
        0
    })
}

fn replay(dir: &Path, wasm: &Path, chunk: usize) -> Result<u8> {
    use lockstep_hosts::{golden, wasm as host};
    // The set first: run outside the repository root, both are missing, and the set is
    // what the operator named.
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: no such golden set directory (paths are relative to the current directory)",
            dir.display()
        );
    }
    if !wasm.exists() {
        anyhow::bail!(
            "{}: no such module (build it with scripts/build-plugins.sh, or pass --wasm)",
            wasm.display()
        );
    }
    let set = golden::GoldenSet::load(dir).map_err(anyhow::Error::msg)?;
    let mut cfg = host::FilterConfig::new(wasm, "lockstep_filter");
    cfg.accessible_paths = vec![dir.to_path_buf()];
    let mut h = host::WasmFilterHost::new(cfg)?;
    let report = golden::replay(&set, &mut h, chunk).map_err(anyhow::Error::msg)?;
    for line in report.module_stderr.lines() {
        eprintln!("module: {line}");
    }
    print!("{}", report.render());
    Ok(if report.ok() { 0 } else { 2 })
}

fn parse_wait(s: &str) -> std::result::Result<std::time::Duration, String> {
    let ms = lockstep_record::duration::go_duration_ms(s.trim())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .ok_or_else(|| format!("not a duration: {s} (e.g. 500ms, 2s)"))?;
    Ok(std::time::Duration::from_secs_f64(ms / 1000.0))
}

/// Exit code of a usage error (bad arguments): distinct from 2, which `replay` and
/// `ship` return for a broken mapping (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn run() -> Result<u8> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    match cli.cmd {
        Cmd::Explain { policy, input } => explain::run(&policy_or_default(&policy)?, &input),
        Cmd::Check {
            policy,
            input,
            json,
        } => check::run(&policy_or_default(&policy)?, &input, json),
        Cmd::Policy {
            cmd:
                PolicyCmd::Import {
                    config,
                    output,
                    processor,
                    from,
                    strict,
                },
        } => import(&config, &output, &processor, from, strict),
        Cmd::Policy {
            cmd: PolicyCmd::Validate { policy },
        } => {
            let p = policy_or_default(&Some(policy.clone()))?;
            println!(
                "{}: ok ({} semantics); policies: {}",
                policy.display(),
                if p.is_fluent_bit() {
                    "Fluent Bit sampling processor"
                } else {
                    "collector tail_sampling"
                },
                p.names().collect::<Vec<_>>().join(", ")
            );
            Ok(0)
        }
        Cmd::Replay {
            golden_dir,
            wasm,
            chunk,
            through_output,
            plugin,
            loki,
            decision_wait,
            feed,
        } => {
            if through_output {
                ship::replay_through_output(
                    &golden_dir,
                    &plugin,
                    loki.as_deref(),
                    decision_wait,
                    feed,
                )
            } else {
                replay(&golden_dir, &wasm, chunk)
            }
        }
        Cmd::Ship {
            golden_dir,
            wasm,
            plugin,
            loki,
        } => ship::run(&golden_dir, &wasm, &plugin, loki.as_deref()),
        Cmd::Spool { cmd } => spool_cmd::run(cmd).map(|c| u8::try_from(c).unwrap_or(1)),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("lockstep: {e:#}");
            ExitCode::from(1)
        }
    }
}
