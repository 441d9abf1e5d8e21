//! `lockstep-loki`: a pure, blocking Grafana Loki push client library.
//!
//! Owns: the Loki wire format (hand-written prost messages for `logproto.PushRequest`,
//! raw/block snappy compression, and the JSON form), label rendering and sanitising,
//! grouping a batch into time-sorted streams, one HTTP push (`ureq` + rustls with the
//! ring provider; tenant header, basic or bearer auth, timeout, CA file), the
//! classification of what Loki answered, jittered exponential backoff, and a circuit
//! breaker. It does not own queues, disk buffers or retry loops: the caller decides
//! when to call [`LokiClient::push`] again, using [`Backoff`] and [`CircuitBreaker`].
//!
//! Invariants:
//! - Label names sent are `[a-zA-Z_][a-zA-Z0-9_]*`; labels with empty values are
//!   never sent; label values are escaped (`\`, `"`, newline, CR, tab).
//! - Each stream's entries are sent in timestamp order after [`group_entries`]
//!   (stable: equal timestamps keep input order).
//! - Response classes follow Loki's push API: 2xx except 260 → [`Outcome::Delivered`];
//!   260 → [`Outcome::Blocked`] (discarded on purpose: neither delivered nor a fault
//!   to retry); 400/413/422 → [`Outcome::Rejected`] (never retried: a 400 may have
//!   stored the valid part); 429, 5xx, other statuses, connect errors and timeouts →
//!   [`Outcome::Retry`].
//! - Credentials (password, token, the `Authorization` value) never appear in any
//!   `Debug`/`Display` output or error message of this crate; URLs carrying
//!   credentials are refused.
//! - Backoff and breaker take `Instant`s as parameters and never sleep.

mod backoff;
mod classify;
mod client;
mod encode;
mod model;

use std::path::PathBuf;

pub use backoff::{Backoff, BackoffConfig, BreakerConfig, BreakerState, CircuitBreaker};
pub use classify::{classify_status, Outcome, RetryCause, StatusClass};
pub use client::{
    check_tenant, redact_userinfo, truncate_body, Auth, ClientConfig, Encoding, LokiClient, Secret,
    TlsOptions, MAX_BODY_CHARS, MAX_BODY_READ,
};
pub use encode::{
    encode_json, encode_protobuf_snappy, encode_protobuf_snappy_with, encode_push_request,
    to_json_value, to_push_request, EncodeScratch, EntryAdapter, LabelPairAdapter, PushRequest,
    StreamAdapter, Timestamp,
};
pub use model::{
    effective_labels, escape_label_value, group_entries, group_streams, is_valid_label_name,
    render_labels, sanitize_label_name, secs_nanos, Entry, EntryView, Stream, StreamView,
};

/// Local errors: configuration and encoding. Network results are [`Outcome`]s.
#[derive(Debug, thiserror::Error)]
pub enum LokiError {
    /// The push URL is unusable.
    #[error("bad Loki URL {url}: {reason}")]
    BadUrl {
        /// URL with any userinfo redacted.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {detail}", path = path.display())]
    CaFile {
        /// File path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Tenant id is empty or holds control characters.
    #[error("bad X-Scope-OrgID tenant {tenant:?}: empty or control characters")]
    BadTenant {
        /// The tenant.
        tenant: String,
    },
    /// Credentials hold control characters (value not shown).
    #[error("credentials contain control characters (value not shown)")]
    BadCredentials,
    /// Nothing to send (Loki would answer 422).
    #[error("empty batch: no entries to push")]
    EmptyBatch,
    /// Encoding failed.
    #[error("encoding push body: {detail}")]
    Encode {
        /// What went wrong.
        detail: String,
    },
}

/// What kind of transport failure happened (all are retryable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Connection refused/reset, host not found.
    Connect,
    /// The configured timeout ran out.
    Timeout,
    /// TLS handshake or certificate failure.
    Tls,
    /// Any other I/O or protocol failure.
    Other,
}

/// A push that got no HTTP response. Retryable.
#[derive(Debug, thiserror::Error)]
#[error("push to {url} failed ({kind:?}): {detail}")]
pub struct TransportError {
    /// URL (no credentials).
    pub url: String,
    /// Kind of failure.
    pub kind: TransportKind,
    /// Underlying error text, with credentials scrubbed.
    pub detail: String,
}
