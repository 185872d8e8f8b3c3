//! A batch of one: an unkeyed create that finds the queue empty is written by one statement that
//! is its own transaction (`store::batch::write_lone`), so a lone booking costs one round trip
//! and one commit. When that statement writes nothing (the slot filled up, closed, was repriced
//! or rewritten by course-service since it was read), the create goes through the locking path,
//! which says exactly why.

use std::time::Duration;

use super::rows::{hand_over, reply_written};
use super::{add, Conflict, Deps, Job, Outcome};
use crate::faults::{FaultPoint, PlantedBug};
use crate::store::batch::{self as sql, BatchSlot, BatchWrite};
use crate::store::{now, SlotRow};

/// Whether `job` may take the one-statement path: it has no idempotency key (a taken key must
/// roll the whole create back, which needs a transaction of several statements), and no planted
/// bug asks for the unlocked path.
pub(super) fn fits(deps: &Deps, job: &Job) -> bool {
    job.req.idempotency_key.is_none() && !deps.faults.planted(PlantedBug::SkipRowLock)
}

/// The slot as a create read it, before any lock: what the one-statement paths require still
/// holds (its courses come from the statement).
pub(super) fn as_read(slot: &SlotRow) -> BatchSlot {
    BatchSlot {
        game_time_slot_id: slot.game_time_slot_id,
        max_players: slot.max_players,
        booked_players: slot.booked_players,
        status: slot.status.clone(),
        price: slot.price,
        front_nine_course_id: None,
        back_nine_course_id: None,
        last_sync_at: slot.last_sync_at,
        ids: Vec::new(),
    }
}

/// Writes `job` in one statement; `None` when nothing was written.
pub(super) async fn write(deps: &Deps, job: &Job) -> Option<Outcome> {
    let at = now();
    let slot = &job.slot;
    let mut rows = BatchWrite::default();
    // The booking id is the sequence's: 0 stands in until the statement stamps it.
    add(&mut rows, job, &as_read(slot), 0, deps, at);
    let held = deps.handoff.reserve(1);
    let lease = held.as_ref().map_or(Duration::ZERO, |h| h.lease());
    match sql::write_lone(&deps.pool, &rows, at, slot.last_sync_at, lease).await {
        Err(e) if e.may_have_committed() && !deps.faults.planted(PlantedBug::RerunLostCommit) => {
            let found =
                super::settle::lost(deps, &[slot.game_time_slot_id], &rows, &e, false).await;
            found.into_iter().next().flatten()
        }
        Err(e) => {
            tracing::warn!(error = %e, "a lone create failed; it runs again on the locking path");
            Some(Err(Conflict::Alone))
        }
        Ok(None) => None,
        Ok(Some(written)) => {
            deps.metrics.created_by("lone", 1);
            deps.faults.crash_at(FaultPoint::AfterCommit);
            hand_over(deps, held, &rows, std::slice::from_ref(&written));
            let (Some(booking), Some(method), Some(details)) = (
                rows.bookings.pop(),
                rows.payment_methods.pop(),
                rows.details.pop(),
            ) else {
                return Some(Err(Conflict::Alone));
            };
            Some(reply_written(booking, method, details, &written, at))
        }
    }
}
