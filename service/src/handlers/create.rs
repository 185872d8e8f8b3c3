//! `booking.create`: validate, find the slot (`cache::ReadThrough::resolve`), then one transaction that
//! locks the slot row, re-checks capacity, and writes booking, payment, history, outbox events,
//! the new cache count and the idempotency key together (`store`, `idempotency`, `outbox`).

use chrono::NaiveTime;
use contracts::booking::{BookingResponse, CreateBookingRequest};
use contracts::{subjects, Success, Won};

use crate::app::App;
use crate::batch::{charge, check_room, Conflict, DEFAULT_PAYMENT_METHOD};
use crate::error::{Result, ServiceError, StepExt as _};
use crate::faults::{FaultPoint, PlantedBug};
use crate::handlers::fit;
use crate::store::{self, now, NewBooking, SlotRow};
use crate::{events, idempotency, telemetry};

/// `booking.create`; a replayed booking (an idempotency key's) in a reply of at most `room`
/// bytes, as it may have grown a long history since it was made.
pub(crate) async fn create(
    app: &App,
    req: CreateBookingRequest,
    room: usize,
) -> Result<Success<BookingResponse>> {
    let fingerprint = idempotency::fingerprint(&req);
    let Some(key) = &req.idempotency_key else {
        return attempt(app, &req, &fingerprint).await.map(Success::new);
    };
    if let Some(replayed) = idempotency::replay(&app.pool, req.user_id, key, &fingerprint).await? {
        return fit(app, replayed, room);
    }
    match attempt(app, &req, &fingerprint).await {
        // The key was free when this attempt began, but an earlier attempt with the same key (one
        // its client gave up waiting for) may have committed since and taken the last seats: look
        // again before saying no, so a retry is never told "full" while its booking exists.
        Err(e)
            if !matches!(e, ServiceError::Duplicate(_))
                && !app.faults.planted(PlantedBug::RefuseKeyedRetry) =>
        {
            match idempotency::replay(&app.pool, req.user_id, key, &fingerprint).await {
                Ok(Some(replayed)) => fit(app, replayed, room),
                Ok(None) => Err(e),
                // Not knowing whether the key holds a booking, the refusal is not given: the
                // caller gets the failure to look (a database error, retried like any other).
                // An unknown or applied outcome stays what it is: a failed look must not turn
                // it into "not applied".
                Err(unchecked) if e.may_have_committed() => {
                    tracing::warn!(outcome = %e, error = %unchecked,
                        "a keyed create could not re-check its key after an uncertain write");
                    Err(e)
                }
                Err(unchecked) => {
                    tracing::warn!(refusal = %e, error = %unchecked,
                        "a keyed create could not re-check its key before a refusal");
                    Err(unchecked)
                }
            }
        }
        // A booking replayed by its key may have grown a long history; a new one has one entry.
        Ok(booking) if booking.histories.len() > 1 => fit(app, booking, room),
        other => other.map(Success::new),
    }
}

/// How often a create starts over because course-service rewrote its slot meanwhile.
const STALE_ROUNDS: usize = 3;

/// One create without looking at its key first: find the slot, pre-check, then the transaction.
async fn attempt(
    app: &App,
    req: &CreateBookingRequest,
    fingerprint: &str,
) -> Result<BookingResponse> {
    let slot_id = req.game_time_slot_id;
    let arrived = app.slot_copies.ticket();
    let mut slot = app.slot_cache().resolve(slot_id, arrived, true).await?;
    let mut round = 0;
    let outcome = loop {
        // Losers of a rush are answered here without queueing on the row lock; the write
        // re-checks for everyone else. A copy may say yes, but only a read made during this
        // request may say no.
        if let Err(refusal) = admit(req, &slot.row) {
            if slot.read {
                return Err(refusal);
            }
            slot = app.slot_cache().resolve(slot_id, arrived, false).await?;
            admit(req, &slot.row)?;
        }
        match write(app, req, &slot.row, fingerprint).await {
            Err(Conflict::Stale) if round < STALE_ROUNDS => {
                round += 1;
                let now = app.slot_copies.ticket();
                slot = app.slot_cache().resolve(slot_id, now, false).await?;
            }
            Err(Conflict::Stale) => {
                break Err(Conflict::Service(ServiceError::Unavailable(format!(
                    "game time slot {slot_id} was rewritten by course-service {STALE_ROUNDS} times during the booking"
                ))))
            }
            other => break other,
        }
    };
    match outcome {
        Err(Conflict::Key) => {
            let key = req.idempotency_key.as_deref().unwrap_or_default();
            idempotency::replay(&app.pool, req.user_id, key, fingerprint)
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency key vanished during replay").into())
        }
        // Only a batch answers this, and a create that ran alone had no batch.
        Err(Conflict::Alone) => {
            Err(anyhow::anyhow!("a lone create was sent back to run alone").into())
        }
        Err(Conflict::Service(e)) => {
            // Losing a race for the last seats is expected, not an error of ours; the caller is
            // answered and server.rs logs every refusal once at INFO.
            match e {
                ServiceError::Database { .. }
                | ServiceError::Internal(_)
                | ServiceError::OutcomeUnknown { .. }
                | ServiceError::AppliedUnread { .. } => {
                    tracing::error!("Failed to create booking: {e}");
                }
                ServiceError::Rule(_) => app.slot_copies.forget(slot_id),
                _ => {}
            }
            Err(e)
        }
        Err(Conflict::Stale) => Err(anyhow::anyhow!("a stale slot row was not read again").into()),
        Ok(booking) => {
            app.slot_copies.took(slot_id, req.player_count);
            app.metrics.booking_created.inc();
            tracing::info!(
                user = %telemetry::mask_email(&req.user_email),
                "Booking {} created successfully.",
                booking.booking_number
            );
            Ok(booking)
        }
    }
}

/// `playerCount` within the slot's capacity and a total the money columns hold (`BUS_001`
/// otherwise), a slot that has not started and room in it (`BUS_004` otherwise). Every write path
/// charges the price read here: the one-statement paths write only at that price, the others
/// re-check under the lock.
fn admit(req: &CreateBookingRequest, slot: &SlotRow) -> Result<()> {
    if req.player_count > slot.max_players {
        return Err(ServiceError::Validation(format!(
            "playerCount must be between 1 and {} for this slot, got {}",
            slot.max_players, req.player_count
        )));
    }
    charge(slot.price, req.player_count, "playerCount")?;
    if starts(slot) <= now() {
        // Seats taken on a slot that has begun could never be given back: cancelling closes
        // CANCEL_CUTOFF_DAYS before the day.
        return Err(ServiceError::Rule(
            "Selected time slot has already started".into(),
        ));
    }
    check_room(&slot.status, slot.available_players, req.player_count)
}

/// When the slot begins, on the service's clock (UTC, as booking dates and the cancel cutoff are
/// kept); a start time that is not `HH:MM` counts from the start of its day.
fn starts(slot: &SlotRow) -> chrono::NaiveDateTime {
    let time = NaiveTime::parse_from_str(&slot.start_time, "%H:%M").unwrap_or(NaiveTime::MIN);
    slot.date.and_time(time)
}

/// Group commit (unless `CREATE_BATCH_MAX` is 1); a create whose batch failed runs alone.
async fn write(
    app: &App,
    req: &CreateBookingRequest,
    slot: &SlotRow,
    fingerprint: &str,
) -> std::result::Result<BookingResponse, Conflict> {
    let started = std::time::Instant::now();
    let outcome = if app.config.create_batch_max <= 1 {
        insert(app, req, slot, fingerprint).await
    } else {
        match app.batches.submit(req, slot, fingerprint).await {
            Err(Conflict::Alone) => insert(app, req, slot, fingerprint).await,
            other => other,
        }
    };
    app.metrics
        .create_write_seconds
        .observe(started.elapsed().as_secs_f64());
    outcome
}

/// One create alone (when its batch failed): lock, re-check, write everything, commit; the reply is built from the rows
/// written, as every other handler builds it from the rows it reads.
async fn insert(
    app: &App,
    req: &CreateBookingRequest,
    slot: &SlotRow,
    fingerprint: &str,
) -> std::result::Result<BookingResponse, Conflict> {
    let mut tx = store::begin(&app.pool).await.step("starting the booking")?;
    let lock = !app.faults.planted(PlantedBug::SkipRowLock);
    let locked = store::lock_slot(&mut tx, slot.game_time_slot_id, lock).await?;
    if locked.last_sync_at != slot.last_sync_at {
        return Err(Conflict::Stale);
    }
    if let Some(key) = &req.idempotency_key {
        // A duplicate that waited for the slot lock sees the first one's key here.
        if idempotency::is_taken(&mut tx, req.user_id, key).await? {
            return Err(Conflict::Key);
        }
    }
    let available = locked.max_players - locked.booked_players;
    check_room(&locked.status, available, req.player_count)?;
    let charge = charge(locked.price, req.player_count, "playerCount")?;

    let (front, back) = store::game_courses(&mut tx, slot.game_id).await?;
    let price = Won(locked.price);
    let number = store::booking_number();
    let at = now();
    let method = req
        .payment_method
        .clone()
        .unwrap_or_else(|| DEFAULT_PAYMENT_METHOD.into());
    let booking = store::insert_booking(
        &mut tx,
        &NewBooking {
            number: &number,
            user_id: req.user_id,
            slot,
            front_nine_course_id: front,
            back_nine_course_id: back,
            booking_date: slot.date.and_time(NaiveTime::MIN),
            player_count: req.player_count,
            price_per_person: price,
            charge,
            payment_method: req.payment_method.as_deref(),
            special_requests: req.special_requests.as_deref(),
            user_email: &req.user_email,
            user_name: &req.user_name,
            user_phone: req.user_phone.as_deref(),
            at,
        },
    )
    .await?;
    let payment = store::insert_payment(&mut tx, booking.id, charge.total, &method, at).await?;
    let details = serde_json::json!({
        "playerCount": req.player_count,
        "totalPrice": charge.total.get().to_string(),
        "paymentMethod": req.payment_method,
        "gameName": slot.game_name,
        "gameTimeSlotId": slot.game_time_slot_id,
    });
    let history =
        store::insert_history(&mut tx, booking.id, "CREATED", &details, req.user_id, at).await?;

    let mut events = vec![
        store::outbox::seats(
            subjects::SLOTS_BOOK,
            slot.game_time_slot_id,
            req.player_count,
        ),
        store::outbox::event(subjects::BOOKING_CONFIRMED, &events::confirmed(&booking)),
    ];
    if app.faults.planted(PlantedBug::DropOutbox) {
        events.remove(0);
    }
    store::outbox::enqueue(&mut tx, booking.id, &events).await?;
    let booked = locked.booked_players + req.player_count;
    store::set_booked(&mut tx, slot.game_time_slot_id, booked, at).await?;
    if let Some(key) = &req.idempotency_key {
        let ttl = app.config.idempotency_ttl;
        if !idempotency::remember(&mut tx, req.user_id, key, fingerprint, booking.id, ttl).await? {
            // Someone else's live key with the same name committed meanwhile (another body).
            return Err(Conflict::Key);
        }
    }
    crate::ticket::Ticket::current().start_write();
    if let Err(e) = tx.commit().await.step("committing the booking") {
        if !e.may_have_committed() {
            return Err(e.into());
        }
        return lost_commit(app, slot.game_time_slot_id, &number, e).await;
    }
    app.relay_wake.event_rows_written();
    app.metrics.created_by("alone", 1);
    app.faults.crash_at(FaultPoint::AfterCommit);
    Ok(booking.into_response(
        vec![payment.into_wire()?],
        vec![history.into_wire()],
        Some(1),
    )?)
}

/// A lone create whose commit's answer was lost: its booking, if the look-up finds it; "not
/// applied" (the commit's error) if it finds none; "outcome unknown" if it cannot look.
async fn lost_commit(
    app: &App,
    slot_id: i32,
    number: &str,
    error: ServiceError,
) -> std::result::Result<BookingResponse, Conflict> {
    app.metrics.lost_commit_lookups.inc();
    tracing::warn!(%error, "a create's commit may have happened without its answer; looking it up");
    let numbers = [number.to_owned()];
    match crate::settle::bookings(&app.pool, &[slot_id], &numbers).await {
        Ok(found) => match found.get(number) {
            Some(&id) => crate::settle::read_back(&app.pool, id, "the booking")
                .await
                .map_err(Conflict::Service),
            None => Err(Conflict::Service(error)),
        },
        Err(why) => Err(Conflict::Service(ServiceError::OutcomeUnknown {
            step: "the booking",
            why,
        })),
    }
}
