//! Idempotency keys of `booking.create`: a key names one booking per user for
//! `IDEMPOTENCY_TTL_SECS`; the same key with the same body is answered with that booking, with
//! another body it is refused (`BUS_003`).

use contracts::booking::{BookingResponse, CreateBookingRequest};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServiceError, StepExt as _};
use crate::store;

/// A digest of everything in the request but the key itself.
pub(crate) fn fingerprint(req: &CreateBookingRequest) -> String {
    let mut body = req.clone();
    body.idempotency_key = None;
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    format!("{:x}", Sha256::digest(bytes))
}

/// The booking first made with this user's key, or a refusal when the key was used for another
/// body; `None` when the key is free.
pub(crate) async fn replay(
    pool: &sqlx::PgPool,
    user_id: i32,
    key: &str,
    fingerprint: &str,
) -> Result<Option<BookingResponse>> {
    let hit: Option<(String, i32)> = sqlx::query_as(
        "SELECT request_hash, booking_id FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(pool)
    .await
    .step("reading the idempotency key")?;
    match hit {
        None => Ok(None),
        Some((hash, _)) if hash != fingerprint => Err(ServiceError::Duplicate(
            "Idempotency key was already used with a different request".into(),
        )),
        Some((_, booking_id)) => {
            tracing::info!(booking_id, "idempotent replay of booking.create");
            let mut conn = store::connection(pool).await?;
            Ok(Some(store::booking_by_id(&mut conn, booking_id).await?))
        }
    }
}

/// Whether a live key of this name exists (seen inside the slot lock's transaction).
pub(crate) async fn is_taken(tx: &mut sqlx::PgConnection, user_id: i32, key: &str) -> Result<bool> {
    let taken: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(tx)
    .await
    .step("checking the idempotency key")?;
    Ok(taken.is_some())
}

/// Stores the key for `booking_id` (an expired one of the same name is replaced); `false` when a
/// live key of that name committed meanwhile.
pub(crate) async fn remember(
    tx: &mut sqlx::PgConnection,
    user_id: i32,
    key: &str,
    fingerprint: &str,
    booking_id: i32,
    ttl: std::time::Duration,
) -> Result<bool> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1));
    let stored = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, booking_id, expires_at) \
         VALUES ($1, $2, $3, $4, now() + $5) \
         ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
         booking_id = EXCLUDED.booking_id, created_at = now(), expires_at = EXCLUDED.expires_at \
         WHERE idempotency_keys.expires_at <= now()",
    )
    .bind(user_id)
    .bind(key)
    .bind(fingerprint)
    .bind(booking_id)
    .bind(ttl)
    .execute(tx)
    .await
    .step("storing the idempotency key")?;
    Ok(stored.rows_affected() == 1)
}
