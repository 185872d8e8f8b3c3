//! Group commit for `booking.create`: creates that arrive together become one transaction per
//! replica, so a commit and its round trips are paid once per batch instead of once per booking.
//!
//! Creates queue here after their slot is resolved. `CREATE_BATCH_WORKERS` workers each wait for
//! a queued create and a commit permit, then take what is queued (up to `CREATE_BATCH_MAX`,
//! waiting at most `CREATE_BATCH_WAIT_US` for more). A batch is written by one of three paths:
//! - `lone`: a batch of one, unkeyed, in one statement (a create that finds nothing committing
//!   is written that way by its own handler, skipping the queue);
//! - `single`: a larger batch's unkeyed creates whose slots have room for all of them, in one
//!   statement that is its own transaction;
//! - `locking`: the rest: lock the touched slots in id order, allocate seats in arrival order in
//!   memory, write every row with multi-row statements, update each slot once, commit once.
//!
//! Each caller then gets exactly what it would have got alone: its booking, `BUS_004` when the
//! seats ran out before its turn, or [`Conflict::Key`] when its key is taken. One refused item
//! never fails the others; a database error fails the batch, and each item is then answered
//! [`Conflict::Alone`] so that its handler runs it alone. `creates_written{path}` counts the
//! creates each path wrote.

use std::sync::Arc;
use std::time::Duration;

use contracts::booking::{BookingResponse, CreateBookingRequest};
use contracts::course::SlotStatus;
use contracts::money::{Charge, MAX_WON};
use contracts::Won;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedSemaphorePermit, Semaphore};

use crate::error::{Result, ServiceError};
use crate::faults::{Faults, PlantedBug};
use crate::metrics::Metrics;
use crate::store::SlotRow;

mod locking;
mod lone;
mod rows;
mod settle;
mod single;

use rows::add;

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
    /// Its request's ticket: the worker takes it before writing, and drops the job when the
    /// request's deadline has already abandoned it.
    ticket: Arc<crate::ticket::Ticket>,
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
    /// The hand-over of booking events to this replica's relay.
    pub(crate) handoff: Arc<crate::handoff::Handoff>,
    /// The replica's relay, woken for booking events written due (not handed over).
    pub(crate) relay_wake: Arc<crate::wake::RelayWake>,
    /// Longest a worker waits for one batch's transaction (and a look-up after a lost commit)
    /// before it gives up; its callers then hear "outcome unknown".
    pub(crate) batch_timeout: Duration,
}

/// The replica's create queue.
#[derive(Clone)]
pub(crate) struct Batches {
    queue: mpsc::Sender<Job>,
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
    /// The hand-over of the one-statement creates' booking events to the relay.
    pub(crate) fn handoff(&self) -> Arc<crate::handoff::Handoff> {
        self.deps.handoff.clone()
    }

    /// Starts `workers` batch workers behind a queue of at most `queue_max` creates; they stop
    /// once every handle is dropped and the queue is empty.
    pub(crate) fn start(deps: Deps, workers: usize, queue_max: usize) -> Self {
        let (queue, rx) = mpsc::channel(queue_max.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let deps = Arc::new(deps);
        let committing = Arc::new(Semaphore::new(workers.max(1)));
        for _ in 0..workers.max(1) {
            let (rx, deps, committing) = (rx.clone(), deps.clone(), committing.clone());
            tokio::spawn(async move {
                while let Some((jobs, _permit)) =
                    next_batch(&rx, &committing, deps.max, deps.wait).await
                {
                    // A worker stuck on a dead connection would stop the replica's creates: past
                    // the bound its jobs are dropped, and their handlers answer "unknown".
                    if tokio::time::timeout(deps.batch_timeout, run(&deps, jobs))
                        .await
                        .is_err()
                    {
                        tracing::error!(
                            after = ?deps.batch_timeout,
                            "a create batch did not finish; its callers hear the outcome is unknown"
                        );
                    }
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
        let ticket = crate::ticket::Ticket::current();
        let mut job = Job {
            ticket: ticket.clone(),
            req: req.clone(),
            slot: slot.clone(),
            fingerprint: fingerprint.to_owned(),
            lone_tried: false,
            reply,
        };
        // A batch of one, found with nothing committing, is written by its own handler: the
        // hand-over to a worker and back costs two task wake-ups, a tenth of a lone create's
        // latency. While a batch commits, a create joins the next batch instead: a lone
        // statement costs the database about twice a batched create (0.34 ms against 0.18 ms
        // per create of a one-statement batch at 16 clients), and a commit's wake-ups besides. With CREATE_BATCH_WAIT_US set, every
        // create queues: waiting for company is what that knob asks for.
        let idle = self.committing.available_permits() == self.workers;
        if self.deps.wait.is_zero() && idle && lone::fits(&self.deps, &job) {
            if let Ok(permit) = self.committing.try_acquire() {
                // The handler runs on its request's task: its deadline cannot have passed.
                ticket.start_write();
                self.deps.metrics.create_batch_size.observe(1.0);
                let written = lone::write(&self.deps, &job).await;
                drop(permit);
                if let Some(outcome) = written {
                    return outcome;
                }
                // The statement answered that it wrote nothing: nothing of this create is on
                // the wire until a worker takes it.
                ticket.reopen();
                job.lone_tried = true;
            }
        }
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.deps.metrics.create_queue_full.inc();
                return Err(Conflict::Service(ServiceError::Overloaded));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Conflict::Alone),
        }
        // A job dropped before its write started (the workers stopped) may run alone; one
        // dropped after (its batch overran) may have committed.
        outcome.await.unwrap_or_else(|_| {
            Err(if ticket.is_writing() {
                Conflict::Service(ServiceError::OutcomeUnknown {
                    step: "a create batch",
                    why: "its worker gave up on the transaction".into(),
                })
            } else {
                Conflict::Alone
            })
        })
    }
}

/// Waits for one queued create and a commit permit, then takes up to `max` in all, waiting at most
/// `wait` for more. The batch is cut only once the permit is held: everything that queued while
/// every permit was busy goes into it, instead of waiting out another commit in a batch cut
/// earlier.
async fn next_batch<T>(
    rx: &Mutex<mpsc::Receiver<T>>,
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

/// Commits one batch and answers every caller: a lone create in its own statement, the creates
/// of a larger batch that may go in one statement together (`single`), then the rest (and those
/// the statement did not write) on the locking path.
async fn run(deps: &Deps, jobs: Vec<Job>) {
    // A create whose caller's deadline passed while it queued was answered "not applied": it is
    // dropped here, before anything of it is written, which keeps that answer true.
    let queued = jobs.len();
    let jobs: Vec<Job> = jobs
        .into_iter()
        .filter(|job| {
            deps.faults.planted(PlantedBug::WriteAbandoned)
                || (!job.reply.is_closed() && job.ticket.start_write())
        })
        .collect();
    deps.metrics
        .creates_abandoned
        .inc_by((queued - jobs.len()) as u64);
    if jobs.is_empty() {
        return;
    }
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
    let picked = if jobs.len() > 1 {
        single::pick(deps, &jobs)
    } else {
        vec![false]
    };
    let fast: Vec<&Job> = jobs
        .iter()
        .zip(&picked)
        .filter_map(|(job, &p)| p.then_some(job))
        .collect();
    let mut written = if fast.is_empty() {
        Vec::new()
    } else {
        single::write(deps, &fast).await
    }
    .into_iter();
    let mut rest = Vec::new();
    for (job, fast) in jobs.into_iter().zip(picked) {
        match fast.then(|| written.next()).flatten().flatten() {
            Some(outcome) => {
                let _ = job.reply.send(outcome);
            }
            None => rest.push(job),
        }
    }
    if rest.is_empty() {
        return;
    }
    let outcomes = match locking::commit(deps, &rest).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(items = rest.len(), error = %e, "a create batch failed; each create runs alone");
            rest.iter().map(|_| Err(Conflict::Alone)).collect()
        }
    };
    for (job, outcome) in rest.into_iter().zip(outcomes) {
        let _ = job.reply.send(outcome);
    }
}

/// The charge for `players` at `price` won each, or `BUS_001` naming `field` when its total would
/// not fit the money columns (`DECIMAL(10,2)`): refused before any write, never a database error.
pub(crate) fn charge(price: i64, players: i32, field: &str) -> Result<Charge> {
    Charge::checked(Won(price), players).ok_or_else(|| {
        ServiceError::field(
            field,
            format!(
                "the booking's total price would exceed {MAX_WON} won, the most a payment holds"
            ),
        )
    })
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

#[cfg(test)]
mod tests;
