//! Fuzzes the flush-chunk decoder: any bytes must decode to events or one
//! error with in-range offsets, never panic, and every yielded view must be
//! fully walkable (iteratively: no recursion, like the decoder itself) and
//! renderable as JSON.
#![no_main]

use fluent_bit_plugin::decode::{Chunk, EventKind, ValueRef};
use libfuzzer_sys::fuzz_target;

/// Walks every value under `root` with an explicit stack; returns the count.
fn walk(root: ValueRef<'_>, len: usize) -> usize {
    let mut stack = vec![root];
    let mut n = 0;
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            ValueRef::Map(m) => {
                assert!(m.offset() + m.raw().len() <= len);
                let mut entries = 0;
                for (k, v) in m.iter() {
                    stack.push(k);
                    stack.push(v);
                    entries += 1;
                }
                assert_eq!(entries, m.len(), "a validated map yields all its entries");
            }
            ValueRef::Array(a) => {
                let mut items = 0;
                for v in a.iter() {
                    stack.push(v);
                    items += 1;
                }
                assert_eq!(items, a.len(), "a validated array yields all its items");
            }
            ValueRef::Str(s) => {
                let _ = s.to_str_lossy();
            }
            _ => {}
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let chunk = Chunk::new(data);
    let mut end = 0;
    let mut ok = 0;
    for result in chunk.events() {
        match result {
            Ok(e) => {
                assert_eq!(e.offset, end, "events are contiguous");
                end = e.offset + e.raw.len();
                assert!(end <= data.len());
                assert!(e.timestamp.nsec < 1_000_000_000);
                if e.kind != EventKind::Record {
                    assert!(e.timestamp.sec >= 0xFFFF_FFFE);
                }
                walk(ValueRef::Map(e.metadata), data.len());
                walk(ValueRef::Map(e.body), data.len());
                let json = e.body.to_json();
                assert!(json.starts_with('{') && json.ends_with('}'));
                ok += 1;
            }
            Err(err) => {
                assert_eq!(err.event_offset, end, "the error is in the next event");
                assert!(err.offset >= err.event_offset && err.offset <= data.len());
                assert_eq!(err.index, ok);
                let _ = err.to_string();
            }
        }
    }
    match chunk.validate() {
        Ok(n) => assert_eq!((n, end), (ok, data.len())),
        Err(e) => assert_eq!(e.index, ok),
    }
    for r in chunk.records() {
        if let Ok(r) = r {
            assert_eq!(r.event.kind, EventKind::Record);
        }
    }
});
