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
//!   durable in the waiting queue; a decision is written there before any of its lines
//!   leaves it; kept lines are durable in the main queue before the waiting queue
//!   acknowledges them. After `kill -9` the table is rebuilt from the waiting queue:
//!   traces wait again from their first line's arrival and are decided over the same
//!   lines; decisions already made stand. Lines may reach the main queue twice across
//!   a crash (Loki drops exact duplicates), never zero times.
//! - **Bounded memory.** The table holds O(waiting traces + pinned decisions + cache)
//!   entries, never lines: past `num_traces` waiting traces the oldest are decided early
//!   (counted); a sweep or a recovery reads at most 4,096 records (4 MiB) at a time.
//! - **Independent of Loki.** Decisions and sweeps run on the intake clock; the main
//!   queue only ever receives kept lines. When it is full the sweep pauses (logged;
//!   the waiting queue's oldest age shows it) and resumes; nothing is dropped silently.
//! - **Never waits in flush** on a decision or the network: a flush extracts, takes the
//!   table lock per line, and appends one batch of the raw events.
//! - **What is dropped is never rendered.** A line is mapped to its Loki entry (the
//!   output's [`Mapper`]) only when its trace is kept, on the decider thread.
//! - **In order.** Lines leave the waiting queue in arrival order: a line already kept
//!   (no trace id, or late after a kept decision) waits behind older undecided lines,
//!   at most `decision_wait`.

mod metrics;
pub mod record;
mod stage;
pub mod table;

pub use stage::{Intake, Mapper, Recovered, Stage, StageConfig, StageError, StageMetrics, Tick};
pub use table::{Admit, Decided, Table, TableConfig, TraceId};
