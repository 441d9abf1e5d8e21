//! The probabilistic rule, bit-exact with the collector's `tail_sampling`
//! `probabilistic` policy.

/// Salt used when `hash_salt` is empty.
pub const DEFAULT_SALT: &str = "default-hash-seed";

/// FNV-1a 64 over `salt ++ trace id bytes` (Go's `hash/fnv` New64a).
pub fn hash_trace_id(salt: &[u8], trace_id: &[u8; 16]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.iter().chain(trace_id.iter()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `floor((2^64 - 1) * r)` with `r = pct / 100` as an f64, the product rounded to a
/// 64-bit mantissa (Go `big.Float` default precision, round half to even) and then
/// truncated to an unsigned integer, saturating — exactly what the collector computes.
/// A plain f64 product is one too high; exact decimal arithmetic is too low.
pub fn threshold(sampling_percentage: f64) -> u64 {
    let r = sampling_percentage / 100.0;
    if r.is_nan() || r <= 0.0 {
        return 0;
    }
    if r.is_infinite() {
        return u64::MAX;
    }
    // r = m * 2^e with m a 53-bit integer.
    let bits = r.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp_bits - 1075)
    };
    // Exact product P = (2^64 - 1) * m, at most 117 bits.
    let p: u128 = u128::from(u64::MAX) * u128::from(m);
    // Round P to 64 significant bits, half to even.
    let width = 128 - p.leading_zeros() as i32;
    let (mut q, mut e) = (p, e);
    if width > 64 {
        let shift = (width - 64) as u32;
        let dropped = q & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        q >>= shift;
        if dropped > half || (dropped == half && q & 1 == 1) {
            q += 1;
        }
        e += shift as i32;
    }
    // value = q * 2^e, truncated toward zero.
    if e >= 0 {
        if e >= 64
            || q.checked_shl(e as u32)
                .is_none_or(|v| v > u128::from(u64::MAX))
        {
            return u64::MAX;
        }
        return (q << e) as u64;
    }
    let s = (-e) as u32;
    let v = if s >= 128 { 0 } else { q >> s };
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Fluent Bit's `probabilistic` sampling type (5.1.1, `sampling_probabilistic.c`): the
/// first 8 bytes of the trace id read big-endian (`flb_net_htonll` of a `memcpy`),
/// `(n % 1_000_000) / 10_000.0 < percentage` with an integer percentage and a strict
/// comparison. No salt; bytes 8..16 are ignored. Fluent Bit hashes an id shorter than 16
/// bytes as 0, and a record without a trace id is treated the same way (`None`), so it is
/// kept whenever the percentage is above 0.
pub fn fluent_bit_keep(trace_id: Option<&[u8; 16]>, percentage: i64) -> bool {
    let n = trace_id.map_or(0, |id| {
        let mut first8 = [0u8; 8];
        first8.copy_from_slice(&id[..8]);
        u64::from_be_bytes(first8)
    });
    ((n % 1_000_000) as f64 / 10_000.0) < percentage as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(h: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for i in 0..16 {
            out[i] = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn fnv_vectors_from_the_facts_file() {
        let salt = DEFAULT_SALT.as_bytes();
        assert_eq!(
            hash_trace_id(salt, &tid("0af7651916cd43dd8448eb211c80319c")),
            0x33bf83d45f51634c
        );
        assert_eq!(
            hash_trace_id(salt, &tid("4bf92f3577b34da6a3ce929d0e0e4736")),
            0xa54533ba2e4970b5
        );
        assert_eq!(
            hash_trace_id(salt, &tid("ffffffffffffffffffffffffffffffff")),
            0x17bec3739634fe2d
        );
    }

    #[test]
    fn thresholds_from_the_facts_file() {
        assert_eq!(threshold(1.0), 0x028f5c28f5c28f5f);
        assert_eq!(threshold(10.0), 0x19999999999999ff);
        assert_eq!(threshold(25.0), 0x3fffffffffffffff);
        assert_eq!(threshold(50.0), 0x7fffffffffffffff);
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(100.0), u64::MAX);
        assert_eq!(threshold(150.0), u64::MAX);
        // the naive f64 product is one too high at 10 %
        assert_eq!((u64::MAX as f64 * 0.1) as u64, 0x1999999999999a00);
    }

    /// shared/facts/fluent-bit-sampling-processor.md §3, confirmed on a 5.1.1 binary.
    #[test]
    fn fluent_bit_vectors_from_the_facts_file() {
        let cases = [
            ("4bf92f3577b34da6a3ce929d0e0e4736", false, false),
            ("5b8aa5a2d2c872e8321cf37308d69df2", false, true),
            ("19581e27de7ced00ff1ce50b2047e7a5", true, true),
            ("00000000000186a0ffffffffffffffff", false, true),
            ("000000000001869fffffffffffffffff", true, true),
        ];
        for (t, at10, at50) in cases {
            assert_eq!(fluent_bit_keep(Some(&tid(t)), 10), at10, "{t} at 10%");
            assert_eq!(fluent_bit_keep(Some(&tid(t)), 50), at50, "{t} at 50%");
            assert!(
                !fluent_bit_keep(Some(&tid(t)), 0),
                "{t}: 0 drops everything"
            );
            assert!(
                fluent_bit_keep(Some(&tid(t)), 100),
                "{t}: 100 keeps everything"
            );
        }
        // The collector's rule decides these differently (the facts file's last column).
        let salt = DEFAULT_SALT.as_bytes();
        let collector = |t: &str, pct: f64| hash_trace_id(salt, &tid(t)) <= threshold(pct);
        assert!(!collector("19581e27de7ced00ff1ce50b2047e7a5", 10.0));
        assert!(!collector("5b8aa5a2d2c872e8321cf37308d69df2", 50.0));
        // No id: hashed as 0, kept whenever the percentage is above 0.
        assert!(fluent_bit_keep(None, 1));
        assert!(!fluent_bit_keep(None, 0));
        assert!(!fluent_bit_keep(None, -5));
    }

    #[test]
    fn keep_drop_at_the_vectors() {
        let salt = DEFAULT_SALT.as_bytes();
        let keep = |t: &str, pct: f64| hash_trace_id(salt, &tid(t)) <= threshold(pct);
        assert!(!keep("0af7651916cd43dd8448eb211c80319c", 10.0));
        assert!(keep("0af7651916cd43dd8448eb211c80319c", 25.0));
        assert!(!keep("4bf92f3577b34da6a3ce929d0e0e4736", 10.0));
        assert!(keep("ffffffffffffffffffffffffffffffff", 10.0));
    }
}
