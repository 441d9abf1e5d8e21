//! Any bytes as a feed request body, in every encoding and compression the feed takes:
//! decoding never panics, and what it reports is consistent (every id it returns is
//! 16 bytes and not all zero; ids + invalid ≤ spans).
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_feed::{decode_body, Compression, Encoding, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_body_bytes: 1 << 20 };
    for enc in [Encoding::Protobuf, Encoding::Json] {
        for comp in [Compression::None, Compression::Gzip, Compression::Deflate] {
            if let Ok(r) = decode_body(data, enc, comp, &limits) {
                assert!(r.spans >= r.trace_ids.len() as u64 + r.invalid_ids);
                assert!(r.trace_ids.iter().all(|t| t.iter().any(|&b| b != 0)));
            }
        }
    }
});
