//! A circuit breaker for course-service calls: after `threshold` consecutive failed attempts it
//! opens and calls fail at once; after `open_for` one probe is let through (half-open), whose
//! outcome closes or re-opens it. A probe dropped before its outcome is known (its request's
//! deadline dropped the handler) counts as failed, so half-open always ends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

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
    /// Shows the position ([`Position::code`]) after every change.
    gauge: Gauge,
    /// `PLANTED_BUG=probe-leak`: a dropped probe records nothing, so half-open never ends.
    leak_probes: bool,
}

/// A call let through by [`Breaker::allow`]; its outcome goes to [`Permit::record`].
#[must_use = "a call let through must record its outcome"]
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    /// The half-open breaker's one probe: nobody else may leave half-open.
    probe: bool,
}

impl Permit<'_> {
    /// Records the call's outcome; returns the breaker's new position.
    pub(crate) fn record(self, success: bool, now: Instant) -> Position {
        let breaker = self.breaker;
        std::mem::forget(self);
        breaker.record(success, now)
    }
}

impl Drop for Permit<'_> {
    /// Only a permit dropped without [`Permit::record`] gets here. A probe's outcome is the only
    /// way out of half-open, so a dropped probe counts as failed: the breaker re-opens and
    /// probes again after `open_for`. A dropped call of a closed breaker says nothing about
    /// course-service and is not counted.
    fn drop(&mut self) {
        if self.probe && !self.breaker.leak_probes {
            self.breaker.record(false, Instant::now());
        }
    }
}

impl Breaker {
    /// A closed breaker whose position is shown on `gauge`.
    pub(crate) fn new(threshold: u32, open_for: Duration, gauge: Gauge) -> Self {
        gauge.set(Position::Closed { failures: 0 }.code());
        Self {
            position: Mutex::new(Position::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            gauge,
            leak_probes: false,
        }
    }

    /// The breaker with the planted defect of a dropped probe that records nothing.
    pub(crate) fn leaking_probes(mut self, leak: bool) -> Self {
        self.leak_probes = leak;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Position> {
        self.position.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit if a call may go out now (a half-open breaker lets exactly one through).
    pub(crate) fn allow(&self, now: Instant) -> Option<Permit<'_>> {
        let mut position = self.lock();
        let probe = match *position {
            Position::Closed { .. } => false,
            Position::Open { until } if now >= until => {
                *position = Position::HalfOpen;
                self.gauge.set(Position::HalfOpen.code());
                true
            }
            Position::Open { .. } | Position::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
        })
    }

    /// Records an attempt's outcome; returns the new position.
    fn record(&self, success: bool, now: Instant) -> Position {
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
        self.gauge.set(position.code());
        *position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(threshold, Duration::from_secs(10), Gauge::default())
    }

    /// One call let through and its outcome recorded.
    fn call(b: &Breaker, success: bool, now: Instant) -> Position {
        b.allow(now).unwrap().record(success, now)
    }

    #[test]
    fn it_opens_after_the_threshold_and_fails_fast() {
        let b = breaker(3);
        let t = Instant::now();
        call(&b, false, t);
        call(&b, false, t);
        assert_eq!(call(&b, false, t).code(), 1);
        assert!(b.allow(t + Duration::from_secs(1)).is_none());
        assert_eq!(b.gauge.get(), 1);
    }

    #[test]
    fn after_the_open_period_one_probe_decides() {
        let b = breaker(1);
        let t = Instant::now();
        call(&b, false, t);
        let later = t + Duration::from_secs(11);
        let probe = b.allow(later).expect("the probe");
        assert_eq!(b.gauge.get(), 2, "half-open");
        assert!(b.allow(later).is_none(), "only one probe");
        assert_eq!(
            probe.record(false, later).code(),
            1,
            "a failed probe re-opens"
        );
        let much_later = later + Duration::from_secs(11);
        assert_eq!(call(&b, true, much_later).code(), 0, "a good probe closes");
        assert!(b.allow(much_later).is_some());
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn a_dropped_probe_re_opens_and_a_later_probe_is_let_through() {
        let b = breaker(1);
        let t = Instant::now();
        call(&b, false, t);
        let probe = b.allow(t + Duration::from_secs(11)).expect("the probe");
        drop(probe);
        assert_eq!(b.gauge.get(), 1, "re-opened");
        assert!(b.allow(Instant::now()).is_none(), "open again for open_for");
        assert!(
            b.allow(Instant::now() + Duration::from_secs(11)).is_some(),
            "a new probe"
        );
    }

    #[test]
    fn a_dropped_call_of_a_closed_breaker_is_not_counted() {
        let b = breaker(1);
        let t = Instant::now();
        drop(b.allow(t));
        assert!(b.allow(t).is_some());
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(2);
        let t = Instant::now();
        call(&b, false, t);
        call(&b, true, t);
        assert_eq!(call(&b, false, t).code(), 0);
    }
}
