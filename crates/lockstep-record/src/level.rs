//! Level normalisation: strings seen in the wild and the numeric schemes of OTel,
//! syslog, pino/bunyan, Python and zap, onto six levels.

use crate::Scalar;
use serde::{Deserialize, Serialize};

/// The normalised level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
    /// error or fatal: what the trace sampler's `status_code: ERROR` mirrors to.
    pub fn is_error(self) -> bool {
        matches!(self, Level::Error | Level::Fatal)
    }
}

/// How a numeric level value is read. Chosen per alias, because the schemes collide
/// (pino's 20 is debug, Python's 20 is info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberScheme {
    /// OTel SeverityNumber 1-24 in bands of four.
    Otel,
    /// syslog 0 emerg .. 7 debug.
    Syslog,
    /// pino / bunyan 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
    Pino,
    /// Python logging 10 debug, 20 info, 30 warning, 40 error, 50 critical.
    Python,
    /// zap -1 debug, 0 info, 1 warn, 2 error, 3 dpanic, 4 panic, 5 fatal.
    Zap,
    /// Numbers are not levels for this alias: reported unknown.
    None,
}

/// The state of the level in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LevelState {
    #[default]
    Absent,
    Known(Level),
    /// Present but not recognised; the raw text is in `Extracted::level_raw`.
    Unknown,
}

impl LevelState {
    pub fn known(self) -> Option<Level> {
        match self {
            LevelState::Known(l) => Some(l),
            _ => None,
        }
    }
}

/// Maps a number through a scheme.
pub fn from_number(scheme: NumberScheme, n: i64) -> Option<Level> {
    use Level::*;
    Some(match scheme {
        NumberScheme::Otel => match n {
            1..=4 => Trace,
            5..=8 => Debug,
            9..=12 => Info,
            13..=16 => Warn,
            17..=20 => Error,
            21..=24 => Fatal,
            _ => return None,
        },
        NumberScheme::Syslog => match n {
            0..=2 => Fatal,
            3 => Error,
            4 => Warn,
            5 | 6 => Info,
            7 => Debug,
            _ => return None,
        },
        NumberScheme::Pino => match n {
            10 => Trace,
            20 => Debug,
            30 => Info,
            40 => Warn,
            50 => Error,
            60 => Fatal,
            _ => return None,
        },
        NumberScheme::Python => match n {
            10 => Debug,
            20 => Info,
            30 => Warn,
            40 => Error,
            50 => Fatal,
            _ => return None,
        },
        NumberScheme::Zap => match n {
            -1 => Debug,
            0 => Info,
            1 => Warn,
            2 => Error,
            3..=5 => Fatal,
            _ => return None,
        },
        NumberScheme::None => return None,
    })
}

/// The level words, matched case-insensitively after trimming white space.
/// Sources: the variants listed in the facts file (Go loggers' 4-letter forms, glog's
/// single letters, syslog names, Google Cloud severities, Java's SEVERE/FINE).
const WORDS: &[(&str, Level)] = &[
    ("info", Level::Info),
    ("error", Level::Error),
    ("warn", Level::Warn),
    ("warning", Level::Warn),
    ("debug", Level::Debug),
    ("trace", Level::Trace),
    ("fatal", Level::Fatal),
    ("err", Level::Error),
    ("erro", Level::Error),
    ("eror", Level::Error),
    ("e", Level::Error),
    ("severe", Level::Error),
    ("crit", Level::Fatal),
    ("critical", Level::Fatal),
    ("fatl", Level::Fatal),
    ("fata", Level::Fatal),
    ("f", Level::Fatal),
    ("panic", Level::Fatal),
    ("pani", Level::Fatal),
    ("dpanic", Level::Fatal),
    ("alert", Level::Fatal),
    ("emerg", Level::Fatal),
    ("emergency", Level::Fatal),
    ("wrn", Level::Warn),
    ("w", Level::Warn),
    ("inf", Level::Info),
    ("i", Level::Info),
    ("information", Level::Info),
    ("informational", Level::Info),
    ("notice", Level::Info),
    ("dbug", Level::Debug),
    ("dbg", Level::Debug),
    ("d", Level::Debug),
    ("fine", Level::Debug),
    ("finer", Level::Debug),
    ("trce", Level::Trace),
    ("trc", Level::Trace),
    ("t", Level::Trace),
    ("finest", Level::Trace),
    ("verbose", Level::Trace),
];

/// Normalises a level word. Numbers written as strings go through `scheme`.
pub fn from_str(scheme: NumberScheme, s: &str) -> Option<Level> {
    let t = s.trim();
    if let Some(l) = from_word(t.as_bytes()) {
        return Some(l);
    }
    if let Some(l) = slog_offset(t) {
        return Some(l);
    }
    let n: i64 = t.parse().ok()?;
    from_number(scheme, n)
}

/// Go `log/slog`'s levels between the named ones, written `NAME+N` / `NAME-N`
/// (`ERROR+4`, `WARN-2`): slog's numbers are DEBUG -4, INFO 0, WARN 4, ERROR 8, so the
/// level is the named one's number plus the offset, read back onto the nearest named
/// level at or below it (ERROR+4 is error, WARN-2 is info, DEBUG-4 is trace).
pub fn slog_offset(t: &str) -> Option<Level> {
    let i = t.find(['+', '-'])?;
    let (name, off) = t.split_at(i);
    let base: i64 = match name.to_ascii_uppercase().as_str() {
        "DEBUG" => -4,
        "INFO" => 0,
        "WARN" => 4,
        "ERROR" => 8,
        _ => return None,
    };
    let digits = &off[1..];
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = off.parse().ok()?;
    Some(match base + n {
        v if v >= 8 => Level::Error,
        v if v >= 4 => Level::Warn,
        v if v >= 0 => Level::Info,
        v if v >= -4 => Level::Debug,
        _ => Level::Trace,
    })
}

/// A level word (any case), trimmed already: the word table only, no numbers.
#[inline]
pub(crate) fn from_word(t: &[u8]) -> Option<Level> {
    // Lowercased and packed into one integer (no word is longer than 16 bytes and none
    // holds a NUL), then compared with the packed table: no allocation, no byte loop
    // per entry (this runs for most records inside the WASM interpreter).
    if t.is_empty() || t.len() > 16 {
        return None;
    }
    if t.len() <= 8 {
        // Nearly every level word: one hashed probe of a 128-slot table instead of a
        // binary search over 128-bit keys (~240 instructions in the interpreter).
        let key = lower8(crate::fields::first_word(t));
        let mut h = short_slot(key);
        loop {
            let (k, l) = SHORT_WORDS[h & (SHORT_SLOTS - 1)];
            if k == key {
                return l;
            }
            if k == 0 {
                return None;
            }
            h += 1;
        }
    }
    let mut buf = [0u8; 16];
    buf[..t.len()].copy_from_slice(t);
    let packed = u128::from_le_bytes(buf);
    let key = u128::from(lower8(packed as u64)) | u128::from(lower8((packed >> 64) as u64)) << 64;
    PACKED_WORDS
        .binary_search_by(|(w, _)| w.cmp(&key))
        .ok()
        .map(|i| PACKED_WORDS[i].1)
}

/// ASCII-lowercases eight bytes at once.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let x7 = x & !HI;
    let ge_a = x7.wrapping_add(LO * 0x3f) & HI; // >= 'A' (no carry: bytes < 0x80)
    let gt_z = x7.wrapping_add(LO * 0x25) & HI; // > 'Z'
    let upper = ge_a & !gt_z & !(x & HI);
    x | (upper >> 2) // 0x80 >> 2 == 0x20
}

const fn pack(w: &str) -> u128 {
    let b = w.as_bytes();
    let mut buf = [0u8; 16];
    let mut i = 0;
    while i < b.len() {
        buf[i] = b[i];
        i += 1;
    }
    u128::from_le_bytes(buf)
}

const SHORT_SLOTS: usize = 128;

#[inline(always)]
const fn short_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize
}

/// The [`WORDS`] of at most eight bytes, packed into a word, in an open-addressed table
/// (a zero key marks an empty slot; no word packs to zero).
const SHORT_WORDS: [(u64, Option<Level>); SHORT_SLOTS] = {
    // At most half full, so a probe always meets an empty slot and stops.
    let mut short = 0;
    let mut i = 0;
    while i < WORDS.len() {
        if WORDS[i].0.len() <= 8 {
            short += 1;
        }
        i += 1;
    }
    assert!(
        short <= SHORT_SLOTS / 2,
        "SHORT_SLOTS too small for the level words"
    );
    let mut out = [(0u64, None); SHORT_SLOTS];
    let mut i = 0;
    while i < WORDS.len() {
        let b = WORDS[i].0.as_bytes();
        if b.len() <= 8 {
            let key = pack(WORDS[i].0) as u64;
            let mut h = short_slot(key);
            while out[h % SHORT_SLOTS].0 != 0 {
                h += 1;
            }
            out[h % SHORT_SLOTS] = (key, Some(WORDS[i].1));
        }
        i += 1;
    }
    out
};

/// [`WORDS`] packed, sorted by the packed value (binary search).
const PACKED_WORDS: [(u128, Level); WORDS.len()] = {
    let mut out = [(0u128, Level::Info); WORDS.len()];
    let mut i = 0;
    while i < WORDS.len() {
        assert!(WORDS[i].0.len() <= 16);
        out[i] = (pack(WORDS[i].0), WORDS[i].1);
        i += 1;
    }
    // insertion sort (const)
    let mut i = 1;
    while i < out.len() {
        let mut j = i;
        while j > 0 && out[j - 1].0 > out[j].0 {
            let t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
            j -= 1;
        }
        i += 1;
    }
    out
};

/// Normalises any scalar. `None` means present but unknown.
pub fn from_scalar(scheme: NumberScheme, v: &Scalar<'_>) -> Option<Level> {
    match *v {
        Scalar::Str(s) => from_str(scheme, s),
        Scalar::UInt(n) => from_number(scheme, i64::try_from(n).ok()?),
        Scalar::Int(n) => from_number(scheme, n),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => from_number(scheme, f as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn packed_word_lookup_equals_the_table() {
        use super::*;
        let mut words: Vec<String> = WORDS.iter().map(|(w, _)| w.to_string()).collect();
        words.extend(WORDS.iter().map(|(w, _)| w.to_uppercase()));
        words.extend(
            [
                "Warning",
                "eRRoR",
                "x",
                "",
                "informationalx",
                "INFO\u{e9}",
                "@",
                "[",
                "`",
                "{",
            ]
            .map(String::from),
        );
        for w in words {
            let want = WORDS
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(&w))
                .map(|(_, l)| *l);
            assert_eq!(from_word(w.as_bytes()), want, "{w:?}");
        }
    }

    use super::*;

    #[test]
    fn words_from_the_wild() {
        let cases = [
            ("ERR", Level::Error),
            ("ERRO", Level::Error),
            ("EROR", Level::Error),
            ("E", Level::Error),
            ("eror", Level::Error),
            ("CRIT", Level::Fatal),
            ("crit", Level::Fatal),
            ("FATL", Level::Fatal),
            ("FATA", Level::Fatal),
            ("PANI", Level::Fatal),
            ("panic", Level::Fatal),
            ("alert", Level::Fatal),
            ("emerg", Level::Fatal),
            ("critical", Level::Fatal),
            ("warning", Level::Warn),
            ("WARN", Level::Warn),
            ("W", Level::Warn),
            ("dbug", Level::Debug),
            ("trce", Level::Trace),
            ("ERROR", Level::Error),
            ("CRITICAL", Level::Fatal),
            ("ALERT", Level::Fatal),
            ("EMERGENCY", Level::Fatal),
            (" Info ", Level::Info),
            ("NOTICE", Level::Info),
        ];
        for (s, l) in cases {
            assert_eq!(from_str(NumberScheme::None, s), Some(l), "{s}");
        }
        for s in ["DEFAULT", "", "errorish", "nope"] {
            assert_eq!(from_str(NumberScheme::None, s), None, "{s}");
        }
    }

    #[test]
    fn slog_levels_with_offsets() {
        use super::*;
        for (w, l) in [
            ("ERROR+4", Level::Error),
            ("ERROR-2", Level::Warn),
            ("WARN-2", Level::Info),
            ("WARN+2", Level::Warn),
            ("INFO+4", Level::Warn),
            ("INFO-1", Level::Debug),
            ("DEBUG-4", Level::Trace),
            ("debug+4", Level::Info),
        ] {
            assert_eq!(from_str(NumberScheme::None, w), Some(l), "{w}");
        }
        for w in ["ERROR+", "ERROR+x", "LOUD+4", "+4", "ERROR+1234567"] {
            assert_eq!(from_str(NumberScheme::None, w), None, "{w}");
        }
    }

    #[test]
    fn numeric_schemes() {
        use Level::*;
        let otel = [
            (1, Trace),
            (4, Trace),
            (5, Debug),
            (9, Info),
            (13, Warn),
            (16, Warn),
            (17, Error),
            (20, Error),
            (21, Fatal),
            (24, Fatal),
        ];
        for (n, l) in otel {
            assert_eq!(from_number(NumberScheme::Otel, n), Some(l), "otel {n}");
        }
        assert_eq!(from_number(NumberScheme::Otel, 0), None);
        assert_eq!(from_number(NumberScheme::Otel, 25), None);
        let syslog = [
            (0, Fatal),
            (1, Fatal),
            (2, Fatal),
            (3, Error),
            (4, Warn),
            (5, Info),
            (6, Info),
            (7, Debug),
        ];
        for (n, l) in syslog {
            assert_eq!(from_number(NumberScheme::Syslog, n), Some(l), "syslog {n}");
        }
        assert_eq!(from_number(NumberScheme::Syslog, 8), None);
        let pino = [
            (10, Trace),
            (20, Debug),
            (30, Info),
            (40, Warn),
            (50, Error),
            (60, Fatal),
        ];
        for (n, l) in pino {
            assert_eq!(from_number(NumberScheme::Pino, n), Some(l), "pino {n}");
        }
        assert_eq!(from_number(NumberScheme::Pino, 35), None);
        let py = [
            (10, Debug),
            (20, Info),
            (30, Warn),
            (40, Error),
            (50, Fatal),
        ];
        for (n, l) in py {
            assert_eq!(from_number(NumberScheme::Python, n), Some(l), "python {n}");
        }
        let zap = [
            (-1, Debug),
            (0, Info),
            (1, Warn),
            (2, Error),
            (3, Fatal),
            (4, Fatal),
            (5, Fatal),
        ];
        for (n, l) in zap {
            assert_eq!(from_number(NumberScheme::Zap, n), Some(l), "zap {n}");
        }
        assert_eq!(from_number(NumberScheme::Zap, 6), None);
        assert_eq!(
            from_scalar(NumberScheme::Otel, &Scalar::Str("17")),
            Some(Error)
        );
        assert_eq!(
            from_scalar(NumberScheme::Pino, &Scalar::Float(50.0)),
            Some(Error)
        );
        assert_eq!(from_scalar(NumberScheme::Pino, &Scalar::Float(50.5)), None);
        assert_eq!(from_scalar(NumberScheme::None, &Scalar::UInt(50)), None);
        assert_eq!(from_scalar(NumberScheme::Pino, &Scalar::Bool(true)), None);
    }
}
