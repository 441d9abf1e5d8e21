//! Fuzz the segment reader on arbitrary bytes and on valid segments with arbitrary damage.
//! Invariants: no panic, termination (each item advances), frames within bounds, the scan's
//! counters consistent with the reader, and every frame that passes its CRC is one that was
//! written (same sequence number, same payload).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_spool::frame::{
    encode_frame, scan_segment, segment_header, Item, SegmentReader, SEG_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let mode = data[0];
    let acked = u64::from(data[1] % 16);
    let max_len = 1 + u32::from(data[2]) * 8;
    let rest = &data[3..];
    // (offset, payload) of every frame written in structured mode.
    let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
    let seg: Vec<u8> = if mode & 1 == 0 {
        // Raw bytes, with a valid header half of the time.
        let mut v = Vec::new();
        if mode & 2 == 0 {
            v.extend_from_slice(&segment_header(1));
        }
        v.extend_from_slice(rest);
        v
    } else {
        // A valid segment built from the input, then damaged by it.
        let split = rest.len() / 2;
        let (build, damage) = rest.split_at(split);
        let mut v = segment_header(1).to_vec();
        let mut seq = 1u64;
        let mut i = 0;
        while i < build.len() {
            let len = (build[i] as usize % 40).min(build.len() - i - 1);
            let payload = &build[i + 1..i + 1 + len];
            let eob = build[i] & 0x80 != 0 || i + 1 + len >= build.len();
            written.push((v.len() as u64, payload.to_vec()));
            encode_frame(&mut v, seq, seq * 10, payload, eob);
            seq += 1;
            i += 1 + len;
        }
        for d in damage.chunks(3) {
            if d.len() < 3 || v.is_empty() {
                break;
            }
            let at = (usize::from(d[0]) << 8 | usize::from(d[1])) % v.len();
            match d[2] % 4 {
                0 => v[at] ^= 1 << (d[2] % 8),
                1 => v.truncate(at),
                2 => {
                    let end = (at + usize::from(d[2])).min(v.len());
                    v[at..end].iter_mut().for_each(|b| *b = 0);
                }
                _ => v[at] = d[2],
            }
        }
        v
    };
    let len = seg.len() as u64;
    let scan = scan_segment(&seg[..], len, 1, acked, max_len).expect("slices do not fail");
    if scan.header_missing {
        assert!(len < SEG_HEADER_LEN);
        return;
    }
    assert!(scan.committed_end >= SEG_HEADER_LEN && scan.committed_end <= len);
    assert_eq!(scan.committed_end + scan.tail_bytes, len);

    let mut r = SegmentReader::new(&seg[..], SEG_HEADER_LEN, len, 1, max_len);
    let mut pos = SEG_HEADER_LEN;
    let mut steps = 0u64;
    let mut last_seq = 0u64;
    let mut unacked_committed = 0u64;
    while let Some(item) = r.next().expect("slices do not fail") {
        steps += 1;
        assert!(steps <= len + 1, "reader does not advance");
        match item {
            Item::Frame(f) => {
                assert_eq!(f.pos, pos);
                assert!(f.end() <= len && f.len <= max_len);
                assert!(f.seq > last_seq, "sequence numbers must increase");
                last_seq = f.seq;
                let payload = r.payload(&f).expect("payload in bounds").to_vec();
                // A frame found where one was written must be that frame, unaltered: its
                // header is the written one, so a passing CRC means the same sequence
                // number, time and payload. (Elsewhere, after a corrupt span, a frame
                // encoded inside a payload can be picked up: that is the resync's known
                // limit, narrowed by the sequence window.)
                if let Some(i) = written.iter().position(|w| w.0 == f.pos) {
                    assert_eq!(f.seq, i as u64 + 1, "frame at a written offset renumbered");
                    assert_eq!(payload, written[i].1, "frame passed its CRC altered");
                    assert_eq!(f.ts_ns, f.seq * 10);
                }
                if f.seq >= acked && f.end() <= scan.committed_end {
                    unacked_committed += 1;
                }
                pos = f.end();
            }
            Item::Corrupt { pos: p, next } => {
                assert_eq!(p, pos);
                assert!(next > p && next <= len);
                pos = next;
            }
            Item::Tail { pos: p, end } => {
                assert_eq!(p, pos);
                assert_eq!(end, len);
                pos = end;
            }
        }
    }
    assert_eq!(pos, len);
    assert_eq!(scan.records, unacked_committed);
});
