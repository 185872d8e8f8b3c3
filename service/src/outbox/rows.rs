//! The relay's statements on `outbox_events`: which rows may go next and their lease, and how a
//! delivery attempt is recorded (SENT, REJECTED, or a retry after a backoff).

use std::time::Duration;

use super::Channel;
use crate::app::App;
use crate::error::{Result, StepExt as _};

pub(crate) use crate::store::outbox::Claimed;

/// The due rows of one channel that head both their lane and their booking (see the module docs),
/// found in a bounded window: the channel's first `$3` PENDING rows by id that are not held behind
/// a refused row of their booking. Every earlier unsent row of a window row's lane or booking is
/// either in the window or held (held rows never block a lane; a row behind a held row of its own
/// booking is held too), so heads found in the window are heads of the whole backlog, and a claim
/// costs the window, not the backlog (a claim that sorted every unsent row spent 60 ms at 20,000,
/// so a relay that fell behind fell further behind). Rows past the window wait until rows ahead of
/// them are sent; REJECTED and held rows stay out of it, so refusals waiting for an operator never
/// fill it.
///
/// Lane and booking heads are numbered in one pass each (`row_number`), not found by two
/// `DISTINCT ON` lists joined: the planner, expecting a handful of rows, joined those in a nested
/// loop, a million comparisons for a full window of 1,024 (330 ms of a 426 ms claim).
///
/// `channel = ANY($1)` with `ORDER BY channel, id` is deliberate: with `channel = $1` the planner
/// may read the primary key in id order and filter, walking every SENT row kept for retention; the
/// array comparison leaves only the channel-led partial index able to give that order.
const HEADS: &str = "WITH win AS MATERIALIZED ( \
       SELECT o.id, o.lane, o.aggregate_type, o.aggregate_id, o.next_attempt_at \
       FROM outbox_events o \
       WHERE o.channel = ANY($1) AND o.status = 'PENDING' AND NOT EXISTS ( \
         SELECT 1 FROM outbox_events r WHERE r.status = 'REJECTED' \
           AND r.aggregate_type = o.aggregate_type AND r.aggregate_id = o.aggregate_id \
           AND r.channel = o.channel AND r.id < o.id) \
       ORDER BY o.channel, o.id LIMIT $3), \
     ranked AS ( \
       SELECT id, next_attempt_at, \
         row_number() OVER (PARTITION BY lane ORDER BY id) AS in_lane, \
         row_number() OVER (PARTITION BY aggregate_type, aggregate_id ORDER BY id) AS in_booking \
       FROM win) \
     SELECT id FROM ranked WHERE in_lane = 1 AND in_booking = 1 AND next_attempt_at <= now() \
     ORDER BY id LIMIT $2";

/// The claim: `$1` the channel (as a one-element array), `$2` the most rows, `$3` the window,
/// `$4` the lease. Public (hidden) so a test can read its plan on a large backlog.
pub fn claim_sql() -> String {
    format!(
        "UPDATE outbox_events o SET next_attempt_at = now() + $4 \
         WHERE o.id = ANY(ARRAY({HEADS})) AND o.status = 'PENDING' AND o.next_attempt_at <= now() \
         RETURNING o.id, o.event_id, o.event_type, o.payload, o.retry_count"
    )
}

/// How many PENDING rows a claim of `limit` looks at: enough that lanes and bookings with several
/// rows waiting still leave `limit` heads in view.
pub fn window(limit: usize) -> i64 {
    i64::try_from(limit.saturating_mul(4).max(256)).unwrap_or(i64::MAX)
}

/// Claims up to `limit` due rows of `channel`, in id order, in one statement: the heads are
/// found without locks, then leased by an `UPDATE` that re-checks each row under its row lock, so
/// of two relays that found the same heads only one leases each row. (Wrapping the sorts in
/// `FOR UPDATE SKIP LOCKED` instead spent a second per claim re-checking rows that other relay
/// tasks had just updated.) The heads reach the `UPDATE` as an array of ids, so the leases are
/// found through the primary key whatever the planner guesses: joined as a table, the heads (that
/// it expects to be one row) became the inner side of a nested loop over every unsent row, 13
/// million comparisons and 854 ms per claim with 52,000 rows waiting.
pub(super) async fn claim(app: &App, channel: Channel, limit: usize) -> Result<Vec<Claimed>> {
    let mut rows: Vec<Claimed> = sqlx::query_as(&claim_sql())
        .bind([channel.as_str()])
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(window(limit))
        .bind(app.config.outbox_lease)
        .fetch_all(&app.relay_pool)
        .await
        .step("leasing outbox rows")?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Delivered rows, all in one statement.
pub(super) async fn mark_sent(pool: &sqlx::PgPool, ids: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_events SET status = 'SENT', processed_at = now(), last_error = NULL \
         WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(pool)
    .await
    .step("marking events sent")?;
    Ok(())
}

/// A row course-service refused: REJECTED with its answer, until an operator re-drives it.
pub(super) async fn mark_rejected(pool: &sqlx::PgPool, id: i64, answer: &str) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_events SET status = 'REJECTED', retry_count = retry_count + 1, \
         last_error = $2, processed_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(answer)
    .execute(pool)
    .await
    .step("marking an event rejected")?;
    Ok(())
}

/// A failed attempt: counted, its error kept, tried again after `backoff`.
pub(super) async fn mark_retry(
    pool: &sqlx::PgPool,
    id: i64,
    attempts: i32,
    error: &str,
    backoff: Duration,
) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_events SET retry_count = $2, last_error = $3, next_attempt_at = now() + $4 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .bind(error)
    .bind(backoff)
    .execute(pool)
    .await
    .step("scheduling an event's retry")?;
    Ok(())
}
