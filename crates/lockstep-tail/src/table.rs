//! The in-memory state of the decision stage, with no I/O: which traces wait (their
//! facts, when they first arrived, how many of their lines are on disk), which are
//! decided but still have lines on disk ("pinned"), and the decision cache.

use std::collections::{HashMap, HashSet, VecDeque};

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
    /// lines arriving later follow them: kept traces, dropped traces.
    pub cache_sampled: usize,
    pub cache_not_sampled: usize,
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
    },
    Decided {
        keep: bool,
        pending: u32,
    },
}

/// What to do with a line that has a trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Its trace waits: write it to the waiting queue with its facts.
    Wait { new_trace: bool, late: bool },
    /// Its trace was decided: keep or drop it now (a late line).
    Follow(bool),
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
}

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
    /// Inserts; returns what was forgotten to make room (or `k` itself when cap is 0).
    fn insert(&mut self, k: K) -> Option<K> {
        if self.cap == 0 {
            return Some(k);
        }
        if !self.set.insert(k) {
            return None;
        }
        self.order.push_back(k);
        if self.order.len() > self.cap {
            let old = self.order.pop_front()?;
            self.set.remove(&old);
            return Some(old);
        }
        None
    }
    fn contains(&self, k: &K) -> bool {
        self.set.contains(k)
    }
    fn len(&self) -> usize {
        self.set.len()
    }
}

/// The decision stage's memory: O(waiting traces + pinned decisions + cache sizes),
/// never O(lines).
#[derive(Debug)]
pub struct Table {
    cfg: TableConfig,
    traces: HashMap<TraceId, Trace, Hasher>,
    /// Waiting traces by first arrival, oldest first (each waiting trace once).
    order: VecDeque<(u64, TraceId)>,
    waiting: usize,
    sampled: Fifo<TraceId>,
    not_sampled: Fifo<TraceId>,
    /// Traces whose decision the cache forgot: a line of one of those is counted as a
    /// late line that started a new trace.
    forgotten: Fifo<TraceId>,
}

impl Table {
    pub fn new(cfg: TableConfig) -> Self {
        // Enough to notice late lines of the most recently forgotten traces.
        let forget = (cfg.cache_sampled + cfg.cache_not_sampled).max(10_000);
        Table {
            sampled: Fifo::new(cfg.cache_sampled),
            not_sampled: Fifo::new(cfg.cache_not_sampled),
            forgotten: Fifo::new(forget),
            cfg,
            traces: HashMap::default(),
            order: VecDeque::new(),
            waiting: 0,
        }
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
            .front()
            .map(|(t, _)| t.saturating_add(self.cfg.decision_wait_ns))
    }

    /// Classifies a line of trace `t` arriving at `now` and, when it waits, adds its
    /// facts. A `Wait` line must be reported with [`Table::landed`] once its append
    /// finished (or failed).
    pub fn admit(&mut self, t: &TraceId, line: &TraceFacts, now: u64) -> Admit {
        match self.traces.get_mut(t) {
            Some(Trace::Waiting {
                facts, inflight, ..
            }) => {
                facts.merge(line);
                *inflight += 1;
                return Admit::Wait {
                    new_trace: false,
                    late: false,
                };
            }
            Some(Trace::Decided { keep, .. }) => return Admit::Follow(*keep),
            None => {}
        }
        if self.sampled.contains(t) {
            return Admit::Follow(true);
        }
        if self.not_sampled.contains(t) {
            return Admit::Follow(false);
        }
        let late = self.forgotten.contains(t);
        let mut facts = line.clone();
        facts.merge(&TraceFacts::new(Some(*t)));
        // Arrival order is the decision order: a clock that steps back does not let a
        // trace jump the queue.
        let first_seen = self.order.back().map_or(now, |(b, _)| now.max(*b));
        self.traces.insert(
            *t,
            Trace::Waiting {
                facts,
                first_seen,
                inflight: 1,
                pending: 0,
            },
        );
        self.order.push_back((first_seen, *t));
        self.waiting += 1;
        Admit::Wait {
            new_trace: true,
            late,
        }
    }

    /// A `Wait` line's append finished: durable (`ok`) or not.
    pub fn landed(&mut self, t: &TraceId, ok: bool) {
        if let Some(Trace::Waiting {
            inflight, pending, ..
        }) = self.traces.get_mut(t)
        {
            *inflight = inflight.saturating_sub(1);
            if ok {
                *pending += 1;
            }
        }
    }

    /// Decides every trace that is due at `now`, and the oldest ones early while more
    /// than `num_traces` wait. A trace with a line still being appended is left for the
    /// next call (its decision must follow its lines in the waiting queue).
    pub fn decide_due(&mut self, now: u64, policy: &Policy, out: &mut Vec<Decided>) {
        while let Some(&(first_seen, t)) = self.order.front() {
            let due = first_seen.saturating_add(self.cfg.decision_wait_ns) <= now;
            let early = !due && self.waiting > self.cfg.num_traces;
            if !due && !early {
                break;
            }
            let Some(Trace::Waiting {
                facts,
                inflight,
                pending,
                ..
            }) = self.traces.get(&t)
            else {
                // Not waiting (cannot happen): forget the entry.
                self.order.pop_front();
                continue;
            };
            if *inflight > 0 {
                break;
            }
            let d = policy.decide_trace(facts);
            let (pending, lines) = (*pending, facts.lines());
            self.order.pop_front();
            self.waiting -= 1;
            out.push(Decided {
                trace: t,
                keep: d.keep,
                reason: d.reason,
                early,
                lines,
            });
            if pending == 0 {
                self.traces.remove(&t);
                self.remember(t, d.keep);
            } else {
                self.traces.insert(
                    t,
                    Trace::Decided {
                        keep: d.keep,
                        pending,
                    },
                );
            }
        }
    }

    /// The decision a swept line of trace `t` follows: `None` while it waits. A trace
    /// the table does not know (never expected) is kept: fail open.
    pub fn decision(&self, t: &TraceId) -> Option<bool> {
        match self.traces.get(t) {
            Some(Trace::Waiting { .. }) => None,
            Some(Trace::Decided { keep, .. }) => Some(*keep),
            None => Some(self.sampled.contains(t) || !self.not_sampled.contains(t)),
        }
    }

    /// A line of `t` left the waiting queue.
    pub fn swept(&mut self, t: &TraceId) {
        if let Some(Trace::Decided { keep, pending }) = self.traces.get_mut(t) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                let keep = *keep;
                self.traces.remove(t);
                self.remember(*t, keep);
            }
        }
    }

    fn remember(&mut self, t: TraceId, keep: bool) {
        let cache = if keep {
            &mut self.sampled
        } else {
            &mut self.not_sampled
        };
        if let Some(old) = cache.insert(t) {
            self.forgotten.insert(old);
        }
    }

    // ---- recovery: rebuilding the table from the waiting queue after a restart ----

    /// A waiting line read back (`ts`: when it was appended).
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
                    },
                );
                self.waiting += 1;
            }
        }
    }

    /// A waiting line read back whose facts cannot be read (another policy wrote
    /// them): its trace is kept (fail open).
    pub fn recover_unreadable(&mut self, t: &TraceId) {
        match self.traces.get_mut(t) {
            Some(Trace::Decided { pending, .. }) => *pending += 1,
            Some(Trace::Waiting { pending, .. }) => {
                let pending = *pending + 1;
                self.traces.insert(
                    *t,
                    Trace::Decided {
                        keep: true,
                        pending,
                    },
                );
                self.waiting -= 1;
            }
            None => {
                self.traces.insert(
                    *t,
                    Trace::Decided {
                        keep: true,
                        pending: 1,
                    },
                );
            }
        }
    }

    /// A decision read back.
    pub fn recover_decision(&mut self, t: &TraceId, keep: bool) {
        match self.traces.get(t) {
            Some(Trace::Waiting { pending, .. }) => {
                let pending = *pending;
                self.traces.insert(*t, Trace::Decided { keep, pending });
                self.waiting -= 1;
            }
            Some(Trace::Decided { .. }) => {}
            None => {
                self.traces.insert(*t, Trace::Decided { keep, pending: 0 });
            }
        }
    }

    /// Ends recovery: waiting traces are queued by first arrival; decisions with no
    /// line left go to the cache.
    pub fn finish_recovery(&mut self) {
        let mut order: Vec<(u64, TraceId)> = Vec::new();
        let mut done = Vec::new();
        for (t, tr) in &self.traces {
            match tr {
                Trace::Waiting { first_seen, .. } => order.push((*first_seen, *t)),
                Trace::Decided { keep, pending: 0 } => done.push((*t, *keep)),
                Trace::Decided { .. } => {}
            }
        }
        order.sort_unstable();
        self.order = order.into();
        for (t, keep) in done {
            self.traces.remove(&t);
            self.remember(t, keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(num_traces: usize, cache: usize) -> TableConfig {
        TableConfig {
            decision_wait_ns: 1_000,
            num_traces,
            cache_sampled: cache,
            cache_not_sampled: cache,
        }
    }

    fn line(p: &Policy, json: &str, t: TraceId) -> TraceFacts {
        let mut ex = p.extractor();
        let e = ex.extract_json(json.as_bytes()).unwrap();
        let mut f = TraceFacts::new(Some(t));
        p.observe(e, &mut f);
        f
    }

    #[test]
    fn a_trace_waits_then_is_decided_over_all_its_lines_then_late_lines_follow() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(10, 10));
        let t = [1; 16];
        let a = tb.admit(&t, &line(&p, r#"{"level":"info"}"#, t), 100);
        assert_eq!(
            a,
            Admit::Wait {
                new_trace: true,
                late: false
            }
        );
        tb.landed(&t, true);
        assert_eq!(
            tb.admit(&t, &line(&p, r#"{"level":"error"}"#, t), 200),
            Admit::Wait {
                new_trace: false,
                late: false
            }
        );
        let mut out = Vec::new();
        // a line still being appended holds the decision back
        tb.decide_due(5_000, &p, &mut out);
        assert!(out.is_empty());
        tb.landed(&t, true);
        tb.decide_due(1_099, &p, &mut out);
        assert!(out.is_empty(), "not due before first arrival + wait");
        tb.decide_due(1_100, &p, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].keep && !out[0].early && out[0].lines == 2);
        assert_eq!(tb.waiting(), 0);
        assert_eq!(tb.pinned(), 1);
        assert_eq!(tb.decision(&t), Some(true));
        // late line while pinned, and after sweeping (from the cache)
        assert_eq!(
            tb.admit(&t, &TraceFacts::new(Some(t)), 2_000),
            Admit::Follow(true)
        );
        tb.swept(&t);
        tb.swept(&t);
        assert_eq!(tb.pinned(), 0);
        assert_eq!(tb.cached(), 1);
        assert_eq!(
            tb.admit(&t, &TraceFacts::new(Some(t)), 3_000),
            Admit::Follow(true)
        );
    }

    #[test]
    fn over_num_traces_the_oldest_are_decided_early_and_forgotten_decisions_are_noticed() {
        let p = Policy::default_policy();
        let mut tb = Table::new(cfg(2, 1));
        for i in 0..4u8 {
            let t = [i + 1; 16];
            tb.admit(&t, &line(&p, r#"{"level":"info"}"#, t), 10 + u64::from(i));
            tb.landed(&t, true);
        }
        assert!(tb.over_capacity());
        let mut out = Vec::new();
        tb.decide_due(20, &p, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|d| d.early && !d.keep));
        assert_eq!(out[0].trace, [1; 16]);
        assert_eq!(out[1].trace, [2; 16]);
        assert_eq!(tb.waiting(), 2);
        for t in [[1; 16], [2; 16]] {
            tb.swept(&t);
        }
        // cache of one: trace 1 was forgotten, trace 2 remembered
        assert_eq!(
            tb.admit(&[2; 16], &TraceFacts::new(Some([2; 16])), 30),
            Admit::Follow(false)
        );
        assert_eq!(
            tb.admit(&[1; 16], &TraceFacts::new(Some([1; 16])), 30),
            Admit::Wait {
                new_trace: true,
                late: true
            }
        );
        assert_eq!(
            tb.admit(&[9; 16], &TraceFacts::new(Some([9; 16])), 30),
            Admit::Wait {
                new_trace: true,
                late: false
            }
        );
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
        tb.finish_recovery();
        assert_eq!(tb.waiting(), 1);
        assert_eq!(tb.decision(&b), Some(false));
        assert_eq!(tb.next_due(), Some(1_300));
        let mut out = Vec::new();
        tb.decide_due(1_300, &p, &mut out);
        assert_eq!((out[0].trace, out[0].keep, out[0].lines), (a, true, 2));
    }
}
