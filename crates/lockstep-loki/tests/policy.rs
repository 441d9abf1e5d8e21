use std::time::{Duration, Instant};

use lockstep_loki::*;

#[test]
fn classification_table() {
    let table = [
        (200, StatusClass::Delivered),
        (204, StatusClass::Delivered),
        (260, StatusClass::Blocked),
        (400, StatusClass::Rejected),
        (413, StatusClass::Rejected),
        (422, StatusClass::Rejected),
        (429, StatusClass::Retryable),
        (500, StatusClass::Retryable),
        (502, StatusClass::Retryable),
        (503, StatusClass::Retryable),
        (504, StatusClass::Retryable),
        // Not named by Loki: kept and retried rather than dropped.
        (301, StatusClass::Retryable),
        (401, StatusClass::Retryable),
        (404, StatusClass::Retryable),
    ];
    for (code, class) in table {
        assert_eq!(classify_status(code), class, "status {code}");
    }
}

#[test]
fn outcomes_from_status() {
    let o = Outcome::from_status(204, String::new());
    assert!(matches!(o, Outcome::Delivered { status: 204 }));
    assert!(!o.is_retryable());
    let o = Outcome::from_status(260, "blocked".into());
    assert!(matches!(o, Outcome::Blocked { status: 260, .. }));
    assert!(!o.is_retryable() && !o.is_endpoint_failure());
    assert_eq!(o.body(), Some("blocked"));
    let o = Outcome::from_status(400, "line too long".into());
    assert!(matches!(o, Outcome::Rejected { status: 400, .. }));
    assert!(!o.is_retryable() && !o.is_endpoint_failure());
    let o = Outcome::from_status(429, "rate".into());
    assert!(o.is_retryable() && o.is_endpoint_failure());
    assert_eq!(o.status(), Some(429));
}

#[test]
fn truncates_long_bodies() {
    let long = "é".repeat(MAX_BODY_CHARS + 10);
    let t = truncate_body(long.as_bytes());
    assert!(t.ends_with("(truncated)"));
    assert_eq!(t.chars().filter(|&c| c == 'é').count(), MAX_BODY_CHARS);
    assert_eq!(truncate_body(b"short\n"), "short");
    assert_eq!(truncate_body(&[0xff, b'a']), "\u{fffd}a");
}

#[test]
fn backoff_grows_within_bounds() {
    let cfg = BackoffConfig::default();
    assert_eq!(cfg.initial, Duration::from_secs(1));
    assert_eq!(cfg.max, Duration::from_secs(5));
    for seed in 0..50 {
        let mut b = Backoff::with_seed(cfg, seed);
        let ceilings = [1000u64, 2000, 4000, 5000, 5000, 5000, 5000];
        for c in ceilings {
            let d = b.next_delay();
            let c = Duration::from_millis(c);
            assert!(
                d <= c && d >= c / 2,
                "seed {seed}: {d:?} outside [{:?}, {c:?}]",
                c / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}

#[test]
fn backoff_is_jittered() {
    let cfg = BackoffConfig::default();
    let firsts: std::collections::BTreeSet<Duration> = (0..20)
        .map(|seed| Backoff::with_seed(cfg, seed).next_delay())
        .collect();
    assert!(firsts.len() > 10, "delays not jittered: {firsts:?}");
    // Same seed, same sequence.
    let mut a = Backoff::with_seed(cfg, 7);
    let mut b = Backoff::with_seed(cfg, 7);
    for _ in 0..5 {
        assert_eq!(a.next_delay(), b.next_delay());
    }
}

#[test]
fn backoff_custom_and_huge_attempts() {
    let cfg = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(250),
        multiplier: 3,
    };
    let b = Backoff::with_seed(cfg, 1);
    assert_eq!(b.ceiling(0), Duration::from_millis(100));
    assert_eq!(b.ceiling(1), Duration::from_millis(250));
    assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(250));
    let mut b = Backoff::with_seed(cfg, 1);
    for _ in 0..1000 {
        assert!(b.next_delay() <= Duration::from_millis(250));
    }
    assert_eq!(b.attempt(), 1000);
}

#[test]
fn breaker_transitions() {
    let cfg = BreakerConfig::default();
    assert_eq!(cfg.failure_threshold, 5);
    assert_eq!(cfg.hold, Duration::from_secs(30));
    let t0 = Instant::now();
    let mut br = CircuitBreaker::new(cfg);
    // Closed: 4 failures keep it closed.
    for i in 0..4 {
        assert!(br.allow(t0), "failure {i}");
        br.record_failure(t0);
        assert_eq!(br.state(), BreakerState::Closed { failures: i + 1 });
    }
    // A success resets the count.
    br.record_success();
    for _ in 0..4 {
        br.record_failure(t0);
    }
    assert!(matches!(br.state(), BreakerState::Closed { failures: 4 }));
    // 5th consecutive failure opens.
    br.record_failure(t0);
    assert_eq!(
        br.state(),
        BreakerState::Open {
            until: t0 + cfg.hold
        }
    );
    assert_eq!(br.retry_at(), Some(t0 + cfg.hold));
    // Open rejects until the hold has passed.
    assert!(!br.allow(t0));
    assert!(!br.allow(t0 + Duration::from_secs(29)));
    // Half-open: exactly one probe.
    let t1 = t0 + cfg.hold;
    assert!(br.allow(t1));
    assert_eq!(
        br.state(),
        BreakerState::HalfOpen {
            probe_in_flight: true
        }
    );
    assert!(!br.allow(t1));
    assert!(!br.allow(t1 + Duration::from_secs(100)));
    // Probe fails: reopens for a full hold from the failure time.
    let t2 = t1 + Duration::from_secs(2);
    br.record_failure(t2);
    assert_eq!(
        br.state(),
        BreakerState::Open {
            until: t2 + cfg.hold
        }
    );
    assert!(!br.allow(t2 + Duration::from_secs(29)));
    // Next probe succeeds: closed, everything flows.
    let t3 = t2 + cfg.hold;
    assert!(br.allow(t3));
    assert!(!br.allow(t3));
    br.record_success();
    assert_eq!(br.state(), BreakerState::Closed { failures: 0 });
    assert!(br.allow(t3));
    assert!(br.allow(t3));
}

#[test]
fn breaker_threshold_one_and_zero() {
    let t0 = Instant::now();
    for threshold in [0, 1] {
        let mut br = CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            hold: Duration::from_millis(10),
        });
        br.record_failure(t0);
        assert!(!br.allow(t0), "threshold {threshold}");
        assert!(br.allow(t0 + Duration::from_millis(10)));
    }
}
