//! Duration normalisation to milliseconds.
//!
//! A numeric value is read in the alias' unit. A string is read as: `-` or empty →
//! absent; a plain number → the alias' unit; a Go duration (`250ms`, `1.5s`, `1m2s`,
//! `3µs`) → its own units; an nginx list (`"0.1, 0.2"`, `"0.1 : 0.2"`, `-` items
//! skipped) → the sum of its items in the alias' unit.

use crate::Scalar;
use serde::{Deserialize, Serialize};

/// The unit of a duration alias' bare numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Ns,
    Us,
    Ms,
    S,
}

impl Unit {
    pub fn to_ms(self) -> f64 {
        match self {
            Unit::Ns => 1e-6,
            Unit::Us => 1e-3,
            Unit::Ms => 1.0,
            Unit::S => 1e3,
        }
    }
}

/// The state of the duration in a record.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum DurationState {
    #[default]
    Absent,
    /// Milliseconds, finite and non-negative.
    Ms(f64),
    /// Present but not a duration (negative, not a number, malformed string).
    Invalid,
}

impl DurationState {
    pub fn ms(self) -> Option<f64> {
        match self {
            DurationState::Ms(v) => Some(v),
            _ => None,
        }
    }
}

fn finite_ms(v: f64) -> DurationState {
    if v.is_finite() && v >= 0.0 {
        DurationState::Ms(v)
    } else {
        DurationState::Invalid
    }
}

/// A plain JSON-style decimal number (no units). Rejects Rust's extra forms (`inf`, `nan`, `+1`).
fn plain_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0].is_ascii_digit() || b[0] == b'-' || b[0] == b'.') {
        return None;
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E' | b'+'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses a Go `time.Duration` string into milliseconds.
pub fn go_duration_ms(s: &str) -> Option<f64> {
    let mut b = s.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = b.split_first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            b = rest;
        }
    }
    if b == b"0" {
        return Some(0.0);
    }
    if b.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !b.is_empty() {
        let n = b
            .iter()
            .position(|c| !(c.is_ascii_digit() || *c == b'.'))
            .unwrap_or(b.len());
        if n == 0 || b[..n].iter().filter(|&&c| c == b'.').count() > 1 || b[..n] == *b"." {
            return None;
        }
        // Safe: only ASCII digits and '.'.
        let num: f64 = std::str::from_utf8(&b[..n]).ok()?.parse().ok()?;
        b = &b[n..];
        let u = b
            .iter()
            .position(|c| c.is_ascii_digit() || *c == b'.')
            .unwrap_or(b.len());
        let factor = match &b[..u] {
            b"ns" => 1e-6,
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1e-3, // us, µs (micro sign), μs (Greek mu)
            b"ms" => 1.0,
            b"s" => 1e3,
            b"m" => 60e3,
            b"h" => 3600e3,
            _ => return None,
        };
        total += num * factor;
        b = &b[u..];
    }
    Some(if neg { -total } else { total })
}

/// Normalises a scalar read from an alias of unit `unit`.
pub fn from_scalar(unit: Unit, v: &Scalar<'_>) -> DurationState {
    let f = unit.to_ms();
    match *v {
        Scalar::UInt(n) => finite_ms(n as f64 * f),
        Scalar::Int(n) => finite_ms(n as f64 * f),
        Scalar::Float(x) => finite_ms(x * f),
        Scalar::Str(s) => from_str(unit, s),
        Scalar::Null => DurationState::Absent,
        _ => DurationState::Invalid,
    }
}

fn from_str(unit: Unit, s: &str) -> DurationState {
    let t = s.trim();
    if t.is_empty() || t == "-" {
        return DurationState::Absent;
    }
    if let Some(x) = plain_number(t) {
        return finite_ms(x * unit.to_ms());
    }
    if t.contains([',', ':']) {
        let mut sum = 0.0;
        let mut any = false;
        for part in t.split([',', ':']) {
            let p = part.trim();
            if p == "-" {
                continue;
            }
            match plain_number(p) {
                Some(x) if x.is_finite() && x >= 0.0 => {
                    sum += x * unit.to_ms();
                    any = true;
                }
                _ => return DurationState::Invalid,
            }
        }
        return if any {
            finite_ms(sum)
        } else {
            DurationState::Absent
        };
    }
    match go_duration_ms(t) {
        Some(ms) => finite_ms(ms),
        None => DurationState::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DurationState::*;

    #[test]
    fn units_of_numbers() {
        assert_eq!(from_scalar(Unit::Ms, &Scalar::UInt(250)), Ms(250.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Float(0.25)), Ms(250.0));
        assert_eq!(from_scalar(Unit::Ns, &Scalar::UInt(250_000_000)), Ms(250.0));
        assert_eq!(from_scalar(Unit::Us, &Scalar::UInt(250_000)), Ms(250.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Int(-1)), Invalid);
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Bool(true)), Invalid);
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Null), Absent);
    }

    #[test]
    fn strings() {
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("0.250")), Ms(250.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("250")), Ms(250.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("250ms")), Ms(250.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1.5s")), Ms(1500.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1m2s")), Ms(62000.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1h")), Ms(3_600_000.0));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1500µs")), Ms(1.5));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1500μs")), Ms(1.5));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("1500us")), Ms(1.5));
        assert_eq!(from_scalar(Unit::Ms, &Scalar::Str("2000000ns")), Ms(2.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("0.1, 0.2")), Ms(300.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("0.1 : 0.2")), Ms(300.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("-, 0.2")), Ms(200.0));
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("-")), Absent);
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("- , -")), Absent);
        assert_eq!(from_scalar(Unit::S, &Scalar::Str("")), Absent);
        for bad in [
            "fast",
            "1.2.3s",
            "5 parsecs",
            "1x",
            "-1s",
            "inf",
            "NaN",
            "0.1, x",
            "ms",
            ".s",
        ] {
            assert_eq!(from_scalar(Unit::S, &Scalar::Str(bad)), Invalid, "{bad}");
        }
        assert_eq!(go_duration_ms("0"), Some(0.0));
        assert_eq!(go_duration_ms("-1.5h"), Some(-5_400_000.0));
    }
}
