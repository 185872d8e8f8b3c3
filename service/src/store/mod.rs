//! The store: every SQL statement on the reference tables. `rows.rs` holds the rows and their
//! wire forms, `writes.rs` the writes that create, cancel and update share; the reads are here.
//!
//! Money columns are `DECIMAL(10,2)` holding whole won: they are read as `::int8` and written from
//! `i64`. Timestamps are `timestamp(3)` holding UTC, read and written as `NaiveDateTime`.

pub(crate) mod batch;
pub(crate) mod outbox;
mod rows;
pub(crate) mod single;
mod writes;

use chrono::{DateTime, NaiveDateTime, Utc};
use contracts::booking::BookingResponse;
use contracts::validate::limits;
use sqlx::PgExecutor;

use crate::error::{Result, ServiceError, StepExt as _};
pub(crate) use rows::{BookingRow, HistoryRow, PaymentRow, SlotRow, BOOKING_COLUMNS, SLOT_COLUMNS};
pub(crate) use writes::*;

/// Opens a transaction on a connection of `pool` in a way a cancelled caller cannot leave open.
///
/// sqlx 0.8.6 counts a transaction as open only once `BEGIN` is answered, so a caller dropped
/// while `BEGIN` is on the wire (a request past its deadline, a hung database) queues no
/// `ROLLBACK`: the connection goes back to the pool inside that transaction and the next
/// borrower's one-statement writes run in it, are answered, and are lost with the session. Here
/// `BEGIN` runs in a task of its own that finishes whoever waits: a transaction nobody takes is
/// dropped open, which queues its `ROLLBACK` before the connection is pooled again.
pub(crate) async fn begin(
    pool: &sqlx::PgPool,
) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let conn = pool.acquire().await?;
    tokio::spawn(sqlx::Transaction::begin(conn, None))
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
}

/// Now, in the precision and zone the reference stores (milliseconds, UTC, no zone).
pub(crate) fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond_millis()
}

trait Millis {
    fn with_nanosecond_millis(self) -> Self;
}

impl Millis for NaiveDateTime {
    fn with_nanosecond_millis(self) -> Self {
        use chrono::Timelike as _;
        self.with_nanosecond(self.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(self)
    }
}

/// The status and availability columns computed from capacity, local count and closure, in SQL
/// over the row being written (`m` = max players, `b` = booked players, `c` = closed).
macro_rules! slot_state_sql {
    ($m:expr, $b:expr, $c:expr) => {
        concat!(
            "available_players = GREATEST(",
            $m,
            " - ",
            $b,
            ", 0), ",
            "is_available = (NOT ",
            $c,
            " AND ",
            $m,
            " - ",
            $b,
            " > 0), ",
            "status = CASE WHEN ",
            $c,
            " THEN 'CLOSED' WHEN ",
            $m,
            " - ",
            $b,
            " > 0 THEN 'AVAILABLE' ELSE 'FULLY_BOOKED' END"
        )
    };
}
pub(crate) use slot_state_sql;

/// A stored UTC timestamp as an instant.
pub(crate) fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// Reads a slot cache row.
pub(crate) async fn slot(db: impl PgExecutor<'_>, slot_id: i32) -> Result<Option<SlotRow>> {
    let sql =
        format!("SELECT {SLOT_COLUMNS} FROM game_time_slot_cache WHERE game_time_slot_id = $1");
    sqlx::query_as::<_, SlotRow>(&sql)
        .bind(slot_id)
        .fetch_optional(db)
        .await
        .step("reading the slot")
}

/// The cached slots of a game on a day, by start time.
pub(crate) async fn slots_on(
    db: impl PgExecutor<'_>,
    game_id: i32,
    date: chrono::NaiveDate,
) -> Result<Vec<SlotRow>> {
    let sql = format!(
        "SELECT {SLOT_COLUMNS} FROM game_time_slot_cache WHERE game_id = $1 AND date = $2 \
         ORDER BY start_time, id"
    );
    sqlx::query_as(&sql)
        .bind(game_id)
        .bind(date)
        .fetch_all(db)
        .await
        .step("reading the day's slots")
}

/// The one argument of a [`bookings_where`] clause.
pub(crate) enum Key {
    /// An integer (`id`, `user_id`).
    Int(i32),
    /// A text (`booking_number`).
    Text(String),
}

/// Loads bookings by a `WHERE` clause on `b` with one bound argument `$1`.
pub(crate) async fn bookings_where(
    db: impl PgExecutor<'_>,
    clause: &str,
    key: Key,
) -> Result<Vec<BookingRow>> {
    let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings b WHERE {clause}");
    let query = sqlx::query_as::<_, BookingRow>(&sql);
    let query = match key {
        Key::Int(v) => query.bind(v),
        Key::Text(v) => query.bind(v),
    };
    query.fetch_all(db).await.step("reading bookings")
}

/// Attaches payments (oldest first) and, when asked, each booking's newest
/// [`limits::HISTORY_IN_REPLY`] history entries (newest first) with how many it has.
pub(crate) async fn with_details(
    conn: &mut sqlx::PgConnection,
    rows: Vec<BookingRow>,
    histories: bool,
    cutoff_days: Option<i64>,
) -> Result<Vec<BookingResponse>> {
    let ids: Vec<i32> = rows.iter().map(|r| r.id).collect();
    let payments: Vec<PaymentRow> = sqlx::query_as(
        "SELECT id, booking_id, amount::int8 AS amount, payment_method, payment_status::text AS payment_status, \
         transaction_id, paid_at, created_at, updated_at FROM payments WHERE booking_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .step("reading payments")?;
    // A booking's history grows with every update and is never pruned: a reply carries the
    // newest entries and the count, so it stays within NATS's max_payload however long it gets.
    let history: Vec<RankedHistory> = if histories {
        sqlx::query_as(
            "SELECT id, booking_id, action, details, user_id, created_at, total FROM ( \
             SELECT id, booking_id, action, details, user_id, created_at, \
             row_number() OVER (PARTITION BY booking_id ORDER BY created_at DESC, id DESC) AS n, \
             count(*) OVER (PARTITION BY booking_id) AS total \
             FROM booking_history WHERE booking_id = ANY($1)) h \
             WHERE n <= $2 ORDER BY booking_id, n",
        )
        .bind(&ids)
        .bind(limits::HISTORY_IN_REPLY)
        .fetch_all(&mut *conn)
        .await
        .step("reading booking histories")?
    } else {
        Vec::new()
    };
    // Group once by booking (linear); each list keeps the order its query gave.
    let mut pays_of: std::collections::HashMap<i32, Vec<PaymentRow>> = Default::default();
    for p in payments {
        pays_of.entry(p.booking_id).or_default().push(p);
    }
    let mut hist_of: std::collections::HashMap<i32, (Vec<HistoryRow>, i64)> = Default::default();
    for h in history {
        let (list, total) = hist_of.entry(h.row.booking_id).or_default();
        list.push(h.row);
        *total = h.total;
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let can_cancel = cutoff_days.map(|days| row.can_cancel(days));
        let pays = pays_of
            .remove(&row.id)
            .unwrap_or_default()
            .into_iter()
            .map(PaymentRow::into_wire)
            .collect::<Result<Vec<_>>>()?;
        let (hist, total) = hist_of.remove(&row.id).unwrap_or_default();
        let hist = hist.into_iter().map(HistoryRow::into_wire).collect();
        let mut response = row.into_response(pays, hist, histories.then_some(total))?;
        response.can_cancel = can_cancel;
        out.push(response);
    }
    Ok(out)
}

/// A history row with the count of its booking's entries.
#[derive(sqlx::FromRow)]
struct RankedHistory {
    #[sqlx(flatten)]
    row: HistoryRow,
    total: i64,
}

/// One booking with payments and history, or `BUS_002`.
pub(crate) async fn booking_by_id(
    conn: &mut sqlx::PgConnection,
    id: i32,
) -> Result<BookingResponse> {
    let rows = bookings_where(&mut *conn, "b.id = $1", Key::Int(id)).await?;
    with_details(conn, rows, true, None)
        .await?
        .pop()
        .ok_or_else(|| ServiceError::NotFound("Booking not found".into()))
}

/// A connection of `pool` for a read of several statements.
pub(crate) async fn connection(
    pool: &sqlx::PgPool,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    pool.acquire().await.step("taking a connection")
}
