//! The alias tables (data, with documented defaults and precedence) and their compiled
//! form, the path matcher shared by both input paths.
//!
//! A key path matches an alias when the record's keys, joined with `.`, equal the alias:
//! `trace.id` matches a flat key `"trace.id"` and a nested `{"trace":{"id":..}}` alike,
//! and `logging.googleapis.com/trace` matches the flat key Google Cloud writes.
//!
//! Precedence: within one role (trace id, span id, level, duration) the alias listed
//! first wins when a record holds several. A later occurrence of the *same* alias
//! overwrites an earlier one (JSON duplicate keys: last wins, as in serde_json).
//! `null` and `""` count as absent and never take precedence.

use crate::duration::Unit;
use crate::ids::IdFormat;
use crate::level::NumberScheme;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdAlias {
    pub key: String,
    #[serde(default = "hex")]
    pub format: IdFormat,
}

fn hex() -> IdFormat {
    IdFormat::Hex
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelAlias {
    pub key: String,
    /// How numbers in this field are read (`otel`, `syslog`, `pino`, `python`, `zap`, `none`).
    #[serde(default = "pino")]
    pub numbers: NumberScheme,
}

fn pino() -> NumberScheme {
    NumberScheme::Pino
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationAlias {
    pub key: String,
    /// Unit of bare numbers: `ns`, `us`, `ms`, `s`.
    pub unit: Unit,
}

/// The alias tables. Order is precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldTable {
    pub trace_id: Vec<IdAlias>,
    pub span_id: Vec<IdAlias>,
    pub level: Vec<LevelAlias>,
    pub duration: Vec<DurationAlias>,
    /// String fields holding a JSON object (e.g. Docker's `log`): parsed, and their keys
    /// read as if they stood at the top level. One level deep.
    pub nested_json: Vec<String>,
}

fn ida(key: &str, format: IdFormat) -> IdAlias {
    IdAlias {
        key: key.into(),
        format,
    }
}
fn lva(key: &str, numbers: NumberScheme) -> LevelAlias {
    LevelAlias {
        key: key.into(),
        numbers,
    }
}
fn dua(key: &str, unit: Unit) -> DurationAlias {
    DurationAlias {
        key: key.into(),
        unit,
    }
}

impl Default for FieldTable {
    /// The documented defaults (README "Field aliases").
    fn default() -> Self {
        use IdFormat::*;
        use NumberScheme as N;
        use Unit::*;
        FieldTable {
            trace_id: vec![
                ida("trace_id", Hex),
                ida("traceId", Hex),
                ida("traceID", Hex),
                // .NET's JSON console, ClickHouse `otel_logs`, OTLP-as-JSON exporters
                ida("TraceId", Hex),
                ida("trace.id", Hex),
                ida("traceparent", W3c),
                ida("dd.trace_id", Decimal),
                ida("logging.googleapis.com/trace", Gcp),
                ida("X-B3-TraceId", Hex),
                ida("x-b3-traceid", Hex),
                // Serilog's compact JSON (CLEF)
                ida("@tr", Hex),
            ],
            span_id: vec![
                ida("span_id", Hex),
                ida("spanId", Hex),
                ida("spanID", Hex),
                ida("SpanId", Hex),
                ida("span.id", Hex),
                ida("traceparent", W3c),
                ida("dd.span_id", Decimal),
                ida("logging.googleapis.com/spanId", Hex),
                ida("X-B3-SpanId", Hex),
                ida("x-b3-spanid", Hex),
                ida("@sp", Hex),
            ],
            level: vec![
                lva("level", N::Pino),
                lva("lvl", N::Pino),
                lva("log.level", N::Syslog),
                lva("levelname", N::Python),
                lva("severity_number", N::Otel),
                lva("severityNumber", N::Otel),
                lva("SeverityNumber", N::Otel),
                lva("severity_text", N::Otel),
                lva("severityText", N::Otel),
                lva("SeverityText", N::Otel),
                lva("severity", N::Syslog),
                lva("levelno", N::Python),
                lva("loglevel", N::Syslog),
                lva("log_level", N::Syslog),
                // .NET's JSON console (`"LogLevel":"Information"`)
                lva("LogLevel", N::None),
                lva("@l", N::None),
            ],
            duration: vec![
                dua("duration_ms", Ms),
                dua("latency_ms", Ms),
                dua("elapsed_ms", Ms),
                dua("took", Ms),
                dua("responseTime", Ms),
                dua("response_time_ms", Ms),
                dua("duration", S),
                dua("request_time", S),
                dua("latency", S),
                dua("upstream_response_time", S),
                dua("event.duration", Ns),
                dua("duration_ns", Ns),
                dua("duration_us", Us),
            ],
            nested_json: vec![],
        }
    }
}

/// Overrides from the policy file (`lockstep.fields`): per role, aliases placed before
/// the defaults (higher precedence), or replacing them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldOverrides {
    #[serde(default)]
    pub trace_id: Option<RoleOverride<IdAlias>>,
    #[serde(default)]
    pub span_id: Option<RoleOverride<IdAlias>>,
    #[serde(default)]
    pub level: Option<RoleOverride<LevelAlias>>,
    #[serde(default)]
    pub duration: Option<RoleOverride<DurationAlias>>,
    #[serde(default)]
    pub nested_json: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOverride<T> {
    /// `false` (default): these aliases go before the defaults. `true`: only these.
    #[serde(default)]
    pub replace_defaults: bool,
    pub aliases: Vec<T>,
}

fn apply<T: Clone>(base: &mut Vec<T>, o: &Option<RoleOverride<T>>) {
    if let Some(o) = o {
        if o.replace_defaults {
            *base = o.aliases.clone();
        } else {
            let mut v = o.aliases.clone();
            v.append(base);
            *base = v;
        }
    }
}

impl FieldTable {
    pub fn with_overrides(mut self, o: &FieldOverrides) -> Self {
        apply(&mut self.trace_id, &o.trace_id);
        apply(&mut self.span_id, &o.span_id);
        apply(&mut self.level, &o.level);
        apply(&mut self.duration, &o.duration);
        if let Some(n) = &o.nested_json {
            self.nested_json = n.clone();
        }
        self
    }
}

/// What a matched path does. One path may do several things (`traceparent` feeds
/// both ids; a `level` key can also be a policy attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Trace { rank: u8, fmt: IdFormat },
    Span { rank: u8, fmt: IdFormat },
    Level { rank: u8, scheme: NumberScheme },
    Duration { rank: u8, unit: Unit },
    Attr { slot: u16 },
    Nested,
}

/// A path's work on a plain string value (ASCII, no escape), when it is one action the
/// fast scanner applies directly: a level, a trace id in hex (nearly every matched
/// member of a log line), or nothing (an unread span id). Everything else goes through
/// the action list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    Level {
        rank: u8,
        scheme: NumberScheme,
    },
    TraceHex {
        rank: u8,
    },
    /// Nothing to do (a span id nobody reads: [`Matcher::without_span_ids`]).
    Unread,
    General,
}

/// At most this many distinct paths (aliases + attribute keys), so a candidate set
/// fits one `u128`.
pub const MAX_PATHS: usize = 128;
/// Longest alias or attribute key, in bytes.
pub const MAX_PATH_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("too many field paths ({0}); at most {MAX_PATHS} aliases and attribute keys together")]
    TooMany(usize),
    #[error("field key {0:?} is empty or longer than {MAX_PATH_LEN} bytes")]
    BadKey(String),
    #[error("role {role}: more than 250 aliases")]
    TooManyInRole { role: &'static str },
}

/// The compiled matcher: paths, what each does, and a first-byte prefilter.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub(crate) paths: Vec<Box<[u8]>>,
    pub(crate) actions: Vec<Vec<Action>>,
    /// Per path: does it hold an [`Action::Nested`]?
    pub(crate) nested: Vec<bool>,
    /// Per path: its one action when the fast scanner can apply it to a plain string
    /// without the general dispatch (see [`Fast`]).
    pub(crate) fast: Vec<Fast>,
    /// Top-level key → (leaf path, descend mask): one probe per top-level key.
    pub(crate) top: TopTable,
    pub(crate) all: u128,
    pub(crate) table: FieldTable,
    pub(crate) attr_keys: Vec<String>,
}

impl Matcher {
    /// This matcher for a reader whose caller never reads span ids (no policy does; the
    /// filter reads them only to annotate). In the filter's fast reading
    /// ([`crate::Extractor::extract_host_json`]) a path whose one action is a span id
    /// leaves a plain string value (ASCII, no escape: nearly every span id) unread. The
    /// span keys stay matched, so every value is checked exactly as before (an escaped
    /// one is still decoded, and a lone surrogate still makes the record unreadable):
    /// which records are readable, and every other fact, is unchanged.
    /// [`crate::Extracted::span_id`] is then `None` unless the span id needed decoding
    /// (escaped, or a number).
    pub fn without_span_ids(&self) -> Self {
        let mut m = self.clone();
        for (f, a) in m.fast.iter_mut().zip(&m.actions) {
            if matches!(a.as_slice(), [Action::Span { .. }]) {
                *f = Fast::Unread;
            }
        }
        m
    }

    /// Compiles the table plus the attribute keys a policy reads (slot = index).
    pub fn new(table: FieldTable, attr_keys: &[String]) -> Result<Self, FieldError> {
        let mut m = Matcher {
            paths: vec![],
            actions: vec![],
            nested: vec![],
            fast: vec![],
            top: TopTable::default(),
            all: 0,
            table: table.clone(),
            attr_keys: attr_keys.to_vec(),
        };
        let rank = |i: usize, role: &'static str| {
            u8::try_from(i)
                .ok()
                .filter(|r| *r < u8::MAX)
                .ok_or(FieldError::TooManyInRole { role })
        };
        for (i, a) in table.trace_id.iter().enumerate() {
            m.add(
                &a.key,
                Action::Trace {
                    rank: rank(i, "trace_id")?,
                    fmt: a.format,
                },
            )?;
        }
        for (i, a) in table.span_id.iter().enumerate() {
            m.add(
                &a.key,
                Action::Span {
                    rank: rank(i, "span_id")?,
                    fmt: a.format,
                },
            )?;
        }
        for (i, a) in table.level.iter().enumerate() {
            m.add(
                &a.key,
                Action::Level {
                    rank: rank(i, "level")?,
                    scheme: a.numbers,
                },
            )?;
        }
        for (i, a) in table.duration.iter().enumerate() {
            m.add(
                &a.key,
                Action::Duration {
                    rank: rank(i, "duration")?,
                    unit: a.unit,
                },
            )?;
        }
        for (slot, k) in attr_keys.iter().enumerate() {
            m.add(k, Action::Attr { slot: slot as u16 })?;
        }
        for k in &table.nested_json {
            m.add(k, Action::Nested)?;
        }
        m.top = TopTable::build(&m.paths);
        m.nested = m
            .actions
            .iter()
            .map(|a| a.contains(&Action::Nested))
            .collect();
        m.fast = m
            .actions
            .iter()
            .map(|a| match a.as_slice() {
                [Action::Level { rank, scheme }] => Fast::Level {
                    rank: *rank,
                    scheme: *scheme,
                },
                [Action::Trace {
                    rank,
                    fmt: IdFormat::Hex,
                }] => Fast::TraceHex { rank: *rank },
                _ => Fast::General,
            })
            .collect();
        Ok(m)
    }

    fn add(&mut self, key: &str, action: Action) -> Result<(), FieldError> {
        if key.is_empty() || key.len() > MAX_PATH_LEN {
            return Err(FieldError::BadKey(key.into()));
        }
        let i = match self.paths.iter().position(|p| **p == *key.as_bytes()) {
            Some(i) => i,
            None => {
                if self.paths.len() == MAX_PATHS {
                    return Err(FieldError::TooMany(MAX_PATHS + 1));
                }
                self.paths.push(key.as_bytes().into());
                self.actions.push(vec![]);
                let i = self.paths.len() - 1;
                self.all |= 1 << i;
                i
            }
        };
        if !self.actions[i].contains(&action) {
            self.actions[i].push(action);
        }
        Ok(())
    }

    /// A matcher with no paths (extracts nothing). Infallible.
    pub fn empty() -> Self {
        Matcher {
            paths: vec![],
            actions: vec![],
            nested: vec![],
            fast: vec![],
            top: TopTable::default(),
            all: 0,
            table: FieldTable::default(),
            attr_keys: vec![],
        }
    }

    pub fn table(&self) -> &FieldTable {
        &self.table
    }

    pub fn attr_keys(&self) -> &[String] {
        &self.attr_keys
    }

    /// Is `key` (decoded) any alias or attribute key, at the top level?
    pub fn is_known_top_level(&self, key: &str) -> bool {
        let (leaf, desc) = self.step(self.all, 0, key.as_bytes());
        leaf != usize::MAX || desc != 0
    }

    /// One key step. `mask`: candidates that matched the path so far; `off`: bytes of
    /// the joined path consumed. Returns the index of the path that ends here
    /// (`usize::MAX` if none) and the candidates to descend into.
    #[inline(always)]
    pub(crate) fn step(&self, mask: u128, off: usize, key: &[u8]) -> (usize, u128) {
        if off == 0 && mask == self.all {
            return self.top.get(key);
        }
        let mut cand = mask;
        let mut leaf = usize::MAX;
        let mut desc = 0u128;
        while cand != 0 {
            let i = cand.trailing_zeros() as usize;
            cand &= cand - 1;
            let p = &self.paths[i];
            let end = off + key.len();
            if p.len() >= end && p[off..end] == *key {
                if p.len() == end {
                    leaf = i;
                } else if p[end] == b'.' {
                    desc |= 1 << i;
                }
            }
        }
        (leaf, desc)
    }
}

/// Open-addressing table of every top-level key that can start a path: each whole
/// path (a leaf) and each prefix ending before a `.` (descend into an object).
///
/// Probed by the key's length and its first eight bytes as one word, which the scanner
/// already holds when it finds the key's closing quote: a miss (most keys of a record)
/// costs a multiply and one or two word compares, never a byte loop. Only keys longer
/// than eight bytes whose first word matches compare their remaining bytes.
#[derive(Debug, Clone)]
pub(crate) struct TopTable {
    slots: Vec<TopSlot>,
    shift: u32,
    /// The keys of at most seven plain ASCII bytes again, keyed by their word alone: the
    /// scanner's common case (see [`TopView::get_short`]).
    short: Box<[ShortSlot; SHORT_SLOTS]>,
}

impl Default for TopTable {
    fn default() -> Self {
        TopTable {
            slots: Vec::new(),
            shift: 0,
            short: Box::new([EMPTY_SHORT; SHORT_SLOTS]),
        }
    }
}

/// Slots of the short-key table. A fixed power of two, so a probe's index is in bounds
/// by construction (no bound check in the interpreter), and more than the most short
/// entries there can be: each of the [`MAX_PATHS`] paths adds at most seven (itself and
/// its dotted prefixes of one to seven bytes, as `a......x` has), and all share the
/// empty prefix: 897 at most, so a miss always ends at an empty slot. Policies name a
/// few dozen short keys: a probe nearly always ends at its first slot.
const SHORT_SLOTS: usize = 1024;
const SHORT_SHIFT: u32 = 64 - SHORT_SLOTS.trailing_zeros();

#[derive(Debug, Clone, Copy)]
struct ShortSlot {
    /// The key's bytes, little-endian, zero above them; [`EMPTY_WORD`]: an empty slot.
    w: u64,
    leaf: usize,
    desc: u128,
}

/// Never a key's word: a key of at most seven bytes leaves the top byte zero.
const EMPTY_WORD: u64 = u64::MAX;
const EMPTY_SHORT: ShortSlot = ShortSlot {
    w: EMPTY_WORD,
    leaf: usize::MAX,
    desc: 0,
};

/// Whether `key` goes in the short table: at most seven bytes, each one the scanner's
/// word loop passes over (printable ASCII, not `"` or `\`). Such a key's word is
/// nonzero in exactly its bytes, so the word alone names it.
fn is_short_key(key: &[u8]) -> bool {
    key.len() <= 7
        && key
            .iter()
            .all(|&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\')
}

#[inline(always)]
fn short_hash(w: u64) -> usize {
    (w.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> SHORT_SHIFT) as usize
}

#[derive(Debug, Clone)]
struct TopSlot {
    /// `u32::MAX` marks an empty slot.
    len: u32,
    /// The first `min(len, 8)` bytes, little-endian, zero-padded.
    w0: u64,
    /// Bytes 8..16 the same way (0 for keys of 8 bytes or fewer).
    w1: u64,
    leaf: usize,
    desc: u128,
    key: Box<[u8]>,
}

const EMPTY_SLOT: u32 = u32::MAX;

/// The first `min(key.len(), 8)` bytes of `key` as a little-endian word, zero-padded.
#[inline(always)]
pub(crate) fn first_word(key: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = key.len().min(8);
    w[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(w)
}

/// Keeps the low `len` bytes of `w` (all of it from 8 on).
#[inline(always)]
pub(crate) fn low_bytes(w: u64, len: usize) -> u64 {
    if len >= 8 {
        w
    } else {
        w & ((1u64 << (len * 8)) - 1)
    }
}

#[inline(always)]
fn slot_hash(w0: u64, len: usize, shift: u32) -> usize {
    ((w0 ^ (len as u64).rotate_right(7)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

impl TopTable {
    fn build(paths: &[Box<[u8]>]) -> TopTable {
        let mut entries: Vec<(Box<[u8]>, usize, u128)> = Vec::new();
        let mut put = |k: &[u8], leaf: Option<usize>, desc: u128| match entries
            .iter_mut()
            .find(|e| *e.0 == *k)
        {
            Some(e) => {
                if let Some(l) = leaf {
                    e.1 = l;
                }
                e.2 |= desc;
            }
            None => entries.push((k.into(), leaf.unwrap_or(usize::MAX), desc)),
        };
        for (i, p) in paths.iter().enumerate() {
            put(p, Some(i), 0);
            for (j, &c) in p.iter().enumerate() {
                if c == b'.' {
                    put(&p[..j], None, 1 << i);
                }
            }
        }
        let n = (entries.len() * 4).next_power_of_two().max(16);
        let shift = 64 - n.trailing_zeros();
        let mut slots = vec![
            TopSlot {
                len: EMPTY_SLOT,
                w0: 0,
                w1: 0,
                leaf: usize::MAX,
                desc: 0,
                key: Box::default(),
            };
            n
        ];
        for (key, leaf, desc) in entries {
            let w0 = first_word(&key);
            let mut h = slot_hash(w0, key.len(), shift);
            while slots[h].len != EMPTY_SLOT {
                h = (h + 1) & (n - 1);
            }
            slots[h] = TopSlot {
                len: key.len() as u32, // keys are at most MAX_PATH_LEN bytes
                w0,
                w1: first_word(key.get(8..).unwrap_or_default()),
                leaf,
                desc,
                key,
            };
        }
        let mut short = Box::new([EMPTY_SHORT; SHORT_SLOTS]);
        let mut n_short = 0;
        for s in slots
            .iter()
            .filter(|s| s.len != EMPTY_SLOT && is_short_key(&s.key))
        {
            n_short += 1;
            debug_assert!(n_short < SHORT_SLOTS);
            let mut h = short_hash(s.w0);
            while short[h].w != EMPTY_WORD {
                h = (h + 1) & (SHORT_SLOTS - 1);
            }
            short[h] = ShortSlot {
                w: s.w0,
                leaf: s.leaf,
                desc: s.desc,
            };
        }
        TopTable {
            slots,
            shift,
            short,
        }
    }

    #[inline(always)]
    fn get(&self, key: &[u8]) -> (usize, u128) {
        self.get_word(first_word(key), key)
    }

    /// The short-key table as a plain reference, for a loop that probes it once per
    /// member (taken once, not loaded through `&self` for every probe).
    #[inline(always)]
    pub(crate) fn view(&self) -> TopView<'_> {
        TopView { short: &self.short }
    }

    /// `w0`: [`first_word`] of `key`.
    #[inline(always)]
    pub(crate) fn get_word(&self, w0: u64, key: &[u8]) -> (usize, u128) {
        let n = self.slots.len();
        if n == 0 {
            return (usize::MAX, 0);
        }
        let len = key.len();
        let mut h = slot_hash(w0, len, self.shift);
        loop {
            let s = &self.slots[h & (n - 1)];
            if s.len == EMPTY_SLOT {
                return (usize::MAX, 0);
            }
            if s.w0 == w0 && s.len as usize == len {
                // Keys up to 16 bytes compare as two words; longer ones byte by byte.
                let rest_equal = len <= 8
                    || (len <= 16 && s.w1 == first_word(&key[8..]))
                    || (len > 16 && s.key[8..] == key[8..]);
                if rest_equal {
                    return (s.leaf, s.desc);
                }
            }
            h += 1;
        }
    }
}

/// [`TopTable::view`].
#[derive(Clone, Copy)]
pub(crate) struct TopView<'a> {
    short: &'a [ShortSlot; SHORT_SLOTS],
}

impl TopView<'_> {
    /// [`TopTable::get_word`] for a key the scanner read as at most seven plain ASCII
    /// bytes, given as its word `w` (zero above the key): the word is the whole key and
    /// names its length, so one word compare decides. The index is masked to the
    /// table's fixed size: no bound check; a miss (most members) ends at the first empty
    /// slot, usually the first probed.
    #[inline(always)]
    pub(crate) fn get_short(self, w: u64) -> (usize, u128) {
        let mut h = short_hash(w);
        loop {
            let s = &self.short[h];
            if s.w == EMPTY_WORD {
                return (usize::MAX, 0);
            }
            if s.w == w {
                return (s.leaf, s.desc);
            }
            h = (h + 1) & (SHORT_SLOTS - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short-key table answers as the general table for every key it may be asked
    /// (at most seven plain bytes), present or not, including the worst fill.
    #[test]
    fn short_table_answers_as_the_general_one() {
        let mut attrs: Vec<String> = ["a.b.c", "x", "http.status", "k.v", "svc", "env"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let room = MAX_PATHS
            - Matcher::new(FieldTable::default(), &[])
                .unwrap()
                .paths
                .len();
        let worst: Vec<String> = (0..room)
            .map(|i| {
                format!(
                    "{}.{}.{}.{}",
                    (b'a' + (i % 26) as u8) as char,
                    i % 7,
                    i % 5,
                    i / 35
                )
            })
            .collect();
        // Seven short prefixes a path (`c`, `c.`, … `c......`): the most there can be.
        let dotted: Vec<String> = (0x21u8..0x7f)
            .filter(|c| !matches!(c, b'"' | b'\\' | b'.'))
            .take(room)
            .map(|c| format!("{}.......x", c as char))
            .collect();
        for (extra, fill) in [(vec![], false), (worst, false), (dotted, true)] {
            if fill {
                attrs = extra;
            } else {
                attrs.extend(extra);
            }
            attrs.sort();
            attrs.dedup();
            attrs.truncate(room);
            let m = Matcher::new(FieldTable::default(), &attrs).unwrap();
            let view = m.top.view();
            let mut keys: Vec<Vec<u8>> = m.top.slots.iter().map(|s| s.key.to_vec()).collect();
            for a in 0u8..=255 {
                keys.push(vec![a]);
                keys.push(vec![b'l', b'e', b'v', b'e', a]);
            }
            keys.extend([
                b"".to_vec(),
                b"leve".to_vec(),
                b"levels".to_vec(),
                b"a.b".to_vec(),
            ]);
            let mut hits = 0;
            for k in keys.iter().filter(|k| is_short_key(k)) {
                let want = m.top.get_word(first_word(k), k);
                assert_eq!(
                    view.get_short(first_word(k)),
                    want,
                    "{:?}",
                    String::from_utf8_lossy(k)
                );
                hits += usize::from(want.0 != usize::MAX || want.1 != 0);
            }
            assert!(hits > 10, "{hits}");
            if fill {
                let n = m.top.short.iter().filter(|s| s.w != EMPTY_WORD).count();
                assert!(n > 7 * (room - 1), "{n} short entries");
            }
        }
    }

    #[test]
    fn dotted_and_nested_paths() {
        let m = Matcher::new(FieldTable::default(), &[]).unwrap();
        let (leaf, desc) = m.step(m.all, 0, b"trace.id");
        assert_eq!(&*m.paths[leaf], b"trace.id");
        assert_eq!(desc, 0);
        let (leaf, desc) = m.step(m.all, 0, b"trace");
        assert_eq!(leaf, usize::MAX);
        assert_ne!(desc, 0);
        let (leaf, _) = m.step(desc, 6, b"id");
        assert_eq!(&*m.paths[leaf], b"trace.id");
        let (leaf, _) = m.step(m.all, 0, b"logging.googleapis.com/trace");
        assert_eq!(&*m.paths[leaf], b"logging.googleapis.com/trace");
        let (leaf, desc) = m.step(m.all, 0, b"unrelated");
        assert_eq!((leaf, desc), (usize::MAX, 0));
        // traceparent feeds both roles through one path
        let (leaf, _) = m.step(m.all, 0, b"traceparent");
        assert_eq!(m.actions[leaf].len(), 2);
    }

    #[test]
    fn overrides_prepend_or_replace() {
        let o: FieldOverrides = serde_json::from_str(
            r#"{"duration":{"aliases":[{"key":"dur","unit":"ms"}]},
                "level":{"replace_defaults":true,"aliases":[{"key":"sev","numbers":"syslog"}]}}"#,
        )
        .unwrap();
        let t = FieldTable::default().with_overrides(&o);
        assert_eq!(t.duration[0].key, "dur");
        assert_eq!(t.duration.len(), FieldTable::default().duration.len() + 1);
        assert_eq!(t.level.len(), 1);
        assert_eq!(t.level[0].numbers, NumberScheme::Syslog);
    }

    #[test]
    fn limits_are_errors() {
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        assert!(matches!(
            Matcher::new(FieldTable::default(), &keys),
            Err(FieldError::TooMany(_))
        ));
        assert!(matches!(
            Matcher::new(FieldTable::default(), &["".into()]),
            Err(FieldError::BadKey(_))
        ));
    }
}
