//! Reading configuration values as Fluent Bit does: C's `atoi` (its INT config maps) and
//! keys matched without case. Shared by `fluentbit` (the processors), `trace` (the tail
//! processor's `sampling_settings`) and `import`; imports nothing of the crate.

use serde_json::Value;

/// C `atoi` on the value's text form, as Fluent Bit's INT config maps read
/// `sampling_percentage` (`10.9` is 10, `"50"` is 50, `abc` is 0): glibc's
/// `(int) strtol(s, NULL, 10)`, so a value beyond 64 bits saturates and one beyond 32
/// bits wraps (`4294967296` is 0).
pub fn atoi(s: &str) -> i64 {
    i64::from(strtol(s) as i32)
}

/// `strtol(s, NULL, 10)`: leading white space, a sign, digits; saturating.
fn strtol(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        n.saturating_neg()
    } else {
        n
    }
}

/// The value of `key` in `m`, the key matched without case (as Fluent Bit's config
/// maps match property names).
pub(crate) fn key_ci<'v>(m: &'v serde_json::Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}
