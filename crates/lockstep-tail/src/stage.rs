//! The decision stage: the waiting queue on disk, the table in memory, the thread
//! that decides on time and sweeps decided lines into the main queue.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fluent_bit_chunk::Event;
use lockstep_policy::{Policy, Reason, TraceFacts};
use lockstep_record::Extractor;
use lockstep_spool::{Spool, SpoolConfig, SpoolError};

use crate::record::{self, WaitRecord};
use crate::table::{Admit, Decided, Table, TableConfig, TraceId};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records read from the waiting queue per step of a sweep or a recovery scan.
const SCAN_RECORDS: usize = 4096;
const SCAN_BYTES: usize = 4 << 20;
/// Decisions per `D` record.
const DECISIONS_PER_RECORD: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("waiting queue {dir}: {source}")]
    Spool { dir: String, source: SpoolError },
}

/// Counters (monotonic) of what the stage did with lines.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Lines of kept traces moved to the main queue.
    pub lines_kept_trace: AtomicU64,
    /// Lines of dropped traces removed from the waiting queue.
    pub lines_dropped_trace: AtomicU64,
    /// Lines with no trace id decided alone, kept / dropped.
    pub lines_kept_alone: AtomicU64,
    pub lines_dropped_alone: AtomicU64,
    /// Lines arriving after their trace was decided that followed the decision.
    pub late_followed_kept: AtomicU64,
    pub late_followed_dropped: AtomicU64,
    /// Lines arriving after their trace's decision was forgotten: a new trace.
    pub late_new_trace: AtomicU64,
    /// Traces decided before their time because `num_traces` traces were waiting.
    pub decided_early: AtomicU64,
    /// Waiting-queue records that could not be read or mapped (counted, skipped).
    pub unreadable_records: AtomicU64,
    /// Kept lines whose entry is larger than the main queue takes (counted, skipped).
    pub too_large: AtomicU64,
    /// Waiting lines recovered whose facts another policy wrote (kept, fail open).
    pub recovered_other_policy: AtomicU64,
}

/// Renders one line into what the main queue stores (the output's Loki entry), from the
/// Fluent Bit tag and event the flush had: called for kept lines only, on the decider
/// thread. An `Err` (an event that no longer decodes) skips the line, counted.
pub type Mapper = Box<dyn Fn(&[u8], &[u8], &mut Vec<u8>) -> Result<(), String> + Send + Sync>;

/// Settings of the stage.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub table: TableConfig,
    /// Names the policy (a hash of its file): facts written under another are not read.
    pub fingerprint: u32,
    /// The waiting queue's spool settings (its own directory).
    pub spool: SpoolConfig,
}

struct Shared {
    policy: Policy,
    fingerprint: u32,
    wait: Spool,
    main: Arc<Spool>,
    table: Mutex<Table>,
    decided: Mutex<HashMap<(bool, Reason), u64>>,
    extractors: Mutex<Vec<Extractor>>,
    metrics: StageMetrics,
    signal: Mutex<Signal>,
    cv: Condvar,
    /// Called with the number of entries moved to the main queue.
    on_kept: Box<dyn Fn(usize) + Send + Sync>,
    mapper: Mapper,
    full_logged: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Signal {
    stop: bool,
    wake: bool,
}

/// The decision stage of one output instance.
pub struct Stage {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a recovery found in the waiting queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    pub pending_lines: u64,
    pub kept_lines: u64,
    pub decisions: u64,
    pub waiting_traces: usize,
}

/// What one [`Stage::tick`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub decided: usize,
    pub moved: usize,
    pub dropped: usize,
    /// The main queue refused the kept lines (full): sweeping stopped.
    pub blocked: bool,
}

impl Stage {
    /// Opens the waiting queue in `dir` and rebuilds the table from it: traces that
    /// were waiting wait again from their first line's arrival, decisions already made
    /// stand. Starts no thread ([`Stage::start`]).
    pub fn open(
        policy: Policy,
        cfg: StageConfig,
        dir: &Path,
        main: Arc<Spool>,
        mapper: Mapper,
        on_kept: Box<dyn Fn(usize) + Send + Sync>,
    ) -> Result<(Stage, Recovered), StageError> {
        let err = |source| StageError::Spool {
            dir: dir.display().to_string(),
            source,
        };
        let wait = Spool::open(dir, cfg.spool.clone()).map_err(err)?;
        let shared = Arc::new(Shared {
            policy,
            fingerprint: cfg.fingerprint,
            wait,
            main,
            table: Mutex::new(Table::new(cfg.table)),
            decided: Mutex::new(HashMap::new()),
            extractors: Mutex::new(Vec::new()),
            metrics: StageMetrics::default(),
            signal: Mutex::new(Signal::default()),
            cv: Condvar::new(),
            on_kept,
            mapper,
            full_logged: Mutex::new(None),
        });
        let rec = shared.recover().map_err(err)?;
        Ok((
            Stage {
                shared,
                thread: Mutex::new(None),
            },
            rec,
        ))
    }

    /// Starts the decider thread: it decides traces when due (or early, past
    /// `num_traces`) and sweeps decided lines into the main queue.
    pub fn start(
        &self,
        name: String,
        on_thread_start: Box<dyn FnOnce() -> Box<dyn std::any::Any> + Send>,
    ) -> std::io::Result<()> {
        let sh = self.shared.clone();
        let t = std::thread::Builder::new().name(name).spawn(move || {
            let _guard = on_thread_start();
            sh.run();
        })?;
        *lock(&self.thread) = Some(t);
        Ok(())
    }

    /// Stops the decider after one last tick; waiting lines stay on disk for the next
    /// start. Idempotent.
    pub fn stop(&self) {
        lock(&self.shared.signal).stop = true;
        self.shared.cv.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// Decides what is due at `now` and sweeps (what the thread does on each wake-up).
    pub fn tick(&self, now: u64) -> Result<Tick, SpoolError> {
        self.shared.tick(now)
    }

    /// A new intake for one flush chunk of `tag`.
    pub fn intake<'t>(&self, tag: &'t str) -> Intake<'_, 't> {
        let ex = lock(&self.shared.extractors)
            .pop()
            .unwrap_or_else(|| self.shared.policy.extractor());
        Intake {
            sh: &self.shared,
            ex: Some(ex),
            tag,
            now: lockstep_spool::now_ns(),
            buf: Vec::new(),
            ends: Vec::new(),
            waiting: Vec::new(),
            counts: Counts::default(),
        }
    }

    pub fn metrics(&self) -> &StageMetrics {
        &self.shared.metrics
    }

    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// (waiting traces, pinned decisions, cached decisions).
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        let t = lock(&self.shared.table);
        (t.waiting(), t.pinned(), t.cached())
    }

    /// Traces decided so far, by (keep, reason name), sorted.
    pub fn decided(&self) -> Vec<(bool, String, u64)> {
        let d = lock(&self.shared.decided);
        let mut v: Vec<_> = d
            .iter()
            .map(|(&(k, r), &n)| (k, self.shared.policy.reason_name(r).to_string(), n))
            .collect();
        v.sort();
        v
    }

    /// The waiting queue's gauges.
    pub fn waiting_gauges(&self) -> lockstep_spool::Gauges {
        self.shared.wait.gauges()
    }

    /// Prometheus text for the stage (appended to the output's `/metrics`).
    pub fn render_metrics(&self, instance: &str, now_ns: u64) -> String {
        crate::metrics::render(self, instance, now_ns)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    kept_alone: u64,
    dropped_alone: u64,
    late_kept: u64,
    late_dropped: u64,
    late_new: u64,
}

/// One flush chunk's lines on their way into the waiting queue: [`Intake::add`] each
/// record, then [`Intake::commit`]. Dropped without committing, it releases the traces
/// it held.
pub struct Intake<'s, 't> {
    sh: &'s Shared,
    ex: Option<Extractor>,
    tag: &'t str,
    now: u64,
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Traces of lines written as waiting (one entry per line).
    waiting: Vec<TraceId>,
    counts: Counts,
}

impl Intake<'_, '_> {
    /// Reserves room for about `bytes` of lines.
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// Reads one record's body and metadata and decides where its line goes: dropped
    /// now (false: nothing written), or written to the waiting queue as the raw event
    /// (true), to wait for its trace or, already kept, to keep its place in line.
    pub fn add(&mut self, event: &Event<'_>) -> bool {
        let sh = self.sh;
        let Some(ex) = self.ex.as_mut() else {
            return false;
        };
        ex.extract_msgpack(event.body);
        ex.merge_otlp_metadata(event.metadata);
        let e = ex.last();
        let tag = self.tag.as_bytes();
        let Some(t) = e.trace_id().copied() else {
            let d = sh.policy.decide(e);
            if !d.keep {
                self.counts.dropped_alone += 1;
                return false;
            }
            self.counts.kept_alone += 1;
            record::write_kept(&mut self.buf, tag, event.raw);
            self.ends.push(self.buf.len());
            return true;
        };
        let mut facts = TraceFacts::new(Some(t));
        sh.policy.observe(e, &mut facts);
        let admit = lock(&sh.table).admit(&t, &facts, self.now);
        match admit {
            Admit::Follow(false) => {
                self.counts.late_dropped += 1;
                return false;
            }
            Admit::Follow(true) => {
                self.counts.late_kept += 1;
                record::write_kept(&mut self.buf, tag, event.raw);
            }
            Admit::Wait { late, .. } => {
                if late {
                    self.counts.late_new += 1;
                }
                self.waiting.push(t);
                record::write_pending(&mut self.buf, sh.fingerprint, &t, &facts, tag, event.raw);
            }
        }
        self.ends.push(self.buf.len());
        true
    }

    /// Lines to be written.
    pub fn lines(&self) -> usize {
        self.ends.len()
    }

    /// Appends the lines to the waiting queue as one durable batch, then counts them.
    /// Returns the number of lines written (0 when every line was dropped).
    pub fn commit(mut self) -> Result<usize, SpoolError> {
        let sh = self.sh;
        let res = if self.ends.is_empty() {
            Ok(0)
        } else {
            let mut start = 0;
            let recs: Vec<&[u8]> = self
                .ends
                .iter()
                .map(|&end| {
                    let r = &self.buf[start..end];
                    start = end;
                    r
                })
                .collect();
            sh.wait.append_at(self.now, &recs).map(|a| a.count)
        };
        let ok = res.is_ok();
        let over = {
            let mut t = lock(&sh.table);
            for tr in &self.waiting {
                t.landed(tr, ok);
            }
            t.over_capacity()
        };
        self.waiting.clear();
        if ok {
            let m = &sh.metrics;
            let c = self.counts;
            m.lines_kept_alone.fetch_add(c.kept_alone, Relaxed);
            m.lines_dropped_alone.fetch_add(c.dropped_alone, Relaxed);
            m.late_followed_kept.fetch_add(c.late_kept, Relaxed);
            m.late_followed_dropped.fetch_add(c.late_dropped, Relaxed);
            m.late_new_trace.fetch_add(c.late_new, Relaxed);
        }
        if over {
            sh.wake();
        }
        res
    }
}

impl Drop for Intake<'_, '_> {
    fn drop(&mut self) {
        if !self.waiting.is_empty() {
            let mut t = lock(&self.sh.table);
            for tr in &self.waiting {
                t.landed(tr, false);
            }
        }
        if let Some(ex) = self.ex.take() {
            lock(&self.sh.extractors).push(ex);
        }
    }
}

impl Shared {
    fn wake(&self) {
        lock(&self.signal).wake = true;
        self.cv.notify_all();
    }

    fn run(&self) {
        let wait_ns = lock(&self.table).config().decision_wait_ns;
        let period = Duration::from_nanos(wait_ns / 10)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut last_err: Option<Instant> = None;
        loop {
            let stop = {
                let mut s = lock(&self.signal);
                if !s.stop && !s.wake {
                    s = self
                        .cv
                        .wait_timeout(s, period)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                s.wake = false;
                s.stop
            };
            // A bug must not end the thread (the waiting lines would never move): a
            // panic is logged like an error and the next tick starts afresh.
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.tick(lockstep_spool::now_ns())
            }));
            let err = match res {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(p) => Some(format!(
                    "panic: {}",
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default()
                )),
            };
            if let Some(e) = err {
                if last_err.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_err = Some(Instant::now());
                    log::error!("deciding waiting traces: {e}; retrying");
                }
            }
            if stop {
                return;
            }
        }
    }

    fn tick(&self, now: u64) -> Result<Tick, SpoolError> {
        let mut decided = Vec::new();
        lock(&self.table).decide_due(now, &self.policy, &mut decided);
        let mut tick = Tick {
            decided: decided.len(),
            ..Tick::default()
        };
        if !decided.is_empty() {
            self.count_decisions(&decided);
            // Decisions are on disk before any of their lines leaves the waiting
            // queue: a restart after a partial sweep still knows them.
            let mut recs = Vec::new();
            for part in decided.chunks(DECISIONS_PER_RECORD) {
                let v: Vec<([u8; 16], bool)> = part.iter().map(|d| (d.trace, d.keep)).collect();
                let mut r = Vec::with_capacity(5 + 17 * v.len());
                record::write_decisions(&mut r, &v);
                recs.push(r);
            }
            if let Err(e) = self.wait.append_at(now, &recs) {
                // A full waiting queue must still be swept to make room; a crash before
                // these are written re-decides the traces from their remaining lines.
                log::warn!("cannot record {} decisions: {e}", decided.len());
            }
        }
        loop {
            let step = self.sweep_step()?;
            tick.moved += step.moved;
            tick.dropped += step.dropped;
            if step.blocked {
                tick.blocked = true;
                break;
            }
            if step.records == 0 {
                break;
            }
        }
        Ok(tick)
    }

    fn count_decisions(&self, decided: &[Decided]) {
        let mut d = lock(&self.decided);
        for x in decided {
            *d.entry((x.keep, x.reason)).or_insert(0) += 1;
            if x.early {
                self.metrics.decided_early.fetch_add(1, Relaxed);
            }
        }
    }

    /// Moves the oldest decided lines of the waiting queue: kept ones, mapped to their
    /// entries, to the main queue (one batch), dropped ones nowhere; stops at the first
    /// line whose trace still waits.
    fn sweep_step(&self) -> Result<SweepStep, SpoolError> {
        let mut step = SweepStep::default();
        let b = self.wait.peek(SCAN_RECORDS, SCAN_BYTES)?;
        if b.is_empty() {
            if b.corrupt_spans() > 0 {
                self.wait.ack(&b)?;
            }
            return Ok(step);
        }
        // Each record's fate, up to the first line whose trace still waits: one table
        // lookup per line.
        let mut fate: Vec<Fate> = Vec::with_capacity(b.len());
        {
            let t = lock(&self.table);
            for r in &b.records {
                let f = match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending { trace, .. }) => match t.decision(&trace) {
                        None => break,
                        Some(keep) => Fate::Trace(trace, keep),
                    },
                    Ok(WaitRecord::Kept { .. }) => Fate::Kept,
                    Ok(WaitRecord::Decisions(_)) => Fate::Skip,
                    Err(e) => {
                        self.metrics.unreadable_records.fetch_add(1, Relaxed);
                        log::error!("waiting queue record {}: {e}; skipped", r.seq);
                        Fate::Skip
                    }
                };
                fate.push(f);
            }
        }
        let n = fate.len();
        if n == 0 {
            return Ok(step);
        }
        let b = if n < b.len() {
            self.wait.peek(n, usize::MAX)?
        } else {
            b
        };
        let mut out: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut oldest = u64::MAX;
        for (r, f) in b.records.iter().zip(&fate) {
            let keep = match f {
                Fate::Trace(_, keep) => *keep,
                Fate::Kept => true,
                Fate::Skip => false,
            };
            if !keep {
                if matches!(f, Fate::Trace(..)) {
                    step.dropped += 1;
                }
                continue;
            }
            let (tag, event) = match record::parse(&r.payload) {
                Ok(WaitRecord::Pending { tag, event, .. } | WaitRecord::Kept { tag, event }) => {
                    (tag, event)
                }
                _ => continue,
            };
            let start = out.len();
            match (self.mapper)(tag, event, &mut out) {
                Ok(()) => {
                    ends.push(out.len());
                    oldest = oldest.min(r.ts_ns);
                }
                Err(e) => {
                    out.truncate(start);
                    self.metrics.unreadable_records.fetch_add(1, Relaxed);
                    log::error!("waiting queue record {}: {e}; skipped", r.seq);
                }
            }
        }
        let mut start = 0;
        let kept: Vec<&[u8]> = ends
            .iter()
            .map(|&e| {
                let p = &out[start..e];
                start = e;
                p
            })
            .collect();
        if !kept.is_empty() {
            if let Blocked::Yes = self.append_main(oldest, &kept)? {
                step.blocked = true;
                return Ok(step);
            }
        }
        self.wait.ack(&b)?;
        let mut trace_kept = 0u64;
        {
            let mut t = lock(&self.table);
            for f in &fate {
                if let Fate::Trace(tr, keep) = f {
                    t.swept(tr);
                    trace_kept += u64::from(*keep);
                }
            }
        }
        step.records = b.len();
        step.moved = kept.len();
        self.metrics
            .lines_dropped_trace
            .fetch_add(step.dropped as u64, Relaxed);
        self.metrics.lines_kept_trace.fetch_add(trace_kept, Relaxed);
        if !kept.is_empty() {
            (self.on_kept)(kept.len());
        }
        Ok(step)
    }

    /// Appends kept entries to the main queue. Full: `Blocked::Yes` (retried on the next
    /// tick). An entry larger than the main queue takes is skipped, counted; a batch
    /// larger than its whole budget is appended in halves.
    fn append_main(&self, ts: u64, kept: &[&[u8]]) -> Result<Blocked, SpoolError> {
        match self.main.append_at(ts, kept) {
            Ok(_) => Ok(Blocked::No),
            Err(e @ SpoolError::Full { .. }) => {
                let mut last = lock(&self.full_logged);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    log::warn!("{e}: kept lines wait in the waiting queue");
                }
                Ok(Blocked::Yes)
            }
            Err(SpoolError::RecordTooLarge { index, len, max }) => {
                self.metrics.too_large.fetch_add(1, Relaxed);
                log::error!(
                    "a kept line's entry is {len} bytes, above max_record_bytes {max}: skipped"
                );
                let (a, rest) = kept.split_at(index.min(kept.len()));
                let rest = rest.get(1..).unwrap_or_default();
                for part in [a, rest] {
                    if !part.is_empty() {
                        if let Blocked::Yes = self.append_main(ts, part)? {
                            // Part of the batch may be in: a retry sends it again
                            // (Loki drops exact duplicates).
                            return Ok(Blocked::Yes);
                        }
                    }
                }
                Ok(Blocked::No)
            }
            Err(e @ SpoolError::BatchTooLarge { .. }) if kept.len() > 1 => {
                log::debug!("{e}: appending in halves");
                let (a, rest) = kept.split_at(kept.len() / 2);
                for part in [a, rest] {
                    if let Blocked::Yes = self.append_main(ts, part)? {
                        return Ok(Blocked::Yes);
                    }
                }
                Ok(Blocked::No)
            }
            Err(SpoolError::BatchTooLarge { needed, max }) => {
                self.metrics.too_large.fetch_add(1, Relaxed);
                log::error!("a kept line's entry ({needed} bytes) can never fit spool_max_bytes {max}: skipped");
                Ok(Blocked::No)
            }
            Err(e) => Err(e),
        }
    }

    fn recover(&self) -> Result<Recovered, SpoolError> {
        let mut rec = Recovered::default();
        let mut t = lock(&self.table);
        let mut b = self.wait.peek(SCAN_RECORDS, SCAN_BYTES)?;
        while !b.is_empty() {
            for r in &b.records {
                match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending {
                        fingerprint,
                        trace,
                        facts,
                        ..
                    }) => {
                        rec.pending_lines += 1;
                        if fingerprint == self.fingerprint {
                            t.recover_line(&trace, &facts, r.ts_ns);
                        } else {
                            self.metrics.recovered_other_policy.fetch_add(1, Relaxed);
                            t.recover_unreadable(&trace);
                        }
                    }
                    Ok(WaitRecord::Kept { .. }) => rec.kept_lines += 1,
                    Ok(WaitRecord::Decisions(ds)) => {
                        for (tr, keep) in ds.iter() {
                            rec.decisions += 1;
                            t.recover_decision(&tr, keep);
                        }
                    }
                    Err(_) => {}
                }
            }
            b = self.wait.peek_after(&b, SCAN_RECORDS, SCAN_BYTES)?;
        }
        t.finish_recovery();
        rec.waiting_traces = t.waiting();
        if self.metrics.recovered_other_policy.load(Relaxed) > 0 {
            log::warn!(
                "{} waiting lines were written under another policy: their traces are kept",
                self.metrics.recovered_other_policy.load(Relaxed)
            );
        }
        Ok(rec)
    }
}

enum Fate {
    Trace(TraceId, bool),
    Kept,
    Skip,
}

enum Blocked {
    Yes,
    No,
}

#[derive(Debug, Default)]
struct SweepStep {
    records: usize,
    moved: usize,
    dropped: usize,
    blocked: bool,
}
