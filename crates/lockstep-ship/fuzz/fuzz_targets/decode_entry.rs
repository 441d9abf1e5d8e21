//! Spool payloads read back from disk (corruption the CRC missed, other versions):
//! decoding never panics, and whatever decodes re-encodes to an equal entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_ship::SpooledEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = SpooledEntry::decode(0, data) {
        assert_eq!(SpooledEntry::decode(0, &e.encode()).unwrap(), e);
    }
});
