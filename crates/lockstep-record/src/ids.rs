//! Trace and span id parsing: every id form in `shared/facts/tail-sampling.md`.
//!
//! Output is raw bytes (`[u8; 16]` trace, `[u8; 8]` span); `Display` helpers print
//! lowercase hex. Nothing is guessed: a value that is not exactly one of the accepted
//! forms is reported as [`IdError`].

use crate::Scalar;
use serde::{Deserialize, Serialize};

/// How an alias' value encodes an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// Hex string: 32 hex digits for a trace id (16 accepted too: a B3 64-bit id,
    /// left-padded with zeros as OTel's B3 propagator does), 16 for a span id.
    /// Upper case is accepted and normalised to lower case.
    Hex,
    /// W3C `traceparent`: `VV-<32hex>-<16hex>-<2hex>`. Yields both ids.
    W3c,
    /// Datadog decimal (string or integer): the low 64 bits of the trace id, printed as
    /// 32 hex with the high half zero. A 32-character hex string (Datadog's 128-bit log
    /// injection) is read as hex.
    Decimal,
    /// Google Cloud `projects/P/traces/<32hex>` (a bare 32-hex id is accepted too).
    Gcp,
}

/// Why a present id value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected a string")]
    NotAString,
    #[error("wrong length {0}")]
    WrongLength(usize),
    #[error("not hexadecimal")]
    NotHex,
    #[error("all zero")]
    AllZero,
    #[error("not a decimal 64-bit integer")]
    NotDecimal,
    #[error("malformed traceparent: {0}")]
    Traceparent(&'static str),
    #[error("malformed Google Cloud trace name")]
    GcpName,
}

/// The state of one id in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdState<const N: usize> {
    /// No alias held a value (null and "" count as absent).
    #[default]
    Absent,
    Valid([u8; N]),
    Invalid(IdError),
}

impl<const N: usize> IdState<N> {
    pub fn valid(&self) -> Option<&[u8; N]> {
        match self {
            IdState::Valid(b) => Some(b),
            _ => None,
        }
    }
}

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// Hex digit values; 0xff marks a non-hex byte. A table, because this runs for every
/// id inside the WASM interpreter, where each branch costs.
const HEX_VAL: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[inline]
fn hex_val(c: u8) -> Option<u8> {
    let v = HEX_VAL[usize::from(c)];
    (v != 0xff).then_some(v)
}

/// Decodes exactly `2*N` hex digits.
pub(crate) fn hex_exact<const N: usize>(s: &[u8]) -> Result<[u8; N], IdError> {
    if s.len() != 2 * N {
        return Err(IdError::WrongLength(s.len()));
    }
    let mut out = [0u8; N];
    let mut bad = 0u64;
    let mut any = 0u32;
    // Eight digits at a time: this runs for every id inside the WASM interpreter.
    let mut words = s.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(4);
    for (chunk, o) in (&mut words).zip(&mut outs) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let (v, b) = hex8(u64::from_le_bytes(w));
        bad |= b;
        any |= v;
        o.copy_from_slice(&v.to_le_bytes());
    }
    let mut bad_tail = 0u8;
    for (o, pair) in outs
        .into_remainder()
        .iter_mut()
        .zip(words.remainder().chunks_exact(2))
    {
        let (hi, lo) = (HEX_VAL[usize::from(pair[0])], HEX_VAL[usize::from(pair[1])]);
        bad_tail |= hi | lo;
        *o = hi << 4 | (lo & 15);
    }
    if bad != 0 || bad_tail & 0xf0 != 0 {
        return Err(IdError::NotHex);
    }
    if any == 0 && out.iter().all(|&b| b == 0) {
        return Err(IdError::AllZero);
    }
    Ok(out)
}

/// Thirty-two hex digits, straight-line: [`hex_exact`] for `N = 16` without its loop
/// and copies (every record's trace id is decoded inside the interpreter). `None`
/// only if `s` is not 32 bytes long.
#[inline(always)]
fn hex32(s: &[u8]) -> Option<Result<TraceId, IdError>> {
    let a: &[u8; 32] = s.try_into().ok()?;
    let (w0, rest) = a.split_first_chunk::<8>()?;
    let (w1, rest) = rest.split_first_chunk::<8>()?;
    let (w2, w3) = rest.split_first_chunk::<8>()?;
    let w3: &[u8; 8] = w3.try_into().ok()?;
    let (v0, b0) = hex8(u64::from_le_bytes(*w0));
    let (v1, b1) = hex8(u64::from_le_bytes(*w1));
    let (v2, b2) = hex8(u64::from_le_bytes(*w2));
    let (v3, b3) = hex8(u64::from_le_bytes(*w3));
    if b0 | b1 | b2 | b3 != 0 {
        return Some(Err(IdError::NotHex));
    }
    if v0 | v1 | v2 | v3 == 0 {
        return Some(Err(IdError::AllZero));
    }
    let lo = u64::from(v0) | u64::from(v1) << 32;
    let hi = u64::from(v2) | u64::from(v3) << 32;
    Some(Ok((u128::from(lo) | u128::from(hi) << 64).to_le_bytes()))
}

/// Eight hex digits (the first in the low byte) → four bytes (the first in the low
/// byte), and a non-zero mask if any digit is not hex. SWAR: no table, no branch.
#[inline(always)]
fn hex8(w: u64) -> (u32, u64) {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let w7 = w & !HI;
    // digits '0'..='9' → 0..=9; `+ 0x76` marks bytes ≥ 10 (no carry: bytes < 0x80)
    let t = w7 ^ (LO * 0x30);
    let ge10 = t.wrapping_add(LO * 0x76) & HI;
    // 'a'..='f' and 'A'..='F' → 1..=6
    let u = (w7 | (LO * 0x20)) ^ (LO * 0x60);
    let ge1 = u.wrapping_add(LO * 0x7f) & HI;
    let ge7 = u.wrapping_add(LO * 0x79) & HI;
    let letter = ge1 & !ge7;
    let bad = (w & HI) | (ge10 & !letter);
    // a digit's low nibble is its value; a letter's is its value - 9 (bit 6 set)
    let nib = (w & (LO * 0x0f)) + ((w >> 6) & LO) * 9;
    let x = ((nib << 4) | (nib >> 8)) & 0x00ff_00ff_00ff_00ff;
    let x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x >> 16)) & 0xffff_ffff;
    (x as u32, bad)
}

/// A hex trace id: 32 digits, or 16 (B3 64-bit, left-padded).
pub fn trace_from_hex(s: &[u8]) -> Result<TraceId, IdError> {
    match s.len() {
        32 => hex32(s).unwrap_or(Err(IdError::WrongLength(32))),
        16 => {
            let low = hex_exact::<8>(s)?;
            let mut out = [0u8; 16];
            out[8..].copy_from_slice(&low);
            Ok(out)
        }
        n => Err(IdError::WrongLength(n)),
    }
}

pub fn span_from_hex(s: &[u8]) -> Result<SpanId, IdError> {
    hex_exact::<8>(s)
}

/// Parses a W3C traceparent into (trace id, span id).
pub fn traceparent(s: &[u8]) -> Result<(TraceId, SpanId), IdError> {
    use IdError::Traceparent as T;
    if s.len() < 55 {
        return Err(T("shorter than 55 characters"));
    }
    let version = hex_exact_any::<1>(&s[0..2]).ok_or(T("version is not hex"))?[0];
    if version == 0xff {
        return Err(T("version ff is invalid"));
    }
    if version == 0 && s.len() != 55 {
        return Err(T("version 00 must be 55 characters"));
    }
    if s.len() > 55 && s[55] != b'-' {
        return Err(T("trailing data without '-'"));
    }
    if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return Err(T("misplaced '-'"));
    }
    hex_exact_any::<1>(&s[53..55]).ok_or(T("flags are not hex"))?;
    let t = hex_exact::<16>(&s[3..35]).map_err(|e| match e {
        IdError::AllZero => T("all-zero trace id"),
        _ => T("trace id is not 32 hex"),
    })?;
    let sp = hex_exact::<8>(&s[36..52]).map_err(|e| match e {
        IdError::AllZero => T("all-zero span id"),
        _ => T("span id is not 16 hex"),
    })?;
    Ok((t, sp))
}

fn hex_exact_any<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(out)
}

fn decimal_u64(s: &[u8]) -> Result<u64, IdError> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return Err(IdError::NotDecimal);
    }
    let mut n: u64 = 0;
    for &c in s {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(IdError::NotDecimal)?;
    }
    if n == 0 {
        return Err(IdError::AllZero);
    }
    Ok(n)
}

fn decimal_scalar(v: &Scalar<'_>) -> Result<u64, IdError> {
    match *v {
        Scalar::UInt(0) => Err(IdError::AllZero),
        Scalar::UInt(n) => Ok(n),
        Scalar::Str(s) => decimal_u64(s.as_bytes()),
        _ => Err(IdError::NotDecimal),
    }
}

fn gcp_trace(s: &[u8]) -> Result<TraceId, IdError> {
    if s.len() == 32 {
        return hex_exact::<16>(s);
    }
    // projects/<P>/traces/<32hex>
    let rest = s.strip_prefix(b"projects/").ok_or(IdError::GcpName)?;
    let slash = rest
        .iter()
        .position(|&c| c == b'/')
        .ok_or(IdError::GcpName)?;
    if slash == 0 {
        return Err(IdError::GcpName);
    }
    let id = rest[slash..]
        .strip_prefix(b"/traces/")
        .ok_or(IdError::GcpName)?;
    hex_exact::<16>(id)
}

/// Parses a trace id from a value in the given format. For `W3c` the span id is
/// returned too.
pub fn parse_trace(fmt: IdFormat, v: &Scalar<'_>) -> Result<(TraceId, Option<SpanId>), IdError> {
    match fmt {
        IdFormat::Decimal => match v {
            Scalar::Str(s) if s.len() == 32 => Ok((hex_exact::<16>(s.as_bytes())?, None)),
            _ => {
                let n = decimal_scalar(v)?;
                let mut out = [0u8; 16];
                out[8..].copy_from_slice(&n.to_be_bytes());
                Ok((out, None))
            }
        },
        _ => {
            let Scalar::Str(s) = v else {
                return Err(IdError::NotAString);
            };
            let s = s.as_bytes();
            match fmt {
                IdFormat::Hex => Ok((trace_from_hex(s)?, None)),
                IdFormat::W3c => traceparent(s).map(|(t, sp)| (t, Some(sp))),
                IdFormat::Gcp => Ok((gcp_trace(s)?, None)),
                IdFormat::Decimal => unreachable!("handled above"),
            }
        }
    }
}

/// Parses a span id from a value in the given format.
pub fn parse_span(fmt: IdFormat, v: &Scalar<'_>) -> Result<SpanId, IdError> {
    match fmt {
        IdFormat::Decimal => match v {
            Scalar::Str(s) if s.len() == 16 && !s.bytes().all(|c| c.is_ascii_digit()) => {
                span_from_hex(s.as_bytes())
            }
            _ => Ok(decimal_scalar(v)?.to_be_bytes()),
        },
        _ => {
            let Scalar::Str(s) = v else {
                return Err(IdError::NotAString);
            };
            match fmt {
                IdFormat::W3c => traceparent(s.as_bytes()).map(|(_, sp)| sp),
                _ => span_from_hex(s.as_bytes()),
            }
        }
    }
}

/// Writes `bytes` as lowercase hex into `out` (which must be `2 * bytes.len()` long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// Lowercase hex of an id.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex is ASCII")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The straight-line 32-digit decoder answers as the general one, on hex in
        /// both cases, all-zero ids and any byte in any place.
        #[test]
        fn hex32_is_hex_exact(
            digits in prop::collection::vec(prop::sample::select(b"0123456789abcdefABCDEF0".to_vec()), 32),
            zero in any::<bool>(),
            flip in prop::option::of((0usize..32, any::<u8>())),
        ) {
            let mut s = if zero { vec![b'0'; 32] } else { digits };
            if let Some((i, c)) = flip {
                s[i] = c;
            }
            prop_assert_eq!(hex32(&s), Some(hex_exact::<16>(&s)));
            prop_assert_eq!(trace_from_hex(&s), hex_exact::<16>(&s));
        }
    }

    #[test]
    fn swar_hex_agrees_with_the_table_on_every_byte() {
        for c in 0..=255u8 {
            for pos in 0..8 {
                let mut digits = *b"0123abcd";
                digits[pos] = c;
                let (v, bad) = super::hex8(u64::from_le_bytes(digits));
                let table: Option<Vec<u8>> = digits
                    .chunks(2)
                    .map(|p| Some(super::hex_val(p[0])? << 4 | super::hex_val(p[1])?))
                    .collect();
                match table {
                    Some(t) => {
                        assert_eq!(bad, 0, "{c:#x} at {pos}");
                        assert_eq!(v.to_le_bytes().to_vec(), t, "{c:#x} at {pos}");
                    }
                    None => assert_ne!(bad, 0, "{c:#x} at {pos}"),
                }
            }
        }
    }

    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn hex_forms() {
        let (t, _) = parse_trace(IdFormat::Hex, &Scalar::Str(T)).unwrap();
        assert_eq!(to_hex(&t), T);
        let (t, _) = parse_trace(IdFormat::Hex, &Scalar::Str(&T.to_uppercase())).unwrap();
        assert_eq!(to_hex(&t), T);
        // B3 64-bit: left padded
        let (t, _) = parse_trace(IdFormat::Hex, &Scalar::Str("a3ce929d0e0e4736")).unwrap();
        assert_eq!(to_hex(&t), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(
            parse_trace(IdFormat::Hex, &Scalar::Str("a3ce929d0e0e473")),
            Err(IdError::WrongLength(15))
        );
        assert_eq!(
            parse_trace(
                IdFormat::Hex,
                &Scalar::Str("4bf92f3577b34da6a3ce929d0e0e473g")
            ),
            Err(IdError::NotHex)
        );
        assert_eq!(
            parse_trace(
                IdFormat::Hex,
                &Scalar::Str("00000000000000000000000000000000")
            ),
            Err(IdError::AllZero)
        );
        assert_eq!(
            parse_trace(IdFormat::Hex, &Scalar::UInt(5)),
            Err(IdError::NotAString)
        );
        assert_eq!(
            to_hex(&parse_span(IdFormat::Hex, &Scalar::Str("00F067AA0BA902B7")).unwrap()),
            "00f067aa0ba902b7"
        );
        assert_eq!(
            parse_span(IdFormat::Hex, &Scalar::Str(T)),
            Err(IdError::WrongLength(32))
        );
    }

    #[test]
    fn w3c() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, s) = parse_trace(IdFormat::W3c, &Scalar::Str(tp)).unwrap();
        assert_eq!(to_hex(&t), T);
        assert_eq!(to_hex(&s.unwrap()), "00f067aa0ba902b7");
        for bad in [
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                matches!(
                    parse_trace(IdFormat::W3c, &Scalar::Str(bad)),
                    Err(IdError::Traceparent(_))
                ),
                "{bad}"
            );
        }
        // A future version may carry more fields after a '-'.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-abc";
        assert!(parse_trace(IdFormat::W3c, &Scalar::Str(future)).is_ok());
    }

    #[test]
    fn datadog_decimal() {
        let n: u64 = 0xa3ce929d0e0e4736;
        let (t, _) = parse_trace(IdFormat::Decimal, &Scalar::UInt(n)).unwrap();
        assert_eq!(to_hex(&t), "0000000000000000a3ce929d0e0e4736");
        let s = n.to_string();
        let (t2, _) = parse_trace(IdFormat::Decimal, &Scalar::Str(&s)).unwrap();
        assert_eq!(t, t2);
        let (t3, _) = parse_trace(IdFormat::Decimal, &Scalar::Str(T)).unwrap();
        assert_eq!(to_hex(&t3), T);
        assert_eq!(
            parse_trace(IdFormat::Decimal, &Scalar::Str("18446744073709551616")),
            Err(IdError::NotDecimal)
        );
        assert_eq!(
            parse_trace(IdFormat::Decimal, &Scalar::Int(-5)),
            Err(IdError::NotDecimal)
        );
        assert_eq!(
            parse_trace(IdFormat::Decimal, &Scalar::Float(1.5)),
            Err(IdError::NotDecimal)
        );
        assert_eq!(
            parse_trace(IdFormat::Decimal, &Scalar::UInt(0)),
            Err(IdError::AllZero)
        );
        assert_eq!(
            to_hex(&parse_span(IdFormat::Decimal, &Scalar::UInt(1)).unwrap()),
            "0000000000000001"
        );
    }

    #[test]
    fn gcp() {
        let name = format!("projects/my-proj/traces/{T}");
        let (t, _) = parse_trace(IdFormat::Gcp, &Scalar::Str(&name)).unwrap();
        assert_eq!(to_hex(&t), T);
        assert_eq!(
            to_hex(&parse_trace(IdFormat::Gcp, &Scalar::Str(T)).unwrap().0),
            T
        );
        for bad in [
            "projects//traces/4bf92f3577b34da6a3ce929d0e0e4736",
            "traces/4bf92f3577b34da6a3ce929d0e0e4736",
            "projects/p/spans/4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert_eq!(
                parse_trace(IdFormat::Gcp, &Scalar::Str(bad)),
                Err(IdError::GcpName),
                "{bad}"
            );
        }
    }
}
