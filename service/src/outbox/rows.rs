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
/// earlier row?" per row, which is quadratic in the backlog after an outage.
const HEADS: &str = "WITH unsent AS ( \
       SELECT id, lane, aggregate_type, aggregate_id, status FROM outbox_events \
       WHERE channel = $1 AND status <> 'SENT'), \
     refused AS ( \
       SELECT aggregate_type, aggregate_id, min(id) AS first FROM unsent \
       WHERE status = 'REJECTED' GROUP BY 1, 2), \
     lane_heads AS ( \
       SELECT DISTINCT ON (u.lane) u.id FROM unsent u \
       LEFT JOIN refused r ON r.aggregate_type = u.aggregate_type \
         AND r.aggregate_id = u.aggregate_id AND r.first < u.id \
       WHERE u.status = 'PENDING' AND r.first IS NULL ORDER BY u.lane, u.id), \
     booking_heads AS ( \
       SELECT DISTINCT ON (aggregate_type, aggregate_id) id FROM unsent \
       ORDER BY aggregate_type, aggregate_id, id) \
     SELECT o.id FROM lane_heads l JOIN booking_heads b ON b.id = l.id \
     JOIN outbox_events o ON o.id = l.id \
     WHERE o.status = 'PENDING' AND o.next_attempt_at <= now() ORDER BY o.id LIMIT $2";

/// Claims up to `limit` due rows of `channel`, in id order. The heads are read without locks, then
/// leased by one `UPDATE` that re-checks each row under its row lock, so of two relays reading the
/// same heads only one leases each row. (One statement with `FOR UPDATE SKIP LOCKED` around the
/// sorts spent a second per claim re-checking rows that other relay tasks had just updated.)
pub(super) async fn claim(app: &App, channel: Channel, limit: usize) -> Result<Vec<Claimed>> {
    let heads: Vec<i64> = sqlx::query_scalar(HEADS)
        .bind(channel.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&app.pool)
        .await
        .step("reading the outbox heads")?;
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<Claimed> = sqlx::query_as(
        "UPDATE outbox_events SET next_attempt_at = now() + $2 \
         WHERE id = ANY($1) AND status = 'PENDING' AND next_attempt_at <= now() \
         RETURNING id, event_id, event_type, payload, retry_count",
    )
    .bind(&heads)
    .bind(app.config.outbox_lease)
    .fetch_all(&app.pool)
    .await
    .step("leasing outbox rows")?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// A delivered row.
pub(super) async fn mark_sent(pool: &sqlx::PgPool, id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_events SET status = 'SENT', processed_at = now(), last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await
    .step("marking an event sent")?;
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
