//! # lockstep-policy
//!
//! Decides keep or drop for one log record exactly as the OpenTelemetry Collector's
//! `tail_sampling` processor (`shared/facts/tail-sampling.md`), or Fluent Bit 5.1.1's
//! trace `sampling` processor (`shared/facts/fluent-bit-sampling-processor.md`), would
//! decide the record's trace, as far as one record can tell.
//!
//! It owns:
//! - the policy file ([`PolicyFile`]): the collector's `policies:` schema verbatim (a
//!   block pastes in), or Fluent Bit's `processors: traces:` list verbatim ([`fluentbit`]),
//!   YAML or JSON, plus a `lockstep:` section for log-only settings;
//! - compilation ([`Policy::compile`]) with errors that name the file, line and column
//!   (parse) or the policy path (`policies[2].latency`);
//! - evaluation ([`Policy::decide`], [`Engine`]) with the collector's current precedence:
//!   drop policies first, then Dropped > Sampled > NotSampled, a policy that cannot
//!   evaluate is skipped, `sample_on_first_match` stops at the first Sampled;
//! - the probabilistic rule, bit-exact (FNV-1a-64 over salt ++ trace id, the collector's
//!   64-bit-mantissa threshold) ([`sampling`]);
//! - Fluent Bit's semantics ([`fluentbit`]): processors chained as AND, conditions ORed,
//!   per-record inclusive latency, typed attributes, its probabilistic rule bit-exact,
//!   its start-up checks, and [`Policy::warnings`] for what 5.1.1 does surprisingly;
//! - deciding by whole trace ([`trace`]): [`Policy::observe`] accumulates a trace's
//!   lines into [`TraceFacts`], [`Policy::decide_trace`] decides them with the same
//!   precedence, each rule asked whether any line matches it;
//! - [`import`]: converting a collector or Fluent Bit config, listing every policy or
//!   condition it cannot mirror.
//!
//! Mirroring onto one record: `status_code` reads the level (error|fatal ↔ ERROR, other
//! known levels ↔ OK/UNSET, no level ↔ UNSET); `latency` reads the record's duration,
//! truncated to whole ms, with `>` (collector ≥ 0.157) or `>=` (≤ 0.156); attribute rules
//! read record keys (dotted paths). Every decision carries its reason.
//!
//! Module direction, one way: `engine` (compiling the collector's `policies:`, deciding)
//! dispatches a `processors:` file to the [`fluentbit`] dialect and decides traces with
//! [`trace`]'s facts; `fluentbit`, `trace` and `import` compile into and read the shared
//! rule tree and compiler (`rule`) and Fluent Bit's value reading (`conf`: `atoi`,
//! case-blind keys), which import none of them.
//!
//! Invariants: evaluation never panics and never allocates; regexes are compiled only
//! when a rule enables them (and only with the `regex` feature).

mod conf;
pub mod engine;
pub mod fluentbit;
pub mod import;
pub mod model;
mod rule;
pub mod sampling;
pub mod trace;

pub use engine::{
    Decision, Engine, EvalError, Policy, Reason, Verdict, DEFAULT_POLICY_YAML,
    MAX_KEPT_TRACE_MEMORY,
};
pub use model::{
    FluentBitProcessors, LatencyThreshold, Missing, OnError, PolicyFile, PolicySpec, Settings,
};
pub use trace::{TraceFacts, TraceTiming};

use std::path::Path;

/// Policy file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// `.json` is JSON; anything else is YAML.
    pub fn from_path(p: &Path) -> Format {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {msg}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Format { file: String, msg: String },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("{file}: {source}")]
    InFile {
        file: String,
        source: Box<PolicyError>,
    },
}

impl PolicyError {
    pub(crate) fn invalid(path: impl Into<String>, msg: impl Into<String>) -> Self {
        PolicyError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Line and column, when the error has them.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            PolicyError::Parse { line, column, .. } => Some((*line, *column)),
            PolicyError::InFile { source, .. } => source.location(),
            _ => None,
        }
    }
}

/// Parses policy text. `origin` names the file in errors.
pub fn parse_policy(text: &str, format: Format, origin: &str) -> Result<PolicyFile, PolicyError> {
    parse_any(text, format, origin)
}

/// Parses text of either format into a JSON value (errors name `origin`, line and column).
pub fn parse_value(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<serde_json::Value, PolicyError> {
    parse_any(text, format, origin)
}

pub(crate) fn parse_any<T: serde::de::DeserializeOwned>(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<T, PolicyError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| PolicyError::Parse {
            file: origin.into(),
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        }),
        #[cfg(feature = "yaml")]
        Format::Yaml => serde_norway::from_str(text).map_err(|e| match e.location() {
            Some(l) => PolicyError::Parse {
                file: origin.into(),
                line: l.line(),
                column: l.column(),
                msg: e.to_string(),
            },
            None => PolicyError::Format {
                file: origin.into(),
                msg: e.to_string(),
            },
        }),
        #[cfg(not(feature = "yaml"))]
        Format::Yaml => {
            // Without the YAML parser, JSON (a YAML subset) is still read.
            serde_json::from_str(text).map_err(|e| PolicyError::Parse {
                file: origin.into(),
                line: e.line(),
                column: e.column(),
                msg: format!("{e} (this build reads JSON policies only)"),
            })
        }
    }
}

/// Parses and compiles policy text; errors name `origin`.
pub fn compile_policy(text: &str, format: Format, origin: &str) -> Result<Policy, PolicyError> {
    let file = parse_policy(text, format, origin)?;
    Policy::compile(&file).map_err(|e| match e {
        PolicyError::Invalid { .. } => PolicyError::InFile {
            file: origin.into(),
            source: Box::new(e),
        },
        e => e,
    })
}

/// Reads, parses and compiles a policy file.
pub fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        file: origin.clone(),
        source,
    })?;
    compile_policy(&text, Format::from_path(path), &origin)
}
