//! Structured metadata of an entry: the configured pairs per record (last of a name wins),
//! and the OTLP record's own trace/span id from the event metadata when `$trace_id` /
//! `$span_id` finds nothing in the body.

use std::fmt::Write as _;

use fluent_bit_chunk::{MapView, ValueRef};

use crate::accessor::*;
use crate::line::*;
use crate::payload::*;
use crate::*;

/// `trace_id` or `span_id` when a template is exactly `$trace_id` / `$span_id`.
pub(crate) fn otlp_id_key(parts: &[Part]) -> Option<&'static str> {
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
pub(crate) fn otlp_id_hex(meta: MapView<'_>, key: &str, out: &mut String) {
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

impl Mapping {
    pub(crate) fn metadata(
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
}
