//! # lockstep-feed
//!
//! The decision feed: a tail sampler (the OTel Collector's `tail_sampling` followed by an
//! `otlp_http` exporter, or Fluent Bit's `sampling` processor followed by its
//! `opentelemetry` output) exports the spans of the traces it **kept**; this crate
//! receives those exports over OTLP/HTTP and hands the trace ids on. It owns:
//!
//! - [`decode_body`]: an `ExportTraceServiceRequest` body, protobuf (concatenated
//!   messages included, as Fluent Bit sends them) or OTLP/JSON (hex ids in any case,
//!   lowerCamelCase keys and the snake_case ones the Collector also reads), identity,
//!   gzip or deflate, to a [`Report`]: the distinct valid trace ids, the spans seen, the
//!   invalid ids skipped (all zero, or not 16 bytes: never a reason to refuse the rest).
//! - [`respond`]: what an OTLP receiver answers, as a pure function of the request
//!   head, the body and what the sink did with the ids (200 with an empty
//!   `ExportTraceServiceResponse` in the request's encoding; 400 naming why for a body
//!   that does not decode; 401, 404, 405, 411, 413, 415; 503 with `Retry-After` when the
//!   sink cannot take the ids now). Every response stays under 4 KiB (Fluent Bit re-sends
//!   a chunk whose answer is longer).
//! - [`FeedServer`]: persistent HTTP/1.1 on std threads, with bounded connections, a
//!   body cap checked before and after decompression, `Expect: 100-continue`, chunked
//!   bodies, idle keep-alive above the Collector's 90 s.
//!
//! Invariants:
//! - **Durable before 200.** The server answers 200 only after the sink returned `Ok`
//!   for the request's ids; the sink (the output's decision stage) makes them durable
//!   first. A sink error is a 503: every real sender retries it.
//! - **Nothing a client sends can crash or stall the host.** Decoding is bounded by the
//!   body cap (after decompression too), never recursive beyond the fixed OTLP depth,
//!   and fuzzed; each connection has read and write timeouts, connections beyond the
//!   cap get a 503 and are closed, and a panic in a handler ends only that connection.

mod decode;
mod server;

pub use decode::{decode_body, Compression, DecodeError, Encoding, Limits, Report, TraceId};
pub use server::{respond, FeedConfig, FeedMetrics, FeedServer, Request, Response, SinkError};
