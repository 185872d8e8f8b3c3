//! `booking.cancel` and `booking.update`: lock the booking, check the rules, move seats in the
//! slot cache in the same transaction, and queue the matching course-service and notification
//! events.

use contracts::booking::{
    BookingResponse, BookingStatus, CancelBookingRequest, UpdateBookingRequest,
};
use contracts::course::SlotStatus;
use contracts::{subjects, Success};

use crate::app::App;
use crate::batch::charge;
use crate::error::{Result, ServiceError, StepExt as _};
use crate::events;
use crate::handlers::fit;
use crate::settle;
use crate::store::{self, now, BookingRow};

/// `booking.cancel`, answered in a reply of at most `room` bytes.
pub(crate) async fn cancel(
    app: &App,
    req: CancelBookingRequest,
    room: usize,
) -> Result<Success<BookingResponse>> {
    let mut tx = store::begin(&app.pool).await.step("starting the cancel")?;
    let booking = store::lock_booking(&mut tx, req.id).await?;
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
            let reply = answer(app, &mut tx, booking.id, room).await?;
            // The transaction only read: whatever its end says, the cancel on record stands
            // and the answer read is true.
            if let Err(e) = tx.rollback().await {
                tracing::warn!(error = %e, "ending a repeated cancel's read failed");
            }
            tracing::info!(
                "Booking {} cancel repeated; answered again.",
                booking.booking_number
            );
            return Ok(reply);
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
    store::mark_cancelled(&mut tx, booking.id, at).await?;
    store::move_seats(&mut tx, booking.game_time_slot_id, -booking.player_count).await?;
    let details = serde_json::json!({ "reason": reason });
    let history =
        store::insert_history(&mut tx, booking.id, "CANCELLED", &details, req.user_id, at).await?;
    let event = events::cancelled(&booking, req.reason.as_deref(), at);
    store::outbox::enqueue(
        &mut tx,
        booking.id,
        &[
            store::outbox::seats(
                subjects::SLOTS_RELEASE,
                booking.game_time_slot_id,
                booking.player_count,
            ),
            store::outbox::event(subjects::BOOKING_CANCELLED, &event),
        ],
    )
    .await?;
    let reply = answer(app, &mut tx, booking.id, room).await?;
    commit(app, tx, booking.id, history.id, "committing the cancel").await?;
    app.metrics.booking_cancelled.inc();
    tracing::info!("Booking {} cancelled.", booking.booking_number);
    Ok(reply)
}

/// The answer to a change of booking `id`, read inside its transaction before the commit: a
/// change whose answer could not be sent (`BookingTooLarge`) rolls back, and a change that
/// commits is answered with what it wrote, never with a read that failed after it.
async fn answer(
    app: &App,
    tx: &mut sqlx::PgConnection,
    id: i32,
    room: usize,
) -> Result<Success<BookingResponse>> {
    fit(app, store::booking_by_id(tx, id).await?, room)
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
    let last = store::last_cancellation(tx, booking.id).await?;
    Ok(last.is_some_and(|(user, said, at)| {
        user == req.user_id && said.as_deref() == Some(reason) && at > now() - window
    }))
}

/// `booking.update`, answered in a reply of at most `room` bytes.
pub(crate) async fn update(
    app: &App,
    req: UpdateBookingRequest,
    room: usize,
) -> Result<Success<BookingResponse>> {
    if req.user_id.is_none() && app.config.update_requires_caller {
        return Err(ServiceError::Validation(
            "userId: the caller is required to update a booking".into(),
        ));
    }
    let mut tx = store::begin(&app.pool).await.step("starting the update")?;
    let booking = store::lock_booking(&mut tx, req.id).await?;
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
    let charge = charge(booking.price_per_person, players, "dto.playerCount")?;
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
        let slot = store::lock_slot(&mut tx, booking.game_time_slot_id, true).await?;
        let (max, booked, slot_status) = (slot.max_players, slot.booked_players, slot.status);
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
        store::move_seats(&mut tx, booking.game_time_slot_id, delta).await?;
        let (subject, seats) = if delta > 0 {
            (subjects::SLOTS_BOOK, delta)
        } else {
            (subjects::SLOTS_RELEASE, -delta)
        };
        store::outbox::enqueue(
            &mut tx,
            booking.id,
            &[store::outbox::seats(
                subject,
                booking.game_time_slot_id,
                seats,
            )],
        )
        .await?;
    }
    let at = now();
    store::change_booking(
        &mut tx,
        booking.id,
        players,
        charge,
        dto.special_requests.as_deref(),
        dto.user_phone.as_deref(),
        at,
    )
    .await?;
    let mut details = serde_json::to_value(dto).unwrap_or_default();
    // `booking_history.user_id` is NOT NULL in the reference schema (and `userId` on the wire), so
    // an update whose caller is unknown keeps the owner there and says so in its details, rather
    // than reading as the owner's own change.
    let user = match req.user_id {
        Some(user) => user,
        None => {
            if let Some(fields) = details.as_object_mut() {
                fields.insert("caller".into(), "anonymous".into());
            }
            booking.user_id
        }
    };
    let history = store::insert_history(&mut tx, booking.id, "UPDATED", &details, user, at).await?;
    let reply = answer(app, &mut tx, booking.id, room).await?;
    commit(app, tx, booking.id, history.id, "committing the update").await?;
    Ok(reply)
}

/// Commits a cancel or update of booking `id` that wrote history entry `history`. When the
/// commit's answer is lost, the entry is looked up once the booking's row lock is free (the
/// transaction held it until its `COMMIT`): there, it committed; missing, it did not (the
/// commit's error, "not applied", is then true); not found out, the outcome is unknown. The
/// entry's id comes from a sequence, so no other change can be taken for this one.
async fn commit(
    app: &App,
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    id: i32,
    history: i32,
    step: &'static str,
) -> Result<()> {
    crate::ticket::Ticket::current().start_write();
    let Err(e) = tx.commit().await.step(step) else {
        return Ok(());
    };
    if !e.may_have_committed() {
        return Err(e);
    }
    app.metrics.lost_commit_lookups.inc();
    tracing::warn!(error = %e, "a commit may have happened without its answer; looking it up");
    match settle::history_written(&app.pool, id, history).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(e),
        Err(why) => Err(ServiceError::OutcomeUnknown { step, why }),
    }
}
