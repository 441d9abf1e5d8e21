#![allow(dead_code)]
//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use lockstep_spool::{Spool, SpoolConfig};

pub fn cfg(segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        segment_bytes,
        max_bytes: 1 << 30,
        ..SpoolConfig::default()
    }
}

pub fn payload(batch: usize, idx: usize) -> Vec<u8> {
    format!(
        "batch{batch:04}-rec{idx:03}-{}",
        "x".repeat((batch * 7 + idx) % 13)
    )
    .into_bytes()
}

/// Append `batches` batches of `per` records; returns the payloads per batch.
pub fn fill(spool: &Spool, batches: usize, per: usize) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for b in 0..batches {
        let recs: Vec<Vec<u8>> = (0..per).map(|i| payload(b, i)).collect();
        spool.append_at(1_000 + b as u64, &recs).unwrap();
        out.push(recs);
    }
    out
}

/// Peek and ack until empty; returns the payloads in order.
pub fn drain(spool: &Spool) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for _ in 0..1_000_000 {
        let b = spool.peek(5, 1 << 20).unwrap();
        let empty = b.is_empty() && b.corrupt_spans() == 0;
        got.extend(b.records.iter().map(|r| r.payload.clone()));
        spool.ack(&b).unwrap();
        if empty {
            return got;
        }
    }
    panic!("drain did not terminate");
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Copy every file of `src` into a fresh directory `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Byte offsets where each frame of a (clean) segment starts, plus the file end.
pub fn frame_offsets(seg: &Path) -> Vec<u64> {
    let data = std::fs::read(seg).unwrap();
    let mut offs = Vec::new();
    let mut p = 16usize;
    while p + 24 <= data.len() {
        offs.push(p as u64);
        let len = u32::from_le_bytes(data[p..p + 4].try_into().unwrap()) & 0x7fff_ffff;
        p += 24 + len as usize;
    }
    offs.push(data.len() as u64);
    offs
}

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce from the printed seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A sync hook that calls the kernel and records, per file, the length it had when its
/// last sync began (what that sync is sure to cover), and the syncs made.
#[derive(Default)]
pub struct SyncLog {
    pub state: std::sync::Mutex<SyncLogState>,
}

#[derive(Default, Debug, Clone)]
pub struct SyncLogState {
    /// File path -> length when its last sync began.
    pub synced_len: std::collections::HashMap<PathBuf, u64>,
    /// Every sync, in order.
    pub calls: Vec<(lockstep_spool::SyncKind, PathBuf)>,
}

impl SyncLog {
    pub fn synced_len(&self, p: &Path) -> Option<u64> {
        self.state.lock().unwrap().synced_len.get(p).copied()
    }
    pub fn calls(&self) -> Vec<(lockstep_spool::SyncKind, PathBuf)> {
        self.state.lock().unwrap().calls.clone()
    }
}

impl lockstep_spool::SyncHook for SyncLog {
    fn sync(
        &self,
        kind: lockstep_spool::SyncKind,
        file: &std::fs::File,
        path: &Path,
    ) -> std::io::Result<()> {
        let len = file.metadata()?.len();
        lockstep_spool::OsSync.sync(kind, file, path)?;
        let mut st = self.state.lock().unwrap();
        st.synced_len.insert(path.to_path_buf(), len);
        st.calls.push((kind, path.to_path_buf()));
        Ok(())
    }
}
