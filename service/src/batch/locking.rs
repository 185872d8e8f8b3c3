//! The locking path: a batch's transaction locks its slots in id order (with their games, and a
//! booking id drawn for every create), checks its keys, allocates seats in arrival order in
//! memory, writes every row in one statement, updates each slot once and commits once
//! (`store::batch`). Each caller gets exactly what it would have got alone.

use std::collections::{HashMap, HashSet};

use super::rows::{add, reply};
use super::{charge, check_room, Conflict, Deps, Job, Outcome};
use crate::error::{Result, ServiceError, StepExt as _};
use crate::faults::{FaultPoint, PlantedBug};
use crate::store::batch::{self as sql, BatchWrite};
use crate::store::now;

/// The batch's transaction; one outcome per job, in order.
pub(super) async fn commit(deps: &Deps, jobs: &[Job]) -> Result<Vec<Outcome>> {
    let mut tx = crate::store::begin(&deps.pool)
        .await
        .step("starting a create batch")?;
    let mut slot_ids: Vec<i32> = jobs.iter().map(|j| j.slot.game_time_slot_id).collect();
    slot_ids.sort_unstable();
    slot_ids.dedup();
    let lock = !deps.faults.planted(PlantedBug::SkipRowLock);
    let (slots, ids) = sql::lock_slots(&mut tx, &slot_ids, lock, jobs.len()).await?;
    let keyed: Vec<(i32, String)> = jobs
        .iter()
        .filter_map(|j| Some((j.req.user_id, j.req.idempotency_key.clone()?)))
        .collect();
    let taken = if keyed.is_empty() {
        HashSet::new()
    } else {
        let (users, keys): (Vec<i32>, Vec<String>) = keyed.into_iter().unzip();
        sql::taken_keys(&mut tx, &users, &keys).await?
    };

    let at = now();
    let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    let mut write = BatchWrite::default();
    let mut counts: HashMap<i32, i32> = HashMap::new();
    let mut seen_keys = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let req = &job.req;
        // A key held by a committed booking, or by an earlier create of this batch that got its
        // seats, is replayed; a copy of a create that was refused tries for itself.
        let key = req
            .idempotency_key
            .as_ref()
            .map(|k| (req.user_id, k.clone()));
        if key
            .as_ref()
            .is_some_and(|k| taken.contains(k) || seen_keys.contains(k))
        {
            outcomes[i] = Some(Err(Conflict::Key));
            continue;
        }
        let Some(locked) = slots.get(&job.slot.game_time_slot_id) else {
            let id = job.slot.game_time_slot_id;
            outcomes[i] = Some(Err(ServiceError::NotFound(format!(
                "Game time slot {id} not found"
            ))
            .into()));
            continue;
        };
        if locked.last_sync_at != job.slot.last_sync_at {
            outcomes[i] = Some(Err(Conflict::Stale));
            continue;
        }
        let Some(&booking_id) = ids.get(i) else {
            outcomes[i] = Some(Err(Conflict::Alone));
            continue;
        };
        let booked = counts
            .entry(locked.game_time_slot_id)
            .or_insert(locked.booked_players);
        // The planted defect checks every item against the count read under the lock, so two
        // items of one batch can both take the last seat.
        let seen = if deps.faults.planted(PlantedBug::BatchSharesSeats) {
            locked.booked_players
        } else {
            *booked
        };
        if let Err(e) = check_room(&locked.status, locked.max_players - seen, req.player_count)
            .and_then(|()| charge(locked.price, req.player_count, "playerCount"))
        {
            outcomes[i] = Some(Err(e.into()));
            continue;
        }
        *booked += req.player_count;
        seen_keys.extend(key);
        add(&mut write, job, locked, booking_id, deps, at);
    }
    write.slots = counts.into_iter().collect();
    write.slots.sort_unstable();

    if write.bookings.is_empty() {
        tx.commit().await.step("ending an empty create batch")?;
        return Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(Conflict::Alone)))
            .collect());
    }
    let written = sql::write(&mut tx, &write, at, deps.key_ttl).await?;
    if written.keys_stored < write.keys.len() {
        // A live key of the same name committed meanwhile: roll back; alone, each create learns
        // whether it was its own.
        tx.rollback().await.step("rolling back a create batch")?;
        return Ok(jobs.iter().map(|_| Err(Conflict::Alone)).collect());
    }
    if let Err(e) = tx.commit().await.step("committing a create batch") {
        if !e.may_have_committed() || deps.faults.planted(PlantedBug::RerunLostCommit) {
            return Err(e);
        }

        let mut found = super::settle::lost(deps, &slot_ids, &write, &e, true)
            .await
            .into_iter();
        return Ok(outcomes
            .into_iter()
            .map(|o| {
                o.or_else(|| found.next().flatten())
                    .unwrap_or(Err(Conflict::Alone))
            })
            .collect());
    }
    // Its booking events are written due: the events loop claims them.
    deps.relay_wake.event_rows_written();
    deps.metrics.created_by("locking", write.bookings.len());
    deps.faults.crash_at(FaultPoint::AfterCommit);

    let mut written_rows = write
        .bookings
        .into_iter()
        .zip(write.payment_methods)
        .zip(write.details);
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        if outcome.is_some() {
            continue;
        }
        let Some(((booking, method), details)) = written_rows.next() else {
            *outcome = Some(Err(Conflict::Alone));
            continue;
        };
        let Some(&(payment_id, history_id)) = written.payment_and_history.get(&booking.id) else {
            tracing::error!(
                item = i,
                booking = booking.id,
                "a batch booking came back without its payment"
            );
            *outcome = Some(Err(Conflict::Alone));
            continue;
        };
        *outcome = Some(reply(
            booking,
            method,
            details,
            (payment_id, history_id),
            at,
        ));
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(Conflict::Alone)))
        .collect())
}
