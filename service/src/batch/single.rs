//! The one-statement path for a batch: its unkeyed creates are written by a single statement that
//! is its own transaction (`store::single`), one round trip and one commit for them all. A slot's
//! creates take this path together or not at all: when one of them has a key (a taken key must
//! roll its create back, which needs a transaction of several statements) or read a different
//! copy of the slot, all of them go through the locking path, so that path still hands out the
//! slot's seats in arrival order. Creates the statement does not write (their slot has no room
//! for all of them, closed, was repriced or rewritten by course-service since it was read) go
//! through the locking path too, which allocates what is left in arrival order and says exactly
//! why the others were refused.

use std::collections::HashSet;
use std::time::Duration;

use super::rows::{hand_over, reply_written};
use super::{add, lone, Conflict, Deps, Job, Outcome};
use crate::faults::{FaultPoint, PlantedBug};
use crate::store::batch::BatchWrite;
use crate::store::now;
use crate::store::single::{self as sql, Expected};

/// Which of `jobs` take the one-statement path: those that may (no key, see [`lone::fits`]), on
/// slots whose every create of the batch may and read the same copy of the slot.
pub(super) fn pick(deps: &Deps, jobs: &[Job]) -> Vec<bool> {
    let mut locking = HashSet::new();
    let mut first: Vec<&Job> = Vec::new();
    for job in jobs {
        let slot = &job.slot;
        let seen = first
            .iter()
            .find(|other| other.slot.game_time_slot_id == slot.game_time_slot_id);
        let differs = seen.is_some_and(|seen| {
            seen.slot.price != slot.price || seen.slot.last_sync_at != slot.last_sync_at
        });
        if !lone::fits(deps, job) || job.lone_tried || differs {
            locking.insert(slot.game_time_slot_id);
        }
        if seen.is_none() {
            first.push(job);
        }
    }
    jobs.iter()
        .map(|j| !locking.contains(&j.slot.game_time_slot_id))
        .collect()
}

/// Writes `jobs` in one statement: per job, its outcome, or `None` when it was not written (the
/// locking path is next). A database error answers every job [`Conflict::Alone`].
pub(super) async fn write(deps: &Deps, jobs: &[&Job]) -> Vec<Option<Outcome>> {
    let at = now();
    let mut slots: Vec<Expected> = Vec::new();
    let mut rows = BatchWrite::default();
    for (item, job) in jobs.iter().enumerate() {
        let slot = &job.slot;
        match slots
            .iter_mut()
            .find(|s| s.slot_id == slot.game_time_slot_id)
        {
            Some(expected) => {
                expected.seats = expected.seats.saturating_add(job.req.player_count);
            }
            None => slots.push(Expected {
                slot_id: slot.game_time_slot_id,
                seats: job.req.player_count,
                price: slot.price,
                last_sync_at: slot.last_sync_at,
            }),
        }
        // The booking's id is its place in the batch until the statement stamps the sequence's.
        let id = i32::try_from(item).unwrap_or(i32::MAX);
        add(&mut rows, job, &lone::as_read(slot), id, deps, at);
    }
    let held = deps.handoff.reserve(jobs.len());
    let lease = held.as_ref().map_or(Duration::ZERO, |h| h.lease());
    let written = match sql::write(&deps.pool, &rows, &slots, at, lease).await {
        Ok(written) => written,
        Err(e) if e.may_have_committed() && !deps.faults.planted(PlantedBug::RerunLostCommit) => {
            // Each create is answered what the look-up found (never run again: a statement not
            // found may still be on its way).
            let ids: Vec<i32> = slots.iter().map(|s| s.slot_id).collect();
            return super::settle::lost(deps, &ids, &rows, &e, false)
                .await
                .into_iter()
                .collect();
        }
        Err(e) => {
            tracing::warn!(items = jobs.len(), error = %e, "a one-statement create batch failed; each create runs alone");
            return jobs.iter().map(|_| Some(Err(Conflict::Alone))).collect();
        }
    };
    if !written.is_empty() {
        deps.metrics.created_by("single", written.len());
        deps.faults.crash_at(FaultPoint::AfterCommit);
    }
    hand_over(deps, held, &rows, &written);
    let mut made: Vec<_> = rows
        .bookings
        .into_iter()
        .zip(rows.payment_methods)
        .zip(rows.details)
        .map(Some)
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    for w in written {
        let item = usize::try_from(w.item).unwrap_or(usize::MAX);
        let (Some(((booking, method), details)), Some(outcome)) = (
            made.get_mut(item).and_then(Option::take),
            outcomes.get_mut(item),
        ) else {
            tracing::error!(
                item,
                booking = w.id,
                "a one-statement batch wrote an item it was not given"
            );
            continue;
        };
        *outcome = Some(reply_written(booking, method, details, &w, at));
    }
    outcomes
}
