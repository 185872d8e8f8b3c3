//! Fault injection, for chaos runs and for proving the simulator's checker: the points where a
//! process may abort (`FAULT_POINT`, `FAULT_AFTER`) and the known defects that can be planted back
//! (`PLANTED_BUG`). The configuration reads the settings; the hit counter belongs to one process's
//! [`Faults`], so clones of a configuration never share it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a chaos run may crash the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Right after a booking transaction commits, before the reply.
    AfterCommit,
    /// Right after an event is delivered, before its outbox row is marked sent.
    BeforeMarkSent,
}

/// A defect the simulator must catch (`PLANTED_BUG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// Read the slot without `FOR UPDATE` before the capacity check.
    SkipRowLock,
    /// Leave the `gameTimeSlots.book` row out of the outbox.
    DropOutbox,
    /// Mark a book/release that course-service refused as SENT, as the relay once did.
    AcceptRefusals,
    /// Refuse a keyed create (slot full) without checking whether its key already made a booking.
    RefuseKeyedRetry,
    /// Check each create of a batch against the slot's count before the batch, so two creates of
    /// one batch can both take the last seat.
    BatchSharesSeats,
    /// Connect to the first NATS server given and to no other, so losing that node leaves the
    /// replica deaf until it returns.
    OneNatsServer,
    /// Run a create whose batch failed with its commit's answer lost alone again, without
    /// looking whether it committed (duplicates, and "not applied" answers behind bookings).
    RerunLostCommit,
    /// Write a queued create even when its caller's deadline passed and it was answered "not
    /// applied" while it queued.
    WriteAbandoned,
    /// Take a JetStream that does not answer (no quorum, a 503) for a server without JetStream
    /// and send booking events as core NATS messages, marked sent with nothing storing them.
    JetstreamFallback,
    /// Leave the breaker half-open for good when its probe is dropped (the request's deadline
    /// dropped the handler mid-call) instead of counting the probe as failed.
    ProbeLeak,
}

/// One process's faults.
#[derive(Debug)]
pub(crate) struct Faults {
    point: Option<FaultPoint>,
    after: u64,
    planted: Option<PlantedBug>,
    /// How often `point` has been reached in this process.
    hits: AtomicU64,
}

impl Faults {
    /// Aborts at `point` on its `after`th pass; plants `planted`.
    pub(crate) fn new(point: Option<FaultPoint>, after: u64, planted: Option<PlantedBug>) -> Self {
        Self {
            point,
            after,
            planted,
            hits: AtomicU64::new(0),
        }
    }

    /// Whether `bug` was planted.
    pub(crate) fn planted(&self, bug: PlantedBug) -> bool {
        self.planted == Some(bug)
    }

    /// Aborts the process (like `kill -9`: no destructors, no flush) when `point` is the configured
    /// fault point and this is its `FAULT_AFTER`th hit.
    pub(crate) fn crash_at(&self, point: FaultPoint) {
        self.crash_at_passes(point, 1);
    }

    /// [`Self::crash_at`] for a step that does `passes` items' work at once (the relay marks every
    /// row that settled together SENT in one statement): each item counts as a pass, so
    /// `FAULT_AFTER` means the same however the items are grouped.
    pub(crate) fn crash_at_passes(&self, point: FaultPoint, passes: u64) {
        if self.point != Some(point) || passes == 0 {
            return;
        }
        let hits = self.hits.fetch_add(passes, Ordering::SeqCst) + passes;
        if hits >= self.after {
            tracing::error!(?point, hits, "FAULT_POINT reached: aborting the process");
            std::process::abort();
        }
    }
}
