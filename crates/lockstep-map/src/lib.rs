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
//! Modules, one concern each: this file holds the configuration and its compilation
//! ([`MappingConfig`] → [`Mapping`]); `accessor` the record accessors and value templates
//! (parsed, then read from a record's top level; it imports none of the others); `line`
//! the rendering (the line as `json` or `key_value`, `drop_single_key`; a template's
//! text for a label or metadata); `labels` the labels and the tenant; `metadata` the
//! structured metadata (and the OTLP ids from the event metadata); `otlp` the records of
//! Fluent Bit's `opentelemetry` input mapped as Loki's own OTLP ingestion maps them
//! (the body as the line, resource attributes on Loki's index list as labels, the rest
//! as structured metadata under Loki's names; [`Mapping::encode_record`]); `payload` the
//! spool payload ([`Scratch`], `encode_tagged`, `map_tagged`, `encode_record`).
//!
//! Invariants: [`Mapping`] is immutable after [`Mapping::new`]; [`Mapping::map`]
//! never fails on record content and never recurses on the record's depth
//! (explicit stacks on the heap), so it is safe on Fluent Bit's 64 KiB flush
//! stack.

use lockstep_loki::{is_valid_label_name, sanitize_label_name};

/// Loki's default `max_label_value_length`, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 2048;

/// Loki's default `max_label_names_per_series`.
pub const MAX_LABELS: usize = 15;

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
    /// The `otlp_*` keys: how records of Fluent Bit's `opentelemetry` input are mapped.
    pub otlp: OtlpConfig,
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

use accessor::*;
use labels::*;

mod accessor;
mod labels;
mod line;
mod metadata;
mod otlp;
mod payload;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use otlp::{as_string as otlp_as_string, loki_name, OtlpConfig, DEFAULT_INDEX_LABELS};
pub use payload::Scratch;

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
    /// OTLP records mapped as Loki's OTLP ingestion (`None`: `otlp_mapping off`).
    otlp: Option<otlp::Otlp>,
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
            otlp: otlp::Otlp::new(&cfg.otlp)?,
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
}
