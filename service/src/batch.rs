//! Group commit for `booking.create`: creates that arrive together become one transaction per
//! replica, so the commit (the fsync) is paid once per batch instead of once per booking.
//!
//! Creates queue here after their slot is resolved. `CREATE_BATCH_WORKERS` workers each take
//! what is queued (up to `CREATE_BATCH_MAX`, waiting at most `CREATE_BATCH_WAIT_US` for more; a
//! lone create finds an idle worker and goes straight through, unkeyed in a single statement:
//! `lone`), lock the touched slots in id order,
//! allocate seats in arrival order in memory, write every row with multi-row statements, update
//! each slot once and commit once (`store::batch`). Each caller then gets exactly what it would
//! have got alone: its booking, `BUS_004` when the seats ran out before its turn, or
//! [`Conflict::Key`] when its key is taken. One refused item never fails the others; a database
//! error fails the batch, and each item is then answered [`Conflict::Alone`] so that its handler
//! runs it alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use contracts::booking::{BookingResponse, CreateBookingRequest};
use contracts::course::SlotStatus;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedSemaphorePermit, Semaphore};

use crate::error::{Result, ServiceError, StepExt as _};
use crate::faults::{FaultPoint, Faults, PlantedBug};
use crate::metrics::Metrics;
use crate::store::batch::{self as sql, BatchWrite};
use crate::store::{now, SlotRow};

mod lone;
mod rows;

use rows::{add, reply};

/// Payment method recorded when the request names none (the column is NOT NULL).
pub(crate) const DEFAULT_PAYMENT_METHOD: &str = "unspecified";

/// Why a create was not written.
#[derive(Debug)]
pub(crate) enum Conflict {
    /// Its idempotency key is already taken (by a committed booking, or an earlier item of its
    /// batch): the caller replays the key.
    Key,
    /// Refused or failed, as it would have been alone.
    Service(ServiceError),
    /// Its batch failed as a whole: run it alone.
    Alone,
    /// Course-service's fields of its slot were rewritten after the row it carries was read
    /// (`last_sync_at` differs under the lock): read the slot again and start over, so no
    /// booking is written with names or times the slot no longer has.
    Stale,
}

impl<E: Into<ServiceError>> From<E> for Conflict {
    fn from(e: E) -> Self {
        Conflict::Service(e.into())
    }
}

/// A create's result.
pub(crate) type Outcome = std::result::Result<BookingResponse, Conflict>;

/// One queued create.
struct Job {
    req: CreateBookingRequest,
    slot: SlotRow,
    fingerprint: String,
    /// Its handler already tried the one-statement path, which wrote nothing.
    lone_tried: bool,
    reply: oneshot::Sender<Outcome>,
}

/// What the workers work with.
pub(crate) struct Deps {
    /// The database.
    pub(crate) pool: sqlx::PgPool,
    /// Fault points and planted bugs of this process.
    pub(crate) faults: Arc<Faults>,
    /// Batch sizes.
    pub(crate) metrics: Arc<Metrics>,
    /// Most creates in one transaction.
    pub(crate) max: usize,
    /// Longest wait for more creates once one is queued.
    pub(crate) wait: Duration,
    /// How long a stored idempotency key lives.
    pub(crate) key_ttl: Duration,
}

/// The replica's create queue.
#[derive(Clone)]
pub(crate) struct Batches {
    queue: mpsc::UnboundedSender<Job>,
    /// One permit per worker: held while a batch commits, so at most `workers` creates'
    /// transactions run at once, whoever runs them.
    committing: Arc<Semaphore>,
    /// How many permits `committing` has.
    workers: usize,
    deps: Arc<Deps>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("idle_workers", &self.committing.available_permits())
            .finish_non_exhaustive()
    }
}

impl Batches {
    /// Starts `workers` batch workers; they stop once every handle is dropped and the queue is
    /// empty.
    pub(crate) fn start(deps: Deps, workers: usize) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let deps = Arc::new(deps);
        let committing = Arc::new(Semaphore::new(workers.max(1)));
        for _ in 0..workers.max(1) {
            let (rx, deps, committing) = (rx.clone(), deps.clone(), committing.clone());
            tokio::spawn(async move {
                while let Some((jobs, _permit)) =
                    next_batch(&rx, &committing, deps.max, deps.wait).await
                {
                    run(&deps, jobs).await;
                }
            });
        }
        Self {
            queue,
            committing,
            workers: workers.max(1),
            deps,
        }
    }

    /// Queues a create whose slot is resolved and waits for its outcome.
    pub(crate) async fn submit(
        &self,
        req: &CreateBookingRequest,
        slot: &SlotRow,
        fingerprint: &str,
    ) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let mut job = Job {
            req: req.clone(),
            slot: slot.clone(),
            fingerprint: fingerprint.to_owned(),
            lone_tried: false,
            reply,
        };
        // A batch of one, found with nothing committing, is written by its own handler: the
        // hand-over to a worker and back costs two task wake-ups, a tenth of a lone create's
        // latency. While a batch commits, a create joins the next batch instead: a lone
        // statement costs the database three times a batched create (0.33 ms against 0.12 ms at
        // 16 clients), and a commit's wake-ups besides.
        if lone::fits(&self.deps, &job) && self.committing.available_permits() == self.workers {
            if let Ok(permit) = self.committing.try_acquire() {
                self.deps.metrics.create_batch_size.observe(1.0);
                let written = lone::write(&self.deps, &job).await;
                drop(permit);
                if let Some(outcome) = written {
                    return outcome;
                }
                job.lone_tried = true;
            }
        }
        if self.queue.send(job).is_err() {
            return Err(Conflict::Alone);
        }
        outcome.await.unwrap_or(Err(Conflict::Alone))
    }
}

/// Waits for one queued create and a commit permit, then takes up to `max` in all, waiting at most
/// `wait` for more. The batch is cut only once the permit is held: everything that queued while
/// every permit was busy goes into it, instead of waiting out another commit in a batch cut
/// earlier.
async fn next_batch<T>(
    rx: &Mutex<mpsc::UnboundedReceiver<T>>,
    committing: &Arc<Semaphore>,
    max: usize,
    wait: Duration,
) -> Option<(Vec<T>, OwnedSemaphorePermit)> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let permit = committing.clone().acquire_owned().await.ok()?;
    let mut jobs = vec![first];
    let deadline = tokio::time::Instant::now() + wait;
    while jobs.len() < max.max(1) {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) if wait.is_zero() => break,
            Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                _ => break,
            },
        }
    }
    Some((jobs, permit))
}

/// Commits one batch and answers every caller.
async fn run(deps: &Deps, jobs: Vec<Job>) {
    deps.metrics.create_batch_size.observe(jobs.len() as f64);
    if let [job] = jobs.as_slice() {
        if !job.lone_tried && lone::fits(deps, job) {
            if let Some(outcome) = lone::write(deps, job).await {
                if let Some(job) = jobs.into_iter().next() {
                    let _ = job.reply.send(outcome);
                }
                return;
            }
        }
    }
    let outcomes = match commit(deps, &jobs).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(items = jobs.len(), error = %e, "a create batch failed; each create runs alone");
            jobs.iter().map(|_| Err(Conflict::Alone)).collect()
        }
    };
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        let _ = job.reply.send(outcome);
    }
}

/// `BUS_004` when the slot is closed or has fewer than `requested` seats left.
pub(crate) fn check_room(status: &str, available: i32, requested: i32) -> Result<()> {
    if status == SlotStatus::Closed.as_str() {
        return Err(ServiceError::Rule(
            "Selected time slot is not available".into(),
        ));
    }
    if available < requested {
        return Err(ServiceError::Rule(format!(
            "Selected time slot is no longer available: {available} seats left, {requested} requested"
        )));
    }
    Ok(())
}

/// The batch's transaction; one outcome per job, in order.
async fn commit(deps: &Deps, jobs: &[Job]) -> Result<Vec<Outcome>> {
    let mut tx = deps.pool.begin().await.step("starting a create batch")?;
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
        if let Err(e) = check_room(&locked.status, locked.max_players - seen, req.player_count) {
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
    tx.commit().await.step("committing a create batch")?;
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

#[cfg(test)]
mod tests;
