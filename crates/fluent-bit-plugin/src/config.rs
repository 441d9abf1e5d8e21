//! Typed access to an instance's `[OUTPUT]` properties.
//!
//! Pure and safe: a [`Config`] is a key lookup function plus parsers. In a
//! plugin the lookup calls the host's `output_get_property`; in tests
//! [`Config::from_pairs`] builds one from a list. Values use Fluent Bit's own
//! notations: booleans `true/false/on/off/yes/no`, durations `30`, `5s`, `2m`,
//! `1h`, `1d` (plus `ms`), sizes `512`, `64K`, `1M`, `10MB`, `1.5G` (powers of
//! 1024, as Fluent Bit does). Every error names the key and the value.

#![deny(unsafe_code)]

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration error; its message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required key has no value.
    #[error("missing required configuration key `{key}`")]
    Missing {
        /// The key as asked for.
        key: String,
    },
    /// A key's value does not parse as the requested type.
    #[error("invalid value `{value}` for configuration key `{key}`: {reason}")]
    Invalid {
        /// The key as asked for.
        key: String,
        /// The value as found.
        value: String,
        /// What was expected.
        reason: String,
    },
}

/// A type that can be read from one property value.
pub trait FromProperty: Sized {
    /// Parses `value`; the error says what was expected (the caller adds the key).
    fn from_property(value: &str) -> Result<Self, String>;
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Read access to one instance's properties.
///
/// Keys are passed to the host as given; Fluent Bit compares them without
/// regard to case. An unset key and an empty value both read as absent (the
/// host stores an empty value as unset). Core keys that Fluent Bit consumes
/// itself (`match`, `alias`, `log_level`, `workers`, `retry_limit`, `host`,
/// `port`, `tls*`, ...) are not visible here.
pub struct Config<'a> {
    lookup: Lookup<'a>,
}

impl fmt::Debug for Config<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config").finish_non_exhaustive()
    }
}

impl<'a> Config<'a> {
    /// A config whose values come from `lookup` (returning `None` for unset).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Config {
            lookup: Box::new(lookup),
        }
    }

    /// A config from `(key, value)` pairs, matched without regard to case;
    /// the first pair for a key wins, as in Fluent Bit. For tests.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Config<'static> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        Config::from_fn(move |key| {
            owned
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        })
    }

    /// The raw value of `key`, `None` when unset or empty.
    pub fn raw(&self, key: &str) -> Option<String> {
        (self.lookup)(key).filter(|v| !v.is_empty())
    }

    /// The value of `key` parsed as `T`; `Ok(None)` when unset.
    pub fn get<T: FromProperty>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => {
                T::from_property(value.trim())
                    .map(Some)
                    .map_err(|reason| ConfigError::Invalid {
                        key: key.to_string(),
                        value,
                        reason,
                    })
            }
        }
    }

    /// The value of `key` parsed as `T`, or `default` when unset.
    pub fn get_or<T: FromProperty>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// The value of `key` parsed as `T`; an error when unset.
    pub fn require<T: FromProperty>(&self, key: &str) -> Result<T, ConfigError> {
        self.get(key)?.ok_or_else(|| ConfigError::Missing {
            key: key.to_string(),
        })
    }
}

impl FromProperty for String {
    fn from_property(value: &str) -> Result<Self, String> {
        Ok(value.to_string())
    }
}

impl FromProperty for PathBuf {
    fn from_property(value: &str) -> Result<Self, String> {
        Ok(PathBuf::from(value))
    }
}

impl FromProperty for bool {
    fn from_property(value: &str) -> Result<Self, String> {
        parse_bool(value)
    }
}

macro_rules! int_from_property {
    ($($t:ty),*) => {$(
        impl FromProperty for $t {
            fn from_property(value: &str) -> Result<Self, String> {
                value.parse::<$t>().map_err(|e| {
                    format!("expected an integer from {} to {} ({e})", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
int_from_property!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl FromProperty for f64 {
    fn from_property(value: &str) -> Result<Self, String> {
        match value.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err("expected a finite number".to_string()),
        }
    }
}

impl FromProperty for Duration {
    fn from_property(value: &str) -> Result<Self, String> {
        parse_duration(value)
    }
}

/// A size in bytes, read in Fluent Bit's notation (`64K`, `1M`, `10MB`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl FromProperty for ByteSize {
    fn from_property(value: &str) -> Result<Self, String> {
        parse_size(value).map(ByteSize)
    }
}

/// A comma-separated list (Fluent Bit's `clist`): items trimmed, empty items dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommaList(pub Vec<String>);

impl FromProperty for CommaList {
    fn from_property(value: &str) -> Result<Self, String> {
        Ok(CommaList(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }
}

/// Fluent Bit's booleans: `true/on/yes` and `false/off/no`, any case.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    let v = value.trim();
    for t in ["true", "on", "yes"] {
        if v.eq_ignore_ascii_case(t) {
            return Ok(true);
        }
    }
    for f in ["false", "off", "no"] {
        if v.eq_ignore_ascii_case(f) {
            return Ok(false);
        }
    }
    Err("expected a boolean: true, false, on, off, yes or no".to_string())
}

/// Splits `value` into a non-negative decimal number and a unit suffix.
fn split_number(value: &str) -> Option<(f64, &str)> {
    let v = value.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    Some((n, unit.trim()))
}

/// Durations: a number with an optional unit `ms`, `s`, `m`, `h` or `d`
/// (any case; no unit means seconds), e.g. `5`, `5s`, `1.5m`, `250ms`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration like 30, 5s, 250ms, 2m, 1h or 1d";
    let (n, unit) = split_number(value).ok_or_else(|| EXPECTED.to_string())?;
    let secs_per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(EXPECTED.to_string()),
    };
    Duration::try_from_secs_f64(n * secs_per_unit).map_err(|_| format!("{EXPECTED} (out of range)"))
}

/// Sizes in bytes: a number with an optional unit `K`, `M`, `G`, `T` (powers
/// of 1024), optionally followed by `B`, or `B` alone; any case. `false`
/// reads as 0, as in Fluent Bit.
pub fn parse_size(value: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size like 512, 64K, 1M, 10MB or 1.5G";
    if value.trim().eq_ignore_ascii_case("false") {
        return Ok(0);
    }
    let (n, unit) = split_number(value).ok_or_else(|| EXPECTED.to_string())?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit.strip_suffix('B').unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(EXPECTED.to_string()),
    };
    let bytes = n * mult as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{EXPECTED} (too large)"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_in_fluent_bit_notation() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 * 1024));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("10mb"), Ok(10 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("false"), Ok(0));
        for bad in [
            "",
            "M",
            "1X",
            "1MiB",
            "-1",
            "1.M",
            "1 2",
            "99999999999999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_in_fluent_bit_notation() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "5x", "-5s", "5 minutes", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn booleans_in_fluent_bit_notation() {
        for t in ["true", "On", "YES"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "off", "No"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("1").is_err());
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn get_with_defaults_and_errors_naming_the_key() {
        let cfg = Config::from_pairs(&[
            ("Batch_Size", "1M"),
            ("flush_interval", "5s"),
            ("retries", "three"),
            ("empty", ""),
            ("batch_size", "2M"),
        ]);
        // Case-insensitive, first one wins.
        assert_eq!(
            cfg.get::<ByteSize>("batch_size"),
            Ok(Some(ByteSize(1 << 20)))
        );
        assert_eq!(
            cfg.get_or("flush_interval", Duration::from_secs(1)),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(cfg.get_or("unset", 7u32), Ok(7));
        assert_eq!(cfg.get::<String>("empty"), Ok(None));
        let err = cfg.get::<u32>("retries").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`retries`") && msg.contains("`three`"),
            "{msg}"
        );
        let err = cfg.require::<String>("url").unwrap_err();
        assert_eq!(err, ConfigError::Missing { key: "url".into() });
        assert!(err.to_string().contains("`url`"));
    }

    #[test]
    fn comma_lists() {
        let cfg = Config::from_pairs(&[("labels", " a, b ,,c ")]);
        assert_eq!(
            cfg.get::<CommaList>("labels"),
            Ok(Some(CommaList(vec!["a".into(), "b".into(), "c".into()])))
        );
    }

    proptest! {
        #[test]
        fn sizes_roundtrip(n in 0u64..1_000_000, unit in 0usize..4, b in any::<bool>(), lower in any::<bool>()) {
            let (suffix, mult) = [("", 1u64), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)][unit];
            let mut text = format!("{n}{suffix}{}", if b && !suffix.is_empty() { "B" } else { "" });
            if lower { text = text.to_lowercase(); }
            prop_assert_eq!(parse_size(&text), Ok(n * mult));
        }

        #[test]
        fn durations_roundtrip(n in 0u64..100_000, unit in 0usize..5) {
            let (suffix, secs) = [("", 1u64), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)][unit];
            prop_assert_eq!(parse_duration(&format!("{n}{suffix}")), Ok(Duration::from_secs(n * secs)));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
            let _ = parse_bool(&s);
        }
    }
}
