//! The in-memory state of the decision stage, with no I/O: which traces wait (their
//! facts, when they first arrived, how many of their lines are on disk), which are
//! decided but still have lines on disk ("pinned"), and the decision cache.
//!
//! Invariants the stage relies on:
//! - A line's facts count only once its append landed ([`Table::landed`]): a chunk
//!   that failed to be written never decides a trace.
//! - A trace with a line still being appended is not decided (its decision record
//!   must follow all its lines in the waiting queue); other traces are decided around it.
//! - A swept line follows a decision only once that decision is durable
//!   ([`Table::mark_durable`]): [`Table::decision`] answers `None` before.
//! - Memory: at most about `num_traces` waiting traces (the oldest are decided early
//!   past it) and `max_pinned` decided traces with lines still on disk (past it a new
//!   trace is refused: [`Admit::Busy`]), plus the two caches, plus at most
//!   2 × `num_traces` held trace ids.
//! - **Held traces.** A chunk the stage refused (the flush answered retry) may hold the
//!   rest of a waiting trace: Fluent Bit offers it again later, in no order. Every trace
//!   with a line in a refused chunk is held ([`Table::refused`]) and not decided on time
//!   until that chunk is taken ([`Table::accepted`]), `hold_max` passes, or `num_traces`
//!   forces it: under back-pressure a trace is decided over the lines the stage itself
//!   held back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;

/// Trace ids are random, so a fast hash does; seeded per table (foldhash's
/// `RandomState`), so ids crafted to collide cannot be prepared in advance.
type Hasher = foldhash::fast::RandomState;

use lockstep_policy::{Policy, Reason, TraceFacts};

pub type TraceId = [u8; 16];

/// Sizes and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// A trace is decided this long after its first line arrived.
    pub decision_wait_ns: u64,
    /// At most this many traces wait; beyond it the oldest are decided early.
    pub num_traces: usize,
    /// Decisions remembered after a trace's lines are all delivered or dropped, so
    /// lines arriving later follow them: kept traces, dropped traces (least recently
    /// used forgotten first, as the Collector's decision cache).
    pub cache_sampled: usize,
    pub cache_not_sampled: usize,
    /// At most this many decided traces may still have lines in the waiting queue
    /// (their sweep waits for room in the main queue); beyond it lines of new traces
    /// are refused ([`Admit::Busy`]: the flush answers retry) until the sweep catches up.
    pub max_pinned: usize,
    /// Trace ids a decision feed reported kept before their lines arrived, remembered
    /// (least recently used forgotten first).
    pub cache_reported: usize,
    /// A trace with lines in a chunk answered retry waits for that chunk at most this
    /// long after the refusal (0: traces are never held).
    pub hold_max_ns: u64,
}

/// Chunks answered retry that hold lines of traces, and the traces they hold.
#[derive(Debug, Default)]
struct Holds {
    /// Refused chunk (by [`chunk_key`]) → when first refused, and its trace ids.
    chunks: HashMap<u64, (u64, Vec<TraceId>), Hasher>,
    /// Refused chunks by first refusal, oldest first (for `hold_max`).
    order: VecDeque<(u64, u64)>,
    /// Trace → refused chunks outstanding with lines of it.
    by_trace: HashMap<TraceId, u32, Hasher>,
}

/// What happened to holds, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HoldCounts {
    /// Refused chunks registered (each once, however often it is refused).
    pub chunks_refused: u64,
    /// Refused chunks taken later: their traces' rest arrived.
    pub chunks_taken: u64,
    /// Refused chunks not seen again within `hold_max` (their traces decided anyway).
    pub chunks_expired: u64,
    /// Refused chunks not registered: `num_traces` trace ids were held already.
    pub chunks_overflow: u64,
    /// Held traces decided anyway because the waiting queue had no room to move them.
    pub traces_forced: u64,
}

/// Names a Fluent Bit chunk by its bytes (Fluent Bit offers the same bytes again when
/// it retries a chunk, also after a restart with filesystem buffering).
pub fn chunk_key(data: &[u8]) -> u64 {
    (data.len() as u64) << 32 | u64::from(crc32c::crc32c(data))
}

#[derive(Debug)]
enum Trace {
    Waiting {
        facts: TraceFacts,
        first_seen: u64,
        /// Lines classified but not yet durable (their flush is appending them).
        inflight: u32,
        /// Lines durable in the waiting queue, not yet swept.
        pending: u32,
        /// Decisions that panicked so far (a poison trace is kept after a few).
        failures: u8,
    },
    Decided {
        keep: bool,
        pending: u32,
        /// The decision record is on disk: its lines may leave the waiting queue.
        durable: bool,
    },
}

/// What to do with a line that has a trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Its trace waits: write it to the waiting queue with its facts, then report it
    /// with [`Table::landed`].
    Wait { new_trace: bool, late: bool },
    /// Its trace was decided: keep or drop it now (a late line).
    Follow(bool),
    /// A new trace, but `max_pinned` decided traces still wait to be swept: refused
    /// (nothing recorded).
    Busy,
}

/// A decision made by [`Table::decide_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    pub trace: TraceId,
    pub keep: bool,
    pub reason: Reason,
    /// Decided before its time because `num_traces` traces were waiting.
    pub early: bool,
    pub lines: u32,
    /// The policy panicked deciding it, [`POISON_TRIES`] times: kept (fail open).
    pub poisoned: bool,
    /// What decided it.
    pub source: Source,
}

/// What decided a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The policy file, evaluated over the trace's lines.
    Policy,
    /// The decision feed: the sampler reported the trace kept, or did not report it
    /// within `decision_wait`.
    Feed,
    /// The feed was silent: the policy (or keep, without one) decided instead.
    Fallback,
}

/// A decision as [`Table::decide_due_with`]'s closure gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    pub reason: Reason,
    pub source: Source,
}

/// What a feed report did to a trace ([`Table::report_kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// It was waiting: decided kept now, its lines released.
    Released { lines: u32 },
    /// Its lines have not arrived (or it was forgotten): remembered, its lines will be
    /// kept as they arrive.
    Remembered,
    /// Already decided kept.
    AlreadyKept,
    /// Already decided dropped: the report came after its lines were dropped (or are
    /// being dropped). Lines arriving from now on are kept.
    Late,
}

/// How many times a trace's decision may panic before it is kept without one.
pub const POISON_TRIES: u8 = 3;

/// A bounded set that forgets its oldest member first.
#[derive(Debug)]
struct Fifo<K> {
    set: HashSet<K, Hasher>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Copy> Fifo<K> {
    fn new(cap: usize) -> Self {
        Fifo {
            set: HashSet::default(),
            order: VecDeque::new(),
            cap,
        }
    }
    fn insert(&mut self, k: K) {
        if self.cap == 0 || !self.set.insert(k) {
            return;
        }
        self.order.push_back(k);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
    fn contains(&self, k: &K) -> bool {
        self.set.contains(k)
    }
}

/// A least-recently-used set of decided trace ids (`None`: size 0, remembers nothing).
struct Lru(Option<lru::LruCache<TraceId, (), Hasher>>);

impl std::fmt::Debug for Lru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lru({})", self.len())
    }
}

impl Lru {
    fn new(cap: usize) -> Self {
        Lru(NonZeroUsize::new(cap).map(|c| lru::LruCache::with_hasher(c, Hasher::default())))
    }
    /// Inserts (or refreshes); returns what was forgotten to make room, or `k` itself
    /// when the size is 0.
    fn insert(&mut self, k: TraceId) -> Option<TraceId> {
        let Some(c) = &mut self.0 else {
            return Some(k);
        };
        if c.get(&k).is_some() {
            return None;
        }
        c.push(k, ()).map(|(old, ())| old)
    }
    /// A hit refreshes the entry (a late line keeps an active trace remembered).
    fn hit(&mut self, k: &TraceId) -> bool {
        self.0.as_mut().is_some_and(|c| c.get(k).is_some())
    }
    fn contains(&self, k: &TraceId) -> bool {
        self.0.as_ref().is_some_and(|c| c.contains(k))
    }
    fn remove(&mut self, k: &TraceId) {
        if let Some(c) = &mut self.0 {
            c.pop(k);
        }
    }
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.len())
    }
}

/// The decision stage's memory: O(`num_traces` + `max_pinned` + cache sizes), never
/// O(lines).
#[derive(Debug)]
pub struct Table {
    cfg: TableConfig,
    traces: HashMap<TraceId, Trace, Hasher>,
    /// Waiting traces by first arrival, oldest first. An entry whose trace no longer
    /// waits with that first arrival is stale and skipped.
    order: VecDeque<(u64, TraceId)>,
    waiting: usize,
    sampled: Lru,
    not_sampled: Lru,
    /// Trace ids a decision feed reported kept before any of their lines arrived.
    reported: Lru,
    /// Traces whose decision the cache forgot: a line of one of those is counted as a
    /// late line that started a new trace.
    forgotten: Fifo<TraceId>,
    /// The last sweep could not move decided lines (main queue full, or a decision not
    /// on disk): only then does `max_pinned` refuse new traces (a sweep that keeps up
    /// holds at most one decision round pinned, itself bounded by `num_traces`).
    sweep_blocked: bool,
    holds: Holds,
    hold_counts: HoldCounts,
}

impl Table {
    pub fn new(cfg: TableConfig) -> Self {
        // Enough to notice late lines of the most recently forgotten traces.
        let forget = (cfg.cache_sampled + cfg.cache_not_sampled).clamp(10_000, 100_000);
        Table {
            sampled: Lru::new(cfg.cache_sampled),
            not_sampled: Lru::new(cfg.cache_not_sampled),
            reported: Lru::new(cfg.cache_reported),
            forgotten: Fifo::new(forget),
            cfg,
            traces: HashMap::default(),
            order: VecDeque::new(),
            waiting: 0,
            sweep_blocked: false,
            holds: Holds::default(),
            hold_counts: HoldCounts::default(),
        }
    }

    /// What the last sweep found: blocked (decided lines could not move) or not.
    pub fn set_sweep_blocked(&mut self, blocked: bool) {
        self.sweep_blocked = blocked;
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Traces waiting for their decision.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Decided traces with lines still in the waiting queue.
    pub fn pinned(&self) -> usize {
        self.traces.len() - self.waiting
    }

    /// Decisions in the cache.
    pub fn cached(&self) -> usize {
        self.sampled.len() + self.not_sampled.len()
    }

    /// True when more than `num_traces` traces wait (the decider should run now).
    pub fn over_capacity(&self) -> bool {
        self.waiting > self.cfg.num_traces
    }

    /// When the oldest waiting trace is due (ns), if any.
    pub fn next_due(&self) -> Option<u64> {
        self.order
            .iter()
            .find(|(t, id)| self.is_current(*t, id) && !self.holds.by_trace.contains_key(id))
            .map(|(t, _)| t.saturating_add(self.cfg.decision_wait_ns))
    }

    // ---- holds: traces whose rest may be in a chunk the stage answered retry ----

    /// A chunk (`key`: [`chunk_key`]) was refused at `now`; `traces` are the ids of its
    /// lines. Each is held until the chunk is taken ([`Table::accepted`]) or `hold_max`
    /// passes. A chunk refused again keeps its first refusal's time. Returns false when
    /// nothing was registered (holds off, already registered, or 2 × `num_traces` ids
    /// held).
    pub fn refused(&mut self, key: u64, traces: &[TraceId], now: u64) -> bool {
        if self.cfg.hold_max_ns == 0 || traces.is_empty() || self.holds.chunks.contains_key(&key) {
            return false;
        }
        let mut ids = traces.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if self.holds.by_trace.len() + ids.len() > self.cfg.num_traces.max(1).saturating_mul(2) {
            self.hold_counts.chunks_overflow += 1;
            return false;
        }
        for t in &ids {
            *self.holds.by_trace.entry(*t).or_insert(0) += 1;
        }
        self.holds.chunks.insert(key, (now, ids));
        self.holds.order.push_back((now, key));
        self.hold_counts.chunks_refused += 1;
        true
    }

    /// A chunk was taken: if it had been refused, its traces are no longer held by it.
    /// Returns whether it had been.
    pub fn accepted(&mut self, key: u64) -> bool {
        let Some((_, ids)) = self.holds.chunks.remove(&key) else {
            return false;
        };
        self.release(&ids);
        self.hold_counts.chunks_taken += 1;
        true
    }

    /// True when the chunk `key` was refused and is still registered.
    pub fn is_refused(&self, key: u64) -> bool {
        self.holds.chunks.contains_key(&key)
    }

    /// True while some refused chunk is registered (a taken chunk must be named then).
    pub fn has_refused_chunks(&self) -> bool {
        !self.holds.chunks.is_empty()
    }

    /// Forgets refused chunks first refused `hold_max` or more before `now`: their
    /// traces are decided as if they had never been held. Returns how many.
    pub fn expire_holds(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(&(since, key)) = self.holds.order.front() {
            if since.saturating_add(self.cfg.hold_max_ns) > now {
                break;
            }
            self.holds.order.pop_front();
            if let Some((s, ids)) = self.holds.chunks.get(&key) {
                if *s == since {
                    let ids = ids.clone();
                    self.holds.chunks.remove(&key);
                    self.release(&ids);
                    n += 1;
                }
            }
        }
        self.hold_counts.chunks_expired += n as u64;
        n
    }

    /// A held trace is released now, whatever holds it (the waiting queue has no room
    /// to move its lines out of the way): it is decided when due.
    pub fn force_release(&mut self, t: &TraceId) {
        if self.holds.by_trace.remove(t).is_some() {
            self.hold_counts.traces_forced += 1;
        }
    }

    fn release(&mut self, ids: &[TraceId]) {
        for t in ids {
            if let Some(n) = self.holds.by_trace.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    self.holds.by_trace.remove(t);
                }
            }
        }
    }

    /// True when `t` waits and is held by a refused chunk.
    pub fn held_waiting(&self, t: &TraceId) -> bool {
        matches!(self.traces.get(t), Some(Trace::Waiting { .. }))
            && self.holds.by_trace.contains_key(t)
    }

    /// Waiting traces that are held.
    pub fn held_waiting_count(&self) -> usize {
        self.holds
            .by_trace
            .keys()
            .filter(|t| matches!(self.traces.get(*t), Some(Trace::Waiting { .. })))
            .count()
    }

    /// (refused chunks registered, trace ids they hold).
    pub fn holds(&self) -> (usize, usize) {
        (self.holds.chunks.len(), self.holds.by_trace.len())
    }

    /// What happened to holds so far.
    pub fn hold_counts(&self) -> HoldCounts {
        self.hold_counts
    }

    fn is_current(&self, first: u64, t: &TraceId) -> bool {
        matches!(self.traces.get(t), Some(Trace::Waiting { first_seen, .. }) if *first_seen == first)
    }

    /// Classifies a line of trace `t` arriving at `now`. A `Wait` line must be reported
    /// with [`Table::landed`] once its append finished (or failed): only then do its
    /// facts count.
    pub fn admit(&mut self, t: &TraceId, now: u64) -> Admit {
        match self.traces.get_mut(t) {
            Some(Trace::Waiting { inflight, .. }) => {
                *inflight += 1;
                return Admit::Wait {
                    new_trace: false,
                    late: false,
                };
            }
            Some(Trace::Decided { keep, .. }) => {
                // A feed report after a drop: lines from now on are kept.
                return Admit::Follow(*keep || self.reported.contains(t));
            }
            None => {}
        }
        if self.sampled.hit(t) || self.reported.hit(t) {
            return Admit::Follow(true);
        }
        if self.not_sampled.hit(t) {
            return Admit::Follow(false);
        }
        if self.sweep_blocked && self.pinned() >= self.cfg.max_pinned {
            return Admit::Busy;
        }
        let late = self.forgotten.contains(t);
        // Arrival order is the decision order: a clock that steps back does not let a
        // trace jump the queue.
        let first_seen = self.order.back().map_or(now, |(b, _)| now.max(*b));
        self.traces.insert(
            *t,
            Trace::Waiting {
                facts: TraceFacts::new(Some(*t)),
                first_seen,
                inflight: 1,
                pending: 0,
                failures: 0,
            },
        );
        self.order.push_back((first_seen, *t));
        self.waiting += 1;
        Admit::Wait {
            new_trace: true,
            late,
        }
    }

    /// A `Wait` line's append finished: durable, with its facts (`Some`), or not
    /// (`None`: its facts never count, and a trace left with no line is forgotten).
    pub fn landed(&mut self, t: &TraceId, facts: Option<&TraceFacts>) {
        let Some(Trace::Waiting {
            facts: f,
            inflight,
            pending,
            ..
        }) = self.traces.get_mut(t)
        else {
            return;
        };
        *inflight = inflight.saturating_sub(1);
        match facts {
            Some(line) => {
                f.merge(line);
                *pending += 1;
            }
            None if *inflight == 0 && *pending == 0 => {
                // Its order entry goes stale and is skipped.
                self.traces.remove(t);
                self.waiting -= 1;
            }
            None => {}
        }
    }

    /// Decides up to `max` traces that are due at `now`, and the oldest ones early while
    /// more than `num_traces` wait. A trace with a line still being appended is passed
    /// over (its decision must follow its lines in the waiting queue) and keeps its
    /// place. A decision that panics is retried on the next call; after
    /// [`POISON_TRIES`] the trace is kept (fail open), marked `poisoned`.
    ///
    /// Decided traces are pinned with a decision that is not yet durable: their lines
    /// leave the waiting queue only after [`Table::mark_durable`].
    pub fn decide_due(&mut self, now: u64, policy: &Policy, max: usize, out: &mut Vec<Decided>) {
        let by_policy = |f: &TraceFacts, _early: bool, _first_seen: u64| {
            let d = policy.decide_trace(f);
            Verdict {
                keep: d.keep,
                reason: d.reason,
                source: Source::Policy,
            }
        };
        self.decide_due_with(now, &by_policy, max, out)
    }

    /// [`Table::decide_due`] with the decision made by `decide` (a policy, the feed's
    /// "not reported", a fallback), told whether the trace is decided early and when its
    /// first line arrived.
    pub fn decide_due_with(
        &mut self,
        now: u64,
        decide: &dyn Fn(&TraceFacts, bool, u64) -> Verdict,
        max: usize,
        out: &mut Vec<Decided>,
    ) {
        let mut passed: Vec<(u64, TraceId)> = Vec::new();
        let start = out.len();
        while out.len() - start < max {
            let Some(&(first, t)) = self.order.front() else {
                break;
            };
            let due = first.saturating_add(self.cfg.decision_wait_ns) <= now;
            let over = self.waiting > self.cfg.num_traces;
            let early = !due && over;
            if !due && !early {
                break;
            }
            self.order.pop_front();
            let Some(Trace::Waiting {
                facts,
                first_seen,
                inflight,
                pending,
                failures,
            }) = self.traces.get_mut(&t)
            else {
                continue; // stale entry
            };
            if *first_seen != first {
                continue;
            }
            if *inflight > 0 {
                passed.push((first, t));
                continue;
            }
            // The rest of it may be in a chunk refused meanwhile: it waits for it (past
            // num_traces it is decided early all the same: memory is bounded first).
            let held = self.holds.by_trace.contains_key(&t);
            if held && !over {
                passed.push((first, t));
                continue;
            }
            let early = early || held;
            let reported = self.reported.contains(&t);
            let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                #[cfg(test)]
                tests::fault_point(&t);
                if reported {
                    // The feed reported it while one of its lines was being written.
                    return Verdict {
                        keep: true,
                        reason: Reason::NotSampled,
                        source: Source::Feed,
                    };
                }
                decide(facts, early, first)
            }));
            let (keep, reason, poisoned, source) = match decided {
                Ok(d) => (d.keep, d.reason, false, d.source),
                Err(_) if *failures + 1 < POISON_TRIES => {
                    *failures += 1;
                    log::error!(
                        "deciding trace {}: the policy panicked ({} of {POISON_TRIES} tries)",
                        hex(&t),
                        failures
                    );
                    // Retried on the next call; the others are decided meanwhile.
                    passed.push((first, t));
                    continue;
                }
                Err(_) => (true, Reason::Error, true, Source::Policy),
            };
            let (pending, lines) = (*pending, facts.lines());
            self.waiting -= 1;
            out.push(Decided {
                trace: t,
                keep,
                reason,
                early,
                lines,
                poisoned,
                source,
            });
            if pending == 0 {
                self.traces.remove(&t);
                self.remember(t, keep);
            } else {
                self.traces.insert(
                    t,
                    Trace::Decided {
                        keep,
                        pending,
                        durable: false,
                    },
                );
            }
        }
        for e in passed.into_iter().rev() {
            self.order.push_front(e);
        }
    }

    /// A decision feed reported trace `t` kept, durably (its report record is on disk):
    /// a waiting trace is decided kept now (its lines may be swept at once), an unknown
    /// one is remembered so its lines are kept as they arrive.
    pub fn report_kept(&mut self, t: &TraceId) -> Reported {
        match self.traces.get(t) {
            Some(Trace::Waiting {
                pending,
                inflight,
                facts,
                ..
            }) if *inflight == 0 => {
                let (pending, lines) = (*pending, facts.lines());
                self.waiting -= 1;
                if pending == 0 {
                    self.traces.remove(t);
                    self.remember(*t, true);
                } else {
                    self.traces.insert(
                        *t,
                        Trace::Decided {
                            keep: true,
                            pending,
                            durable: true,
                        },
                    );
                }
                Reported::Released { lines }
            }
            // A line is being written: the trace is kept when it comes due (the report
            // is remembered), so its decision still follows all its lines.
            Some(Trace::Waiting { .. }) => {
                self.reported.insert(*t);
                Reported::Remembered
            }
            Some(Trace::Decided { keep: true, .. }) => Reported::AlreadyKept,
            Some(Trace::Decided { keep: false, .. }) => {
                self.reported.insert(*t);
                Reported::Late
            }
            None if self.sampled.contains(t) => Reported::AlreadyKept,
            None => {
                let late = self.not_sampled.contains(t);
                self.not_sampled.remove(t);
                self.reported.insert(*t);
                if late {
                    Reported::Late
                } else {
                    Reported::Remembered
                }
            }
        }
    }

    /// True when a feed reported `t` kept (it is remembered).
    pub fn is_reported(&self, t: &TraceId) -> bool {
        self.reported.contains(t)
    }

    /// Feed reports remembered for traces whose lines have not arrived.
    pub fn reported(&self) -> usize {
        self.reported.len()
    }

    /// A feed report read back at recovery: decides the lines before it (kept); with
    /// none, it is remembered.
    pub fn recover_report(&mut self, t: &TraceId) {
        match self.traces.get(t) {
            Some(Trace::Waiting { pending, .. }) => {
                let pending = *pending;
                self.traces.insert(
                    *t,
                    Trace::Decided {
                        keep: true,
                        pending,
                        durable: true,
                    },
                );
                self.waiting -= 1;
            }
            Some(Trace::Decided { .. }) => {}
            None => {
                self.not_sampled.remove(t);
                self.reported.insert(*t);
            }
        }
    }

    /// The decisions of these traces are on disk: their lines may be swept.
    pub fn mark_durable(&mut self, traces: impl IntoIterator<Item = TraceId>) {
        for t in traces {
            if let Some(Trace::Decided { durable, .. }) = self.traces.get_mut(&t) {
                *durable = true;
            }
        }
    }

    /// The decision a swept line of trace `t` follows: `None` while it waits or while
    /// its decision is not yet durable. A trace the table does not know (never
    /// expected) is kept: fail open.
    pub fn decision(&self, t: &TraceId) -> Option<bool> {
        match self.traces.get(t) {
            Some(Trace::Waiting { .. }) => None,
            Some(Trace::Decided { durable: false, .. }) => None,
            Some(Trace::Decided { keep, .. }) => Some(*keep),
            None => Some(self.sampled.contains(t) || !self.not_sampled.contains(t)),
        }
    }

    /// A line of `t` left the waiting queue.
    pub fn swept(&mut self, t: &TraceId) {
        if let Some(Trace::Decided { keep, pending, .. }) = self.traces.get_mut(t) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                let keep = *keep;
                self.traces.remove(t);
                self.remember(*t, keep);
            }
        }
    }

    fn remember(&mut self, t: TraceId, keep: bool) {
        let (cache, other) = if keep {
            (&mut self.sampled, &mut self.not_sampled)
        } else {
            (&mut self.not_sampled, &mut self.sampled)
        };
        // A reused id decided the other way: only the newest decision is remembered.
        other.remove(&t);
        if let Some(old) = cache.insert(t) {
            self.forgotten.insert(old);
        }
    }

    // ---- recovery: rebuilding the table from the waiting queue after a restart ----

    /// A waiting line read back (`ts`: when it was appended, capped at now by the
    /// caller). A line after its trace's decision record belongs to a new trace with
    /// the same id (lines arriving after a decision are written as kept, never as
    /// waiting), unless the decided trace still has lines (never expected: they follow).
    pub fn recover_line(&mut self, t: &TraceId, facts: &TraceFacts, ts: u64) {
        match self.traces.get_mut(t) {
            Some(Trace::Waiting {
                facts: f,
                first_seen,
                pending,
                ..
            }) => {
                f.merge(facts);
                *first_seen = (*first_seen).min(ts);
                *pending += 1;
            }
            Some(Trace::Decided { pending, .. }) => *pending += 1,
            None => {
                let mut f = facts.clone();
                f.merge(&TraceFacts::new(Some(*t)));
                self.traces.insert(
                    *t,
                    Trace::Waiting {
                        facts: f,
                        first_seen: ts,
                        inflight: 0,
                        pending: 1,
                        failures: 0,
                    },
                );
                self.waiting += 1;
            }
        }
    }

    /// A decision record read back: it decides the trace's lines read before it, and
    /// stands (whatever the current policy would say). With no line of the trace left
    /// before it, it only goes to the cache: lines after it are a new trace.
    pub fn recover_decision(&mut self, t: &TraceId, keep: bool) {
        match self.traces.get(t) {
            Some(Trace::Waiting { pending, .. }) => {
                let pending = *pending;
                self.traces.insert(
                    *t,
                    Trace::Decided {
                        keep,
                        pending,
                        durable: true,
                    },
                );
                self.waiting -= 1;
            }
            Some(Trace::Decided { .. }) => {}
            None => self.remember(*t, keep),
        }
    }

    /// Ends recovery at `now`: waiting traces are queued by first arrival, and wait
    /// `decision_wait` from `now` at least. Fluent Bit offers the chunks it buffered
    /// (and those the stage refused before the restart) again right after a start:
    /// they may hold the rest of these traces.
    pub fn finish_recovery(&mut self, now: u64) {
        let mut order: Vec<(u64, TraceId)> = self
            .traces
            .iter()
            .filter_map(|(t, tr)| match tr {
                Trace::Waiting { first_seen, .. } => Some((*first_seen, *t)),
                Trace::Decided { .. } => None,
            })
            .collect();
        order.sort_unstable();
        for (first, t) in &mut order {
            if *first < now {
                *first = now;
                if let Some(Trace::Waiting { first_seen, .. }) = self.traces.get_mut(t) {
                    *first_seen = now;
                }
            }
        }
        self.order = order.into();
    }
}

fn hex(t: &TraceId) -> String {
    t.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Deciding this trace panics (a policy bug, injected).
        static PANIC_DECIDING: Cell<Option<TraceId>> = const { Cell::new(None) };
    }

    pub(super) fn fault_point(t: &TraceId) {
        if PANIC_DECIDING.get() == Some(*t) {
            panic!("injected policy panic");
        }
    }

    #[test]
    fn a_decision_that_keeps_panicking_is_kept_after_a_few_tries_and_blocks_nothing() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let (bad, good) = ([1; 16], [2; 16]);
        add(&mut tb, &p, bad, r#"{"level":"info"}"#, 100);
        add(&mut tb, &p, good, r#"{"level":"error"}"#, 200);
        PANIC_DECIDING.set(Some(bad));
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let first = decide(&mut tb, &p, 5_000);
        assert_eq!(
            first.iter().map(|d| d.trace).collect::<Vec<_>>(),
            vec![good]
        );
        let mut calls = 1;
        let mut all = first;
        while calls < 10 && tb.waiting() > 0 {
            all.extend(decide(&mut tb, &p, 5_000));
            calls += 1;
        }
        std::panic::set_hook(prev);
        PANIC_DECIDING.set(None);
        assert_eq!(tb.waiting(), 0, "decided in {calls} calls");
        assert_eq!(usize::from(POISON_TRIES), calls);
        let b = all.iter().find(|d| d.trace == bad).unwrap();
        assert!(b.keep && b.poisoned && b.reason == Reason::Error);
        let g = all.iter().find(|d| d.trace == good).unwrap();
        assert!(g.keep && !g.poisoned);
    }

    fn cfg(num_traces: usize, cache: usize) -> TableConfig {
        TableConfig {
            decision_wait_ns: 1_000,
            num_traces,
            cache_sampled: cache,
            cache_not_sampled: cache,
            max_pinned: 1_000,
            cache_reported: 100,
            hold_max_ns: 60_000,
        }
    }

    fn line(p: &Policy, json: &str, t: TraceId) -> TraceFacts {
        let mut ex = p.extractor();
        let e = ex.extract_json(json.as_bytes()).unwrap();
        let mut f = TraceFacts::new(Some(t));
        p.observe(e, &mut f);
        f
    }

    /// Admits and lands one line.
    fn add(tb: &mut Table, p: &Policy, t: TraceId, json: &str, now: u64) -> Admit {
        let a = tb.admit(&t, now);
        if matches!(a, Admit::Wait { .. }) {
            tb.landed(&t, Some(&line(p, json, t)));
        }
        a
    }

    fn decide(tb: &mut Table, p: &Policy, now: u64) -> Vec<Decided> {
        let mut out = Vec::new();
        tb.decide_due(now, p, usize::MAX, &mut out);
        let ids: Vec<TraceId> = out.iter().map(|d| d.trace).collect();
        tb.mark_durable(ids);
        out
    }

    #[test]
    fn a_trace_waits_then_is_decided_over_all_its_lines_then_late_lines_follow() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let t = [1; 16];
        assert_eq!(
            add(&mut tb, &p, t, r#"{"level":"info"}"#, 100),
            Admit::Wait {
                new_trace: true,
                late: false
            }
        );
        assert_eq!(
            tb.admit(&t, 200),
            Admit::Wait {
                new_trace: false,
                late: false
            }
        );
        // a line still being appended holds its trace's decision back
        assert!(decide(&mut tb, &p, 5_000).is_empty());
        tb.landed(&t, Some(&line(&p, r#"{"level":"error"}"#, t)));
        assert!(decide(&mut tb, &p, 1_099).is_empty(), "not due yet");
        let out = decide(&mut tb, &p, 1_100);
        assert_eq!(out.len(), 1);
        assert!(out[0].keep && !out[0].early && out[0].lines == 2);
        assert_eq!(tb.waiting(), 0);
        assert_eq!(tb.pinned(), 1);
        assert_eq!(tb.decision(&t), Some(true));
        // late line while pinned, and after sweeping (from the cache)
        assert_eq!(tb.admit(&t, 2_000), Admit::Follow(true));
        tb.swept(&t);
        tb.swept(&t);
        assert_eq!(tb.pinned(), 0);
        assert_eq!(tb.cached(), 1);
        assert_eq!(tb.admit(&t, 3_000), Admit::Follow(true));
    }

    #[test]
    fn a_line_whose_append_failed_never_counts() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let t = [1; 16];
        add(&mut tb, &p, t, r#"{"level":"info"}"#, 100);
        // an error line whose chunk failed to be written: the trace must not be kept for it
        tb.admit(&t, 150);
        tb.landed(&t, None);
        let out = decide(&mut tb, &p, 2_000);
        assert_eq!((out[0].keep, out[0].lines), (false, 1));
        // a new trace whose only line failed is forgotten whole
        let u = [2; 16];
        tb.admit(&u, 3_000);
        tb.landed(&u, None);
        assert_eq!(tb.waiting(), 0);
        assert!(decide(&mut tb, &p, 10_000).is_empty());
        assert_eq!(tb.next_due(), None);
        // and a line of it later is a new trace due from its own arrival
        add(&mut tb, &p, u, r#"{"level":"info"}"#, 20_000);
        assert_eq!(tb.next_due(), Some(21_000));
        assert!(decide(&mut tb, &p, 20_999).is_empty());
    }

    #[test]
    fn a_trace_mid_append_does_not_hold_back_the_others_and_keeps_its_place() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let (a, b) = ([1; 16], [2; 16]);
        add(&mut tb, &p, a, r#"{"level":"info"}"#, 100);
        add(&mut tb, &p, b, r#"{"level":"error"}"#, 200);
        tb.admit(&a, 300); // a line of `a` being appended
        let out = decide(&mut tb, &p, 5_000);
        assert_eq!(out.iter().map(|d| d.trace).collect::<Vec<_>>(), vec![b]);
        tb.landed(&a, Some(&line(&p, r#"{"level":"info"}"#, a)));
        assert_eq!(tb.next_due(), Some(1_100), "`a` kept its place");
        let out = decide(&mut tb, &p, 5_000);
        assert_eq!((out[0].trace, out[0].lines), (a, 2));
    }

    #[test]
    fn decisions_per_call_are_capped() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(100, 10));
        for i in 0..10u8 {
            add(&mut tb, &p, [i + 1; 16], r#"{"level":"info"}"#, 100);
        }
        let mut out = Vec::new();
        tb.decide_due(5_000, &p, 4, &mut out);
        assert_eq!(out.len(), 4);
        tb.decide_due(5_000, &p, 4, &mut out);
        tb.decide_due(5_000, &p, 4, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(tb.waiting(), 0);
    }

    #[test]
    fn a_decision_is_followed_by_the_sweep_only_once_durable() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let t = [1; 16];
        add(&mut tb, &p, t, r#"{"level":"error"}"#, 100);
        let mut out = Vec::new();
        tb.decide_due(5_000, &p, usize::MAX, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(tb.decision(&t), None, "not durable yet");
        // late lines follow it at once (they do not depend on the record)
        assert_eq!(tb.admit(&t, 5_001), Admit::Follow(true));
        tb.mark_durable([t]);
        assert_eq!(tb.decision(&t), Some(true));
    }

    #[test]
    fn pinned_decisions_are_bounded_new_traces_are_refused_past_max_pinned() {
        let p = Policy::default_policy();
        let mut c = cfg(100, 10);
        c.max_pinned = 3;
        let mut tb = Table::new(c);
        for i in 0..3u8 {
            add(&mut tb, &p, [i + 1; 16], r#"{"level":"info"}"#, 100);
        }
        decide(&mut tb, &p, 5_000);
        assert_eq!(tb.pinned(), 3);
        assert!(
            matches!(tb.admit(&[8; 16], 5_001), Admit::Wait { .. }),
            "a sweep that keeps up refuses nothing"
        );
        tb.landed(&[8; 16], None);
        tb.set_sweep_blocked(true);
        assert_eq!(tb.admit(&[9; 16], 5_001), Admit::Busy);
        assert_eq!(tb.waiting(), 0, "nothing recorded for a refused line");
        // lines of decided traces still follow
        assert_eq!(tb.admit(&[1; 16], 5_001), Admit::Follow(false));
        tb.swept(&[1; 16]);
        assert!(matches!(tb.admit(&[9; 16], 5_002), Admit::Wait { .. }));
    }

    #[test]
    fn the_cache_forgets_the_least_recently_used_decision() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(100, 2));
        for i in 0..2u8 {
            add(&mut tb, &p, [i + 1; 16], r#"{"level":"info"}"#, 100);
        }
        decide(&mut tb, &p, 5_000);
        tb.swept(&[1; 16]);
        tb.swept(&[2; 16]);
        // trace 1 was remembered first but is active (a late line): trace 2 goes
        assert_eq!(tb.admit(&[1; 16], 6_000), Admit::Follow(false));
        add(&mut tb, &p, [3; 16], r#"{"level":"info"}"#, 6_000);
        decide(&mut tb, &p, 9_000);
        tb.swept(&[3; 16]);
        assert_eq!(tb.admit(&[1; 16], 9_001), Admit::Follow(false));
        assert_eq!(
            tb.admit(&[2; 16], 9_001),
            Admit::Wait {
                new_trace: true,
                late: true
            }
        );
    }

    #[test]
    fn over_num_traces_the_oldest_are_decided_early_and_forgotten_decisions_are_noticed() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(2, 1));
        for i in 0..4u8 {
            add(
                &mut tb,
                &p,
                [i + 1; 16],
                r#"{"level":"info"}"#,
                10 + u64::from(i),
            );
        }
        assert!(tb.over_capacity());
        let out = decide(&mut tb, &p, 20);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|d| d.early && !d.keep));
        assert_eq!(out[0].trace, [1; 16]);
        assert_eq!(out[1].trace, [2; 16]);
        assert_eq!(tb.waiting(), 2);
        for t in [[1; 16], [2; 16]] {
            tb.swept(&t);
        }
        // cache of one: trace 1 was forgotten, trace 2 remembered
        assert_eq!(tb.admit(&[2; 16], 30), Admit::Follow(false));
        assert_eq!(
            tb.admit(&[1; 16], 30),
            Admit::Wait {
                new_trace: true,
                late: true
            }
        );
        assert_eq!(
            tb.admit(&[9; 16], 30),
            Admit::Wait {
                new_trace: true,
                late: false
            }
        );
    }

    #[test]
    fn a_held_trace_waits_for_its_chunk_but_memory_comes_first() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(1, 10));
        let (a, b) = ([1; 16], [2; 16]);
        add(&mut tb, &p, a, r#"{"level":"info"}"#, 100);
        assert!(
            tb.refused(7, &[a, a, b], 150),
            "a chunk with lines of a and b"
        );
        assert!(
            !tb.refused(7, &[a], 160),
            "the same chunk again: registered once"
        );
        assert_eq!(tb.holds(), (1, 2));
        assert_eq!(tb.next_due(), None, "a held trace is not due");
        assert!(decide(&mut tb, &p, 5_000).is_empty());
        // past num_traces the oldest is decided early, held or not
        add(&mut tb, &p, b, r#"{"level":"info"}"#, 200);
        let out = decide(&mut tb, &p, 300);
        assert_eq!(out.iter().map(|d| d.trace).collect::<Vec<_>>(), vec![a]);
        assert!(out[0].early);
        assert!(tb.accepted(7));
        assert!(!tb.accepted(7));
        assert_eq!(tb.holds(), (0, 0));
        assert_eq!(tb.next_due(), Some(1_200));
        let c = tb.hold_counts();
        assert_eq!((c.chunks_refused, c.chunks_taken), (1, 1));
        // a held trace that is due is decided too when num_traces are waiting
        let mut tb = Table::new(cfg(1, 10));
        add(&mut tb, &p, a, r#"{"level":"info"}"#, 100);
        tb.refused(9, &[a], 150);
        add(&mut tb, &p, b, r#"{"level":"info"}"#, 200);
        let out = decide(&mut tb, &p, 5_000);
        assert_eq!(out.iter().map(|d| d.trace).collect::<Vec<_>>(), vec![a, b]);
        assert!(out[0].early && !out[1].early);
    }

    #[test]
    fn recovered_traces_wait_from_the_restart_at_least() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let (a, b) = ([1; 16], [2; 16]);
        tb.recover_line(&a, &line(&p, r#"{"level":"info"}"#, a), 300);
        tb.recover_line(&b, &line(&p, r#"{"level":"info"}"#, b), 9_800);
        tb.finish_recovery(9_500);
        assert_eq!(tb.next_due(), Some(10_500), "a, from the restart");
        assert!(decide(&mut tb, &p, 10_000).is_empty());
        let out = decide(&mut tb, &p, 10_500);
        assert_eq!(out.iter().map(|d| d.trace).collect::<Vec<_>>(), vec![a]);
        assert_eq!(tb.next_due(), Some(10_800), "b, from its own arrival");
    }

    #[test]
    fn recovery_rebuilds_waiting_traces_and_pinned_decisions() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let (a, b) = ([1; 16], [2; 16]);
        tb.recover_line(&a, &line(&p, r#"{"level":"info"}"#, a), 500);
        tb.recover_line(&b, &line(&p, r#"{"level":"info"}"#, b), 400);
        tb.recover_line(&a, &line(&p, r#"{"level":"fatal"}"#, a), 300);
        tb.recover_decision(&b, false);
        tb.finish_recovery(0);
        assert_eq!(tb.waiting(), 1);
        assert_eq!(
            tb.decision(&b),
            Some(false),
            "a decision read back is durable"
        );
        assert_eq!(tb.next_due(), Some(1_300));
        let out = decide(&mut tb, &p, 1_300);
        assert_eq!((out[0].trace, out[0].keep, out[0].lines), (a, true, 2));
    }

    #[test]
    fn recovery_a_decision_with_no_line_before_it_does_not_decide_a_reused_id() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let t = [7; 16];
        // the old trace's lines were swept; its kept decision record remains, then the
        // id is seen again with an info line
        tb.recover_decision(&t, true);
        tb.recover_line(&t, &line(&p, r#"{"level":"info"}"#, t), 500);
        tb.finish_recovery(0);
        assert_eq!(tb.waiting(), 1);
        assert_eq!(tb.decision(&t), None, "the new trace waits");
        let out = decide(&mut tb, &p, 1_500);
        assert!(
            !out[0].keep,
            "decided over its own line, not the old decision"
        );
    }
}
