//! Jittered exponential backoff and a circuit breaker. Both are pure state
//! machines: time is passed in (`Instant`), randomness comes from a seedable PRNG.

use std::time::{Duration, Instant};

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay ceiling before the first retry (default 1 s).
    pub initial: Duration,
    /// Upper bound of any delay (default 5 s).
    pub max: Duration,
    /// Growth factor per failure (default 2).
    pub multiplier: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            multiplier: 2,
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` (0-based) waits a uniformly
/// random time in `[c/2, c]`, where `c = min(max, initial * multiplier^n)`.
/// So delays never exceed `max`, never fall below half the ceiling, and grow until
/// the ceiling reaches `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// New backoff with a random seed.
    pub fn new(cfg: BackoffConfig) -> Self {
        Self::with_seed(cfg, fastrand::u64(..))
    }

    /// New backoff with a fixed seed (deterministic tests).
    pub fn with_seed(cfg: BackoffConfig, seed: u64) -> Self {
        Self {
            cfg,
            attempt: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Ceiling for the given 0-based attempt.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let mut c = self.cfg.initial.min(self.cfg.max);
        for _ in 0..attempt {
            if c >= self.cfg.max {
                break;
            }
            c = c
                .checked_mul(self.cfg.multiplier.max(1))
                .unwrap_or(self.cfg.max)
                .min(self.cfg.max);
        }
        c
    }

    /// Delay before the next retry; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let c = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let c_ns = c.as_nanos().min(u64::MAX as u128) as u64;
        let half = c_ns / 2;
        Duration::from_nanos(half + self.rng.u64(0..=c_ns - half))
    }

    /// Failures seen since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Forget past failures (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5, at least 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before letting one probe through (default 30 s).
    pub hold: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            hold: Duration::from_secs(30),
        }
    }
}

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; counts consecutive failures.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Requests are refused until `until`.
    Open {
        /// When a probe may be tried.
        until: Instant,
    },
    /// Hold time passed; `probe_in_flight` is true once the single probe was let through.
    HalfOpen {
        /// Whether the one probe has been handed out.
        probe_in_flight: bool,
    },
}

/// Circuit breaker: opens after `failure_threshold` consecutive failures; after
/// `hold` it half-opens and lets exactly one probe through; the probe's success
/// closes it, its failure reopens it for another `hold`.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    /// New, closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    /// The hold time before a probe.
    pub fn hold(&self) -> Duration {
        self.cfg.hold
    }

    /// Current state (after no transition; call [`allow`](Self::allow) to advance time).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a request be sent at `now`? Returns true when closed, and exactly once
    /// per half-open period (the probe). Moves Open → HalfOpen when the hold has passed.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } => {
                if now >= until {
                    self.state = BreakerState::HalfOpen {
                        probe_in_flight: true,
                    };
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    false
                } else {
                    self.state = BreakerState::HalfOpen {
                        probe_in_flight: true,
                    };
                    true
                }
            }
        }
    }

    /// When the next request may be tried, if the breaker is open.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Record a success (the endpoint answered): closes the breaker.
    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// Record a failure at `now`.
    pub fn record_failure(&mut self, now: Instant) {
        let threshold = self.cfg.failure_threshold.max(1);
        self.state = match self.state {
            BreakerState::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= threshold {
                    BreakerState::Open {
                        until: now + self.cfg.hold,
                    }
                } else {
                    BreakerState::Closed { failures }
                }
            }
            // A failing probe (or a late failure while open) reopens for a full hold.
            BreakerState::HalfOpen { .. } | BreakerState::Open { .. } => BreakerState::Open {
                until: now + self.cfg.hold,
            },
        };
    }
}
