//! Spool payloads read back from disk (corruption the CRC missed, other versions):
//! decoding never panics, whatever decodes re-encodes to an equal entry, and the drain's
//! in-place reading (`EntryRef::read`) reads only what serde's decoding reads, the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_ship::{EntryRef, SpooledEntry};

fn owned<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    it.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fuzz_target!(|data: &[u8]| {
    let decoded = SpooledEntry::decode(0, data);
    if let Ok(e) = &decoded {
        assert_eq!(&SpooledEntry::decode(0, &e.encode()).unwrap(), e);
        // What the flush path writes, the drain reads in place.
        assert!(EntryRef::read(&e.encode()).is_some());
    }
    if let Some(r) = EntryRef::read(data) {
        let e = decoded.expect("read in place, but serde cannot decode it");
        assert_eq!(r.tenant, e.tenant.as_deref());
        assert_eq!(owned(r.labels()), e.labels);
        assert_eq!(r.ts_ns, e.ts_ns);
        assert_eq!(r.line, e.line);
        assert_eq!(owned(r.structured_metadata()), e.structured_metadata);
    }
});
