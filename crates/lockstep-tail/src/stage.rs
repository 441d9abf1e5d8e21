//! The decision stage: the waiting queue on disk, the table in memory, the thread
//! that decides on time and sweeps decided lines into the main queue.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fluent_bit_chunk::{Chunk, Event};
use lockstep_policy::{Policy, Reason, TraceFacts};
use lockstep_record::Extractor;
use lockstep_spool::{Spool, SpoolConfig, SpoolError};

use crate::clock::{Clock, TimeSource};
use crate::record::{self, WaitRecord};
use crate::table::{
    Admit, Decided, Reported, Source, Table, TableConfig, TraceId, Verdict, POISON_TRIES,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records read from the waiting queue per step of a sweep or a recovery scan.
const SCAN_RECORDS: usize = 4096;
const SCAN_BYTES: usize = 4 << 20;
/// Decisions per `D` record, and per call into the table (the table lock is released
/// between calls, so a flush never waits behind a long decision round).
const DECISIONS_PER_RECORD: usize = 4096;
/// Bytes of one full `D` record in the spool (kind, count, entries, frame header).
const DECISION_RECORD_BYTES: u64 = 5 + 17 * DECISIONS_PER_RECORD as u64 + 64;
/// What a record costs in a spool beyond its payload (its frame header).
const FRAME_OVERHEAD: u64 = lockstep_spool::frame::FRAME_HEADER_LEN;
/// The quarantine file stops growing past this size (its records are still counted).
const QUARANTINE_MAX_BYTES: u64 = 64 << 20;
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("waiting queue {dir}: {source}")]
    Spool { dir: String, source: SpoolError },
}

/// Why a flush's lines were not written.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// `max_pinned` decided traces still wait to be swept (the main queue is full):
    /// new traces are refused until the sweep catches up; nothing was written.
    #[error(
        "{pinned} decided traces wait for room in the main queue (max_pinned_traces): \
         new traces wait until they are swept"
    )]
    Busy { pinned: usize },
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
    /// Waiting lines recovered whose facts another policy wrote: their facts were read
    /// again from the line under the current policy.
    pub recovered_other_policy: AtomicU64,
    /// Decision records that could not be written (retried; the trace's lines wait).
    pub decision_write_failures: AtomicU64,
    /// Records whose mapping panicked `POISON_TRIES` times: set aside in the quarantine
    /// file, skipped.
    pub quarantined_records: AtomicU64,
    /// Traces whose decision panicked `POISON_TRIES` times: kept (fail open).
    pub quarantined_decisions: AtomicU64,
    /// Flushes refused because `max_pinned` decided traces waited for the main queue.
    pub busy_refusals: AtomicU64,
    /// Waiting lines of held traces moved from the head of the waiting queue to its
    /// tail, so that the lines behind them could be swept.
    pub lines_requeued: AtomicU64,
    /// Traces kept, by what kept them (the policy, the decision feed, the fallback while
    /// the feed was silent).
    pub kept_by_policy: AtomicU64,
    pub kept_by_feed: AtomicU64,
    pub kept_by_fallback: AtomicU64,
    /// Feed reports of trace ids whose lines had not arrived yet (remembered).
    pub feed_ids_ahead: AtomicU64,
    /// Feed reports that came after the trace was dropped (raise `decision_wait`).
    pub feed_late_reports: AtomicU64,
    /// Times the feed fell silent while lines waited (decided by the fallback).
    pub feed_silence_episodes: AtomicU64,
}

/// Where decisions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    /// The policy file, over each trace's lines.
    Policy,
    /// The decision feed only: a trace is kept when the sampler reports it, dropped
    /// when `decision_wait` passes without a report (while the feed is alive).
    Feed,
    /// Kept when either the feed or the policy keeps it.
    FeedOrPolicy,
}

/// Renders one line into what the main queue stores (the output's Loki entry), from the
/// Fluent Bit tag and event the flush had: called for kept lines only, on the decider
/// thread. An `Err` (an event that no longer decodes) skips the line, counted.
pub type Mapper = Box<dyn Fn(&[u8], &[u8], &mut Vec<u8>) -> Result<(), String> + Send + Sync>;

/// Settings of the stage.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub table: TableConfig,
    /// Names the policy ([`Policy::fingerprint`]): facts written under another are read
    /// again from their lines at recovery.
    pub fingerprint: u32,
    /// The waiting queue's spool settings (its own directory).
    pub spool: SpoolConfig,
    /// The clock (the system's, or a test's).
    pub time: TimeSource,
    /// Bytes of the waiting queue kept free for decision records, which flushes may not
    /// use; `None`: enough for the decisions of `num_traces` traces (at most half the
    /// budget). Without it a full waiting queue could hold no decision, and so could
    /// never be swept.
    pub decision_reserve: Option<u64>,
    /// Where decisions come from.
    pub source: DecisionSource,
    /// The policy is the operator's (`false`: a built-in one that only names fields, so
    /// the fallback of a silent feed keeps instead of asking it).
    pub has_policy: bool,
    /// With a feed: silent this long (no request) while lines wait, the fallback decides.
    pub feed_silence_ns: u64,
}

struct Shared {
    policy: Policy,
    fingerprint: u32,
    wait: Spool,
    wait_dir: PathBuf,
    /// Room kept free in the waiting queue for decision records: flushes may not use it.
    reserve: u64,
    main: Arc<Spool>,
    table: Mutex<Table>,
    clock: Clock,
    decided: Mutex<HashMap<(bool, Source, Reason), u64>>,
    source: DecisionSource,
    has_policy: bool,
    feed_silence_ns: u64,
    /// When the feed last reported (stage clock; the open counts as a report).
    last_report: AtomicU64,
    /// When the report that ended the latest silence came (stage clock; 0: none).
    silence_ended_at: AtomicU64,
    /// In a silence episode (logged once per episode).
    silent: std::sync::atomic::AtomicBool,
    /// Decisions made but not yet on disk (their lines wait until they are).
    unwritten: Mutex<Vec<(TraceId, bool)>>,
    /// The last waiting-queue record whose kept entry is already in the main queue
    /// while the rest of its sweep step waits for room: not appended again.
    appended_through: Mutex<Option<u64>>,
    /// Mapping panics per waiting-queue record (by sequence number).
    poison: Mutex<HashMap<u64, u8>>,
    /// The last flush was refused for want of room in the waiting queue (cleared by the
    /// next one taken).
    refused_full: std::sync::atomic::AtomicBool,
    extractors: Mutex<Vec<Extractor>>,
    metrics: StageMetrics,
    signal: Mutex<Signal>,
    cv: Condvar,
    /// Called with the number of entries moved to the main queue.
    on_kept: Box<dyn Fn(usize) + Send + Sync>,
    mapper: Mapper,
    full_logged: Mutex<Option<Instant>>,
    dfail_logged: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Signal {
    stop: bool,
    wake: bool,
    /// Stopping: keep deciding what comes due until then (stage clock, ns).
    finish_by: Option<u64>,
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
    /// Decided traces whose lines are still to be swept.
    pub pinned_traces: usize,
    /// Lines whose facts were read again (written under another policy).
    pub recomputed_lines: u64,
    /// Trace ids a decision feed had reported kept.
    pub reports: u64,
}

/// What one [`Stage::tick`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    pub decided: usize,
    pub moved: usize,
    pub dropped: usize,
    /// The main queue refused the kept lines (full): sweeping stopped.
    pub blocked: bool,
    /// Decisions not yet on disk (their lines wait).
    pub unwritten: usize,
    /// A record's mapping panicked (retried on the next tick, quarantined after a few).
    pub poisoned: bool,
}

/// What [`Stage::stop_by`] left in the waiting queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Left {
    /// Traces not yet due at the deadline (decided at the next start).
    pub waiting_traces: usize,
    /// Decided traces whose lines could not be swept (main queue full, or behind a
    /// trace still waiting).
    pub pinned_traces: usize,
    /// Records left in the waiting queue.
    pub records: u64,
    /// Waiting traces held for a chunk answered retry (among `waiting_traces`).
    pub held_traces: usize,
}

impl Stage {
    /// Opens the waiting queue in `dir` and rebuilds the table from it: traces that
    /// were waiting wait again (`decision_wait` from now at least), decisions already
    /// made stand. Starts no thread ([`Stage::start`]).
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
        // Room for the decisions of every trace that can be waiting when flushes are
        // refused for want of room (about num_traces), capped at half the budget.
        let records = cfg.table.num_traces / DECISIONS_PER_RECORD + 2;
        let reserve = cfg.decision_reserve.unwrap_or_else(|| {
            (records as u64 * DECISION_RECORD_BYTES).min(cfg.spool.max_bytes / 2)
        });
        let shared = Arc::new(Shared {
            policy,
            fingerprint: cfg.fingerprint,
            wait,
            wait_dir: dir.to_path_buf(),
            reserve,
            main,
            table: Mutex::new(Table::new(cfg.table)),
            clock: Clock::new(cfg.time),
            decided: Mutex::new(HashMap::new()),
            source: cfg.source,
            has_policy: cfg.has_policy,
            feed_silence_ns: cfg.feed_silence_ns,
            last_report: AtomicU64::new(0),
            silence_ended_at: AtomicU64::new(0),
            silent: std::sync::atomic::AtomicBool::new(false),
            unwritten: Mutex::new(Vec::new()),
            appended_through: Mutex::new(None),
            poison: Mutex::new(HashMap::new()),
            refused_full: std::sync::atomic::AtomicBool::new(false),
            extractors: Mutex::new(Vec::new()),
            metrics: StageMetrics::default(),
            signal: Mutex::new(Signal::default()),
            cv: Condvar::new(),
            on_kept,
            mapper,
            full_logged: Mutex::new(None),
            dfail_logged: Mutex::new(None),
        });
        shared.last_report.store(shared.clock.now(), Relaxed);
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
    pub fn stop(&self) -> Left {
        self.stop_by(None)
    }

    /// Stops the decider. With a deadline (stage clock, [`Stage::now_ns`]), it first
    /// keeps deciding traces as they come due before it and sweeping their lines, so
    /// what was accepted goes out at a graceful stop; without, one last tick. Returns
    /// what stays in the waiting queue for the next start. Idempotent.
    pub fn stop_by(&self, deadline: Option<u64>) -> Left {
        {
            let mut s = lock(&self.shared.signal);
            s.stop = true;
            s.finish_by = deadline;
        }
        self.shared.cv.notify_all();
        let thread = lock(&self.thread).take();
        match thread {
            Some(t) => {
                let _ = t.join();
            }
            None => {
                // Never started (or stopped already): the caller's thread does the work.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.shared.finish(deadline)
                }));
            }
        }
        let (waiting, pinned, _) = self.table_sizes();
        Left {
            waiting_traces: waiting,
            pinned_traces: pinned,
            records: self.shared.wait.gauges().records,
            held_traces: lock(&self.shared.table).held_waiting_count(),
        }
    }

    /// Decides what is due at `now` and sweeps (what the thread does on each wake-up).
    pub fn tick(&self, now: u64) -> Result<Tick, SpoolError> {
        self.shared.tick(now)
    }

    /// The stage's clock (ns): wall time at open, advanced by a monotonic clock, so a
    /// step of the system clock neither stalls nor rushes decisions.
    pub fn now_ns(&self) -> u64 {
        self.shared.clock.now()
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
            now: self.shared.clock.now(),
            buf: Vec::new(),
            ends: Vec::new(),
            waiting: Vec::new(),
            counts: Counts::default(),
            busy: false,
            chunk: None,
            busy_ids: Vec::new(),
        }
    }

    pub fn metrics(&self) -> &StageMetrics {
        &self.shared.metrics
    }

    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// (refused chunks whose traces are held, trace ids held), and what happened to
    /// holds so far.
    pub fn holds(&self) -> ((usize, usize), crate::table::HoldCounts) {
        let t = lock(&self.shared.table);
        (t.holds(), t.hold_counts())
    }

    /// (waiting traces, pinned decisions, cached decisions).
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        let t = lock(&self.shared.table);
        (t.waiting(), t.pinned(), t.cached())
    }

    /// Traces decided so far, by (keep, reason name), sorted. With a feed the reason
    /// is `feed` (reported kept), `not_reported`, or `fallback:<policy reason>`.
    pub fn decided(&self) -> Vec<(bool, String, u64)> {
        let d = lock(&self.shared.decided);
        let mut v: Vec<_> = d
            .iter()
            .map(|(&(k, src, r), &n)| (k, self.shared.reason_name(k, src, r), n))
            .collect();
        v.sort();
        v
    }

    /// Where decisions come from.
    pub fn source(&self) -> DecisionSource {
        self.shared.source
    }

    /// Feed reports remembered for traces whose lines have not arrived.
    pub fn reported_ids(&self) -> usize {
        lock(&self.shared.table).reported()
    }

    /// A decision feed reports these traces kept (the spans of a tail sampler's kept
    /// traces). Returns once the report is durable in the waiting queue: a waiting
    /// trace is then decided kept and its lines are released at once; an id whose
    /// lines have not arrived is remembered (bounded) so they are kept as they come.
    /// An error (the waiting queue is full, or failing) means nothing was recorded:
    /// the feed answers 503 and the sender retries.
    pub fn report_kept(&self, ids: &[TraceId]) -> Result<usize, SpoolError> {
        self.shared.report_kept(ids)
    }

    /// The waiting queue's gauges.
    pub fn waiting_gauges(&self) -> lockstep_spool::Gauges {
        self.shared.wait.gauges()
    }

    /// Bytes of the waiting queue's budget kept free for decision records.
    pub fn reserve_bytes(&self) -> u64 {
        self.shared.reserve
    }

    /// Prometheus text for the stage (appended to the output's `/metrics`).
    pub fn render_metrics(&self, instance: &str, now_ns: u64) -> String {
        crate::metrics::render(self, instance, now_ns)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if lock(&self.thread).is_some() {
            self.stop();
        }
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
    /// Lines written as waiting, with their facts (merged into their trace only once
    /// the append landed).
    waiting: Vec<(TraceId, TraceFacts)>,
    counts: Counts,
    /// A new trace was refused ([`Admit::Busy`]): the chunk is not written.
    busy: bool,
    /// The chunk's bytes ([`Intake::chunk`]): named if it is refused or was refused.
    chunk: Option<&'t [u8]>,
    /// Trace ids of the lines read after the chunk was refused ([`Admit::Busy`]).
    busy_ids: Vec<TraceId>,
}

impl<'t> Intake<'_, 't> {
    /// Reserves room for about `bytes` of lines.
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    /// The flush chunk's bytes, as Fluent Bit gave them. If the chunk is refused, the
    /// traces it has lines of are held until the same bytes are taken (Fluent Bit
    /// retries a chunk with its bytes unchanged): their decision waits for the rest of
    /// their lines ([`Table::refused`]). Without it, no trace is held.
    pub fn chunk(&mut self, data: &'t [u8]) {
        self.chunk = Some(data);
    }

    /// Reads one record's body and metadata and decides where its line goes: dropped
    /// now (false: nothing written), or written to the waiting queue as the raw event
    /// (true), to wait for its trace or, already kept, to keep its place in line.
    pub fn add(&mut self, event: &Event<'_>) -> bool {
        self.add_grouped(event, &[])
    }

    /// [`Intake::add`] for a record of a group (Fluent Bit's `opentelemetry` input:
    /// `group` is the raw group-start event with the resource and scope): the group is
    /// stored with the line, so its entry can be mapped with them when it is kept.
    pub fn add_grouped(&mut self, event: &Event<'_>, group: &[u8]) -> bool {
        let sh = self.sh;
        let Some(ex) = self.ex.as_mut() else {
            return false;
        };
        ex.extract_msgpack(event.body);
        ex.merge_otlp_metadata(event.metadata);
        let e = ex.last();
        if self.busy {
            // Refused already: only which traces the chunk holds matters now.
            if let Some(t) = e.trace_id() {
                self.busy_ids.push(t);
            }
            return false;
        }
        let tag = self.tag.as_bytes();
        let Some(t) = e.trace_id() else {
            let d = sh.policy.decide(e);
            if !d.keep {
                self.counts.dropped_alone += 1;
                return false;
            }
            self.counts.kept_alone += 1;
            record::write_kept(&mut self.buf, tag, group, event.raw);
            self.ends.push(self.buf.len());
            return true;
        };
        let admit = lock(&sh.table).admit(&t, self.now);
        match admit {
            Admit::Busy => {
                self.busy = true;
                self.busy_ids.push(t);
                return false;
            }
            Admit::Follow(false) => {
                self.counts.late_dropped += 1;
                return false;
            }
            Admit::Follow(true) => {
                self.counts.late_kept += 1;
                record::write_kept(&mut self.buf, tag, group, event.raw);
            }
            Admit::Wait { late, .. } => {
                if late {
                    self.counts.late_new += 1;
                }
                let mut facts = TraceFacts::new(Some(t));
                sh.policy.observe(e, &mut facts);
                record::write_pending(
                    &mut self.buf,
                    sh.fingerprint,
                    &t,
                    &facts,
                    tag,
                    group,
                    event.raw,
                );
                self.waiting.push((t, facts));
            }
        }
        self.ends.push(self.buf.len());
        true
    }

    /// Lines to be written.
    pub fn lines(&self) -> usize {
        self.ends.len()
    }

    /// Appends the lines to the waiting queue as one durable batch (leaving the room
    /// kept for decision records), then counts them. Returns the number of lines
    /// written (0 when every line was dropped).
    pub fn commit(mut self) -> Result<usize, IntakeError> {
        let sh = self.sh;
        if self.busy {
            sh.metrics.busy_refusals.fetch_add(1, Relaxed);
            let key = self.chunk.map(crate::table::chunk_key);
            let mut t = lock(&sh.table);
            if let Some(key) = key {
                let mut ids = std::mem::take(&mut self.busy_ids);
                ids.extend(self.waiting.iter().map(|(tr, _)| *tr));
                t.refused(key, &ids, self.now);
            }
            return Err(IntakeError::Busy { pinned: t.pinned() });
        }
        // The chunk is named when some refused chunk is registered (is it that one?).
        let mut key = None;
        let reoffered = {
            let t = lock(&sh.table);
            if t.has_refused_chunks() {
                key = self.chunk.map(crate::table::chunk_key);
                key.is_some_and(|k| t.is_refused(k))
            } else {
                false
            }
        };
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
            // A chunk that could never fit beside the reserve (a small spool_max_bytes and
            // a large Fluent Bit chunk) may use it: answering retry forever would wedge
            // the chunk in Fluent Bit's buffer with the waiting queue empty.
            let needed: u64 = recs
                .iter()
                .map(|r| r.len() as u64 + FRAME_OVERHEAD)
                .sum::<u64>()
                + FRAME_OVERHEAD;
            let max = sh.wait.config().max_bytes;
            let reserve = if needed.saturating_add(sh.reserve) > max {
                0
            } else if reoffered {
                // A chunk answered retry and offered again holds the rest of held
                // traces, whose lines fill the room it needs: it may use half the
                // decision reserve (the other half still takes ~num_traces / 2
                // decisions), so held traces do not keep each other's rest out.
                sh.reserve / 2
            } else {
                sh.reserve
            };
            sh.wait
                .append_reserving(self.now, &recs, reserve)
                .map(|a| a.count)
        };
        let ok = res.is_ok();
        if !self.ends.is_empty() {
            sh.refused_full
                .store(matches!(&res, Err(SpoolError::Full { .. })), Relaxed);
        }
        // A refusal Fluent Bit retries (not a chunk it drops) holds the chunk's traces.
        let retried = matches!(&res, Err(e) if !matches!(
            e,
            SpoolError::RecordTooLarge { .. } | SpoolError::BatchTooLarge { .. }
        ));
        // A chunk Fluent Bit drops (answered error) holds nothing.
        let named = key
            .or_else(|| self.chunk.filter(|_| retried).map(crate::table::chunk_key))
            .filter(|_| ok || retried);
        let (over, released) = {
            let mut t = lock(&sh.table);
            for (tr, facts) in &self.waiting {
                t.landed(tr, ok.then_some(facts));
            }
            let mut released = false;
            if let Some(key) = named {
                if ok {
                    released = t.accepted(key);
                } else {
                    let ids: Vec<TraceId> = self.waiting.iter().map(|(tr, _)| *tr).collect();
                    t.refused(key, &ids, self.now);
                }
            }
            (t.over_capacity(), released)
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
        if over || released {
            sh.wake();
        }
        Ok(res?)
    }
}

impl Drop for Intake<'_, '_> {
    fn drop(&mut self) {
        if !self.waiting.is_empty() {
            let mut t = lock(&self.sh.table);
            for (tr, _) in &self.waiting {
                t.landed(tr, None);
            }
        }
        if let Some(ex) = self.ex.take() {
            lock(&self.sh.extractors).push(ex);
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

impl Shared {
    fn reason_name(&self, keep: bool, source: Source, r: Reason) -> String {
        match source {
            Source::Policy => self.policy.reason_name(r).to_string(),
            Source::Feed if keep => "feed".into(),
            Source::Feed => "not_reported".into(),
            Source::Fallback if self.has_policy => {
                format!("fallback:{}", self.policy.reason_name(r))
            }
            Source::Fallback => "fallback:keep".into(),
        }
    }

    fn report_kept(&self, ids: &[TraceId]) -> Result<usize, SpoolError> {
        let now = self.clock.now();
        let mut released = 0usize;
        if !ids.is_empty() {
            let recs: Vec<Vec<u8>> = ids
                .chunks(DECISIONS_PER_RECORD)
                .map(|part| {
                    let mut r = Vec::with_capacity(5 + 16 * part.len());
                    record::write_reported(&mut r, part);
                    r
                })
                .collect();
            self.wait.append_at(now, &recs)?;
            if self.wait.config().sync != lockstep_spool::SyncMode::Always {
                // The sender will not send these again once answered: durable first.
                self.wait.sync()?;
            }
            let mut d = Vec::new();
            {
                let mut t = lock(&self.table);
                for id in ids {
                    match t.report_kept(id) {
                        Reported::Released { .. } => {
                            released += 1;
                            d.push(*id);
                        }
                        Reported::Remembered => {
                            self.metrics.feed_ids_ahead.fetch_add(1, Relaxed);
                        }
                        Reported::Late => {
                            self.metrics.feed_late_reports.fetch_add(1, Relaxed);
                        }
                        Reported::AlreadyKept => {}
                    }
                }
            }
            if released > 0 {
                self.metrics
                    .kept_by_feed
                    .fetch_add(released as u64, Relaxed);
                *lock(&self.decided)
                    .entry((true, Source::Feed, Reason::NotSampled))
                    .or_insert(0) += released as u64;
            }
        }
        let before = self.last_report.swap(now, Relaxed);
        if now.saturating_sub(before) > self.feed_silence_ns {
            // Traces that waited through the silence may never be reported: the fallback
            // decides them too, when they come due after this report.
            self.silence_ended_at.store(now, Relaxed);
        }
        if self.silent.swap(false, Relaxed) {
            log::info!("the decision feed reports again: traces follow it");
        }
        if released > 0 {
            self.wake();
        }
        Ok(released)
    }

    fn wake(&self) {
        lock(&self.signal).wake = true;
        self.cv.notify_all();
    }

    fn period(&self) -> Duration {
        let wait_ns = lock(&self.table).config().decision_wait_ns;
        Duration::from_nanos(wait_ns / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    fn run(&self) {
        let period = self.period();
        let mut last_err: Option<Instant> = None;
        loop {
            let (stop, finish_by) = {
                let mut s = lock(&self.signal);
                if !s.stop && !s.wake {
                    s = self
                        .cv
                        .wait_timeout(s, period)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                s.wake = false;
                (s.stop, s.finish_by)
            };
            if stop {
                self.finish(finish_by);
                return;
            }
            self.tick_logged(&mut last_err);
        }
    }

    /// One tick; an error or a panic is logged (at most every 10 s) and the next tick
    /// starts afresh: a bug must not end the thread (the waiting lines would never move).
    fn tick_logged(&self, last_err: &mut Option<Instant>) -> Option<Tick> {
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.tick(self.clock.now())));
        let err = match res {
            Ok(Ok(t)) => return Some(t),
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!("panic: {}", panic_text(&*p)),
        };
        if last_err.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last_err = Some(Instant::now());
            log::error!("deciding waiting traces: {err}; retrying");
        }
        None
    }

    /// The stop: ticks until nothing more can go out by `deadline` (traces due before
    /// it are decided and swept; a blocked sweep is retried), then returns; without a
    /// deadline, one tick.
    fn finish(&self, deadline: Option<u64>) {
        let mut last_err = None;
        let period = self.period().min(Duration::from_millis(100));
        loop {
            let tick = self.tick_logged(&mut last_err);
            let Some(d) = deadline else { return };
            let now = self.clock.now();
            if now >= d {
                return;
            }
            let next_due = lock(&self.table).next_due();
            let due_in_time = next_due.is_some_and(|n| n <= d);
            let retry = tick.is_none_or(|t| t.blocked || t.unwritten > 0 || t.poisoned);
            if !due_in_time && !retry {
                return;
            }
            let sleep = match next_due {
                Some(n) if !retry => Duration::from_nanos(n.saturating_sub(now)).min(period),
                _ => period,
            };
            let s = lock(&self.signal);
            let _ = self.cv.wait_timeout(s, sleep.max(Duration::from_millis(1)));
        }
    }

    fn tick(&self, now: u64) -> Result<Tick, SpoolError> {
        let mut tick = Tick::default();
        let expired = lock(&self.table).expire_holds(now);
        if expired > 0 {
            log::warn!(
                "{expired} chunks answered retry were not offered again within \
                 decision_hold_max (Fluent Bit's Retry_Limit, or a restart without \
                 filesystem buffering): the traces they held are decided without them"
            );
        }
        // Decisions are on disk before any of their lines leaves the waiting queue: a
        // restart after a partial sweep still knows them. What could not be written
        // before is written first.
        self.write_decisions(now)?;
        let silent = self.source != DecisionSource::Policy
            && now.saturating_sub(self.last_report.load(Relaxed)) > self.feed_silence_ns;
        let silence_ended = self.silence_ended_at.load(Relaxed);
        let by_policy = |f: &TraceFacts, source| {
            let d = self.policy.decide_trace(f);
            Verdict {
                keep: d.keep,
                reason: d.reason,
                source,
            }
        };
        // A trace that waited while the feed was silent (now, or in a silence that ended
        // after its first line) may never be reported; one decided early (num_traces)
        // may still be: either way the fallback decides rather than dropping what the
        // sampler may keep.
        let fallback = |early: bool, first_seen: u64| silent || early || silence_ended > first_seen;
        let decide = |f: &TraceFacts, early: bool, first_seen: u64| match self.source {
            DecisionSource::Policy | DecisionSource::FeedOrPolicy => by_policy(f, Source::Policy),
            DecisionSource::Feed if fallback(early, first_seen) && self.has_policy => {
                by_policy(f, Source::Fallback)
            }
            DecisionSource::Feed if fallback(early, first_seen) => Verdict {
                keep: true,
                reason: Reason::NotSampled,
                source: Source::Fallback,
            },
            DecisionSource::Feed => Verdict {
                keep: false,
                reason: Reason::NotSampled,
                source: Source::Feed,
            },
        };
        loop {
            let mut decided = Vec::new();
            lock(&self.table).decide_due_with(now, &decide, DECISIONS_PER_RECORD, &mut decided);
            if decided.is_empty() {
                break;
            }
            tick.decided += decided.len();
            self.count_decisions(&decided, silent);
            lock(&self.unwritten).extend(decided.iter().map(|d| (d.trace, d.keep)));
            if !self.write_decisions(now)? || decided.len() < DECISIONS_PER_RECORD {
                break;
            }
        }
        tick.unwritten = lock(&self.unwritten).len();
        // Held lines moved to the tail in this tick are not moved again in it.
        let requeue_below = self.wait.gauges().next_seq;
        loop {
            let step = self.sweep_step(requeue_below)?;
            tick.moved += step.moved;
            tick.dropped += step.dropped;
            if step.poisoned {
                tick.poisoned = true;
                break;
            }
            if step.blocked {
                tick.blocked = true;
                break;
            }
            if step.records == 0 {
                break;
            }
        }
        lock(&self.table).set_sweep_blocked(tick.blocked || tick.unwritten > 0);
        Ok(tick)
    }

    /// Writes the decisions not yet on disk; their traces' lines may then be swept.
    /// `Ok(false)`: the waiting queue is full (counted, logged, retried next tick).
    fn write_decisions(&self, now: u64) -> Result<bool, SpoolError> {
        let pending = std::mem::take(&mut *lock(&self.unwritten));
        if pending.is_empty() {
            return Ok(true);
        }
        let recs: Vec<Vec<u8>> = pending
            .chunks(DECISIONS_PER_RECORD)
            .map(|part| {
                let mut r = Vec::with_capacity(5 + 17 * part.len());
                record::write_decisions(&mut r, part);
                r
            })
            .collect();
        match self.wait.append_at(now, &recs) {
            Ok(_) => {
                lock(&self.table).mark_durable(pending.iter().map(|(t, _)| *t));
                Ok(true)
            }
            Err(e) => {
                let n = pending.len();
                lock(&self.unwritten).splice(0..0, pending);
                self.metrics.decision_write_failures.fetch_add(1, Relaxed);
                let mut last = lock(&self.dfail_logged);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    log::warn!(
                        "cannot record {n} decisions ({e}): their traces' lines wait in the \
                         waiting queue until they are recorded"
                    );
                }
                match e {
                    SpoolError::Full { .. } => Ok(false),
                    e => Err(e),
                }
            }
        }
    }

    fn count_decisions(&self, decided: &[Decided], silent_now: bool) {
        let mut d = lock(&self.decided);
        for x in decided {
            *d.entry((x.keep, x.source, x.reason)).or_insert(0) += 1;
            if x.keep {
                match x.source {
                    Source::Policy => &self.metrics.kept_by_policy,
                    Source::Feed => &self.metrics.kept_by_feed,
                    Source::Fallback => &self.metrics.kept_by_fallback,
                }
                .fetch_add(1, Relaxed);
            }
            if x.source == Source::Fallback && silent_now && !self.silent.swap(true, Relaxed) {
                self.metrics.feed_silence_episodes.fetch_add(1, Relaxed);
                log::warn!(
                    "the decision feed has been silent for over {:?} while lines wait: \
                     traces are decided by {} until it reports again",
                    Duration::from_nanos(self.feed_silence_ns),
                    if self.has_policy {
                        "the policy file"
                    } else {
                        "keeping them (no policy_file)"
                    }
                );
            }
            if x.early {
                self.metrics.decided_early.fetch_add(1, Relaxed);
            }
            if x.poisoned {
                self.metrics.quarantined_decisions.fetch_add(1, Relaxed);
                log::error!(
                    "the policy panicked {POISON_TRIES} times deciding trace {}: kept",
                    hex(&x.trace)
                );
            }
        }
    }

    /// Moves the oldest decided lines of the waiting queue: kept ones, mapped to their
    /// entries, to the main queue (one batch), dropped ones nowhere; stops at the first
    /// line whose trace still waits or whose decision is not yet on disk.
    fn sweep_step(&self, requeue_below: u64) -> Result<SweepStep, SpoolError> {
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
        let mut held_head = false;
        {
            let t = lock(&self.table);
            for r in &b.records {
                let f = match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending { trace, .. }) => match t.decision(&trace) {
                        None => {
                            held_head =
                                fate.is_empty() && r.seq < requeue_below && t.held_waiting(&trace);
                            break;
                        }
                        Some(keep) => Fate::Trace(trace, keep),
                    },
                    Ok(WaitRecord::Kept { .. }) => Fate::Kept,
                    Ok(WaitRecord::Decisions(_) | WaitRecord::Reported(_)) => Fate::Skip,
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
        if held_head {
            return self.requeue_held(b, requeue_below);
        }
        if n == 0 {
            return Ok(step);
        }
        let b = if n < b.len() {
            self.wait.peek(n, usize::MAX)?
        } else {
            b
        };
        let done_through = *lock(&self.appended_through);
        let mut out: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        let mut oldest = u64::MAX;
        for (r, f) in b.records.iter().zip(fate.iter_mut()) {
            let keep = match f {
                Fate::Trace(_, keep) => *keep,
                Fate::Kept => true,
                Fate::Skip | Fate::Quarantined(_) => false,
            };
            if !keep {
                if matches!(f, Fate::Trace(..)) {
                    step.dropped += 1;
                }
                continue;
            }
            if done_through.is_some_and(|s| r.seq <= s) {
                continue; // in the main queue already (an earlier, partly blocked step)
            }
            let (tag, event) = match record::parse(&r.payload) {
                Ok(WaitRecord::Pending { tag, event, .. } | WaitRecord::Kept { tag, event }) => {
                    (tag, event)
                }
                _ => continue,
            };
            let start = out.len();
            let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (self.mapper)(tag, event, &mut out)
            }));
            match mapped {
                Ok(Ok(())) => {
                    ends.push(out.len());
                    seqs.push(r.seq);
                    oldest = oldest.min(r.ts_ns);
                }
                Ok(Err(e)) => {
                    out.truncate(start);
                    self.metrics.unreadable_records.fetch_add(1, Relaxed);
                    log::error!("waiting queue record {}: {e}; skipped", r.seq);
                }
                Err(p) => {
                    out.truncate(start);
                    let why = panic_text(&*p);
                    let tries = {
                        let mut poison = lock(&self.poison);
                        let n = poison.entry(r.seq).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if tries < POISON_TRIES {
                        log::error!(
                            "waiting queue record {}: mapping panicked ({why}), try {tries} of \
                             {POISON_TRIES}; the sweep retries it",
                            r.seq
                        );
                        step.poisoned = true;
                        return Ok(step);
                    }
                    lock(&self.poison).remove(&r.seq);
                    self.quarantine(r, tag, event, &why);
                    // Counted as neither kept nor dropped: it is in the quarantine file.
                    *f = match f {
                        Fate::Trace(tr, _) => Fate::Quarantined(Some(*tr)),
                        _ => Fate::Quarantined(None),
                    };
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
            let handled = self.append_main(oldest, &kept)?;
            if handled < kept.len() {
                if handled > 0 {
                    *lock(&self.appended_through) = Some(seqs[handled - 1]);
                    (self.on_kept)(handled);
                }
                step.moved = handled;
                step.blocked = true;
                return Ok(step);
            }
        }
        self.wait.ack(&b)?;
        let newly = kept.len();
        let mut trace_kept = 0u64;
        {
            let mut t = lock(&self.table);
            for f in &fate {
                match f {
                    Fate::Trace(tr, keep) => {
                        t.swept(tr);
                        trace_kept += u64::from(*keep);
                    }
                    Fate::Quarantined(Some(tr)) => t.swept(tr),
                    _ => {}
                }
            }
        }
        if let Some(last) = b.records.last() {
            let mut poison = lock(&self.poison);
            if !poison.is_empty() {
                poison.retain(|s, _| *s > last.seq);
            }
        }
        step.records = b.len();
        step.moved = newly;
        self.metrics
            .lines_dropped_trace
            .fetch_add(step.dropped as u64, Relaxed);
        self.metrics.lines_kept_trace.fetch_add(trace_kept, Relaxed);
        if newly > 0 {
            (self.on_kept)(newly);
        }
        Ok(step)
    }

    /// The head of the waiting queue is a line of a held trace (its rest may be in a
    /// chunk answered retry, which needs room to come in): the run of held lines at the
    /// head moves to the tail, so the decided lines behind it can be swept and their
    /// room freed. Written before the head is acknowledged: a crash in between leaves a
    /// line twice (delivered twice if kept), never zero times. If even that cannot be
    /// written (the waiting queue is full to its last byte), the head trace is released
    /// and decided when due: room comes before completeness.
    fn requeue_held(
        &self,
        b: lockstep_spool::Batch,
        requeue_below: u64,
    ) -> Result<SweepStep, SpoolError> {
        let mut step = SweepStep::default();
        let mut held: Vec<TraceId> = Vec::new();
        let (k, next_ready) = {
            let t = lock(&self.table);
            let k = b
                .records
                .iter()
                .take_while(|r| match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending { trace, .. })
                        if r.seq < requeue_below && t.held_waiting(&trace) =>
                    {
                        held.push(trace);
                        true
                    }
                    _ => false,
                })
                .count();
            // Moved only when what follows can be swept now: otherwise moving them frees
            // nothing, and they would be written again and again.
            let next_ready = b
                .records
                .get(k)
                .is_some_and(|r| match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending { trace, .. }) => t.decision(&trace).is_some(),
                    _ => true,
                });
            (k, next_ready)
        };
        if k == 0 {
            return Ok(step);
        }
        if !next_ready {
            // Nothing behind them can move. If they are all the waiting queue holds, fill
            // over half the room flushes may use, and flushes are refused for want of
            // room, their rest may never come in: room comes before completeness.
            let g = self.wait.gauges();
            let room = self.wait.config().max_bytes.saturating_sub(self.reserve);
            if k as u64 == g.records
                && g.bytes.saturating_mul(2) >= room
                && self.refused_full.load(Relaxed)
            {
                self.force_release_all(held, "fill the waiting queue");
            }
            return Ok(step);
        }
        let recs: Vec<&[u8]> = b.records[..k].iter().map(|r| &r.payload[..]).collect();
        // They may use most of the decision reserve (they are few, and moving them is
        // what frees the head segment), never its last quarter: that always takes the
        // decisions that let the queue be swept.
        match self
            .wait
            .append_reserving(b.records[0].ts_ns, &recs, self.reserve / 4)
        {
            Ok(_) => {}
            Err(SpoolError::Full { .. }) => {
                self.force_release_all(held, "are the oldest lines of a full waiting queue");
                return Ok(step);
            }
            Err(e) => return Err(e),
        }
        let part = if k < b.len() {
            self.wait.peek(k, usize::MAX)?
        } else {
            b
        };
        self.wait.ack(&part)?;
        self.metrics.lines_requeued.fetch_add(k as u64, Relaxed);
        step.records = k;
        Ok(step)
    }

    /// Held traces decided without the rest they wait for (counted, logged).
    fn force_release_all(&self, mut held: Vec<TraceId>, why: &str) {
        held.sort_unstable();
        held.dedup();
        let mut t = lock(&self.table);
        for tr in &held {
            t.force_release(tr);
        }
        drop(t);
        log::warn!(
            "{} traces waiting for chunks answered retry {why}: decided without them",
            held.len()
        );
    }

    /// Sets a record whose mapping keeps panicking aside: one JSON line in
    /// `quarantine.jsonl` beside the waiting queue (its raw event in hex), counted.
    fn quarantine(&self, r: &lockstep_spool::Record, tag: &[u8], event: &[u8], why: &str) {
        self.metrics.quarantined_records.fetch_add(1, Relaxed);
        let trace = match record::parse(&r.payload) {
            Ok(WaitRecord::Pending { trace, .. }) => Some(hex(&trace)),
            _ => None,
        };
        log::error!(
            "waiting queue record {}: mapping panicked {POISON_TRIES} times ({why}); set aside \
             in {}",
            r.seq,
            self.wait_dir.join(QUARANTINE_FILE).display()
        );
        let path = self.wait_dir.join(QUARANTINE_FILE);
        if std::fs::metadata(&path).map_or(0, |m| m.len()) > QUARANTINE_MAX_BYTES {
            return;
        }
        let line = format!(
            "{{\"seq\":{},\"ts_ns\":{},\"trace_id\":{},\"tag\":{},\"panic\":{},\"event_hex\":\"{}\"}}\n",
            r.seq,
            r.ts_ns,
            trace.map_or("null".to_string(), |t| format!("\"{t}\"")),
            json_str(&String::from_utf8_lossy(tag)),
            json_str(why),
            event.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
        if let Err(e) = res {
            log::error!("{}: {e}", path.display());
        }
    }

    /// Appends kept entries to the main queue. Returns how many of them, from the
    /// front, are in the main queue or skipped (too large, counted); fewer than all:
    /// the main queue is full (retried on the next tick, from where it stopped). A batch
    /// larger than its whole budget is appended in halves.
    fn append_main(&self, ts: u64, kept: &[&[u8]]) -> Result<usize, SpoolError> {
        match self.main.append_at(ts, kept) {
            Ok(_) => Ok(kept.len()),
            Err(e @ SpoolError::Full { .. }) => {
                let mut last = lock(&self.full_logged);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    log::warn!("{e}: kept lines wait in the waiting queue");
                }
                Ok(0)
            }
            Err(SpoolError::RecordTooLarge { index, len, max }) => {
                self.metrics.too_large.fetch_add(1, Relaxed);
                log::error!(
                    "a kept line's entry is {len} bytes, above max_record_bytes {max}: skipped"
                );
                let index = index.min(kept.len());
                let a = self.append_main(ts, &kept[..index])?;
                if a < index {
                    return Ok(a);
                }
                let rest = kept.get(index + 1..).unwrap_or_default();
                Ok(index + 1 + self.append_main(ts, rest)?)
            }
            Err(e @ SpoolError::BatchTooLarge { .. }) if kept.len() > 1 => {
                log::debug!("{e}: appending in halves");
                let mid = kept.len() / 2;
                let a = self.append_main(ts, &kept[..mid])?;
                if a < mid {
                    return Ok(a);
                }
                Ok(mid + self.append_main(ts, &kept[mid..])?)
            }
            Err(SpoolError::BatchTooLarge { needed, max }) => {
                self.metrics.too_large.fetch_add(1, Relaxed);
                log::error!("a kept line's entry ({needed} bytes) can never fit spool_max_bytes {max}: skipped");
                Ok(kept.len())
            }
            Err(e) => Err(e),
        }
    }

    /// The facts of a waiting line read again from its raw event under this policy.
    fn facts_of(&self, trace: &TraceId, event: &[u8]) -> TraceFacts {
        let mut facts = TraceFacts::new(Some(*trace));
        let mut ex = lock(&self.extractors)
            .pop()
            .unwrap_or_else(|| self.policy.extractor());
        if let Some(Ok(r)) = Chunk::new(event).records().next() {
            ex.extract_msgpack(r.event.body);
            ex.merge_otlp_metadata(r.event.metadata);
            self.policy.observe(ex.last(), &mut facts);
        }
        lock(&self.extractors).push(ex);
        facts
    }

    fn recover(&self) -> Result<Recovered, SpoolError> {
        let mut rec = Recovered::default();
        let now = self.clock.now();
        let mut t = lock(&self.table);
        let mut b = self.wait.peek(SCAN_RECORDS, SCAN_BYTES)?;
        while !b.is_empty() {
            for r in &b.records {
                // A record stamped in the future (the clock stepped back across the
                // restart) waits from now, not from then.
                let ts = r.ts_ns.min(now);
                match record::parse(&r.payload) {
                    Ok(WaitRecord::Pending {
                        fingerprint,
                        trace,
                        facts,
                        event,
                        ..
                    }) => {
                        rec.pending_lines += 1;
                        if fingerprint == self.fingerprint {
                            t.recover_line(&trace, &facts, ts);
                        } else {
                            rec.recomputed_lines += 1;
                            let facts = self.facts_of(&trace, event);
                            t.recover_line(&trace, &facts, ts);
                        }
                    }
                    Ok(WaitRecord::Kept { .. }) => rec.kept_lines += 1,
                    Ok(WaitRecord::Decisions(ds)) => {
                        for (tr, keep) in ds.iter() {
                            rec.decisions += 1;
                            t.recover_decision(&tr, keep);
                        }
                    }
                    Ok(WaitRecord::Reported(ids)) => {
                        for tr in ids.iter() {
                            rec.reports += 1;
                            t.recover_report(&tr);
                        }
                    }
                    Err(_) => {}
                }
            }
            b = self.wait.peek_after(&b, SCAN_RECORDS, SCAN_BYTES)?;
        }
        t.finish_recovery(now);
        rec.waiting_traces = t.waiting();
        rec.pinned_traces = t.pinned();
        self.metrics
            .recovered_other_policy
            .store(rec.recomputed_lines, Relaxed);
        if rec.recomputed_lines > 0 {
            log::warn!(
                "{} waiting lines were written under another policy: their facts were read \
                 again from the lines; decisions already recorded stand",
                rec.recomputed_lines
            );
        }
        Ok(rec)
    }
}

fn hex(t: &[u8]) -> String {
    t.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

enum Fate {
    Trace(TraceId, bool),
    Kept,
    Skip,
    /// Set aside (its mapping kept panicking); a line of this trace, if any.
    Quarantined(Option<TraceId>),
}

#[derive(Debug, Default)]
struct SweepStep {
    records: usize,
    moved: usize,
    dropped: usize,
    blocked: bool,
    poisoned: bool,
}
