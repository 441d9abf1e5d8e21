//! The sink both input paths feed, and the [`Extractor`] that owns it.

use crate::duration::{self, DurationState, Unit};
use crate::fields::{Action, Matcher};
use crate::ids::{self, IdFormat, IdState, SpanId, TraceId};
use crate::level::{self, LevelState, NumberScheme};
use crate::Scalar;
use std::fmt::Write as _;

const NONE: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum AttrVal {
    #[default]
    Absent,
    Str,
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Other,
}

#[derive(Debug, Clone, Default)]
struct AttrSlot {
    val: AttrVal,
    text: String,
}

/// An attribute value as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attr<'a> {
    Absent,
    Str(&'a str),
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// An object or array.
    Other,
}

impl Attr<'_> {
    /// The value as a number, if it is one (numeric strings included).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Attr::UInt(n) => Some(n as f64),
            Attr::Int(n) => Some(n as f64),
            Attr::Float(f) => Some(f),
            Attr::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }
}

/// What one record yielded. Reused between records: buffers keep their capacity.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Read through [`Self::trace_state`] / [`Self::trace_id`]: a 32-digit hex trace id
    /// is kept as found and decoded only when asked for. Deciding most lines needs no
    /// decoded id: the filter's kept-trace memory keys on [`Self::trace_key`].
    trace_id: IdState<16>,
    trace_hex: Option<[u8; 32]>,
    /// Read through [`Self::span_state`]: a hex span id is kept as found and decoded
    /// only when asked for (no policy reads it; only annotation and reports do).
    span_id: IdState<8>,
    span_hex: Option<[u8; 16]>,
    pub level: LevelState,
    pub duration: DurationState,
    trace_rank: u8,
    span_rank: u8,
    level_rank: u8,
    duration_rank: u8,
    level_raw: String,
    attrs: Vec<AttrSlot>,
}

impl Extracted {
    pub(crate) fn new(n_attrs: usize) -> Self {
        Extracted {
            trace_id: IdState::Absent,
            trace_hex: None,
            span_id: IdState::Absent,
            span_hex: None,
            level: LevelState::Absent,
            duration: DurationState::Absent,
            trace_rank: NONE,
            span_rank: NONE,
            level_rank: NONE,
            duration_rank: NONE,
            level_raw: String::new(),
            attrs: vec![AttrSlot::default(); n_attrs],
        }
    }

    pub(crate) fn reset(&mut self) {
        self.trace_id = IdState::Absent;
        self.trace_hex = None;
        self.span_id = IdState::Absent;
        self.span_hex = None;
        self.level = LevelState::Absent;
        self.duration = DurationState::Absent;
        self.trace_rank = NONE;
        self.span_rank = NONE;
        self.level_rank = NONE;
        self.duration_rank = NONE;
        self.level_raw.clear();
        for a in &mut self.attrs {
            a.val = AttrVal::Absent;
        }
    }

    pub fn trace_id(&self) -> Option<TraceId> {
        match self.trace_state() {
            IdState::Valid(t) => Some(t),
            _ => None,
        }
    }
    /// The trace id as found: absent, valid, or why it is not.
    pub fn trace_state(&self) -> IdState<16> {
        match &self.trace_hex {
            Some(raw) => match ids::trace_from_hex(raw) {
                Ok(t) => IdState::Valid(t),
                Err(e) => IdState::Invalid(e),
            },
            None => self.trace_id,
        }
    }
    /// A key for the trace id without decoding it: its 32 hex digits in lower case, as
    /// four words. Equal ids have equal keys, whatever form they were written in. An id
    /// that is not valid may still have a key (a 32-character text is not checked), but
    /// that key never equals a valid id's: folding the case maps only hex digits onto
    /// hex digits (a JSON string holds no control byte). `None` when no id was found or
    /// a decoded one was not valid.
    pub fn trace_key(&self) -> Option<[u64; 4]> {
        const CASE: u64 = 0x2020_2020_2020_2020;
        let text = match &self.trace_hex {
            Some(raw) => *raw,
            None => {
                let t = self.trace_id.valid()?;
                let mut h = [0u8; 32];
                ids::hex_into(t, &mut h);
                h
            }
        };
        let (a, rest) = text.split_first_chunk::<8>()?;
        let (b, rest) = rest.split_first_chunk::<8>()?;
        let (c, d) = rest.split_first_chunk::<8>()?;
        let d: &[u8; 8] = d.try_into().ok()?;
        Some([a, b, c, d].map(|w| u64::from_le_bytes(*w) | CASE))
    }
    pub fn span_id(&self) -> Option<SpanId> {
        match self.span_state() {
            IdState::Valid(s) => Some(s),
            _ => None,
        }
    }
    /// The span id as found: absent, valid, or why it is not.
    pub fn span_state(&self) -> IdState<8> {
        match &self.span_hex {
            Some(raw) => match ids::span_from_hex(raw) {
                Ok(s) => IdState::Valid(s),
                Err(e) => IdState::Invalid(e),
            },
            None => self.span_id,
        }
    }
    /// Index (in the table's `trace_id` list) of the alias that supplied the trace id.
    pub fn trace_source(&self) -> Option<usize> {
        (self.trace_rank != NONE).then_some(usize::from(self.trace_rank))
    }
    pub fn span_source(&self) -> Option<usize> {
        (self.span_rank != NONE).then_some(usize::from(self.span_rank))
    }
    pub fn level_source(&self) -> Option<usize> {
        (self.level_rank != NONE).then_some(usize::from(self.level_rank))
    }
    pub fn duration_source(&self) -> Option<usize> {
        (self.duration_rank != NONE).then_some(usize::from(self.duration_rank))
    }
    /// The raw text of an unrecognised level (empty otherwise).
    pub fn level_raw(&self) -> &str {
        &self.level_raw
    }
    /// The value of attribute slot `slot` (the order of the keys given to the matcher).
    pub fn attr(&self, slot: usize) -> Attr<'_> {
        match self.attrs.get(slot) {
            None => Attr::Absent,
            Some(a) => match a.val {
                AttrVal::Absent => Attr::Absent,
                AttrVal::Str => Attr::Str(&a.text),
                AttrVal::UInt(n) => Attr::UInt(n),
                AttrVal::Int(n) => Attr::Int(n),
                AttrVal::Float(f) => Attr::Float(f),
                AttrVal::Bool(b) => Attr::Bool(b),
                AttrVal::Null => Attr::Null,
                AttrVal::Other => Attr::Other,
            },
        }
    }
    pub fn attr_count(&self) -> usize {
        self.attrs.len()
    }

    /// Sets the trace id from a source that outranks every alias (OTLP metadata).
    #[cfg(feature = "msgpack")]
    pub(crate) fn set_trace_state(&mut self, s: IdState<16>) {
        self.trace_rank = 0;
        self.trace_hex = None;
        self.trace_id = s;
    }

    /// Sets the span id from a source that outranks every alias (OTLP metadata).
    #[cfg(feature = "msgpack")]
    pub(crate) fn set_span_state(&mut self, s: IdState<8>) {
        self.span_rank = 0;
        self.span_hex = None;
        self.span_id = s;
    }

    /// Sets the level from a source that outranks every alias (OTLP metadata).
    #[cfg(feature = "msgpack")]
    pub(crate) fn set_level_state(&mut self, s: LevelState) {
        self.level_rank = 0;
        self.level_raw.clear();
        self.level = s;
    }

    /// Feeds one value found at a matched path.
    pub(crate) fn on_value(&mut self, actions: &[Action], v: &Scalar<'_>) {
        // A positive integer delivered as signed (msgpack int64) is the same value.
        let v = match *v {
            Scalar::Int(n) if n >= 0 => Scalar::UInt(n as u64),
            other => other,
        };
        let absent = matches!(v, Scalar::Null | Scalar::Str(""));
        // One small function per role: inlined together, the compiler hoists the setup
        // of every role into the entry of each call (~100 instructions a value inside
        // the WASM interpreter, whatever the role).
        for a in actions {
            match *a {
                Action::Trace { rank, fmt } if !absent && rank <= self.trace_rank => {
                    self.set_trace(rank, fmt, &v)
                }
                Action::Span { rank, fmt } if !absent && rank <= self.span_rank => {
                    self.set_span(rank, fmt, &v)
                }
                Action::Level { rank, scheme } if !absent && rank <= self.level_rank => {
                    self.set_level(rank, scheme, &v)
                }
                Action::Duration { rank, unit } if !absent && rank <= self.duration_rank => {
                    self.set_duration(rank, unit, &v)
                }
                Action::Attr { slot } => self.set_attr(slot, &v),
                _ => {}
            }
        }
    }

    #[inline(never)]
    fn set_trace(&mut self, rank: u8, fmt: IdFormat, v: &Scalar<'_>) {
        self.trace_rank = rank;
        self.trace_hex = None;
        self.trace_id = match ids::parse_trace(fmt, v) {
            Ok((t, _)) => IdState::Valid(t),
            Err(e) => IdState::Invalid(e),
        };
    }

    #[inline(never)]
    fn set_span(&mut self, rank: u8, fmt: IdFormat, v: &Scalar<'_>) {
        self.span_rank = rank;
        self.span_hex = None;
        self.span_id = match ids::parse_span(fmt, v) {
            Ok(s) => IdState::Valid(s),
            Err(e) => IdState::Invalid(e),
        };
    }

    #[inline(never)]
    fn set_level(&mut self, rank: u8, scheme: NumberScheme, v: &Scalar<'_>) {
        self.level_rank = rank;
        self.level_raw.clear();
        self.level = match level::from_scalar(scheme, v) {
            Some(l) => LevelState::Known(l),
            None => {
                write_raw(&mut self.level_raw, v);
                LevelState::Unknown
            }
        };
    }

    #[inline(never)]
    fn set_duration(&mut self, rank: u8, unit: Unit, v: &Scalar<'_>) {
        let d = duration::from_scalar(unit, v);
        if d != DurationState::Absent {
            self.duration_rank = rank;
            self.duration = d;
        }
    }

    #[inline(never)]
    fn set_attr(&mut self, slot: u16, v: &Scalar<'_>) {
        let a = &mut self.attrs[usize::from(slot)];
        a.val = match *v {
            Scalar::Str(s) => {
                a.text.clear();
                a.text.push_str(s);
                AttrVal::Str
            }
            Scalar::UInt(n) => AttrVal::UInt(n),
            Scalar::Int(n) => AttrVal::Int(n),
            Scalar::Float(f) => AttrVal::Float(f),
            Scalar::Bool(b) => AttrVal::Bool(b),
            Scalar::Null => AttrVal::Null,
            Scalar::Other => AttrVal::Other,
        };
    }
}

impl Extracted {
    /// [`Self::on_value`] for a string value given as its raw bytes, known to be ASCII
    /// with no escape and no control character (the fast scanner's common case): the
    /// forms that are decided by bytes alone skip the `&str` conversion; every other
    /// action takes `on_value`, so each rule has one definition.
    pub(crate) fn on_ascii(&mut self, actions: &[Action], raw: &[u8]) {
        for a in actions {
            match *a {
                Action::Trace {
                    rank,
                    fmt: IdFormat::Hex,
                } => self.trace_hex_ascii(rank, raw),
                Action::Span {
                    rank,
                    fmt: IdFormat::Hex,
                } if !raw.is_empty() => {
                    if rank <= self.span_rank {
                        self.span_hex(rank, raw);
                    }
                }
                Action::Level { rank, scheme } => self.level_plain(rank, scheme, raw),
                _ => self.on_value_text(a, raw),
            }
        }
    }

    /// [`Self::on_ascii`] of one `Trace` action in hex.
    #[inline(always)]
    pub(crate) fn trace_hex_ascii(&mut self, rank: u8, raw: &[u8]) {
        if raw.is_empty() {
            self.on_value_text(
                &Action::Trace {
                    rank,
                    fmt: IdFormat::Hex,
                },
                raw,
            );
        } else if rank <= self.trace_rank {
            self.trace_hex(rank, raw);
        }
    }

    /// [`Self::on_ascii`] of one `Level` action.
    #[inline(always)]
    pub(crate) fn level_plain(&mut self, rank: u8, scheme: NumberScheme, raw: &[u8]) {
        if raw.is_empty() {
            self.on_value_text(&Action::Level { rank, scheme }, raw);
        } else if rank <= self.level_rank {
            // `str::trim` on ASCII with no control character trims spaces only.
            self.level_ascii(rank, scheme, raw);
        }
    }

    #[inline(never)]
    fn trace_hex(&mut self, rank: u8, raw: &[u8]) {
        self.trace_rank = rank;
        // Thirty-two digits (nearly every trace id) wait to be decoded.
        if let Ok(r) = <[u8; 32]>::try_from(raw) {
            self.trace_hex = Some(r);
            return;
        }
        self.trace_hex = None;
        self.trace_id = match ids::trace_from_hex(raw) {
            Ok(t) => IdState::Valid(t),
            Err(e) => IdState::Invalid(e),
        };
    }

    #[inline(never)]
    fn span_hex(&mut self, rank: u8, raw: &[u8]) {
        self.span_rank = rank;
        // Sixteen digits (nearly every span id) wait to be decoded; any other length
        // is refused here, as the decoder would.
        if let Ok(r) = <[u8; 16]>::try_from(raw) {
            self.span_hex = Some(r);
            return;
        }
        self.span_hex = None;
        self.span_id = match ids::span_from_hex(raw) {
            Ok(s) => IdState::Valid(s),
            Err(e) => IdState::Invalid(e),
        };
    }

    #[inline(never)]
    fn level_ascii(&mut self, rank: u8, scheme: NumberScheme, raw: &[u8]) {
        match level::from_word(trim_spaces(raw)) {
            Some(l) => {
                self.level_rank = rank;
                self.level_raw.clear();
                self.level = LevelState::Known(l);
            }
            None => self.on_value_text(&Action::Level { rank, scheme }, raw),
        }
    }

    #[inline(never)]
    fn on_value_text(&mut self, a: &Action, raw: &[u8]) {
        // ASCII, so always UTF-8.
        if let Ok(s) = std::str::from_utf8(raw) {
            self.on_value(std::slice::from_ref(a), &Scalar::Str(s));
        }
    }
}

fn trim_spaces(mut b: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' '] = b {
        b = rest;
    }
    b
}

/// Keeps at most 64 bytes of an unknown level's text (for drift reports).
fn write_raw(out: &mut String, v: &Scalar<'_>) {
    match *v {
        Scalar::Str(s) => {
            let mut end = s.len().min(64);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&s[..end]);
        }
        Scalar::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Scalar::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Scalar::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Scalar::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Scalar::Null => {}
        Scalar::Other => out.push_str("<object or array>"),
    }
}

/// Extracts records with one compiled [`Matcher`], reusing its buffers.
#[derive(Debug, Clone)]
pub struct Extractor {
    pub(crate) m: Matcher,
    pub(crate) out: Extracted,
    pub(crate) scratch: String,
    pub(crate) nested: Vec<u8>,
}

impl Extractor {
    pub fn new(m: Matcher) -> Self {
        let n = m.attr_keys().len();
        Extractor {
            m,
            out: Extracted::new(n),
            scratch: String::new(),
            nested: Vec::new(),
        }
    }

    pub fn matcher(&self) -> &Matcher {
        &self.m
    }

    /// The result of the last extraction.
    pub fn last(&self) -> &Extracted {
        &self.out
    }
}
