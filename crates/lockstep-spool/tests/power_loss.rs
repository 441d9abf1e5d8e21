//! Power loss, simulated. `kill -9` keeps the page cache, so `crash.rs` cannot see a
//! missing sync; this test can. Every sync the spool makes goes through a hook that
//! records what it covered (a segment's length, the checkpoint's bytes, the directory's
//! entries). Just before each sync, the hook takes the image a power cut at that moment
//! would leave:
//!
//! - strict: each segment cut back to its synced length, the checkpoint as last synced,
//!   entries created since the last directory sync gone;
//! - partial write-back: each segment cut at a random point between synced and written,
//!   the checkpoint torn at a random byte between its synced and written contents,
//!   unsynced entries kept or not at random.
//!
//! Each image is recovered and must hold exactly the records of the appends that
//! returned `Ok`, minus those whose `ack` returned `Ok`, in order; the append or ack in
//! progress at the cut may have landed, whole, or not at all. The workload appends,
//! peeks, acks and reopens a spool with small segments, so cuts land inside appends,
//! acks, segment rolls, deletions and recovery.
//!
//! Operations: `LOCKSTEP_POWER_CUT_OPS` (default 1000).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::Rng;
use lockstep_spool::{Spool, SpoolConfig, SyncHook, SyncKind};

type Id = (u64, u64); // (batch, index)

/// What the workload has been told, at the moment of a cut.
#[derive(Debug, Clone, Default)]
struct Told {
    /// Records of appends that returned Ok, in order.
    appended: Vec<Id>,
    /// Records of the append in progress.
    appending: Vec<Id>,
    /// How many of `appended` were acknowledged by acks that returned Ok.
    acked: usize,
    /// The ack in progress: the value of `acked` once it lands.
    acking: Option<usize>,
    /// The operation in progress.
    op: String,
}

/// Directory contents a power cut would leave, and what the workload knew then.
struct Image {
    files: Vec<(OsString, Vec<u8>)>,
    told: Told,
    what: String,
}

/// What the last syncs made durable.
#[derive(Default)]
struct Durable {
    /// Segment name -> length when its last sync began.
    seg_len: HashMap<OsString, u64>,
    /// Checkpoint contents when its last sync began.
    ckpt: Option<Vec<u8>>,
    /// Entries of the directory when its last sync began.
    entries: Option<BTreeSet<OsString>>,
}

struct Cuts {
    durable: Durable,
    rng: Rng,
    images: Vec<Image>,
    kinds: Vec<SyncKind>,
}

/// The hook: takes the images before each sync, then records what the sync covers. It
/// never calls the kernel: durability here is what the records say.
struct PowerCut {
    dir: PathBuf,
    told: Arc<Mutex<Told>>,
    cuts: Mutex<Cuts>,
}

fn names(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

fn is_seg(name: &OsString) -> bool {
    name.to_string_lossy().ends_with(".seg")
}

impl PowerCut {
    fn image(&self, c: &mut Cuts, partial: bool, what: String) -> Image {
        let mut files = Vec::new();
        for name in names(&self.dir) {
            let durable_entry = c
                .durable
                .entries
                .as_ref()
                .is_some_and(|e| e.contains(&name));
            // An unsynced entry may have reached the disk, or not.
            let kept = durable_entry || (partial && c.rng.below(2) == 0);
            if !kept {
                continue;
            }
            let live = std::fs::read(self.dir.join(&name)).unwrap();
            let bytes = if is_seg(&name) {
                let synced = c.durable.seg_len.get(&name).copied().unwrap_or(0);
                let synced = (synced as usize).min(live.len());
                let keep = if partial {
                    synced + c.rng.below((live.len() - synced + 1) as u64) as usize
                } else {
                    synced
                };
                live[..keep].to_vec()
            } else if name == "checkpoint" {
                let synced = c.durable.ckpt.clone().unwrap_or_default();
                if partial {
                    // Written up to a random byte, the rest as synced: a torn slot write.
                    let p = c.rng.below(live.len() as u64 + 1) as usize;
                    let mut b = live[..p].to_vec();
                    b.extend_from_slice(synced.get(p..).unwrap_or_default());
                    b
                } else {
                    synced
                }
            } else {
                live
            };
            files.push((name, bytes));
        }
        Image {
            files,
            told: self.told.lock().unwrap().clone(),
            what,
        }
    }
}

impl SyncHook for PowerCut {
    fn sync(&self, kind: SyncKind, file: &File, path: &Path) -> std::io::Result<()> {
        let mut c = self.cuts.lock().unwrap();
        let n = c.kinds.len();
        let what = format!("cut before sync #{n} ({kind:?} {})", path.display());
        let strict = self.image(&mut c, false, format!("{what}, strict"));
        let partial = self.image(&mut c, true, format!("{what}, partial write-back"));
        c.images.push(strict);
        c.images.push(partial);
        c.kinds.push(kind);
        match kind {
            SyncKind::SegmentData | SyncKind::SegmentAll => {
                let name = path.file_name().unwrap().to_os_string();
                c.durable.seg_len.insert(name, file.metadata()?.len());
            }
            SyncKind::Checkpoint => c.durable.ckpt = Some(std::fs::read(path)?),
            SyncKind::Directory => c.durable.entries = Some(names(path)),
        }
        Ok(())
    }
}

/// Recovery of the images syncs nothing (it is not under test there).
struct NoSync;
impl SyncHook for NoSync {
    fn sync(&self, _: SyncKind, _: &File, _: &Path) -> std::io::Result<()> {
        Ok(())
    }
}

fn cfg() -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 1024,
        max_bytes: 1 << 30,
        ..SpoolConfig::default()
    }
}

fn payload(id: Id, len: u64) -> Vec<u8> {
    let mut p = format!("{}:{}:", id.0, id.1).into_bytes();
    p.resize(len as usize, b'.');
    p
}

fn parse(p: &[u8]) -> Id {
    let s = std::str::from_utf8(p).unwrap();
    let mut it = s.split(':');
    let id = (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    );
    assert!(
        it.next().unwrap().bytes().all(|b| b == b'.'),
        "payload altered"
    );
    id
}

/// Recover one image in `scratch`; Err says what is wrong.
fn check(img: &Image, scratch: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    for (name, bytes) in &img.files {
        std::fs::write(scratch.join(name), bytes).unwrap();
    }
    let s = Spool::open_with_sync_hook(scratch, cfg(), Arc::new(NoSync))
        .map_err(|e| format!("recovery failed: {e}"))?;
    let g = s.gauges();
    let b = s.peek(usize::MAX, usize::MAX).map_err(|e| e.to_string())?;
    let got: Vec<Id> = b.records.iter().map(|r| parse(&r.payload)).collect();
    if g.corrupt_records != 0 {
        return Err(format!("{} corrupt records", g.corrupt_records));
    }
    let t = &img.told;
    let mut acked = vec![t.acked];
    acked.extend(t.acking);
    for a in acked {
        let mut want = t.appended[a..].to_vec();
        if got == want {
            return Ok(());
        }
        if !t.appending.is_empty() {
            want.extend_from_slice(&t.appending);
            if got == want {
                return Ok(());
            }
        }
    }
    let lost: Vec<&Id> = t.appended[t.acked..]
        .iter()
        .filter(|id| !got.contains(id))
        .collect();
    let replayed: Vec<&Id> = t.appended[..t.acked]
        .iter()
        .filter(|id| got.contains(id))
        .collect();
    Err(format!(
        "recovered {} records; acknowledged appends lost: {:?}; acknowledged acks undone (records back): {:?}",
        got.len(),
        &lost[..lost.len().min(5)],
        &replayed[..replayed.len().min(5)]
    ))
}

#[test]
fn every_acknowledged_append_and_ack_survives_a_power_cut_at_every_sync() {
    let ops: u64 = std::env::var("LOCKSTEP_POWER_CUT_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let told = Arc::new(Mutex::new(Told::default()));
    let hook = Arc::new(PowerCut {
        dir: dir.clone(),
        told: told.clone(),
        cuts: Mutex::new(Cuts {
            durable: Durable::default(),
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            images: Vec::new(),
            kinds: Vec::new(),
        }),
    });
    let set = |f: &dyn Fn(&mut Told)| f(&mut told.lock().unwrap());
    let open = || Spool::open_with_sync_hook(&dir, cfg(), hook.clone()).unwrap();
    set(&|t| t.op = "first open".into());
    let mut spool = open();
    let mut rng = Rng(0x0005_eed0_fca7);
    let mut next_batch = 1u64;
    let (mut appends, mut acks, mut reopens) = (0, 0, 0);
    for op in 0..ops {
        match rng.below(10) {
            0..=4 => {
                let b = next_batch;
                next_batch += 1;
                let ids: Vec<Id> = (0..1 + rng.below(5)).map(|i| (b, i)).collect();
                let recs: Vec<Vec<u8>> = ids
                    .iter()
                    .map(|&id| payload(id, 12 + rng.below(200)))
                    .collect();
                set(&|t| {
                    t.op = format!("op {op}: append batch {b}");
                    t.appending = ids.clone();
                });
                spool.append(&recs).unwrap();
                set(&|t| t.appended.append(&mut t.appending));
                appends += 1;
            }
            5..=8 => {
                let b = spool.peek(1 + rng.below(12) as usize, usize::MAX).unwrap();
                let ids: Vec<Id> = b.records.iter().map(|r| parse(&r.payload)).collect();
                let t = told.lock().unwrap().clone();
                assert_eq!(ids[..], t.appended[t.acked..t.acked + ids.len()]);
                if rng.below(5) != 0 {
                    set(&|t| {
                        t.op = format!("op {op}: ack {} records", ids.len());
                        t.acking = Some(t.acked + ids.len());
                    });
                    spool.ack(&b).unwrap();
                    set(&|t| {
                        t.acked = t.acking.take().unwrap();
                    });
                    acks += 1;
                }
            }
            _ => {
                set(&|t| t.op = format!("op {op}: reopen"));
                drop(spool);
                spool = open();
                reopens += 1;
            }
        }
    }
    drop(spool);

    let cuts = std::mem::take(&mut hook.cuts.lock().unwrap().images);
    let kinds = hook.cuts.lock().unwrap().kinds.clone();
    let scratch = tmp.path().join("recovered");
    let mut failures = Vec::new();
    for img in &cuts {
        if let Err(e) = check(img, &scratch) {
            failures.push(format!("{} during {}: {e}", img.what, img.told.op));
        }
    }
    eprintln!(
        "power loss: {ops} operations ({appends} appends, {acks} acks, {reopens} reopens), {} syncs, {} images recovered, {} failed",
        kinds.len(),
        cuts.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} power cuts broke a guarantee; first ones:\n{}",
        failures.len(),
        cuts.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    for k in [
        SyncKind::SegmentData,
        SyncKind::Checkpoint,
        SyncKind::Directory,
    ] {
        assert!(kinds.contains(&k), "the workload never made a {k:?} sync");
    }
    assert!(appends > 0 && acks > 0 && reopens > 0);
}
