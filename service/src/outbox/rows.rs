//! The relay's statements on `outbox_events`: which rows may go next and their lease, and how a
//! delivery attempt is recorded (SENT, REJECTED, or a retry after a backoff).

use std::time::Duration;

use serde_json::Value;

use super::Channel;
use crate::app::App;
use crate::error::{Result, StepExt as _};

/// A claimed row.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Claimed {
    pub(super) id: i64,
    pub(super) event_id: uuid::Uuid,
    pub(super) event_type: String,
    pub(super) payload: Value,
    pub(super) retry_count: i32,
}

/// The due rows of one channel that head both their lane and their booking (see the module docs),
/// found by sorting the channel's unsent rows once (DISTINCT ON) rather than asking "is there an
/// earlier row?" per row, which is quadratic in the backlog after an outage. The unsent rows come
/// from the partial index on `(channel, id) WHERE status <> 'SENT'` and are read once
/// (MATERIALIZED), so a claim costs what the backlog holds, not what the table holds, whatever
/// the plan.
const HEADS: &str = "WITH unsent AS MATERIALIZED ( \
       SELECT id, lane, aggregate_type, aggregate_id, status, next_attempt_at FROM outbox_events \
       WHERE channel = $1 AND status <> 'SENT'), \
     refused AS ( \
       SELECT aggregate_type, aggregate_id, min(id) AS first FROM unsent \
       WHERE status = 'REJECTED' GROUP BY 1, 2), \
     lane_heads AS ( \
       SELECT DISTINCT ON (u.lane) u.id, u.status, u.next_attempt_at FROM unsent u \
       LEFT JOIN refused r ON r.aggregate_type = u.aggregate_type \
         AND r.aggregate_id = u.aggregate_id AND r.first < u.id \
       WHERE u.status = 'PENDING' AND r.first IS NULL ORDER BY u.lane, u.id), \
     booking_heads AS ( \
       SELECT DISTINCT ON (aggregate_type, aggregate_id) id FROM unsent \
       ORDER BY aggregate_type, aggregate_id, id) \
     SELECT l.id FROM lane_heads l JOIN booking_heads b ON b.id = l.id \
     WHERE l.next_attempt_at <= now() ORDER BY l.id LIMIT $2";

/// Claims up to `limit` due rows of `channel`, in id order, in one statement: the heads are
/// found without locks, then leased by an `UPDATE` that re-checks each row under its row lock, so
/// of two relays that found the same heads only one leases each row. (Wrapping the sorts in
/// `FOR UPDATE SKIP LOCKED` instead spent a second per claim re-checking rows that other relay
/// tasks had just updated.)
pub(super) async fn claim(app: &App, channel: Channel, limit: usize) -> Result<Vec<Claimed>> {
    let sql = format!(
        "WITH heads AS ({HEADS}) UPDATE outbox_events o SET next_attempt_at = now() + $3 \
         FROM heads WHERE o.id = heads.id AND o.status = 'PENDING' AND o.next_attempt_at <= now() \
         RETURNING o.id, o.event_id, o.event_type, o.payload, o.retry_count"
    );
    let mut rows: Vec<Claimed> = sqlx::query_as(&sql)
        .bind(channel.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
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
