//! The Rust direct path: the service's create transaction as plain SQL statements through sqlx,
//! one round trip each, straight to PostgreSQL.

use crate::GAME;

/// The service's create transaction as plain SQL (warm cache, no idempotency key): lock the slot,
/// read the game, insert booking, payment, history and two outbox rows, update the cache, commit.
pub async fn direct_create(pool: &sqlx::PgPool, user: i32, slot: i32) -> anyhow::Result<()> {
    // Awaited to the end, never cancelled: the service's own hazard (store::begin) is not here.
    #[allow(clippy::disallowed_methods)]
    let mut tx = pool.begin().await?;
    let (max, booked, price): (i32, i32, i64) = sqlx::query_as(
        "SELECT max_players, booked_players, price::int8 FROM game_time_slot_cache \
         WHERE game_time_slot_id = $1 FOR UPDATE",
    )
    .bind(slot)
    .fetch_one(&mut *tx)
    .await?;
    anyhow::ensure!(max - booked >= 1, "slot {slot} is full");
    let _game: Option<(i32, i32)> = sqlx::query_as(
        "SELECT front_nine_course_id, back_nine_course_id FROM game_cache WHERE game_id = $1",
    )
    .bind(GAME)
    .fetch_optional(&mut *tx)
    .await?;
    let number = format!("BK-{}", uuid::Uuid::new_v4().simple());
    let charge = contracts::money::Charge::of(contracts::Won(price), 1);
    let (fee, total) = (charge.fee.get(), charge.total.get());
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'bench', 'B1', 1, 'A', 2, 'B', 1, 'club', now(), '09:00', '12:00', 1, $5, $6, $7, \
         'CONFIRMED'::\"BookingStatus\", 'card', NULL, 'bench@example.com', 'bench', NULL, now(), now()) RETURNING id",
    )
    .bind(&number)
    .bind(user)
    .bind(GAME)
    .bind(slot)
    .bind(price)
    .bind(fee)
    .bind(total)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         VALUES ($1, $2, 'card', 'PENDING', now(), now())",
    )
    .bind(id)
    .bind(total)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, 'CREATED', $2, $3, now())",
    )
    .bind(id)
    .bind(serde_json::json!({"playerCount": 1, "totalPrice": total.to_string()}))
    .bind(user)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) \
         VALUES ($1, 'Booking', $3, 'gameTimeSlots.book', $4, 'course', $6), \
         ($2, 'Booking', $3, 'booking.confirmed', $5, 'events', 'booking:' || $3)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::new_v4())
    .bind(id.to_string())
    .bind(serde_json::json!({"timeSlotId": slot, "playerCount": 1}))
    .bind(serde_json::json!({"bookingId": id, "bookingNumber": number}))
    .bind(format!("slot:{slot}"))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE game_time_slot_cache SET booked_players = $2, available_players = max_players - $2, \
         updated_at = now() WHERE game_time_slot_id = $1",
    )
    .bind(slot)
    .bind(booked + 1)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
