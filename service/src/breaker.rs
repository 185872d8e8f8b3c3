//! A circuit breaker for course-service calls: after `threshold` consecutive failed attempts it
//! opens and calls fail at once; after `open_for` one probe is let through (half-open), whose
//! outcome closes or re-opens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Calls flow; counting consecutive failures.
    Closed { failures: u32 },
    /// Calls fail fast until the instant.
    Open { until: Instant },
    /// One probe is out; others fail fast.
    HalfOpen,
}

impl Position {
    /// 0 closed, 1 open, 2 half-open (the gauge's encoding).
    pub(crate) fn code(self) -> i64 {
        match self {
            Position::Closed { .. } => 0,
            Position::Open { .. } => 1,
            Position::HalfOpen => 2,
        }
    }
}

/// The breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    position: Mutex<Position>,
    threshold: u32,
    open_for: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            position: Mutex::new(Position::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Position> {
        self.position.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now (a half-open breaker lets exactly one through).
    pub(crate) fn allow(&self, now: Instant) -> bool {
        let mut position = self.lock();
        match *position {
            Position::Closed { .. } => true,
            Position::Open { until } if now >= until => {
                *position = Position::HalfOpen;
                true
            }
            Position::Open { .. } | Position::HalfOpen => false,
        }
    }

    /// Records an attempt's outcome; returns the new position.
    pub(crate) fn record(&self, success: bool, now: Instant) -> Position {
        let mut position = self.lock();
        *position = match (*position, success) {
            (_, true) => Position::Closed { failures: 0 },
            (Position::Closed { failures }, false) if failures + 1 < self.threshold => {
                Position::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => Position::Open {
                until: now + self.open_for,
            },
        };
        *position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_the_threshold_and_fails_fast() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t = Instant::now();
        assert!(b.allow(t));
        b.record(false, t);
        b.record(false, t);
        assert_eq!(b.record(false, t).code(), 1);
        assert!(!b.allow(t + Duration::from_secs(1)));
    }

    #[test]
    fn after_the_open_period_one_probe_decides() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t = Instant::now();
        b.record(false, t);
        let later = t + Duration::from_secs(11);
        assert!(b.allow(later), "the probe");
        assert!(!b.allow(later), "only one probe");
        assert_eq!(b.record(false, later).code(), 1, "a failed probe re-opens");
        let much_later = later + Duration::from_secs(11);
        assert!(b.allow(much_later));
        assert_eq!(b.record(true, much_later).code(), 0, "a good probe closes");
        assert!(b.allow(much_later));
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(10));
        let t = Instant::now();
        b.record(false, t);
        b.record(true, t);
        assert_eq!(b.record(false, t).code(), 0);
    }
}
