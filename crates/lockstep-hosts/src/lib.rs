//! lockstep-hosts: hosts that run the real plugin artifacts exactly as Fluent Bit does,
//! and the Loki they ship to. `lockstep replay` and `lockstep ship` run on these; the
//! tests (`lockstep-harness`) drive them too.
//!
//! Modules:
//! - [`loki_receiver`]: a Loki-compatible push receiver on loopback with switchable
//!   faults (5xx, 429, partial 400, 260, black hole, slow, refuse) that decodes
//!   protobuf+snappy and JSON, enforces label rules and counts what it stored.
//! - [`wasm`]: a `filter_wasm` host (wasmtime) that runs a filter `.wasm` exactly as
//!   Fluent Bit 5.1 does; [`golden`]: the golden replay and its trace-side truth.
//! - [`proxy`]: a `dlopen` host for output plugins built on Fluent Bit's proxy
//!   ABI (the one Go plugins use), behaving like Fluent Bit 5.1.
//! - [`output_replay`]: a golden set through the real output with `policy_file`
//!   (sampling by whole trace), checked for completeness against the traces.
//! - [`otlp_logs`]: Fluent Bit 5.1.1's `opentelemetry` input for OTLP/HTTP protobuf
//!   logs: a loopback endpoint a real OpenTelemetry SDK exports to, giving the exact
//!   chunk bytes (groups, `otlp` metadata) an output plugin would be flushed.
//! - `http` (private): the one HTTP/1.1 server side (request reading, keep-alive,
//!   chunked bodies, responses) of the receiver and the OTLP input.
//!
//! Dependency direction: the CLI depends on this crate, this crate on the pure cores
//! (`lockstep-policy`, `lockstep-record`, `lockstep-filter`, `lockstep-loki`,
//! `fluent-bit-sys`); test-only helpers (building artifacts, child processes) live in
//! `lockstep-harness`, which depends on this crate and never the other way.
//!
//! Invariants: the hosts own every resource they hand to a plugin and free it
//! the way Fluent Bit does (and no later), so a plugin that keeps a pointer it
//! was told not to keep fails loudly here; only one proxy host exists per
//! process at a time (loading waits for the previous one to be dropped),
//! because the host's `log_print` is process-global, as in Fluent Bit.

pub mod golden;
mod http;
pub mod loki_receiver;
pub mod otlp_logs;
pub mod output_replay;
pub mod proxy;
pub mod wasm;

/// A loopback TCP port that was free a moment ago (for a listener a test configures).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
