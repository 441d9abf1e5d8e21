//! The one place the spool makes files durable. Every `fsync`/`fdatasync` goes through a
//! [`SyncHook`]: the default one calls the kernel; tests pass their own to record what a
//! power loss would keep, or to make a sync fail.

use std::fs::File;
use std::io;
use std::path::Path;

/// What a sync makes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// A segment's appended bytes (`fdatasync`).
    SegmentData,
    /// A segment whose length changed at recovery (`fsync`: the new length too).
    SegmentAll,
    /// The checkpoint, rewritten in place (`fdatasync`).
    Checkpoint,
    /// The directory: segment files created or deleted (`fsync`).
    Directory,
}

/// Makes one file durable. Not a stable interface: it exists so tests can observe or fail
/// the spool's syncs ([`Spool::open_with_sync_hook`](crate::Spool::open_with_sync_hook)).
#[doc(hidden)]
pub trait SyncHook: Send + Sync {
    /// Sync `file` (opened from `path`) as `kind` requires; an error poisons appends (a
    /// segment) or fails the call (checkpoint, recovery).
    fn sync(&self, kind: SyncKind, file: &File, path: &Path) -> io::Result<()>;
}

/// The kernel's `fdatasync`/`fsync`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSync;

impl SyncHook for OsSync {
    fn sync(&self, kind: SyncKind, file: &File, _path: &Path) -> io::Result<()> {
        match kind {
            SyncKind::SegmentData | SyncKind::Checkpoint => file.sync_data(),
            SyncKind::SegmentAll | SyncKind::Directory => file.sync_all(),
        }
    }
}
