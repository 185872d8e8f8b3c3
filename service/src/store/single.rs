//! A batch of unkeyed creates in one statement that is its own transaction: one round trip and
//! one commit however many creates, where the locking path takes four (begin, lock, write,
//! commit), each a wait for the database's process to be scheduled on a busy machine. The slots
//! are locked in id order first (two batches never wait on each other in a circle); each slot's
//! `UPDATE` then adds the batch's seats only if they all fit and the slot is still the one the
//! creates read (open, same price, same `last_sync_at`): READ COMMITTED re-evaluates that
//! condition on the newest row after waiting for the lock. Only the creates of updated slots are
//! written, so nothing is written unless its seats were taken. Booking ids come from the sequence
//! and are stamped into the events' lane and `bookingId`. (The `UPDATE` names its slots by
//! `= ANY($35)` as well as through the join: without it the generic plan, expecting ten rows
//! from each side, hash-joined the whole slot table, 1.7 ms of a 2.8 ms batch at 16 clients.)

use chrono::NaiveDateTime;

use super::batch::{bind_rows, insert_bookings_sql, rows_sql, BatchWrite};
use super::slot_state_sql;
use crate::error::{Result, StepExt as _};

/// What a batch's creates of one slot expect of it: the seats they ask for together, and the
/// price and `last_sync_at` they read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) slot_id: i32,
    pub(crate) seats: i32,
    pub(crate) price: i64,
    pub(crate) last_sync_at: NaiveDateTime,
}

/// One create written by a one-statement path (this one, or `batch::write_lone`, whose lone
/// create is item 0): its place in the batch, its booking's id and courses, its payment's and
/// history's ids.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Written {
    pub(crate) item: i32,
    pub(crate) id: i32,
    pub(crate) front_nine_course_id: Option<i32>,
    pub(crate) back_nine_course_id: Option<i32>,
    pub(crate) payment_id: i32,
    pub(crate) history_id: i32,
    /// Its `booking.confirmed` outbox row.
    pub(crate) event_row: Option<i64>,
}

/// Writes the creates of `w` (each booking's `id`, and its outbox rows' booking id, is its place
/// in the batch) whose slot in `slots` still has room for all of that slot's seats; the written
/// ones come back. Booking events are due `lease` after now (see `write_lone`).
pub(crate) async fn write(
    pool: &sqlx::PgPool,
    w: &BatchWrite,
    slots: &[Expected],
    at: NaiveDateTime,
    lease: std::time::Duration,
) -> Result<Vec<Written>> {
    let sql = concat!(
        "WITH l AS MATERIALIZED (SELECT game_time_slot_id FROM game_time_slot_cache ",
        "WHERE game_time_slot_id = ANY($35) ORDER BY game_time_slot_id FOR UPDATE), ",
        "u AS (UPDATE game_time_slot_cache c SET booked_players = c.booked_players + v.seats, updated_at = $28, ",
        slot_state_sql!("c.max_players", "(c.booked_players + v.seats)", "false"),
        " FROM UNNEST($35::int4[], $36::int4[], $37::int8[], $38::timestamp[]) AS v(id, seats, price, sync) ",
        "JOIN l ON l.game_time_slot_id = v.id ",
        "WHERE c.game_time_slot_id = ANY($35) AND c.game_time_slot_id = v.id AND c.status <> 'CLOSED' ",
        "AND c.booked_players + v.seats <= c.max_players ",
        "AND c.price::int8 = v.price AND c.last_sync_at = v.sync RETURNING c.game_time_slot_id, c.game_id), ",
        "x AS MATERIALIZED (SELECT r.*, nextval(pg_get_serial_sequence('bookings', 'id'))::int4 AS bid, ",
        "g.front_nine_course_id AS front, g.back_nine_course_id AS back FROM (",
        rows_sql!(),
        ") r JOIN u ON u.game_time_slot_id = r.slot_id LEFT JOIN game_cache g ON g.game_id = u.game_id), ",
        "b AS (",
        insert_bookings_sql!("x", "bid", "front", "back"),
        "), ",
        "p AS (INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) ",
        "SELECT bid, total, pay_method, 'PENDING'::\"PaymentStatus\", $28, $28 FROM x RETURNING id, booking_id), ",
        "h AS (INSERT INTO booking_history (booking_id, action, details, user_id, created_at) ",
        "SELECT bid, 'CREATED', details, user_id, $28 FROM x RETURNING id, booking_id), ",
        "o AS (INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, ",
        "lane, next_attempt_at) ",
        "SELECT e.id, 'Booking', x.bid::text, e.subject, ",
        "CASE WHEN e.payload ? 'bookingId' THEN jsonb_set(e.payload, '{bookingId}', to_jsonb(x.bid)) ",
        "ELSE e.payload END, e.channel, ",
        "CASE WHEN e.channel = 'events' THEN 'booking:' || x.bid ELSE e.lane END, ",
        "CASE WHEN e.channel = 'events' THEN now() + $39 ELSE now() END ",
        "FROM UNNEST($29::uuid[], $30::int4[], $31::text[], $32::jsonb[], $33::text[], $34::text[]) ",
        "AS e(id, item, subject, payload, channel, lane) JOIN x ON x.id = e.item ",
        "RETURNING id, aggregate_id, channel) ",
        "SELECT x.id AS item, x.bid AS id, x.front AS front_nine_course_id, x.back AS back_nine_course_id, ",
        "p.id AS payment_id, h.id AS history_id, o.id AS event_row ",
        "FROM x JOIN p ON p.booking_id = x.bid JOIN h ON h.booking_id = x.bid ",
        "LEFT JOIN o ON o.channel = 'events' AND o.aggregate_id = x.bid::text"
    );
    let written: Vec<Written> = bind_rows(sqlx::query_as(sql), w, at)
        .bind(slots.iter().map(|s| s.slot_id).collect::<Vec<_>>())
        .bind(slots.iter().map(|s| s.seats).collect::<Vec<_>>())
        .bind(slots.iter().map(|s| s.price).collect::<Vec<_>>())
        .bind(slots.iter().map(|s| s.last_sync_at).collect::<Vec<_>>())
        .bind(lease)
        .fetch_all(pool)
        .await
        .step("writing a batch in one statement")?;
    Ok(written)
}
