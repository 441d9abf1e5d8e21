//! Labels and the tenant of an entry: refusing trace/span ids as labels at compile time,
//! and per record the label values (truncated, last of a name wins, `job="fluent-bit"` when
//! none) and the tenant (`tenant_id_key` > `tenant_id`).

use fluent_bit_chunk::ValueRef;
use lockstep_loki::sanitize_label_name;

use crate::accessor::*;
use crate::line::*;
use crate::payload::*;
use crate::*;

pub(crate) fn is_trace_name(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "trace_id" | "span_id" | "traceid" | "spanid"
    )
}

/// Refuses labels carrying trace or span ids.
pub(crate) fn check_label(key: &'static str, entry: &str, p: &Pair) -> Result<(), MappingError> {
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
    pub(crate) fn tenant(&self, top: &Top<'_>, stats: &mut MapStats, out: &mut String) -> bool {
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

    pub(crate) fn labels(&self, tag: &str, top: &Top<'_>, stats: &mut MapStats, sc: &mut Scratch) {
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
            truncate_label_value(value, stats);
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
}

/// Cuts a label value to Loki's [`MAX_LABEL_VALUE_BYTES`] on a char boundary, counted.
pub(crate) fn truncate_label_value(value: &mut String, stats: &mut MapStats) {
    if value.len() > MAX_LABEL_VALUE_BYTES {
        let mut cut = MAX_LABEL_VALUE_BYTES;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        stats.label_values_truncated += 1;
    }
}
