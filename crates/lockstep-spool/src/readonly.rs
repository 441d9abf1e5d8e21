//! Read-only views of a spool directory, safe on a live spool owned by another process:
//! no lock is taken, nothing is opened for writing, nothing is truncated or deleted.
//!
//! Races with the owner are benign: a segment deleted between listing and opening is
//! skipped (it was fully acknowledged or dropped); bytes after the last complete append of
//! a segment are reported as `torn_tail_bytes` (on a live spool: an append in progress);
//! a checkpoint slot torn by a concurrent write fails its CRC and the other slot is used.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::checkpoint::{self, CkptRead};
use crate::frame::{self, Item, SegmentReader, MAX_FRAME_PAYLOAD, SEG_HEADER_LEN};
use crate::{list_segments, Gauges, Record, SpoolError, CKPT_FILE};

struct View {
    acked: u64,
    gauges: Gauges,
}

fn read_ckpt(dir: &Path) -> Result<View, SpoolError> {
    if !dir.is_dir() {
        return Err(SpoolError::Io {
            path: dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "not a spool directory"),
        });
    }
    let path = dir.join(CKPT_FILE);
    let mut g = Gauges::default();
    let acked = match checkpoint::read(&path).map_err(SpoolError::io(&path))? {
        CkptRead::Missing => 0,
        CkptRead::Corrupt => {
            g.checkpoint_corrupt = true;
            0
        }
        CkptRead::Valid(d) => {
            g.dropped_records = d.dropped_records;
            g.dropped_bytes = d.dropped_bytes;
            g.dropped_segments = d.dropped_segments;
            d.acked_next_seq
        }
    };
    g.acked_next_seq = acked;
    g.next_seq = acked.max(1);
    Ok(View { acked, gauges: g })
}

fn open_seg(path: &Path) -> Result<Option<(File, u64)>, SpoolError> {
    match File::open(path) {
        Ok(f) => {
            let len = f.metadata().map_err(SpoolError::io(path))?.len();
            Ok(Some((f, len)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Gauges of the spool in `dir`, computed by a read-only scan of its files (see the module
/// doc for why this is safe on a live spool). Costs one read of the backlog.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Gauges, SpoolError> {
    let dir = dir.as_ref();
    let View { acked, mut gauges } = read_ckpt(dir)?;
    let g = &mut gauges;
    let segs = list_segments(dir)?;
    for (i, (first, path)) in segs.iter().enumerate() {
        let Some((file, len)) = open_seg(path)? else {
            continue;
        };
        g.segments += 1;
        g.disk_bytes += len;
        g.next_seq = g.next_seq.max(*first);
        if i + 1 < segs.len() && segs[i + 1].0 <= acked {
            continue; // fully acknowledged, awaiting deletion
        }
        let scan = frame::scan_segment(&file, len, *first, acked, MAX_FRAME_PAYLOAD)
            .map_err(SpoolError::io(path))?;
        g.records += scan.records;
        g.bytes += scan.bytes;
        g.corrupt_records += scan.corrupt_records;
        g.corrupt_bytes += scan.corrupt_bytes;
        g.torn_tail_bytes += scan.tail_bytes;
        if g.oldest_ts_ns.is_none() {
            g.oldest_ts_ns = scan.first_unacked.map(|(_, ts)| ts);
        }
        if let Some(l) = scan.last_seq {
            g.next_seq = g.next_seq.max(l + 1);
        }
    }
    Ok(gauges)
}

/// The oldest `limit` unacknowledged records of the spool in `dir`, read-only.
pub fn read_records(dir: impl AsRef<Path>, limit: usize) -> Result<Vec<Record>, SpoolError> {
    let dir = dir.as_ref();
    let View { acked, .. } = read_ckpt(dir)?;
    let segs = list_segments(dir)?;
    let mut out = Vec::new();
    for (i, (first, path)) in segs.iter().enumerate() {
        if out.len() >= limit {
            break;
        }
        if i + 1 < segs.len() && segs[i + 1].0 <= acked {
            continue;
        }
        let Some((file, len)) = open_seg(path)? else {
            continue;
        };
        let scan = frame::scan_segment(&file, len, *first, acked, MAX_FRAME_PAYLOAD)
            .map_err(SpoolError::io(path))?;
        let mut r = SegmentReader::new(
            &file,
            SEG_HEADER_LEN,
            scan.committed_end,
            *first,
            MAX_FRAME_PAYLOAD,
        );
        while out.len() < limit {
            match r.next().map_err(SpoolError::io(path))? {
                None | Some(Item::Tail { .. }) => break,
                Some(Item::Corrupt { .. }) => {}
                Some(Item::Frame(f)) => {
                    if f.seq >= acked {
                        let payload = r.payload(&f).map_err(SpoolError::io(path))?.to_vec();
                        out.push(Record {
                            seq: f.seq,
                            ts_ns: f.ts_ns,
                            payload,
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}
