//! Deciding by whole trace: the facts a trace's lines add up to ([`TraceFacts`]),
//! which [`Policy::observe`](crate::Policy::observe) accumulates and
//! [`Policy::decide_trace`](crate::Policy::decide_trace) decides, and their compact
//! byte form (so a line waiting on disk carries its own facts, and a restart decides
//! its trace as it would have been decided).
//!
//! Invariants: accumulating is a join (bitwise OR, maximum duration, OR of flags), so
//! merging a line twice, or in any order, gives the same facts; decoding never panics
//! on any input and rejects what it cannot read whole.

use crate::conf::{atoi, key_ci};
use crate::rule::{Facts, Rule};

/// What the lines of one trace said, accumulated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceFacts {
    trace_id: Option<[u8; 16]>,
    /// Leaf matches, one bit per leaf rule (depth-first order); the first 128 inline.
    bits: u128,
    spill: Vec<u64>,
    /// The longest duration seen (ms); NaN: none.
    max_ms: Option<f64>,
    pub(crate) flags: u8,
    pub(crate) lines: u32,
}

impl TraceFacts {
    pub(crate) const LEVEL: u8 = 1;
    const DURATION: u8 = 2;

    /// No line yet, for a trace with this id (`None`: a line decided alone).
    pub fn new(trace_id: Option<[u8; 16]>) -> Self {
        TraceFacts {
            trace_id,
            ..TraceFacts::default()
        }
    }

    pub fn trace_id(&self) -> Option<&[u8; 16]> {
        self.trace_id.as_ref()
    }

    /// Lines accumulated.
    pub fn lines(&self) -> u32 {
        self.lines
    }

    /// The longest duration any line carried (ms).
    pub fn max_duration_ms(&self) -> Option<f64> {
        self.max_ms
    }

    pub(crate) fn set_bit(&mut self, i: usize) {
        if i < 128 {
            self.bits |= 1u128 << i;
        } else {
            let w = (i - 128) / 64;
            if self.spill.len() <= w {
                self.spill.resize(w + 1, 0);
            }
            self.spill[w] |= 1u64 << ((i - 128) % 64);
        }
    }

    pub(crate) fn bit(&self, i: usize) -> bool {
        if i < 128 {
            self.bits & (1u128 << i) != 0
        } else {
            let w = (i - 128) / 64;
            self.spill
                .get(w)
                .is_some_and(|x| x & (1u64 << ((i - 128) % 64)) != 0)
        }
    }

    pub(crate) fn add_duration(&mut self, ms: f64) {
        if ms.is_nan() {
            return;
        }
        self.flags |= Self::DURATION;
        if self.max_ms.is_none_or(|m| ms > m) {
            self.max_ms = Some(ms);
        }
    }

    /// Adds another accumulation of the same trace (lines read back from disk).
    pub fn merge(&mut self, other: &TraceFacts) {
        self.bits |= other.bits;
        if self.spill.len() < other.spill.len() {
            self.spill.resize(other.spill.len(), 0);
        }
        for (a, b) in self.spill.iter_mut().zip(&other.spill) {
            *a |= b;
        }
        if let Some(ms) = other.max_ms {
            self.add_duration(ms);
        }
        self.flags |= other.flags;
        self.lines = self.lines.saturating_add(other.lines);
        if self.trace_id.is_none() {
            self.trace_id = other.trace_id;
        }
    }

    /// Appends the facts (not the trace id) in their byte form:
    /// `flags u8, lines u32 LE, [max_ms f64 LE if flags has a duration], n u16 LE,
    /// then n bytes of leaf bits (little-endian bit order)`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.extend_from_slice(&self.lines.to_le_bytes());
        if let Some(ms) = self.max_ms {
            out.extend_from_slice(&ms.to_le_bytes());
        }
        let low = self.bits.to_le_bytes();
        let byte = |i: usize| -> u8 {
            if i < 16 {
                low[i]
            } else {
                self.spill[(i - 16) / 8].to_le_bytes()[(i - 16) % 8]
            }
        };
        // Trailing zero bytes are left out.
        let mut n = 16 + 8 * self.spill.len();
        while n > 0 && byte(n - 1) == 0 {
            n -= 1;
        }
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend((0..n).map(byte));
    }

    /// Reads what [`TraceFacts::encode`] wrote; returns the facts and the bytes used.
    pub fn decode(trace_id: Option<[u8; 16]>, b: &[u8]) -> Option<(TraceFacts, usize)> {
        let flags = *b.first()?;
        if flags & !(Self::LEVEL | Self::DURATION) != 0 {
            return None;
        }
        let lines = u32::from_le_bytes(b.get(1..5)?.try_into().ok()?);
        let mut at = 5;
        let max_ms = if flags & Self::DURATION != 0 {
            let ms = f64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
            at += 8;
            if ms.is_nan() {
                return None; // never written: corrupt
            }
            Some(ms)
        } else {
            None
        };
        let n = usize::from(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
        at += 2;
        let bits = b.get(at..at + n)?;
        at += n;
        let mut f = TraceFacts {
            trace_id,
            max_ms,
            flags,
            lines,
            ..TraceFacts::default()
        };
        for (i, &byte) in bits.iter().enumerate() {
            for j in 0..8 {
                if byte & (1 << j) != 0 {
                    f.set_bit(i * 8 + j);
                }
            }
        }
        Some((f, at))
    }
}

impl Facts for TraceFacts {
    const NUMBERED: bool = true;
    fn trace_id(&self) -> Option<[u8; 16]> {
        self.trace_id
    }
    fn has_level(&self) -> bool {
        self.flags & Self::LEVEL != 0
    }
    fn duration_ms(&self) -> Option<f64> {
        self.max_ms
    }
    fn leaf(&self, idx: usize, _rule: &Rule) -> bool {
        self.bit(idx)
    }
}

/// When a trace sampler's file says to decide and how many traces it holds: the
/// Collector's top-level `decision_wait` (a Go duration) and `num_traces`, or the first
/// Fluent Bit `tail` processor's `sampling_settings` (`decision_wait` in whole seconds as
/// 5.1.1 reads it, `max_traces`). `None` where the file does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TraceTiming {
    pub decision_wait_ms: Option<f64>,
    pub num_traces: Option<u64>,
    /// The Collector's `decision_cache: {sampled_cache_size, non_sampled_cache_size}`.
    pub sampled_cache_size: Option<u64>,
    pub non_sampled_cache_size: Option<u64>,
}

impl crate::PolicyFile {
    /// See [`TraceTiming`].
    pub fn trace_timing(&self) -> TraceTiming {
        use serde_json::Value;
        let num = |v: &Value| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let mut t = TraceTiming::default();
        if let Some(w) = self.other.get("decision_wait") {
            t.decision_wait_ms = match w {
                Value::String(s) => lockstep_record::duration::go_duration_ms(s.trim()),
                // A bare number in a Collector config is nanoseconds (time.Duration).
                Value::Number(n) => n.as_f64().map(|ns| ns / 1e6),
                _ => None,
            };
        }
        t.num_traces = self.other.get("num_traces").and_then(num);
        if let Some(Value::Object(c)) = self.other.get("decision_cache") {
            t.sampled_cache_size = c.get("sampled_cache_size").and_then(num);
            t.non_sampled_cache_size = c.get("non_sampled_cache_size").and_then(num);
        }
        if let Some(p) = &self.processors {
            let tail = p.traces.iter().filter_map(Value::as_object).find(|m| {
                key_ci(m, "type")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case("tail"))
            });
            if let Some(Value::Object(s)) = tail.and_then(|m| key_ci(m, "sampling_settings")) {
                if let Some(w) = key_ci(s, "decision_wait") {
                    let text = match w {
                        Value::String(x) => x.clone(),
                        other => other.to_string(),
                    };
                    t.decision_wait_ms = Some(atoi(&text).max(0) as f64 * 1000.0);
                }
                t.num_traces = key_ci(s, "max_traces").and_then(num);
            }
        }
        t
    }
}
