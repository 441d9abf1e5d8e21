//! The stage's clock: wall time read once at open, advanced by a monotonic clock.
//! `decision_wait` is measured on it, so a step of the system clock neither stalls
//! decisions (a step back) nor decides every waiting trace at once on partial facts (a
//! step forward). Across a restart the records' wall-clock stamps are all there is:
//! recovery caps a stamp in the future at the restart's time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// Where the stage reads time.
#[derive(Debug, Clone, Default)]
pub enum TimeSource {
    /// The system's wall clock and `Instant`.
    #[default]
    System,
    /// A clock a test moves by hand.
    Manual(Arc<ManualTime>),
}

/// A clock moved by hand (tests): a wall clock that can step, and a monotonic one.
#[derive(Debug, Default)]
pub struct ManualTime {
    wall: AtomicU64,
    mono: AtomicU64,
}

impl ManualTime {
    pub fn new(wall_ns: u64) -> Arc<ManualTime> {
        Arc::new(ManualTime {
            wall: AtomicU64::new(wall_ns),
            mono: AtomicU64::new(0),
        })
    }
    /// Time passes: both clocks move forward.
    pub fn advance(&self, ns: u64) {
        self.wall.fetch_add(ns, Relaxed);
        self.mono.fetch_add(ns, Relaxed);
    }
    /// The wall clock is set (NTP, an operator): the monotonic clock does not move.
    pub fn set_wall(&self, ns: u64) {
        self.wall.store(ns, Relaxed);
    }
    pub fn wall(&self) -> u64 {
        self.wall.load(Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct Clock {
    src: TimeSource,
    wall0: u64,
    mono0: u64,
    start: Instant,
}

impl Clock {
    pub(crate) fn new(src: TimeSource) -> Clock {
        let start = Instant::now();
        let (wall0, mono0) = match &src {
            TimeSource::System => (lockstep_spool::now_ns(), 0),
            TimeSource::Manual(m) => (m.wall.load(Relaxed), m.mono.load(Relaxed)),
        };
        Clock {
            src,
            wall0,
            mono0,
            start,
        }
    }

    fn mono(&self) -> u64 {
        match &self.src {
            TimeSource::System => {
                u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
            TimeSource::Manual(m) => m.mono.load(Relaxed),
        }
    }

    /// ns since the epoch as of the open, plus the monotonic time since.
    pub(crate) fn now(&self) -> u64 {
        self.wall0
            .saturating_add(self.mono().saturating_sub(self.mono0))
    }
}
