//! The filter's hot path: [`Extractor::extract_host_json`].
//!
//! Same answers as the reference reader (`Scanner` with `tolerant` set: every record it
//! reads is read the same, every record it refuses is refused), for far fewer executed
//! instructions inside Fluent Bit's interpreter, where each one costs about a
//! nanosecond and a record has a budget of a few hundred nanoseconds:
//!
//! - one loop over the top-level members with the position in a local (a scanner
//!   struct behind a reference lives in linear memory: every step would be a load and
//!   a store); values nobody asked for are skipped in place, containers by
//!   [`skip_container`], iteratively;
//! - a key is matched by its length and first word ([`TopTable::get_word`]), and that
//!   word is the one the string scan already loaded to find the key's closing quote;
//! - strings are scanned eight bytes at a time and never decoded unless their key
//!   matched; digit runs too (timestamps are the longest numbers of a log line);
//! - UTF-8 is not re-validated string by string: the scan notes that a string held a
//!   non-ASCII byte, and only then is the whole text checked once at the end. Outside
//!   strings every accepted byte is ASCII, so that one check is the reference's.
//!
//! Members whose key matched take the reference code ([`member_value`]): they are a few
//! per record, and sharing that code keeps one definition of what a value means.
//! The two readers are compared on arbitrary input by a property test and the
//! `scan_json` fuzz target.

use super::{err, escape_at, member_value, nested_json, special_mask, Scanner, Sink, Str, R};
use crate::extract::Extractor;
use crate::fields::{low_bytes, Fast};
use crate::{Extracted, MAX_DEPTH};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// What the scan saw that the caller must act on. Kept in locals of the member loop:
/// the out-of-line helpers return theirs instead of writing through a reference, which
/// would put these in linear memory, loaded and stored for every string.
#[derive(Default, Clone, Copy)]
struct Flags {
    /// A token of the host's that JSON does not allow (the text must not be echoed).
    host: bool,
    /// A string held a byte above 0x7f (UTF-8 is checked once, at the end).
    non_ascii: bool,
}

/// The eight bytes at `i`, zero-padded past the end of `b`. A zero byte is never a
/// digit and always "special" to the string scan (a control character), so the scans
/// stop at the end of the text as they stop at a delimiter, with no byte-wise tail loop.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 8) {
        Some(c) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        }
        None => tail_word(b, i),
    }
}

#[inline(never)]
fn tail_word(b: &[u8], i: usize) -> u64 {
    crate::fields::first_word(b.get(i..).unwrap_or_default())
}

/// The byte at `i`, or 0 past the end (a 0 byte is never valid where it is looked at).
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(at(b, i), b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The end of the run of ASCII digits starting at `i`.
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    loop {
        // A digit becomes 0..=9; `+ 0x76` sets the high bit of any byte that was not one
        // (`| t` catches bytes that had it already). Carries only leave marked bytes,
        // so the lowest mark is exact.
        let t = word_at(b, i) ^ (LO * 0x30);
        let m = (t.wrapping_add(LO * 0x76) | t) & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
}

/// The end of the JSON number at `i` (grammar checked as the reference checks it), or
/// `None` if there is none.
#[inline(always)]
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if at(b, i) == b'-' {
        i += 1;
    }
    match at(b, i) {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if at(b, i) == b'.' {
        let e = digits(b, i + 1);
        if e == i + 1 {
            return None;
        }
        i = e;
    }
    if matches!(at(b, i), b'e' | b'E') {
        i += 1;
        if matches!(at(b, i), b'+' | b'-') {
            i += 1;
        }
        let e = digits(b, i);
        if e == i {
            return None;
        }
        i = e;
    }
    Some(i)
}

/// The body of the string whose opening quote is at `open`, scanned from `from` (the
/// bytes between are known to be plain): returns the index of the closing quote and
/// whether an escape occurred; an unterminated string is reported at `open`. Checks escapes and control
/// characters as the reference does; notes non-ASCII bytes instead of decoding them.
#[inline(always)]
fn string_end(b: &[u8], open: usize, from: usize, f: &mut Flags) -> R<(usize, bool)> {
    let mut i = from;
    let mut escaped = false;
    loop {
        loop {
            let m = special_mask(word_at(b, i));
            if m != 0 {
                i += (m.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match b.get(i) {
            Some(b'"') => return Ok((i, escaped)),
            Some(b'\\') => {
                escaped = true;
                i = escape_at(b, i)?;
            }
            Some(0..=0x1f) => return err(i, "control character in string"),
            Some(0x80..) => {
                f.non_ascii = true;
                i += 1;
            }
            Some(_) => i += 1,
            None => return err(open, "unterminated string"),
        }
    }
}

/// `true`, `false` or `null` at `i`: its end and value.
#[inline(always)]
fn literal(b: &[u8], i: usize) -> Option<(usize, crate::Scalar<'static>)> {
    use crate::Scalar;
    match b.get(i..i + 4)? {
        b"true" => Some((i + 4, Scalar::Bool(true))),
        b"null" => Some((i + 4, Scalar::Null)),
        b"fals" if b.get(i + 4) == Some(&b'e') => Some((i + 5, Scalar::Bool(false))),
        _ => None,
    }
}

/// A value that is not a string, number or container, at `i` (`true`, `false`,
/// `null`, or the host's `nan`/`inf` forms): the reference reads it.
#[inline(never)]
fn other_scalar(b: &[u8], i: usize) -> R<(usize, bool)> {
    let mut sc = Scanner::new(b, i, true);
    let r = match sc.peek() {
        Some(b't') => sc.literal(b"true"),
        Some(b'f') => sc.literal(b"false"),
        Some(b'n') => sc
            .literal(b"null")
            .or_else(|e| sc.host_float().map(|_| ()).ok_or(e)),
        Some(b'-' | b'0'..=b'9' | b'i') => sc.host_float().map(|_| ()).ok_or(super::ScanError {
            offset: i,
            msg: "bad number",
        }),
        Some(_) => err(i, "unexpected character"),
        None => err(i, "unexpected end"),
    };
    r.map(|()| (sc.i, sc.host_tokens))
}

/// A bare key of the host's (a non-string map key, unquoted) at `i`: its end (the
/// caller notes the host token).
#[inline(never)]
fn bare_key(b: &[u8], i: usize) -> R<usize> {
    let mut sc = Scanner::new(b, i, true);
    if sc.host_bare_key() {
        Ok(sc.i)
    } else {
        err(i, "expected a key")
    }
}

/// Any scalar value at `i`: its end.
#[inline(always)]
fn scalar_end(b: &[u8], i: usize, f: &mut Flags) -> R<usize> {
    match at(b, i) {
        b'"' => string_end(b, i, i + 1, f).map(|(e, _)| e + 1),
        b'-' | b'0'..=b'9' => match number_end(b, i) {
            Some(e) => Ok(e),
            None => other_scalar_flag(b, i, f),
        },
        _ => other_scalar_flag(b, i, f),
    }
}

#[inline(always)]
fn other_scalar_flag(b: &[u8], i: usize, f: &mut Flags) -> R<usize> {
    let (e, host) = other_scalar(b, i)?;
    f.host |= host;
    Ok(e)
}

/// Skips the object or array at `i` (nested at `depth`; the top-level object is 0),
/// checking it as the reference's `skip` does, without recursion; returns its end.
#[inline(never)]
fn skip_container(b: &[u8], mut i: usize, depth: u32) -> R<(usize, Flags)> {
    let mut flags = Flags::default();
    let f = &mut flags;
    if depth >= MAX_DEPTH {
        return err(i, "nested too deep");
    }
    // Bit `level` set: the container open at that level (0: the first) is an array.
    // Two words, not a u128: a variable u128 shift is a function call in WASM.
    let mut arrays = [u64::from(at(b, i) == b'['), 0];
    let mut level: u32 = 0;
    i += 1;
    // `true` right after an opening bracket, where the close may follow.
    let mut fresh = true;
    loop {
        let in_array = arrays[(level >> 6) as usize & 1] >> (level & 63) & 1 == 1;
        i = ws(b, i);
        let close = if in_array { b']' } else { b'}' };
        if fresh && at(b, i) == close {
            // An empty container: a finished value of the level above.
            i += 1;
            if level == 0 {
                return Ok((i, flags));
            }
            level -= 1;
        } else {
            if !in_array {
                i = if at(b, i) == b'"' {
                    string_end(b, i, i + 1, f)?.0 + 1
                } else {
                    f.host = true;
                    bare_key(b, i)?
                };
                i = ws(b, i);
                if at(b, i) != b':' {
                    return err(i, "expected ':'");
                }
                i = ws(b, i + 1);
            }
            match at(b, i) {
                c @ (b'{' | b'[') => {
                    if depth + level + 1 >= MAX_DEPTH {
                        return err(i, "nested too deep");
                    }
                    level += 1;
                    let (word, bit) = ((level >> 6) as usize & 1, 1u64 << (level & 63));
                    if c == b'[' {
                        arrays[word] |= bit;
                    } else {
                        arrays[word] &= !bit;
                    }
                    i += 1;
                    fresh = true;
                    continue;
                }
                _ => i = scalar_end(b, i, f)?,
            }
        }
        // After a value: ',' or the close of the innermost open container.
        loop {
            i = ws(b, i);
            let in_array = arrays[(level >> 6) as usize & 1] >> (level & 63) & 1 == 1;
            match at(b, i) {
                b',' => {
                    i += 1;
                    fresh = false;
                    break;
                }
                b']' if in_array => {}
                b'}' if !in_array => {}
                _ => {
                    return err(
                        i,
                        if in_array {
                            "expected ',' or ']'"
                        } else {
                            "expected ',' or '}'"
                        },
                    )
                }
            }
            i += 1;
            if level == 0 {
                return Ok((i, flags));
            }
            level -= 1;
        }
    }
}

/// [`skip_container`], its flags merged into `f`.
#[inline(always)]
fn skip_container_flag(b: &[u8], i: usize, depth: u32, f: &mut Flags) -> R<usize> {
    let (e, g) = skip_container(b, i, depth)?;
    f.host |= g.host;
    f.non_ascii |= g.non_ascii;
    Ok(e)
}

/// A string value of a matched key (its body starts at `start`). An ASCII string
/// without escapes (ids, levels: nearly all of them) goes to the sink as bytes;
/// anything else takes the reference's decoding. Returns the end of the string.
#[inline(always)]
fn matched_string(
    b: &[u8],
    start: usize,
    sink: &mut Sink<'_>,
    leaf: usize,
    nested: &mut Vec<u8>,
    f: &mut Flags,
) -> R<usize> {
    let mut g = Flags::default();
    let (end, escaped) = string_end(b, start - 1, start, &mut g)?;
    f.non_ascii |= g.non_ascii;
    let plain = !escaped && !g.non_ascii;
    match sink.m.fast.get(leaf) {
        // One level or hex trace id action, a plain string: applied directly.
        Some(&Fast::Level { rank, scheme }) if plain => {
            sink.out.level_plain(rank, scheme, &b[start..end]);
        }
        Some(&Fast::TraceHex { rank }) if plain => {
            sink.out.trace_hex_ascii(rank, &b[start..end]);
        }
        Some(&Fast::Unread) if plain => {}
        _ => matched_string_general(b, start, end, escaped, plain, sink, leaf, nested)?,
    }
    Ok(end + 1)
}

/// [`matched_string`] through the action list.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn matched_string_general(
    b: &[u8],
    start: usize,
    end: usize,
    escaped: bool,
    plain: bool,
    sink: &mut Sink<'_>,
    leaf: usize,
    nested: &mut Vec<u8>,
) -> R<()> {
    let s = Str {
        start,
        end,
        escaped,
    };
    let actions = &sink.m.actions[leaf];
    if plain {
        sink.out.on_ascii(actions, &b[start..end]);
    } else {
        sink.value_str(b, &s, actions)?;
    }
    if sink.m.nested[leaf] {
        nested_json(b, &s, sink, nested)?;
    }
    Ok(())
}

/// Any other value of a matched key, at `i`: the reference reads it.
#[inline(never)]
fn matched_other(
    b: &[u8],
    i: usize,
    sink: &mut Sink<'_>,
    (leaf, desc, key_len): (usize, u128, usize),
    nested: &mut Vec<u8>,
) -> R<(usize, bool)> {
    let mut sc = Scanner::new(b, i, true);
    let r = member_value(&mut sc, sink, leaf, desc, key_len + 1, 0, Some(nested));
    r.map(|()| (sc.i, sc.host_tokens))
}

/// The top-level object, whose `{` is at `i`: returns its end.
#[inline(always)]
fn object_fast(
    b: &[u8],
    mut i: usize,
    sink: &mut Sink<'_>,
    nested: &mut Vec<u8>,
    f: &mut Flags,
) -> R<usize> {
    i = ws(b, i + 1);
    if at(b, i) == b'}' {
        return Ok(i + 1);
    }
    let top = &sink.m.top;
    let short = top.view();
    // White space is looked for only where the expected byte is not found: Fluent Bit
    // writes none, and every check is an instruction or two in the interpreter.
    loop {
        let mut c = at(b, i);
        if c != b'"' {
            i = ws(b, i);
            c = at(b, i);
        }
        let (leaf, desc, key_len) = if c == b'"' {
            let start = i + 1;
            // The key's first word: both the start of the closing-quote scan and the
            // matcher's probe.
            let w = word_at(b, start);
            let m = special_mask(w);
            let first = (m.trailing_zeros() / 8) as usize;
            // The lowest mark is exact, so the byte there is the key's first special
            // byte (a zero of the padding past the end is not a quote).
            if m != 0 && (w >> (8 * first)) as u8 == b'"' {
                // A short key, no escape: the common case.
                i = start + first + 1;
                // `first` < 8: the bytes below the quote are the whole key.
                let (l, d) = short.get_short(w & !u64::MAX.wrapping_shl(8 * first as u32));
                (l, d, first)
            } else {
                // No special byte among the first eight: go on after them.
                let from = if m == 0 { start + 8 } else { start };
                let (end, escaped) = string_end(b, start - 1, from, f)?;
                i = end + 1;
                let key = &b[start..end];
                if !escaped {
                    let (l, d) = top.get_word(low_bytes(w, key.len()), key);
                    (l, d, key.len())
                } else {
                    super::unescape(key, sink.scratch)
                        .map_err(|msg| super::ScanError { offset: start, msg })?;
                    let (l, d) = sink.m.step(sink.m.all, 0, sink.scratch.as_bytes());
                    (l, d, sink.scratch.len())
                }
            }
        } else {
            f.host = true;
            i = bare_key(b, i)?;
            (usize::MAX, 0, 0)
        };
        if at(b, i) != b':' {
            i = ws(b, i);
            if at(b, i) != b':' {
                return err(i, "expected ':'");
            }
        }
        i += 1;
        let mut c = at(b, i);
        if c <= b' ' {
            i = ws(b, i);
            c = at(b, i);
        }
        i = if leaf == usize::MAX && desc == 0 {
            // Unwanted: a string (most of them) is skipped without another dispatch.
            if c == b'"' {
                string_end(b, i, i + 1, f)?.0 + 1
            } else if c == b'{' || c == b'[' {
                skip_container_flag(b, i, 1, f)?
            } else {
                scalar_end(b, i, f)?
            }
        } else if leaf != usize::MAX && c == b'"' {
            matched_string(b, i + 1, sink, leaf, nested, f)?
        } else if let (true, Some((e, v))) = (leaf != usize::MAX, literal(b, i)) {
            sink.out.on_value(&sink.m.actions[leaf], &v);
            e
        } else if let (true, Some(e)) = (leaf != usize::MAX, number_end(b, i)) {
            // A number (durations, numeric levels): read here, not by the reference.
            let v = match super::simple_number(&b[i..e]) {
                Some(v) => v,
                None => super::number_scalar(&b[i..e]),
            };
            sink.out.on_value(&sink.m.actions[leaf], &v);
            e
        } else {
            let (e, host) = matched_other(b, i, sink, (leaf, desc, key_len), nested)?;
            f.host |= host;
            e
        };
        let mut c = at(b, i);
        if c <= b' ' {
            i = ws(b, i);
            c = at(b, i);
        }
        match c {
            b',' => i += 1,
            b'}' => return Ok(i + 1),
            _ => return err(i, "expected ',' or '}'"),
        }
    }
}

impl Extractor {
    /// Reads the text Fluent Bit's filter_wasm hands over, which is not always JSON: its
    /// msgpack → JSON conversion writes non-finite floats as bare `nan`, `-nan`, `inf`,
    /// `-inf` and non-string map keys unquoted. Those are read (the floats as values, the
    /// bare keys as keys no alias names), so such a record is decided like any other; the
    /// flag says it had them, so it must never be echoed. Everything else is checked as
    /// [`Self::extract_json`] checks it, and on valid JSON it extracts exactly what
    /// `extract_json` does (a trailing NUL is tolerated).
    ///
    /// This is the filter's hot path (see the module doc of `scan::fast`);
    /// [`Self::extract_host_json_reference`] is the plain reading it must agree with.
    pub fn extract_host_json(
        &mut self,
        text: &[u8],
    ) -> Result<(&Extracted, bool), super::ScanError> {
        self.out.reset();
        let b = match text.split_last() {
            Some((0, rest)) => rest,
            _ => text,
        };
        let mut f = Flags::default();
        let i = ws(b, 0);
        if at(b, i) != b'{' {
            return err(i, "not a JSON object");
        }
        let mut sink = Sink {
            m: &self.m,
            out: &mut self.out,
            scratch: &mut self.scratch,
        };
        let end = ws(b, object_fast(b, i, &mut sink, &mut self.nested, &mut f)?);
        if end != b.len() {
            return err(end, "trailing data after the object");
        }
        if f.non_ascii {
            if let Err(e) = std::str::from_utf8(b) {
                return err(e.valid_up_to(), "invalid UTF-8 in string");
            }
        }
        Ok((&self.out, f.host))
    }
}
