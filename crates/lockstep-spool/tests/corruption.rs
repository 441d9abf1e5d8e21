//! Corruption and power-loss style damage: torn tails at every offset, zero-filled tails,
//! flipped bits, zeroed and impossible lengths, truncated and deleted segments, damaged
//! checkpoints, random garbage. Recovery must never panic or loop, must keep every record
//! it can prove intact, and must count what it skipped.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use lockstep_spool::{inspect, Spool};

const SEG: u64 = 1024;

/// A closed spool with one segment holding `batches` batches of 3 records.
fn golden_single(dir: &Path, batches: usize) -> Vec<Vec<Vec<u8>>> {
    let s = Spool::open(dir, cfg(1 << 20)).unwrap();
    let b = fill(&s, batches, 3);
    drop(s);
    assert_eq!(segments(dir).len(), 1);
    b
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn flat(b: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    b.iter().flatten().cloned().collect()
}

#[test]
fn torn_tail_at_every_offset_keeps_whole_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let batches = golden_single(&golden, 4);
    let seg = segments(&golden)[0].clone();
    let offs = frame_offsets(&seg);
    let len = *offs.last().unwrap();
    // End offset of each batch (3 frames per batch).
    let batch_ends: Vec<u64> = (1..=batches.len()).map(|k| offs[3 * k]).collect();
    for cut in 0..=len {
        let d = tmp.path().join(format!("cut{cut}"));
        copy_dir(&golden, &d);
        let seg_d = d.join(seg.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&seg_d)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let s = Spool::open(&d, cfg(1 << 20)).unwrap();
        let g = s.gauges();
        let whole = batch_ends.iter().filter(|&&e| e <= cut).count();
        let expect = flat(&batches[..whole]);
        assert_eq!(g.records, expect.len() as u64, "cut at byte {cut}");
        assert_eq!(g.corrupt_records, 0, "cut at byte {cut}");
        let committed = if whole == 0 {
            16
        } else {
            batch_ends[whole - 1]
        };
        assert_eq!(
            g.torn_tail_bytes,
            cut.saturating_sub(committed),
            "cut {cut}"
        );
        // The tail was truncated on disk and the spool keeps working after it.
        assert_eq!(std::fs::metadata(&seg_d).unwrap().len(), committed.max(16));
        s.append_at(9, &[b"after".to_vec()]).unwrap();
        drop(s);
        let s = Spool::open(&d, cfg(1 << 20)).unwrap();
        let mut want = expect;
        want.push(b"after".to_vec());
        assert_eq!(drain(&s), want, "cut at byte {cut}");
        assert_eq!(s.gauges().torn_tail_bytes, 0);
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn zero_filled_tail_is_truncated_not_counted_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let batches = golden_single(&golden, 4);
    let seg = segments(&golden)[0].clone();
    let offs = frame_offsets(&seg);
    let len = *offs.last().unwrap();
    let batch_ends: Vec<u64> = (1..=batches.len()).map(|k| offs[3 * k]).collect();
    for zero_from in (16..len).step_by(7) {
        let d = tmp.path().join(format!("z{zero_from}"));
        copy_dir(&golden, &d);
        let seg_d = d.join(seg.file_name().unwrap());
        // Power loss on a filesystem that exposes unwritten extents as zeros; also extend
        // the file with zeros as a preallocating filesystem could.
        write_at(
            &seg_d,
            zero_from,
            &vec![0u8; (len - zero_from + 100) as usize],
        );
        let s = Spool::open(&d, cfg(1 << 20)).unwrap();
        let whole = batch_ends.iter().filter(|&&e| e <= zero_from).count();
        let g = s.gauges();
        assert_eq!(g.corrupt_records, 0, "zeros from {zero_from}");
        // Everything after the last whole batch, up to the zero-extended end.
        let committed = if whole == 0 {
            16
        } else {
            batch_ends[whole - 1]
        };
        assert_eq!(
            g.torn_tail_bytes,
            len + 100 - committed,
            "zeros from {zero_from}"
        );
        assert_eq!(drain(&s), flat(&batches[..whole]), "zeros from {zero_from}");
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Damage one byte of frame 4 (the 2nd record of batch 1, not the last batch) in every
/// possible way position by position: exactly that record is lost and counted.
#[test]
fn any_flipped_bit_in_a_middle_frame_loses_only_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let batches = golden_single(&golden, 4);
    let seg = segments(&golden)[0].clone();
    let offs = frame_offsets(&seg);
    let all = flat(&batches);
    let victim = 4;
    let mut expect = all.clone();
    expect.remove(victim);
    let data = std::fs::read(&seg).unwrap();
    for at in offs[victim]..offs[victim + 1] {
        for bit in [0u8, 3, 7] {
            let d = tmp.path().join(format!("f{at}-{bit}"));
            copy_dir(&golden, &d);
            let seg_d = d.join(seg.file_name().unwrap());
            write_at(&seg_d, at, &[data[at as usize] ^ (1 << bit)]);
            let before = std::fs::read(&seg_d).unwrap();
            // Read-only inspection sees the damage and changes nothing.
            let gi = inspect(&d).unwrap();
            assert_eq!(std::fs::read(&seg_d).unwrap(), before);
            assert_eq!((gi.records, gi.corrupt_records), (all.len() as u64 - 1, 1));
            let s = Spool::open(&d, cfg(1 << 20)).unwrap();
            let g = s.gauges();
            assert_eq!(g.corrupt_records, 1, "byte {at} bit {bit}");
            assert_eq!(g.records, all.len() as u64 - 1);
            assert_eq!(drain(&s), expect, "byte {at} bit {bit}");
            // Draining past the corruption does not count it twice.
            assert_eq!(s.gauges().corrupt_records, 1);
            drop(s);
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
}

#[test]
fn zeroed_and_impossible_lengths_resynchronise() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let batches = golden_single(&golden, 4);
    let seg = segments(&golden)[0].clone();
    let offs = frame_offsets(&seg);
    let all = flat(&batches);
    for (name, len_word, header_zero) in [
        ("zero-len", 0u32, false),
        ("huge-len", 0x7fff_ffff, false),
        ("past-eof", 10_000, false),
        ("zero-header", 0, true),
    ] {
        let d = tmp.path().join(name);
        copy_dir(&golden, &d);
        let seg_d = d.join(seg.file_name().unwrap());
        if header_zero {
            write_at(&seg_d, offs[2], &[0u8; 24]);
        } else {
            write_at(&seg_d, offs[2], &len_word.to_le_bytes());
        }
        let s = Spool::open(&d, cfg(1 << 20)).unwrap();
        assert_eq!(s.gauges().corrupt_records, 1, "{name}");
        let mut expect = all.clone();
        expect.remove(2);
        assert_eq!(drain(&s), expect, "{name}");
    }
}

/// A multi-segment spool; returns (segment paths, payloads per segment).
fn golden_multi(dir: &Path) -> (Vec<std::path::PathBuf>, Vec<Vec<Vec<u8>>>) {
    let s = Spool::open(dir, cfg(SEG)).unwrap();
    let mut per_seg: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut seen = 0;
    for b in 0..40 {
        let recs: Vec<Vec<u8>> = (0..3).map(|i| payload(b, i)).collect();
        s.append_at(b as u64, &recs).unwrap();
        let n = segments(dir).len();
        if n != seen {
            per_seg.push(Vec::new());
            seen = n;
        }
        per_seg.last_mut().unwrap().extend(recs);
    }
    drop(s);
    let segs = segments(dir);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    assert_eq!(segs.len(), per_seg.len());
    (segs, per_seg)
}

#[test]
fn deleted_middle_segment_loses_only_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let (segs, per_seg) = golden_multi(&golden);
    for (victim, seg) in segs.iter().enumerate() {
        let d = tmp.path().join(format!("del{victim}"));
        copy_dir(&golden, &d);
        std::fs::remove_file(d.join(seg.file_name().unwrap())).unwrap();
        let s = Spool::open(&d, cfg(SEG)).unwrap();
        let expect: Vec<Vec<u8>> = per_seg
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .flat_map(|(_, v)| v.clone())
            .collect();
        assert_eq!(s.gauges().records, expect.len() as u64);
        assert_eq!(drain(&s), expect, "deleted segment {victim}");
    }
}

#[test]
fn truncated_middle_segment_keeps_its_whole_batches_and_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let (segs, per_seg) = golden_multi(&golden);
    let victim = 1;
    let offs = frame_offsets(&segs[victim]);
    for cut in [0u64, 10, 16, offs[3] - 1, offs[3], offs[4] + 5] {
        let d = tmp.path().join(format!("t{cut}"));
        copy_dir(&golden, &d);
        let p = d.join(segs[victim].file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let s = Spool::open(&d, cfg(SEG)).unwrap();
        let kept = if cut >= offs[3] { 3 } else { 0 };
        let mut expect = per_seg[0].clone();
        expect.extend(per_seg[victim][..kept].iter().cloned());
        for v in &per_seg[victim + 1..] {
            expect.extend(v.iter().cloned());
        }
        assert_eq!(drain(&s), expect, "cut {cut}");
        assert_eq!(s.gauges().corrupt_records, 0);
    }
}

#[test]
fn damaged_checkpoint_replays_never_loses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let s = Spool::open(&dir, cfg(SEG)).unwrap();
    let batches = fill(&s, 20, 3);
    let all = flat(&batches);
    // Ack two batches of 5 records.
    for _ in 0..2 {
        let b = s.peek(5, 1 << 20).unwrap();
        s.ack(&b).unwrap();
    }
    drop(s);
    let ck = dir.join("checkpoint");
    let good = std::fs::read(&ck).unwrap();
    assert_eq!(good.len(), 128);

    // Tear the newest slot (generation 2 lives in slot 0): fall back to the previous ack.
    let d1 = tmp.path().join("torn");
    copy_dir(&dir, &d1);
    write_at(&d1.join("checkpoint"), 20, &[0xff]);
    let s = Spool::open(&d1, cfg(SEG)).unwrap();
    assert!(!s.gauges().checkpoint_corrupt);
    assert_eq!(drain(&s), all[5..].to_vec());
    drop(s);

    // One more ack puts generation 3 in slot 1: tearing it falls back to slot 0.
    let d4 = tmp.path().join("torn1");
    copy_dir(&dir, &d4);
    let s = Spool::open(&d4, cfg(SEG)).unwrap();
    let b = s.peek(5, 1 << 20).unwrap();
    s.ack(&b).unwrap();
    drop(s);
    let s = Spool::open(&d4, cfg(SEG)).unwrap();
    assert_eq!(drain(&s), all[15..].to_vec(), "newest slot 1 read");
    drop(s);
    let d5 = tmp.path().join("torn1b");
    copy_dir(&dir, &d5);
    let s = Spool::open(&d5, cfg(SEG)).unwrap();
    let b = s.peek(5, 1 << 20).unwrap();
    s.ack(&b).unwrap();
    drop(s);
    write_at(&d5.join("checkpoint"), 64 + 20, &[0xff]);
    let s = Spool::open(&d5, cfg(SEG)).unwrap();
    assert_eq!(drain(&s), all[10..].to_vec(), "torn slot 1, slot 0 read");
    drop(s);

    // Both slots bad: replay everything still on disk.
    let d2 = tmp.path().join("bad");
    copy_dir(&dir, &d2);
    std::fs::write(d2.join("checkpoint"), vec![0xAB; 128]).unwrap();
    assert!(inspect(&d2).unwrap().checkpoint_corrupt);
    let s = Spool::open(&d2, cfg(SEG)).unwrap();
    assert!(s.gauges().checkpoint_corrupt);
    let got = drain(&s);
    assert!(
        got.len() >= all.len() - 10,
        "replayed {} records",
        got.len()
    );
    assert_eq!(got[got.len() - (all.len() - 10)..], all[10..]);
    drop(s);
    // The checkpoint was rewritten: the next open is clean and replays nothing.
    let s = Spool::open(&d2, cfg(SEG)).unwrap();
    assert!(!s.gauges().checkpoint_corrupt);
    assert!(drain(&s).is_empty());
    drop(s);

    // Deleted checkpoint: same as never acked.
    let d3 = tmp.path().join("gone");
    copy_dir(&dir, &d3);
    std::fs::remove_file(d3.join("checkpoint")).unwrap();
    let s = Spool::open(&d3, cfg(SEG)).unwrap();
    let got = drain(&s);
    assert_eq!(got[got.len() - (all.len() - 10)..], all[10..]);
}

/// Random damage (overwrites, zero runs, truncations, deletions) on many copies: recovery
/// terminates, delivers records in order, every delivered record is an original one, and
/// untouched segments are delivered completely.
#[test]
fn random_damage_never_panics_and_delivers_only_intact_records() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let (segs, per_seg) = golden_multi(&golden);
    let all: Vec<Vec<u8>> = per_seg.iter().flatten().cloned().collect();
    let trials: u64 = std::env::var("LOCKSTEP_DAMAGE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    for seed in 1..=trials {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let d = tmp.path().join(format!("r{seed}"));
        copy_dir(&golden, &d);
        let mut touched = vec![false; segs.len()];
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(segs.len() as u64) as usize;
            touched[i] = true;
            let p = d.join(segs[i].file_name().unwrap());
            let Ok(data) = std::fs::read(&p) else {
                continue;
            };
            let len = data.len() as u64;
            match rng.below(5) {
                0 => {
                    let at = rng.below(len.max(1));
                    let junk: Vec<u8> = (0..1 + rng.below(40)).map(|_| rng.next() as u8).collect();
                    write_at(&p, at, &junk);
                }
                1 => {
                    let at = rng.below(len.max(1));
                    write_at(&p, at, &vec![0u8; 1 + rng.below(200) as usize]);
                }
                2 => {
                    let at = rng.below(len.max(1));
                    OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .unwrap()
                        .set_len(at)
                        .unwrap();
                }
                3 => {
                    let at = rng.below(len.max(1));
                    write_at(&p, at, &[data[at as usize] ^ (1 << rng.below(8))]);
                }
                _ => std::fs::remove_file(&p).unwrap(),
            }
        }
        let s = Spool::open(&d, cfg(SEG)).unwrap();
        let g = s.gauges();
        let got = drain(&s);
        assert_eq!(got.len() as u64, g.records, "seed {seed}");
        // In order, each an original record.
        let mut it = all.iter();
        for r in &got {
            assert!(
                it.any(|a| a == r),
                "seed {seed}: record out of order or invented"
            );
        }
        for (i, v) in per_seg.iter().enumerate() {
            if !touched[i] {
                for r in v {
                    assert!(
                        got.contains(r),
                        "seed {seed}: lost a record of untouched segment {i}"
                    );
                }
            }
        }
        drop(s);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
