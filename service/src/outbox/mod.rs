//! The transactional outbox (seed §5.2, §10.2): events are rows written in the same transaction as
//! the booking change, and a relay delivers them after commit.
//!
//! Two relay loops run side by side, one per channel, so a slow course-service never holds up
//! booking events: `course` sends `gameTimeSlots.book`/`release` as NestJS requests, `events` sends
//! `booking.confirmed`/`booking.cancelled` to JetStream (or, where the server has no JetStream, as
//! core NATS messages: detected at start and checked again every few seconds and after a failure).
//! Each loop wakes after its own replica's writes (`wake`), on `LISTEN outbox_events` (anything
//! else, e.g. an operator's re-drive, wakes every replica that way) and polls as a back-up; it
//! reads the rows that may go next and leases them by pushing `next_attempt_at` forward in an
//! `UPDATE` that re-checks each row under its lock (one statement), so replicas never hold the
//! same row and a crashed relay's rows come back when the lease runs out. Up to `OUTBOX_BATCH` rows are in flight per loop; rows are
//! recorded as they settle (those that settled together in one statement), so one slow answer
//! delays only its own lane.
//!
//! Order: a row waits while an earlier row of its lane is PENDING (the lane is the slot for
//! course-service messages, whose count must see the slot's changes in commit order, and the booking
//! for booking events), and while an earlier row of its booking on its channel is not SENT in any
//! state, so a booking's `release` never overtakes its `book`, even a refused one. A row held behind
//! a refused row of its own booking does not hold up its lane: other bookings' rows go on.
//!
//! Outcomes: delivered rows are SENT; a `success:false` answer from course-service is a refusal,
//! not a delivery: the row becomes REJECTED with the peer's answer, is logged once at ERROR and
//! counted (`outbox_rejections`, `outbox_rejected`), and waits for an operator (`POST
//! /outbox/redrive`). Booking-service stays the system of record: it does not cancel a customer's
//! booking because course-service's derived count disagrees. Failures are retried with capped
//! backoff forever; after `OUTBOX_MAX_ATTEMPTS` a row is logged as stuck and shown by
//! `outbox_stuck`. Every message carries the row's `event_id` as `Nats-Msg-Id`, so a redelivery
//! after a crash is deduplicated downstream.

mod deliver;
mod rows;
#[doc(hidden)]
pub use rows::{claim_sql, window as claim_window};
mod sink;

use std::sync::Arc;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::app::App;
use crate::handoff::Handoff;
pub(crate) use crate::store::outbox::Channel;
use rows::Claimed;
use sink::EventSink;

/// Runs both relay loops until `shutdown` turns true; each finishes the rows it has in flight.
pub(crate) async fn relay(app: Arc<App>, shutdown: watch::Receiver<bool>) {
    let events = Arc::new(EventSink::new(&app));
    events.refresh(&app, true).await;
    let course = tokio::spawn(run_channel(
        app.clone(),
        Channel::Course,
        events.clone(),
        shutdown.clone(),
    ));
    run_channel(app, Channel::Events, events, shutdown).await;
    let _ = course.await;
    tracing::info!("outbox relay stopped");
}

/// One channel's loop: claim what may go next (up to `OUTBOX_BATCH` in flight), settle each row
/// on its own task (so publishes are pipelined: a row's ack never waits for another's), mark the
/// rows that settled together SENT in one statement, and sleep until a commit, a settled row or
/// the poll wakes it. A burst of commits wakes it once: the notifications already buffered are
/// taken with the first. The events loop also sends the rows its replica's creates hand over
/// (`handoff`), without claiming them.
///
/// A claim is made only when one may find something: after a wake, a `NOTIFY`, the poll, the
/// settling of a claimed row (the next row of its lane may go) or a claim that found rows (more
/// may wait). Handed rows settling do not claim: a loop busy with them would otherwise claim every
/// `OUTBOX_CLAIM_GAP_MS` for nothing. A row that waits behind a handed row (a `booking.cancelled`
/// whose confirmation was in hand) is claimed by one more claim after the next handed row
/// settles, or else by the poll.
async fn run_channel(
    app: Arc<App>,
    channel: Channel,
    events: Arc<EventSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = listen(&app).await;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut delivered = Vec::new();
    let mut last_claim = tokio::time::Instant::now();
    let mut last_record = last_claim;
    let batch = usize::try_from(app.config.outbox_batch).unwrap_or(1).max(1);
    let handoff = app.batches.handoff();
    let mut inbox = if channel == Channel::Events {
        handoff.inbox()
    } else {
        None
    };
    let takes_handed = inbox.is_some();
    let mut claim_wanted = Want::News;
    // A claim for news found nothing while rows were in flight: a handed one may hold it up.
    let mut behind_handed = false;
    // The poll ticks whatever else happens: a row whose retry came due is claimed even while
    // handed rows keep the loop busy.
    let mut poll = tokio::time::interval(app.config.outbox_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Whatever else settled meanwhile is recorded with it, at most once per gap (a loop
        // busy with handed rows would otherwise mark every few rows in a statement of their own)
        // unless half a batch is waiting or a claim is due (it must see them SENT).
        while let Some(settled) = in_flight.try_join_next() {
            claim_wanted =
                claim_wanted.max(took(&mut delivered, settled, &handoff, &mut behind_handed));
        }
        let record_due = last_record + app.config.outbox_claim_gap;
        if claim_wanted != Want::No
            || delivered.len() >= batch.div_ceil(2)
            || tokio::time::Instant::now() >= record_due
        {
            deliver::record_sent(&app, &delivered).await;
            delivered.clear();
            last_record = tokio::time::Instant::now();
        }
        // Claim only once half of OUTBOX_BATCH is free: every claim sorts a window of several
        // hundred rows, so one per settled row would pay that sort for a row or two. And at most
        // one claim per gap: what commits meanwhile is claimed together.
        let room = batch.saturating_sub(in_flight.len());
        let claimed = if claim_wanted == Want::No || room < batch.div_ceil(2) {
            Vec::new()
        } else {
            tokio::time::sleep_until(last_claim + app.config.outbox_claim_gap).await;
            last_claim = tokio::time::Instant::now();
            let news = claim_wanted == Want::News;
            claim_wanted = Want::No;
            let rows = rows::claim(&app, channel, room).await.unwrap_or_else(|e| {
                tracing::warn!(channel = channel.as_str(), error = %e, "outbox relay could not claim rows");
                Vec::new()
            });
            if rows.is_empty() && news && !in_flight.is_empty() && takes_handed {
                behind_handed = true;
            }
            rows
        };
        if !claimed.is_empty() {
            claim_wanted = Want::News;
            for row in claimed {
                let (app, events) = (app.clone(), events.clone());
                in_flight.spawn(async move { (false, deliver::settle(&app, &events, row).await) });
            }
            continue;
        }
        let listened = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(app.config.outbox_poll).await;
                    }
                    while l.next_buffered().is_some() {}
                }
                None => std::future::pending().await,
            }
        };
        let handed = async {
            match inbox.as_mut() {
                Some(inbox) => inbox.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // A settled row frees room, and may let the next row of its lane go.
            Some(settled) = in_flight.join_next(), if !in_flight.is_empty() => {
                claim_wanted = claim_wanted.max(took(&mut delivered, settled, &handoff, &mut behind_handed));
            }
            Some(row) = handed => send_handed(&app, &events, &mut in_flight, row),
            _ = app.relay_wake.wait(channel == Channel::Course) => claim_wanted = Want::News,
            _ = listened => claim_wanted = Want::News,
            _ = poll.tick() => claim_wanted = Want::News,
            _ = tokio::time::sleep_until(last_record + app.config.outbox_claim_gap),
                if !delivered.is_empty() => {}
            _ = shutdown.changed() => {}
        }
        // Rows handed over together go out together.
        while let Some(row) = inbox.as_mut().and_then(|i| i.try_recv().ok()) {
            send_handed(&app, &events, &mut in_flight, row);
        }
        if listener.is_none() {
            listener = listen(&app).await;
        }
    }
    // Rows handed over before the stop are sent too: nobody else may take them before their
    // lease runs out. Those handed over after it are given back to a claim (`Handoff::give`).
    if let Some(inbox) = inbox.as_mut() {
        inbox.close();
    }
    while let Some(row) = inbox.as_mut().and_then(|i| i.try_recv().ok()) {
        send_handed(&app, &events, &mut in_flight, row);
    }
    while let Some(settled) = in_flight.join_next().await {
        took(&mut delivered, settled, &handoff, &mut behind_handed);
    }
    deliver::record_sent(&app, &delivered).await;
}

/// Whether the loop should claim, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Want {
    /// Nothing new can be claimable.
    No,
    /// A handed row settled after a claim for news found nothing: one more look, which does not
    /// ask for another if it finds nothing either.
    Recheck,
    /// Rows were written, re-driven or came due, or a claimed row settled (the next row of its
    /// lane may go), or the last claim found rows (more may wait).
    News,
}

/// A delivery task's result: (handed over, the id to mark SENT).
type Settled = Result<(bool, Option<i64>), tokio::task::JoinError>;

/// Keeps a settled row's id for the SENT mark and frees a handed row's room; says whether that
/// calls for a claim.
fn took(
    delivered: &mut Vec<i64>,
    settled: Settled,
    handoff: &Handoff,
    behind_handed: &mut bool,
) -> Want {
    match settled {
        Ok((handed, id)) => {
            delivered.extend(id);
            if !handed {
                Want::News
            } else {
                handoff.settled();
                if std::mem::take(behind_handed) {
                    Want::Recheck
                } else {
                    Want::No
                }
            }
        }
        // A delivery task panicked: its row's lease brings it back.
        Err(_) => Want::News,
    }
}

/// Sends a handed row on its own task, as a claimed one.
fn send_handed(
    app: &Arc<App>,
    events: &Arc<EventSink>,
    in_flight: &mut tokio::task::JoinSet<(bool, Option<i64>)>,
    row: Claimed,
) {
    let (app, events) = (app.clone(), events.clone());
    in_flight.spawn(async move { (true, deliver::settle(&app, &events, row).await) });
}

/// `LISTEN outbox_events` on a connection of its own (none if the database refuses). It is not
/// one of `DB_POOL_SIZE`'s: a listener holds its connection for good, and taking it from the
/// requests' pool left a service with `DB_POOL_SIZE=1` nothing to answer with.
async fn listen(app: &App) -> Option<PgListener> {
    let own = crate::pool_options(1, app.config.db_acquire_timeout)
        .connect_lazy_with((*app.pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await.ok()?;
    listener.listen("outbox_events").await.ok()?;
    Some(listener)
}
