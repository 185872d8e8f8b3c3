//! Calls to course-service: `gameTimeSlots.get` and `games.get` through the NestJS client, with
//! retries, the circuit breaker, and course-service's `success:false` read as a refusal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::course::{CourseReply, Game, GameQuery, TimeSlot, TimeSlotQuery};
use contracts::{subjects, CallError, NestClient, ReplyOutcome};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::breaker::Breaker;
use crate::config::Config;
use crate::metrics::Metrics;

/// Why a course-service call gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CourseError {
    /// Course-service answered `success:false` (an unknown id, or its own rules): a healthy "no".
    #[error("{0}")]
    Refused(String),
    /// Nobody listens on the subject (NATS "no responders").
    #[error("course-service is not running (no responders on {0})")]
    NoResponders(&'static str),
    /// No answer within the timeout.
    #[error("course-service did not answer {0} within {1:?}")]
    Timeout(&'static str, Duration),
    /// An answer that is an error or cannot be decoded, or a transport failure.
    #[error("course-service call {0} failed: {1}")]
    Failed(&'static str, String),
    /// The breaker is open: recent calls failed, so this one was not made.
    #[error("course-service is failing; calls are paused (circuit open)")]
    CircuitOpen,
}

impl CourseError {
    /// The metrics label of the failure.
    fn kind(&self) -> &'static str {
        match self {
            CourseError::Refused(_) => "refused",
            CourseError::NoResponders(_) => "no_responders",
            CourseError::Timeout(..) => "timeout",
            CourseError::Failed(..) => "error",
            CourseError::CircuitOpen => "circuit_open",
        }
    }

    /// Whether the answer says course-service is unhealthy (a refusal is a healthy answer).
    fn is_outage(&self) -> bool {
        !matches!(self, CourseError::Refused(_))
    }
}

/// The course-service client.
#[derive(Debug)]
pub struct CourseClient {
    /// NestJS requests with the per-call timeout (replies up to NATS's own 1 MiB limit).
    nest: NestClient,
    /// Latency and failure counts.
    metrics: Arc<Metrics>,
    /// Extra attempts after a failure.
    retries: u32,
    /// Fails fast while course-service is down.
    breaker: Breaker,
}

impl CourseClient {
    /// A client on `nats` with a per-call `timeout`.
    pub(crate) fn new(nats: async_nats::Client, config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            retries: config.course_retries,
            breaker: Breaker::new(
                config.breaker_threshold,
                config.breaker_open,
                metrics.breaker_state.clone(),
            )
            .leaking_probes(config.planted_bug == Some(crate::faults::PlantedBug::ProbeLeak)),
            nest: NestClient::new(nats, config.course_timeout).with_max_reply(1024 * 1024),
            metrics,
        }
    }

    /// The NestJS client course-service calls go through.
    pub(crate) fn nest(&self) -> &NestClient {
        &self.nest
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &'static str,
        data: &Req,
    ) -> Result<Resp, CourseError> {
        let mut attempt = 0;
        loop {
            // Held across the call: if this future is dropped mid-call, the permit's drop
            // records the outcome the call never reached.
            let Some(permit) = self.breaker.allow(Instant::now()) else {
                self.metrics.course_failure(CourseError::CircuitOpen.kind());
                return Err(CourseError::CircuitOpen);
            };
            let started = Instant::now();
            let result = self.call_once(subject, data).await;
            self.metrics
                .course_latency
                .observe(started.elapsed().as_secs_f64());
            let outage = result.as_ref().err().is_some_and(CourseError::is_outage);
            permit.record(!outage, Instant::now());
            match result {
                Err(e) if outage && attempt < self.retries => {
                    self.metrics.course_failure(e.kind());
                    attempt += 1;
                    // Full jitter over an exponential ceiling: 50 ms, 100 ms, 200 ms, ...
                    let ceiling = 50u64 << attempt.min(10);
                    let pause = rand::Rng::random_range(&mut rand::rng(), ceiling / 2..=ceiling);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => {
                    self.metrics.course_failure(e.kind());
                    return Err(e);
                }
                Ok(value) => return Ok(value),
            }
        }
    }

    async fn call_once<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &'static str,
        data: &Req,
    ) -> Result<Resp, CourseError> {
        let reply = self
            .nest
            .request(subject, data)
            .await
            .map_err(|e| match e {
                CallError::NoResponders(_) => CourseError::NoResponders(subject),
                CallError::Timeout(_, after) => CourseError::Timeout(subject, after),
                other => CourseError::Failed(subject, other.to_string()),
            })?;
        let value = match reply.outcome {
            ReplyOutcome::Response(value) => value,
            ReplyOutcome::Err(err) => return Err(CourseError::Failed(subject, err.to_string())),
            ReplyOutcome::NoHandler(text) => return Err(CourseError::Failed(subject, text)),
        };
        serde_json::from_value(value)
            .map_err(|e| CourseError::Failed(subject, format!("unexpected reply: {e}")))
    }

    async fn found<T: DeserializeOwned + contracts::Validate>(
        &self,
        subject: &'static str,
        data: &impl Serialize,
    ) -> Result<T, CourseError> {
        match self.call::<_, CourseReply<T>>(subject, data).await? {
            CourseReply::Found(found) => {
                found
                    .data
                    .validate()
                    .map_err(|v| CourseError::Failed(subject, format!("invalid reply: {v:?}")))?;
                Ok(found.data)
            }
            // Whatever its code (course-service's own `GAME_*_FAILED`, or ours), `success:false` is
            // the peer saying no; its message is passed on.
            CourseReply::Failed(err) => {
                let refused = CourseError::Refused(err.error.message);
                self.metrics.course_failure(refused.kind());
                Err(refused)
            }
        }
    }

    /// `gameTimeSlots.get`.
    pub async fn time_slot(&self, slot_id: i32) -> Result<TimeSlot, CourseError> {
        self.found(
            subjects::SLOTS_GET,
            &TimeSlotQuery {
                time_slot_id: slot_id,
            },
        )
        .await
    }

    /// `games.get`.
    pub async fn game(&self, game_id: i32) -> Result<Game, CourseError> {
        self.found(subjects::GAMES_GET, &GameQuery { game_id })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client on a NATS server that never answers (nothing listens on port 1): every call
    /// times out after `timeout`.
    async fn unanswered(timeout: Duration) -> CourseClient {
        unanswered_with(timeout, None).await
    }

    async fn unanswered_with(
        timeout: Duration,
        planted: Option<crate::faults::PlantedBug>,
    ) -> CourseClient {
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .unwrap();
        let mut config = Config::new("postgres://h/db", "nats://127.0.0.1:1").unwrap();
        config.course_timeout = timeout;
        config.course_retries = 0;
        config.breaker_threshold = 1;
        config.breaker_open = Duration::from_millis(100);
        config.planted_bug = planted;
        CourseClient::new(nats, &config, Arc::new(Metrics::default()))
    }

    /// A request whose deadline drops the handler mid-call drops the breaker's probe with it: the
    /// breaker must still let a later probe through once `open_for` has passed again.
    #[tokio::test]
    async fn a_probe_dropped_mid_call_counts_as_a_failure_and_a_later_call_probes_again() {
        let course = unanswered(Duration::from_millis(200)).await;
        let first = course.time_slot(1).await;
        assert!(matches!(first, Err(CourseError::Timeout(..))), "{first:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The probe: its future is dropped while it waits for course-service.
        let dropped = tokio::time::timeout(Duration::from_millis(50), course.time_slot(1)).await;
        assert!(dropped.is_err(), "the probe was still out when dropped");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let later = course.time_slot(1).await;
        assert!(
            matches!(later, Err(CourseError::Timeout(..))),
            "a later call is a new probe, not refused by a breaker stuck half-open: {later:?}"
        );
    }

    /// The test above can fail: with the dropped probe planted back as a leak, the later call is
    /// refused by a breaker stuck half-open.
    #[tokio::test]
    async fn with_probe_leak_planted_the_breaker_stays_half_open() {
        let course = unanswered_with(
            Duration::from_millis(200),
            Some(crate::faults::PlantedBug::ProbeLeak),
        )
        .await;
        let _ = course.time_slot(1).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let dropped = tokio::time::timeout(Duration::from_millis(50), course.time_slot(1)).await;
        assert!(dropped.is_err());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let later = course.time_slot(1).await;
        assert!(matches!(later, Err(CourseError::CircuitOpen)), "{later:?}");
    }
}
