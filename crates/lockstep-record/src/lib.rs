//! # lockstep-record
//!
//! Reads one log record and extracts, normalised, what the tail-sampling mirror needs:
//! the trace id and span id (every common form, lowercase-hex bytes out), the level
//! (six levels), the duration (milliseconds), and the values of any attribute keys a
//! policy asks for.
//!
//! It owns the alias tables ([`FieldTable`]: data with documented defaults and
//! precedence) and two input paths that give the same answer for the same record:
//!
//! - [`Extractor::extract_json`]: a hand-rolled scanner over JSON text. It builds no DOM
//!   and allocates nothing per record once its scratch buffers have grown (it runs
//!   inside Fluent Bit's WASM interpreter, where every byte touched costs; it scans
//!   strings eight bytes at a time). It also validates the text as JSON (structure,
//!   literals, numbers, escapes, control characters, UTF-8), because the filter must
//!   never echo invalid JSON back to the host.
//! - [`Extractor::extract_host_json`]: the filter's hot path over the text Fluent Bit's
//!   `filter_wasm` hands over (its bare `nan`/`inf` and unquoted keys read and flagged).
//!   Same checks and same answers as the plain reading
//!   ([`Extractor::extract_host_json_reference`]), for fewer executed instructions
//!   (BENCHMARKS.md): one loop with its position in a local, keys probed by length and
//!   first word, unwanted values skipped eight bytes at a time, UTF-8 checked once per
//!   record instead of per string (`scan/fast.rs`).
//! - [`Extractor::extract_de`]: a serde path over any self-describing deserializer
//!   (msgpack through `rmp-serde`, an already-decoded `serde_json::Value`, JSON text),
//!   (the CLI and tests).
//! - [`Extractor::extract_msgpack`] (feature `msgpack`): a record body as
//!   `fluent-bit-chunk` holds it, walked without serde or recursion off the alias paths,
//!   plus [`Extractor::merge_otlp_metadata`] for the OTLP fields Fluent Bit's
//!   `opentelemetry` input keeps in the event metadata: the output plugin's sampling.
//!
//! Invariants:
//! - Ids are never guessed: all-zero, wrong-length, non-hex, malformed forms are
//!   reported as [`IdError`], never repaired. A hex trace id (32 digits) or span id (16)
//!   is kept as found and decoded when read ([`Extracted::trace_state`],
//!   [`Extracted::span_state`]): the answer is the same, only its cost moves to the
//!   readers that need it; [`Extracted::trace_key`] names a trace without decoding.
//! - Within a role, the first alias in the table that is present wins; `null` and `""`
//!   are absent. A repeated key: the last occurrence wins (as serde_json).
//! - Both paths visit keys in document order and feed the same sink, so they agree on
//!   every valid JSON document (property-tested); the filter's reading and the plain one
//!   accept the same texts and extract the same from them (property-tested, fuzzed).
//!   Documents nested deeper than 128 levels are rejected by all of them.
//! - No panics on any input.

#[cfg(feature = "serde-path")]
pub mod drift;
pub mod duration;
mod extract;
pub mod fields;
pub mod ids;
pub mod level;
#[cfg(feature = "msgpack")]
mod msgpack;
pub mod samples;
mod scan;
#[cfg(feature = "serde-path")]
mod serde_path;

pub use duration::{DurationState, Unit};
pub use extract::{Attr, Extracted, Extractor};
pub use fields::{
    DurationAlias, FieldError, FieldOverrides, FieldTable, IdAlias, LevelAlias, Matcher,
    RoleOverride,
};
pub use ids::{IdError, IdFormat, IdState, SpanId, TraceId};
pub use level::{Level, LevelState, NumberScheme};
#[cfg(feature = "msgpack")]
pub use msgpack::OtlpSeen;
pub use scan::{validate_object, ScanError};

/// A scalar value as both input paths present it to the sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    /// Non-negative integers.
    UInt(u64),
    /// Negative integers.
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// An object, array, or a value with no JSON scalar form (binary, ext).
    Other,
}

/// Maximum nesting depth of a record.
pub const MAX_DEPTH: u32 = 128;
