//! # lockstep-map
//!
//! The record mapping of the `lockstep_loki` output, as a pure library (no FFI): a
//! Fluent Bit record (decoded in place by `fluent-bit-chunk`) becomes a Loki entry
//! (tenant, labels, structured metadata, line) ready for the queue
//! ([`lockstep_ship::SpooledEntry`]). The plugin crate only hands it records.
//!
//! Record → Loki entry mapping, with the keys of Fluent Bit's built-in `loki`
//! output (`labels`, `label_keys`, `structured_metadata`, `remove_keys`,
//! `line_format`, `drop_single_key`, `tenant_id`, `tenant_id_key`) meaning what
//! they mean there, so a user can switch outputs by changing `Name`.
//!
//! What follows the built-in output (Fluent Bit 5.1, `plugins/out_loki/loki.c`):
//! - `labels` is a comma list of `name=value`, `name=$accessor` and `$accessor`
//!   entries; `label_keys` a comma list of `$accessor`s. An accessor-only entry
//!   names its label after the accessor path joined with `_`
//!   (`$sub['stream']` → `sub_stream`), then sanitised.
//! - Record accessors: `$key`, `$a['b'][0]`, `$TAG`, `$TAG[n]`; where a key
//!   occurs twice in a map, the last occurrence is used. A value template is
//!   the accessor plus any literal text around it (`$a.b` is `$a` then `.b`).
//! - Label values: strings as is, integers in decimal, floats as C `%f`,
//!   booleans, nil as `null`, binaries in hex, maps as JSON; an array, an ext
//!   or a missing key gives no label; empty values give no label.
//! - When a record ends up with no label at all it gets `job="fluent-bit"`.
//! - Every key read through an accessor for a label or structured metadata,
//!   and every `remove_keys` entry (a `$` is prepended when missing), is removed
//!   from the line. `tenant_id_key` is not.
//! - `line_format json` renders the remaining record as JSON; `key_value`
//!   renders `key=value` pairs separated by spaces (strings quoted unescaped,
//!   arrays `"[a b]"`, maps `"map[k:v]"`).
//! - `drop_single_key` (`on`/`off`/`raw`): when exactly one key remains the
//!   line is that key's value: for `json`, its JSON (`raw`: a string unquoted);
//!   for `key_value`, a string unquoted, anything else in key_value form.
//! - `tenant_id_key` (a top-level key name, or a `$accessor`) whose value is a
//!   non-empty string wins over `tenant_id`.
//!
//! Decisions of this project on top of that:
//! - label names are sanitised to `[a-zA-Z_][a-zA-Z0-9_]*`; values longer than
//!   2048 bytes are truncated on a char boundary; invalid UTF-8 is replaced;
//!   all counted in [`MapStats`];
//! - a label that would carry a trace or span id (named, or read from a key
//!   named, `trace_id`, `span_id`, `traceid`, `spanid`) is refused;
//! - structured-metadata values render numbers, booleans, maps and arrays as
//!   JSON text;
//! - a label or metadata name configured twice: the last one with a value wins;
//! - JSON is written as `fluent_bit_chunk::json` writes it (non-ASCII kept as
//!   UTF-8, floats in shortest round-trip form, repeated keys all kept), where
//!   Fluent Bit escapes non-ASCII as `\uXXXX`, prints floats `%.16g` and keeps
//!   only the last of repeated keys; `key_value` follows Fluent Bit exactly.
//!
//! Invariants: [`Mapping`] is immutable after [`Mapping::new`]; [`Mapping::map`]
//! never fails on record content and never recurses on the record's depth
//! (explicit stacks on the heap), so it is safe on Fluent Bit's 64 KiB flush
//! stack.

use std::fmt::Write as _;

use fluent_bit_chunk::decode::{RawStr, Token, Tokens};
use fluent_bit_chunk::json::{write_escaped_bytes, write_json};
use fluent_bit_chunk::{MapView, ValueRef};
use lockstep_loki::{is_valid_label_name, sanitize_label_name};
use lockstep_ship::SpooledEntry;

/// Loki's default `max_label_value_length`, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 2048;

/// Raw property strings as the operator wrote them (None = unset).
#[derive(Debug, Clone, Default)]
pub struct MappingConfig {
    /// `labels`: `name=value`, `name=$accessor` or `$accessor`, comma separated.
    pub labels: Option<String>,
    /// `label_keys`: `$accessor`s, comma separated.
    pub label_keys: Option<String>,
    /// `structured_metadata`: same forms as `labels`.
    pub structured_metadata: Option<String>,
    /// `remove_keys`: keys or `$accessor`s, comma separated.
    pub remove_keys: Option<String>,
    /// `line_format`: `json` (default) or `key_value`.
    pub line_format: Option<String>,
    /// `drop_single_key`: `on`, `off` (default) or `raw`.
    pub drop_single_key: Option<String>,
    /// `tenant_id`: the default tenant.
    pub tenant_id: Option<String>,
    /// `tenant_id_key`: record key (or `$accessor`) holding the tenant.
    pub tenant_id_key: Option<String>,
}

/// A configuration the mapping refuses; the message names the key and the text.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// An entry of a list key that cannot be parsed.
    #[error("{key}: invalid entry '{entry}': {reason}")]
    InvalidEntry {
        /// The configuration key.
        key: &'static str,
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label that would carry a trace or span id.
    #[error(
        "{key}: '{entry}' would put a trace/span id into the stream label '{name}': \
         every distinct id would make a new stream; use `structured_metadata` instead \
         (e.g. `structured_metadata trace_id=$trace_id`)"
    )]
    HighCardinalityLabel {
        /// The configuration key.
        key: &'static str,
        /// The offending entry.
        entry: String,
        /// The label name, or the record key, that was refused.
        name: String,
    },
    /// A value outside the allowed set.
    #[error("invalid '{key}' value '{value}': expected {expected}")]
    InvalidValue {
        /// The configuration key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// The allowed values.
        expected: &'static str,
    },
}

/// Counters [`Mapping::map`] increments.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MapStats {
    /// Strings (in the line, a label, a metadata value or the tenant) whose
    /// invalid UTF-8 was replaced by U+FFFD.
    pub invalid_utf8_fixed: u64,
    /// Labels emitted under a sanitised name.
    pub label_names_sanitised: u64,
    /// Label values cut to [`MAX_LABEL_VALUE_BYTES`].
    pub label_values_truncated: u64,
    /// Structured-metadata entries dropped: a present key whose value is empty
    /// or unrepresentable (an ext), or a name shadowed by a later entry.
    pub metadata_dropped: u64,
}

/// One step of a record accessor path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(u32),
}

/// One piece of a value template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// A record accessor: the top-level key then subkeys.
    Key(Vec<Step>),
    Tag,
    TagIndex(usize),
}

#[derive(Debug, Clone)]
enum Value {
    Static(String),
    Dynamic(Vec<Part>),
}

#[derive(Debug, Clone)]
struct Pair {
    name: String,
    /// The name as configured was not a valid label name.
    sanitised: bool,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineFormat {
    Json,
    KeyValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropSingleKey {
    Off,
    On,
    Raw,
}

/// The compiled mapping: immutable, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Mapping {
    labels: Vec<Pair>,
    metadata: Vec<Pair>,
    /// Accessor paths removed from the line.
    removals: Vec<Vec<Step>>,
    line_format: LineFormat,
    drop_single_key: DropSingleKey,
    tenant_id: Option<String>,
    tenant_key: Option<Vec<Step>>,
    uses_tag: bool,
}

fn clist(s: &Option<String>) -> Vec<&str> {
    s.as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(key: &'static str, entry: &str, reason: impl Into<String>) -> MappingError {
    MappingError::InvalidEntry {
        key,
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')
}

/// Parses one record accessor `$key['sub'][0]` (the grammar of Fluent Bit's
/// `ra.l`/`ra.y`: blanks between tokens are ignored, `''` in a quoted subkey
/// is a quote).
fn parse_accessor(meta: &str, key: &'static str, entry: &str) -> Result<Vec<Step>, MappingError> {
    let b = meta.as_bytes();
    let mut i = 1; // past '$'
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if i >= b.len() || !is_ident_start(b[i]) {
        return Err(invalid(
            key,
            entry,
            format!("'{meta}' is not a record accessor: expected `$name` or `$name['sub'][0]`"),
        ));
    }
    let start = i;
    while i < b.len() && is_ident_char(b[i]) {
        i += 1;
    }
    let mut steps = vec![Step::Key(meta[start..i].to_string())];
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        if b[i] != b'[' {
            return Err(invalid(
                key,
                entry,
                format!("unexpected '{}' in record accessor '{meta}'", &meta[i..]),
            ));
        }
        i += 1;
        skip_ws(&mut i);
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            let mut s = String::new();
            let mut seg = i;
            loop {
                if i >= b.len() {
                    return Err(invalid(
                        key,
                        entry,
                        format!("unterminated quote in record accessor '{meta}'"),
                    ));
                }
                if b[i] == b'\'' {
                    if i + 1 < b.len() && b[i + 1] == b'\'' {
                        s.push_str(&meta[seg..=i]);
                        i += 2;
                        seg = i;
                        continue;
                    }
                    s.push_str(&meta[seg..i]);
                    i += 1;
                    break;
                }
                i += 1;
            }
            steps.push(Step::Key(s));
        } else if i < b.len() && b[i].is_ascii_digit() {
            let d = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &meta[d..i];
            let n = match digits.parse::<u32>() {
                Ok(n) if digits == "0" || !digits.starts_with('0') => n,
                _ => {
                    return Err(invalid(
                        key,
                        entry,
                        format!("bad array index '{digits}' in record accessor '{meta}'"),
                    ))
                }
            };
            steps.push(Step::Index(n));
        } else {
            return Err(invalid(
                key,
                entry,
                format!("expected a quoted key or an index after '[' in record accessor '{meta}'"),
            ));
        }
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b']' {
            return Err(invalid(
                key,
                entry,
                format!("missing ']' in record accessor '{meta}'"),
            ));
        }
        i += 1;
    }
    Ok(steps)
}

/// Splits a value the way Fluent Bit's `ra_parse_buffer` does: literal text,
/// `$TAG`, `$TAG[n]` and accessors, an accessor ending at `.` (outside
/// quotes), blank, `,` or `"`.
fn parse_template(s: &str, key: &'static str, entry: &str) -> Result<Vec<Part>, MappingError> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut pre = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let n = i + 1;
        if n >= b.len() {
            return Err(invalid(
                key,
                entry,
                "a '$' must be followed by a key name or TAG",
            ));
        }
        if i > pre {
            parts.push(Part::Lit(s[pre..i].to_string()));
        }
        if b[n].is_ascii_digit() {
            return Err(invalid(
                key,
                entry,
                "regex captures ($0..$9) are not available here; record keys cannot start with a digit",
            ));
        }
        if s[n..].starts_with("TAG") {
            if b.get(n + 3) == Some(&b'[') {
                let close = s[n + 3..]
                    .find(']')
                    .map(|p| p + n + 3)
                    .ok_or_else(|| invalid(key, entry, "missing ']' after $TAG["))?;
                let idx = s[n + 4..close].trim().parse::<usize>().map_err(|_| {
                    invalid(
                        key,
                        entry,
                        format!("bad tag part index '{}'", &s[n + 4..close]),
                    )
                })?;
                parts.push(Part::TagIndex(idx));
                i = close + 1;
            } else {
                parts.push(Part::Tag);
                i = n + 3;
            }
            pre = i;
            continue;
        }
        let mut end = i + 1;
        let mut quotes = 0u32;
        while end < b.len() {
            match b[end] {
                b'\'' => quotes += 1,
                b'.' if quotes % 2 == 1 => {}
                b'.' | b' ' | b',' | b'"' => break,
                _ => {}
            }
            end += 1;
        }
        parts.push(Part::Key(parse_accessor(&s[i..end], key, entry)?));
        i = end;
        pre = end;
    }
    if pre < b.len() {
        parts.push(Part::Lit(s[pre..].to_string()));
    }
    Ok(parts)
}

/// The name Fluent Bit gives an accessor-only entry (`normalize_ra_key_name`):
/// the parts joined with `_`, an accessor as its key and subkeys joined with `_`.
fn normalized_name(parts: &[Part]) -> String {
    let mut name = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            name.push('_');
        }
        match p {
            Part::Lit(s) => name.push_str(s),
            Part::Key(steps) => {
                for (j, st) in steps.iter().enumerate() {
                    if j > 0 {
                        name.push('_');
                    }
                    match st {
                        Step::Key(k) => name.push_str(k),
                        Step::Index(n) => {
                            let _ = write!(name, "{n}");
                        }
                    }
                }
            }
            Part::Tag | Part::TagIndex(_) => {}
        }
    }
    name
}

fn is_trace_name(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "trace_id" | "span_id" | "traceid" | "spanid"
    )
}

/// The first accessor of a template, which Fluent Bit removes from the line.
fn first_accessor(parts: &[Part]) -> Option<&Vec<Step>> {
    match parts.first() {
        Some(Part::Key(steps)) => Some(steps),
        _ => None,
    }
}

/// Parses `labels` / `structured_metadata` entries (Fluent Bit's `parse_kv`)
/// or `label_keys` entries (`only_accessors`).
fn parse_pairs(
    key: &'static str,
    raw: &Option<String>,
    only_accessors: bool,
    out: &mut Vec<Pair>,
    removals: &mut Vec<Vec<Step>>,
) -> Result<(), MappingError> {
    for entry in clist(raw) {
        let pair = if entry.starts_with('$') {
            let parts = parse_template(entry, key, entry)?;
            let name = normalized_name(&parts);
            if name.trim_matches('_').is_empty() {
                return Err(invalid(
                    key,
                    entry,
                    "it gives no label name; write it as name=$TAG",
                ));
            }
            if let Some(steps) = first_accessor(&parts) {
                removals.push(steps.clone());
            }
            let sanitised = !is_valid_label_name(&name);
            Pair {
                name: if sanitised {
                    sanitize_label_name(&name)
                } else {
                    name
                },
                sanitised,
                value: Value::Dynamic(parts),
            }
        } else if only_accessors {
            return Err(invalid(key, entry, "the name must start with '$'"));
        } else {
            let Some((name, value)) = entry.split_once('=') else {
                return Err(invalid(
                    key,
                    entry,
                    "expected name=value, name=$key or $key",
                ));
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || value.is_empty() {
                return Err(invalid(
                    key,
                    entry,
                    "expected name=value with a non-empty name and value",
                ));
            }
            let value = if value.starts_with('$') {
                let parts = parse_template(value, key, entry)?;
                if let Some(steps) = first_accessor(&parts) {
                    removals.push(steps.clone());
                }
                Value::Dynamic(parts)
            } else {
                Value::Static(value.to_string())
            };
            let sanitised = !is_valid_label_name(name);
            Pair {
                name: name.to_string(),
                sanitised,
                value,
            }
        };
        out.push(pair);
    }
    Ok(())
}

/// Refuses labels carrying trace or span ids.
fn check_label(key: &'static str, entry: &str, p: &Pair) -> Result<(), MappingError> {
    let refuse = |name: &str| MappingError::HighCardinalityLabel {
        key,
        entry: entry.to_string(),
        name: name.to_string(),
    };
    if is_trace_name(&sanitize_label_name(&p.name)) {
        return Err(refuse(&p.name));
    }
    if let Value::Dynamic(parts) = &p.value {
        for part in parts {
            if let Part::Key(steps) = part {
                let last = steps.iter().rev().find_map(|s| match s {
                    Step::Key(k) => Some(k),
                    Step::Index(_) => None,
                });
                if let Some(k) = last {
                    if is_trace_name(&sanitize_label_name(k)) {
                        return Err(refuse(k));
                    }
                }
            }
        }
    }
    Ok(())
}

impl Mapping {
    /// Compiles the configuration; errors name the key and the offending text.
    pub fn new(cfg: &MappingConfig) -> Result<Mapping, MappingError> {
        let mut removals = Vec::new();

        let mut labels = Vec::new();
        parse_pairs("labels", &cfg.labels, false, &mut labels, &mut removals)?;
        let n_labels = labels.len();
        parse_pairs(
            "label_keys",
            &cfg.label_keys,
            true,
            &mut labels,
            &mut removals,
        )?;
        let label_entries: Vec<&str> = clist(&cfg.labels)
            .into_iter()
            .chain(clist(&cfg.label_keys))
            .collect();
        for (i, p) in labels.iter_mut().enumerate() {
            let key = if i < n_labels { "labels" } else { "label_keys" };
            check_label(key, label_entries[i], p)?;
            if p.sanitised {
                p.name = sanitize_label_name(&p.name);
            }
        }
        // Sorted by name once here (stable: configuration order within one name), so
        // each record's labels come out sorted without a sort per record.
        labels.sort_by(|a, b| a.name.cmp(&b.name));

        let mut metadata = Vec::new();
        parse_pairs(
            "structured_metadata",
            &cfg.structured_metadata,
            false,
            &mut metadata,
            &mut removals,
        )?;

        for entry in clist(&cfg.remove_keys) {
            let pattern = if entry.starts_with('$') {
                entry.to_string()
            } else {
                format!("${entry}")
            };
            let parts = parse_template(&pattern, "remove_keys", entry)?;
            match first_accessor(&parts) {
                Some(steps) => removals.push(steps.clone()),
                None => {
                    return Err(invalid(
                        "remove_keys",
                        entry,
                        "it does not name a record key",
                    ))
                }
            }
        }
        let mut unique: Vec<Vec<Step>> = Vec::with_capacity(removals.len());
        for r in removals {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }

        let line_format = match cfg.line_format.as_deref().map(str::trim) {
            None => LineFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("json") => LineFormat::Json,
            Some(v) if v.eq_ignore_ascii_case("key_value") => LineFormat::KeyValue,
            Some(v) => {
                return Err(MappingError::InvalidValue {
                    key: "line_format",
                    value: v.to_string(),
                    expected: "json or key_value",
                })
            }
        };
        let drop_single_key = match cfg.drop_single_key.as_deref().map(str::trim) {
            None => DropSingleKey::Off,
            Some(v) if v.eq_ignore_ascii_case("raw") => DropSingleKey::Raw,
            Some(v)
                if ["on", "true", "yes"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t)) =>
            {
                DropSingleKey::On
            }
            Some(v)
                if ["off", "false", "no"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t)) =>
            {
                DropSingleKey::Off
            }
            Some(v) => {
                return Err(MappingError::InvalidValue {
                    key: "drop_single_key",
                    value: v.to_string(),
                    expected: "on, off or raw (also true/false, yes/no)",
                })
            }
        };

        let tenant_id = cfg
            .tenant_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let tenant_key = match cfg.tenant_id_key.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(k) if k.starts_with('$') => {
                let parts = parse_template(k, "tenant_id_key", k)?;
                match first_accessor(&parts) {
                    Some(steps) => Some(steps.clone()),
                    None => {
                        return Err(invalid("tenant_id_key", k, "it does not name a record key"))
                    }
                }
            }
            // Without '$' Fluent Bit reads the whole text as one top-level key.
            Some(k) => Some(vec![Step::Key(k.to_string())]),
        };

        let uses_tag = labels.iter().chain(&metadata).any(|p| match &p.value {
            Value::Dynamic(parts) => parts
                .iter()
                .any(|x| matches!(x, Part::Tag | Part::TagIndex(_))),
            Value::Static(_) => false,
        });

        Ok(Mapping {
            labels,
            metadata,
            removals: unique,
            line_format,
            drop_single_key,
            tenant_id,
            tenant_key,
            uses_tag,
        })
    }

    /// True when `labels` or `label_keys` configure at least one label; when
    /// false every entry gets `job="fluent-bit"` (so the plugin can warn).
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Whether some label or metadata value reads the tag (`$TAG`, `$TAG[n]`):
    /// then call [`Mapping::map_tagged`].
    pub fn uses_tag(&self) -> bool {
        self.uses_tag
    }

    /// Maps one record body (and its event timestamp) to an entry; `stats` is
    /// incremented. Never fails on record content: missing accessor targets just
    /// produce no label / no metadata. `$TAG` reads as the empty tag.
    pub fn map(&self, ts_ns: i64, body: MapView<'_>, stats: &mut MapStats) -> SpooledEntry {
        self.map_tagged("", ts_ns, body, stats)
    }

    /// [`Mapping::map`] with the chunk's tag, for `$TAG` and `$TAG[n]`.
    pub fn map_tagged(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        stats: &mut MapStats,
    ) -> SpooledEntry {
        let mut sc = Scratch::default();
        self.fill(tag, body, MapView::empty(), stats, &mut sc);
        SpooledEntry {
            tenant: sc.has_tenant.then(|| sc.tenant.clone()),
            labels: self
                .labels_of(&sc)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ts_ns,
            line: std::mem::take(&mut sc.line),
            structured_metadata: self
                .metadata_of(&sc)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Appends the spool payload of one record to `out`: the bytes of
    /// `map_tagged(..).encode()`, written from `scratch`'s reused buffers without
    /// building the entry (Flush's hot path: no allocation per record once the buffers
    /// have grown).
    pub fn encode_tagged(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        stats: &mut MapStats,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        self.encode_event(tag, ts_ns, body, MapView::empty(), stats, scratch, out)
    }

    /// [`Mapping::encode_tagged`] with the event's metadata: a structured metadata value
    /// that is exactly `$trace_id` (or `$span_id`) and finds nothing in the body takes
    /// the OTLP record's own id from the metadata (`otlp.trace_id` / `otlp.span_id`, the
    /// raw bytes Fluent Bit's `opentelemetry` input keeps, as lowercase hex), so the
    /// entries of OTLP logs carry their trace id like any other.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_event(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        self.fill(tag, body, meta, stats, scratch);
        lockstep_ship::encode_entry(
            out,
            scratch.has_tenant.then_some(scratch.tenant.as_str()),
            self.labels_of(scratch),
            ts_ns,
            &scratch.line,
            self.metadata_of(scratch),
        );
    }

    /// Maps a record into `sc`: tenant, labels, line and metadata, reusing its buffers.
    fn fill(
        &self,
        tag: &str,
        body: MapView<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        sc: &mut Scratch,
    ) {
        // One pass over the top level serves every accessor and removal below (each
        // used to scan the whole record: the flush path's largest cost).
        let top = Top::new(body);
        sc.has_tenant = self.tenant(&top, stats, &mut sc.tenant);
        self.labels(tag, &top, stats, sc);
        sc.line.clear();
        self.line(&top, stats, &mut sc.line);
        self.metadata(tag, &top, meta, stats, sc);
    }

    /// The labels filled into `sc`, as (name, value).
    fn labels_of<'s>(
        &'s self,
        sc: &'s Scratch,
    ) -> impl ExactSizeIterator<Item = (&'s str, &'s str)> {
        sc.labels[..sc.n_labels]
            .iter()
            .map(|(i, v)| match self.labels.get(*i) {
                Some(p) => (p.name.as_str(), v.as_str()),
                None => ("job", "fluent-bit"),
            })
    }

    /// The structured metadata filled into `sc`, as (name, value).
    fn metadata_of<'s>(
        &'s self,
        sc: &'s Scratch,
    ) -> impl ExactSizeIterator<Item = (&'s str, &'s str)> {
        sc.metadata[..sc.n_metadata]
            .iter()
            .map(|(i, v)| (self.metadata[*i].name.as_str(), v.as_str()))
    }

    fn tenant(&self, top: &Top<'_>, stats: &mut MapStats, out: &mut String) -> bool {
        out.clear();
        if let Some(path) = &self.tenant_key {
            if let Some(ValueRef::Str(s)) = lookup(top, path) {
                if !s.0.is_empty() {
                    push_lossy(out, s.0, stats);
                    return true;
                }
            }
        }
        match &self.tenant_id {
            Some(t) => {
                out.push_str(t);
                true
            }
            None => false,
        }
    }

    fn labels(&self, tag: &str, top: &Top<'_>, stats: &mut MapStats, sc: &mut Scratch) {
        let n = &mut sc.n_labels;
        *n = 0;
        for (pi, p) in self.labels.iter().enumerate() {
            let value = slot(&mut sc.labels, *n);
            match &p.value {
                Value::Static(s) => value.push_str(s),
                Value::Dynamic(parts) => {
                    translate(parts, tag, top, value, Flavour::Label, stats);
                }
            }
            if value.is_empty() {
                continue;
            }
            if value.len() > MAX_LABEL_VALUE_BYTES {
                let mut cut = MAX_LABEL_VALUE_BYTES;
                while !value.is_char_boundary(cut) {
                    cut -= 1;
                }
                value.truncate(cut);
                stats.label_values_truncated += 1;
            }
            if p.sanitised {
                stats.label_names_sanitised += 1;
            }
            // `self.labels` is sorted by name; of one name, the last configured with a
            // value wins (as a JSON object with a repeated key reads in Loki).
            if *n > 0 && self.labels[sc.labels[*n - 1].0].name == p.name {
                sc.labels.swap(*n - 1, *n);
                sc.labels[*n - 1].0 = pi;
            } else {
                sc.labels[*n].0 = pi;
                *n += 1;
            }
        }
        if *n == 0 {
            // No label at all: Loki needs one (the index past the configured ones).
            slot(&mut sc.labels, 0);
            sc.labels[0].0 = usize::MAX;
            *n = 1;
        }
    }

    fn metadata(
        &self,
        tag: &str,
        top: &Top<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        sc: &mut Scratch,
    ) {
        let n = &mut sc.n_metadata;
        *n = 0;
        for (pi, p) in self.metadata.iter().enumerate() {
            let value = slot(&mut sc.metadata, *n);
            match &p.value {
                Value::Static(s) => value.push_str(s),
                Value::Dynamic(parts) => {
                    let found = translate(parts, tag, top, value, Flavour::Metadata, stats);
                    if value.is_empty() && !found && !meta.is_empty() {
                        if let Some(key) = otlp_id_key(parts) {
                            otlp_id_hex(meta, key, value);
                        }
                    }
                    if value.is_empty() {
                        if found {
                            stats.metadata_dropped += 1;
                        }
                        continue;
                    }
                }
            }
            sc.metadata[*n].0 = pi;
            // Of one name the last one wins, in the last one's place.
            if let Some(pos) = sc.metadata[..*n]
                .iter()
                .position(|(i, _)| self.metadata[*i].name == p.name)
            {
                sc.metadata[pos..=*n].rotate_left(1);
                stats.metadata_dropped += 1;
            } else {
                *n += 1;
            }
        }
    }

    /// The line: the record minus removed keys, in the configured format.
    fn line(&self, top: &Top<'_>, stats: &mut MapStats, out: &mut String) {
        let body = top.body;
        let mut removed: Vec<Vec<u32>> = self
            .removals
            .iter()
            .filter_map(|p| {
                let mut idx = Vec::with_capacity(p.len());
                walk(top, p, |i| idx.push(i)).map(|_| idx)
            })
            .collect();
        removed.sort();
        removed.dedup();
        let rel: Vec<&[u32]> = removed.iter().map(Vec::as_slice).collect();
        out.reserve(body.raw().len() + 16);

        if self.drop_single_key != DropSingleKey::Off {
            let top_removed = rel.iter().filter(|r| r.len() == 1).count();
            if body.len() - top_removed == 1 {
                let single = body
                    .iter()
                    .enumerate()
                    .find(|(i, _)| !rel.iter().any(|r| r.len() == 1 && r[0] == *i as u32));
                if let Some((i, (_, v))) = single {
                    let sub = children(&rel, i as u32);
                    match (self.line_format, v) {
                        (LineFormat::Json, ValueRef::Str(s))
                            if self.drop_single_key == DropSingleKey::Raw =>
                        {
                            push_lossy(out, s.0, stats);
                        }
                        (LineFormat::Json, v) => render_value(out, v, &sub, Fmt::Json, stats),
                        (LineFormat::KeyValue, ValueRef::Str(s)) => {
                            push_lossy(out, s.0, stats);
                        }
                        (LineFormat::KeyValue, v) => render_value(out, v, &sub, Fmt::Kv, stats),
                    }
                    return;
                }
            }
        }

        match self.line_format {
            LineFormat::Json => render_container(out, body.raw(), &rel, Fmt::Json, stats),
            LineFormat::KeyValue => {
                let mut emitted = false;
                for (i, (k, v)) in body.iter().enumerate() {
                    let i = i as u32;
                    if rel.iter().any(|r| r.len() == 1 && r[0] == i) {
                        continue;
                    }
                    let ValueRef::Str(k) = k else { continue };
                    if emitted {
                        out.push(' ');
                    }
                    emitted = true;
                    push_lossy(out, k.0, stats);
                    out.push('=');
                    render_value(out, v, &children(&rel, i), Fmt::Kv, stats);
                }
            }
        }
    }
}

/// Buffers a [`Mapping`] reuses from record to record ([`Mapping::encode_tagged`]):
/// values are kept in slots whose strings keep their capacity.
#[derive(Debug, Default)]
pub struct Scratch {
    tenant: String,
    has_tenant: bool,
    /// (index of the configured label, value); the first `n_labels` are this record's.
    labels: Vec<(usize, String)>,
    n_labels: usize,
    /// (index of the configured metadata pair, value); the first `n_metadata` are this
    /// record's.
    metadata: Vec<(usize, String)>,
    n_metadata: usize,
    line: String,
}

/// `trace_id` or `span_id` when a template is exactly `$trace_id` / `$span_id`.
fn otlp_id_key(parts: &[Part]) -> Option<&'static str> {
    match parts {
        [Part::Key(steps)] => match steps.as_slice() {
            [Step::Key(k)] if k == "trace_id" => Some("trace_id"),
            [Step::Key(k)] if k == "span_id" => Some("span_id"),
            _ => None,
        },
        _ => None,
    }
}

/// Appends `otlp.<key>` of the event metadata as lowercase hex: a 16-byte trace id or
/// an 8-byte span id, not all zero (anything else is no id, as the sampling reads it).
fn otlp_id_hex(meta: MapView<'_>, key: &str, out: &mut String) {
    let Some(ValueRef::Map(otlp)) = meta.get("otlp") else {
        return;
    };
    let want = if key == "trace_id" { 16 } else { 8 };
    if let Some(ValueRef::Bin(b)) = otlp.get(key) {
        if b.len() == want && b.iter().any(|&x| x != 0) {
            for x in b {
                let _ = write!(out, "{x:02x}");
            }
        }
    }
}

/// Slot `i` of `v` (created when missing), its string emptied.
fn slot(v: &mut Vec<(usize, String)>, i: usize) -> &mut String {
    if v.len() <= i {
        v.resize_with(i + 1, Default::default);
    }
    let s = &mut v[i].1;
    s.clear();
    s
}

/// The record's top level, read once: (position, key, value) of every string key.
struct Top<'a> {
    body: MapView<'a>,
    keys: Vec<(u32, &'a [u8], ValueRef<'a>)>,
}

impl<'a> Top<'a> {
    fn new(body: MapView<'a>) -> Self {
        let keys = body
            .iter()
            .enumerate()
            .filter_map(|(i, (k, v))| match k {
                ValueRef::Str(s) => Some((i as u32, s.0, v)),
                _ => None,
            })
            .collect();
        Top { body, keys }
    }
}

/// Removal paths below child `i`, relative to it.
fn children<'r>(rel: &[&'r [u32]], i: u32) -> Vec<&'r [u32]> {
    rel.iter()
        .filter(|r| r.len() > 1 && r[0] == i)
        .map(|r| &r[1..])
        .collect()
}

/// Follows an accessor path: the last occurrence of a key in a map (as
/// Fluent Bit's `ra_key_val_id`), an index in an array. Returns the index
/// path and the value.
/// The value an accessor path names in the record, if any (no allocation).
fn lookup<'a>(top: &Top<'a>, path: &[Step]) -> Option<ValueRef<'a>> {
    walk(top, path, |_| {})
}

/// Walks an accessor path, telling `at` the index taken at each level (the map entry
/// or array item), and returns the value reached.
fn walk<'a>(top: &Top<'a>, path: &[Step], mut at: impl FnMut(u32)) -> Option<ValueRef<'a>> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let &(i, _, v) = top
        .keys
        .iter()
        .rev()
        .find(|(_, key, _)| *key == k.as_bytes())?;
    at(i);
    let mut cur = v;
    for step in rest {
        match (step, cur) {
            (Step::Key(k), ValueRef::Map(m)) => {
                let mut found = None;
                for (i, (key, v)) in m.iter().enumerate() {
                    if matches!(key, ValueRef::Str(s) if s.0 == k.as_bytes()) {
                        found = Some((i, v));
                    }
                }
                let (i, v) = found?;
                at(i as u32);
                cur = v;
            }
            (Step::Index(n), ValueRef::Array(a)) => {
                let v = a.iter().nth(*n as usize)?;
                at(*n);
                cur = v;
            }
            _ => return None,
        }
    }
    Some(cur)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Fluent Bit's `flb_ra_translate`: floats `%f`, arrays give nothing.
    Label,
    /// This project's decision: numbers, booleans, maps and arrays as JSON.
    Metadata,
}

/// Appends the template's text; true when some accessor found its key.
fn translate(
    parts: &[Part],
    tag: &str,
    top: &Top<'_>,
    out: &mut String,
    flavour: Flavour,
    stats: &mut MapStats,
) -> bool {
    let mut found = false;
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Tag => out.push_str(tag),
            Part::TagIndex(n) => out.push_str(tag.split('.').nth(*n).unwrap_or("")),
            Part::Key(path) => {
                if let Some(v) = lookup(top, path) {
                    found = true;
                    value_text(out, v, flavour, stats);
                }
            }
        }
    }
    found
}

fn value_text(out: &mut String, v: ValueRef<'_>, flavour: Flavour, stats: &mut MapStats) {
    match v {
        ValueRef::Str(s) => push_lossy(out, s.0, stats),
        ValueRef::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        ValueRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::F32(f) if flavour == Flavour::Label => out.push_str(&c_fixed6(f64::from(f))),
        ValueRef::F64(f) if flavour == Flavour::Label => out.push_str(&c_fixed6(f)),
        ValueRef::F32(_) | ValueRef::F64(_) | ValueRef::Bool(_) | ValueRef::Nil => {
            write_json(out, v)
        }
        ValueRef::Bin(b) => {
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        ValueRef::Map(m) => render_container(out, m.raw(), &[], Fmt::Json, stats),
        ValueRef::Array(a) if flavour == Flavour::Metadata => {
            render_container(out, a.raw(), &[], Fmt::Json, stats)
        }
        ValueRef::Array(_) | ValueRef::Ext(..) => {}
    }
}

fn push_lossy(out: &mut String, b: &[u8], stats: &mut MapStats) {
    match std::str::from_utf8(b) {
        Ok(s) => out.push_str(s),
        Err(_) => {
            stats.invalid_utf8_fixed += 1;
            out.push_str(&String::from_utf8_lossy(b));
        }
    }
}

/// C's `%f`.
fn c_fixed6(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    format!("{f:.6}")
}

fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C's `%.16g`.
fn c_g16(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let e = format!("{f:.15e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    if !(-4..16).contains(&x) {
        let sign = if x < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            strip_fraction_zeros(mant),
            x.unsigned_abs()
        )
    } else {
        let s = format!("{:.*}", (15 - x) as usize, f);
        strip_fraction_zeros(&s).to_string()
    }
}

/// How Fluent Bit's key_value format writes a float: `%.1f` when integral
/// (fits an i64), else `%.16g`.
fn kv_float(f: f64) -> String {
    if f.is_finite()
        && f.fract() == 0.0
        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
    {
        format!("{f:.1}")
    } else {
        c_g16(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    Json,
    Kv,
}

fn render_value(
    out: &mut String,
    v: ValueRef<'_>,
    removals: &[&[u32]],
    fmt: Fmt,
    stats: &mut MapStats,
) {
    match v {
        ValueRef::Map(m) => render_container(out, m.raw(), removals, fmt, stats),
        ValueRef::Array(a) => render_container(out, a.raw(), removals, fmt, stats),
        v => write_scalar(out, v, fmt, stats),
    }
}

fn write_scalar(out: &mut String, v: ValueRef<'_>, fmt: Fmt, stats: &mut MapStats) {
    match fmt {
        Fmt::Json => match v {
            // Validated once, while written.
            ValueRef::Str(RawStr(b)) | ValueRef::Bin(b) => {
                if !write_escaped_bytes(out, b) {
                    stats.invalid_utf8_fixed += 1;
                }
            }
            v => write_json(out, v),
        },
        // Fluent Bit's pack_format_line_value.
        Fmt::Kv => match v {
            ValueRef::Str(s) => {
                out.push('"');
                push_lossy(out, s.0, stats);
                out.push('"');
            }
            ValueRef::Nil => out.push_str("null"),
            ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            ValueRef::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            ValueRef::Int(i) => {
                let _ = write!(out, "{i}");
            }
            ValueRef::F32(f) => out.push_str(&kv_float(f64::from(f))),
            ValueRef::F64(f) => out.push_str(&kv_float(f)),
            ValueRef::Bin(_) | ValueRef::Ext(..) | ValueRef::Map(_) | ValueRef::Array(_) => {}
        },
    }
}

/// A JSON object key as `json.rs` writes it: strings escaped, other scalars
/// as their JSON text in a string.
fn write_json_key(out: &mut String, k: ValueRef<'_>, stats: &mut MapStats) {
    match k {
        ValueRef::Str(s) => {
            if !write_escaped_bytes(out, s.0) {
                stats.invalid_utf8_fixed += 1;
            }
        }
        k => {
            let mut text = String::new();
            write_scalar(&mut text, k, Fmt::Json, stats);
            write_json(out, ValueRef::Str(RawStr(text.as_bytes())));
        }
    }
}

struct Frame {
    map: bool,
    remaining: u32,
    /// Index of the next child.
    idx: u32,
    /// Children written so far (removed ones excluded).
    kept: u32,
    /// Some removal path runs through this container.
    on_path: bool,
}

fn open(out: &mut String, map: bool, fmt: Fmt) {
    out.push_str(match (fmt, map) {
        (Fmt::Json, true) => "{",
        (Fmt::Json, false) => "[",
        (Fmt::Kv, true) => "\"map[",
        (Fmt::Kv, false) => "\"[",
    });
}

fn push_frame(
    out: &mut String,
    stack: &mut Vec<Frame>,
    map: bool,
    n: u32,
    on_path: bool,
    fmt: Fmt,
) {
    open(out, map, fmt);
    stack.push(Frame {
        map,
        remaining: n,
        idx: 0,
        kept: 0,
        on_path,
    });
}

fn close(out: &mut String, map: bool, fmt: Fmt) {
    out.push_str(match (fmt, map) {
        (Fmt::Json, true) => "}",
        (Fmt::Json, false) => "]",
        (Fmt::Kv, _) => "]\"",
    });
}

/// Renders the container whose msgpack bytes are `bytes`, leaving out the
/// entries at `removals` (index paths relative to it), in one linear pass
/// with an explicit stack.
fn render_container(
    out: &mut String,
    bytes: &[u8],
    removals: &[&[u32]],
    fmt: Fmt,
    stats: &mut MapStats,
) {
    let _ = render_container_inner(out, bytes, removals, fmt, stats);
}

fn render_container_inner(
    out: &mut String,
    bytes: &[u8],
    removals: &[&[u32]],
    fmt: Fmt,
    stats: &mut MapStats,
) -> Option<()> {
    let mut c = Tokens::new(bytes);
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<u32> = Vec::new();
    match c.next_token()? {
        Token::Scalar(v) => {
            write_scalar(out, v, fmt, stats);
            return Some(());
        }
        Token::Map(n) => push_frame(out, &mut stack, true, n, !removals.is_empty(), fmt),
        Token::Array(n) => push_frame(out, &mut stack, false, n, !removals.is_empty(), fmt),
    }
    while let Some(top) = stack.last_mut() {
        if top.remaining == 0 {
            close(out, top.map, fmt);
            stack.pop();
            if !stack.is_empty() {
                path.pop();
            }
            continue;
        }
        top.remaining -= 1;
        let i = top.idx;
        top.idx += 1;
        let (map, on_path) = (top.map, top.on_path);
        if on_path
            && removals.iter().any(|r| {
                // Cheapest test first: the slice compare is a memcmp call.
                r.len() == path.len() + 1 && r[path.len()] == i && r[..path.len()] == path[..]
            })
        {
            if map {
                c.skip_value()?;
            }
            c.skip_value()?;
            continue;
        }
        let sep = top.kept > 0;
        top.kept += 1;
        if map {
            let key = c.next_token()?;
            match (fmt, key) {
                (Fmt::Json, Token::Scalar(k)) => {
                    if sep {
                        out.push(',');
                    }
                    write_json_key(out, k, stats);
                }
                (Fmt::Json, tok) => {
                    if sep {
                        out.push(',');
                    }
                    out.push_str(if matches!(tok, Token::Map(_)) {
                        "\"<map>\""
                    } else {
                        "\"<array>\""
                    });
                    c.skip_contents(&tok)?;
                }
                (Fmt::Kv, Token::Scalar(ValueRef::Str(s))) => {
                    if sep {
                        out.push(' ');
                    }
                    push_lossy(out, s.0, stats);
                }
                (Fmt::Kv, tok) => {
                    // Fluent Bit skips entries whose key is not a string.
                    c.skip_contents(&tok)?;
                    c.skip_value()?;
                    continue;
                }
            }
            out.push(':');
        } else if sep {
            out.push(if fmt == Fmt::Json { ',' } else { ' ' });
        }
        match c.next_token()? {
            Token::Scalar(v) => write_scalar(out, v, fmt, stats),
            tok => {
                let child_on_path = on_path
                    && removals.iter().any(|r| {
                        r.len() > path.len() + 1
                            && r[..path.len()] == path[..]
                            && r[path.len()] == i
                    });
                path.push(i);
                match tok {
                    Token::Map(n) => push_frame(out, &mut stack, true, n, child_on_path, fmt),
                    Token::Array(n) => push_frame(out, &mut stack, false, n, child_on_path, fmt),
                    Token::Scalar(_) => {}
                }
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_bit_chunk::Chunk;
    use rmpv::Value as V;

    fn encode(body: &V) -> Vec<u8> {
        let ev = V::Array(vec![
            V::Array(vec![
                V::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 0]),
                V::Map(vec![]),
            ]),
            body.clone(),
        ]);
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &ev).unwrap();
        b
    }

    fn body(bytes: &[u8]) -> MapView<'_> {
        Chunk::new(bytes)
            .records()
            .next()
            .unwrap()
            .unwrap()
            .event
            .body
    }

    fn m(pairs: Vec<(&str, V)>) -> V {
        V::Map(pairs.into_iter().map(|(k, v)| (V::from(k), v)).collect())
    }

    fn s(x: &str) -> V {
        V::from(x)
    }

    fn mapping(f: impl FnOnce(&mut MappingConfig)) -> Mapping {
        let mut c = MappingConfig::default();
        f(&mut c);
        Mapping::new(&c).unwrap()
    }

    fn err(f: impl FnOnce(&mut MappingConfig)) -> String {
        let mut c = MappingConfig::default();
        f(&mut c);
        Mapping::new(&c).unwrap_err().to_string()
    }

    fn run(mp: &Mapping, rec: &V) -> (SpooledEntry, MapStats) {
        run_tag(mp, "", rec)
    }

    fn invalid_utf8(mut bytes: Vec<u8>) -> Vec<u8> {
        let mut n = 0;
        for i in 0..bytes.len().saturating_sub(3) {
            if bytes[i..i + 4] == [0xa3, b'a', b'~', b'b'] {
                bytes[i + 2] = 0xff;
                n += 1;
            }
        }
        assert!(n > 0);
        bytes
    }

    fn run_bytes(mp: &Mapping, bytes: &[u8]) -> (SpooledEntry, MapStats) {
        let mut st = MapStats::default();
        let e = mp.map(42, body(bytes), &mut st);
        (e, st)
    }

    fn run_tag(mp: &Mapping, tag: &str, rec: &V) -> (SpooledEntry, MapStats) {
        let bytes = encode(rec);
        let mut st = MapStats::default();
        let e = mp.map_tagged(tag, 42, body(&bytes), &mut st);
        (e, st)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn some(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn no_labels_gives_job_fluent_bit_and_json_line() {
        let mp = mapping(|_| {});
        assert!(!mp.has_labels());
        let (e, st) = run(&mp, &m(vec![("key", s("value"))]));
        assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
        assert_eq!(e.line, r#"{"key":"value"}"#);
        assert_eq!(e.ts_ns, 42);
        assert_eq!(e.tenant, None);
        assert!(e.structured_metadata.is_empty());
        assert_eq!(st, MapStats::default());
    }

    #[test]
    fn static_labels_are_sorted_and_leave_the_line_alone() {
        let mp = mapping(|c| c.labels = some("b=2, a = 1 ,c=x=y"));
        assert!(mp.has_labels());
        let (e, _) = run(&mp, &m(vec![("a", s("v")), ("b", s("w"))]));
        assert_eq!(e.labels, labels(&[("a", "1"), ("b", "2"), ("c", "x=y")]));
        assert_eq!(e.line, r#"{"a":"v","b":"w"}"#);
    }

    #[test]
    fn accessor_labels_name_and_remove_like_the_builtin() {
        // tests/runtime/out_loki.c flb_test_label_keys: $data['l_key'] -> data_l_key.
        let rec = m(vec![
            ("key", s("value")),
            ("foo", s("bar")),
            ("data", m(vec![("l_key", s("test"))])),
        ]);
        let mp = mapping(|c| c.label_keys = some("$data['l_key']"));
        let (e, _) = run(&mp, &rec);
        assert_eq!(e.labels, labels(&[("data_l_key", "test")]));
        assert_eq!(e.line, r#"{"key":"value","foo":"bar","data":{}}"#);

        let mp = mapping(|c| c.labels = some("$data['l_key'], who=$foo, env=prod"));
        let (e, _) = run(&mp, &rec);
        assert_eq!(
            e.labels,
            labels(&[("data_l_key", "test"), ("env", "prod"), ("who", "bar")])
        );
        assert_eq!(e.line, r#"{"key":"value","data":{}}"#);
    }

    #[test]
    fn nested_accessors_with_indexes_and_quotes() {
        let rec = m(vec![
            (
                "kubernetes",
                m(vec![
                    ("labels", m(vec![("app", s("web")), ("it's", s("q"))])),
                    ("ids", V::Array(vec![s("zero"), s("one")])),
                ]),
            ),
            ("log", s("hello")),
        ]);
        let mp = mapping(|c| {
            c.labels = some("app=$kubernetes['labels']['app'], $kubernetes['ids'][1]");
            c.label_keys = some("$kubernetes['labels']['it''s']");
        });
        let (e, st) = run(&mp, &rec);
        assert_eq!(
            e.labels,
            labels(&[
                ("app", "web"),
                ("kubernetes_ids_1", "one"),
                ("kubernetes_labels_it_s", "q")
            ])
        );
        assert_eq!(st.label_names_sanitised, 1, "it's -> it_s");
        assert_eq!(
            e.line,
            r#"{"kubernetes":{"labels":{},"ids":["zero"]},"log":"hello"}"#
        );
    }

    #[test]
    fn missing_targets_give_no_label_and_then_the_default() {
        let mp = mapping(|c| c.labels = some("$nope, x=$a['b']['c'], y=$arr[5]"));
        let (e, st) = run(
            &mp,
            &m(vec![
                ("a", m(vec![("b", s("not a map"))])),
                ("arr", V::Array(vec![])),
            ]),
        );
        assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
        assert_eq!(st, MapStats::default());
        assert_eq!(e.line, r#"{"a":{"b":"not a map"},"arr":[]}"#);
    }

    #[test]
    fn label_value_types_follow_flb_ra_translate() {
        let rec = m(vec![
            ("s", s("str")),
            ("u", V::from(7u64)),
            ("i", V::from(-3i64)),
            ("f", V::F64(1.5)),
            ("t", V::Boolean(true)),
            ("n", V::Nil),
            ("m", m(vec![("k", s("v")), ("z", V::from(1))])),
            ("a", V::Array(vec![V::from(1)])),
            ("b", V::Binary(vec![0xde, 0xad])),
            ("e", s("")),
            ("x", V::Ext(5, vec![1])),
        ]);
        let mp = mapping(|c| {
            c.label_keys = some("$s,$u,$i,$f,$t,$n,$m,$a,$b,$e,$x");
        });
        let (e, _) = run(&mp, &rec);
        assert_eq!(
            e.labels,
            labels(&[
                ("b", "dead"),
                ("f", "1.500000"),
                ("i", "-3"),
                ("m", r#"{"k":"v","z":1}"#),
                ("n", "null"),
                ("s", "str"),
                ("t", "true"),
                ("u", "7"),
            ])
        );
        // Every key read for a label leaves the line, found or not usable.
        assert_eq!(e.line, "{}");
    }

    #[test]
    fn templates_with_literal_text_and_tag() {
        let mp = mapping(|c| {
            c.labels = some("job=$TAG, part=$TAG[1], host=$h.local, $svc");
        });
        assert!(mp.uses_tag());
        let rec = m(vec![
            ("h", s("box")),
            ("svc", s("api")),
            ("keep", V::from(1)),
        ]);
        let (e, _) = run_tag(&mp, "app.web", &rec);
        assert_eq!(
            e.labels,
            labels(&[
                ("host", "box.local"),
                ("job", "app.web"),
                ("part", "web"),
                ("svc", "api")
            ])
        );
        assert_eq!(e.line, r#"{"keep":1}"#);
        assert!(!mapping(|c| c.labels = some("a=$b")).uses_tag());
    }

    #[test]
    fn label_names_are_sanitised_and_counted() {
        let mp = mapping(|c| c.labels = some("my-app=x, 9lives=y, ok=z, $a['b.c']"));
        let (e, st) = run(&mp, &m(vec![("a", m(vec![("b.c", s("w"))]))]));
        assert_eq!(
            e.labels,
            labels(&[
                ("_9lives", "y"),
                ("a_b_c", "w"),
                ("my_app", "x"),
                ("ok", "z")
            ])
        );
        assert_eq!(st.label_names_sanitised, 3);
        for (k, _) in &e.labels {
            assert!(is_valid_label_name(k), "{k}");
        }
    }

    #[test]
    fn long_label_values_are_cut_on_a_char_boundary() {
        let long = format!("a{}", "é".repeat(2000)); // 4001 bytes
        let mp = mapping(|c| c.label_keys = some("$v, $w"));
        let (e, st) = run(&mp, &m(vec![("v", s(&long)), ("w", s(&"x".repeat(2048)))]));
        let v = &e.labels.iter().find(|l| l.0 == "v").unwrap().1;
        assert_eq!(v.len(), 2047);
        assert!(long.starts_with(v.as_str()));
        let w = &e.labels.iter().find(|l| l.0 == "w").unwrap().1;
        assert_eq!(w.len(), 2048, "exactly the limit is kept");
        assert_eq!(st.label_values_truncated, 1);
    }

    /// OTLP logs keep their ids in the event metadata: `$trace_id` / `$span_id` read
    /// them (as hex) when the body has none; the body wins when it has one.
    #[test]
    fn trace_and_span_id_metadata_fall_back_to_the_otlp_ids() {
        let mp = mapping(|c| {
            c.structured_metadata = some("trace_id=$trace_id, span_id=$span_id, t=$trace_id_x")
        });
        let meta = rmpv::Value::Map(vec![(
            "otlp".into(),
            rmpv::Value::Map(vec![
                ("trace_id".into(), rmpv::Value::Binary((1..=16).collect())),
                ("span_id".into(), rmpv::Value::Binary(vec![0; 8])),
            ]),
        )]);
        // an event whose body is the metadata map, to get a view of it
        let mb = encode(&meta);
        let encode_with = |rec: &V| {
            let bytes = encode(rec);
            let mut out = Vec::new();
            let mut st = MapStats::default();
            mp.encode_event(
                "t",
                42,
                body(&bytes),
                body(&mb),
                &mut st,
                &mut Scratch::default(),
                &mut out,
            );
            SpooledEntry::decode(0, &out).unwrap()
        };
        let e = encode_with(&m(vec![("msg", s("x"))]));
        // the all-zero span id is no id
        assert_eq!(
            e.structured_metadata,
            vec![(
                "trace_id".to_string(),
                "0102030405060708090a0b0c0d0e0f10".to_string()
            )]
        );
        let e = encode_with(&m(vec![("trace_id", s("abc"))]));
        assert_eq!(
            e.structured_metadata,
            vec![("trace_id".to_string(), "abc".to_string())]
        );
        // without metadata, nothing
        let (e, _) = run(&mp, &m(vec![("msg", s("x"))]));
        assert!(e.structured_metadata.is_empty());
    }

    #[test]
    fn duplicate_label_names_last_with_a_value_wins() {
        let mp = mapping(|c| {
            c.labels = some("env=static, env=$e");
            c.label_keys = some("$x");
        });
        let (e, _) = run(&mp, &m(vec![("e", s("dyn"))]));
        assert_eq!(e.labels, labels(&[("env", "dyn")]));
        let (e, _) = run(&mp, &m(vec![("other", s("z"))]));
        assert_eq!(e.labels, labels(&[("env", "static")]));
    }

    #[test]
    fn trace_and_span_ids_are_refused_as_labels() {
        for (labels_v, label_keys_v, what) in [
            (Some("$trace_id"), None, "trace_id"),
            (None, Some("$span_id"), "span_id"),
            (Some("TraceID=$x"), None, "TraceID"),
            (Some("tid=$trace_id"), None, "trace_id"),
            (Some("$otel['SpanId']"), None, "SpanId"),
            (Some("$otel['spanid']"), None, "spanid"),
        ] {
            let msg = err(|c| {
                c.labels = labels_v.map(str::to_string);
                c.label_keys = label_keys_v.map(str::to_string);
            });
            let key = if labels_v.is_some() {
                "labels:"
            } else {
                "label_keys:"
            };
            assert!(msg.starts_with(key), "{msg}");
            assert!(msg.contains(labels_v.or(label_keys_v).unwrap()), "{msg}");
            assert!(msg.contains(what), "{msg}");
            assert!(msg.contains("structured_metadata"), "{msg}");
        }
        // Neighbours are fine.
        mapping(|c| c.labels = some("trace=$t, $trace_ids, x=$trace_idx"));
        mapping(|c| c.structured_metadata = some("$trace_id, span_id=$s"));
    }

    #[test]
    fn config_errors_name_key_and_text() {
        let e = err(|c| c.label_keys = some("foo"));
        assert!(
            e.contains("label_keys") && e.contains("'foo'") && e.contains("'$'"),
            "{e}"
        );
        let e = err(|c| c.labels = some("a=b, novalue"));
        assert!(e.contains("labels") && e.contains("'novalue'"), "{e}");
        let e = err(|c| c.labels = some("a="));
        assert!(e.contains("labels") && e.contains("'a='"), "{e}");
        let e = err(|c| c.labels = some("=b"));
        assert!(e.contains("'=b'"), "{e}");
        let e = err(|c| c.labels = some("$1abc"));
        assert!(e.contains("$1abc") && e.contains("digit"), "{e}");
        let e = err(|c| c.labels = some("$a['x"));
        assert!(e.contains("unterminated") && e.contains("$a['x"), "{e}");
        let e = err(|c| c.labels = some("$a[x]"));
        assert!(e.contains("$a[x]"), "{e}");
        let e = err(|c| c.labels = some("$a['x'"));
        assert!(e.contains("missing ']'"), "{e}");
        let e = err(|c| c.labels = some("$a[01]"));
        assert!(e.contains("01"), "{e}");
        let e = err(|c| c.labels = some("$TAG"));
        assert!(e.contains("$TAG") && e.contains("name=$TAG"), "{e}");
        let e = err(|c| c.structured_metadata = some("k=$"));
        assert!(
            e.starts_with("structured_metadata") && e.contains("k=$"),
            "{e}"
        );
        let e = err(|c| c.remove_keys = some("$TAG"));
        assert!(e.starts_with("remove_keys") && e.contains("$TAG"), "{e}");
        let e = err(|c| c.line_format = some("xml"));
        assert_eq!(
            e,
            "invalid 'line_format' value 'xml': expected json or key_value"
        );
        let e = err(|c| c.drop_single_key = some("maybe"));
        assert!(
            e.contains("'drop_single_key'") && e.contains("'maybe'"),
            "{e}"
        );
        let e = err(|c| c.tenant_id_key = some("$TAG"));
        assert!(e.starts_with("tenant_id_key"), "{e}");
    }

    #[test]
    fn accepted_spellings() {
        for v in ["json", "JSON", " Json "] {
            assert_eq!(
                mapping(|c| c.line_format = some(v)).line_format,
                LineFormat::Json
            );
        }
        assert_eq!(
            mapping(|c| c.line_format = some("Key_Value")).line_format,
            LineFormat::KeyValue
        );
        for (v, want) in [
            ("on", DropSingleKey::On),
            ("true", DropSingleKey::On),
            ("Yes", DropSingleKey::On),
            ("off", DropSingleKey::Off),
            ("false", DropSingleKey::Off),
            ("no", DropSingleKey::Off),
            ("RAW", DropSingleKey::Raw),
        ] {
            assert_eq!(
                mapping(|c| c.drop_single_key = some(v)).drop_single_key,
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn structured_metadata_forms_values_and_removal() {
        let rec = m(vec![
            ("msg", s("hi")),
            ("trace_id", s("abc")),
            ("otel", m(vec![("span_id", s("def")), ("keep", V::from(1))])),
            ("f", V::F64(1.5)),
            ("arr", V::Array(vec![V::from(1), s("x")])),
            ("obj", m(vec![("a", V::Boolean(false))])),
            ("empty", s("")),
            ("ext", V::Ext(1, vec![0])),
            ("n", V::from(12)),
        ]);
        let mp = mapping(|c| {
            c.structured_metadata = some(
                "trace_id=$trace_id, $otel['span_id'], env=prod, f=$f, $arr, $obj, \
                 e=$empty, x=$ext, missing=$nope, n=$n",
            )
        });
        let (e, st) = run(&mp, &rec);
        assert_eq!(
            e.structured_metadata,
            labels(&[
                ("trace_id", "abc"),
                ("otel_span_id", "def"),
                ("env", "prod"),
                ("f", "1.5"),
                ("arr", r#"[1,"x"]"#),
                ("obj", r#"{"a":false}"#),
                ("n", "12"),
            ])
        );
        assert_eq!(st.metadata_dropped, 2, "empty and ext");
        assert_eq!(e.line, r#"{"msg":"hi","otel":{"keep":1}}"#);
        assert_eq!(e.labels, labels(&[("job", "fluent-bit")]));
    }

    #[test]
    fn structured_metadata_duplicate_names_last_wins() {
        let mp = mapping(|c| c.structured_metadata = some("k=one, k=$v, j=x"));
        let (e, st) = run(&mp, &m(vec![("v", s("two"))]));
        assert_eq!(e.structured_metadata, labels(&[("k", "two"), ("j", "x")]));
        assert_eq!(st.metadata_dropped, 1);
        let (e, st) = run(&mp, &m(vec![]));
        assert_eq!(e.structured_metadata, labels(&[("k", "one"), ("j", "x")]));
        assert_eq!(st.metadata_dropped, 0);
    }

    #[test]
    fn remove_keys_like_the_builtin() {
        // flb_test_remove_keys: "foo, $data['l_key']".
        let rec = m(vec![
            ("key", s("value")),
            ("foo", s("bar")),
            ("data", m(vec![("l_key", s("test"))])),
        ]);
        let mp = mapping(|c| c.remove_keys = some("foo, $data['l_key']"));
        let (e, _) = run(&mp, &rec);
        assert_eq!(e.line, r#"{"key":"value","data":{}}"#);
        // flb_test_remove_map: a whole nested map.
        let mp = mapping(|c| c.remove_keys = some("key"));
        let (e, _) = run(&mp, &m(vec![("key", m(vec![("nest", s("value_nested"))]))]));
        assert_eq!(e.line, "{}");
    }

    #[test]
    fn remove_keys_duplicates_arrays_and_dotted_names() {
        // A repeated key: the accessor (and so the removal) is the last one.
        let rec = V::Map(vec![
            (s("a"), V::from(1)),
            (s("b"), V::from(2)),
            (s("a"), V::from(3)),
        ]);
        let mp = mapping(|c| c.remove_keys = some("a"));
        assert_eq!(run(&mp, &rec).0.line, r#"{"a":1,"b":2}"#);
        let mp = mapping(|c| c.label_keys = some("$a"));
        assert_eq!(run(&mp, &rec).0.labels, labels(&[("a", "3")]));

        let mp = mapping(|c| c.remove_keys = some("$arr[1]"));
        let rec = m(vec![(
            "arr",
            V::Array(vec![V::from(0), V::from(1), V::from(2)]),
        )]);
        assert_eq!(run(&mp, &rec).0.line, r#"{"arr":[0,2]}"#);

        // As in Fluent Bit, an accessor ends at '.': `log.level` removes `log`.
        let mp = mapping(|c| c.remove_keys = some("log.level"));
        let rec = m(vec![("log", s("x")), ("log.level", s("y"))]);
        assert_eq!(run(&mp, &rec).0.line, r#"{"log.level":"y"}"#);
        // Quoted subkeys may hold dots.
        let mp = mapping(|c| c.remove_keys = some("$k['a.b']"));
        let rec = m(vec![("k", m(vec![("a.b", V::from(1)), ("c", V::from(2))]))]);
        assert_eq!(run(&mp, &rec).0.line, r#"{"k":{"c":2}}"#);
    }

    #[test]
    fn tenant_id_key_does_not_leave_the_line() {
        let mp = mapping(|c| {
            c.tenant_id = some("default");
            c.tenant_id_key = some("tenant");
        });
        let (e, _) = run(&mp, &m(vec![("tenant", s("t1")), ("x", V::from(1))]));
        assert_eq!(e.tenant.as_deref(), Some("t1"));
        assert_eq!(e.line, r#"{"tenant":"t1","x":1}"#);
        for rec in [
            m(vec![("tenant", s(""))]),
            m(vec![("tenant", V::from(5))]),
            m(vec![("other", s("t2"))]),
        ] {
            assert_eq!(run(&mp, &rec).0.tenant.as_deref(), Some("default"), "{rec}");
        }
        let mp = mapping(|c| c.tenant_id_key = some("$org['id']"));
        let (e, _) = run(&mp, &m(vec![("org", m(vec![("id", s("t3"))]))]));
        assert_eq!(e.tenant.as_deref(), Some("t3"));
        assert_eq!(run(&mp, &m(vec![])).0.tenant, None);
        let mp = mapping(|c| c.tenant_id = some("  "));
        assert_eq!(run(&mp, &m(vec![])).0.tenant, None);
    }

    #[test]
    fn key_value_lines() {
        // flb_test_line_format: key="value".
        let mp = mapping(|c| c.line_format = some("key_value"));
        assert_eq!(
            run(&mp, &m(vec![("key", s("value"))])).0.line,
            r#"key="value""#
        );
        let rec = V::Map(vec![
            (s("s"), s("a \"q\"")),
            (V::from(1), s("skipped")),
            (s("u"), V::from(1)),
            (s("i"), V::from(-2)),
            (s("f"), V::F64(1.0)),
            (s("g"), V::F64(1.3)),
            (s("t"), V::Boolean(true)),
            (s("n"), V::Nil),
            (
                s("arr"),
                V::Array(vec![V::from(1), s("x"), V::Array(vec![])]),
            ),
            (
                s("m"),
                V::Map(vec![
                    (V::from(9), s("nonstring key")),
                    (s("a"), s("b")),
                    (s("c"), m(vec![("d", V::F64(0.5))])),
                ]),
            ),
            (s("bin"), V::Binary(vec![1])),
        ]);
        assert_eq!(
            run(&mp, &rec).0.line,
            r#"s="a "q"" u=1 i=-2 f=1.0 g=1.3 t=true n=null arr="[1 "x" "[]"]" m="map[ a:"b" c:"map[d:0.5]"]" bin="#
        );
        // Removal applies before formatting; nested separators count kept entries.
        let mp = mapping(|c| {
            c.line_format = some("key_value");
            c.remove_keys = some("$m['a'], x");
        });
        let rec = m(vec![
            ("x", V::from(1)),
            ("m", m(vec![("a", V::from(1)), ("b", V::from(2))])),
            ("y", V::from(3)),
        ]);
        assert_eq!(run(&mp, &rec).0.line, r#"m="map[b:2]" y=3"#);
        let mp = mapping(|c| c.line_format = some("key_value"));
        assert_eq!(run(&mp, &m(vec![])).0.line, "");
    }

    #[test]
    fn drop_single_key_json() {
        let one = m(vec![("key", s("value"))]);
        let on = mapping(|c| c.drop_single_key = some("on"));
        let raw = mapping(|c| c.drop_single_key = some("raw"));
        let off = mapping(|c| c.drop_single_key = some("off"));
        assert_eq!(run(&on, &one).0.line, r#""value""#);
        assert_eq!(run(&raw, &one).0.line, "value");
        assert_eq!(run(&off, &one).0.line, r#"{"key":"value"}"#);
        let num = m(vec![("n", V::from(5))]);
        assert_eq!(run(&on, &num).0.line, "5");
        assert_eq!(run(&raw, &num).0.line, "5");
        let map = m(vec![("m", m(vec![("a", s("b"))]))]);
        assert_eq!(run(&raw, &map).0.line, r#"{"a":"b"}"#);
        let two = m(vec![("a", s("x")), ("b", s("y"))]);
        assert_eq!(run(&raw, &two).0.line, r#"{"a":"x","b":"y"}"#);
        // The count is taken after removal (label keys included).
        let mp = mapping(|c| {
            c.drop_single_key = some("raw");
            c.label_keys = some("$b");
            c.remove_keys = some("$a['gone']");
        });
        let rec = m(vec![
            ("a", m(vec![("gone", V::from(1)), ("k", V::from(2))])),
            ("b", s("y")),
        ]);
        let (e, _) = run(&mp, &rec);
        assert_eq!(e.line, r#"{"k":2}"#);
        assert_eq!(e.labels, labels(&[("b", "y")]));
        let mp = mapping(|c| {
            c.drop_single_key = some("raw");
            c.label_keys = some("$b");
        });
        assert_eq!(run(&mp, &two).0.line, "x");
    }

    #[test]
    fn drop_single_key_key_value() {
        let on = mapping(|c| {
            c.drop_single_key = some("on");
            c.line_format = some("key_value");
        });
        assert_eq!(run(&on, &m(vec![("key", s("value"))])).0.line, "value");
        assert_eq!(run(&on, &m(vec![("f", V::F64(2.0))])).0.line, "2.0");
        assert_eq!(
            run(&on, &m(vec![("m", m(vec![("a", s("b"))]))])).0.line,
            r#""map[a:"b"]""#
        );
        assert_eq!(
            run(&on, &m(vec![("a", s("x")), ("b", s("y"))])).0.line,
            r#"a="x" b="y""#
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        // Every str "a~b" becomes "a\xffb" in the encoded record.
        let bad = s("a~b");
        let rec = V::Map(vec![
            (bad.clone(), bad.clone()),
            (s("lbl"), bad.clone()),
            (s("md"), bad.clone()),
            (s("ten"), bad.clone()),
            (s("bin"), V::Binary(vec![0xc3])),
        ]);
        let mp = mapping(|c| {
            c.labels = some("l=$lbl");
            c.structured_metadata = some("md=$md");
            c.tenant_id_key = some("ten");
        });
        let (e, st) = run_bytes(&mp, &invalid_utf8(encode(&rec)));
        assert_eq!(e.labels, labels(&[("l", "a\u{fffd}b")]));
        assert_eq!(e.structured_metadata, labels(&[("md", "a\u{fffd}b")]));
        assert_eq!(e.tenant.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(
            e.line,
            "{\"a\u{fffd}b\":\"a\u{fffd}b\",\"ten\":\"a\u{fffd}b\",\"bin\":\"\u{fffd}\"}"
        );
        // key + value + tenant value in the line, the binary, label, metadata, tenant.
        assert_eq!(st.invalid_utf8_fixed, 7);

        let kv = mapping(|c| c.line_format = some("key_value"));
        let (e, st) = run_bytes(
            &kv,
            &invalid_utf8(encode(&V::Map(vec![(bad.clone(), bad)]))),
        );
        assert_eq!(e.line, "a\u{fffd}b=\"a\u{fffd}b\"");
        assert_eq!(st.invalid_utf8_fixed, 2);
    }

    #[test]
    fn json_line_matches_json_rs_for_odd_keys_and_values() {
        let rec = V::Map(vec![
            (V::from(1), s("int key")),
            (V::Array(vec![]), s("array key")),
            (s("f"), V::F64(0.1)),
            (s("nl"), s("a\nb\"c")),
            (s("x"), V::Ext(3, vec![1])),
        ]);
        let mp = mapping(|_| {});
        let (e, _) = run(&mp, &rec);
        let bytes = encode(&rec);
        assert_eq!(e.line, body(&bytes).to_json());
        assert_eq!(
            e.line,
            r#"{"1":"int key","<array>":"array key","f":0.1,"nl":"a\nb\"c","x":null}"#
        );
    }

    #[test]
    fn c_float_formats() {
        for (f, want) in [
            (1.3, "1.3"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e20, "1e+20"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789012345680.0, "1.234567890123457e+17"),
            (1e16, "1e+16"),
            (999999999999999.9, "999999999999999.9"),
            (-2.25e-7, "-2.25e-07"),
            (0.0, "0"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(c_g16(f), want, "{f:?}");
        }
        assert_eq!(kv_float(2.0), "2.0");
        assert_eq!(kv_float(-0.0), "-0.0");
        assert_eq!(kv_float(1e18), "1000000000000000000.0");
        assert_eq!(kv_float(1e300), "1e+300");
        assert_eq!(kv_float(9.223_372_036_854_776e18), "9.223372036854776e+18");
        assert_eq!(kv_float(0.5), "0.5");
        assert_eq!(c_fixed6(1.5), "1.500000");
        assert_eq!(c_fixed6(-0.0000004), "-0.000000");
        assert_eq!(c_fixed6(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn mapping_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Mapping>();
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use fluent_bit_chunk::Chunk;
    use proptest::prelude::*;
    use rmpv::Value as V;
    use std::collections::BTreeMap;

    fn leaf() -> impl Strategy<Value = V> {
        prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::Boolean),
            any::<i64>().prop_map(V::from),
            any::<u64>().prop_map(V::from),
            (-1e6f64..1e6).prop_map(V::F64),
            ".{0,6}".prop_map(|s| V::from(s.as_str())),
        ]
    }

    fn value() -> impl Strategy<Value = V> {
        leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
                proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4).prop_map(|m| {
                    V::Map(
                        m.into_iter()
                            .map(|(k, v)| (V::from(k.as_str()), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn record() -> impl Strategy<Value = BTreeMap<String, V>> {
        proptest::collection::btree_map("[a-z]{1,3}", value(), 0..6)
    }

    fn encode(rec: &BTreeMap<String, V>) -> Vec<u8> {
        let body = V::Map(
            rec.iter()
                .map(|(k, v)| (V::from(k.as_str()), v.clone()))
                .collect(),
        );
        let ev = V::Array(vec![
            V::Array(vec![V::Ext(0, vec![0; 8]), V::Map(vec![])]),
            body,
        ]);
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &ev).unwrap();
        b
    }

    proptest! {
        #[test]
        fn json_line_is_the_record_minus_removed_keys(rec in record(), pick in any::<prop::sample::Index>()) {
            let keys: Vec<&String> = rec.keys().collect();
            let removed = (!keys.is_empty()).then(|| keys[pick.index(keys.len())].clone());
            let cfg = MappingConfig { remove_keys: removed.clone(), ..Default::default() };
            let mp = Mapping::new(&cfg).unwrap();
            let bytes = encode(&rec);
            let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
            let mut st = MapStats::default();
            let e = mp.map(1, body, &mut st);
            let got: serde_json::Value = serde_json::from_str(&e.line).unwrap();
            let mut want: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
            if let Some(k) = &removed {
                want.as_object_mut().unwrap().remove(k);
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(st, MapStats::default());
        }

        /// Flush's direct encoding, with one scratch reused across records (stale values
        /// from a longer record must never leak into the next), writes exactly the
        /// payload of the entry `map_tagged` builds.
        #[test]
        fn direct_encoding_is_the_entrys(recs in proptest::collection::vec(
                                             proptest::collection::btree_map("[a-d]", value(), 0..5), 1..6),
                                         cfg_pick in 0usize..4) {
            let cfg = [
                MappingConfig::default(),
                MappingConfig {
                    labels: Some("job=x, $a, b=$b, b=$c, app=$a['b']".into()),
                    structured_metadata: Some("m=$a, n=$b, m=$c, z=static".into()),
                    tenant_id: Some("t0".into()),
                    tenant_id_key: Some("$c".into()),
                    remove_keys: Some("$b".into()),
                    ..Default::default()
                },
                MappingConfig {
                    label_keys: Some("$a,$b,$c".into()),
                    line_format: Some("key_value".into()),
                    drop_single_key: Some("raw".into()),
                    ..Default::default()
                },
                MappingConfig {
                    labels: Some("$tag, $a".into()),
                    structured_metadata: Some("$b, $c".into()),
                    drop_single_key: Some("on".into()),
                    ..Default::default()
                },
            ][cfg_pick].clone();
            let mp = Mapping::new(&cfg).unwrap();
            let mut scratch = Scratch::default();
            for rec in &recs {
                let bytes = encode(rec);
                let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
                let (mut s1, mut s2) = (MapStats::default(), MapStats::default());
                let want = mp.map_tagged("a.b", -7, body, &mut s1).encode();
                let mut got = vec![0xAA];
                mp.encode_tagged("a.b", -7, body, &mut s2, &mut scratch, &mut got);
                prop_assert_eq!(&got[1..], &want[..]);
                prop_assert_eq!(s1, s2);
            }
        }

        #[test]
        fn labels_are_always_loki_valid(rec in record(), keys in proptest::collection::vec("[a-z]{1,3}", 0..4)) {
            let cfg = MappingConfig {
                label_keys: Some(keys.iter().map(|k| format!("${k}")).collect::<Vec<_>>().join(",")),
                line_format: Some("key_value".into()),
                ..Default::default()
            };
            let mp = Mapping::new(&cfg).unwrap();
            let bytes = encode(&rec);
            let body = Chunk::new(&bytes).records().next().unwrap().unwrap().event.body;
            let e = mp.map(1, body, &mut MapStats::default());
            prop_assert!(!e.labels.is_empty());
            for w in e.labels.windows(2) {
                prop_assert!(w[0].0 < w[1].0, "sorted, unique: {:?}", e.labels);
            }
            for (k, v) in &e.labels {
                prop_assert!(is_valid_label_name(k));
                prop_assert!(!v.is_empty() && v.len() <= MAX_LABEL_VALUE_BYTES);
            }
            for k in &keys {
                if rec.contains_key(k) {
                    prop_assert!(!e.line.split(' ').any(|kv| kv.starts_with(&format!("{k}="))),
                        "label key {} left in line {}", k, e.line);
                }
            }
        }
    }
}
