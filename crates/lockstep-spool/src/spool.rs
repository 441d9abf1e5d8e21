//! The writable spool: append with group commit, peek/ack for one consumer, recovery.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::checkpoint::{self, CkptData, CkptRead, CkptWriter};
use crate::frame::{self, Item, SegmentReader, FRAME_HEADER_LEN, SEG_HEADER_LEN};
use crate::sync::{OsSync, SyncHook, SyncKind};
use crate::{
    list_segments, seg_name, FullPolicy, Gauges, SpoolConfig, SpoolError, SyncMode, CKPT_FILE,
    LOCK_FILE,
};

type Result<T> = std::result::Result<T, SpoolError>;

/// A position in the log: segment (its first sequence number) and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    seg: u64,
    off: u64,
}

/// One record read from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (strictly increasing in append order).
    pub seq: u64,
    /// Timestamp given at append (ns since the epoch).
    pub ts_ns: u64,
    /// The payload as appended.
    pub payload: Vec<u8>,
}

/// Records returned by [`Spool::peek`]; pass it back to [`Spool::ack`] once delivered.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The records, oldest first.
    pub records: Vec<Record>,
    start: Pos,
    end: Pos,
    next_seq: u64,
    /// (segment, records, payload bytes) read from each segment.
    per_seg: Vec<(u64, u64, u64)>,
    /// Corrupt spans passed over: (segment, offset, length).
    corrupt: Vec<(u64, u64, u64)>,
    payload_bytes: u64,
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }
    /// No records (an empty batch may still pass over corrupt bytes; ack it anyway).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Sum of payload lengths.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }
    /// Corrupt spans this batch passes over.
    pub fn corrupt_spans(&self) -> usize {
        self.corrupt.len()
    }
}

/// Where an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the first record.
    pub first_seq: u64,
    /// Number of records.
    pub count: usize,
}

struct Seg {
    first_seq: u64,
    path: PathBuf,
    /// Open handle: kept for the segment being written, until a sealed one is synced, and
    /// for the one the consumer reads; other segments are opened on demand.
    file: Option<Arc<File>>,
    written_end: u64,
    durable_end: u64,
    /// Offsets below this were scanned at open (corruption there is already counted).
    scanned_end: u64,
    /// Valid unacknowledged records and their payload bytes.
    records: u64,
    bytes: u64,
}

impl Seg {
    fn file(&mut self) -> Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(&self.path).map_err(SpoolError::io(&self.path))?);
        self.file = Some(f.clone());
        Ok(f)
    }
}

struct State {
    segs: VecDeque<Seg>,
    next_seq: u64,
    cursor: Pos,
    acked_next_seq: u64,
    disk_bytes: u64,
    write_gen: u64,
    synced_gen: u64,
    syncing: bool,
    dir_dirty: bool,
    poisoned: Option<String>,
    corrupt_records: u64,
    corrupt_bytes: u64,
    torn_tail_bytes: u64,
    checkpoint_corrupt: bool,
    oldest: Option<(Pos, u64)>,
    scratch: Vec<u8>,
    syncs: u64,
}

struct Inner {
    dir: PathBuf,
    cfg: SpoolConfig,
    state: Mutex<State>,
    synced: Condvar,
    /// Never held while waiting for `state` (append may take it while holding `state`).
    ckpt: Mutex<CkptWriter>,
    dropped_records: AtomicU64,
    dropped_bytes: AtomicU64,
    dropped_segments: AtomicU64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    /// Every fsync goes through it.
    hook: Arc<dyn SyncHook>,
    _lock: File,
}

/// A spool opened for writing and consuming. `Send + Sync`: share it (e.g. in an `Arc`)
/// between the appending thread and the one consumer thread.
pub struct Spool {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_dir(hook: &dyn SyncHook, dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| hook.sync(SyncKind::Directory, &d, dir))
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(SpoolError::io(&path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(SpoolError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(SpoolError::Io {
            path,
            source: e.into(),
        }),
    }
}

impl Spool {
    /// Open (creating if needed) the spool in `dir`, recover it, and lock it.
    ///
    /// Recovery: segments entirely below the checkpoint are deleted unread; the others are
    /// scanned, torn tails truncated (and synced), corrupt spans counted; the consumer
    /// position is the first valid unacknowledged record.
    pub fn open(dir: impl AsRef<Path>, cfg: SpoolConfig) -> Result<Spool> {
        Spool::open_with_sync_hook(dir, cfg, Arc::new(OsSync))
    }

    /// [`Spool::open`], making files durable through `hook` instead of the kernel
    /// directly: for tests that record what each sync covered or make one fail.
    #[doc(hidden)]
    pub fn open_with_sync_hook(
        dir: impl AsRef<Path>,
        cfg: SpoolConfig,
        hook: Arc<dyn SyncHook>,
    ) -> Result<Spool> {
        cfg.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(SpoolError::io(&dir))?;
        let lock_file = lock_dir(&dir)?;

        let ckpt_path = dir.join(CKPT_FILE);
        let (ck, checkpoint_corrupt) =
            match checkpoint::read(&ckpt_path).map_err(SpoolError::io(&ckpt_path))? {
                CkptRead::Missing => (CkptData::default(), false),
                CkptRead::Valid(d) => (d, false),
                CkptRead::Corrupt => (CkptData::default(), true),
            };
        let acked = ck.acked_next_seq;
        let (ckw, created) =
            CkptWriter::open(&ckpt_path, ck).map_err(SpoolError::io(&ckpt_path))?;
        let mut ckw = ckw.with_sync_hook(hook.clone());
        let mut dir_dirty = created;
        if checkpoint_corrupt {
            // Replace the unreadable file so the next open does not report it again.
            ckw.write(ck, true).map_err(SpoolError::io(&ckpt_path))?;
        }

        let max_len = cfg.max_record_bytes;
        let listed = list_segments(&dir)?;
        let mut segs: VecDeque<Seg> = VecDeque::new();
        let mut cursor = None;
        let (mut corrupt_records, mut corrupt_bytes, mut torn) = (0u64, 0u64, 0u64);
        let mut next_seq = acked.max(1);
        for (i, (first, path)) in listed.iter().enumerate() {
            let is_last = i + 1 == listed.len();
            if !is_last && listed[i + 1].0 <= acked {
                std::fs::remove_file(path).map_err(SpoolError::io(path))?;
                dir_dirty = true;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(SpoolError::io(path))?;
            let len = file.metadata().map_err(SpoolError::io(path))?.len();
            let scan = frame::scan_segment(&file, len, *first, acked, max_len)
                .map_err(SpoolError::io(path))?;
            if !is_last && scan.records == 0 {
                // Nothing left to deliver in it.
                corrupt_records += scan.corrupt_records;
                corrupt_bytes += scan.corrupt_bytes;
                std::fs::remove_file(path).map_err(SpoolError::io(path))?;
                dir_dirty = true;
                if let Some(l) = scan.last_seq {
                    next_seq = next_seq.max(l + 1);
                }
                continue;
            }
            let mut end = scan.committed_end;
            if scan.header_missing {
                file.write_all_at(&frame::segment_header(*first), 0)
                    .map_err(SpoolError::io(path))?;
                end = SEG_HEADER_LEN;
            }
            if len > end || scan.header_missing {
                torn += len.saturating_sub(end);
                file.set_len(end).map_err(SpoolError::io(path))?;
                hook.sync(SyncKind::SegmentAll, &file, path)
                    .map_err(SpoolError::io(path))?;
            }
            corrupt_records += scan.corrupt_records;
            corrupt_bytes += scan.corrupt_bytes;
            next_seq = next_seq.max(*first);
            if let Some(l) = scan.last_seq {
                next_seq = next_seq.max(l + 1);
            }
            if cursor.is_none() {
                cursor = Some(Pos {
                    seg: *first,
                    off: scan.first_unacked.map_or(end, |(p, _)| p),
                });
            }
            segs.push_back(Seg {
                first_seq: *first,
                path: path.clone(),
                file: Some(Arc::new(file)),
                written_end: end,
                durable_end: end,
                scanned_end: end,
                records: scan.records,
                bytes: scan.bytes,
            });
        }
        // Release handles of middle segments: memory and descriptors stay O(1) per segment.
        let n = segs.len();
        for (i, s) in segs.iter_mut().enumerate() {
            if i != 0 && i + 1 != n {
                s.file = None;
            }
        }
        if segs.is_empty() {
            let path = dir.join(seg_name(next_seq));
            let file = new_segment_file(&path, next_seq)?;
            hook.sync(SyncKind::SegmentData, &file, &path)
                .map_err(SpoolError::io(&path))?;
            dir_dirty = true;
            cursor = Some(Pos {
                seg: next_seq,
                off: SEG_HEADER_LEN,
            });
            segs.push_back(Seg {
                first_seq: next_seq,
                path,
                file: Some(Arc::new(file)),
                written_end: SEG_HEADER_LEN,
                durable_end: SEG_HEADER_LEN,
                scanned_end: SEG_HEADER_LEN,
                records: 0,
                bytes: 0,
            });
        }
        if dir_dirty {
            sync_dir(&*hook, &dir).map_err(SpoolError::io(&dir))?;
        }
        let disk_bytes = segs.iter().map(|s| s.written_end).sum();
        let state = State {
            segs,
            next_seq,
            cursor: cursor.expect("set when a segment exists"),
            acked_next_seq: acked,
            disk_bytes,
            write_gen: 0,
            synced_gen: 0,
            syncing: false,
            dir_dirty: false,
            poisoned: None,
            corrupt_records,
            corrupt_bytes,
            torn_tail_bytes: torn,
            checkpoint_corrupt,
            oldest: None,
            scratch: Vec::new(),
            syncs: 0,
        };
        let inner = Arc::new(Inner {
            dir,
            state: Mutex::new(state),
            synced: Condvar::new(),
            ckpt: Mutex::new(ckw),
            dropped_records: AtomicU64::new(ck.dropped_records),
            dropped_bytes: AtomicU64::new(ck.dropped_bytes),
            dropped_segments: AtomicU64::new(ck.dropped_segments),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            hook,
            _lock: lock_file,
            cfg,
        });
        let flusher = match inner.cfg.sync {
            SyncMode::Always => None,
            SyncMode::Interval(every) => {
                let weak = Arc::downgrade(&inner);
                let h = std::thread::Builder::new()
                    .name("spool-sync".into())
                    .spawn(move || flusher(weak, every))
                    .map_err(SpoolError::io(&inner.dir))?;
                Some(h)
            }
        };
        Ok(Spool { inner, flusher })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &SpoolConfig {
        &self.inner.cfg
    }

    /// Append a batch stamped with the current wall-clock time. See [`Spool::append_at`].
    pub fn append<B: AsRef<[u8]>>(&self, records: &[B]) -> Result<Appended> {
        self.append_at(crate::now_ns(), records)
    }

    /// Append a batch of records stamped `ts_ns`, atomically: after a crash either all of
    /// them are on disk or none. With [`SyncMode::Always`] it returns once they are synced.
    pub fn append_at<B: AsRef<[u8]>>(&self, ts_ns: u64, records: &[B]) -> Result<Appended> {
        self.append_reserving(ts_ns, records, 0)
    }

    /// [`Spool::append_at`], leaving `reserve` bytes of the budget free: the append fails
    /// with [`SpoolError::Full`] (or, under [`FullPolicy::DropOldest`], drops segments)
    /// when it would leave less. Appends with a smaller reserve may use that room: the
    /// sampling stage keeps room for its decision records this way.
    pub fn append_reserving<B: AsRef<[u8]>>(
        &self,
        ts_ns: u64,
        records: &[B],
        reserve: u64,
    ) -> Result<Appended> {
        let inner = &*self.inner;
        let cfg = &inner.cfg;
        let mut needed = 0u64;
        for (index, r) in records.iter().enumerate() {
            let len = r.as_ref().len();
            if len > cfg.max_record_bytes as usize {
                return Err(SpoolError::RecordTooLarge {
                    index,
                    len,
                    max: cfg.max_record_bytes,
                });
            }
            needed += FRAME_HEADER_LEN + len as u64;
        }
        let mut st = lock(&inner.state);
        if records.is_empty() {
            return Ok(Appended {
                first_seq: st.next_seq,
                count: 0,
            });
        }
        if let Some(reason) = &st.poisoned {
            return Err(SpoolError::Poisoned {
                dir: inner.dir.clone(),
                reason: reason.clone(),
            });
        }
        if needed + SEG_HEADER_LEN > cfg.max_bytes {
            return Err(SpoolError::BatchTooLarge {
                needed,
                max: cfg.max_bytes,
            });
        }
        let active_end = st.segs.back().map_or(0, |s| s.written_end);
        if active_end > SEG_HEADER_LEN && active_end + needed > cfg.segment_bytes {
            inner.roll(&mut st)?;
        }
        let mut dropped = false;
        let limit = cfg.max_bytes.saturating_sub(reserve);
        while st.disk_bytes + needed > limit {
            let full = || SpoolError::Full {
                dir: inner.dir.clone(),
                used: st.disk_bytes,
                needed,
                max: limit,
            };
            match cfg.full_policy {
                FullPolicy::Block => return Err(full()),
                FullPolicy::DropOldest => {
                    if st.segs.len() > 1 {
                        inner.drop_front(&mut st);
                        dropped = true;
                    } else if st
                        .segs
                        .back()
                        .is_some_and(|s| s.written_end > SEG_HEADER_LEN)
                    {
                        inner.roll(&mut st)?;
                    } else {
                        return Err(full());
                    }
                }
            }
        }
        if dropped {
            // Persist the drop counters so another process sees them. Lock order: state,
            // then ckpt (ack never waits for state while holding ckpt).
            let mut ck = lock(&inner.ckpt);
            let data = inner.ckpt_data(ck.data.acked_next_seq);
            let path = inner.dir.join(CKPT_FILE);
            ck.write(data, true).map_err(SpoolError::io(path))?;
        }

        let first_seq = st.next_seq;
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        let mut payload = 0u64;
        for (i, r) in records.iter().enumerate() {
            let r = r.as_ref();
            payload += r.len() as u64;
            frame::encode_frame(
                &mut buf,
                first_seq + i as u64,
                ts_ns,
                r,
                i + 1 == records.len(),
            );
        }
        let seg = st.segs.back_mut().expect("a segment always exists");
        let off = seg.written_end;
        let file = seg.file()?;
        if let Err(e) = file.write_all_at(&buf, off) {
            // Take back a partial write; if that fails too, the bytes past written_end are
            // never read and are truncated as a torn tail at the next open.
            let _ = file.set_len(off);
            let path = seg.path.clone();
            st.scratch = buf;
            return Err(SpoolError::Io { path, source: e });
        }
        seg.written_end += buf.len() as u64;
        seg.records += records.len() as u64;
        seg.bytes += payload;
        st.disk_bytes += buf.len() as u64;
        st.next_seq += records.len() as u64;
        if buf.capacity() <= 4 << 20 {
            st.scratch = buf;
        }
        st.write_gen += 1;
        let my_gen = st.write_gen;
        if cfg.sync == SyncMode::Always {
            inner.wait_durable(st, my_gen)?;
        }
        Ok(Appended {
            first_seq,
            count: records.len(),
        })
    }

    /// Make everything appended so far durable (useful with [`SyncMode::Interval`]).
    pub fn sync(&self) -> Result<()> {
        let st = lock(&self.inner.state);
        let target = st.write_gen;
        self.inner.wait_durable(st, target)
    }

    /// The oldest unacknowledged records, at most `max_records` of them and at most
    /// `max_bytes` of payload (but at least one record if any is available). Does not
    /// remove them: peeking again returns the same records until [`Spool::ack`].
    /// Only synced records are returned.
    pub fn peek(&self, max_records: usize, max_bytes: usize) -> Result<Batch> {
        self.read_batch(max_records, max_bytes)
    }

    /// True when [`FullPolicy::DropOldest`](crate::FullPolicy::DropOldest) deleted at
    /// least part of `batch` after it was peeked. Those records are counted as dropped:
    /// the consumer should not deliver the batch but peek again (which returns what
    /// survived).
    pub fn overtaken(&self, batch: &Batch) -> bool {
        batch.start < lock(&self.inner.state).cursor
    }

    /// Acknowledge a batch returned by [`Spool::peek`]: the checkpoint is written and synced
    /// before this returns, then fully acknowledged segments are deleted.
    pub fn ack(&self, batch: &Batch) -> Result<()> {
        let inner = &*self.inner;
        {
            let st = lock(&inner.state);
            if batch.end <= st.cursor {
                return Ok(()); // already acknowledged, or dropped under the consumer
            }
            if batch.start > st.cursor {
                return Err(SpoolError::StaleAck {
                    seg: batch.start.seg,
                    offset: batch.start.off,
                    cur_seg: st.cursor.seg,
                    cur_offset: st.cursor.off,
                });
            }
        }
        let new_acked = {
            let mut ck = lock(&inner.ckpt);
            let acked = ck.data.acked_next_seq.max(batch.next_seq);
            if acked != ck.data.acked_next_seq {
                let data = inner.ckpt_data(acked);
                let path = inner.dir.join(CKPT_FILE);
                ck.write(data, true).map_err(SpoolError::io(path))?;
            }
            acked
        };
        let mut st = lock(&inner.state);
        if batch.end > st.cursor {
            st.cursor = batch.end;
        }
        st.acked_next_seq = st.acked_next_seq.max(new_acked);
        for &(seg, recs, bytes) in &batch.per_seg {
            if let Ok(i) = st.segs.binary_search_by_key(&seg, |s| s.first_seq) {
                let s = &mut st.segs[i];
                s.records = s.records.saturating_sub(recs);
                s.bytes = s.bytes.saturating_sub(bytes);
            }
        }
        for &(seg, off, len) in &batch.corrupt {
            let fresh = match st.segs.binary_search_by_key(&seg, |s| s.first_seq) {
                Ok(i) => off >= st.segs[i].scanned_end,
                Err(_) => false,
            };
            if fresh {
                st.corrupt_records += 1;
                st.corrupt_bytes += len;
            }
        }
        inner.gc(&mut st);
        Ok(())
    }

    /// Gauges from the files' state as this handle maintains it. Cheap: O(segments), plus
    /// reading one record header when the oldest record changed.
    pub fn gauges(&self) -> Gauges {
        let inner = &*self.inner;
        let (mut g, cursor, cached) = {
            let st = lock(&inner.state);
            let mut g = Gauges {
                records: st.segs.iter().map(|s| s.records).sum(),
                bytes: st.segs.iter().map(|s| s.bytes).sum(),
                disk_bytes: st.disk_bytes,
                segments: st.segs.len() as u64,
                oldest_ts_ns: None,
                next_seq: st.next_seq,
                acked_next_seq: st.acked_next_seq,
                corrupt_records: st.corrupt_records,
                corrupt_bytes: st.corrupt_bytes,
                torn_tail_bytes: st.torn_tail_bytes,
                dropped_records: inner.dropped_records.load(Ordering::Relaxed),
                dropped_bytes: inner.dropped_bytes.load(Ordering::Relaxed),
                dropped_segments: inner.dropped_segments.load(Ordering::Relaxed),
                checkpoint_corrupt: st.checkpoint_corrupt,
                syncs: st.syncs,
            };
            let cached = st.oldest.filter(|(p, _)| *p == st.cursor).map(|(_, ts)| ts);
            if g.records == 0 {
                g.oldest_ts_ns = None;
            }
            (g, st.cursor, cached)
        };
        if g.records > 0 {
            g.oldest_ts_ns = cached.or_else(|| {
                let b = self.read_batch(1, usize::MAX).ok()?;
                let r = b.records.first()?;
                if b.start == cursor {
                    lock(&inner.state).oldest = Some((cursor, r.ts_ns));
                }
                Some(r.ts_ns)
            });
        }
        g
    }

    /// The records after `prev` (a batch from [`Spool::peek`] or from this), for reading
    /// the whole unacknowledged backlog in bounded pieces without acknowledging any:
    /// a recovery scan. Acknowledging such a batch before the ones before it is an
    /// error ([`SpoolError::StaleAck`]). If `prev` was acknowledged or dropped under the
    /// caller, this reads from the oldest unacknowledged record instead.
    pub fn peek_after(&self, prev: &Batch, max_records: usize, max_bytes: usize) -> Result<Batch> {
        let (cursor, acked) = {
            let st = lock(&self.inner.state);
            (st.cursor, st.acked_next_seq)
        };
        if prev.end < cursor {
            return self.read_batch_from(cursor, acked, max_records, max_bytes);
        }
        self.read_batch_from(prev.end, prev.next_seq.max(acked), max_records, max_bytes)
    }

    fn read_batch(&self, max_records: usize, max_bytes: usize) -> Result<Batch> {
        let (start, acked) = {
            let st = lock(&self.inner.state);
            (st.cursor, st.acked_next_seq)
        };
        self.read_batch_from(start, acked, max_records, max_bytes)
    }

    fn read_batch_from(
        &self,
        start: Pos,
        acked: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch> {
        let inner = &*self.inner;
        let max_len = inner.cfg.max_record_bytes;
        let mut b = Batch {
            records: Vec::new(),
            start,
            end: start,
            next_seq: acked,
            per_seg: Vec::new(),
            corrupt: Vec::new(),
            payload_bytes: 0,
        };
        let mut pos = start;
        let mut min_seq = acked.max(1);
        if max_records == 0 {
            return Ok(b);
        }
        loop {
            let (file, path, vis_end, sealed_done, next_first) = {
                let mut st = lock(&inner.state);
                let idx = match st.segs.binary_search_by_key(&pos.seg, |s| s.first_seq) {
                    Ok(i) => i,
                    Err(i) => {
                        // Dropped under us: continue with the next segment.
                        let Some(s) = st.segs.get(i) else { break };
                        pos = Pos {
                            seg: s.first_seq,
                            off: SEG_HEADER_LEN,
                        };
                        min_seq = min_seq.max(s.first_seq);
                        i
                    }
                };
                let is_last = idx + 1 == st.segs.len();
                let next_first = st.segs.get(idx + 1).map(|s| s.first_seq);
                let seg = &mut st.segs[idx];
                let file = seg.file()?;
                let done = !is_last && seg.durable_end == seg.written_end;
                (file, seg.path.clone(), seg.durable_end, done, next_first)
            };
            let mut full = false;
            if pos.off < vis_end {
                let mut r = SegmentReader::new(&*file, pos.off, vis_end, min_seq, max_len);
                let (mut recs, mut bytes) = (0u64, 0u64);
                loop {
                    if b.records.len() >= max_records {
                        full = true;
                        break;
                    }
                    match r.next().map_err(SpoolError::io(&path))? {
                        None => break,
                        Some(Item::Frame(f)) => {
                            let len = u64::from(f.len);
                            if !b.records.is_empty() && (b.payload_bytes + len) > max_bytes as u64 {
                                full = true;
                                break;
                            }
                            let payload = r.payload(&f).map_err(SpoolError::io(&path))?.to_vec();
                            b.records.push(Record {
                                seq: f.seq,
                                ts_ns: f.ts_ns,
                                payload,
                            });
                            b.payload_bytes += len;
                            recs += 1;
                            bytes += len;
                            pos.off = f.end();
                            min_seq = f.seq + 1;
                            b.next_seq = b.next_seq.max(f.seq + 1);
                        }
                        Some(Item::Corrupt { pos: p, next: q }) => {
                            b.corrupt.push((pos.seg, p, q - p));
                            pos.off = q;
                        }
                        Some(Item::Tail { pos: p, end }) => {
                            b.corrupt.push((pos.seg, p, end - p));
                            pos.off = end.max(p);
                        }
                    }
                }
                if recs > 0 {
                    b.per_seg.push((pos.seg, recs, bytes));
                }
            }
            if full || !sealed_done || pos.off < vis_end {
                break;
            }
            match next_first {
                Some(n) => {
                    pos = Pos {
                        seg: n,
                        off: SEG_HEADER_LEN,
                    };
                    min_seq = min_seq.max(n);
                }
                None => break,
            }
        }
        b.end = pos;
        Ok(b)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        *lock(&self.inner.stop) = true;
        self.inner.stop_cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        let st = lock(&self.inner.state);
        let target = st.write_gen;
        let _ = self.inner.wait_durable(st, target);
    }
}

fn flusher(weak: std::sync::Weak<Inner>, every: std::time::Duration) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        {
            let stop = lock(&inner.stop);
            if *stop {
                return;
            }
            let (stop, _) = inner
                .stop_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let st = lock(&inner.state);
        let target = st.write_gen;
        // An error poisons the spool; appends report it.
        let _ = inner.wait_durable(st, target);
    }
}

fn new_segment_file(path: &Path, first_seq: u64) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(SpoolError::io(path))?;
    file.write_all_at(&frame::segment_header(first_seq), 0)
        .map_err(SpoolError::io(path))?;
    Ok(file)
}

impl Inner {
    fn ckpt_data(&self, acked_next_seq: u64) -> CkptData {
        CkptData {
            generation: 0,
            acked_next_seq,
            dropped_records: self.dropped_records.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
            dropped_segments: self.dropped_segments.load(Ordering::Relaxed),
        }
    }

    /// Start a new segment at `next_seq`.
    fn roll(&self, st: &mut State) -> Result<()> {
        let first = st.next_seq;
        let path = self.dir.join(seg_name(first));
        let file = new_segment_file(&path, first)?;
        st.segs.push_back(Seg {
            first_seq: first,
            path,
            file: Some(Arc::new(file)),
            written_end: SEG_HEADER_LEN,
            durable_end: 0,
            scanned_end: 0,
            records: 0,
            bytes: 0,
        });
        st.disk_bytes += SEG_HEADER_LEN;
        st.dir_dirty = true;
        self.gc(st);
        Ok(())
    }

    /// Discard the oldest segment (drop_oldest policy).
    fn drop_front(&self, st: &mut State) {
        let Some(s) = st.segs.pop_front() else { return };
        let _ = std::fs::remove_file(&s.path);
        st.disk_bytes -= s.written_end;
        self.dropped_records.fetch_add(s.records, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(s.bytes, Ordering::Relaxed);
        self.dropped_segments.fetch_add(1, Ordering::Relaxed);
        self.fix_cursor(st);
    }

    fn fix_cursor(&self, st: &mut State) {
        if let Some(h) = st.segs.front() {
            if st.cursor.seg < h.first_seq {
                st.cursor = Pos {
                    seg: h.first_seq,
                    off: SEG_HEADER_LEN,
                };
            }
        }
    }

    /// Delete sealed segments the consumer has read and acknowledged entirely.
    fn gc(&self, st: &mut State) {
        while st.segs.len() > 1 {
            let h = &st.segs[0];
            let consumed = st.cursor.seg > h.first_seq
                || (st.cursor.seg == h.first_seq
                    && st.cursor.off >= h.written_end
                    && h.durable_end == h.written_end);
            if !consumed {
                break;
            }
            // A failed unlink leaves a fully acknowledged file, deleted at the next open.
            let _ = std::fs::remove_file(&h.path);
            st.disk_bytes -= h.written_end;
            st.segs.pop_front();
            self.fix_cursor(st);
        }
    }

    /// Group commit: return once write generation `my_gen` is synced. One caller syncs
    /// every file written so far (and the directory after a new segment) while the others
    /// wait for it.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, State>, my_gen: u64) -> Result<()> {
        loop {
            if st.synced_gen >= my_gen {
                return Ok(());
            }
            if let Some(reason) = &st.poisoned {
                return Err(SpoolError::Poisoned {
                    dir: self.dir.clone(),
                    reason: reason.clone(),
                });
            }
            if st.syncing {
                st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let target = st.write_gen;
            let mut jobs = Vec::new();
            let mut open_err = None;
            for s in st.segs.iter_mut().rev() {
                if s.durable_end >= s.written_end {
                    break;
                }
                match s.file() {
                    Ok(f) => jobs.push((s.first_seq, f, s.path.clone(), s.written_end)),
                    Err(e) => {
                        open_err = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(reason) = open_err {
                st.poisoned = Some(reason);
                continue;
            }
            st.syncing = true;
            let dir = std::mem::take(&mut st.dir_dirty);
            drop(st);
            let mut res = Ok(());
            for (_, f, path, _) in jobs.iter().rev() {
                if let Err(e) = self.hook.sync(SyncKind::SegmentData, f, path) {
                    res = Err((path.clone(), e));
                    break;
                }
            }
            if res.is_ok() && dir {
                if let Err(e) = sync_dir(&*self.hook, &self.dir) {
                    res = Err((self.dir.clone(), e));
                }
            }
            st = lock(&self.state);
            st.syncing = false;
            match res {
                Ok(()) => {
                    st.syncs += 1;
                    st.synced_gen = st.synced_gen.max(target);
                    let n = st.segs.len();
                    for (first, _, _, end) in &jobs {
                        if let Ok(i) = st.segs.binary_search_by_key(first, |s| s.first_seq) {
                            let s = &mut st.segs[i];
                            s.durable_end = s.durable_end.max(*end);
                            if i != 0 && i + 1 != n && s.durable_end == s.written_end {
                                s.file = None;
                            }
                        }
                    }
                }
                Err((path, e)) => {
                    // fsync failure: the page cache may have dropped the data; never retry
                    // and pretend it is durable.
                    st.poisoned = Some(format!("fdatasync {}: {e}", path.display()));
                }
            }
            self.synced.notify_all();
        }
    }
}
