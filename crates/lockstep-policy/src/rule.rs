//! The compiled rule tree both dialects compile into (the collector's `policies:` in
//! `engine`, Fluent Bit's `processors:` in `fluentbit`), the compiler state they share
//! (attribute slots, the latency threshold), and [`Facts`], what rules are evaluated
//! against (one line in `engine`, a whole trace in `trace`). Below `engine`, `fluentbit`
//! and `trace`: imports nothing of them.

use crate::model::LatencyThreshold;
use crate::PolicyError;

/// How a Fluent Bit `string_attribute` condition matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FbMatch {
    Strict,
    Exists,
    /// `match_type: regex`: never matches in Fluent Bit 5.1.1.
    Never,
}

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    Always,
    Latency {
        lo: i64,
        hi: i64,
        inclusive: bool,
    },
    Status {
        error: bool,
        ok: bool,
        unset: bool,
    },
    Probabilistic {
        salt: Box<[u8]>,
        threshold: u64,
    },
    Str {
        slot: usize,
        values: Vec<String>,
        #[cfg(feature = "regex")]
        regex: Option<Vec<regex::Regex>>,
        invert: bool,
    },
    Num {
        slot: usize,
        min: Option<f64>,
        max: Option<f64>,
        invert: bool,
    },
    Bool {
        slot: usize,
        value: bool,
        invert: bool,
    },
    And(Vec<Rule>),
    Not(Box<Rule>),
    Drop(Vec<Rule>),
    // Fluent Bit's `sampling` processor (crate::fluentbit).
    FbProbabilistic {
        percentage: i64,
    },
    FbLatency {
        low: i64,
        high: i64,
    },
    FbStr {
        slot: usize,
        values: Vec<String>,
        how: FbMatch,
    },
    FbNum {
        slot: usize,
        min: i64,
        max: i64,
        exists: bool,
    },
    FbBool {
        slot: usize,
        value: bool,
        exists: bool,
    },
}

pub(crate) fn status_set(codes: &[String], path: &str) -> Result<Rule, PolicyError> {
    let (mut error, mut ok, mut unset) = (false, false, false);
    if codes.is_empty() {
        return Err(PolicyError::invalid(path, "status_codes must not be empty"));
    }
    for c in codes {
        match c.as_str() {
            "ERROR" => error = true,
            "OK" => ok = true,
            "UNSET" => unset = true,
            other => {
                return Err(PolicyError::invalid(
                    path,
                    format!("unknown status code {other:?} (ERROR, OK or UNSET)"),
                ))
            }
        }
    }
    Ok(Rule::Status { error, ok, unset })
}

pub(crate) struct Compiler<'a> {
    pub(crate) attrs: &'a mut Vec<String>,
    pub(crate) latency: LatencyThreshold,
}

impl<'a> Compiler<'a> {
    /// A compiler for checking one rule alone (import).
    pub(crate) fn for_import(attrs: &'a mut Vec<String>) -> Self {
        Compiler {
            attrs,
            latency: LatencyThreshold::default(),
        }
    }

    pub(crate) fn slot(&mut self, key: &str, path: &str) -> Result<usize, PolicyError> {
        if key.is_empty() {
            return Err(PolicyError::invalid(path, "key must not be empty"));
        }
        Ok(match self.attrs.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.attrs.push(key.to_string());
                self.attrs.len() - 1
            }
        })
    }
}

/// What rules are evaluated against: one line (`engine::Line`), or a trace's accumulated
/// lines (`trace::TraceFacts`). Leaves are numbered in depth-first order; `leaf` answers
/// whether the leaf numbered `idx` matches (for a line: computed; for a trace: whether
/// any line matched it).
pub(crate) trait Facts {
    /// Whether `leaf` reads the leaf number (a line computes its matches instead): when
    /// not, the numbering is compiled out of the filter's per-record path.
    const NUMBERED: bool;
    fn trace_id(&self) -> Option<[u8; 16]>;
    fn has_trace_id(&self) -> bool {
        self.trace_id().is_some()
    }
    fn has_level(&self) -> bool;
    /// The duration `latency` compares: the line's, or the longest of the trace's lines.
    fn duration_ms(&self) -> Option<f64>;
    fn leaf(&self, idx: usize, rule: &Rule) -> bool;
}
