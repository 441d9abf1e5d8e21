//! Record accessors (`$key['sub'][0]`, `$TAG`, `$TAG[n]`) and the value templates built on
//! them: parsing them from the configuration, and reading them from a record's top level
//! ([`Top`], read once per record). Below the other modules: imports none of them.

use std::fmt::Write as _;

use fluent_bit_chunk::{MapView, ValueRef};

use crate::*;

/// One step of a record accessor path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(u32),
}

/// One piece of a value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    /// A record accessor: the top-level key then subkeys.
    Key(Vec<Step>),
    Tag,
    TagIndex(usize),
}

pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(crate) fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')
}

/// Parses one record accessor `$key['sub'][0]` (the grammar of Fluent Bit's
/// `ra.l`/`ra.y`: blanks between tokens are ignored, `''` in a quoted subkey
/// is a quote).
pub(crate) fn parse_accessor(
    meta: &str,
    key: &'static str,
    entry: &str,
) -> Result<Vec<Step>, MappingError> {
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
pub(crate) fn parse_template(
    s: &str,
    key: &'static str,
    entry: &str,
) -> Result<Vec<Part>, MappingError> {
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
pub(crate) fn normalized_name(parts: &[Part]) -> String {
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
/// The first accessor of a template, which Fluent Bit removes from the line.
pub(crate) fn first_accessor(parts: &[Part]) -> Option<&Vec<Step>> {
    match parts.first() {
        Some(Part::Key(steps)) => Some(steps),
        _ => None,
    }
}

/// Parses `labels` / `structured_metadata` entries (Fluent Bit's `parse_kv`)
/// The record's top level, read once: (position, key, value) of every string key.
pub(crate) struct Top<'a> {
    pub(crate) body: MapView<'a>,
    pub(crate) keys: Vec<(u32, &'a [u8], ValueRef<'a>)>,
}

impl<'a> Top<'a> {
    pub(crate) fn new(body: MapView<'a>) -> Self {
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
pub(crate) fn children<'r>(rel: &[&'r [u32]], i: u32) -> Vec<&'r [u32]> {
    rel.iter()
        .filter(|r| r.len() > 1 && r[0] == i)
        .map(|r| &r[1..])
        .collect()
}

/// Follows an accessor path: the last occurrence of a key in a map (as
/// Fluent Bit's `ra_key_val_id`), an index in an array. Returns the index
/// path and the value.
/// The value an accessor path names in the record, if any (no allocation).
pub(crate) fn lookup<'a>(top: &Top<'a>, path: &[Step]) -> Option<ValueRef<'a>> {
    walk(top, path, |_| {})
}

/// Walks an accessor path, telling `at` the index taken at each level (the map entry
/// or array item), and returns the value reached.
pub(crate) fn walk<'a>(
    top: &Top<'a>,
    path: &[Step],
    mut at: impl FnMut(u32),
) -> Option<ValueRef<'a>> {
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
