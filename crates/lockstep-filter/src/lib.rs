//! # lockstep-filter
//!
//! What the WebAssembly filter does with one record, as plain Rust (the plugin in
//! `plugins/filter-lockstep` only moves bytes in and out of linear memory).
//!
//! Invariants:
//! - Never returns invalid JSON to the host: an unchanged record is echoed only after the
//!   scanner validated it; a record that is not valid JSON is never echoed — when kept it
//!   is returned wrapped as `{"lockstep_unparsed":"<original text>"}` and counted.
//! - What Fluent Bit's own conversion writes that is not JSON (NaN/Infinity as bare
//!   `nan`/`inf`, non-string keys unquoted) does not stop the decision: such a record is
//!   decided like any other (dropped at no extra cost), never kept just because it could
//!   not be read; kept, it is rewritten as valid JSON (the value `null`, the key quoted)
//!   so it keeps its fields downstream, and wrapped only if that still is not JSON.
//! - No allocation per record: the output buffer and the extractor's buffers are reused.
//! - Kept trace memory is bounded (direct-mapped, a power of two of slots): later lines of
//!   a kept trace are kept unless a `drop` policy drops them.
//! - A policy that fails to load never drops logs: the filter keeps everything (fail open).

pub use lockstep_policy::{compile_policy, Format, Policy};
use lockstep_policy::{Engine, Reason};
use lockstep_record::ids::hex_into;
use lockstep_record::{DurationState, LevelState};

/// What to return to the host.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Keep the record as it came (return the input pointer).
    KeepUnchanged,
    /// Drop (return `""`).
    Drop,
    /// Keep this NUL-terminated JSON text instead.
    Keep(&'a [u8]),
}

/// Counters, for the module's own reporting and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub kept: u64,
    pub dropped: u64,
    /// Records that were not valid JSON objects.
    pub unreadable: u64,
    /// Kept because an earlier line of the same trace was kept.
    pub kept_by_memory: u64,
    /// Kept records whose host tokens (`nan`, `inf`, unquoted keys) were rewritten as
    /// JSON (`null`, quoted keys).
    pub rewritten: u64,
}

/// Recently kept trace ids, by [`Extracted::trace_key`] (the id's hex digits, so a line
/// is looked up without decoding its id). Direct-mapped: a newer id may evict an older
/// one that hashes to the same slot; nothing else is ever lost or grown.
///
/// [`Extracted::trace_key`]: lockstep_record::Extracted::trace_key
#[derive(Debug, Clone)]
pub struct TraceMemory {
    slots: Vec<TraceKey>,
    /// 64 − log2(slots): a slot is the hash's top bits.
    shift: u32,
}

/// [`lockstep_record::Extracted::trace_key`].
pub type TraceKey = [u64; 4];

impl TraceMemory {
    /// A memory of `size` slots rounded up to a power of two; none (capacity 0) when
    /// that much memory cannot be had (never a panic: in the filter, a trap).
    pub fn new(size: usize) -> Self {
        let n = match size {
            0 => 0,
            _ => size.checked_next_power_of_two().unwrap_or(0),
        };
        let mut slots = Vec::new();
        let n = if slots.try_reserve_exact(n).is_ok() {
            n
        } else {
            0
        };
        // An all-zero key is no id's: hex digits are never zero bytes.
        slots.resize(n, [0; 4]);
        TraceMemory {
            slots,
            shift: 64 - n.max(1).trailing_zeros(),
        }
    }
    fn slot(&self, t: &TraceKey) -> usize {
        // Hex digits carry four bits a byte: every word goes in (B3 64-bit ids have a
        // high half of zeros), and the slot is taken from the product's high bits.
        let h = (t[0] ^ t[1].rotate_left(16) ^ t[2].rotate_left(32) ^ t[3].rotate_left(48))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h.wrapping_shr(self.shift) as usize & (self.slots.len() - 1)
    }
    /// Remembers a kept trace: `t` must be the key of a valid id.
    pub fn insert(&mut self, t: &TraceKey) {
        // The empty slot's value: remembering it would make every empty slot match.
        if *t == [0; 4] {
            return;
        }
        if !self.slots.is_empty() {
            let i = self.slot(t);
            self.slots[i] = *t;
        }
    }
    pub fn contains(&self, t: &TraceKey) -> bool {
        !self.slots.is_empty() && self.slots[self.slot(t)] == *t
    }
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// The filter: a policy engine, the trace memory and a reusable output buffer.
#[derive(Debug, Clone)]
pub struct Filter {
    engine: Option<Engine>,
    memory: TraceMemory,
    annotate: bool,
    out: Vec<u8>,
    last_reason: LastReason,
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy)]
enum LastReason {
    Policy(Reason),
    KeptTrace,
    FailOpen,
}

impl Filter {
    pub fn new(policy: Policy) -> Self {
        let s = policy.settings();
        let memory = TraceMemory::new(s.kept_trace_memory);
        let annotate = s.annotate;
        // Span ids are read only to annotate: without it, plain ones are left unread.
        let engine = if annotate {
            Engine::new(policy)
        } else {
            Engine::without_span_ids(policy)
        };
        Filter {
            engine: Some(engine),
            memory,
            annotate,
            out: Vec::new(),
            last_reason: LastReason::FailOpen,
            stats: Stats::default(),
        }
    }

    /// A filter that keeps every record (the policy could not be loaded).
    pub fn fail_open() -> Self {
        Filter {
            engine: None,
            memory: TraceMemory::new(0),
            annotate: false,
            out: Vec::new(),
            last_reason: LastReason::FailOpen,
            stats: Stats::default(),
        }
    }

    /// Slots of the kept-trace memory (0: none, by setting or because the memory could
    /// not be had).
    pub fn memory_capacity(&self) -> usize {
        self.memory.capacity()
    }

    pub fn is_fail_open(&self) -> bool {
        self.engine.is_none()
    }

    /// Why the last record was kept or dropped: a policy name, `not_sampled`,
    /// `no_trace_id`, `no_level`, `no_duration`, `error`, `kept_trace` (an earlier line of
    /// its trace was kept) or `fail_open`.
    pub fn last_reason(&self) -> &str {
        match (self.last_reason, &self.engine) {
            (LastReason::Policy(r), Some(e)) => e.policy().reason_name(r),
            (LastReason::KeptTrace, _) => "kept_trace",
            _ => "fail_open",
        }
    }

    /// Decides one record (JSON text, a trailing NUL allowed).
    pub fn process(&mut self, record: &[u8]) -> Outcome<'_> {
        self.stats.records += 1;
        let Some(engine) = self.engine.as_mut() else {
            self.stats.kept += 1;
            self.last_reason = LastReason::FailOpen;
            return match lockstep_record::validate_object(strip_nul(record)) {
                Ok(()) => Outcome::KeepUnchanged,
                Err(_) => {
                    self.stats.unreadable += 1;
                    Outcome::Keep(wrap_unparsed(&mut self.out, strip_nul(record)))
                }
            };
        };
        let (mut d, err, host_tokens) = engine.decide_host_json(record);
        self.last_reason = LastReason::Policy(d.reason);
        if err.is_some() {
            self.stats.unreadable += 1;
            return if d.keep {
                self.stats.kept += 1;
                Outcome::Keep(wrap_unparsed(&mut self.out, strip_nul(record)))
            } else {
                self.stats.dropped += 1;
                Outcome::Drop
            };
        }
        let e = engine.extracted();
        let mut by_memory = false;
        if let Some(t) = &e.trace_key() {
            let dropped_by_policy = !d.keep && matches!(d.reason, Reason::Policy(_));
            if d.keep {
                // Only a valid id is remembered (a key alone is not checked).
                if e.trace_id().is_some() {
                    self.memory.insert(t);
                }
            } else if !dropped_by_policy && self.memory.contains(t) {
                d.keep = true;
                by_memory = true;
                self.last_reason = LastReason::KeptTrace;
            }
        }
        if !d.keep {
            self.stats.dropped += 1;
            return Outcome::Drop;
        }
        self.stats.kept += 1;
        self.stats.kept_by_memory += u64::from(by_memory);
        if host_tokens {
            // Decided like any record, but not valid JSON: never echoed. Rewritten as
            // JSON (only now: a dropped record costs nothing of this).
            let mut fixed = Vec::new();
            if !rewrite_host_tokens(&mut fixed, strip_nul(record)) {
                self.stats.unreadable += 1;
                return Outcome::Keep(wrap_unparsed(&mut self.out, strip_nul(record)));
            }
            self.stats.rewritten += 1;
            if !self.annotate {
                self.out.clear();
                self.out.extend_from_slice(&fixed);
                self.out.push(0);
                return Outcome::Keep(&self.out);
            }
            let reason = if by_memory {
                "kept_trace"
            } else {
                engine.policy().reason_name(d.reason)
            };
            annotate(&mut self.out, &fixed, engine.extracted(), reason);
            return Outcome::Keep(&self.out);
        }
        if !self.annotate {
            return Outcome::KeepUnchanged;
        }
        let reason = if by_memory {
            "kept_trace"
        } else {
            engine.policy().reason_name(d.reason)
        };
        annotate(&mut self.out, strip_nul(record), engine.extracted(), reason);
        Outcome::Keep(&self.out)
    }
}

fn strip_nul(r: &[u8]) -> &[u8] {
    match r.split_last() {
        Some((0, rest)) => rest,
        _ => r,
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Fluent Bit's JSON conversion writes a NaN or an infinity as a bare `nan`, `-nan`, `inf`
/// or `-inf`, and a key that is not a string unquoted (`{7:"x"}`): as JSON, such a value
/// is `null` (what JSON encoders write for them) and such a key a string. Writes `text`
/// so into `out` and returns true when the result is a valid JSON object.
fn rewrite_host_tokens(out: &mut Vec<u8>, text: &[u8]) -> bool {
    fn token(c: u8) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
    }
    fn non_finite(t: &[u8]) -> bool {
        let t = t
            .strip_prefix(b"-")
            .or_else(|| t.strip_prefix(b"+"))
            .unwrap_or(t);
        [&b"nan"[..], b"inf", b"infinity"]
            .iter()
            .any(|w| t.eq_ignore_ascii_case(w))
    }
    out.clear();
    out.reserve(text.len() + 8);
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < text.len() {
                match text[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            out.extend_from_slice(&text[start..i.min(text.len())]);
            continue;
        }
        if token(c) {
            let start = i;
            while i < text.len() && token(text[i]) {
                i += 1;
            }
            let tok = &text[start..i];
            let next = text[i..]
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            if next == Some(&b':') {
                out.push(b'"');
                out.extend_from_slice(tok);
                out.push(b'"');
            } else if non_finite(tok) {
                out.extend_from_slice(b"null");
            } else {
                out.extend_from_slice(tok);
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    lockstep_record::validate_object(out).is_ok()
}

/// `{"lockstep_unparsed":"<text>"}`: valid JSON that keeps every byte of an unreadable
/// record (invalid UTF-8 bytes become U+FFFD).
fn wrap_unparsed<'o>(out: &'o mut Vec<u8>, text: &[u8]) -> &'o [u8] {
    out.clear();
    out.extend_from_slice(b"{\"lockstep_unparsed\":");
    let s = String::from_utf8_lossy(text);
    push_json_str(out, s.as_bytes());
    out.extend_from_slice(b"}\0");
    out
}

/// The record with `trace_id`, `span_id`, `level`, `duration_ms` (normalised, when known)
/// and `lockstep_reason` appended. A key already present is repeated; the host keeps the
/// last value, so the normalised one wins.
fn annotate(out: &mut Vec<u8>, record: &[u8], e: &lockstep_record::Extracted, reason: &str) {
    out.clear();
    let end = record
        .iter()
        .rposition(|&c| c == b'}')
        .unwrap_or(record.len());
    let body = &record[..end];
    out.extend_from_slice(body);
    let mut first = body.trim_ascii_end().ends_with(b"{");
    let mut field = |out: &mut Vec<u8>, k: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(out, k.as_bytes());
        out.push(b':');
    };
    if let Some(t) = e.trace_id() {
        field(out, "trace_id");
        let mut h = [0u8; 32];
        hex_into(&t, &mut h);
        push_json_str(out, &h);
    }
    if let Some(s) = e.span_id() {
        field(out, "span_id");
        let mut h = [0u8; 16];
        hex_into(&s, &mut h);
        push_json_str(out, &h);
    }
    if let LevelState::Known(l) = e.level {
        field(out, "level");
        push_json_str(out, l.as_str().as_bytes());
    }
    if let DurationState::Ms(ms) = e.duration {
        field(out, "duration_ms");
        // Finite by construction; Display of a finite f64 is valid JSON.
        use std::io::Write as _;
        let _ = if ms.fract() == 0.0 && ms.abs() < 1e15 {
            write!(out, "{}", ms as i64)
        } else {
            write!(out, "{ms}")
        };
    }
    field(out, "lockstep_reason");
    push_json_str(out, reason.as_bytes());
    out.extend_from_slice(b"}\0");
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_policy::{compile_policy, Format};
    use serde_json::Value;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn filter(yaml: &str) -> Filter {
        Filter::new(compile_policy(yaml, Format::Yaml, "t").unwrap())
    }

    fn parse(o: &Outcome<'_>) -> Value {
        match o {
            Outcome::Keep(b) => serde_json::from_slice(&b[..b.len() - 1]).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keeps_unchanged_drops_and_remembers_traces() {
        let mut f = Filter::new(Policy::default_policy());
        let slow = format!(r#"{{"trace_id":"{T}","level":"info","duration_ms":250}}"#);
        let detail = format!(r#"{{"trace_id":"{T}","level":"debug","msg":"after"}}"#);
        let other = r#"{"trace_id":"11111111111111111111111111111111","level":"debug"}"#;
        assert_eq!(
            f.process(detail.as_bytes()),
            Outcome::Drop,
            "before the deciding line"
        );
        assert_eq!(f.process(slow.as_bytes()), Outcome::KeepUnchanged);
        assert_eq!(
            f.process(detail.as_bytes()),
            Outcome::KeepUnchanged,
            "after it: remembered"
        );
        assert_eq!(f.process(other.as_bytes()), Outcome::Drop);
        assert_eq!(f.stats.kept_by_memory, 1);
        assert_eq!((f.stats.records, f.stats.kept, f.stats.dropped), (4, 2, 2));
        // memory off
        let mut f = filter("lockstep: {kept_trace_memory: 0}\npolicies: [{name: slow, type: latency, latency: {threshold_ms: 200}}]");
        f.process(slow.as_bytes());
        assert_eq!(f.process(detail.as_bytes()), Outcome::Drop);
    }

    #[test]
    fn a_drop_policy_beats_the_memory() {
        let mut f = filter("policies:\n - {name: all-errors, type: status_code, status_code: {status_codes: [ERROR]}}\n - {name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: path, values: [/health]}}]}}");
        f.process(format!(r#"{{"trace_id":"{T}","level":"error"}}"#).as_bytes());
        assert_eq!(
            f.process(format!(r#"{{"trace_id":"{T}","path":"/health"}}"#).as_bytes()),
            Outcome::Drop
        );
    }

    #[test]
    fn annotate_adds_normalised_fields() {
        let mut f = filter("lockstep: {annotate: true}\npolicies: [{name: errs, type: status_code, status_code: {status_codes: [ERROR]}}]");
        let rec = format!(
            r#"{{"traceId":"{}","level":"ERR","duration":0.25,"n":1.0,"big":12345678901234567890}}"#,
            T.to_uppercase()
        );
        let o = f.process(rec.as_bytes());
        let v = parse(&o);
        assert_eq!(v["trace_id"], T);
        assert_eq!(v["level"], "error");
        assert_eq!(v["duration_ms"], 250);
        assert_eq!(v["lockstep_reason"], "errs");
        // original fields and their exact text survive
        let Outcome::Keep(b) = o else { unreachable!() };
        let text = std::str::from_utf8(b).unwrap();
        assert!(text.starts_with(&rec[..rec.len() - 1]), "{text}");
        assert!(text.contains("\"n\":1.0") && text.contains("12345678901234567890"));
        let o = f.process(br#"{ }"#);
        assert_eq!(o, Outcome::Drop);
        let mut f =
            filter("lockstep: {annotate: true}\npolicies: [{name: all, type: always_sample}]");
        let v = parse(&f.process(b"{ }\0"));
        assert_eq!(v["lockstep_reason"], "all");
    }

    #[test]
    fn invalid_json_is_never_echoed() {
        let mut f = Filter::new(Policy::default_policy());
        let bad = br#"{"level":"error","ratio":nanx}"#;
        let v = parse(&f.process(bad));
        assert_eq!(v["lockstep_unparsed"], r#"{"level":"error","ratio":nanx}"#);
        assert_eq!(f.stats.unreadable, 1);
        let mut f = Filter::fail_open();
        assert_eq!(f.process(br#"{"a":1}"#), Outcome::KeepUnchanged);
        let v = parse(&f.process(b"{1:2}"));
        assert_eq!(v["lockstep_unparsed"], "{1:2}");
    }

    /// Issue 15: a record Fluent Bit's conversion made invalid (`nan`, `inf`, unquoted
    /// keys) is decided, not kept because it could not be read.
    #[test]
    fn records_the_host_made_invalid_are_decided() {
        let mut f = Filter::new(Policy::default_policy());
        // fast successes: dropped, whatever else they carry
        for rec in [
            &br#"{"level":"info","duration_ms":12,"ratio":nan}"#[..],
            br#"{"level":"info","ratio":-nan,"duration_ms":12}"#,
            br#"{"level":"info","duration_ms":12,"limits":{"max":inf,"min":-inf}}"#,
            br#"{"level":"info","duration_ms":12,"ratios":[nan,1.5,-inf]}"#,
            br#"{1:"a","level":"info","duration_ms":12,true:null}"#,
        ] {
            assert_eq!(
                f.process(rec),
                Outcome::Drop,
                "{}",
                String::from_utf8_lossy(rec)
            );
        }
        assert_eq!(f.stats.unreadable, 0, "dropped records cost no wrapping");
        // errors and slow ones: kept, never echoed, rewritten as JSON (issue 24 item 5)
        let v = parse(&f.process(br#"{"level":"error","ratio":nan,"r":[-inf,1.5],"s":"nan"}"#));
        assert_eq!(
            v,
            serde_json::json!({"level":"error","ratio":null,"r":[null,1.5],"s":"nan"})
        );
        let v = parse(&f.process(br#"{7:"x","duration_ms":250,true:null,"o":{-1.5:inf}}"#));
        assert_eq!(
            v,
            serde_json::json!({"7":"x","duration_ms":250,"true":null,"o":{"-1.5":null}})
        );
        assert_eq!((f.stats.unreadable, f.stats.rewritten), (0, 2));
        assert_eq!(f.last_reason(), "slow");
        // a non-finite duration is no duration: not slow
        assert_eq!(f.process(br#"{"duration_ms":inf}"#), Outcome::Drop);
        // tokens that only look like them are still errors (kept wrapped: fail open)
        let v = parse(&f.process(br#"{"level":"info","x":nanx}"#));
        assert!(v["lockstep_unparsed"].is_string());
        assert_eq!(f.last_reason(), "unparsed");
        // valid JSON is echoed as before
        assert_eq!(
            f.process(br#"{"level":"error","nan":"inf"}"#),
            Outcome::KeepUnchanged
        );
    }

    proptest::proptest! {
        /// A record with host tokens (`nan`, `inf`, unquoted keys) is decided as the same
        /// record written as JSON (the value `null`, the key quoted) is, and a kept one
        /// is returned as a valid JSON object with that record's fields.
        #[test]
        fn host_tokens_change_neither_the_decision_nor_the_fields(
            level in proptest::sample::select(vec!["info", "error", "debug"]),
            dur in 0u32..400,
            tok in proptest::sample::select(vec!["nan", "-nan", "inf", "-inf"]),
            key in proptest::sample::select(vec!["7", "-1.5", "true", "null"]),
            at_end in proptest::bool::ANY,
        ) {
            let (with, json) = if at_end {
                (
                    format!(r#"{{"level":"{level}","duration_ms":{dur},"x":{tok},{key}:1}}"#),
                    format!(r#"{{"level":"{level}","duration_ms":{dur},"x":null,"{key}":1}}"#),
                )
            } else {
                (
                    format!(r#"{{{key}:[{tok},2],"level":"{level}","duration_ms":{dur}}}"#),
                    format!(r#"{{"{key}":[null,2],"level":"{level}","duration_ms":{dur}}}"#),
                )
            };
            let mut a = Filter::new(Policy::default_policy());
            let mut b = Filter::new(Policy::default_policy());
            let oa = a.process(with.as_bytes());
            let ob = b.process(json.as_bytes());
            match (&oa, &ob) {
                (Outcome::Drop, Outcome::Drop) => {}
                (Outcome::Keep(_), Outcome::KeepUnchanged) => {
                    let got = parse(&oa);
                    let want: Value = serde_json::from_str(&json).unwrap();
                    proptest::prop_assert_eq!(got, want);
                }
                other => proptest::prop_assert!(false, "{with} vs {json}: {other:?}"),
            }
            proptest::prop_assert_eq!(a.last_reason(), b.last_reason());
        }
    }

    /// The memory keys on the id's digits, not its decoded bytes: the same trace is found
    /// whatever case or form its lines write the id in, and an id that is not valid is
    /// never remembered, even when its line is kept.
    #[test]
    fn memory_finds_a_trace_in_any_case_or_form_and_never_an_invalid_id() {
        let mut f = Filter::new(Policy::default_policy());
        let upper = T.to_ascii_uppercase();
        let kept = format!(r#"{{"trace_id":"{upper}","level":"error"}}"#);
        assert_eq!(f.process(kept.as_bytes()), Outcome::KeepUnchanged);
        let later = format!(r#"{{"trace_id":"{T}","level":"debug"}}"#);
        assert_eq!(
            f.process(later.as_bytes()),
            Outcome::KeepUnchanged,
            "{later}"
        );
        assert_eq!(f.last_reason(), "kept_trace");
        // A B3 64-bit id (16 digits) is the 32-digit id with its high half zero.
        let low = "a3ce929d0e0e4736";
        let kept = format!(r#"{{"trace_id":"0000000000000000{low}","level":"error"}}"#);
        assert_eq!(f.process(kept.as_bytes()), Outcome::KeepUnchanged);
        let later = format!(
            r#"{{"trace_id":"{}","level":"debug"}}"#,
            low.to_ascii_uppercase()
        );
        assert_eq!(
            f.process(later.as_bytes()),
            Outcome::KeepUnchanged,
            "{later}"
        );
        assert_eq!(f.last_reason(), "kept_trace");
        // Not hex, and all zeros: kept by their level, never remembered.
        for bad in ["zz".repeat(16), "0".repeat(32)] {
            let kept = format!(r#"{{"trace_id":"{bad}","level":"error"}}"#);
            assert_eq!(f.process(kept.as_bytes()), Outcome::KeepUnchanged);
            let later = format!(r#"{{"trace_id":"{bad}","level":"debug"}}"#);
            assert_eq!(f.process(later.as_bytes()), Outcome::Drop, "{later}");
        }
    }

    #[test]
    fn memory_is_bounded_and_direct_mapped() {
        let mut m = TraceMemory::new(1000);
        assert_eq!(m.capacity(), 1024);
        let ids: Vec<TraceKey> = (0..5000u64)
            .map(|i| {
                let mut t = [0u8; 16];
                t[8..].copy_from_slice(&(i + 1).wrapping_mul(0x9e3779b97f4a7c15).to_be_bytes());
                let mut h = [0u8; 32];
                hex_into(&t, &mut h);
                let w = |k: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&h[k * 8..k * 8 + 8]);
                    u64::from_le_bytes(b)
                };
                [w(0), w(1), w(2), w(3)]
            })
            .collect();
        for t in &ids {
            m.insert(t);
        }
        let remembered = ids.iter().filter(|t| m.contains(t)).count();
        assert!(remembered <= 1024 && remembered > 500, "{remembered}");
        assert!(m.contains(ids.last().unwrap()));
        assert!(!TraceMemory::new(0).contains(&ids[0]));
    }
}
