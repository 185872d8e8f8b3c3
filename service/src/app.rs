//! The state every handler shares.

use contracts::Codec;
use sqlx::PgPool;

use std::sync::Arc;

use crate::batch::Batches;
use crate::cache::{ReadThrough, SlotCopies, SlotFetches};
use crate::config::Config;
use crate::course::CourseClient;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::replies::ReplyBudget;
use crate::wake::RelayWake;

/// Shared by the NATS server, the handlers and the outbox relay.
#[derive(Debug)]
pub(crate) struct App {
    /// The configuration.
    pub(crate) config: Config,
    /// PostgreSQL.
    pub(crate) pool: PgPool,
    /// PostgreSQL for the outbox relay's own records, committed without waiting for the flush.
    pub(crate) relay_pool: PgPool,
    /// NATS.
    pub(crate) nats: async_nats::Client,
    /// Course-service calls.
    pub(crate) course: CourseClient,
    /// Slots being fetched from course-service (one fetch per slot at a time).
    pub(crate) slot_fetches: SlotFetches,
    /// Copies of slot rows for creates, and their coalesced reads.
    pub(crate) slot_copies: SlotCopies,
    /// Inbound message decoding.
    pub(crate) codec: Codec,
    /// Counters, gauges and histograms.
    pub(crate) metrics: Arc<Metrics>,
    /// Fault points and planted bugs of this process.
    pub(crate) faults: Arc<Faults>,
    /// The group-commit queue of `booking.create`.
    pub(crate) batches: Batches,
    /// Wakes this replica's outbox relay after its own writes.
    pub(crate) relay_wake: Arc<RelayWake>,
    /// The byte budget of replies being built or sent.
    pub(crate) replies: ReplyBudget,
}

impl App {
    /// The slot cache's read-through lookup, on this service's pool, course client and metrics.
    pub(crate) fn slot_cache(&self) -> ReadThrough<'_> {
        ReadThrough {
            pool: &self.pool,
            course: &self.course,
            fetches: &self.slot_fetches,
            copies: &self.slot_copies,
            metrics: &self.metrics,
            ttl: self.config.cache_ttl,
        }
    }
}
