//! The drain: one thread per output instance moving entries from the spool to Loki,
//! oldest first, acknowledging a batch only once every entry in it is resolved
//! (delivered, rejected, blocked or dropped by policy).

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockstep_loki::{
    check_tenant, effective_labels, Backoff, BackoffConfig, BreakerConfig, BreakerState,
    CircuitBreaker, EncodeScratch, EntryView, LokiClient, Outcome, StreamView,
};
use lockstep_spool::{Batch, Record, Spool};

use crate::entry::{pair_bytes_of, pairs_of, EntryRef, SpooledEntry};
use crate::metrics::Metrics;

/// What to do with entries older than Loki accepts (`reject_old_samples_max_age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooOld {
    /// Drop them and count them (`lockstep_loki_entries_dropped_total{reason="too_old"}`).
    Drop,
    /// Send them stamped with the oldest time Loki still accepts (now − `too_old_age`;
    /// stamping them *now* would put the rest of the stream's backlog "too far behind");
    /// the original timestamp (ns since the epoch) goes into structured metadata under
    /// [`ORIGINAL_TS_KEY`].
    Rewrite,
}

/// Structured-metadata key holding the original timestamp of a rewritten entry.
pub const ORIGINAL_TS_KEY: &str = "lockstep_original_ts";

/// Drain settings.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Most entries per push (default 512).
    pub batch_entries: usize,
    /// Most payload bytes read from the spool per push (default 1 MiB).
    pub batch_bytes: usize,
    /// How long a batch that is not full waits for more entries, counted from when its
    /// oldest entry was queued (default 5 s). A backlog older than this goes at once.
    pub linger: Duration,
    /// Retry delays.
    pub backoff: BackoffConfig,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// Policy for entries older than `too_old_age`.
    pub too_old: TooOld,
    /// Age beyond which an entry counts as too old (default 167 h: one hour under
    /// Loki's default `reject_old_samples_max_age` of 168 h, so an entry does not age
    /// out while in flight).
    pub too_old_age: Duration,
    /// How far past the too-old cutoff a push waiting in retry may age before the
    /// policy is applied to it again (default 10 min; a rewritten entry sits right at
    /// the cutoff, and `too_old_age` is an hour inside Loki's limit).
    pub too_old_slack: Duration,
    /// File receiving rejected entries as JSON lines, if any.
    pub dead_letter: Option<PathBuf>,
    /// Size at which the dead-letter file stops growing (default 100 MiB).
    pub dead_letter_max_bytes: u64,
    /// On shutdown, how long the drain keeps starting batches while pushes succeed,
    /// before it leaves the rest on disk (default 20 s). It gives up at once when a
    /// push fails or the breaker is open. Every push keeps the client's own timeout and
    /// a batch whose first push went out is finished, so a push Loki completes is
    /// always acknowledged and never sent again; stopping takes at most
    /// `shutdown_grace` + the client's timeout per push of the last batch.
    pub shutdown_grace: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            batch_entries: 4096,
            batch_bytes: 1 << 20,
            linger: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            breaker: BreakerConfig::default(),
            too_old: TooOld::Drop,
            too_old_age: Duration::from_secs(167 * 3600),
            too_old_slack: Duration::from_secs(600),
            dead_letter: None,
            dead_letter_max_bytes: 100 << 20,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

#[derive(Default)]
struct Signal {
    /// Bumped by every [`Drain::notify`].
    appended: u64,
    /// Records appended, as told by [`Drain::notify`].
    appended_records: u64,
    /// Set by [`Drain::stop`]: send what can be sent until then, then exit.
    deadline: Option<Instant>,
}

struct Shared {
    spool: Arc<Spool>,
    client: LokiClient,
    cfg: DrainConfig,
    metrics: Arc<Metrics>,
    signal: Mutex<Signal>,
    cv: Condvar,
    /// The encoder's buffers, kept from push to push (the drain thread's alone).
    scratch: Mutex<EncodeScratch>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What preparing and encoding a push needs of the drain.
struct Ctx<'s> {
    client: &'s LokiClient,
    cfg: &'s DrainConfig,
    metrics: &'s Metrics,
    scratch: &'s Mutex<EncodeScratch>,
}

impl Shared {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            client: &self.client,
            cfg: &self.cfg,
            metrics: &self.metrics,
            scratch: &self.scratch,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        lock(&self.signal).deadline
    }

    /// Waits up to `d`, or until a stop (and, when `on_append`, until an append after
    /// generation `seen`). Returns the stop deadline if one is set.
    fn wait(&self, d: Duration, on_append: Option<u64>) -> Option<Instant> {
        let end = after(d);
        let mut s = lock(&self.signal);
        loop {
            if s.deadline.is_some() {
                return s.deadline;
            }
            if let Some(seen) = on_append {
                if s.appended != seen {
                    return None;
                }
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            s = self
                .cv
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Shared {
    /// Waits up to `d`, or until a stop, or until `missing` more records were appended
    /// since `seen_records`.
    fn wait_fill(&self, d: Duration, seen_records: u64, missing: u64) {
        let end = after(d);
        let mut s = lock(&self.signal);
        loop {
            let now = Instant::now();
            if s.deadline.is_some()
                || s.appended_records.saturating_sub(seen_records) >= missing
                || now >= end
            {
                return;
            }
            s = self
                .cv
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running drain thread. [`Drain::stop`] ends it; dropping it without `stop` also
/// stops it (with the configured grace).
pub struct Drain {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Guard returned by the thread-start hook, kept for the thread's life (the plugin
/// uses it to route the thread's logs to its instance).
pub type ThreadGuard = Box<dyn std::any::Any>;

impl Drain {
    /// Starts the drain thread named `name`. `on_thread_start` runs first on the new
    /// thread; what it returns lives until the thread ends.
    pub fn start(
        name: String,
        spool: Arc<Spool>,
        client: LokiClient,
        cfg: DrainConfig,
        metrics: Arc<Metrics>,
        on_thread_start: Box<dyn FnOnce() -> ThreadGuard + Send>,
    ) -> std::io::Result<Drain> {
        let shared = Arc::new(Shared {
            spool,
            client,
            cfg,
            metrics,
            signal: Mutex::new(Signal::default()),
            cv: Condvar::new(),
            scratch: Mutex::new(EncodeScratch::default()),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let _guard = on_thread_start();
            run(&sh);
            log::debug!("drain thread stopped");
        })?;
        Ok(Drain {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Tells the drain that `records` records were appended.
    pub fn notify(&self, records: usize) {
        {
            let mut s = lock(&self.shared.signal);
            s.appended += 1;
            s.appended_records += records as u64;
        }
        self.shared.cv.notify_all();
    }

    /// Asks the drain to stop: it keeps sending queued entries while pushes succeed,
    /// starting no batch after `shutdown_grace` (a batch in flight is finished, each push
    /// within the client's timeout, and acknowledged), leaves the rest on disk, and
    /// exits; at once when Loki fails or the breaker is open. Returns once the thread
    /// has ended, so no code of the plugin runs after its exit. Idempotent.
    pub fn stop(&self) {
        self.stop_at(after(self.shared.cfg.shutdown_grace));
    }

    /// [`Drain::stop`] with the deadline given: no batch starts after it (the output's
    /// exit spends part of `shutdown_grace` deciding traces first).
    pub fn stop_at(&self, deadline: Instant) {
        {
            let mut s = lock(&self.shared.signal);
            if s.deadline.is_none() {
                s.deadline = Some(deadline);
            }
        }
        self.shared.cv.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One entry of a push, read in place from the batch's payloads: nothing of it is
/// copied or allocated (the drain's hot path; an owned entry cost an allocation per
/// line, metadata name and value).
#[derive(Debug, Clone)]
struct Item<'b> {
    ts_ns: i128,
    line: &'b str,
    /// The structured metadata as spooled (a msgpack array of `[name, value]` pairs,
    /// validated by [`EntryRef::read`]).
    metadata_raw: &'b [u8],
    /// The value of [`ORIGINAL_TS_KEY`], sent after the spooled pairs, once `too_old
    /// rewrite` restamped the entry.
    original_ts: Option<String>,
}

impl EntryView for Item<'_> {
    fn ts_ns(&self) -> i128 {
        self.ts_ns
    }
    fn line(&self) -> &str {
        self.line
    }
    fn structured_metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        pairs_of(self.metadata_raw).chain(self.original_ts.as_deref().map(|v| (ORIGINAL_TS_KEY, v)))
    }
    fn structured_metadata_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        pair_bytes_of(self.metadata_raw).chain(
            self.original_ts
                .as_deref()
                .map(|v| (ORIGINAL_TS_KEY.as_bytes(), v.as_bytes())),
        )
    }
}

/// A stream of a push: its labels (as Loki sees them) and its entries, sorted by time.
struct View<'b> {
    labels: BTreeMap<String, String>,
    entries: Vec<Item<'b>>,
}

impl<'b> StreamView for View<'b> {
    type Entry = Item<'b>;
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn entries(&self) -> &[Item<'b>] {
        &self.entries
    }
}

/// Groups label sets and their entries into streams, as `lockstep_loki::group_entries`
/// does for the same entries in the same order: one stream per effective label set, in
/// the order of its first entry, each sorted by time (stable); no empty stream.
fn regroup<'b>(
    parts: impl IntoIterator<Item = (BTreeMap<String, String>, Vec<Item<'b>>)>,
) -> Vec<View<'b>> {
    let mut index: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
    let mut out: Vec<View<'b>> = Vec::new();
    for (labels, entries) in parts {
        if entries.is_empty() {
            continue;
        }
        let eff = effective_labels(&labels);
        let i = match index.get(&eff) {
            Some(&i) => i,
            None => {
                index.insert(eff.clone(), out.len());
                out.push(View {
                    labels: eff,
                    entries: Vec::new(),
                });
                out.len() - 1
            }
        };
        out[i].entries.extend(entries);
    }
    for s in &mut out {
        s.entries.sort_by_key(|e| e.ts_ns);
    }
    out
}

/// One tenant's share of a batch, encoded once and resent as is. Its entries borrow the
/// batch's payloads.
struct Push<'b> {
    tenant: Option<String>,
    streams: Vec<View<'b>>,
    entries: u64,
    /// Oldest entry (ns), to notice when a push in retry ages past `too_old_age`.
    oldest_ns: i128,
    body: Vec<u8>,
}

impl<'b> Push<'b> {
    fn new(cx: &Ctx<'_>, tenant: Option<String>, streams: Vec<View<'b>>) -> Option<Push<'b>> {
        let entries: u64 = streams.iter().map(|s| s.entries.len() as u64).sum();
        if entries == 0 {
            return None;
        }
        let oldest_ns = streams
            .iter()
            .flat_map(|s| s.entries.first())
            .map(|e| e.ts_ns)
            .min()
            .unwrap_or(0);
        match cx.client.encode_with(&streams, &mut lock(cx.scratch)) {
            Ok(body) => Some(Push {
                tenant,
                streams,
                entries,
                oldest_ns,
                body,
            }),
            Err(e) => {
                cx.metrics.entries_undecodable.fetch_add(entries, Relaxed);
                log::error!("dropping {entries} entries that cannot be encoded: {e}");
                None
            }
        }
    }

    /// Halves of this push (by entries, in order), for a 413: Loki stored nothing.
    fn split(self, cx: &Ctx<'_>) -> Vec<Push<'b>> {
        let mut left = (self.entries / 2) as usize;
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for mut s in self.streams {
            let k = left.min(s.entries.len());
            left -= k;
            let rest = s.entries.split_off(k);
            first.push((s.labels.clone(), s.entries));
            second.push((s.labels, rest));
        }
        [first, second]
            .into_iter()
            .filter_map(|half| Push::new(cx, self.tenant.clone(), regroup(half)))
            .collect()
    }
}

/// The instant `d` from now, saturating far in the future instead of overflowing.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Runs the drain loop; a panic in it (a bug) is logged and the loop restarted after
/// a second, so shipping resumes instead of stopping silently while flushes go on.
fn run(sh: &Shared) {
    loop {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_loop(sh)));
        match r {
            Ok(()) => return,
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                sh.metrics.spool_errors.fetch_add(1, Relaxed);
                log::error!(
                    "drain failed ({msg}); restarting it in 1 s; queued entries stay on disk"
                );
                if sh.wait(Duration::from_secs(1), None).is_some() {
                    return;
                }
            }
        }
    }
}

/// What [`prepare`] found.
enum Prepared<'b> {
    Pushes(Vec<Push<'b>>),
    /// A record of a format this version does not know: never ack (and lose) it.
    Stall(String),
}

fn run_loop(sh: &Shared) {
    let cfg = &sh.cfg;
    let m = &*sh.metrics;
    let mut backoff = Backoff::new(cfg.backoff);
    let mut breaker = CircuitBreaker::new(cfg.breaker);
    let mut dead = DeadLetter::new(cfg.dead_letter.clone(), cfg.dead_letter_max_bytes);
    loop {
        let (seen, seen_records) = {
            let s = lock(&sh.signal);
            (s.appended, s.appended_records)
        };
        let stopping = sh.deadline();
        if stopping.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let batch = match sh.spool.peek(cfg.batch_entries, cfg.batch_bytes) {
            Ok(b) => b,
            Err(e) => {
                m.spool_errors.fetch_add(1, Relaxed);
                log::error!("reading the queue: {e}; retrying in 1 s");
                if sh.wait(Duration::from_secs(1), None).is_some() {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if batch.corrupt_spans() > 0 {
                if !ack(sh, &batch) {
                    return;
                }
                continue;
            }
            if stopping.is_some() {
                return; // everything queued was sent
            }
            sh.wait(Duration::from_secs(1), Some(seen));
            continue;
        }
        if stopping.is_none() && !is_due(cfg, &batch) {
            // Wait for the linger to end, or for enough appends to fill the batch (a
            // wake-up per flush would re-read the partial batch each time).
            let oldest = batch.records[0].ts_ns;
            let due = oldest.saturating_add(cfg.linger.as_nanos().min(u64::MAX as u128) as u64);
            let left = Duration::from_nanos(due.saturating_sub(lockstep_spool::now_ns()));
            let missing = (cfg.batch_entries - batch.len()) as u64;
            sh.wait_fill(left.max(Duration::from_millis(1)), seen_records, missing);
            continue;
        }
        // The records no longer readable in place, rewritten by `prepare` (they must
        // live as long as the pushes that borrow them).
        let mut rewritten = Vec::new();
        let mut pushes = match prepare(&sh.ctx(), &batch.records, &mut rewritten, &mut dead) {
            Prepared::Pushes(p) => p,
            Prepared::Stall(why) => {
                m.spool_errors.fetch_add(1, Relaxed);
                log::error!("{why}: the queue is held (nothing is dropped) until a version that reads it runs");
                if sh.wait(Duration::from_secs(30), None).is_some() {
                    return;
                }
                continue;
            }
        };
        let mut i = 0;
        while i < pushes.len() {
            let deadline = sh.deadline();
            let now = Instant::now();
            if sh.spool.overtaken(&batch) {
                // `spool_full drop_oldest` deleted (and counted) these records while
                // Loki was failing: sending them now would make the count a lie.
                log::warn!("the batch in retry was dropped by spool_full drop_oldest; moving on to what survived");
                break;
            }
            // Past the bound, no new batch starts; a batch already started is finished
            // (an unacknowledged batch would be sent again, whole, at the next start).
            if i == 0 && deadline.is_some_and(|d| now >= d) {
                log::info!(
                    "stopping with {} queued entries left on disk for the next start",
                    sh.spool.gauges().records
                );
                return;
            }
            // A push that waited in retry may have aged past too_old_age since it was
            // prepared: apply the policy again rather than let Loki reject it.
            // Before `breaker.allow`, which takes the half-open probe: a probe taken and
            // then not sent would leave the breaker waiting for it forever.
            // (With slack: a rewritten entry sits right at the cutoff, and too_old_age is
            // an hour inside Loki's limit.)
            if pushes[i].oldest_ns
                < cutoff_ns(cfg) - cfg.too_old_slack.as_nanos().min(i64::MAX as u128) as i128
            {
                let p = pushes.remove(i);
                if let Some(p) = refresh_too_old(&sh.ctx(), p) {
                    pushes.insert(i, p);
                }
                continue;
            }
            if !breaker.allow(now) {
                set_breaker(m, &breaker);
                if deadline.is_some() {
                    return; // Loki is down: leave everything on disk
                }
                let wait = breaker.retry_at().map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(now)
                });
                m.retry_delay_ms.store(wait.as_millis() as u64, Relaxed);
                if sh.wait(wait.max(Duration::from_millis(1)), None).is_some() {
                    return;
                }
                continue;
            }
            set_breaker(m, &breaker);
            let p = &pushes[i];
            // The client's own timeout, during a stop too: a push cut short at the stop
            // bound may still be stored by Loki, and would then be sent again.
            let outcome = sh.client.push_body_as(p.tenant.as_deref(), &p.body, None);
            match outcome {
                Outcome::Delivered { .. } => {
                    m.pushes_delivered.fetch_add(1, Relaxed);
                    m.entries_sent.fetch_add(p.entries, Relaxed);
                }
                Outcome::Blocked { status, body } => {
                    m.pushes_blocked.fetch_add(1, Relaxed);
                    m.entries_blocked.fetch_add(p.entries, Relaxed);
                    log::warn!(
                        "Loki answered {status} (ingestion blocked by its operator): {} entries discarded by Loki: {body}",
                        p.entries
                    );
                }
                Outcome::Rejected { status: 413, body } if p.entries > 1 => {
                    // Too large: Loki stored nothing, so halves cannot duplicate.
                    log::warn!(
                        "Loki answered 413 to a push of {} entries ({body}); splitting it",
                        p.entries
                    );
                    m.pushes_rejected.fetch_add(1, Relaxed);
                    let p = pushes.remove(i);
                    for (k, half) in p.split(&sh.ctx()).into_iter().enumerate() {
                        pushes.insert(i + k, half);
                    }
                    breaker.record_success();
                    continue;
                }
                Outcome::Rejected { status, body } => {
                    m.pushes_rejected.fetch_add(1, Relaxed);
                    m.entries_rejected.fetch_add(p.entries, Relaxed);
                    let note = if status == 400 {
                        " (Loki stores the valid entries of a 400; not retried)"
                    } else {
                        " (not retried)"
                    };
                    log::error!(
                        "Loki rejected a push of {} entries with {status}{note}: {body}",
                        p.entries
                    );
                    let n = dead.write(p.tenant.as_deref(), &p.streams, status, &body);
                    m.dead_lettered.fetch_add(n, Relaxed);
                }
                Outcome::Retry(cause) => {
                    m.pushes_failed.fetch_add(1, Relaxed);
                    m.consecutive_failures.fetch_add(1, Relaxed);
                    breaker.record_failure(Instant::now());
                    set_breaker(m, &breaker);
                    if sh.deadline().is_some() {
                        log::warn!(
                            "push failed during shutdown ({}); the batch stays on disk",
                            describe(&cause)
                        );
                        return;
                    }
                    let delay = backoff.next_delay();
                    m.retry_delay_ms.store(delay.as_millis() as u64, Relaxed);
                    log::warn!(
                        "push of {} entries failed, retry in {} ms: {}",
                        p.entries,
                        delay.as_millis(),
                        describe(&cause)
                    );
                    if sh.wait(delay, None).is_some()
                        && sh.deadline().is_some_and(|d| Instant::now() >= d)
                    {
                        return;
                    }
                    continue;
                }
            }
            breaker.record_success();
            backoff.reset();
            m.consecutive_failures.store(0, Relaxed);
            m.retry_delay_ms.store(0, Relaxed);
            set_breaker(m, &breaker);
            pushes[i].body = Vec::new();
            i += 1;
        }
        if i == pushes.len() && !ack(sh, &batch) {
            return;
        }
    }
}

fn describe(cause: &lockstep_loki::RetryCause) -> String {
    match cause {
        lockstep_loki::RetryCause::Status { status, body } => format!("status {status}: {body}"),
        lockstep_loki::RetryCause::Transport(t) => t.to_string(),
    }
}

/// Publishes the breaker's state and logs its transitions (an operator watching the
/// log must see the drain go quiet on purpose).
fn set_breaker(m: &Metrics, b: &CircuitBreaker) {
    let state = match b.state() {
        BreakerState::Closed { .. } => 0,
        BreakerState::Open { .. } => 1,
        BreakerState::HalfOpen { .. } => 2,
    };
    let before = m.breaker_state.swap(state, Relaxed);
    match (before, state) {
        (0, 1) => log::warn!(
            "circuit breaker open after {} consecutive failed pushes: one probe every {} s until Loki answers; entries stay queued",
            m.consecutive_failures.load(Relaxed),
            b.hold().as_secs_f64()
        ),
        (2, 1) => log::debug!("probe failed; breaker open again"),
        (1 | 2, 0) => log::info!("Loki answers again; circuit breaker closed, draining the queue"),
        _ => {}
    }
}
/// Sends now when the batch is full, or its oldest record has waited `linger`.
fn is_due(cfg: &DrainConfig, batch: &Batch) -> bool {
    if batch.len() >= cfg.batch_entries || batch.payload_bytes() as usize >= cfg.batch_bytes / 2 {
        return true;
    }
    let oldest = batch.records[0].ts_ns;
    lockstep_spool::now_ns()
        >= oldest.saturating_add(cfg.linger.as_nanos().min(u64::MAX as u128) as u64)
}

/// Acknowledges a resolved batch. A failing ack (EIO, ENOSPC, a read-only remount) is
/// retried every second, never by sending the batch again; false when stopping.
fn ack(sh: &Shared, batch: &Batch) -> bool {
    let mut logged = false;
    loop {
        match sh.spool.ack(batch) {
            Ok(()) => return true,
            Err(e) => {
                sh.metrics.spool_errors.fetch_add(1, Relaxed);
                if !logged {
                    log::error!("acknowledging a delivered batch: {e}; retrying the acknowledgement every second");
                    logged = true;
                }
                if sh.wait(Duration::from_secs(1), None).is_some() {
                    // Stopping: the batch stays unacknowledged and is sent again at
                    // the next start (Loki absorbs most exact duplicates).
                    return false;
                }
            }
        }
    }
}

/// Entries older than this (ns since the epoch) are too old for Loki.
fn cutoff_ns(cfg: &DrainConfig) -> i128 {
    lockstep_spool::now_ns() as i128 - cfg.too_old_age.as_nanos().min(i64::MAX as u128) as i128
}

/// What the too-old policy did to one entry. The caller counts it: `prepare` may run
/// again on the same batch (a held queue, a re-peek), and must not count twice.
#[derive(PartialEq)]
enum Aged {
    /// Young enough, or already rewritten before.
    Kept,
    /// Rewritten for the first time.
    Rewritten,
    /// Dropped (`too_old drop`).
    Dropped,
}

/// Applies the too-old policy to one entry. A rewritten entry is stamped with the
/// oldest time Loki still accepts (the cutoff), not now: a stamp of now would move its
/// stream's newest time ahead of the rest of the backlog, which Loki would then reject
/// as too far behind.
fn too_old(cfg: &DrainConfig, e: &mut Item<'_>, cutoff: i128) -> Aged {
    if e.ts_ns >= cutoff {
        return Aged::Kept;
    }
    match cfg.too_old {
        TooOld::Drop => Aged::Dropped,
        TooOld::Rewrite => {
            let first = e.original_ts.is_none()
                && !pair_bytes_of(e.metadata_raw).any(|(k, _)| k == ORIGINAL_TS_KEY.as_bytes());
            if first {
                e.original_ts = Some(e.ts_ns.to_string());
            }
            e.ts_ns = cutoff + 1;
            if first {
                Aged::Rewritten
            } else {
                Aged::Kept
            }
        }
    }
}

/// Re-applies the too-old policy to a push that aged in retry.
fn refresh_too_old<'b>(cx: &Ctx<'_>, p: Push<'b>) -> Option<Push<'b>> {
    let cutoff = cutoff_ns(cx.cfg);
    let before = p.entries;
    let mut rewritten = 0;
    let mut kept = 0u64;
    let parts: Vec<_> = p
        .streams
        .into_iter()
        .map(|s| {
            let entries: Vec<Item<'b>> = s
                .entries
                .into_iter()
                .filter_map(|mut e| match too_old(cx.cfg, &mut e, cutoff) {
                    Aged::Dropped => None,
                    aged => {
                        rewritten += u64::from(aged == Aged::Rewritten);
                        Some(e)
                    }
                })
                .collect();
            kept += entries.len() as u64;
            (s.labels, entries)
        })
        .collect();
    let m = cx.metrics;
    m.entries_too_old_rewritten.fetch_add(rewritten, Relaxed);
    m.entries_too_old_dropped.fetch_add(before - kept, Relaxed);
    if kept < before {
        log::warn!(
            "dropped {} entries that aged past too_old_age while Loki was failing",
            before - kept
        );
    }
    Push::new(cx, p.tenant, regroup(parts))
}

/// Where `prepare` reads a record from.
enum Source<'b> {
    /// In place.
    Read(EntryRef<'b>),
    /// Decoded by serde and written again in the current encoding: the `n`th payload
    /// of `rewritten`.
    Rewritten(usize),
    /// Undecodable: counted and skipped.
    Skip,
}

/// Decodes a batch, applies the too-old policy, drops unsendable tenants, and groups
/// the rest into one encoded push per tenant (streams sorted by time). The pushes
/// borrow the records' payloads, and `rewritten`'s for the records that could not be
/// read in place (`rewritten` must be empty).
fn prepare<'b>(
    cx: &Ctx<'_>,
    records: &'b [Record],
    rewritten: &'b mut Vec<Vec<u8>>,
    dead: &mut DeadLetter,
) -> Prepared<'b> {
    let cfg = cx.cfg;
    let m = cx.metrics;
    let cutoff = cutoff_ns(cfg);
    let (mut undecodable, mut old, mut rewrite_n) = (0u64, 0u64, 0u64);
    // First every record's source: in place (the usual case: nothing of the entry is
    // decoded into owned values or allocated), or serde's reading, which tells a newer
    // version (the queue is held) from damage (skipped), written again in the current
    // encoding so that every entry is read the same way.
    let mut sources = Vec::with_capacity(records.len());
    for r in records {
        let src = match EntryRef::read(&r.payload) {
            Some(e) => Source::Read(e),
            None => match SpooledEntry::decode(r.seq, &r.payload) {
                Ok(owned) => {
                    rewritten.push(owned.encode());
                    Source::Rewritten(rewritten.len() - 1)
                }
                Err(err @ crate::EntryError::Version { .. }) => {
                    return Prepared::Stall(err.to_string())
                }
                Err(err) => {
                    undecodable += 1;
                    if undecodable == 1 {
                        log::error!("dropping an undecodable queue record: {err}");
                    }
                    Source::Skip
                }
            },
        };
        sources.push(src);
    }
    let rewritten: &'b Vec<Vec<u8>> = rewritten;
    // Grouped by tenant, then by the entry's label list as spooled (the mapping already
    // made it valid, sorted and unique): one lookup per entry, nothing allocated for an
    // entry of a known stream.
    let mut by_tenant: Vec<(Option<&'b str>, Streams<'b>)> = Vec::new();
    for src in sources {
        let e = match src {
            Source::Read(e) => e,
            Source::Rewritten(i) => match EntryRef::read(&rewritten[i]) {
                Some(e) => e,
                None => {
                    undecodable += 1;
                    continue;
                }
            },
            Source::Skip => continue,
        };
        let mut item = Item {
            ts_ns: e.ts_ns as i128,
            line: e.line,
            metadata_raw: e.metadata_raw,
            original_ts: None,
        };
        match too_old(cfg, &mut item, cutoff) {
            Aged::Kept => {}
            Aged::Rewritten => rewrite_n += 1,
            Aged::Dropped => {
                old += 1;
                continue;
            }
        }
        let streams = match by_tenant.iter().position(|(t, _)| *t == e.tenant) {
            Some(i) => &mut by_tenant[i].1,
            None => {
                by_tenant.push((e.tenant, Streams::default()));
                &mut by_tenant.last_mut().expect("just pushed").1
            }
        };
        streams.push(&e, item);
    }
    // One push per tenant, in tenant order (no tenant first).
    by_tenant.sort_by(|a, b| a.0.cmp(&b.0));
    // Counted only now that the batch is not held (a held batch is prepared again).
    m.entries_undecodable.fetch_add(undecodable, Relaxed);
    m.entries_too_old_dropped.fetch_add(old, Relaxed);
    m.entries_too_old_rewritten.fetch_add(rewrite_n, Relaxed);
    if old > 0 {
        log::warn!(
            "dropped {old} entries older than too_old_age ({} s); set too_old rewrite to send them",
            cfg.too_old_age.as_secs()
        );
    }
    let mut out = Vec::new();
    for (tenant, grouped) in by_tenant {
        let entries = grouped.entries;
        let streams = grouped.finish();
        if let Some(t) = tenant {
            if let Err(e) = check_tenant(t) {
                m.entries_bad_tenant.fetch_add(entries, Relaxed);
                log::error!("dropping {entries} entries: {e}");
                let n = dead.write(Some(t), &streams, 0, "bad tenant");
                m.dead_lettered.fetch_add(n, Relaxed);
                continue;
            }
        }
        out.extend(Push::new(cx, tenant.map(str::to_string), streams));
    }
    Prepared::Pushes(out)
}

/// A push body with its tenant (`None`: no `X-Scope-OrgID`).
pub type TenantBody = (Option<String>, Vec<u8>);

/// The bodies the drain would push for `records` (one per tenant, in order), with the
/// too-old policy applied, without a spool or a Loki (`scratch` kept from call to call
/// as the drain keeps it from batch to batch): what the benchmark measures and the
/// tests compare with the owned path. Not part of the API.
#[doc(hidden)]
pub fn encode_records(
    client: &LokiClient,
    cfg: &DrainConfig,
    records: &[Record],
    scratch: &mut EncodeScratch,
) -> Result<Vec<TenantBody>, String> {
    let metrics = Metrics::default();
    let shared_scratch = Mutex::new(std::mem::take(scratch));
    let cx = Ctx {
        client,
        cfg,
        metrics: &metrics,
        scratch: &shared_scratch,
    };
    let mut rewritten = Vec::new();
    let mut dead = DeadLetter::new(None, 0);
    let out = match prepare(&cx, records, &mut rewritten, &mut dead) {
        Prepared::Pushes(p) => Ok(p.into_iter().map(|p| (p.tenant, p.body)).collect()),
        Prepared::Stall(why) => Err(why),
    };
    *scratch = shared_scratch
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    out
}

/// One tenant's entries grouped into streams by their spooled label lists (the bytes
/// as spooled: a known stream's labels are neither decoded nor allocated again).
#[derive(Default)]
struct Streams<'b> {
    index: HashMap<&'b [u8], usize>,
    /// The last entry's label list and stream (consecutive entries mostly share one).
    last: Option<(&'b [u8], usize)>,
    streams: Vec<View<'b>>,
    entries: u64,
}

impl<'b> Streams<'b> {
    fn push(&mut self, e: &EntryRef<'b>, item: Item<'b>) {
        self.entries += 1;
        let known = match self.last {
            Some((raw, i)) if raw == e.labels_raw => Some(i),
            _ => self.index.get(e.labels_raw).copied(),
        };
        if let Some(i) = known {
            self.last = Some((e.labels_raw, i));
            self.streams[i].entries.push(item);
            return;
        }
        let map: BTreeMap<String, String> = e
            .labels()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let i = self.streams.len();
        self.index.insert(e.labels_raw, i);
        self.last = Some((e.labels_raw, i));
        self.streams.push(View {
            labels: map,
            entries: vec![item],
        });
    }

    /// The streams, each sorted by time (stable), merged where two label lists render
    /// the same under Loki's rules (never, for lists the mapping produced).
    fn finish(self) -> Vec<View<'b>> {
        let mut streams = self.streams;
        if streams
            .iter()
            .all(|s| effective_labels(&s.labels) == s.labels)
            && streams.len() == self.index.len()
        {
            for s in &mut streams {
                s.entries.sort_by_key(|e| e.ts_ns);
            }
            streams
        } else {
            regroup(streams.into_iter().map(|s| (s.labels, s.entries)))
        }
    }
}

/// The dead-letter file: one JSON object per rejected entry.
struct DeadLetter {
    path: Option<PathBuf>,
    max: u64,
    full_logged: bool,
}

impl DeadLetter {
    fn new(path: Option<PathBuf>, max: u64) -> Self {
        DeadLetter {
            path,
            max,
            full_logged: false,
        }
    }

    /// Writes the entries of `streams`; returns how many were written.
    fn write<S: StreamView>(
        &mut self,
        tenant: Option<&str>,
        streams: &[S],
        status: u16,
        reason: &str,
    ) -> u64 {
        let Some(path) = &self.path else { return 0 };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size >= self.max {
            if !self.full_logged {
                log::error!(
                    "dead-letter file {} reached dead_letter_max_bytes {}; rejected entries are now only counted",
                    path.display(),
                    self.max
                );
                self.full_logged = true;
            }
            return 0;
        }
        let mut text = String::new();
        let mut n = 0;
        for s in streams {
            for e in s.entries() {
                let sm: serde_json::Map<String, serde_json::Value> = e
                    .structured_metadata()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                    .collect();
                let obj = serde_json::json!({
                    "status": status,
                    // Loki stores the valid entries of a 400: replaying this file can
                    // duplicate some of them.
                    "may_be_stored": status == 400,
                    "reason": reason,
                    "tenant": tenant,
                    "labels": s.labels(),
                    "ts_ns": e.ts_ns().to_string(),
                    "line": e.line(),
                    "structured_metadata": sm,
                });
                text.push_str(&obj.to_string());
                text.push('\n');
                n += 1;
            }
        }
        let res = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_data()));
        match res {
            Ok(()) => n,
            Err(e) => {
                log::error!("dead-letter file {}: {e}", path.display());
                0
            }
        }
    }
}
