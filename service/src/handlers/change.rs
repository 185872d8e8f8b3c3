//! `booking.cancel` and `booking.update`: lock the booking, check the rules, move seats in the
//! slot cache in the same transaction, and queue the matching course-service and notification
//! events.

use contracts::booking::{
    BookingResponse, BookingStatus, CancelBookingRequest, UpdateBookingRequest,
};
use contracts::course::SlotStatus;
use contracts::events::BookingCancelled;
use contracts::{subjects, Success, Won};

use crate::app::App;
use crate::cache::slot_state_sql;
use crate::error::{Result, ServiceError};
use crate::outbox;
use crate::store::{self, now, utc, BookingRow, BOOKING_COLUMNS};

async fn lock_booking(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i32,
) -> Result<BookingRow> {
    let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.id = $1 FOR UPDATE");
    sqlx::query_as::<_, BookingRow>(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound("Booking not found".into()))
}

/// Moves `delta` seats into (positive) or out of (negative) a slot's local count.
async fn move_seats(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    slot_id: i32,
    delta: i32,
) -> Result<()> {
    let sql = concat!(
        "UPDATE game_time_slot_cache SET booked_players = GREATEST(booked_players + $2, 0), updated_at = $3, ",
        slot_state_sql!("max_players", "GREATEST(booked_players + $2, 0)", "(status = 'CLOSED')"),
        " WHERE game_time_slot_id = $1"
    );
    sqlx::query(sql)
        .bind(slot_id)
        .bind(delta)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `booking.cancel`.
pub(crate) async fn cancel(
    app: &App,
    req: CancelBookingRequest,
) -> Result<Success<BookingResponse>> {
    let mut tx = app.pool.begin().await?;
    let booking = lock_booking(&mut tx, req.id).await?;
    if booking.user_id != req.user_id {
        return Err(ServiceError::Forbidden(
            "Unauthorized to cancel this booking".into(),
        ));
    }
    let status = booking.status()?;
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "User requested cancellation".into());
    if status == BookingStatus::Cancelled {
        // The same cancel sent again after it committed (its caller timed out) gets its own
        // answer; any other cancel of a cancelled booking is refused.
        if is_retry_of_cancel(&mut tx, &booking, &req, &reason, app).await? {
            tx.commit().await?;
            tracing::info!(
                "Booking {} cancel repeated; answered again.",
                booking.booking_number
            );
            return Ok(Success::new(
                store::booking_by_id(&app.pool, booking.id).await?,
            ));
        }
        return Err(ServiceError::Rule("Booking is already cancelled".into()));
    }
    if !status.holds_seats() {
        return Err(ServiceError::Rule(format!(
            "A {} booking cannot be cancelled",
            status.as_str()
        )));
    }
    let cutoff = app.config.cancel_cutoff_days;
    if booking.booking_date < now() + chrono::Duration::days(cutoff) {
        return Err(ServiceError::Rule(format!(
            "Cannot cancel booking less than {cutoff} days before the booking date"
        )));
    }
    let at = now();
    sqlx::query("UPDATE bookings SET status = 'CANCELLED', updated_at = $2 WHERE id = $1")
        .bind(booking.id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    move_seats(&mut tx, booking.game_time_slot_id, -booking.player_count).await?;
    sqlx::query(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, 'CANCELLED', $2, $3, $4)",
    )
    .bind(booking.id)
    .bind(serde_json::json!({ "reason": reason }))
    .bind(req.user_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    let event = BookingCancelled {
        booking_id: booking.id,
        booking_number: booking.booking_number.clone(),
        user_id: booking.user_id,
        game_id: booking.game_id,
        game_name: booking.game_name.clone().unwrap_or_default(),
        booking_date: contracts::time::iso_millis::format(&utc(booking.booking_date)),
        time_slot: booking.start_time.clone(),
        reason: req
            .reason
            .clone()
            .unwrap_or_else(|| "No reason provided".into()),
        cancelled_at: contracts::time::iso_millis::format(&utc(at)),
        user_email: booking.user_email.clone().unwrap_or_default(),
        user_name: booking.user_name.clone().unwrap_or_default(),
    };
    outbox::enqueue(
        &mut tx,
        booking.id,
        &[
            outbox::seats(
                subjects::SLOTS_RELEASE,
                booking.game_time_slot_id,
                booking.player_count,
            ),
            outbox::event(subjects::BOOKING_CANCELLED, &event),
        ],
    )
    .await?;
    tx.commit().await?;
    app.metrics.booking_cancelled.inc();
    tracing::info!("Booking {} cancelled.", booking.booking_number);
    Ok(Success::new(
        store::booking_by_id(&app.pool, booking.id).await?,
    ))
}

/// Whether the cancellation on record was made by this caller, with this reason, within the
/// idempotency window: then `req` is that cancel sent again.
async fn is_retry_of_cancel(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    booking: &BookingRow,
    req: &CancelBookingRequest,
    reason: &str,
    app: &App,
) -> Result<bool> {
    let window =
        chrono::Duration::from_std(app.config.idempotency_ttl).unwrap_or(chrono::Duration::days(1));
    let last: Option<(i32, Option<String>, chrono::NaiveDateTime)> = sqlx::query_as(
        "SELECT user_id, details->>'reason', created_at FROM booking_history \
         WHERE booking_id = $1 AND action = 'CANCELLED' ORDER BY id DESC LIMIT 1",
    )
    .bind(booking.id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(last.is_some_and(|(user, said, at)| {
        user == req.user_id && said.as_deref() == Some(reason) && at > now() - window
    }))
}

/// `booking.update`.
pub(crate) async fn update(
    app: &App,
    req: UpdateBookingRequest,
) -> Result<Success<BookingResponse>> {
    if req.user_id.is_none() && app.config.update_requires_caller {
        return Err(ServiceError::Validation(
            "userId: the caller is required to update a booking".into(),
        ));
    }
    let mut tx = app.pool.begin().await?;
    let booking = lock_booking(&mut tx, req.id).await?;
    if req.user_id.is_some_and(|user| user != booking.user_id) {
        return Err(ServiceError::Forbidden(
            "Unauthorized to update this booking".into(),
        ));
    }
    let status = booking.status()?;
    if !status.holds_seats() {
        return Err(ServiceError::Rule(
            "Cannot update cancelled or completed booking".into(),
        ));
    }
    let dto = &req.dto;
    let players = dto.player_count.unwrap_or(booking.player_count);
    let delta = players - booking.player_count;
    let cutoff = app.config.cancel_cutoff_days;
    if delta < 0 && booking.booking_date < now() + chrono::Duration::days(cutoff) {
        // Fewer players gives seats back, which cancel refuses this close to the day.
        return Err(ServiceError::Rule(format!(
            "Cannot reduce players less than {cutoff} days before the booking date"
        )));
    }
    if delta != 0 {
        // The reference changed playerCount without looking at the slot; capacity is re-checked
        // under the slot's row lock, like a create.
        let (max, booked, slot_status): (i32, i32, String) = sqlx::query_as(
            "SELECT max_players, booked_players, status FROM game_time_slot_cache WHERE game_time_slot_id = $1 FOR UPDATE",
        )
        .bind(booking.game_time_slot_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound("Game time slot not found".into()))?;
        if players > max {
            return Err(ServiceError::Validation(format!(
                "playerCount must be between 1 and {max} for this slot, got {players}"
            )));
        }
        if delta > 0 && slot_status == SlotStatus::Closed.as_str() {
            return Err(ServiceError::Rule(
                "Selected time slot is not available".into(),
            ));
        }
        if delta > 0 && max - booked < delta {
            return Err(ServiceError::Rule(format!(
                "Not enough capacity: {} seats left, {delta} more requested",
                max - booked
            )));
        }
        move_seats(&mut tx, booking.game_time_slot_id, delta).await?;
        let (subject, seats) = if delta > 0 {
            (subjects::SLOTS_BOOK, delta)
        } else {
            (subjects::SLOTS_RELEASE, -delta)
        };
        outbox::enqueue(
            &mut tx,
            booking.id,
            &[outbox::seats(subject, booking.game_time_slot_id, seats)],
        )
        .await?;
    }
    let amount = Won(booking.price_per_person * i64::from(players));
    let fee = amount.percent_floor(3);
    let total = amount.get() + fee.get();
    let at = now();
    sqlx::query(
        "UPDATE bookings SET player_count = $2, special_requests = COALESCE($3, special_requests), \
         user_phone = COALESCE($4, user_phone), service_fee = $5, total_price = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(booking.id)
    .bind(players)
    .bind(&dto.special_requests)
    .bind(&dto.user_phone)
    .bind(fee.get())
    .bind(total)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE payments SET amount = $2, updated_at = $3 WHERE booking_id = $1 AND payment_status = 'PENDING'")
        .bind(booking.id)
        .bind(total)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, 'UPDATED', $2, $3, $4)",
    )
    .bind(booking.id)
    .bind(serde_json::to_value(dto).unwrap_or_default())
    .bind(req.user_id.unwrap_or(booking.user_id))
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Success::new(
        store::booking_by_id(&app.pool, booking.id).await?,
    ))
}
