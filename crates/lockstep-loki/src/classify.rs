//! What a Loki response (or a failure to get one) means for the batch.

use crate::TransportError;

/// How a status code is to be handled (see the table in the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx other than 260: stored. (A 204 can still hide per-stream rejections.)
    Delivered,
    /// 260: ingestion blocked on purpose by the operator; the data was discarded.
    /// Not delivered, and not a fault to retry.
    Blocked,
    /// 400, 413, 422: terminal for the batch; never retried (a 400 may have stored
    /// the valid entries, so a retry would duplicate them).
    Rejected,
    /// 429, 5xx, and any other unexpected status: retry with backoff.
    Retryable,
}

/// Classify an HTTP status code from `POST /loki/api/v1/push`.
///
/// Codes the Loki facts do not name (1xx, 3xx — redirects are not followed — and
/// other 4xx such as 401/403/404, which mean misconfiguration) are `Retryable`: the
/// batch is kept rather than dropped, and the backoff and circuit breaker slow the
/// retries down while an operator fixes the setup.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        260 => StatusClass::Blocked,
        200..=299 => StatusClass::Delivered,
        400 | 413 | 422 => StatusClass::Rejected,
        _ => StatusClass::Retryable,
    }
}

/// Result of one push attempt.
#[derive(Debug)]
pub enum Outcome {
    /// Stored (2xx other than 260).
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// 260: discarded on purpose by Loki; count as discarded, do not retry.
    Blocked {
        /// HTTP status.
        status: u16,
        /// Response body, truncated.
        body: String,
    },
    /// 400/413/422: drop the batch, log the body; never retry.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Response body, truncated.
        body: String,
    },
    /// Retry later with backoff.
    Retry(RetryCause),
}

/// Why an attempt is to be retried.
#[derive(Debug)]
pub enum RetryCause {
    /// Loki (or something in front of it) answered with a retryable status.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body, truncated.
        body: String,
    },
    /// No response: connect failure, timeout, TLS or I/O error.
    Transport(TransportError),
}

impl Outcome {
    /// Build the outcome for a received status and body.
    pub fn from_status(status: u16, body: String) -> Self {
        match classify_status(status) {
            StatusClass::Delivered => Outcome::Delivered { status },
            StatusClass::Blocked => Outcome::Blocked { status, body },
            StatusClass::Rejected => Outcome::Rejected { status, body },
            StatusClass::Retryable => Outcome::Retry(RetryCause::Status { status, body }),
        }
    }

    /// True when the batch should be sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Retry(_))
    }

    /// True when the endpoint is to be counted as failing (for the circuit breaker).
    /// Delivered, Blocked and Rejected all prove Loki is up and answering.
    pub fn is_endpoint_failure(&self) -> bool {
        self.is_retryable()
    }

    /// HTTP status, if a response was received.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status }
            | Outcome::Blocked { status, .. }
            | Outcome::Rejected { status, .. }
            | Outcome::Retry(RetryCause::Status { status, .. }) => Some(*status),
            Outcome::Retry(RetryCause::Transport(_)) => None,
        }
    }

    /// Response body (truncated) for logging, if any.
    pub fn body(&self) -> Option<&str> {
        match self {
            Outcome::Blocked { body, .. }
            | Outcome::Rejected { body, .. }
            | Outcome::Retry(RetryCause::Status { body, .. }) => Some(body),
            _ => None,
        }
    }
}
