//! How one create of a batch becomes rows (booking, payment method, history details, its outbox
//! rows and key) and, once they are written, the answer its caller gets.

use chrono::NaiveTime;
use contracts::money::Charge;
use contracts::{subjects, Won};

use super::{Conflict, Deps, Job, Outcome, DEFAULT_PAYMENT_METHOD};
use crate::events;
use crate::faults::PlantedBug;
use crate::store::batch::{BatchSlot, BatchWrite};
use crate::store::single::Written;
use crate::store::{self, BookingRow, HistoryRow, PaymentRow};

/// A caller's answer, built from the rows written for it: the booking, its pending payment and
/// its CREATED history entry.
pub(super) fn reply(
    booking: BookingRow,
    method: String,
    details: serde_json::Value,
    (payment_id, history_id): (i32, i32),
    at: chrono::NaiveDateTime,
) -> Outcome {
    let payment = PaymentRow::pending(payment_id, booking.id, booking.total_price, method, at);
    let history = HistoryRow::created(history_id, booking.id, details, booking.user_id, at);
    payment
        .into_wire()
        .and_then(|p| booking.into_response(vec![p], vec![history.into_wire()], Some(1)))
        .map_err(Conflict::Service)
}

/// A one-statement path's answer: the booking as built, with the id and courses the statement
/// gave it.
pub(super) fn reply_written(
    mut booking: BookingRow,
    method: String,
    details: serde_json::Value,
    written: &Written,
    at: chrono::NaiveDateTime,
) -> Outcome {
    booking.id = written.id;
    booking.front_nine_course_id = written.front_nine_course_id;
    booking.back_nine_course_id = written.back_nine_course_id;
    let ids = (written.payment_id, written.history_id);
    reply(booking, method, details, ids, at)
}

/// Adds one allocated create to the batch's rows: booking, payment method, history details,
/// its book and `booking.confirmed` outbox rows, and its key.
pub(super) fn add(
    write: &mut BatchWrite,
    job: &Job,
    locked: &BatchSlot,
    id: i32,
    deps: &Deps,
    at: chrono::NaiveDateTime,
) {
    let (req, slot) = (&job.req, &job.slot);
    let price = Won(locked.price);
    let charge = Charge::of(price, req.player_count);
    let booking = BookingRow {
        id,
        booking_number: store::booking_number(),
        user_id: req.user_id,
        game_id: slot.game_id,
        game_time_slot_id: slot.game_time_slot_id,
        game_name: slot.game_name.clone(),
        game_code: slot.game_code.clone(),
        front_nine_course_id: locked.front_nine_course_id,
        front_nine_course_name: slot.front_nine_course_name.clone(),
        back_nine_course_id: locked.back_nine_course_id,
        back_nine_course_name: slot.back_nine_course_name.clone(),
        club_id: slot.club_id,
        club_name: slot.club_name.clone(),
        booking_date: slot.date.and_time(NaiveTime::MIN),
        start_time: slot.start_time.clone(),
        end_time: slot.end_time.clone(),
        player_count: req.player_count,
        price_per_person: price.get(),
        service_fee: charge.fee.get(),
        total_price: charge.total.get(),
        status: "CONFIRMED".into(),
        payment_method: req.payment_method.clone(),
        special_requests: req.special_requests.clone(),
        user_email: Some(req.user_email.clone()),
        user_name: Some(req.user_name.clone()),
        user_phone: req.user_phone.clone(),
        created_at: at,
        updated_at: at,
    };
    write.details.push(serde_json::json!({
        "playerCount": req.player_count,
        "totalPrice": charge.total.get().to_string(),
        "paymentMethod": req.payment_method,
        "gameName": slot.game_name,
        "gameTimeSlotId": slot.game_time_slot_id,
    }));
    write.payment_methods.push(
        req.payment_method
            .clone()
            .unwrap_or_else(|| DEFAULT_PAYMENT_METHOD.into()),
    );
    let book = store::outbox::seats(
        subjects::SLOTS_BOOK,
        slot.game_time_slot_id,
        req.player_count,
    );
    let confirmed = store::outbox::event(subjects::BOOKING_CONFIRMED, &events::confirmed(&booking));
    let mut rows = vec![book, confirmed];
    if deps.faults.planted(PlantedBug::DropOutbox) {
        rows.remove(0);
    }
    for row in rows {
        let (channel, lane) = row.channel_and_lane(id);
        write.events.push((
            uuid::Uuid::new_v4(),
            id,
            row.subject,
            row.payload,
            channel,
            lane,
        ));
    }
    if let Some(key) = &req.idempotency_key {
        write
            .keys
            .push((req.user_id, key.clone(), job.fingerprint.clone(), id));
    }
    write.bookings.push(booking);
}

/// After a one-statement path committed: its booking events go to the relay by hand when room
/// was reserved for them (`held`), and are claimed otherwise. `written` are the creates the
/// statement wrote, each found in `rows` by its place (`item`, the id it stood under).
pub(super) fn hand_over(
    deps: &Deps,
    held: Option<crate::handoff::Reservation>,
    rows: &BatchWrite,
    written: &[Written],
) {
    let Some(held) = held else {
        deps.relay_wake.event_rows_written();
        return;
    };
    let handed: Vec<_> = written
        .iter()
        .filter_map(|w| {
            let (event_id, _, _, payload, _, _) = rows
                .events
                .iter()
                .find(|e| e.1 == w.item && e.4 == store::outbox::Channel::Events.as_str())?;
            Some(crate::handoff::confirmed(
                w.event_row?,
                *event_id,
                payload.clone(),
                w.id,
            ))
        })
        .collect();
    if handed.len() < written.len() {
        // Not expected: a written create without its event row in the answer. Its row is leased
        // to this relay and comes back to a claim when the lease runs out.
        tracing::error!(
            written = written.len(),
            handed = handed.len(),
            "a one-statement create's booking event was not handed to the relay"
        );
    }
    deps.metrics.outbox_handed.inc_by(handed.len() as u64);
    let refused = deps.handoff.give(held, handed);
    if !refused.is_empty() {
        // The relay stopped (the replica is shutting down): another replica's may take them now.
        let pool = deps.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = store::outbox::release(&pool, &refused).await {
                tracing::warn!(error = %e, rows = refused.len(),
                    "could not release booking events the stopped relay was handed; their lease brings them back");
            }
        });
    }
}
