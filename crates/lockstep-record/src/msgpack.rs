//! The msgpack path: a record as Fluent Bit holds it (`fluent-bit-chunk`'s zero-copy
//! views), read with the same rules as the JSON paths, without a JSON detour or serde.
//! For the output plugin's sampling stage, which runs on Fluent Bit's flush coroutine
//! (a 64 KiB stack with no guard page): it descends only along alias paths (so its
//! depth is bounded by the longest alias, and by [`MAX_DEPTH`]) and skips every other
//! value without recursion.
//!
//! [`Extractor::merge_otlp_metadata`] adds what Fluent Bit's `opentelemetry` input puts
//! in the event metadata (`shared/facts/fluent-bit-otlp-logs.md` §2): `otlp.trace_id` /
//! `span_id` as raw bytes, `otlp.severity_number` / `severity_text`, and
//! `otlp.attributes`, read as further record keys.

use crate::extract::{Extracted, Extractor};
use crate::fields::Matcher;
use crate::ids::{IdError, IdState};
use crate::level::{self, LevelState, NumberScheme};
use crate::{Scalar, MAX_DEPTH};
use fluent_bit_chunk::{MapView, ValueRef};

/// What [`Extractor::merge_otlp_metadata`] found in the event metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtlpSeen {
    /// An `otlp` map was present.
    pub otlp: bool,
    /// `otlp.trace_id` set the trace id (valid or not).
    pub trace_id: bool,
    /// `otlp.span_id` set the span id.
    pub span_id: bool,
    /// `otlp.severity_number` or `severity_text` set the level.
    pub level: bool,
}

impl Extractor {
    /// Reads one record body (a msgpack map). Same answers as [`Extractor::extract_json`]
    /// on the JSON rendering of the same body (property-tested), minus what JSON cannot
    /// hold: a `bin` value is read as a string when it is UTF-8, an ext value is
    /// "other", a non-string key never matches an alias.
    pub fn extract_msgpack(&mut self, body: MapView<'_>) -> &Extracted {
        self.out.reset();
        self.walk_record(body, true);
        &self.out
    }

    /// Reads `map`'s keys as a record's top-level keys into the current extraction.
    fn walk_record(&mut self, map: MapView<'_>, nested_ok: bool) {
        let all = self.m.all;
        walk(
            &self.m,
            &mut self.out,
            &mut self.scratch,
            &mut self.nested,
            map,
            all,
            0,
            nested_ok,
            0,
        );
    }

    /// Adds the OTLP fields of an event's metadata to the last extraction, without
    /// resetting it. `otlp.attributes` are read as record keys (after the body's, so on
    /// equal alias rank the attribute wins). Then the record's own OTLP fields, when
    /// present, override what the body said: `trace_id` (bin, 16 bytes) and `span_id`
    /// (bin, 8 bytes; a hex string is accepted too), and the level from
    /// `severity_number` (1–24; a digit string is accepted as Fluent Bit's JSON path
    /// copies it as sent) or, without one, from `severity_text`. An id of the wrong
    /// length or all zero is invalid, never repaired.
    pub fn merge_otlp_metadata(&mut self, meta: MapView<'_>) -> OtlpSeen {
        let mut seen = OtlpSeen::default();
        let Some(otlp) = meta.get("otlp").and_then(|v| v.as_map()) else {
            return seen;
        };
        seen.otlp = true;
        if let Some(attrs) = otlp.get("attributes").and_then(|v| v.as_map()) {
            self.walk_record(attrs, false);
        }
        let mut severity_number = false;
        for (k, v) in otlp.iter() {
            let ValueRef::Str(k) = k else { continue };
            match k.as_bytes() {
                b"trace_id" => {
                    if let Some(id) = id_bytes::<16>(&v) {
                        self.out.set_trace_state(id);
                        seen.trace_id = true;
                    }
                }
                b"span_id" => {
                    if let Some(id) = id_bytes::<8>(&v) {
                        self.out.set_span_state(id);
                        seen.span_id = true;
                    }
                }
                b"severity_number" => {
                    let n = match v {
                        ValueRef::UInt(n) => i64::try_from(n).ok(),
                        ValueRef::Int(n) => Some(n),
                        ValueRef::Str(s) => s.as_str().and_then(|s| s.trim().parse().ok()),
                        _ => None,
                    };
                    if let Some(l) = n.and_then(|n| level::from_number(NumberScheme::Otel, n)) {
                        self.out.set_level_state(LevelState::Known(l));
                        severity_number = true;
                        seen.level = true;
                    }
                }
                _ => {}
            }
        }
        if !severity_number {
            if let Some(t) = otlp.get("severity_text").and_then(|v| v.as_str()) {
                if let Some(l) = level::from_str(NumberScheme::None, t) {
                    self.out.set_level_state(LevelState::Known(l));
                    seen.level = true;
                }
            }
        }
        seen
    }
}

/// An OTLP id: raw bytes (the `opentelemetry` input's form), or hex text.
fn id_bytes<const N: usize>(v: &ValueRef<'_>) -> Option<IdState<N>> {
    let bytes: [u8; N] = match *v {
        ValueRef::Bin([]) => return None,
        ValueRef::Bin(b) => match <[u8; N]>::try_from(b) {
            Ok(a) => a,
            Err(_) => return Some(IdState::Invalid(IdError::WrongLength(b.len()))),
        },
        ValueRef::Str(s) if s.as_bytes().is_empty() => return None,
        ValueRef::Str(s) => match crate::ids::hex_exact::<N>(s.as_bytes()) {
            Ok(a) => a,
            Err(e) => return Some(IdState::Invalid(e)),
        },
        ValueRef::Nil => return None,
        _ => return Some(IdState::Invalid(IdError::NotAString)),
    };
    if bytes.iter().all(|&b| b == 0) {
        return Some(IdState::Invalid(IdError::AllZero));
    }
    Some(IdState::Valid(bytes))
}

/// Visits a map on the matcher's state (`mask`, `off`, as [`Matcher::step`]). Recurses
/// only into a map some alias path goes through (`desc != 0`).
#[allow(clippy::too_many_arguments)]
fn walk(
    m: &Matcher,
    out: &mut Extracted,
    scratch: &mut String,
    nested: &mut Vec<u8>,
    map: MapView<'_>,
    mask: u128,
    off: usize,
    nested_ok: bool,
    depth: u32,
) {
    for (k, v) in map.iter() {
        let key = match k {
            ValueRef::Str(s) => s.as_bytes(),
            // Non-string keys (msgpack allows them) never match an alias.
            _ => continue,
        };
        let (leaf, desc) = m.step(mask, off, key);
        if leaf == usize::MAX && desc == 0 {
            continue;
        }
        let actions: &[crate::fields::Action] = if leaf == usize::MAX {
            &[]
        } else {
            &m.actions[leaf]
        };
        match v {
            ValueRef::Str(s) => match s.as_str() {
                Some(t) => {
                    out.on_value(actions, &Scalar::Str(t));
                    if nested_ok
                        && leaf != usize::MAX
                        && m.nested[leaf]
                        && t.trim_start().starts_with('{')
                    {
                        crate::scan::nested_text(m, out, scratch, nested, t.as_bytes());
                    }
                }
                None => out.on_value(actions, &Scalar::Other),
            },
            ValueRef::Bin(b) => match std::str::from_utf8(b) {
                Ok(t) => out.on_value(actions, &Scalar::Str(t)),
                Err(_) => out.on_value(actions, &Scalar::Other),
            },
            ValueRef::UInt(n) => out.on_value(actions, &Scalar::UInt(n)),
            ValueRef::Int(n) => out.on_value(actions, &Scalar::Int(n)),
            ValueRef::F32(f) => out.on_value(actions, &Scalar::Float(f64::from(f))),
            ValueRef::F64(f) => out.on_value(actions, &Scalar::Float(f)),
            ValueRef::Bool(b) => out.on_value(actions, &Scalar::Bool(b)),
            ValueRef::Nil => out.on_value(actions, &Scalar::Null),
            ValueRef::Map(inner) => {
                if desc != 0 && depth + 1 < MAX_DEPTH {
                    walk(
                        m,
                        out,
                        scratch,
                        nested,
                        inner,
                        desc,
                        off + key.len() + 1,
                        nested_ok,
                        depth + 1,
                    );
                }
                out.on_value(actions, &Scalar::Other);
            }
            ValueRef::Array(_) | ValueRef::Ext(..) => out.on_value(actions, &Scalar::Other),
        }
    }
}
