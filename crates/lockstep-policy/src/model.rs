//! The policy file, as written: the OTel Collector `tail_sampling` schema verbatim
//! (`policies:`, `sample_on_first_match`) plus a `lockstep:` section for what only logs
//! need. Deserialised strictly: an unknown key inside a policy is an error naming it.

use lockstep_record::FieldOverrides;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Top-level keys of a collector `tail_sampling` block that have no per-record meaning;
/// accepted (so a block pastes verbatim) and ignored.
pub const IGNORED_COLLECTOR_KEYS: &[&str] = &[
    "decision_wait",
    "decision_wait_after_root_received",
    "num_traces",
    "expected_new_traces_per_sec",
    "decision_cache",
    "drop_pending_traces_on_shutdown",
    "maximum_trace_size_bytes",
    "block_on_overflow",
    "options",
    "sampling_strategy",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicySpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sample_on_first_match: bool,
    /// Fluent Bit's trace processors: an input's `processors:` block pasted verbatim
    /// (`traces:` holding `name: sampling` entries). When present, the file decides with
    /// Fluent Bit 5.1.1's `sampling` processor semantics instead of the collector's
    /// (see [`crate::fluentbit`]), and `policies:` must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processors: Option<FluentBitProcessors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockstep: Option<Settings>,
    /// Other top-level keys: only [`IGNORED_COLLECTOR_KEYS`] are allowed. Written back
    /// out (an import carries `decision_wait`, `num_traces` and `decision_cache`, which
    /// lockstep_loki reads from the policy file).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// An input's (or output's) `processors:` block from a Fluent Bit YAML config. Entries
/// are kept as written (Fluent Bit's own key rules and value types are checked when the
/// policy compiles, with its error messages), so the block pastes in and renders back
/// verbatim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FluentBitProcessors {
    /// The trace processors, in pipeline order.
    #[serde(default)]
    pub traces: Vec<serde_json::Value>,
    /// `logs:`, `metrics:`: no bearing on which traces are kept; accepted and ignored.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Comparison used by `latency.threshold_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyThreshold {
    /// `duration > threshold_ms` (collector ≥ 0.157, PR #49595).
    #[default]
    Exclusive,
    /// `duration >= threshold_ms` (collector ≤ 0.156).
    Inclusive,
}

/// What to do with a record that lacks a field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Evaluate the policies as usual (rules that need the field do not sample).
    #[default]
    Evaluate,
    Keep,
    Drop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail open: keep the record (default).
    #[default]
    Keep,
    Drop,
}

/// The `lockstep:` section: settings a trace sampler does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub latency_threshold: LatencyThreshold,
    /// A record with no valid trace id (absent or invalid).
    #[serde(default)]
    pub no_trace_id: Missing,
    /// A record with no recognised level (absent or unknown).
    #[serde(default)]
    pub no_level: Missing,
    /// A record with no valid duration (absent or invalid).
    #[serde(default)]
    pub no_duration: Missing,
    /// A record that cannot be read (not a JSON object).
    #[serde(default)]
    pub on_error: OnError,
    /// Field alias overrides.
    #[serde(default)]
    pub fields: FieldOverrides,
    /// The filter adds normalised `trace_id`, `level`, `duration_ms` and the decision
    /// reason to the records it keeps.
    #[serde(default)]
    pub annotate: bool,
    /// How many recently kept trace ids the filter remembers, so later lines of a kept
    /// trace are kept too (0 disables).
    #[serde(default = "default_trace_memory")]
    pub kept_trace_memory: usize,
}

fn default_trace_memory() -> usize {
    4096
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            latency_threshold: LatencyThreshold::default(),
            no_trace_id: Missing::default(),
            no_level: Missing::default(),
            no_duration: Missing::default(),
            on_error: OnError::default(),
            fields: FieldOverrides::default(),
            annotate: false,
            kept_trace_memory: default_trace_memory(),
        }
    }
}

/// One policy (or sub-policy), as in the collector. Keys other than the ones below
/// land in `unmirrorable` and are rejected at compile time unless they are the config of
/// an unmirrorable type (so the error can say why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<StatusCodeCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilistic: Option<ProbabilisticCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_attribute: Option<StringAttributeCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_attribute: Option<NumericAttributeCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean_attribute: Option<BooleanAttributeCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<AndCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not: Option<NotCfg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<DropCfg>,
    /// Configs of the types a per-record filter cannot mirror: parsed so the error can
    /// say why, never evaluated.
    #[serde(flatten, skip_serializing)]
    pub unmirrorable: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyCfg {
    pub threshold_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub upper_threshold_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeCfg {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticCfg {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeCfg {
    pub key: String,
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility; the compiled regexes need no cache here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_size: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert_match: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeCfg {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert_match: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributeCfg {
    pub key: String,
    pub value: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert_match: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndCfg {
    pub and_sub_policy: Vec<PolicySpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotCfg {
    pub not_sub_policy: Box<PolicySpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropCfg {
    pub drop_sub_policy: Vec<PolicySpec>,
}

/// Policy types a per-record log filter cannot reproduce, with the reason.
pub fn unmirrorable_reason(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "rate_limiting" => "stateful: caps spans per second across all traces; which traces the collector keeps depends on traffic a log filter never sees",
        "bytes_limiting" => "stateful: caps bytes per second across all traces (token bucket); not reproducible per record",
        "composite" => "stateful: shares a span-rate budget between sub-policies; not reproducible per record",
        "span_count" => "needs the whole trace's span count, which no single log record carries",
        "trace_state" => "needs the spans' W3C tracestate, which log records do not carry",
        "trace_flags" => "needs the spans' trace flags, which log records do not carry",
        "ottl_condition" => "OTTL conditions over spans and span events; no OTTL evaluator for log records",
        _ => return None,
    })
}

/// Types this crate mirrors.
pub const MIRRORED_TYPES: &[&str] = &[
    "always_sample",
    "latency",
    "status_code",
    "probabilistic",
    "string_attribute",
    "numeric_attribute",
    "boolean_attribute",
    "and",
    "not",
    "drop",
];
