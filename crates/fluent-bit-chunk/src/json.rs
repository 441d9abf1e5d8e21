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

fn write_escaped(out: &mut String, s: &str) {
    out.push('"');
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
        ValueRef::Str(s) => write_escaped(out, &s.to_str_lossy()),
        ValueRef::Bin(b) => write_escaped(out, &String::from_utf8_lossy(b)),
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
