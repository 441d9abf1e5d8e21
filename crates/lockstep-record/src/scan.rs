//! The fast path: a validating JSON scanner that builds no DOM.
//!
//! Hand-rolled on purpose (the brief's one exception to "use a well-kept crate"): it runs
//! inside Fluent Bit's WASM interpreter, where the host's own JSON round trip already
//! costs as much as the Lua filter it replaces, so the module has a fraction of a
//! microsecond per record. serde_json would build values or at least decode every
//! string; this scanner only decodes the values of matched keys, skips everything else
//! eight bytes at a time, and descends only into objects that can hold a wanted path.

use crate::extract::Extractor;
use crate::fields::{Action, Matcher};
use crate::{Extracted, Scalar, MAX_DEPTH};

mod fast;

/// The text is not valid JSON, or not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte offset {offset}: {msg}")]
pub struct ScanError {
    pub offset: usize,
    pub msg: &'static str,
}

type R<T> = Result<T, ScanError>;

fn err<T>(offset: usize, msg: &'static str) -> R<T> {
    Err(ScanError { offset, msg })
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit of each byte) the bytes of `w` that are a quote, a backslash, a
/// control character or non-ASCII. The lowest marked byte is exact (borrows only cause
/// false marks above a true one), which is all the scanner uses.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    // The usual `& !x` of each zero-byte test is left out (it runs for every eight bytes
    // of every string, inside the interpreter): without it, a byte marks falsely only
    // when it is non-ASCII, which `| w` marks anyway, or when a borrow comes from a
    // lower byte, which is itself marked.
    let q = w ^ (LO * u64::from(b'"'));
    let b = w ^ (LO * u64::from(b'\\'));
    (q.wrapping_sub(LO) | b.wrapping_sub(LO) | w.wrapping_sub(LO * 0x20) | w) & HI
}

#[cfg(test)]
fn word_is_special(w: u64) -> bool {
    special_mask(w) != 0
}

struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// Accept what Fluent Bit's msgpack → JSON conversion writes that JSON does not
    /// allow (see [`Extractor::extract_host_json`]).
    tolerant: bool,
    /// Such a token was seen: the text is not valid JSON.
    host_tokens: bool,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8], i: usize, tolerant: bool) -> Self {
        Scanner {
            b,
            i,
            tolerant,
            host_tokens: false,
        }
    }

    /// In tolerant mode, a non-finite float as Fluent Bit writes it (`%.16g`: `nan`,
    /// `-nan`, `inf`, `-inf`), followed by a delimiter.
    fn host_float(&mut self) -> Option<f64> {
        if !self.tolerant {
            return None;
        }
        let rest = self.b.get(self.i..)?;
        let (neg, body) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            _ => (false, rest),
        };
        let v = if body.starts_with(b"nan") {
            f64::NAN
        } else if body.starts_with(b"inf") {
            f64::INFINITY
        } else {
            return None;
        };
        let len = usize::from(neg) + 3;
        if rest
            .get(len)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return None;
        }
        self.i += len;
        self.host_tokens = true;
        Some(if neg { -v } else { v })
    }

    /// In tolerant mode, a key Fluent Bit wrote without quotes (a non-string map key:
    /// a number, `true`, `null` …): the bare token up to the `:`. It never matches an
    /// alias. Returns whether one was read.
    fn host_bare_key(&mut self) -> bool {
        if !self.tolerant {
            return false;
        }
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if matches!(
                c,
                b':' | b',' | b'"' | b'{' | b'}' | b'[' | b']' | b' ' | b'\t' | b'\n' | b'\r'
            ) || c >= 0x80
            {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return false;
        }
        self.host_tokens = true;
        true
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// After the opening quote; leaves `i` after the closing quote.
    #[inline(always)]
    fn string(&mut self) -> R<Str> {
        let b = self.b;
        let start = self.i;
        let mut i = self.i;
        let mut escaped = false;
        let mut non_ascii = false;
        loop {
            // Eight bytes at a time to the first special byte.
            while let Some(chunk) = b.get(i..i + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let m = special_mask(u64::from_le_bytes(word));
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&c) = b.get(i) else {
                return err(start - 1, "unterminated string");
            };
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i = escape_at(b, i)?;
                }
                0..=0x1f => return err(i, "control character in string"),
                0x80.. => {
                    non_ascii = true;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        if non_ascii && std::str::from_utf8(&b[start..i]).is_err() {
            return err(start, "invalid UTF-8 in string");
        }
        self.i = i + 1;
        Ok(Str {
            start,
            end: i,
            escaped,
        })
    }

    /// A number; returns its span and whether it is an integer.
    fn number(&mut self) -> R<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return err(i, "bad number"),
        }
        let mut int = true;
        if b.get(i) == Some(&b'.') {
            int = false;
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return err(i, "bad number fraction");
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            int = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return err(i, "bad number exponent");
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        Ok((start, i, int))
    }

    fn literal(&mut self, word: &'static [u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            err(self.i, "bad literal")
        }
    }

    /// Skips and validates any value.
    fn skip(&mut self, depth: u32) -> R<()> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string().map(|_| ())
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return err(self.i, "nested too deep");
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() == Some(b'"') {
                        self.i += 1;
                        self.string()?;
                    } else if !self.host_bare_key() {
                        return err(self.i, "expected a key");
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return err(self.i, "expected ':'");
                    }
                    self.i += 1;
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return err(self.i, "expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return err(self.i, "nested too deep");
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return err(self.i, "expected ',' or ']'"),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            // `nan`, `-nan`, `inf`, `-inf` as Fluent Bit writes them: tried only when the
            // JSON reading fails, and only in tolerant mode.
            Some(b'n') => self
                .literal(b"null")
                .or_else(|e| self.host_float().map(|_| ()).ok_or(e)),
            Some(b'-' | b'0'..=b'9') => self
                .number()
                .map(|_| ())
                .or_else(|e| self.host_float().map(|_| ()).ok_or(e)),
            Some(b'i') if self.host_float().is_some() => Ok(()),
            Some(_) => err(self.i, "unexpected character"),
            None => err(self.i, "unexpected end"),
        }
    }
}

/// The escape at `b[i] == '\\'`, checked; returns the index after it.
#[inline(never)]
fn escape_at(b: &[u8], i: usize) -> R<usize> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => {
            if b.get(i + 2..i + 6)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
            {
                Ok(i + 6)
            } else {
                err(i, "bad \\u escape")
            }
        }
        _ => err(i, "bad escape"),
    }
}

/// Decodes the body of a JSON string (escapes resolved) into `out`.
pub(crate) fn unescape(raw: &[u8], out: &mut String) -> Result<(), &'static str> {
    out.clear();
    let mut i = 0;
    let mut run = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            i += 1;
            continue;
        }
        // The string was validated as UTF-8 and escapes sit on ASCII boundaries.
        out.push_str(std::str::from_utf8(&raw[run..i]).map_err(|_| "invalid UTF-8")?);
        let c = raw.get(i + 1).copied().ok_or("bad escape")?;
        i += 2;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4).ok_or("bad \\u escape")?)?;
                i += 4;
                if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i..i + 2) != Some(b"\\u") {
                        return Err("lone leading surrogate");
                    }
                    let lo = hex4(raw.get(i + 2..i + 6).ok_or("bad \\u escape")?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err("bad trailing surrogate");
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        .ok_or("bad surrogate pair")?
                } else {
                    char::from_u32(hi).ok_or("lone trailing surrogate")?
                }
            }
            _ => return Err("bad escape"),
        };
        out.push(ch);
        run = i;
    }
    out.push_str(std::str::from_utf8(&raw[run..]).map_err(|_| "invalid UTF-8")?);
    Ok(())
}

fn hex4(h: &[u8]) -> Result<u32, &'static str> {
    let mut v = 0u32;
    for &c in h {
        v = v << 4 | (c as char).to_digit(16).ok_or("bad \\u escape")?;
    }
    Ok(v)
}

/// The common numbers of a log line (`200`, `12.5`, `0.199999`), read without the
/// general parser, which costs a thousand instructions inside the WASM interpreter:
/// a non-negative integer below 2^64, or a decimal with at most 15 significant digits
/// and no exponent. The latter is exact: its digits form an integer below 2^53 and
/// 10^k (k <= 15) is exact in f64, so one IEEE division rounds correctly, as the general
/// parser does (Clinger's fast path). `None`: not such a number (validated JSON
/// grammar assumed).
#[inline]
fn simple_number(b: &[u8]) -> Option<Scalar<'static>> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let mut m: u64 = 0;
    let mut digits = 0u32;
    let mut frac: Option<usize> = None;
    for (k, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                // Nineteen digits cannot overflow a u64; only past them is the checked
                // form needed (in WASM, `checked_mul` is a 128-bit multiply call).
                m = if digits < 19 {
                    m * 10 + u64::from(c - b'0')
                } else {
                    m.checked_mul(10)?.checked_add(u64::from(c - b'0'))?
                };
                digits += 1;
            }
            b'.' => frac = Some(b.len() - k - 1),
            _ => return None, // '-', exponent
        }
    }
    match frac {
        None => Some(Scalar::UInt(m)),
        Some(k) if digits <= 15 => Some(Scalar::Float(m as f64 / POW10[k])),
        Some(_) => None,
    }
}

/// A number the JSON grammar accepted (ASCII by construction), by the general parsers.
#[inline(never)]
fn number_scalar(b: &[u8]) -> Scalar<'static> {
    let int = !b.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
    match std::str::from_utf8(b) {
        Ok(text) => parse_number(text, int),
        Err(_) => Scalar::Float(f64::NAN), // unreachable: validated ASCII
    }
}

fn parse_number(text: &str, int: bool) -> Scalar<'static> {
    if int {
        if let Some(neg) = text.strip_prefix('-') {
            if neg.bytes().all(|c| c == b'0') {
                return Scalar::Float(-0.0); // as serde_json
            }
            if let Ok(n) = text.parse::<i64>() {
                return Scalar::Int(n);
            }
        } else if let Ok(n) = text.parse::<u64>() {
            return Scalar::UInt(n);
        }
    }
    // Validated JSON number grammar is a subset of Rust's float grammar.
    Scalar::Float(text.parse::<f64>().unwrap_or(f64::NAN))
}

struct Sink<'x> {
    m: &'x Matcher,
    out: &'x mut Extracted,
    scratch: &'x mut String,
}

impl Sink<'_> {
    fn value_str(&mut self, b: &[u8], s: &Str, actions: &[Action]) -> R<()> {
        let raw = &b[s.start..s.end];
        if s.escaped {
            unescape(raw, self.scratch).map_err(|msg| ScanError {
                offset: s.start,
                msg,
            })?;
            let text: &str = self.scratch;
            self.out.on_value(actions, &Scalar::Str(text));
        } else {
            // Validated in `string()` (non-ASCII strings are checked there).
            let text = std::str::from_utf8(raw).map_err(|_| ScanError {
                offset: s.start,
                msg: "invalid UTF-8 in string",
            })?;
            self.out.on_value(actions, &Scalar::Str(text));
        }
        Ok(())
    }
}

/// Scans an object whose `{` is at `sc.i`. `mask`/`off`: matcher state (see
/// [`Matcher::step`]). `nested`: buffer for nested-JSON strings, `None` inside one.
fn object(
    sc: &mut Scanner<'_>,
    sink: &mut Sink<'_>,
    mask: u128,
    off: usize,
    depth: u32,
    nested: Option<&mut Vec<u8>>,
) -> R<()> {
    if depth >= MAX_DEPTH {
        return err(sc.i, "nested too deep");
    }
    let mut nested = nested;
    sc.i += 1;
    sc.ws();
    if sc.peek() == Some(b'}') {
        sc.i += 1;
        return Ok(());
    }
    loop {
        sc.ws();
        let key_len;
        let (leaf, desc) = if sc.peek() != Some(b'"') {
            // A bare key from Fluent Bit (tolerant mode only): no alias names it.
            if !sc.host_bare_key() {
                return err(sc.i, "expected a key");
            }
            key_len = 0;
            (usize::MAX, 0)
        } else {
            sc.i += 1;
            let k = sc.string()?;
            if k.escaped {
                unescape(&sc.b[k.start..k.end], sink.scratch).map_err(|msg| ScanError {
                    offset: k.start,
                    msg,
                })?;
                key_len = sink.scratch.len();
                sink.m.step(mask, off, sink.scratch.as_bytes())
            } else {
                key_len = k.end - k.start;
                sink.m.step(mask, off, &sc.b[k.start..k.end])
            }
        };
        sc.ws();
        if sc.peek() != Some(b':') {
            return err(sc.i, "expected ':'");
        }
        sc.i += 1;
        sc.ws();
        if leaf == usize::MAX && desc == 0 {
            sc.skip(depth + 1)?;
        } else {
            member_value(
                sc,
                sink,
                leaf,
                desc,
                off + key_len + 1,
                depth,
                nested.as_deref_mut(),
            )?;
        }
        sc.ws();
        match sc.peek() {
            Some(b',') => sc.i += 1,
            Some(b'}') => {
                sc.i += 1;
                return Ok(());
            }
            _ => return err(sc.i, "expected ',' or '}'"),
        }
    }
}

/// The value of a member whose key matched a path (`leaf`) or can start one (`desc`),
/// at `sc.i`. `child_off`: matcher offset for the members of an object value.
fn member_value(
    sc: &mut Scanner<'_>,
    sink: &mut Sink<'_>,
    leaf: usize,
    desc: u128,
    child_off: usize,
    depth: u32,
    nested: Option<&mut Vec<u8>>,
) -> R<()> {
    let mut nested = nested;
    let actions: &[Action] = if leaf == usize::MAX {
        &[]
    } else {
        &sink.m.actions[leaf]
    };
    match sc.peek() {
        Some(b'"') => {
            sc.i += 1;
            let s = sc.string()?;
            if !actions.is_empty() {
                sink.value_str(sc.b, &s, actions)?;
                if let Some(buf) = nested.as_deref_mut() {
                    if sink.m.nested[leaf] {
                        nested_json(sc.b, &s, sink, buf)?;
                    }
                }
            }
        }
        Some(b'{') if desc != 0 => {
            object(sc, sink, desc, child_off, depth + 1, nested)?;
            sink.out.on_value(actions, &Scalar::Other);
        }
        Some(b'-' | b'0'..=b'9') => match sc.number() {
            Ok((s, e, _)) => {
                let v = match simple_number(&sc.b[s..e]) {
                    Some(v) => v,
                    None => number_scalar(&sc.b[s..e]),
                };
                sink.out.on_value(actions, &v);
            }
            // `-nan`, `-inf` as Fluent Bit writes them (tolerant mode only)
            Err(e) => {
                let f = sc.host_float().ok_or(e)?;
                sink.out.on_value(actions, &Scalar::Float(f));
            }
        },
        Some(b't') => {
            sc.literal(b"true")?;
            sink.out.on_value(actions, &Scalar::Bool(true));
        }
        Some(b'f') => {
            sc.literal(b"false")?;
            sink.out.on_value(actions, &Scalar::Bool(false));
        }
        Some(b'n') => match sc.literal(b"null") {
            Ok(()) => sink.out.on_value(actions, &Scalar::Null),
            // `nan` (tolerant mode only)
            Err(e) => {
                let f = sc.host_float().ok_or(e)?;
                sink.out.on_value(actions, &Scalar::Float(f));
            }
        },
        Some(b'i') if sc.tolerant => {
            let f = sc.host_float().ok_or(ScanError {
                offset: sc.i,
                msg: "unexpected character",
            })?;
            sink.out.on_value(actions, &Scalar::Float(f));
        }
        _ => {
            sc.skip(depth + 1)?;
            sink.out.on_value(actions, &Scalar::Other);
        }
    }
    Ok(())
}

/// A string field holding a JSON object: when the decoded text is a whole valid JSON
/// object, its keys are read as top-level keys. Anything else leaves it a plain string.
fn nested_json(b: &[u8], s: &Str, sink: &mut Sink<'_>, buf: &mut Vec<u8>) -> R<()> {
    buf.clear();
    if s.escaped {
        let mut tmp = std::mem::take(sink.scratch);
        let r = unescape(&b[s.start..s.end], &mut tmp);
        buf.extend_from_slice(tmp.as_bytes());
        *sink.scratch = tmp;
        r.map_err(|msg| ScanError {
            offset: s.start,
            msg,
        })?;
    } else {
        buf.extend_from_slice(&b[s.start..s.end]);
    }
    nested_object(sink, buf)
}

/// Reads the keys of `text` (already unescaped, in `buf`) as top-level keys when it is
/// one whole valid JSON object; anything else changes nothing.
#[cfg(feature = "msgpack")]
pub(crate) fn nested_text(
    m: &Matcher,
    out: &mut Extracted,
    scratch: &mut String,
    buf: &mut Vec<u8>,
    text: &[u8],
) {
    buf.clear();
    buf.extend_from_slice(text);
    let mut sink = Sink { m, out, scratch };
    // Valid or nothing: the object is checked whole before any key is read.
    let _ = nested_object(&mut sink, buf);
}

fn nested_object(sink: &mut Sink<'_>, buf: &[u8]) -> R<()> {
    let mut probe = Scanner::new(buf, 0, false);
    probe.ws();
    if probe.peek() != Some(b'{') {
        return Ok(());
    }
    let start = probe.i;
    if probe.skip(0).is_err() {
        return Ok(());
    }
    probe.ws();
    if probe.i != buf.len() {
        return Ok(());
    }
    let mut sc = Scanner::new(buf, start, false);
    let all = sink.m.all;
    // Valid (checked above), so this cannot fail part-way.
    object(&mut sc, sink, all, 0, 0, None)
}

impl Extractor {
    /// The fast path over JSON text (a trailing NUL is tolerated, as Fluent Bit's
    /// filter_wasm passes one). Errors name the byte offset.
    pub fn extract_json(&mut self, text: &[u8]) -> Result<&Extracted, ScanError> {
        self.scan(text, false).map(|(e, _)| e)
    }

    /// The plain reading of what [`Self::extract_host_json`] reads (the same scanner as
    /// [`Self::extract_json`], with the host's tokens allowed): the reference the fast
    /// path is tested against. The text Fluent Bit's filter_wasm hands over is
    /// not always JSON: its msgpack → JSON conversion writes non-finite floats as bare
    /// `nan`, `-nan`, `inf`, `-inf` and non-string map keys unquoted. Those are read (the
    /// floats as values, the bare keys as keys no alias names), so such a record is
    /// decided like any other; the flag says it had them, so it must never be echoed.
    /// On valid JSON it extracts exactly what `extract_json` does.
    pub fn extract_host_json_reference(
        &mut self,
        text: &[u8],
    ) -> Result<(&Extracted, bool), ScanError> {
        self.scan(text, true)
    }

    fn scan(&mut self, text: &[u8], tolerant: bool) -> Result<(&Extracted, bool), ScanError> {
        self.out.reset();
        let text = match text.split_last() {
            Some((0, rest)) => rest,
            _ => text,
        };
        let mut sc = Scanner::new(text, 0, tolerant);
        sc.ws();
        if sc.peek() != Some(b'{') {
            return err(sc.i, "not a JSON object");
        }
        let mut sink = Sink {
            m: &self.m,
            out: &mut self.out,
            scratch: &mut self.scratch,
        };
        object(&mut sc, &mut sink, self.m.all, 0, 0, Some(&mut self.nested))?;
        sc.ws();
        if sc.i != text.len() {
            return err(sc.i, "trailing data after the object");
        }
        Ok((&self.out, sc.host_tokens))
    }
}

/// Validates `text` as one JSON object (the same checks as [`Extractor::extract_json`]).
pub fn validate_object(text: &[u8]) -> Result<(), ScanError> {
    let mut sc = Scanner::new(text, 0, false);
    sc.ws();
    if sc.peek() != Some(b'{') {
        return err(sc.i, "not a JSON object");
    }
    sc.skip(0)?;
    sc.ws();
    if sc.i != text.len() {
        return err(sc.i, "trailing data after the object");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_flags_each_special_byte() {
        for pos in 0..8 {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
                let mut w = [b'a'; 8];
                w[pos] = special;
                assert!(
                    word_is_special(u64::from_le_bytes(w)),
                    "{special:#x} at {pos}"
                );
            }
        }
        assert!(!word_is_special(u64::from_le_bytes(*b"abc 0~!}")));
        assert!(!word_is_special(u64::from_le_bytes([0x20; 8])));
        assert!(!word_is_special(u64::from_le_bytes([0x7f; 8])));
    }

    /// The lowest marked byte is the first special byte, on words mixing every kind of
    /// byte (a xorshift stream over a biased alphabet, and every byte value in every
    /// position of plain words).
    #[test]
    fn swar_lowest_mark_is_the_first_special_byte() {
        fn first_special(w: [u8; 8]) -> Option<usize> {
            w.iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
        }
        fn lowest_mark(w: [u8; 8]) -> Option<usize> {
            let m = special_mask(u64::from_le_bytes(w));
            (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
        }
        const ALPHABET: &[u8] =
            b"\"\\\x00\x01\x1f\x20\x21\x22\x23\x5b\x5c\x5d\x7e\x7f\x80\x81\xa0\xdc\xfe\xffaZ09";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            let mut w = [0u8; 8];
            for c in &mut w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = if x & 3 == 0 {
                    (x >> 8) as u8
                } else {
                    ALPHABET[(x >> 8) as usize % ALPHABET.len()]
                };
            }
            assert_eq!(lowest_mark(w), first_special(w), "{w:?}");
        }
        for pos in 0..8 {
            for c in 0..=255u8 {
                let mut w = [b'a'; 8];
                w[pos] = c;
                assert_eq!(lowest_mark(w), first_special(w), "{w:?}");
            }
        }
    }

    #[test]
    fn validation_errors_name_offsets() {
        let cases: &[(&str, usize)] = &[
            (r#"{"a":nan}"#, 5),
            (r#"{"a":inf}"#, 5),
            (r#"{a:1}"#, 1),
            (r#"{"a":1}x"#, 7),
            (r#"{"a":1,}"#, 7),
            (r#"{"a":"x"#, 5),
            ("{\"a\":\"\x01\"}", 6),
            (r#"{"a":01}"#, 6),
            (r#"{"a":"\q"}"#, 6),
            (r#"[1]"#, 0),
        ];
        for (text, off) in cases {
            let e = validate_object(text.as_bytes()).unwrap_err();
            assert_eq!(e.offset, *off, "{text}: {e}");
        }
        assert!(validate_object(b"{\"a\":\"\xff\"}").is_err());
        assert!(validate_object(br#" {"a":[1,{"b":null}],"c":-1.5e3} "#).is_ok());
        let deep = "[".repeat(200);
        assert!(validate_object(format!("{{\"a\":{deep}").as_bytes()).is_err());
    }

    #[test]
    fn host_tokens_are_read_only_in_tolerant_mode() {
        use crate::{DurationState, FieldTable, LevelState, Matcher};
        let mut ex =
            Extractor::new(Matcher::new(FieldTable::default(), &["ratio".into()]).unwrap());
        let text =
            br#"{1:"a","level":"warn","ratio":-inf,"x":{"y":nan,2:[inf]},"duration_ms":3.5}"#;
        let e = ex.extract_json(text).unwrap_err();
        assert_eq!(e.offset, 1, "{e}");
        let (e, host) = ex.extract_host_json(text).unwrap();
        assert!(host);
        assert!(matches!(e.level, LevelState::Known(_)));
        assert_eq!(e.duration, DurationState::Ms(3.5));
        assert_eq!(e.attr(0), crate::Attr::Float(f64::NEG_INFINITY));
        // valid JSON: no flag, the same extraction as the strict path
        let ok = br#"{"level":"warn","ratio":1.5,"duration_ms":3.5}"#;
        let (_, host) = ex.extract_host_json(ok).unwrap();
        assert!(!host);
        for bad in [
            &br#"{"a":nanx}"#[..],
            br#"{"a":infinity}"#,
            br#"{:1}"#,
            br#"{"a":-}"#,
        ] {
            assert!(
                ex.extract_host_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            validate_object(br#"{"a":nan}"#).is_err(),
            "validation stays strict"
        );
    }

    #[test]
    fn simple_numbers_equal_the_general_parser() {
        let mut cases: Vec<String> = [
            "0",
            "7",
            "200",
            "18446744073709551615",
            "18446744073709551616",
            "12.5",
            "0.199999",
            "199.999",
            "1795000000.0969334",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567890.12345",
            "1234567890.123456",
            "0.000000000000001",
            "9007199254740993",
            "9007199254740993.0",
            "-1",
            "-0.5",
            "1e3",
            "00",
        ]
        .map(String::from)
        .to_vec();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 10_000_000_000;
            let frac = (x >> 40) % 100_000;
            let width = (x >> 20) % 6;
            cases.push(format!("{int}.{frac:0width$}", width = width as usize));
        }
        for c in cases {
            let int = !c.contains(['.', 'e']);
            if let Some(v) = simple_number(c.as_bytes()) {
                assert_eq!(v, parse_number(&c, int), "{c}");
            }
        }
        assert!(simple_number(b"18446744073709551616").is_none());
        assert!(simple_number(b"1234567890.123456").is_none());
        assert_eq!(simple_number(b"12.5"), Some(Scalar::Float(12.5)));
    }

    #[test]
    fn unescape_handles_surrogates() {
        let mut s = String::new();
        unescape(br"a\u00e9\ud83d\ude00\n", &mut s).unwrap();
        assert_eq!(s, "aé😀\n");
        assert!(unescape(br"\ud83d", &mut s).is_err());
        assert!(unescape(br"\ude00", &mut s).is_err());
    }
}
