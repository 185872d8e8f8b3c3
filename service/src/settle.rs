//! What became of a write whose commit's answer was lost (DESIGN.md §5, failure paths). A write
//! that failed in a way that may have come after its commit was sent (a connection lost, a reply
//! that could not be read) is never run again blindly: the service looks, on another connection,
//! for the rows it generated before the write (booking numbers, the update's own timestamp), and
//! answers what it finds; when it cannot look, the answer says the outcome is unknown.
//!
//! A look-up first takes the written rows' locks `FOR SHARE` (the slots a create booked, the
//! booking a cancel or update changed): while the lost transaction is still open on the server
//! (its `COMMIT` still in a socket buffer) that waits for it to end, so the select after it sees
//! the last word, committed or rolled back. That is conclusive only for a transaction that took
//! those locks before its `COMMIT`; a one-statement write takes them only once it runs, and may
//! still be on its way, so not finding its rows leaves its outcome unknown.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::ServiceError;
use crate::store;

/// Longest a look-up may take; the request's own deadline may cut it shorter, and then the
/// caller hears "outcome unknown" (its ticket says the write had started).
pub(crate) const WITHIN: Duration = Duration::from_secs(5);

/// Which of `numbers` are stored bookings (number to id), once no transaction holding `slots`
/// can still commit; `Err` with why when that could not be found out.
pub(crate) async fn bookings(
    pool: &sqlx::PgPool,
    slots: &[i32],
    numbers: &[String],
) -> Result<HashMap<String, i32>, String> {
    let look = async {
        let mut tx = store::begin(pool).await?;
        sqlx::query(
            "SELECT 1 FROM game_time_slot_cache WHERE game_time_slot_id = ANY($1) \
             ORDER BY game_time_slot_id FOR SHARE",
        )
        .bind(slots)
        .execute(&mut *tx)
        .await?;
        let found: Vec<(String, i32)> = sqlx::query_as(
            "SELECT booking_number, id FROM bookings WHERE booking_number = ANY($1)",
        )
        .bind(numbers)
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(found.into_iter().collect())
    };
    within("the bookings", look).await
}

/// Whether history entry `history` of booking `booking` is stored, once no transaction holding
/// the booking's row can still commit.
pub(crate) async fn history_written(
    pool: &sqlx::PgPool,
    booking: i32,
    history: i32,
) -> Result<bool, String> {
    let look = async {
        let mut tx = store::begin(pool).await?;
        sqlx::query("SELECT 1 FROM bookings WHERE id = $1 FOR SHARE")
            .bind(booking)
            .execute(&mut *tx)
            .await?;
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM booking_history WHERE id = $1)")
                .bind(history)
                .fetch_one(&mut *tx)
                .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(found)
    };
    within("the change", look).await
}

/// A look-up's result within [`WITHIN`]; `Err` says why it is not known.
async fn within<T>(
    what: &str,
    look: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(WITHIN, look).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(format!("looking {what} up failed: {e}")),
        Err(_) => Err(format!("looking {what} up took over {WITHIN:?}")),
    }
}

/// A booking known to be written, as its caller gets it; `AppliedUnread` when it cannot be read.
pub(crate) async fn read_back(
    pool: &sqlx::PgPool,
    id: i32,
    step: &'static str,
) -> Result<contracts::booking::BookingResponse, ServiceError> {
    let read = async {
        let mut conn = pool.acquire().await?;
        store::booking_by_id(&mut conn, id).await
    };
    read.await
        .map_err(|e: ServiceError| ServiceError::AppliedUnread {
            step,
            why: e.to_string(),
        })
}
