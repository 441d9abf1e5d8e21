//! Rendering: the line, the record minus removed keys as `json` or `key_value` (Fluent
//! Bit's formats, C's `%f` / `%.16g` floats), `drop_single_key`, without recursion on the
//! record's depth (explicit frames on the heap); and a value template's text for a label
//! or structured metadata (`translate`).

use std::fmt::Write as _;

use fluent_bit_chunk::decode::{RawStr, Token, Tokens};
use fluent_bit_chunk::json::{write_escaped_bytes, write_json};
use fluent_bit_chunk::ValueRef;

use crate::accessor::*;
use crate::*;

impl Mapping {
    /// The line: the record minus removed keys, in the configured format.
    pub(crate) fn line(&self, top: &Top<'_>, stats: &mut MapStats, out: &mut String) {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Fluent Bit's `flb_ra_translate`: floats `%f`, arrays give nothing.
    Label,
    /// This project's decision: numbers, booleans, maps and arrays as JSON.
    Metadata,
}

/// Appends the template's text; true when some accessor found its key.
pub(crate) fn translate(
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

pub(crate) fn value_text(
    out: &mut String,
    v: ValueRef<'_>,
    flavour: Flavour,
    stats: &mut MapStats,
) {
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

pub(crate) fn push_lossy(out: &mut String, b: &[u8], stats: &mut MapStats) {
    match std::str::from_utf8(b) {
        Ok(s) => out.push_str(s),
        Err(_) => {
            stats.invalid_utf8_fixed += 1;
            out.push_str(&String::from_utf8_lossy(b));
        }
    }
}

/// C's `%f`.
pub(crate) fn c_fixed6(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    format!("{f:.6}")
}

pub(crate) fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C's `%.16g`.
pub(crate) fn c_g16(f: f64) -> String {
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
pub(crate) fn kv_float(f: f64) -> String {
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
pub(crate) enum Fmt {
    Json,
    Kv,
}

pub(crate) fn render_value(
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

pub(crate) fn write_scalar(out: &mut String, v: ValueRef<'_>, fmt: Fmt, stats: &mut MapStats) {
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
pub(crate) fn write_json_key(out: &mut String, k: ValueRef<'_>, stats: &mut MapStats) {
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

pub(crate) struct Frame {
    map: bool,
    remaining: u32,
    /// Index of the next child.
    idx: u32,
    /// Children written so far (removed ones excluded).
    kept: u32,
    /// Some removal path runs through this container.
    on_path: bool,
}

pub(crate) fn open(out: &mut String, map: bool, fmt: Fmt) {
    out.push_str(match (fmt, map) {
        (Fmt::Json, true) => "{",
        (Fmt::Json, false) => "[",
        (Fmt::Kv, true) => "\"map[",
        (Fmt::Kv, false) => "\"[",
    });
}

pub(crate) fn push_frame(
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

pub(crate) fn close(out: &mut String, map: bool, fmt: Fmt) {
    out.push_str(match (fmt, map) {
        (Fmt::Json, true) => "}",
        (Fmt::Json, false) => "]",
        (Fmt::Kv, _) => "]\"",
    });
}

/// Renders the container whose msgpack bytes are `bytes`, leaving out the
/// entries at `removals` (index paths relative to it), in one linear pass
/// with an explicit stack.
pub(crate) fn render_container(
    out: &mut String,
    bytes: &[u8],
    removals: &[&[u32]],
    fmt: Fmt,
    stats: &mut MapStats,
) {
    let _ = render_container_inner(out, bytes, removals, fmt, stats);
}

pub(crate) fn render_container_inner(
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
