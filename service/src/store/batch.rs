//! The statements of a group commit: a batch of creates is one transaction of at most four round
//! trips whatever its size: lock its slots (in id order, with their games, and booking ids drawn
//! for every item), check its keys, write everything in one data-modifying statement, commit.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;

use super::{slot_state_sql, BookingRow};
use crate::error::{Result, StepExt as _};

/// The connection of a transaction.
type Tx = sqlx::PgConnection;

/// A slot of the batch, read under its row lock, with its game's courses.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct BatchSlot {
    pub(crate) game_time_slot_id: i32,
    pub(crate) max_players: i32,
    pub(crate) booked_players: i32,
    pub(crate) status: String,
    pub(crate) price: i64,
    pub(crate) front_nine_course_id: Option<i32>,
    pub(crate) back_nine_course_id: Option<i32>,
    /// When course-service's fields were last written (see `LockedSlot::last_sync_at`).
    pub(crate) last_sync_at: NaiveDateTime,
    /// Booking ids drawn for the batch (the same on every row).
    pub(crate) ids: Vec<i32>,
}

/// Locks `slot_ids` in id order (two batches never wait on each other in a circle) with
/// `FOR UPDATE` (or without, when a planted bug asks), and draws `n` booking ids.
pub(crate) async fn lock_slots(
    tx: &mut Tx,
    slot_ids: &[i32],
    lock: bool,
    n: usize,
) -> Result<(HashMap<i32, BatchSlot>, Vec<i32>)> {
    let sql = format!(
        "WITH s AS MATERIALIZED (SELECT game_time_slot_id, game_id, max_players, booked_players, status, \
         price::int8 AS price, last_sync_at FROM game_time_slot_cache WHERE game_time_slot_id = ANY($1) \
         ORDER BY game_time_slot_id{}) \
         SELECT s.game_time_slot_id, s.max_players, s.booked_players, s.status, s.price, s.last_sync_at, \
         g.front_nine_course_id, g.back_nine_course_id, \
         (SELECT array_agg(nextval(pg_get_serial_sequence('bookings', 'id'))::int4) \
          FROM generate_series(1, $2)) AS ids \
         FROM s LEFT JOIN game_cache g USING (game_id)",
        if lock { " FOR UPDATE" } else { "" }
    );
    let rows: Vec<BatchSlot> = sqlx::query_as(&sql)
        .bind(slot_ids)
        .bind(i32::try_from(n).unwrap_or(i32::MAX))
        .fetch_all(tx)
        .await
        .step("locking the batch's slots")?;
    let ids = rows.first().map(|r| r.ids.clone()).unwrap_or_default();
    Ok((
        rows.into_iter().map(|r| (r.game_time_slot_id, r)).collect(),
        ids,
    ))
}

/// Which of the batch's `(user, key)` pairs a committed booking already holds. A separate
/// statement after the lock: its snapshot sees a duplicate that committed while we waited.
pub(crate) async fn taken_keys(
    tx: &mut Tx,
    users: &[i32],
    keys: &[String],
) -> Result<HashSet<(i32, String)>> {
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT k.user_id, k.key FROM idempotency_keys k \
         JOIN UNNEST($1::int4[], $2::text[]) AS r(user_id, key) USING (user_id, key) \
         WHERE k.expires_at > now()",
    )
    .bind(users)
    .bind(keys)
    .fetch_all(tx)
    .await
    .step("checking the batch's idempotency keys")?;
    Ok(rows.into_iter().collect())
}

/// Everything a batch writes, as columns.
#[derive(Debug, Default)]
pub(crate) struct BatchWrite {
    /// The bookings, exactly as they will be stored.
    pub(crate) bookings: Vec<BookingRow>,
    /// Each booking's payment method as its payment records it (never NULL).
    pub(crate) payment_methods: Vec<String>,
    /// Each booking's history details.
    pub(crate) details: Vec<serde_json::Value>,
    /// Outbox rows: event id, booking id, subject, payload, channel, lane.
    pub(crate) events: Vec<(
        uuid::Uuid,
        i32,
        &'static str,
        serde_json::Value,
        &'static str,
        String,
    )>,
    /// Each touched slot's new local count.
    pub(crate) slots: Vec<(i32, i32)>,
    /// Keys to store: user, key, request hash, booking id.
    pub(crate) keys: Vec<(i32, String, String, i32)>,
}

/// What the write statement reports: each booking's payment and history ids, and how many keys
/// it stored (fewer than asked means a live key of that name committed meanwhile).
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) payment_and_history: HashMap<i32, (i32, i32)>,
    pub(crate) keys_stored: usize,
}

/// The batch's rows as a relation `r` (`$1`–`$27`, one element per booking, `id` as given).
macro_rules! rows_sql {
    () => {
        concat!(
            "SELECT * FROM UNNEST($1::int4[], $2::text[], $3::int4[], $4::int4[], $5::int4[], ",
            "$6::text[], $7::text[], $8::int4[], $9::text[], $10::int4[], $11::text[], $12::int4[], ",
            "$13::text[], $14::timestamp[], $15::text[], $16::text[], $17::int4[], $18::int8[], $19::int8[], ",
            "$20::int8[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], ",
            "$27::jsonb[]) AS r(id, number, user_id, game_id, slot_id, game_name, game_code, front_id, ",
            "front_name, back_id, back_name, club_id, club_name, booking_date, start_time, end_time, players, ",
            "price, fee, total, method, special, email, name, phone, pay_method, details)"
        )
    };
}
pub(crate) use rows_sql;

/// Inserts the bookings of relation `$from` (with the columns of [`rows_sql`]), with `$id`,
/// `$front` and `$back` as their id and course ids and `$28` as their time.
macro_rules! insert_bookings_sql {
    ($from:expr, $id:expr, $front:expr, $back:expr) => {
        concat!(
            "INSERT INTO bookings (id, booking_number, user_id, game_id, game_time_slot_id, game_name, ",
            "game_code, front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, ",
            "club_id, club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, ",
            "total_price, status, payment_method, special_requests, user_email, user_name, user_phone, created_at, ",
            "updated_at) SELECT ", $id, ", number, user_id, game_id, slot_id, game_name, game_code, ", $front,
            ", front_name, ", $back, ", back_name, club_id, club_name, booking_date, start_time, end_time, players, ",
            "price, fee, total, 'CONFIRMED'::\"BookingStatus\", method, special, email, name, phone, $28, $28 FROM ",
            $from
        )
    };
}
pub(crate) use insert_bookings_sql;

/// A batch statement's query.
pub(crate) type Query<'q, O> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds `$1`–`$34`: the bookings' columns (see [`rows_sql`]), `at`, and the outbox rows (event
/// id, booking id, subject, payload, channel, lane).
pub(crate) fn bind_rows<'q, O>(
    q: Query<'q, O>,
    w: &'q BatchWrite,
    at: NaiveDateTime,
) -> Query<'q, O> {
    let b = &w.bookings;
    let col = |f: fn(&BookingRow) -> Option<String>| b.iter().map(f).collect::<Vec<_>>();
    q.bind(b.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(
            b.iter()
                .map(|r| r.booking_number.clone())
                .collect::<Vec<_>>(),
        )
        .bind(b.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.game_id).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.game_time_slot_id).collect::<Vec<_>>())
        .bind(col(|r| r.game_name.clone()))
        .bind(col(|r| r.game_code.clone()))
        .bind(b.iter().map(|r| r.front_nine_course_id).collect::<Vec<_>>())
        .bind(col(|r| r.front_nine_course_name.clone()))
        .bind(b.iter().map(|r| r.back_nine_course_id).collect::<Vec<_>>())
        .bind(col(|r| r.back_nine_course_name.clone()))
        .bind(b.iter().map(|r| r.club_id).collect::<Vec<_>>())
        .bind(col(|r| r.club_name.clone()))
        .bind(b.iter().map(|r| r.booking_date).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.start_time.clone()).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.end_time.clone()).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.player_count).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.price_per_person).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.service_fee).collect::<Vec<_>>())
        .bind(b.iter().map(|r| r.total_price).collect::<Vec<_>>())
        .bind(col(|r| r.payment_method.clone()))
        .bind(col(|r| r.special_requests.clone()))
        .bind(col(|r| r.user_email.clone()))
        .bind(col(|r| r.user_name.clone()))
        .bind(col(|r| r.user_phone.clone()))
        .bind(&w.payment_methods)
        .bind(&w.details)
        .bind(at)
        .bind(w.events.iter().map(|e| e.0).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.1).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.2).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.3.clone()).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.4).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.5.clone()).collect::<Vec<_>>())
}

/// Writes bookings, payments, histories, outbox rows, slot counts and keys in one statement.
pub(crate) async fn write(
    tx: &mut Tx,
    w: &BatchWrite,
    at: NaiveDateTime,
    ttl: std::time::Duration,
) -> Result<Written> {
    let sql = concat!(
        "WITH r AS (",
        rows_sql!(),
        "), b AS (",
        insert_bookings_sql!("r", "id", "front_id", "back_id"),
        " RETURNING id), ",
        "p AS (INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) ",
        "SELECT r.id, r.total, r.pay_method, 'PENDING'::\"PaymentStatus\", $28, $28 FROM r JOIN b USING (id) ",
        "RETURNING id, booking_id), ",
        "h AS (INSERT INTO booking_history (booking_id, action, details, user_id, created_at) ",
        "SELECT r.id, 'CREATED', r.details, r.user_id, $28 FROM r JOIN b USING (id) RETURNING id, booking_id), ",
        "o AS (INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) ",
        "SELECT e.id, 'Booking', e.agg::text, e.subject, e.payload, e.channel, e.lane ",
        "FROM UNNEST($29::uuid[], $30::int4[], $31::text[], $32::jsonb[], $33::text[], $34::text[]) ",
        "AS e(id, agg, subject, payload, channel, lane) WHERE e.agg IN (SELECT id FROM b) RETURNING 1), ",
        "u AS (UPDATE game_time_slot_cache SET booked_players = v.booked, updated_at = $28, ",
        slot_state_sql!("max_players", "v.booked", "false"),
        " FROM UNNEST($35::int4[], $36::int4[]) AS v(id, booked) WHERE game_time_slot_id = v.id RETURNING 1), ",
        "k AS (INSERT INTO idempotency_keys (user_id, key, request_hash, booking_id, expires_at) ",
        "SELECT x.user_id, x.key, x.hash, x.booking_id, now() + $41 ",
        "FROM UNNEST($37::int4[], $38::text[], $39::text[], $40::int4[]) AS x(user_id, key, hash, booking_id) ",
        "WHERE x.booking_id IN (SELECT id FROM b) ",
        "ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, ",
        "booking_id = EXCLUDED.booking_id, created_at = now(), expires_at = EXCLUDED.expires_at ",
        "WHERE idempotency_keys.expires_at <= now() RETURNING 1) ",
        "SELECT p.booking_id, p.id, h.id, (SELECT count(*) FROM k), (SELECT count(*) FROM o), ",
        "(SELECT count(*) FROM u) FROM p JOIN h USING (booking_id)"
    );
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    let rows: Vec<(i32, i32, i32, i64, i64, i64)> = bind_rows(sqlx::query_as(sql), w, at)
        .bind(w.slots.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(w.slots.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(w.keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(w.keys.iter().map(|k| k.1.clone()).collect::<Vec<_>>())
        .bind(w.keys.iter().map(|k| k.2.clone()).collect::<Vec<_>>())
        .bind(w.keys.iter().map(|k| k.3).collect::<Vec<_>>())
        .bind(ttl)
        .fetch_all(tx)
        .await
        .step("writing the batch")?;
    let keys_stored = rows
        .first()
        .map_or(0, |r| usize::try_from(r.3).unwrap_or(0));
    Ok(Written {
        payment_and_history: rows.iter().map(|r| (r.0, (r.1, r.2))).collect(),
        keys_stored,
    })
}

/// A lone create in one statement, its own transaction (one round trip, one commit): the slot's
/// `UPDATE` takes the row lock and re-checks room, status and price on the newest row (READ
/// COMMITTED re-evaluates its condition after waiting for the lock), and every insert reads the
/// booking from it, so nothing is written unless the seats were taken. The booking id comes from
/// the sequence and is stamped into the events' lane and `bookingId`. `None`: nothing was written
/// (full, closed, price changed, course-service's fields rewritten since `last_sync_at`, or no
/// such slot); the locking path then says which. The booking event is due `lease` after now: a
/// lease of its own replica's relay, to which it is handed over (zero: due now, for a claim).
pub(crate) async fn write_lone(
    pool: &sqlx::PgPool,
    w: &BatchWrite,
    at: NaiveDateTime,
    last_sync_at: NaiveDateTime,
    lease: std::time::Duration,
) -> Result<Option<super::single::Written>> {
    let sql = concat!(
        "WITH u AS (UPDATE game_time_slot_cache SET booked_players = booked_players + $2, updated_at = $4, ",
        slot_state_sql!("max_players", "(booked_players + $2)", "false"),
        " WHERE game_time_slot_id = $1 AND status <> 'CLOSED' AND booked_players + $2 <= max_players ",
        "AND price::int8 = $3 AND last_sync_at = $30 RETURNING game_id), ",
        "b AS (INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, ",
        "game_code, front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, ",
        "club_id, club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, ",
        "total_price, status, payment_method, special_requests, user_email, user_name, user_phone, created_at, ",
        "updated_at) SELECT $5, $6, u.game_id, $1, $7, $8, g.front_nine_course_id, $9, g.back_nine_course_id, ",
        "$10, $11, $12, $13, $14, $15, $2, $3, $16, $17, 'CONFIRMED'::\"BookingStatus\", $18, $19, $20, $21, ",
        "$22, $4, $4 FROM u LEFT JOIN game_cache g USING (game_id) ",
        "RETURNING id, front_nine_course_id, back_nine_course_id), ",
        "p AS (INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) ",
        "SELECT id, $17, $23, 'PENDING'::\"PaymentStatus\", $4, $4 FROM b RETURNING id), ",
        "h AS (INSERT INTO booking_history (booking_id, action, details, user_id, created_at) ",
        "SELECT id, 'CREATED', $24, $6, $4 FROM b RETURNING id), ",
        "o AS (INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, ",
        "lane, next_attempt_at) ",
        "SELECT e.id, 'Booking', b.id::text, e.subject, ",
        "CASE WHEN e.payload ? 'bookingId' THEN jsonb_set(e.payload, '{bookingId}', to_jsonb(b.id)) ",
        "ELSE e.payload END, e.channel, ",
        "CASE WHEN e.channel = 'events' THEN 'booking:' || b.id ELSE e.lane END, ",
        "CASE WHEN e.channel = 'events' THEN now() + $31 ELSE now() END ",
        "FROM b, UNNEST($25::uuid[], $26::text[], $27::jsonb[], $28::text[], $29::text[]) ",
        "AS e(id, subject, payload, channel, lane) RETURNING id, channel) ",
        "SELECT 0 AS item, b.id, b.front_nine_course_id, b.back_nine_course_id, p.id AS payment_id, ",
        "h.id AS history_id, (SELECT o.id FROM o WHERE o.channel = 'events' LIMIT 1) AS event_row ",
        "FROM b, p, h"
    );
    let (Some(r), Some(method), Some(details)) = (
        w.bookings.first(),
        w.payment_methods.first(),
        w.details.first(),
    ) else {
        return Ok(None);
    };
    let written: Option<super::single::Written> = sqlx::query_as(sql)
        .bind(r.game_time_slot_id)
        .bind(r.player_count)
        .bind(r.price_per_person)
        .bind(at)
        .bind(&r.booking_number)
        .bind(r.user_id)
        .bind(&r.game_name)
        .bind(&r.game_code)
        .bind(&r.front_nine_course_name)
        .bind(&r.back_nine_course_name)
        .bind(r.club_id)
        .bind(&r.club_name)
        .bind(r.booking_date)
        .bind(&r.start_time)
        .bind(&r.end_time)
        .bind(r.service_fee)
        .bind(r.total_price)
        .bind(&r.payment_method)
        .bind(&r.special_requests)
        .bind(&r.user_email)
        .bind(&r.user_name)
        .bind(&r.user_phone)
        .bind(method)
        .bind(details)
        .bind(w.events.iter().map(|e| e.0).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.2).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.3.clone()).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.4).collect::<Vec<_>>())
        .bind(w.events.iter().map(|e| e.5.clone()).collect::<Vec<_>>())
        .bind(last_sync_at)
        .bind(lease)
        .fetch_optional(pool)
        .await
        .step("writing a lone booking")?;
    Ok(written)
}
