//! A create batch whose commit's answer was lost: each create is looked up by the booking number
//! it was given before the write (`crate::settle`) and answered what happened. Written: its
//! booking, read back. Not found out: "outcome unknown". Not written: after a transaction that
//! held its slots' locks until its `COMMIT` (the locking path), that is conclusive and the create
//! may run again (`Alone`); after a one-statement write it is not (the statement may still be
//! on its way to the server, holding no lock yet), so the answer is "outcome unknown".

use super::{Conflict, Deps, Outcome};
use crate::error::ServiceError;
use crate::store::batch::BatchWrite;

/// One outcome per booking of `rows` (on `slots`, in order), after `error` left their commit in
/// doubt; every element is `Some` (the paths' own shape).
pub(super) async fn lost(
    deps: &Deps,
    slots: &[i32],
    rows: &BatchWrite,
    error: &ServiceError,
    held_locks: bool,
) -> Vec<Option<Outcome>> {
    let numbers: Vec<String> = rows
        .bookings
        .iter()
        .map(|b| b.booking_number.clone())
        .collect();
    let numbers = numbers.as_slice();
    deps.metrics.lost_commit_lookups.inc();
    tracing::warn!(items = numbers.len(), %error,
        "a create batch's commit may have happened without its answer; looking its bookings up");
    let found = match crate::settle::bookings(&deps.pool, slots, numbers).await {
        Ok(found) => found,
        Err(why) => {
            tracing::error!(items = numbers.len(), %why, "a lost commit could not be looked up");
            return numbers
                .iter()
                .map(|_| {
                    Some(Err(Conflict::Service(ServiceError::OutcomeUnknown {
                        step: "the booking",
                        why: why.clone(),
                    })))
                })
                .collect();
        }
    };
    let mut outcomes = Vec::with_capacity(numbers.len());
    for number in numbers {
        outcomes.push(Some(match found.get(number) {
            Some(&id) => crate::settle::read_back(&deps.pool, id, "the booking")
                .await
                .map_err(Conflict::Service),
            None if held_locks => Err(Conflict::Alone),
            None => Err(Conflict::Service(ServiceError::OutcomeUnknown {
                step: "the booking",
                why: "its statement's answer was lost and it is not written yet".into(),
            })),
        }));
    }
    let written = found.len();
    tracing::info!(
        written,
        not_written = numbers.len() - written,
        "a lost commit was looked up"
    );
    outcomes
}
