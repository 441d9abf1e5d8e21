//! The consumer checkpoint: two 64-byte slots, each with a CRC32C, written alternately in
//! place. A torn or lost write damages at most the slot being written; the reader takes the
//! valid slot with the highest generation, so the checkpoint moves atomically from one
//! value to the next (the technique of LMDB's meta pages), with one write and one
//! `fdatasync` per acknowledgement and no directory operation.
//!
//! Slot layout (little-endian): magic u32, version u32, generation u64, acked_next_seq u64,
//! dropped_records u64, dropped_bytes u64, dropped_segments u64, 8 reserved bytes,
//! 4 reserved bytes, CRC32C of bytes 0..60 as u32.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::sync::{OsSync, SyncHook, SyncKind};

const MAGIC: u32 = 0x5043_4b4c; // "LKCP"
const VERSION: u32 = 1;
const SLOT: usize = 64;

/// What a checkpoint records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CkptData {
    /// Incremented by every write.
    pub generation: u64,
    /// Every record with a smaller sequence number is acknowledged.
    pub acked_next_seq: u64,
    /// Records discarded by the `drop_oldest` policy, since the spool was created.
    pub dropped_records: u64,
    /// Their payload bytes.
    pub dropped_bytes: u64,
    /// Segments discarded by the `drop_oldest` policy.
    pub dropped_segments: u64,
}

fn encode(d: &CkptData) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&d.generation.to_le_bytes());
    b[16..24].copy_from_slice(&d.acked_next_seq.to_le_bytes());
    b[24..32].copy_from_slice(&d.dropped_records.to_le_bytes());
    b[32..40].copy_from_slice(&d.dropped_bytes.to_le_bytes());
    b[40..48].copy_from_slice(&d.dropped_segments.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<CkptData> {
    if b.len() < SLOT {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    if u32_at(0) != MAGIC || u32_at(4) != VERSION || crc32c::crc32c(&b[..60]) != u32_at(60) {
        return None;
    }
    Some(CkptData {
        generation: u64_at(8),
        acked_next_seq: u64_at(16),
        dropped_records: u64_at(24),
        dropped_bytes: u64_at(32),
        dropped_segments: u64_at(40),
    })
}

/// Outcome of reading a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CkptRead {
    /// No checkpoint file, or an empty one (nothing acknowledged yet).
    Missing,
    /// The newest valid slot.
    Valid(CkptData),
    /// The file holds bytes but no valid slot: everything is replayed.
    Corrupt,
}

/// Read the checkpoint at `path` without writing anything.
pub fn read(path: &Path) -> io::Result<CkptRead> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CkptRead::Missing),
        Err(e) => return Err(e),
    };
    Ok(from_bytes(&bytes))
}

/// Pick the newest valid slot of a checkpoint file's contents.
pub fn from_bytes(bytes: &[u8]) -> CkptRead {
    if bytes.is_empty() {
        return CkptRead::Missing;
    }
    let a = decode(bytes);
    let b = bytes.get(SLOT..).and_then(decode);
    match (a, b) {
        (Some(a), Some(b)) => CkptRead::Valid(if a.generation >= b.generation { a } else { b }),
        (Some(x), None) | (None, Some(x)) => CkptRead::Valid(x),
        (None, None) => CkptRead::Corrupt,
    }
}

/// Writes checkpoints; owned by the spool's writer.
pub struct CkptWriter {
    file: File,
    path: std::path::PathBuf,
    hook: Arc<dyn SyncHook>,
    /// Last value written (or read at open).
    pub data: CkptData,
}

impl std::fmt::Debug for CkptWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CkptWriter")
            .field("path", &self.path)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl CkptWriter {
    /// Open (creating with mode 0600) the checkpoint at `path`, continuing from `data`.
    /// Returns the writer and whether the file was created.
    pub fn open(path: &Path, data: CkptData) -> io::Result<(CkptWriter, bool)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let w = CkptWriter {
            file,
            path: path.to_path_buf(),
            hook: Arc::new(OsSync),
            data,
        };
        Ok((w, !existed))
    }

    /// Sync through `hook` instead of the kernel directly (tests).
    #[doc(hidden)]
    pub fn with_sync_hook(mut self, hook: Arc<dyn SyncHook>) -> CkptWriter {
        self.hook = hook;
        self
    }

    /// Write `data` (with the next generation) to the older slot and `fdatasync` it.
    pub fn write(&mut self, mut data: CkptData, sync: bool) -> io::Result<()> {
        data.generation = self.data.generation + 1;
        let slot = (data.generation % 2) * SLOT as u64;
        self.file.write_all_at(&encode(&data), slot)?;
        if sync {
            self.hook
                .sync(SyncKind::Checkpoint, &self.file, &self.path)?;
        }
        self.data = data;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_torn_slot_falls_back() {
        let d1 = CkptData {
            generation: 1,
            acked_next_seq: 10,
            ..Default::default()
        };
        let d2 = CkptData {
            generation: 2,
            acked_next_seq: 20,
            ..Default::default()
        };
        let mut f = vec![0u8; 2 * SLOT];
        f[SLOT..].copy_from_slice(&encode(&d1));
        f[..SLOT].copy_from_slice(&encode(&d2));
        assert_eq!(from_bytes(&f), CkptRead::Valid(d2));
        f[20] ^= 1; // tear the newer slot
        assert_eq!(from_bytes(&f), CkptRead::Valid(d1));
        f[SLOT + 20] ^= 1;
        assert_eq!(from_bytes(&f), CkptRead::Corrupt);
        assert_eq!(from_bytes(&[]), CkptRead::Missing);
    }

    #[test]
    fn newest_slot_wins_in_either_place() {
        let d = |generation, acked_next_seq| CkptData {
            generation,
            acked_next_seq,
            ..Default::default()
        };
        // Generation 3 in slot 1 (odd generations go there), 2 in slot 0.
        let mut f = vec![0u8; 2 * SLOT];
        f[..SLOT].copy_from_slice(&encode(&d(2, 20)));
        f[SLOT..].copy_from_slice(&encode(&d(3, 30)));
        assert_eq!(from_bytes(&f), CkptRead::Valid(d(3, 30)));
        f[SLOT + 20] ^= 1; // tear slot 1: back to slot 0
        assert_eq!(from_bytes(&f), CkptRead::Valid(d(2, 20)));
    }

    #[test]
    fn writes_alternate_slots_and_read_back_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let (mut w, created) = CkptWriter::open(&path, CkptData::default()).unwrap();
        assert!(created);
        for acked in 1..=4u64 {
            w.write(
                CkptData {
                    acked_next_seq: acked * 10,
                    ..Default::default()
                },
                true,
            )
            .unwrap();
            match read(&path).unwrap() {
                CkptRead::Valid(got) => {
                    assert_eq!((got.generation, got.acked_next_seq), (acked, acked * 10))
                }
                other => panic!("after write {acked}: {other:?}"),
            }
        }
    }
}
