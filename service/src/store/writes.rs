//! The writes of `booking.create`, `booking.cancel` and `booking.update`, each one statement inside
//! the caller's transaction, each failure named by its step.

use chrono::NaiveDateTime;
use contracts::money::Charge;
use contracts::Won;

use super::slot_state_sql;
use super::{BookingRow, HistoryRow, PaymentRow, BOOKING_COLUMNS};
use crate::error::{Result, ServiceError, StepExt as _};

/// The connection of a transaction.
type Tx = sqlx::PgConnection;

/// A slot's counts, read under its row lock.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct LockedSlot {
    pub(crate) max_players: i32,
    pub(crate) booked_players: i32,
    pub(crate) status: String,
    pub(crate) price: i64,
    /// When course-service's fields were last written: a create whose row was read at another
    /// moment holds names and times that are not the row's.
    pub(crate) last_sync_at: NaiveDateTime,
}

/// Reads a slot's counts with `FOR UPDATE` (or without, when a planted bug asks).
pub(crate) async fn lock_slot(tx: &mut Tx, slot_id: i32, lock: bool) -> Result<LockedSlot> {
    let sql = format!(
        "SELECT max_players, booked_players, status, price::int8 AS price, last_sync_at FROM game_time_slot_cache \
         WHERE game_time_slot_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as::<_, LockedSlot>(&sql)
        .bind(slot_id)
        .fetch_optional(tx)
        .await
        .step("locking the slot")?
        .ok_or_else(|| ServiceError::NotFound(format!("Game time slot {slot_id} not found")))
}

/// The front and back nine course ids of a cached game.
pub(crate) async fn game_courses(tx: &mut Tx, game_id: i32) -> Result<(Option<i32>, Option<i32>)> {
    let game: Option<(i32, i32)> = sqlx::query_as(
        "SELECT front_nine_course_id, back_nine_course_id FROM game_cache WHERE game_id = $1",
    )
    .bind(game_id)
    .fetch_optional(tx)
    .await
    .step("reading the game's courses")?;
    Ok(game.map_or((None, None), |(f, b)| (Some(f), Some(b))))
}

/// `BK-XXXXXXXX-XXXX` from a random UUID, as the reference does.
pub(crate) fn booking_number() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("BK-{}-{}", &hex[..8], &hex[8..12])
}

/// A booking about to be written (status CONFIRMED).
pub(crate) struct NewBooking<'a> {
    pub(crate) number: &'a str,
    pub(crate) user_id: i32,
    pub(crate) slot: &'a super::SlotRow,
    pub(crate) front_nine_course_id: Option<i32>,
    pub(crate) back_nine_course_id: Option<i32>,
    pub(crate) booking_date: NaiveDateTime,
    pub(crate) player_count: i32,
    pub(crate) price_per_person: Won,
    pub(crate) charge: Charge,
    pub(crate) payment_method: Option<&'a str>,
    pub(crate) special_requests: Option<&'a str>,
    pub(crate) user_email: &'a str,
    pub(crate) user_name: &'a str,
    pub(crate) user_phone: Option<&'a str>,
    pub(crate) at: NaiveDateTime,
}

/// Inserts a booking and returns its row.
pub(crate) async fn insert_booking(tx: &mut Tx, b: &NewBooking<'_>) -> Result<BookingRow> {
    let sql = format!(
        "INSERT INTO bookings AS b (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         'CONFIRMED', $20, $21, $22, $23, $24, $25, $25) RETURNING {BOOKING_COLUMNS}"
    );
    let s = b.slot;
    sqlx::query_as::<_, BookingRow>(&sql)
        .bind(b.number)
        .bind(b.user_id)
        .bind(s.game_id)
        .bind(s.game_time_slot_id)
        .bind(&s.game_name)
        .bind(&s.game_code)
        .bind(b.front_nine_course_id)
        .bind(&s.front_nine_course_name)
        .bind(b.back_nine_course_id)
        .bind(&s.back_nine_course_name)
        .bind(s.club_id)
        .bind(&s.club_name)
        .bind(b.booking_date)
        .bind(&s.start_time)
        .bind(&s.end_time)
        .bind(b.player_count)
        .bind(b.price_per_person.get())
        .bind(b.charge.fee.get())
        .bind(b.charge.total.get())
        .bind(b.payment_method)
        .bind(b.special_requests)
        .bind(b.user_email)
        .bind(b.user_name)
        .bind(b.user_phone)
        .bind(b.at)
        .fetch_one(tx)
        .await
        .step("inserting the booking")
}

/// Inserts a PENDING payment.
pub(crate) async fn insert_payment(
    tx: &mut Tx,
    booking_id: i32,
    amount: Won,
    method: &str,
    at: NaiveDateTime,
) -> Result<PaymentRow> {
    sqlx::query_as(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'PENDING', $4, $4) RETURNING id, booking_id, amount::int8 AS amount, \
         payment_method, payment_status::text AS payment_status, transaction_id, paid_at, created_at, updated_at",
    )
    .bind(booking_id)
    .bind(amount.get())
    .bind(method)
    .bind(at)
    .fetch_one(tx)
    .await
    .step("inserting the payment")
}

/// Appends a history entry.
pub(crate) async fn insert_history(
    tx: &mut Tx,
    booking_id: i32,
    action: &str,
    details: &serde_json::Value,
    user_id: i32,
    at: NaiveDateTime,
) -> Result<HistoryRow> {
    sqlx::query_as(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id, booking_id, action, details, user_id, created_at",
    )
    .bind(booking_id)
    .bind(action)
    .bind(details)
    .bind(user_id)
    .bind(at)
    .fetch_one(tx)
    .await
    .step("writing the booking history")
}

/// Sets a slot's local count (its status and availability follow).
pub(crate) async fn set_booked(
    tx: &mut Tx,
    slot_id: i32,
    booked: i32,
    at: NaiveDateTime,
) -> Result<()> {
    let sql = concat!(
        "UPDATE game_time_slot_cache SET booked_players = $2, updated_at = $3, ",
        slot_state_sql!("max_players", "$2", "false"),
        " WHERE game_time_slot_id = $1"
    );
    sqlx::query(sql)
        .bind(slot_id)
        .bind(booked)
        .bind(at)
        .execute(tx)
        .await
        .step("counting the seats")?;
    Ok(())
}

/// Moves `delta` seats into (positive) or out of (negative) a slot's local count.
pub(crate) async fn move_seats(tx: &mut Tx, slot_id: i32, delta: i32) -> Result<()> {
    let sql = concat!(
        "UPDATE game_time_slot_cache SET booked_players = GREATEST(booked_players + $2, 0), updated_at = $3, ",
        slot_state_sql!("max_players", "GREATEST(booked_players + $2, 0)", "(status = 'CLOSED')"),
        " WHERE game_time_slot_id = $1"
    );
    sqlx::query(sql)
        .bind(slot_id)
        .bind(delta)
        .bind(super::now())
        .execute(tx)
        .await
        .step("moving the seats")?;
    Ok(())
}

/// Reads a booking with `FOR UPDATE`, or `BUS_002`.
pub(crate) async fn lock_booking(tx: &mut Tx, id: i32) -> Result<BookingRow> {
    let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1 FOR UPDATE");
    sqlx::query_as::<_, BookingRow>(&sql)
        .bind(id)
        .fetch_optional(tx)
        .await
        .step("locking the booking")?
        .ok_or_else(|| ServiceError::NotFound("Booking not found".into()))
}

/// Marks a booking CANCELLED.
pub(crate) async fn mark_cancelled(tx: &mut Tx, id: i32, at: NaiveDateTime) -> Result<()> {
    sqlx::query("UPDATE bookings SET status = 'CANCELLED', updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(tx)
        .await
        .step("cancelling the booking")?;
    Ok(())
}

/// Changes a booking's players and text fields, with its charge and its pending payment.
pub(crate) async fn change_booking(
    tx: &mut Tx,
    id: i32,
    players: i32,
    charge: Charge,
    special_requests: Option<&str>,
    user_phone: Option<&str>,
    at: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "UPDATE bookings SET player_count = $2, special_requests = COALESCE($3, special_requests), \
         user_phone = COALESCE($4, user_phone), service_fee = $5, total_price = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(id)
    .bind(players)
    .bind(special_requests)
    .bind(user_phone)
    .bind(charge.fee.get())
    .bind(charge.total.get())
    .bind(at)
    .execute(&mut *tx)
    .await
    .step("updating the booking")?;
    sqlx::query(
        "UPDATE payments SET amount = $2, updated_at = $3 WHERE booking_id = $1 AND payment_status = 'PENDING'",
    )
    .bind(id)
    .bind(charge.total.get())
    .bind(at)
    .execute(tx)
    .await
    .step("updating the pending payment")?;
    Ok(())
}

/// Who cancelled a booking last, with which reason, and when (to recognise a repeated cancel).
pub(crate) async fn last_cancellation(
    tx: &mut Tx,
    booking_id: i32,
) -> Result<Option<(i32, Option<String>, NaiveDateTime)>> {
    sqlx::query_as(
        "SELECT user_id, details->>'reason', created_at FROM booking_history \
         WHERE booking_id = $1 AND action = 'CANCELLED' ORDER BY id DESC LIMIT 1",
    )
    .bind(booking_id)
    .fetch_optional(tx)
    .await
    .step("reading the last cancellation")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booking_numbers_have_the_reference_shape() {
        let n = booking_number();
        assert_eq!(n.len(), 16);
        assert!(n.starts_with("BK-"));
        assert_eq!(&n[11..12], "-");
        assert!(n[3..11]
            .chars()
            .chain(n[12..].chars())
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
}
