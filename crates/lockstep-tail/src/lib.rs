//! # lockstep-tail
//!
//! Tail sampling by whole trace, for the output plugin: every line of a kept trace is
//! delivered, none of a dropped one. It owns the decision stage between Fluent Bit's
//! flush and the main disk queue:
//!
//! ```text
//! flush ─▶ Intake: extract (msgpack + OTLP metadata) ─▶ table.admit ─▶ waiting queue (disk,
//!                                                                    the raw events)
//! decider thread: decide_due (on time / early) ─▶ `D` records ─▶ sweep: kept lines mapped
//!                                                                ─▶ main queue
//! ```
//!
//! - [`table`]: which traces wait (their [`TraceFacts`](lockstep_policy::TraceFacts),
//!   first arrival, lines on disk), which are decided, the decision cache. No I/O.
//! - [`record`]: the waiting queue's record format.
//! - [`Stage`]: the waiting queue (a `lockstep-spool` of its own), the decider thread,
//!   recovery, the metrics.
//!
//! Guarantees:
//! - **Decided by trace.** A trace is decided `decision_wait` after its first line
//!   arrived, over all lines that arrived by then (any line matching a rule, the longest
//!   duration, the trace id), with the policy engine's precedence. A line with no trace
//!   id is decided alone at once. A line arriving after its trace's decision follows it
//!   while the decision is remembered (pinned until the trace's lines are swept, then
//!   in a bounded cache), otherwise it starts a new trace, as in the Collector.
//! - **Durable while waiting.** [`Intake::commit`] returns only when the lines are
//!   durable in the waiting queue, and only then do their facts count. A decision is
//!   durable in the waiting queue before any of its lines leaves it (room is kept for
//!   decision records: flushes may not use it); kept lines are durable in the main
//!   queue before the waiting queue acknowledges them. After `kill -9` the table is
//!   rebuilt from the waiting queue: traces wait again from the later of their first
//!   line's arrival and the start, and are decided over their lines; a decision record decides the lines before it
//!   and stands (lines after it are a new trace with that id). Lines may reach the main
//!   queue twice across a crash (Loki drops exact duplicates), never zero times.
//! - **Policy edits.** Facts are named by [`Policy::fingerprint`](lockstep_policy::Policy::fingerprint)
//!   (the compiled rules): lines written under another are read again from the stored
//!   line; recorded decisions stand.
//! - **Bounded memory.** The table holds at most about `num_traces` waiting traces (past
//!   it the oldest are decided early, counted), `max_pinned` decided traces whose lines
//!   wait for the main queue (past it a chunk with a new trace is refused:
//!   [`IntakeError::Busy`]), the caches, and at most 2 × `num_traces` held trace ids;
//!   never lines. A sweep or a recovery reads
//!   at most 4,096 records (4 MiB) at a time; a decision round decides at most 4,096
//!   traces under the table lock.
//! - **The rest of a trace is waited for.** When a flush is answered retry (the waiting
//!   queue is full, or `max_pinned` is reached), the traces with lines in that chunk are
//!   held: not decided on time until Fluent Bit offers the same chunk again and it is
//!   taken, at most `hold_max` after the refusal, and never past `num_traces`. A held
//!   trace's lines at the head of the waiting queue move to its tail when what follows
//!   them can be swept, so the room the refused chunk needs is freed; they never use the
//!   last quarter of the decision reserve. Room comes before completeness: held traces
//!   whose lines cannot be moved, or that alone fill the queue while flushes are refused
//!   for room, are decided without their rest (counted). After a restart, recovered
//!   traces wait `decision_wait` from the start at least: Fluent Bit offers its buffered
//!   chunks again first.
//! - **Monotonic time.** `decision_wait` is measured on a monotonic clock anchored at
//!   the wall clock ([`TimeSource`]): a clock step neither stalls nor rushes decisions.
//! - **No wedge.** A line whose mapping panics, or a trace whose decision panics, is
//!   retried [`POISON_TRIES`] times, then set aside (the line in `quarantine.jsonl`, the
//!   trace kept), counted; a trace with a line mid-append holds back no other trace.
//! - **Independent of Loki.** Decisions and sweeps run on the intake clock; the main
//!   queue only ever receives kept lines. When it is full the sweep pauses (logged;
//!   the waiting queue's oldest age shows it) and resumes; nothing is dropped silently.
//! - **Never waits in flush** on a decision or the network: a flush extracts, takes the
//!   table lock per line, and appends one batch of the raw events.
//! - **A graceful stop delivers.** [`Stage::stop_by`] keeps deciding and sweeping the
//!   traces that come due before its deadline; the rest stays on disk, reported.
//! - **What is dropped is never rendered.** A line is mapped to its Loki entry (the
//!   output's [`Mapper`]) only when its trace is kept, on the decider thread.
//! - **In order.** Lines leave the waiting queue in arrival order: a line already kept
//!   (no trace id, or late after a kept decision) waits behind older undecided lines,
//!   at most `decision_wait`.

mod clock;
mod metrics;
pub mod record;
mod stage;
pub mod table;

pub use clock::{ManualTime, TimeSource};
pub use stage::{
    DecisionSource, Intake, IntakeError, Left, Mapper, Recovered, Stage, StageConfig, StageError,
    StageMetrics, Tick, QUARANTINE_FILE,
};
pub use table::{
    chunk_key, Admit, Decided, HoldCounts, Reported, Source, Table, TableConfig, TraceId, Verdict,
    POISON_TRIES,
};
