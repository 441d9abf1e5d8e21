//! Waiting-queue records read back from disk (corruption the CRC missed, other
//! versions): parsing never panics, and what parses re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_tail::record::{self, WaitRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = record::parse(data) else { return };
    let mut again = Vec::new();
    match &r {
        WaitRecord::Pending {
            fingerprint,
            trace,
            facts,
            tag,
            event,
        } => {
            record::write_pending(&mut again, *fingerprint, trace, facts, tag, &[], event);
            // Facts decode to a canonical form (trailing zero bytes dropped): compare
            // what they mean, not their bytes.
            match record::parse(&again).unwrap() {
                WaitRecord::Pending {
                    facts: f2,
                    tag: t2,
                    event: e2,
                    ..
                } => {
                    assert_eq!(&f2, facts);
                    assert_eq!((t2, e2), (*tag, *event));
                }
                other => panic!("{other:?}"),
            }
        }
        WaitRecord::Kept { tag, event } => {
            record::write_kept(&mut again, tag, &[], event);
            assert_eq!(again, data);
        }
        WaitRecord::Decisions(d) => {
            let v: Vec<_> = d.iter().collect();
            record::write_decisions(&mut again, &v);
            // A keep byte other than 0/1 reads as keep.
            assert_eq!(again.len(), data.len());
        }
        WaitRecord::Reported(ids) => {
            let v: Vec<_> = ids.iter().collect();
            record::write_reported(&mut again, &v);
            assert_eq!(again, data);
        }
    }
});
