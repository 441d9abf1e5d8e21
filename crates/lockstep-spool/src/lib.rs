//! lockstep-spool: a crash-safe, segmented, append-only disk queue with exactly one
//! consumer and gauges computed from what is on disk.
//!
//! It owns one directory. Producers [`Spool::append`] batches of opaque records (one Fluent
//! Bit chunk = one batch); one consumer [`Spool::peek`]s the oldest records and
//! [`Spool::ack`]s them after delivery. [`Spool`] is `Send + Sync`: the engine thread
//! appends while a drain thread peeks and acks.
//!
//! # Guarantees
//!
//! - **Durability.** With [`SyncMode::Always`] (the default) `append` returns `Ok` only
//!   after the records and any new directory entry are `fdatasync`ed: an acknowledged
//!   append survives `kill -9` and power loss. Concurrent appends share one `fdatasync`
//!   (group commit: one caller syncs everything written so far while the others wait).
//!   With [`SyncMode::Interval`] `append` returns after the `write(2)`; a background thread
//!   syncs at least every interval, so a power loss (not a process crash) can lose up to one
//!   interval of acknowledged appends. Either way the consumer only sees synced records.
//! - **Atomic appends.** A batch is all or nothing across a crash: its last frame carries
//!   an end-of-batch flag and recovery truncates a segment after its last complete batch.
//! - **Ordering.** Records are delivered in append order (sequence numbers strictly
//!   increase); one batch never spans two segments.
//! - **At-least-once.** `ack` writes the checkpoint (`fdatasync`ed) before returning. A
//!   crash between `peek` and `ack` replays that batch, and only records never acked.
//! - **Space.** A segment is deleted as soon as every record in it is acknowledged (and
//!   it is not the one being written): disk use falls while the backlog drains, with no
//!   compaction; after a full drain at most the segment being written remains.
//! - **Budget.** `max_bytes` bounds the segment files. When an append would exceed it,
//!   [`FullPolicy::Block`] fails the append with [`SpoolError::Full`] (nothing is written;
//!   the caller retries later) and [`FullPolicy::DropOldest`] deletes whole oldest segments,
//!   counted in the gauges and persisted in the checkpoint.
//! - **Corruption.** Every record carries a CRC32C. Recovery truncates a torn tail (a
//!   partial append, zero fill, garbage after the last complete batch) and skips a corrupt
//!   record (CRC mismatch, impossible length, zeroed header) by resynchronising on the next
//!   valid frame; what is lost is the corrupt bytes, plus, when the corruption hits the last
//!   batch of a segment, that whole batch (it cannot be told from a torn write). A missing or
//!   truncated segment loses only its own records. An unreadable checkpoint replays every
//!   record on disk (duplicates, never loss). Nothing here panics or loops on bad input:
//!   each step of the reader advances by at least one byte.
//! - **Bounded memory.** Memory is O(segments) (a few words each), whatever the backlog;
//!   recovery scans the files but keeps only counters and offsets. Only the head segment,
//!   the segment being written and segments awaiting their sync keep a file open.
//! - **Limits.** A frame longer than `max_record_bytes` is treated as corrupt when reading:
//!   do not lower that setting below the largest record already spooled.
//! - **Exclusive.** Files are created `0600`, the directory `0700`, and an `flock` on
//!   `LOCK` keeps a second process out ([`SpoolError::Locked`]).
//! - **Inspectable while live.** [`inspect`] and [`read_records`] open nothing for writing,
//!   take no lock, truncate nothing: they scan the files read-only, treat bytes after the
//!   last complete batch as an append in progress, and skip segments deleted under them.
//!
//! # Disk layout
//!
//! ```text
//! DIR/LOCK                        empty, flock(LOCK_EX) by the owning process
//! DIR/checkpoint                  two 64-byte CRC'd slots: acked position + drop counters
//! DIR/00000000000000000001.seg    segments, named by the first sequence number they may hold
//! DIR/00000000000000041234.seg    header b"LKSPSEG1" + first seq, then frames
//! ```
//! A frame is `len|flags u32, crc32c u32, seq u64, ts_ns u64, payload` (see [`frame`]).
//! Segments hold at most `segment_bytes`, except that a single batch larger than that gets
//! a segment of its own.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod frame;
mod readonly;
mod spool;
mod sync;

use std::path::PathBuf;
use std::time::Duration;

pub use readonly::{inspect, read_records};
pub use spool::{Appended, Batch, Record, Spool};
#[doc(hidden)]
pub use sync::{OsSync, SyncHook, SyncKind};

/// When appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` before `append` returns (group commit). Survives power loss.
    Always,
    /// `fdatasync` at least every given interval by a background thread; `append` returns
    /// after the write. Survives a process crash; a power loss can lose up to one interval.
    Interval(Duration),
}

/// What `append` does when the disk budget is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Fail with [`SpoolError::Full`]; nothing is written (the plugin answers FLB_RETRY).
    Block,
    /// Delete whole oldest segments until the batch fits; counted as dropped.
    DropOldest,
}

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Target size of one segment file (bytes).
    pub segment_bytes: u64,
    /// Budget for all segment files together (bytes).
    pub max_bytes: u64,
    /// Policy when the budget is exhausted.
    pub full_policy: FullPolicy,
    /// Durability mode.
    pub sync: SyncMode,
    /// Largest record payload accepted (and believed when reading).
    pub max_record_bytes: u32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            segment_bytes: 8 << 20,
            max_bytes: 1 << 30,
            full_policy: FullPolicy::Block,
            sync: SyncMode::Always,
            max_record_bytes: 16 << 20,
        }
    }
}

impl SpoolConfig {
    fn validate(&self) -> Result<(), SpoolError> {
        let bad = |m: String| Err(SpoolError::Config(m));
        if self.segment_bytes < 1024 {
            return bad(format!(
                "segment_bytes {} is below the minimum 1024",
                self.segment_bytes
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return bad(format!(
                "max_bytes {} must be at least twice segment_bytes {}",
                self.max_bytes, self.segment_bytes
            ));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > frame::MAX_FRAME_PAYLOAD {
            return bad(format!(
                "max_record_bytes {} must be in 1..={}",
                self.max_record_bytes,
                frame::MAX_FRAME_PAYLOAD
            ));
        }
        if let SyncMode::Interval(d) = self.sync {
            if d.is_zero() {
                return bad("sync interval must be > 0 ms".into());
            }
        }
        Ok(())
    }
}

/// Errors of the spool. Messages name the file and byte offset where there is one.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process (or handle) owns the directory.
    #[error("spool {dir} is locked by another process (flock on {dir}/LOCK)")]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// The append would exceed `max_bytes` under [`FullPolicy::Block`]; nothing was written.
    #[error("spool {dir} is full: {used} bytes used + {needed} needed > max_bytes {max}")]
    Full {
        /// The spool directory.
        dir: PathBuf,
        /// Bytes in segment files.
        used: u64,
        /// Bytes the batch needs.
        needed: u64,
        /// The budget.
        max: u64,
    },
    /// A record is larger than `max_record_bytes`; nothing was written.
    #[error("record {index} of the batch is {len} bytes, above max_record_bytes {max}")]
    RecordTooLarge {
        /// Index in the batch.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The batch can never fit in the budget; nothing was written.
    #[error("batch of {needed} bytes can never fit in max_bytes {max}")]
    BatchTooLarge {
        /// Bytes the batch needs.
        needed: u64,
        /// The budget.
        max: u64,
    },
    /// An `ack` for a batch that does not start at the consumer's position.
    #[error("ack of a batch starting at segment {seg} byte {offset} does not match the consumer position (segment {cur_seg} byte {cur_offset})")]
    StaleAck {
        /// Segment of the batch start.
        seg: u64,
        /// Offset of the batch start.
        offset: u64,
        /// Segment of the consumer position.
        cur_seg: u64,
        /// Offset of the consumer position.
        cur_offset: u64,
    },
    /// An earlier `fdatasync` failed: what was written may not be on disk, so the spool
    /// refuses further appends; reopen it to recover from what the disk holds.
    #[error("spool {dir} is poisoned after a failed sync: {reason}")]
    Poisoned {
        /// The spool directory.
        dir: PathBuf,
        /// The failure.
        reason: String,
    },
    /// Invalid configuration.
    #[error("invalid spool config: {0}")]
    Config(String),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl SpoolError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SpoolError {
        let path = path.into();
        move |source| SpoolError::Io { path, source }
    }
}

/// Gauges of a spool, computed from disk state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Valid records not yet acknowledged.
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Bytes of all segment files.
    pub disk_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Timestamp (ns since the epoch) of the oldest unacknowledged record.
    pub oldest_ts_ns: Option<u64>,
    /// Sequence number the next append gets (read-only view: one past the last seen).
    pub next_seq: u64,
    /// Every record below this sequence number is acknowledged.
    pub acked_next_seq: u64,
    /// Corrupt spans skipped (found at open/scan and while reading).
    pub corrupt_records: u64,
    /// Their bytes.
    pub corrupt_bytes: u64,
    /// Bytes truncated as torn tails at open (read-only: bytes after the last complete
    /// batch, possibly an append in progress).
    pub torn_tail_bytes: u64,
    /// Records dropped by `drop_oldest` since the spool was created.
    pub dropped_records: u64,
    /// Their payload bytes.
    pub dropped_bytes: u64,
    /// Segments dropped by `drop_oldest` since the spool was created.
    pub dropped_segments: u64,
    /// The checkpoint was unreadable at open: everything on disk is replayed.
    pub checkpoint_corrupt: bool,
    /// Group-commit sync rounds (`fdatasync` of the written segments) done by this handle;
    /// fewer than appends when concurrent appends share them. 0 in a read-only view.
    pub syncs: u64,
}

impl Gauges {
    /// Age of the oldest unacknowledged record at `now_ns` (0 if it is in the future).
    pub fn oldest_age(&self, now_ns: u64) -> Option<Duration> {
        self.oldest_ts_ns
            .map(|t| Duration::from_nanos(now_ns.saturating_sub(t)))
    }
}

/// Current wall-clock time in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const CKPT_FILE: &str = "checkpoint";

/// Segment file name for a first sequence number.
pub(crate) fn seg_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Segment files of `dir`, sorted by first sequence number.
pub(crate) fn list_segments(dir: &std::path::Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(SpoolError::io(dir))?;
    for e in rd {
        let e = e.map_err(SpoolError::io(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = stem.parse::<u64>() {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}
