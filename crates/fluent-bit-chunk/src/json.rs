//! Writes decoded values as JSON text in one linear pass without recursion,
//! so a record of any nesting depth renders on Fluent Bit's small flush stack.
//!
//! Mapping: nil → `null`; booleans and integers as is; floats with Rust's
//! shortest round-trip form, always with a `.` or exponent (non-finite →
//! `null`); strings escaped (invalid
//! UTF-8 replaced by U+FFFD); binaries as strings of their bytes (lossy);
//! ext values → `null`; map keys: strings as is, scalars as their JSON text
//! in a string (`1` → `"1"`), containers as `"<map>"` / `"<array>"`.

#![deny(unsafe_code)]

use std::fmt::Write as _;

use crate::decode::{read_value, Head, MapView, Reader, ValueRef};

/// Writes `s` as a JSON string. Runs of bytes that need no escape are copied whole
/// (one record's line is mostly such runs; a char at a time was the flush path's
/// largest single cost).
pub fn write_escaped(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes end a run: `start..i` are char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", c);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes raw string bytes as a JSON string, invalid UTF-8 replaced by U+FFFD; returns
/// false when some was (checked once: valid text, the usual case, is not copied first).
pub fn write_escaped_bytes(out: &mut String, b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(s) => {
            write_escaped(out, s);
            true
        }
        Err(_) => {
            write_escaped(out, &String::from_utf8_lossy(b));
            false
        }
    }
}

fn write_float(out: &mut String, f: f64) {
    if f.is_finite() {
        // Debug keeps a float a float ("1.0", "1e100"), and is valid JSON.
        let _ = write!(out, "{f:?}");
    } else {
        out.push_str("null");
    }
}

/// Writes a scalar value (containers are written by `stream`).
fn write_scalar(out: &mut String, v: ValueRef<'_>) {
    match v {
        ValueRef::Nil | ValueRef::Ext(..) => out.push_str("null"),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueRef::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        ValueRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::F32(f) => write_float(out, f64::from(f)),
        ValueRef::F64(f) => write_float(out, f),
        ValueRef::Str(s) => {
            write_escaped_bytes(out, s.0);
        }
        ValueRef::Bin(b) => {
            write_escaped_bytes(out, b);
        }
        ValueRef::Map(m) => stream(out, m.raw()),
        ValueRef::Array(a) => stream(out, a.raw()),
    }
}

/// Writes the next item at `r`: a scalar, or the opening of a container
/// (pushing its frame). False only on malformed bytes, which validated views
/// never hold.
fn write_item(out: &mut String, r: &mut Reader<'_>, stack: &mut Vec<Frame>) -> bool {
    let mut probe = *r;
    let Ok((_, head)) = probe.head() else {
        return false;
    };
    match head {
        Head::Map(n) => {
            *r = probe;
            out.push('{');
            stack.push(Frame {
                map: true,
                remaining: n,
                first: true,
            });
        }
        Head::Array(n) => {
            *r = probe;
            out.push('[');
            stack.push(Frame {
                map: false,
                remaining: n,
                first: true,
            });
        }
        _ => match read_value(r) {
            Some(v) => write_scalar(out, v),
            None => return false,
        },
    }
    true
}

/// Writes a map key as a JSON string.
fn write_key(out: &mut String, r: &mut Reader<'_>) -> bool {
    let mut probe = *r;
    let Ok((_, head)) = probe.head() else {
        return false;
    };
    match head {
        Head::Map(_) | Head::Array(_) => {
            if r.skip_value().is_err() {
                return false;
            }
            out.push_str(if matches!(head, Head::Map(_)) {
                "\"<map>\""
            } else {
                "\"<array>\""
            });
        }
        _ => match read_value(r) {
            Some(ValueRef::Str(s)) => write_escaped(out, &s.to_str_lossy()),
            Some(v) => {
                let mut text = String::new();
                write_scalar(&mut text, v);
                write_escaped(out, &text);
            }
            None => return false,
        },
    }
    true
}

struct Frame {
    map: bool,
    remaining: u32,
    first: bool,
}

/// Renders the container whose msgpack bytes are `bytes` in one linear pass
/// with an explicit stack.
fn stream(out: &mut String, bytes: &[u8]) {
    let mut r = Reader::new(bytes);
    let mut stack: Vec<Frame> = Vec::new();
    if !write_item(out, &mut r, &mut stack) {
        return;
    }
    while let Some(top) = stack.last_mut() {
        if top.remaining == 0 {
            out.push(if top.map { '}' } else { ']' });
            stack.pop();
            continue;
        }
        top.remaining -= 1;
        if !top.first {
            out.push(',');
        }
        top.first = false;
        if top.map {
            if !write_key(out, &mut r) {
                return;
            }
            out.push(':');
        }
        if !write_item(out, &mut r, &mut stack) {
            return;
        }
    }
}

/// Appends `value` as JSON to `out`.
pub fn write_json(out: &mut String, value: ValueRef<'_>) {
    write_scalar(out, value);
}

/// `value` as a JSON string.
pub fn to_json_string(value: ValueRef<'_>) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

impl MapView<'_> {
    /// The map as a JSON object (see the [module docs](crate::json)).
    pub fn to_json(&self) -> String {
        to_json_string(ValueRef::Map(*self))
    }
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    /// The escaping as it was written first, a char at a time: the oracle.
    fn escaped_by_chars(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn escaping_by_runs_is_escaping_by_chars(s in r#"(\PC|[\x00-\x1f"\\é€😀]){0,40}"#) {
            let mut out = String::new();
            write_escaped(&mut out, &s);
            proptest::prop_assert_eq!(&out, &escaped_by_chars(&s));
            let back: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }

        #[test]
        fn invalid_utf8_is_replaced_and_reported(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)) {
            let mut out = String::new();
            let valid = write_escaped_bytes(&mut out, &b);
            proptest::prop_assert_eq!(valid, std::str::from_utf8(&b).is_ok());
            proptest::prop_assert_eq!(&out, &escaped_by_chars(&String::from_utf8_lossy(&b)));
        }
    }
}
