//! lockstep-ship: durable shipping to Loki. It owns the format of an entry in the
//! disk queue ([`SpooledEntry`]), the single drain that moves queued entries to Loki
//! ([`Drain`]), and the instance's counters with their Prometheus rendering
//! ([`Metrics`], [`MetricsServer`]). No FFI: the `lockstep_loki` plugin is a thin
//! shell that maps records, appends them to the spool, and starts one [`Drain`].
//!
//! Invariants:
//! - **One consumer, oldest first.** One drain thread per spool peeks the oldest batch,
//!   pushes it (one request per tenant, each stream sorted by time) and acknowledges it
//!   before it reads the next; nothing newer is ever sent ahead of an unresolved older
//!   entry, so a stream's backlog cannot be overtaken by its fresh entries.
//! - **Acknowledged only when resolved.** A batch is acked once every entry in it was
//!   delivered (2xx), rejected (400/413/422: counted, dead-lettered, never retried),
//!   discarded by Loki on purpose (260: counted, not retried, not "delivered"), or
//!   dropped by policy (too old, undecodable, unsendable tenant: counted). A retryable
//!   failure (429, 5xx, timeout, connection) keeps the batch, so a crash or restart
//!   replays at most the batch in flight (Loki absorbs most exact duplicates).
//! - **Bounded request rate.** Retries back off (jittered exponential, capped) and a
//!   circuit breaker opens after consecutive failures, letting one probe through per
//!   hold time: a dead Loki sees a bounded request rate, whatever the backlog.
//! - **Bounded memory.** At most one batch (`batch_entries`, `batch_bytes`) is in
//!   memory, with its encoded bodies, whatever the backlog on disk; its entries are
//!   read in place from the batch's bytes (never copied into owned strings), and the
//!   encoder's buffers (one uncompressed and one compressed body, the largest so far)
//!   are kept from push to push.
//! - **Bounded shutdown, no duplicate.** [`Drain::stop`] keeps sending while pushes
//!   succeed, starts no batch after `shutdown_grace`, finishes and acknowledges a batch
//!   already started (every push keeps the client's timeout: a push Loki completed is
//!   never sent again), gives up at once when Loki fails or the breaker is open, joins
//!   the thread, and leaves the rest on disk.
//! - **Honest gauges.** Queue depth and age are read from the spool at each scrape,
//!   never kept as counters here.

pub mod drain;
pub mod entry;
pub mod metrics;

pub use drain::{Drain, DrainConfig, ThreadGuard, TooOld, ORIGINAL_TS_KEY};
pub use entry::{encode_entry, EntryError, EntryRef, SpooledEntry, ENTRY_VERSION};
pub use metrics::{parse_listen, Metrics, MetricsServer};
