//! Compiling a [`PolicyFile`] and evaluating it against extracted records.

use crate::model::*;
use crate::rule::{status_set, Compiler, Facts, FbMatch, Rule};
use crate::sampling;
use crate::trace::TraceFacts;
use crate::PolicyError;
use lockstep_record::{
    Attr, DurationState, Extracted, Extractor, FieldTable, LevelState, Matcher, ScanError,
};

/// A policy's verdict, as in the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sampled,
    NotSampled,
    Dropped,
}

/// Why a policy could not decide (the collector skips such a policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no valid trace id for the probabilistic rule")]
    NoTraceId,
}

/// Why a record was kept or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The named top-level policy decided (sampled it, or dropped it).
    Policy(u16),
    /// No policy sampled the record.
    NotSampled,
    NoTraceId,
    NoLevel,
    NoDuration,
    /// The record could not be read (`on_error`).
    Error,
}

/// The decision for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    pub reason: Reason,
    /// Policies skipped because they could not evaluate (e.g. no trace id).
    pub skipped: u16,
}

/// A compiled policy: the rules, the settings, and the field matcher they need.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<(String, Rule, bool)>,
    /// Fluent Bit semantics: the chain of processors, each a range of `rules` ORed; a
    /// record is kept when every stage keeps it. Empty: the collector's precedence.
    stages: Vec<(u16, u16)>,
    warnings: Vec<String>,
    sample_on_first_match: bool,
    settings: Settings,
    matcher: Matcher,
    /// Per top-level rule, the number of its first leaf; last: the leaf count.
    leaf_base: Vec<usize>,
    /// Derived from `rules` and `settings` at construction, so the per-record path skips
    /// whole loops: a `drop` rule exists; a missing fact has an action.
    has_drop: bool,
    checks_missing: bool,
    /// Every rule is a leaf whose verdict on a line is its match (no `drop`, `and`,
    /// `not`, probabilistic or Fluent Bit stage; no missing-fact action): a line is
    /// then decided by the first rule it matches, in one plain loop (see
    /// [`Policy::decide`]). The common policies (errors, latency, attributes) are.
    line_leaves: bool,
}

/// The largest `lockstep.kept_trace_memory` (slots of 32 bytes: 32 MiB of the filter's
/// linear memory, which a wasm32 module must also find room for).
pub const MAX_KEPT_TRACE_MEMORY: usize = 1 << 20;

/// The built-in default: keep errors and anything slower than 200 ms (the seed
/// pipeline), as a collector policy block.
pub const DEFAULT_POLICY_YAML: &str = "\
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow
    type: latency
    latency: {threshold_ms: 200}
";

impl<'a> Compiler<'a> {
    fn compile(&mut self, p: &PolicySpec, path: &str) -> Result<Rule, PolicyError> {
        if let Some(k) = p.unmirrorable.keys().next() {
            return Err(match unmirrorable_reason(k) {
                Some(why) => {
                    PolicyError::invalid(path, format!("{k}: cannot be mirrored onto logs: {why}"))
                }
                None => PolicyError::invalid(path, format!("unknown key {k:?}")),
            });
        }
        let missing = |key: &str| {
            PolicyError::invalid(path, format!("type {} needs a `{key}:` block", p.kind))
        };
        let rule = match p.kind.as_str() {
            "always_sample" => Rule::Always,
            "latency" => {
                let c = p.latency.as_ref().ok_or_else(|| missing("latency"))?;
                if c.threshold_ms < 0 || c.upper_threshold_ms < 0 {
                    return Err(PolicyError::invalid(
                        path,
                        "latency thresholds must not be negative",
                    ));
                }
                if c.upper_threshold_ms != 0 && c.upper_threshold_ms < c.threshold_ms {
                    return Err(PolicyError::invalid(
                        path,
                        "upper_threshold_ms is below threshold_ms",
                    ));
                }
                Rule::Latency {
                    lo: c.threshold_ms,
                    hi: c.upper_threshold_ms,
                    inclusive: self.latency == LatencyThreshold::Inclusive,
                }
            }
            "status_code" => status_set(
                &p.status_code
                    .as_ref()
                    .ok_or_else(|| missing("status_code"))?
                    .status_codes,
                path,
            )?,
            "probabilistic" => {
                let c = p
                    .probabilistic
                    .as_ref()
                    .ok_or_else(|| missing("probabilistic"))?;
                if !c.sampling_percentage.is_finite() || c.sampling_percentage < 0.0 {
                    return Err(PolicyError::invalid(
                        path,
                        "sampling_percentage must be a number >= 0",
                    ));
                }
                let salt = if c.hash_salt.is_empty() {
                    sampling::DEFAULT_SALT
                } else {
                    &c.hash_salt
                };
                Rule::Probabilistic {
                    salt: salt.as_bytes().into(),
                    threshold: sampling::threshold(c.sampling_percentage),
                }
            }
            "string_attribute" => {
                let c = p
                    .string_attribute
                    .as_ref()
                    .ok_or_else(|| missing("string_attribute"))?;
                if c.values.is_empty() {
                    return Err(PolicyError::invalid(path, "values must not be empty"));
                }
                let slot = self.slot(&c.key, path)?;
                #[cfg(feature = "regex")]
                let regex = if c.enabled_regex_matching {
                    let mut v = Vec::new();
                    for r in &c.values {
                        v.push(regex::Regex::new(r).map_err(|e| {
                            PolicyError::invalid(path, format!("regex {r:?}: {e}"))
                        })?);
                    }
                    Some(v)
                } else {
                    None
                };
                #[cfg(not(feature = "regex"))]
                if c.enabled_regex_matching {
                    return Err(PolicyError::invalid(
                        path,
                        "enabled_regex_matching needs a build with the `regex` feature",
                    ));
                }
                Rule::Str {
                    slot,
                    values: c.values.clone(),
                    #[cfg(feature = "regex")]
                    regex,
                    invert: c.invert_match,
                }
            }
            "numeric_attribute" => {
                let c = p
                    .numeric_attribute
                    .as_ref()
                    .ok_or_else(|| missing("numeric_attribute"))?;
                if let (Some(a), Some(b)) = (c.min_value, c.max_value) {
                    if a > b {
                        return Err(PolicyError::invalid(path, "min_value is above max_value"));
                    }
                }
                Rule::Num {
                    slot: self.slot(&c.key, path)?,
                    min: c.min_value,
                    max: c.max_value,
                    invert: c.invert_match,
                }
            }
            "boolean_attribute" => {
                let c = p
                    .boolean_attribute
                    .as_ref()
                    .ok_or_else(|| missing("boolean_attribute"))?;
                Rule::Bool {
                    slot: self.slot(&c.key, path)?,
                    value: c.value,
                    invert: c.invert_match,
                }
            }
            "and" => Rule::And(self.subs(
                &p.and.as_ref().ok_or_else(|| missing("and"))?.and_sub_policy,
                path,
                "and_sub_policy",
            )?),
            "drop" => Rule::Drop(
                self.subs(
                    &p.drop
                        .as_ref()
                        .ok_or_else(|| missing("drop"))?
                        .drop_sub_policy,
                    path,
                    "drop_sub_policy",
                )?,
            ),
            "not" => {
                let c = p.not.as_ref().ok_or_else(|| missing("not"))?;
                Rule::Not(Box::new(self.compile(
                    &c.not_sub_policy,
                    &format!("{path}.not.not_sub_policy"),
                )?))
            }
            other => {
                return Err(match unmirrorable_reason(other) {
                    Some(why) => PolicyError::invalid(
                        path,
                        format!("type {other} cannot be mirrored onto logs: {why}"),
                    ),
                    None => PolicyError::invalid(path, format!("unknown policy type {other:?}")),
                })
            }
        };
        Ok(rule)
    }

    fn subs(
        &mut self,
        subs: &[PolicySpec],
        path: &str,
        key: &str,
    ) -> Result<Vec<Rule>, PolicyError> {
        if subs.is_empty() {
            return Err(PolicyError::invalid(
                path,
                format!("{key} must not be empty"),
            ));
        }
        let section = key.split('_').next().unwrap_or(key);
        subs.iter()
            .enumerate()
            .map(|(i, s)| self.compile(s, &format!("{path}.{section}.{key}[{i}]")))
            .collect()
    }
}

impl Policy {
    /// Compiles a parsed policy file.
    pub fn compile(file: &PolicyFile) -> Result<Policy, PolicyError> {
        if let Some(k) = file
            .other
            .keys()
            .find(|k| !IGNORED_COLLECTOR_KEYS.contains(&k.as_str()))
        {
            return Err(PolicyError::invalid(k, "unknown top-level key"));
        }
        match (&file.processors, file.policies.is_empty()) {
            (Some(_), false) => {
                return Err(PolicyError::invalid(
                    "processors",
                    "a policy file holds either `policies:` (collector tail_sampling) or \
                     `processors:` (Fluent Bit's sampling processor), not both",
                ))
            }
            (None, true) => {
                return Err(PolicyError::invalid(
                    "policies",
                    "no policies: a policy file needs at least one (or a Fluent Bit `processors:` block)",
                ))
            }
            _ => {}
        }
        let settings = file.lockstep.clone().unwrap_or_default();
        if settings.kept_trace_memory > MAX_KEPT_TRACE_MEMORY {
            return Err(PolicyError::invalid(
                "lockstep.kept_trace_memory",
                format!(
                    "{} is more than {MAX_KEPT_TRACE_MEMORY} (each remembered trace takes 32 \
                     bytes of the filter's memory; the default is 4096)",
                    settings.kept_trace_memory
                ),
            ));
        }
        let mut attrs = Vec::new();
        let mut c = Compiler {
            attrs: &mut attrs,
            latency: settings.latency_threshold,
        };
        let mut rules = Vec::new();
        let (mut stages, mut warnings) = (Vec::new(), Vec::new());
        if let Some(procs) = &file.processors {
            if file.sample_on_first_match {
                return Err(PolicyError::invalid(
                    "sample_on_first_match",
                    "a collector setting; Fluent Bit's conditions are a plain OR",
                ));
            }
            let chain = crate::fluentbit::compile(procs, &mut c)?;
            rules = chain
                .rules
                .into_iter()
                .map(|(n, r)| (n, r, false))
                .collect();
            stages = chain.stages;
            warnings = chain.warnings;
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in file.policies.iter().enumerate() {
            let path = format!("policies[{i}]");
            if p.name.is_empty() {
                return Err(PolicyError::invalid(&path, "policy needs a name"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(PolicyError::invalid(
                    &path,
                    format!("duplicate policy name {:?}", p.name),
                ));
            }
            rules.push((p.name.clone(), c.compile(p, &path)?, p.kind == "drop"));
        }
        if rules.len() > usize::from(u16::MAX) {
            return Err(PolicyError::invalid("policies", "too many policies"));
        }
        let table = FieldTable::default().with_overrides(&settings.fields);
        let matcher = Matcher::new(table, &attrs)
            .map_err(|e| PolicyError::invalid("lockstep.fields", e.to_string()))?;
        let leaf_base = leaf_bases(&rules);
        Ok(Policy {
            leaf_base,
            has_drop: has_drop(&rules),
            checks_missing: checks_missing(&settings),
            line_leaves: line_leaves(&rules, &stages, &settings),
            rules,
            stages,
            warnings,
            sample_on_first_match: file.sample_on_first_match,
            settings,
            matcher,
        })
    }

    /// The built-in default policy (errors + slower than 200 ms).
    /// Built in code, not parsed: it must work in every build (a JSON-only WASM build
    /// has no YAML parser, and a panic there is a trap on every record).
    pub fn default_policy() -> Policy {
        let spec = |name: &str, kind: &str| PolicySpec {
            name: name.into(),
            kind: kind.into(),
            latency: None,
            status_code: None,
            probabilistic: None,
            string_attribute: None,
            numeric_attribute: None,
            boolean_attribute: None,
            and: None,
            not: None,
            drop: None,
            unmirrorable: Default::default(),
        };
        let errors = PolicySpec {
            status_code: Some(StatusCodeCfg {
                status_codes: vec!["ERROR".into()],
            }),
            ..spec("errors", "status_code")
        };
        let slow = PolicySpec {
            latency: Some(LatencyCfg {
                threshold_ms: 200,
                upper_threshold_ms: 0,
            }),
            ..spec("slow", "latency")
        };
        let file = PolicyFile {
            policies: vec![errors, slow],
            ..PolicyFile::default()
        };
        match Policy::compile(&file) {
            Ok(p) => p,
            // Unreachable (the rules above are valid), but never panic: keep everything.
            Err(_) => Policy {
                leaf_base: vec![0, 1],
                has_drop: false,
                checks_missing: false,
                line_leaves: false,
                rules: vec![("fail_open".into(), Rule::Always, false)],
                stages: Vec::new(),
                warnings: Vec::new(),
                sample_on_first_match: false,
                settings: Settings::default(),
                matcher: Matcher::empty(),
            },
        }
    }

    /// Rules that compile but behave surprisingly in the host they mirror (Fluent Bit
    /// 5.1.1's regex that never matches, a `decision_wait` in ms read as seconds, …):
    /// shown by the CLI and printed by the filter when it loads the policy.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// True when the file mirrors Fluent Bit's `sampling` processor.
    pub fn is_fluent_bit(&self) -> bool {
        !self.stages.is_empty()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// A new extractor for this policy's fields and attributes.
    pub fn extractor(&self) -> Extractor {
        Extractor::new(self.matcher.clone())
    }

    /// The name for a reason: the policy name, or `not_sampled`, `no_trace_id`,
    /// `no_level`, `no_duration`, `error`.
    /// Names what this policy's [`TraceFacts`] mean: a hash of the compiled rules (their
    /// kinds, parameters and leaf numbering, the semantics and settings) and of the facts
    /// layout. Text that compiles to the same policy (a comment, key order, spacing)
    /// has the same fingerprint; a change of any rule, or a lockstep version that numbers
    /// leaves or encodes facts differently, has another. Facts stored under one
    /// fingerprint are read only under the same one.
    pub fn fingerprint(&self) -> u32 {
        /// Bumped when the leaf numbering or the facts encoding changes.
        const FACTS_LAYOUT: u32 = 1;
        let text = format!(
            "{FACTS_LAYOUT}|{:?}|{:?}|{}|{:?}|{:?}|{:?}",
            self.rules,
            self.stages,
            self.sample_on_first_match,
            self.settings,
            self.matcher,
            self.leaf_base
        );
        // FNV-1a: stable across builds and platforms (std's hasher is not).
        text.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    }

    pub fn reason_name(&self, r: Reason) -> &str {
        match r {
            Reason::Policy(i) => self
                .rules
                .get(usize::from(i))
                .map_or("?", |(n, _, _)| n.as_str()),
            Reason::NotSampled => "not_sampled",
            Reason::NoTraceId => "no_trace_id",
            Reason::NoLevel => "no_level",
            Reason::NoDuration => "no_duration",
            Reason::Error => "unparsed",
        }
    }

    /// Policy names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(n, _, _)| n.as_str())
    }

    /// The decision for a record that could not be read.
    pub fn on_error(&self) -> Decision {
        Decision {
            keep: self.settings.on_error == OnError::Keep,
            reason: Reason::Error,
            skipped: 0,
        }
    }

    /// Decides one extracted record.
    pub fn decide(&self, e: &Extracted) -> Decision {
        if self.line_leaves {
            // What `decide_with` computes for such a policy: no rule can drop or be
            // skipped, so the first rule that samples names the decision. This runs for
            // every record inside the filter's interpreter; the general loop costs
            // ~100 instructions more per record there.
            for (i, (_, rule, _)) in self.rules.iter().enumerate() {
                if rule.line_verdict(e) {
                    return Decision {
                        keep: true,
                        reason: Reason::Policy(i as u16),
                        skipped: 0,
                    };
                }
            }
            return Decision {
                keep: false,
                reason: Reason::NotSampled,
                skipped: 0,
            };
        }
        self.decide_with(&Line(e))
    }

    /// [`Policy::decide`] by the general path, for tests of the fast one.
    #[cfg(test)]
    fn decide_general(&self, e: &Extracted) -> Decision {
        self.decide_with(&Line(e))
    }

    /// Decides a trace from the facts of all its lines ([`Policy::observe`]): the
    /// same precedence and rules as [`Policy::decide`], each rule asked whether *any*
    /// line matches it (a status code, an attribute value, a Fluent Bit latency
    /// condition, per span as the sampler does), `latency` against the longest duration
    /// any line carries, `probabilistic` on the trace id, `and`/`not`/`drop` combining
    /// those trace-level verdicts, as the tail sampler combines its policies over a
    /// trace's spans. `no_level`/`no_duration` apply when no line had one.
    pub fn decide_trace(&self, f: &TraceFacts) -> Decision {
        self.decide_with(f)
    }

    /// Adds one line to its trace's facts: which leaf rules it matches (before any
    /// `invert_match`), its duration, whether it had a level. Never allocates unless the
    /// policy has more than 128 leaf rules.
    pub fn observe(&self, e: &Extracted, f: &mut TraceFacts) {
        let mut idx = 0usize;
        for (_, rule, _) in &self.rules {
            rule.observe(e, f, &mut idx);
        }
        if let DurationState::Ms(ms) = e.duration {
            f.add_duration(ms);
        }
        if matches!(e.level, LevelState::Known(_)) {
            f.flags |= TraceFacts::LEVEL;
        }
        f.lines = f.lines.saturating_add(1);
    }

    /// How many leaf rules the policy has (bits in a [`TraceFacts`]).
    pub fn leaf_count(&self) -> usize {
        self.leaf_base.last().copied().unwrap_or(0)
    }

    fn decide_with<F: Facts>(&self, e: &F) -> Decision {
        if self.checks_missing {
            if let Some(d) = self.decide_missing(e) {
                return d;
            }
        }
        if !self.stages.is_empty() {
            return self.decide_stages(e);
        }
        let mut skipped = 0u16;
        // Drop policies first; then the rest: Dropped > Sampled > NotSampled.
        for (i, (_, rule, is_drop)) in self.rules.iter().enumerate() {
            if !self.has_drop {
                break;
            }
            if *is_drop {
                match rule.eval(e, &mut self.leaf_base[i].clone()) {
                    Ok(Verdict::Dropped) => {
                        return Decision {
                            keep: false,
                            reason: Reason::Policy(i as u16),
                            skipped,
                        }
                    }
                    Ok(_) => {}
                    Err(_) => skipped += 1,
                }
            }
        }
        let mut first_sampled = None;
        for (i, (_, rule, is_drop)) in self.rules.iter().enumerate() {
            if *is_drop {
                continue;
            }
            match rule.eval(e, &mut self.leaf_base[i].clone()) {
                Ok(Verdict::Dropped) => {
                    return Decision {
                        keep: false,
                        reason: Reason::Policy(i as u16),
                        skipped,
                    }
                }
                Ok(Verdict::Sampled) => {
                    if first_sampled.is_none() {
                        first_sampled = Some(i as u16);
                        if self.sample_on_first_match {
                            break;
                        }
                    }
                }
                Ok(Verdict::NotSampled) => {}
                Err(_) => skipped += 1,
            }
        }
        match first_sampled {
            Some(i) => Decision {
                keep: true,
                reason: Reason::Policy(i),
                skipped,
            },
            None => Decision {
                keep: false,
                reason: Reason::NotSampled,
                skipped,
            },
        }
    }
}

fn has_drop(rules: &[(String, Rule, bool)]) -> bool {
    rules.iter().any(|r| r.2)
}

fn line_leaves(rules: &[(String, Rule, bool)], stages: &[(u16, u16)], s: &Settings) -> bool {
    stages.is_empty()
        && !checks_missing(s)
        && rules.iter().all(|(_, r, is_drop)| {
            !is_drop
                && matches!(
                    r,
                    Rule::Always
                        | Rule::Latency { .. }
                        | Rule::Status { .. }
                        | Rule::Str { .. }
                        | Rule::Num { .. }
                        | Rule::Bool { .. }
                )
        })
}

fn checks_missing(s: &Settings) -> bool {
    [s.no_trace_id, s.no_level, s.no_duration]
        .iter()
        .any(|&a| a != Missing::Evaluate)
}

impl Policy {
    /// The `no_trace_id` / `no_level` / `no_duration` settings, in that order: the
    /// decision of the first that applies to these facts.
    #[inline(never)]
    fn decide_missing<F: Facts>(&self, e: &F) -> Option<Decision> {
        let s = &self.settings;
        let missing = [
            (s.no_trace_id, !e.has_trace_id(), Reason::NoTraceId),
            (s.no_level, !e.has_level(), Reason::NoLevel),
            (s.no_duration, e.duration_ms().is_none(), Reason::NoDuration),
        ];
        for (action, is_missing, reason) in missing {
            if is_missing && action != Missing::Evaluate {
                return Some(Decision {
                    keep: action == Missing::Keep,
                    reason,
                    skipped: 0,
                });
            }
        }
        None
    }

    /// Fluent Bit: every stage must keep the record; within a tail stage the conditions
    /// are ORed. The reason of a kept record names the matching condition of the last
    /// tail stage with conditions, else the last probabilistic stage, else `tail` (a
    /// tail without conditions keeps everything). A record dropped by a probabilistic
    /// stage is dropped with that stage's name; by a tail stage, `not_sampled`.
    fn decide_stages<F: Facts>(&self, e: &F) -> Decision {
        let mut best: Option<(u8, u16)> = None;
        for &(a, b) in &self.stages {
            let hit = (a..b).find(|&i| {
                let i = usize::from(i);
                matches!(
                    self.rules[i].1.eval(e, &mut self.leaf_base[i].clone()),
                    Ok(Verdict::Sampled)
                )
            });
            let Some(i) = hit else {
                let by_probabilistic = b == a + 1
                    && matches!(self.rules[usize::from(a)].1, Rule::FbProbabilistic { .. });
                return Decision {
                    keep: false,
                    reason: if by_probabilistic {
                        Reason::Policy(a)
                    } else {
                        Reason::NotSampled
                    },
                    skipped: 0,
                };
            };
            let rank = match self.rules[usize::from(i)].1 {
                Rule::Always => 0,
                Rule::FbProbabilistic { .. } => 1,
                _ => 2,
            };
            if best.is_none_or(|(r, _)| rank >= r) {
                best = Some((rank, i));
            }
        }
        Decision {
            keep: true,
            reason: best.map_or(Reason::NotSampled, |(_, i)| Reason::Policy(i)),
            skipped: 0,
        }
    }
}

fn leaf_bases(rules: &[(String, Rule, bool)]) -> Vec<usize> {
    let mut v = Vec::with_capacity(rules.len() + 1);
    let mut n = 0;
    for (_, r, _) in rules {
        v.push(n);
        n += r.leaf_count();
    }
    v.push(n);
    v
}

/// A record's duration truncated to whole milliseconds, after rounding to whole
/// nanoseconds (so `1.001` s, 1000.9999999999999 ms in f64, is 1001 as its nanoseconds
/// would be). Both samplers truncate span durations to ms.
fn whole_ms(ms: f64) -> i64 {
    (ms * 1e6).round() as i64 / 1_000_000
}

fn sampled(b: bool) -> Verdict {
    if b {
        Verdict::Sampled
    } else {
        Verdict::NotSampled
    }
}

/// Formats a scalar attribute as text without allocating (numbers and booleans are
/// compared as their JSON text by string_attribute).
fn scalar_text<'b>(a: &Attr<'b>, buf: &'b mut [u8; 40]) -> Option<&'b str> {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    match *a {
        Attr::Str(s) => return Some(s),
        Attr::UInt(n) => write!(cur, "{n}").ok()?,
        Attr::Int(n) => write!(cur, "{n}").ok()?,
        Attr::Float(f) => write!(cur, "{f}").ok()?,
        Attr::Bool(b) => write!(cur, "{b}").ok()?,
        _ => return None,
    }
    let n = cur.position() as usize;
    std::str::from_utf8(&buf[..n]).ok()
}

/// One line, decided alone.
pub(crate) struct Line<'a>(pub(crate) &'a Extracted);

impl Facts for Line<'_> {
    const NUMBERED: bool = false;
    fn trace_id(&self) -> Option<[u8; 16]> {
        self.0.trace_id()
    }
    fn has_level(&self) -> bool {
        matches!(self.0.level, LevelState::Known(_))
    }
    fn duration_ms(&self) -> Option<f64> {
        match self.0.duration {
            DurationState::Ms(ms) => Some(ms),
            _ => None,
        }
    }
    #[inline]
    fn leaf(&self, _idx: usize, rule: &Rule) -> bool {
        rule.line_match(self.0)
    }
}

impl Rule {
    /// Leaves under (and including) this rule.
    pub(crate) fn leaf_count(&self) -> usize {
        match self {
            Rule::And(subs) | Rule::Drop(subs) => subs.iter().map(Rule::leaf_count).sum(),
            Rule::Not(sub) => sub.leaf_count(),
            _ => 1,
        }
    }

    /// Sets, in `f`, the bit of every leaf this line matches.
    fn observe(&self, e: &Extracted, f: &mut TraceFacts, idx: &mut usize) {
        match self {
            Rule::And(subs) | Rule::Drop(subs) => {
                for s in subs {
                    s.observe(e, f, idx);
                }
            }
            Rule::Not(sub) => sub.observe(e, f, idx),
            leaf => {
                if leaf.line_match(e) {
                    f.set_bit(*idx);
                }
                *idx += 1;
            }
        }
    }

    /// Whether a leaf samples one line (its match, `invert_match` applied): what
    /// [`Rule::eval`] answers for the leaves [`line_leaves`] admits.
    #[inline]
    fn line_verdict(&self, e: &Extracted) -> bool {
        match self {
            Rule::Str { invert, .. } | Rule::Num { invert, .. } | Rule::Bool { invert, .. } => {
                self.line_match(e) != *invert
            }
            _ => self.line_match(e),
        }
    }

    /// A `string_attribute` leaf's match. Out of line: its text buffer would otherwise
    /// give every `line_match` call a stack frame.
    #[inline(never)]
    fn str_match(&self, e: &Extracted) -> bool {
        let Rule::Str { slot, values, .. } = self else {
            return false;
        };
        let mut buf = [0u8; 40];
        let a = e.attr(*slot);
        match scalar_text(&a, &mut buf) {
            None => false,
            Some(text) => {
                #[cfg(feature = "regex")]
                if let Rule::Str {
                    regex: Some(rs), ..
                } = self
                {
                    rs.iter().any(|r| r.is_match(text))
                } else {
                    values.iter().any(|v| v == text)
                }
                #[cfg(not(feature = "regex"))]
                values.iter().any(|v| v == text)
            }
        }
    }

    /// Whether one line matches this leaf, before `invert_match` (`latency` and the
    /// probabilistic rules too, though a trace reads those from its duration and id).
    fn line_match(&self, e: &Extracted) -> bool {
        match self {
            Rule::Always => true,
            Rule::Latency { lo, hi, inclusive } => match e.duration {
                DurationState::Ms(ms) => latency_in(ms, *lo, *hi, *inclusive),
                _ => false,
            },
            Rule::Status { error, ok, unset } => match e.level {
                LevelState::Known(l) if l.is_error() => *error,
                LevelState::Known(_) => *ok || *unset,
                _ => *unset,
            },
            Rule::Probabilistic { salt, threshold } => e
                .trace_id()
                .is_some_and(|t| sampling::hash_trace_id(salt, &t) <= *threshold),
            Rule::Str { .. } => self.str_match(e),
            Rule::Num { slot, min, max, .. } => e
                .attr(*slot)
                .as_f64()
                .is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
            Rule::Bool { slot, value, .. } => {
                let b = match e.attr(*slot) {
                    Attr::Bool(b) => Some(b),
                    Attr::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
                    Attr::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
                    _ => None,
                };
                b.is_some_and(|b| b == *value)
            }
            Rule::And(_) | Rule::Not(_) | Rule::Drop(_) => false,
            Rule::FbProbabilistic { percentage } => {
                sampling::fluent_bit_keep(e.trace_id().as_ref(), *percentage)
            }
            Rule::FbLatency { low, high } => match e.duration {
                // Per span in Fluent Bit: each record's own duration; start > end (a
                // negative duration) never matches.
                DurationState::Ms(ms) if ms >= 0.0 => {
                    let d = whole_ms(ms);
                    (*low != 0 && d <= *low) || (*high != 0 && d >= *high)
                }
                _ => false,
            },
            Rule::FbStr { slot, values, how } => match (e.attr(*slot), how) {
                (Attr::Str(_), FbMatch::Exists) => true,
                (Attr::Str(s), FbMatch::Strict) => values.iter().any(|v| v == s),
                _ => false,
            },
            Rule::FbNum {
                slot,
                min,
                max,
                exists,
            } => {
                // Typed as Fluent Bit types span attributes: numbers only, never numeric
                // strings. A JSON integer stands for OTLP's signed intValue.
                let in_range = match e.attr(*slot) {
                    Attr::UInt(u) => i64::try_from(u).map_or(
                        // Beyond i64: Fluent Bit's UINT branch compares unsigned.
                        *min >= 0 && u >= *min as u64 && *max >= 0 && u <= *max as u64,
                        |v| v >= *min && v <= *max,
                    ),
                    Attr::Int(v) => v >= *min && v <= *max,
                    Attr::Float(f) => f >= *min as f64 && f <= *max as f64,
                    _ => return false,
                };
                *exists || in_range
            }
            Rule::FbBool {
                slot,
                value,
                exists,
            } => match e.attr(*slot) {
                Attr::Bool(b) => *exists || b == *value,
                _ => false,
            },
        }
    }

    /// This rule's verdict on `f`; `idx` is the number of its first leaf.
    fn eval<F: Facts>(&self, f: &F, idx: &mut usize) -> Result<Verdict, EvalError> {
        let here = *idx;
        if F::NUMBERED && !matches!(self, Rule::And(_) | Rule::Not(_) | Rule::Drop(_)) {
            *idx += 1;
        }
        Ok(match self {
            Rule::Always => Verdict::Sampled,
            // The collector truncates the trace duration (ns) to whole milliseconds.
            Rule::Latency { lo, hi, inclusive } => sampled(
                f.duration_ms()
                    .is_some_and(|ms| latency_in(ms, *lo, *hi, *inclusive)),
            ),
            Rule::Probabilistic { salt, threshold } => {
                let t = f.trace_id().ok_or(EvalError::NoTraceId)?;
                sampled(sampling::hash_trace_id(salt, &t) <= *threshold)
            }
            Rule::FbProbabilistic { percentage } => sampled(sampling::fluent_bit_keep(
                f.trace_id().as_ref(),
                *percentage,
            )),
            Rule::Str { invert, .. } | Rule::Num { invert, .. } | Rule::Bool { invert, .. } => {
                sampled(f.leaf(here, self) != *invert)
            }
            Rule::And(subs) => {
                for s in subs {
                    if s.eval(f, idx)? != Verdict::Sampled {
                        return Ok(Verdict::NotSampled);
                    }
                }
                Verdict::Sampled
            }
            Rule::Not(sub) => match sub.eval(f, idx)? {
                Verdict::Sampled => Verdict::NotSampled,
                Verdict::NotSampled => Verdict::Sampled,
                Verdict::Dropped => Verdict::Dropped,
            },
            Rule::Drop(subs) => {
                for s in subs {
                    if s.eval(f, idx)? != Verdict::Sampled {
                        return Ok(Verdict::NotSampled);
                    }
                }
                Verdict::Dropped
            }
            Rule::Status { .. }
            | Rule::FbLatency { .. }
            | Rule::FbStr { .. }
            | Rule::FbNum { .. }
            | Rule::FbBool { .. } => sampled(f.leaf(here, self)),
        })
    }
}

fn latency_in(ms: f64, lo: i64, hi: i64, inclusive: bool) -> bool {
    let d = whole_ms(ms);
    let above = if inclusive { d >= lo } else { d > lo };
    above && (hi == 0 || d <= hi)
}

/// A policy with its extractor: decides JSON text or decoded records.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Policy,
    extractor: Extractor,
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        let extractor = policy.extractor();
        Engine { policy, extractor }
    }

    /// An engine whose extraction leaves span ids unread (no policy reads them), for a
    /// caller that never asks for them: the filter without `annotate`. Decisions, and
    /// which records are unreadable, are [`Engine::new`]'s on every record
    /// ([`lockstep_record::Matcher::without_span_ids`]); [`Extracted::span_id`] is `None`
    /// unless the id needed decoding.
    pub fn without_span_ids(policy: Policy) -> Self {
        let extractor = Extractor::new(policy.matcher().without_span_ids());
        Engine { policy, extractor }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The extraction of the last record decided.
    pub fn extracted(&self) -> &Extracted {
        self.extractor.last()
    }

    /// Decides one JSON record (fast path). An unreadable record gets `on_error`.
    pub fn decide_json(&mut self, text: &[u8]) -> (Decision, Option<ScanError>) {
        match self.extractor.extract_json(text) {
            Ok(e) => (self.policy.decide(e), None),
            Err(err) => (self.policy.on_error(), Some(err)),
        }
    }

    /// Decides one record as Fluent Bit's filter_wasm hands it over
    /// ([`lockstep_record::Extractor::extract_host_json`]): its bare `nan`/`inf` values and
    /// unquoted keys are read, not an error. The flag says the text had them (it is not
    /// valid JSON and must not be echoed).
    pub fn decide_host_json(&mut self, text: &[u8]) -> (Decision, Option<ScanError>, bool) {
        match self.extractor.extract_host_json(text) {
            Ok((e, host_tokens)) => (self.policy.decide(e), None, host_tokens),
            Err(err) => (self.policy.on_error(), Some(err), false),
        }
    }

    /// Decides one record from any self-describing deserializer (serde path).
    #[cfg(feature = "serde-path")]
    pub fn decide_de<'de, D: serde::Deserializer<'de>>(
        &mut self,
        d: D,
    ) -> Result<Decision, D::Error> {
        let e = self.extractor.extract_de(d)?;
        Ok(self.policy.decide(e))
    }
}

#[cfg(test)]
mod line_leaves_tests {
    use proptest::prelude::*;

    /// Rules the fast line path admits, and some it must refuse (drop, and, not,
    /// probabilistic, a missing-fact action), in any order.
    const RULES: &[&str] = &[
        "{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}",
        "{name: oks, type: status_code, status_code: {status_codes: [OK, UNSET]}}",
        "{name: slow, type: latency, latency: {threshold_ms: 200}}",
        "{name: band, type: latency, latency: {threshold_ms: 50, upper_threshold_ms: 300}}",
        "{name: post, type: string_attribute, string_attribute: {key: method, values: [POST]}}",
        "{name: not-health, type: string_attribute, string_attribute: {key: path, values: [/health], invert_match: true}}",
        "{name: fivexx, type: numeric_attribute, numeric_attribute: {key: status, min_value: 500, max_value: 599}}",
        "{name: flagged, type: boolean_attribute, boolean_attribute: {key: debug, value: true, invert_match: true}}",
        "{name: not-5xx, type: numeric_attribute, numeric_attribute: {key: status, min_value: 500, max_value: 599, invert_match: true}}",
        "{name: all, type: always_sample}",
        "{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}",
        "{name: both, type: and, and: {and_sub_policy: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}, {name: s, type: latency, latency: {threshold_ms: 100}}]}}",
        "{name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: path, values: [/health]}}]}}",
    ];

    fn record() -> impl Strategy<Value = serde_json::Value> {
        (
            prop::option::of(prop::sample::select(vec![
                "error", "ERR", "info", "debug", "bogus",
            ])),
            prop::option::of(0u32..400),
            prop::option::of(prop::sample::select(vec!["POST", "GET"])),
            prop::option::of(prop::sample::select(vec!["/health", "/api"])),
            prop::option::of(prop::sample::select(vec![200u32, 404, 500, 503])),
            prop::option::of(any::<bool>()),
            any::<bool>(),
        )
            .prop_map(|(level, ms, method, path, status, debug, trace)| {
                let trace = trace.then_some("4bf92f3577b34da6a3ce929d0e0e4736");
                let fields: [(&str, Option<serde_json::Value>); 7] = [
                    ("level", level.map(Into::into)),
                    ("duration_ms", ms.map(Into::into)),
                    ("method", method.map(Into::into)),
                    ("path", path.map(Into::into)),
                    ("status", status.map(Into::into)),
                    ("debug", debug.map(Into::into)),
                    ("trace_id", trace.map(Into::into)),
                ];
                let m: serde_json::Map<String, serde_json::Value> = fields
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_string(), v?)))
                    .collect();
                serde_json::Value::Object(m)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The one-loop line path decides every record as the general path does, and is
        /// taken exactly for the policies it may be.
        #[test]
        fn fast_line_path_decides_as_the_general_one(
            picks in prop::collection::vec(0..RULES.len(), 1..5),
            no_level in prop::sample::select(vec![
                "",
                "lockstep: {no_level: drop}\n",
                "lockstep: {no_trace_id: keep}\n",
                "lockstep: {no_duration: drop, no_level: keep}\n",
            ]),
            records in prop::collection::vec(record(), 1..20),
        ) {
            let mut yaml = String::from(no_level);
            yaml.push_str("policies:\n");
            for (n, &i) in picks.iter().enumerate() {
                // Names must be unique.
                yaml.push_str(&format!("  - {}\n", RULES[i].replacen("{name: ", &format!("{{name: r{n}", ), 1)));
            }
            let p = crate::compile_policy(&yaml, crate::Format::Yaml, "t").unwrap();
            let admissible = no_level.is_empty() && picks.iter().all(|&i| i < 10);
            prop_assert_eq!(p.line_leaves, admissible, "{}", yaml);
            let mut ex = p.extractor();
            for r in &records {
                let text = r.to_string();
                let e = ex.extract_json(text.as_bytes()).unwrap();
                prop_assert_eq!(p.decide(e), p.decide_general(e), "{} on {}", yaml, text);
            }
        }
    }
}
