//! The service's metrics (seed §8.1), rendered in Prometheus text format; `http.rs` serves them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The kinds of course-service failure.
const FAILURE_KINDS: [&str; 5] = [
    "timeout",
    "no_responders",
    "refused",
    "error",
    "circuit_open",
];

/// A failure kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    /// One of [`FAILURE_KINDS`].
    pub(crate) kind: String,
}

/// The way a create was written (`Metrics::created_by`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WritePath {
    /// `lone` (one create, one statement), `single` (a batch's creates in one statement),
    /// `locking` (a batch's locking transaction) or `alone` (its own transaction, after its
    /// batch failed).
    pub(crate) path: String,
}

/// Every metric the service exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Bookings created.
    pub(crate) booking_created: Counter,
    /// Bookings cancelled.
    pub(crate) booking_cancelled: Counter,
    /// Slot lookups answered from a fresh cache row.
    pub(crate) cache_hits: Counter,
    /// Slot lookups that had to ask course-service.
    pub(crate) cache_misses: Counter,
    /// Bookings made on a stale cache row because course-service could not answer.
    pub(crate) stale_fallbacks: Counter,
    /// Course-service call latency, seconds.
    pub(crate) course_latency: Histogram,
    /// Creates per group-commit transaction.
    pub(crate) create_batch_size: Histogram,
    /// A `booking.create`'s time in this replica, seconds: from the moment its message is taken
    /// from NATS until its reply is handed to the client (queueing for a handler included).
    pub(crate) create_seconds: Histogram,
    /// The part of it spent writing: from queueing for group commit until the write's outcome.
    pub(crate) create_write_seconds: Histogram,
    /// Course-service call failures by kind.
    pub(crate) course_failures: Family<Kind, Counter>,
    /// Events that could not be published (each failed outbox attempt).
    pub(crate) nats_publish_failures: Counter,
    /// Inbound messages that could not be decoded.
    pub(crate) malformed_messages: Counter,
    /// Outbox rows not yet sent.
    pub(crate) outbox_backlog: Gauge,
    /// Age of the oldest unsent outbox row, seconds.
    pub(crate) outbox_oldest_pending_seconds: Gauge,
    /// Outbox rows that have used up `OUTBOX_MAX_ATTEMPTS` and are retried at the capped interval.
    pub(crate) outbox_stuck: Gauge,
    /// Outbox rows course-service refused (REJECTED), waiting for an operator.
    pub(crate) outbox_rejected: Gauge,
    /// Refusals by course-service of a book or release, by subject.
    pub(crate) outbox_rejections: Family<Kind, Counter>,
    /// Creates written, by the way they were written.
    pub(crate) creates_written: Family<WritePath, Counter>,
    /// The course-service breaker: 0 closed, 1 open, 2 half-open.
    pub(crate) breaker_state: Gauge,
    /// Replies larger than the connection's `max_payload`, answered with an error instead.
    pub(crate) replies_too_large: Counter,
    /// Requests answered "overloaded" because the queue's byte budget was full.
    pub(crate) requests_shed: Counter,
    /// Requests answered `SYS_002` because they passed `REQUEST_DEADLINE_MS`.
    pub(crate) requests_past_deadline: Counter,
    /// Creates refused `SYS_004` at once because the group-commit queue was full.
    pub(crate) create_queue_full: Counter,
    /// Queued creates dropped unwritten because their caller's deadline had passed.
    pub(crate) creates_abandoned: Counter,
    /// Writes whose commit's answer was lost, looked up to learn what happened.
    pub(crate) lost_commit_lookups: Counter,
    /// Requests answered "outcome unknown" (`details.outcome`).
    pub(crate) outcomes_unknown: Counter,
    /// Switches of booking events to core NATS (configured, or the server has no JetStream).
    pub(crate) events_to_core_nats: Counter,
    /// Booking events handed to the replica's own relay by the create that wrote them.
    pub(crate) outbox_handed: Counter,
    /// Messages the NATS client dropped because a subscription's buffer was full.
    pub(crate) nats_slow_consumer: Counter,
    /// Delivered outbox rows deleted by retention.
    pub(crate) pruned_outbox_rows: Counter,
    /// Expired idempotency keys deleted by retention.
    pub(crate) pruned_idempotency_keys: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            booking_created: Counter::default(),
            booking_cancelled: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            stale_fallbacks: Counter::default(),
            course_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            create_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            create_seconds: Histogram::new(exponential_buckets(0.000_125, 2.0, 16)),
            create_write_seconds: Histogram::new(exponential_buckets(0.000_125, 2.0, 16)),
            course_failures: Family::default(),
            nats_publish_failures: Counter::default(),
            malformed_messages: Counter::default(),
            outbox_backlog: Gauge::default(),
            outbox_oldest_pending_seconds: Gauge::default(),
            outbox_stuck: Gauge::default(),
            outbox_rejected: Gauge::default(),
            outbox_rejections: Family::default(),
            creates_written: Family::default(),
            breaker_state: Gauge::default(),
            replies_too_large: Counter::default(),
            requests_shed: Counter::default(),
            requests_past_deadline: Counter::default(),
            create_queue_full: Counter::default(),
            creates_abandoned: Counter::default(),
            lost_commit_lookups: Counter::default(),
            outcomes_unknown: Counter::default(),
            events_to_core_nats: Counter::default(),
            outbox_handed: Counter::default(),
            nats_slow_consumer: Counter::default(),
            pruned_outbox_rows: Counter::default(),
            pruned_idempotency_keys: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "booking_created",
            "Bookings created",
            m.booking_created.clone(),
        );
        registry.register(
            "booking_cancelled",
            "Bookings cancelled",
            m.booking_cancelled.clone(),
        );
        registry.register(
            "cache_hits",
            "Slot lookups served by a fresh cache row",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Slot lookups that asked course-service",
            m.cache_misses.clone(),
        );
        registry.register(
            "stale_fallbacks",
            "Bookings made on a stale cache row while course-service could not answer",
            m.stale_fallbacks.clone(),
        );
        registry.register(
            "course_service_latency_seconds",
            "Latency of course-service calls",
            m.course_latency.clone(),
        );
        registry.register(
            "create_batch_size",
            "booking.create requests committed per group-commit transaction",
            m.create_batch_size.clone(),
        );
        registry.register(
            "create_seconds",
            "Time a booking.create spends in this replica, from its message taken to its reply sent",
            m.create_seconds.clone(),
        );
        registry.register(
            "create_write_seconds",
            "Time a booking.create spends being written (group commit's queue included)",
            m.create_write_seconds.clone(),
        );
        registry.register(
            "course_service_failures",
            "Course-service call failures by kind",
            m.course_failures.clone(),
        );
        registry.register(
            "nats_publish_failures",
            "Failed attempts to deliver an outbox event",
            m.nats_publish_failures.clone(),
        );
        registry.register(
            "replies_too_large",
            "Replies over the connection's max_payload, answered with an error instead",
            m.replies_too_large.clone(),
        );
        registry.register(
            "requests_shed",
            "Requests answered overloaded because the queue's byte budget was full",
            m.requests_shed.clone(),
        );
        registry.register(
            "requests_past_deadline",
            "Requests answered SYS_002 because they passed REQUEST_DEADLINE_MS",
            m.requests_past_deadline.clone(),
        );
        registry.register(
            "create_queue_full",
            "Creates refused SYS_004 at once because the group-commit queue was full",
            m.create_queue_full.clone(),
        );
        registry.register(
            "creates_abandoned",
            "Queued creates dropped unwritten because their caller's deadline had passed",
            m.creates_abandoned.clone(),
        );
        registry.register(
            "lost_commit_lookups",
            "Writes whose commit's answer was lost, looked up to learn whether they committed",
            m.lost_commit_lookups.clone(),
        );
        registry.register(
            "outcomes_unknown",
            "Requests answered SYS_002 with details.outcome unknown",
            m.outcomes_unknown.clone(),
        );
        registry.register(
            "events_to_core_nats",
            "Switches of booking events to core NATS messages (configured, or the server has no JetStream)",
            m.events_to_core_nats.clone(),
        );
        registry.register(
            "outbox_rows_handed",
            "Booking events a create handed to its own relay, sent without a claim",
            m.outbox_handed.clone(),
        );
        registry.register(
            "nats_slow_consumer",
            "Messages the NATS client dropped because a subscription buffer was full",
            m.nats_slow_consumer.clone(),
        );
        registry.register(
            "pruned_outbox_rows",
            "Delivered outbox rows deleted by retention",
            m.pruned_outbox_rows.clone(),
        );
        registry.register(
            "pruned_idempotency_keys",
            "Expired idempotency keys deleted by retention",
            m.pruned_idempotency_keys.clone(),
        );
        registry.register(
            "malformed_messages",
            "Inbound messages that could not be decoded",
            m.malformed_messages.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet sent",
            m.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of the oldest unsent outbox row",
            m.outbox_oldest_pending_seconds.clone(),
        );
        registry.register(
            "outbox_stuck",
            "Outbox rows given up on",
            m.outbox_stuck.clone(),
        );
        registry.register(
            "outbox_rejected",
            "Outbox rows course-service refused, held for an operator (POST /outbox/redrive)",
            m.outbox_rejected.clone(),
        );
        registry.register(
            "creates_written",
            "Bookings written by booking.create, by path: lone (one statement), single (a batch in one statement), locking (a batch's locking transaction), alone (after a failed batch)",
            m.creates_written.clone(),
        );
        registry.register(
            "outbox_rejections",
            "Book/release messages course-service refused, by subject",
            m.outbox_rejections.clone(),
        );
        registry.register(
            "course_service_breaker_state",
            "Course-service circuit breaker: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        // Every kind exists from the start, at zero, so rates and alerts work before a failure.
        for kind in FAILURE_KINDS {
            m.course_failures
                .get_or_create(&Kind {
                    kind: kind.to_owned(),
                })
                .inc_by(0);
        }
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts `n` creates written by `path`.
    pub(crate) fn created_by(&self, path: &str, n: usize) {
        self.creates_written
            .get_or_create(&WritePath {
                path: path.to_owned(),
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts one refusal of `subject` by course-service.
    pub(crate) fn outbox_rejection(&self, subject: &str) {
        self.outbox_rejections
            .get_or_create(&Kind {
                kind: subject.to_owned(),
            })
            .inc();
    }

    /// Counts a course-service failure.
    pub(crate) fn course_failure(&self, kind: &str) {
        self.course_failures
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .inc();
    }
}
