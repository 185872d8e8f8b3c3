//! `booking.create`: validate, find the slot (cache, or course-service on a miss), then one
//! transaction that locks the slot row, re-checks capacity, and writes booking, payment, history,
//! outbox events, the new cache count and the idempotency key together.

use chrono::NaiveTime;
use contracts::booking::{
    BookingHistoryEntry, BookingResponse, BookingStatus, CreateBookingRequest, Payment,
    PaymentStatus,
};
use contracts::course::SlotStatus;
use contracts::events::BookingConfirmed;
use contracts::{subjects, Success, Won};
use sha2::{Digest, Sha256};
use sqlx::Row as _;

use crate::app::App;
use crate::cache::{self, slot_state_sql, SlotFacts};
use crate::course::CourseError;
use crate::error::{Result, ServiceError};
use crate::faults::{FaultPoint, PlantedBug};
use crate::store::{self, now, utc, SlotRow};
use crate::{outbox, telemetry};

/// The reference's service fee: 3% of the players' total, floored.
const SERVICE_FEE_PERCENT: i64 = 3;
/// Payment method recorded when the request names none (the column is NOT NULL).
const DEFAULT_PAYMENT_METHOD: &str = "unspecified";

/// `BK-XXXXXXXX-XXXX` from a random UUID, as the reference does.
pub(crate) fn booking_number() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("BK-{}-{}", &hex[..8], &hex[8..12])
}

/// A digest of everything in the request but the key itself.
fn fingerprint(req: &CreateBookingRequest) -> String {
    let mut body = req.clone();
    body.idempotency_key = None;
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    format!("{:x}", Sha256::digest(bytes))
}

/// Returns the first booking made with this user's key, or refuses a key reused for another body.
async fn replay(
    app: &App,
    user_id: i32,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Success<BookingResponse>>> {
    let hit: Option<(String, i32)> = sqlx::query_as(
        "SELECT request_hash, booking_id FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(&app.pool)
    .await?;
    match hit {
        None => Ok(None),
        Some((hash, _)) if hash != fingerprint => Err(ServiceError::Duplicate(
            "Idempotency key was already used with a different request".into(),
        )),
        Some((_, booking_id)) => {
            tracing::info!(booking_id, "idempotent replay of booking.create");
            Ok(Some(Success::new(
                store::booking_by_id(&app.pool, booking_id).await?,
            )))
        }
    }
}

/// Finds the slot in the cache, fetching it from course-service when missing or older than the TTL.
async fn resolve_slot(app: &App, slot_id: i32) -> Result<SlotRow> {
    let ttl = chrono::Duration::from_std(app.config.cache_ttl).unwrap_or(chrono::Duration::MAX);
    let fresh = |row: &SlotRow| now() - row.last_sync_at <= ttl;
    let cached = store::slot(&app.pool, slot_id).await?;
    if let Some(row) = cached.as_ref().filter(|r| fresh(r)) {
        app.metrics.cache_hits.inc();
        return Ok(row.clone());
    }
    app.metrics.cache_misses.inc();
    tracing::info!("Slot cache miss for gameTimeSlotId: {slot_id}");
    // One fetch per slot at a time: later callers wait, then find the row fresh.
    let _guard = app.course.lock_slot(slot_id).await;
    if let Some(row) = store::slot(&app.pool, slot_id).await?.filter(|r| fresh(r)) {
        return Ok(row);
    }
    let fetched = async {
        let slot = app.course.time_slot(slot_id).await?;
        let game = app.course.game(slot.game_id).await.ok();
        Ok::<_, CourseError>((slot, game))
    }
    .await;
    match fetched {
        Ok((slot, game)) => {
            let mut tx = app.pool.begin().await?;
            if let Some(game) = &game {
                let sync = contracts::sync::GameSync::from(game);
                cache::upsert_game(&mut *tx, &(&sync).into()).await?;
            }
            cache::upsert_slot(&mut *tx, &SlotFacts::from(&slot)).await?;
            tx.commit().await?;
            tracing::info!("GameTimeSlotCache synced for gameTimeSlotId: {slot_id}");
            store::slot(&app.pool, slot_id).await?.ok_or_else(|| {
                anyhow::anyhow!("slot {slot_id} vanished right after its upsert").into()
            })
        }
        Err(CourseError::Refused(message)) => Err(ServiceError::NotFound(format!(
            "Game time slot {slot_id} not found: course-service said \"{message}\""
        ))),
        Err(e) => match cached {
            // A stale row is better than no booking while course-service is away.
            Some(stale) => {
                tracing::warn!(slot_id, error = %e, "course-service unavailable; using the stale cache row");
                app.metrics.stale_fallbacks.inc();
                Ok(stale)
            }
            None => Err(ServiceError::Unavailable(e.to_string())),
        },
    }
}

/// `booking.create`.
pub(crate) async fn create(
    app: &App,
    req: CreateBookingRequest,
) -> Result<Success<BookingResponse>> {
    let fingerprint = fingerprint(&req);
    let Some(key) = &req.idempotency_key else {
        return attempt(app, &req, &fingerprint).await;
    };
    if let Some(replayed) = replay(app, req.user_id, key, &fingerprint).await? {
        return Ok(replayed);
    }
    match attempt(app, &req, &fingerprint).await {
        // The key was free when this attempt began, but an earlier attempt with the same key (one
        // its client gave up waiting for) may have committed since and taken the last seats: look
        // again before saying no, so a retry is never told "full" while its booking exists.
        Err(e)
            if !matches!(e, ServiceError::Duplicate(_))
                && !app.faults.planted(PlantedBug::RefuseKeyedRetry) =>
        {
            match replay(app, req.user_id, key, &fingerprint).await {
                Ok(Some(replayed)) => Ok(replayed),
                _ => Err(e),
            }
        }
        other => other,
    }
}

/// One create without looking at its key first: resolve the slot, pre-check, then the transaction.
async fn attempt(
    app: &App,
    req: &CreateBookingRequest,
    fingerprint: &str,
) -> Result<Success<BookingResponse>> {
    let slot = resolve_slot(app, req.game_time_slot_id).await?;
    if req.player_count > slot.max_players {
        return Err(ServiceError::Validation(format!(
            "playerCount must be between 1 and {} for this slot, got {}",
            slot.max_players, req.player_count
        )));
    }
    // Losers of a rush are answered from the cache without queueing on the row lock; the lock
    // below re-checks for everyone else.
    if slot.status == SlotStatus::Closed.as_str() {
        return Err(ServiceError::Rule(
            "Selected time slot is not available".into(),
        ));
    }
    if slot.available_players < req.player_count {
        return Err(full(slot.available_players, req.player_count));
    }
    match insert(app, req, &slot, fingerprint).await {
        Err(Conflict::Key) => {
            let key = req.idempotency_key.as_deref().unwrap_or_default();
            replay(app, req.user_id, key, fingerprint)
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency key vanished during replay").into())
        }
        Err(Conflict::Service(e)) => {
            // Losing a race for the last seats is expected, not an error of ours; the caller is
            // answered and server.rs logs every refusal once at INFO.
            if matches!(e, ServiceError::Database(_) | ServiceError::Internal(_)) {
                tracing::error!("Failed to create booking: {e}");
            }
            Err(e)
        }
        Ok(booking) => {
            app.metrics.booking_created.inc();
            tracing::info!(
                user = %telemetry::mask_email(&req.user_email),
                "Booking {} created successfully.",
                booking.booking_number
            );
            Ok(Success::new(booking))
        }
    }
}

fn full(available: i32, requested: i32) -> ServiceError {
    ServiceError::Rule(format!(
        "Selected time slot is no longer available: {available} seats left, {requested} requested"
    ))
}

/// Why the insert transaction stopped.
enum Conflict {
    /// Another request with the same idempotency key committed first.
    Key,
    /// Anything else.
    Service(ServiceError),
}

impl<E: Into<ServiceError>> From<E> for Conflict {
    fn from(e: E) -> Self {
        Conflict::Service(e.into())
    }
}

async fn insert(
    app: &App,
    req: &CreateBookingRequest,
    slot: &SlotRow,
    fingerprint: &str,
) -> std::result::Result<BookingResponse, Conflict> {
    let mut tx = app.pool.begin().await.map_err(ServiceError::from)?;
    let lock = if app.faults.planted(PlantedBug::SkipRowLock) {
        ""
    } else {
        " FOR UPDATE"
    };
    let read = format!(
        "SELECT max_players, booked_players, status, price::int8 AS price FROM game_time_slot_cache \
         WHERE game_time_slot_id = $1{lock}"
    );
    let locked = sqlx::query(&read)
        .bind(slot.game_time_slot_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "Game time slot {} not found",
                slot.game_time_slot_id
            ))
        })?;
    let max: i32 = locked.try_get("max_players").map_err(ServiceError::from)?;
    let booked: i32 = locked
        .try_get("booked_players")
        .map_err(ServiceError::from)?;
    let status: String = locked.try_get("status").map_err(ServiceError::from)?;
    let price: i64 = locked.try_get("price").map_err(ServiceError::from)?;

    if let Some(key) = &req.idempotency_key {
        // A duplicate that waited for the slot lock sees the first one's key here.
        let taken: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()",
        )
        .bind(req.user_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(ServiceError::from)?;
        if taken.is_some() {
            return Err(Conflict::Key);
        }
    }
    if status == SlotStatus::Closed.as_str() {
        return Err(Conflict::Service(ServiceError::Rule(
            "Selected time slot is not available".into(),
        )));
    }
    if max - booked < req.player_count {
        return Err(Conflict::Service(full(max - booked, req.player_count)));
    }

    let game: Option<(i32, i32)> = sqlx::query_as(
        "SELECT front_nine_course_id, back_nine_course_id FROM game_cache WHERE game_id = $1",
    )
    .bind(slot.game_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(ServiceError::from)?;
    let (front_id, back_id) = game.map_or((None, None), |(f, b)| (Some(f), Some(b)));

    let amount = Won(price * i64::from(req.player_count));
    let fee = amount.percent_floor(SERVICE_FEE_PERCENT);
    let total = Won(amount.get() + fee.get());
    let number = booking_number();
    let at = now();
    let booking_date = slot.date.and_time(NaiveTime::MIN);
    let status = BookingStatus::Confirmed;
    let method = req
        .payment_method
        .clone()
        .unwrap_or_else(|| DEFAULT_PAYMENT_METHOD.into());

    let booking_id: i32 = sqlx::query_scalar(
        "INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20::\"BookingStatus\", $21, $22, $23, $24, $25, $26, $26) RETURNING id",
    )
    .bind(&number)
    .bind(req.user_id)
    .bind(slot.game_id)
    .bind(slot.game_time_slot_id)
    .bind(&slot.game_name)
    .bind(&slot.game_code)
    .bind(front_id)
    .bind(&slot.front_nine_course_name)
    .bind(back_id)
    .bind(&slot.back_nine_course_name)
    .bind(slot.club_id)
    .bind(&slot.club_name)
    .bind(booking_date)
    .bind(&slot.start_time)
    .bind(&slot.end_time)
    .bind(req.player_count)
    .bind(price)
    .bind(fee.get())
    .bind(total.get())
    .bind(status.as_str())
    .bind(&req.payment_method)
    .bind(&req.special_requests)
    .bind(&req.user_email)
    .bind(&req.user_name)
    .bind(&req.user_phone)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .map_err(ServiceError::from)?;

    let payment_id: i32 = sqlx::query_scalar(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'PENDING', $4, $4) RETURNING id",
    )
    .bind(booking_id)
    .bind(total.get())
    .bind(&method)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .map_err(ServiceError::from)?;

    let details = serde_json::json!({
        "playerCount": req.player_count,
        "totalPrice": total.get().to_string(),
        "paymentMethod": req.payment_method,
        "gameName": slot.game_name,
        "gameTimeSlotId": slot.game_time_slot_id,
    });
    let history_id: i32 = sqlx::query_scalar(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, 'CREATED', $2, $3, $4) RETURNING id",
    )
    .bind(booking_id)
    .bind(&details)
    .bind(req.user_id)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .map_err(ServiceError::from)?;

    let confirmed = BookingConfirmed {
        booking_id,
        booking_number: number.clone(),
        user_id: req.user_id,
        game_id: slot.game_id,
        game_name: slot.game_name.clone().unwrap_or_default(),
        front_nine_course_name: slot.front_nine_course_name.clone().unwrap_or_default(),
        back_nine_course_name: slot.back_nine_course_name.clone().unwrap_or_default(),
        booking_date: contracts::time::iso_millis::format(&utc(booking_date)),
        time_slot: slot.start_time.clone(),
        player_count: req.player_count,
        total_price: total,
        user_email: req.user_email.clone(),
        user_name: req.user_name.clone(),
    };
    let mut events = vec![
        outbox::seats(
            subjects::SLOTS_BOOK,
            slot.game_time_slot_id,
            req.player_count,
        ),
        outbox::event(subjects::BOOKING_CONFIRMED, &confirmed),
    ];
    if app.faults.planted(PlantedBug::DropOutbox) {
        events.remove(0);
    }
    outbox::enqueue(&mut tx, booking_id, &events).await?;

    let update = concat!(
        "UPDATE game_time_slot_cache SET booked_players = $2, updated_at = $3, ",
        slot_state_sql!("max_players", "$2", "false"),
        " WHERE game_time_slot_id = $1"
    );
    sqlx::query(update)
        .bind(slot.game_time_slot_id)
        .bind(booked + req.player_count)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(ServiceError::from)?;

    if let Some(key) = &req.idempotency_key {
        let ttl = chrono::Duration::from_std(app.config.idempotency_ttl)
            .unwrap_or(chrono::Duration::days(1));
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, booking_id, expires_at) \
             VALUES ($1, $2, $3, $4, now() + $5) \
             ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
             booking_id = EXCLUDED.booking_id, created_at = now(), expires_at = EXCLUDED.expires_at \
             WHERE idempotency_keys.expires_at <= now()",
        )
        .bind(req.user_id)
        .bind(key)
        .bind(fingerprint)
        .bind(booking_id)
        .bind(ttl)
        .execute(&mut *tx)
        .await
        .map_err(ServiceError::from)?;
        if stored.rows_affected() == 0 {
            // Someone else's live key with the same name committed meanwhile (another body).
            return Err(Conflict::Key);
        }
    }
    tx.commit().await.map_err(ServiceError::from)?;
    app.faults.crash_at(FaultPoint::AfterCommit);

    Ok(BookingResponse {
        id: booking_id,
        booking_number: number,
        user_id: req.user_id,
        game_id: slot.game_id,
        game_time_slot_id: slot.game_time_slot_id,
        game_name: slot.game_name.clone(),
        game_code: slot.game_code.clone(),
        front_nine_course_id: front_id,
        front_nine_course_name: slot.front_nine_course_name.clone(),
        back_nine_course_id: back_id,
        back_nine_course_name: slot.back_nine_course_name.clone(),
        club_id: slot.club_id,
        club_name: slot.club_name.clone(),
        booking_date: utc(booking_date),
        start_time: slot.start_time.clone(),
        end_time: slot.end_time.clone(),
        player_count: req.player_count,
        price_per_person: Won(price),
        service_fee: fee,
        total_price: total,
        status,
        payment_method: req.payment_method.clone(),
        special_requests: req.special_requests.clone(),
        user_email: Some(req.user_email.clone()),
        user_name: Some(req.user_name.clone()),
        user_phone: req.user_phone.clone(),
        payments: vec![Payment {
            id: payment_id,
            booking_id,
            amount: total,
            payment_method: method,
            payment_status: PaymentStatus::Pending,
            transaction_id: None,
            paid_at: None,
            created_at: utc(at),
            updated_at: utc(at),
        }],
        histories: vec![BookingHistoryEntry {
            id: history_id,
            booking_id,
            action: "CREATED".into(),
            details: Some(details),
            user_id: req.user_id,
            created_at: utc(at),
        }],
        created_at: utc(at),
        updated_at: utc(at),
        can_cancel: None,
    })
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
