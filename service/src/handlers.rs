//! The NATS handlers, one file per family:
//! - `handlers/create.rs`: `booking.create`;
//! - `handlers/change.rs`: `booking.cancel`, `booking.update`;
//! - `handlers/query.rs`: `booking.findById`, `findByNumber`, `findByUserId`, `search`,
//!   `gameTimeSlots.availability`;
//! - `handlers/sync.rs`: `booking.game.sync`, `booking.gameTimeSlot.sync`.
//!
//! [`dispatch`] decodes a message's data into the subject's payload type, runs the handler and
//! returns the reply value as JSON.

mod change;
mod create;
mod query;
mod sync;

use contracts::booking::BookingResponse;
use contracts::{subjects as s, Codec, Success};
use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::error::{Result, ServiceError};
use crate::replies::{self, Share};

fn to_value(reply: impl Serialize) -> Result<Value> {
    serde_json::to_value(reply).map_err(|e| ServiceError::Internal(e.into()))
}

fn encoded_len(value: &impl Serialize) -> Result<usize> {
    serde_json::to_vec(value)
        .map(|bytes| bytes.len())
        .map_err(|e| ServiceError::Internal(e.into()))
}

/// `booking` as a reply value of at most `room` bytes: its oldest history entries are left out
/// until it fits (`historyTotal` still counts them), or `BookingTooLarge` when it does not fit
/// with none. Handlers that change a booking call it before their commit.
pub(crate) fn fit(
    app: &App,
    booking: BookingResponse,
    room: usize,
) -> Result<Success<BookingResponse>> {
    let fitted = trim_history(booking, room);
    if let Err(ServiceError::BookingTooLarge { .. }) = &fitted {
        app.metrics.replies_too_large.inc();
    }
    fitted
}

fn trim_history(booking: BookingResponse, room: usize) -> Result<Success<BookingResponse>> {
    let mut reply = Success::new(booking);
    let mut len = encoded_len(&reply)?;
    while len > room {
        let Some(entry) = reply.data.histories.pop() else {
            return Err(ServiceError::BookingTooLarge {
                bytes: len,
                max: room,
            });
        };
        // The entry, and the comma that parted it from the one before.
        let comma = usize::from(!reply.data.histories.is_empty());
        len = len.saturating_sub(encoded_len(&entry)? + comma);
    }
    Ok(reply)
}

/// A handler's reply value and the share of the reply budget it holds until NATS has the reply.
pub(crate) type Answered = (Result<Value>, Share);

/// Runs the handler of `subject` on `data`; `None` when no handler matches. `room` is how many
/// bytes the reply's value may take (`usize::MAX` when nobody waits for one).
pub(crate) async fn dispatch(
    app: &App,
    subject: &str,
    data: Value,
    room: usize,
) -> Option<Answered> {
    let call = Call {
        app,
        expected: replies::expected(subject, &data),
    };
    let answered = match subject {
        s::BOOKING_CREATE => {
            // Its booking event went to the relay by hand, or the path that wrote it asked the
            // events loop to claim it; only course-service's row waits for a claim here.
            let answered = call.run(data, |req| create::create(app, req, room)).await;
            app.relay_wake.course_rows_written();
            answered
        }
        s::BOOKING_FIND_BY_ID => {
            call.run(data, |req| query::find_by_id(app, req, room))
                .await
        }
        s::BOOKING_FIND_BY_NUMBER => {
            call.run(data, |req| query::find_by_number(app, req, room))
                .await
        }
        s::BOOKING_FIND_BY_USER_ID => call.run(data, |req| query::find_by_user_id(app, req)).await,
        s::BOOKING_SEARCH => call.run(data, |req| query::search(app, req)).await,
        s::BOOKING_AVAILABILITY => call.run(data, |req| query::availability(app, req)).await,
        s::BOOKING_UPDATE => wake(
            app,
            call.run(data, |req| change::update(app, req, room)).await,
        ),
        s::BOOKING_CANCEL => wake(
            app,
            call.run(data, |req| change::cancel(app, req, room)).await,
        ),
        s::BOOKING_GAME_SYNC => call.run(data, |req| sync::game(app, req)).await,
        s::BOOKING_SLOT_SYNC => call.run(data, |req| sync::slot(app, req)).await,
        _ => return None,
    };
    Some(answered)
}

/// After a handler that may have committed outbox rows: its own relay looks at once (a refusal
/// costs one spare look, at most one per `OUTBOX_CLAIM_GAP_MS`).
fn wake(app: &App, answered: Answered) -> Answered {
    app.relay_wake.rows_written();
    answered
}

/// Attempts of a handler whose transaction hit a transient database error.
const DB_ATTEMPTS: u32 = 3;

/// One message's handling: the app, and the reply bytes its subject may need at most.
struct Call<'a> {
    app: &'a App,
    expected: usize,
}

impl Call<'_> {
    /// Decodes the request, waits for its share of the reply budget, runs the handler (again
    /// after a transient database error) and turns its reply into JSON.
    async fn run<Req, Resp, F, Fut>(&self, data: Value, mut handler: F) -> Answered
    where
        Req: serde::de::DeserializeOwned + contracts::Validate + Clone,
        Resp: Serialize,
        F: FnMut(Req) -> Fut,
        Fut: std::future::Future<Output = Result<Resp>>,
    {
        // Decoded and checked first: a body waiting for its turn holds its typed request,
        // never a JSON tree that can be many times its bytes.
        let request: Req = match Codec::decode_data(data) {
            Ok(request) => request,
            Err(e) => return (Err(e.into()), Share::default()),
        };
        let share = self.app.replies.take(self.expected).await;
        let mut attempt = 1;
        loop {
            match handler(request.clone()).await {
                Err(e) if attempt < DB_ATTEMPTS && e.is_retryable() => {
                    tracing::warn!(attempt, error = %e, "transient database error; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
                    attempt += 1;
                }
                result => return (result.and_then(to_value), share),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::booking::{BookingHistoryEntry, BookingStatus};
    use contracts::Won;

    fn booking(entries: i32) -> BookingResponse {
        let at = chrono::DateTime::UNIX_EPOCH;
        BookingResponse {
            id: 1,
            booking_number: "BK-00000000-0000".into(),
            user_id: 1,
            game_id: 1,
            game_time_slot_id: 1,
            game_name: None,
            game_code: None,
            front_nine_course_id: None,
            front_nine_course_name: None,
            back_nine_course_id: None,
            back_nine_course_name: None,
            club_id: None,
            club_name: None,
            booking_date: at,
            start_time: "09:00".into(),
            end_time: "12:00".into(),
            player_count: 1,
            price_per_person: Won(15_000),
            service_fee: Won(450),
            total_price: Won(15_450),
            status: BookingStatus::Confirmed,
            payment_method: None,
            special_requests: Some("가".repeat(1000)),
            user_email: None,
            user_name: None,
            user_phone: None,
            payments: Vec::new(),
            histories: (0..entries)
                .map(|id| BookingHistoryEntry {
                    id,
                    booking_id: 1,
                    action: "UPDATED".into(),
                    details: Some(serde_json::json!({ "specialRequests": "가".repeat(100) })),
                    user_id: 1,
                    created_at: at,
                })
                .collect(),
            history_total: Some(i64::from(entries)),
            created_at: at,
            updated_at: at,
            can_cancel: None,
        }
    }

    fn len(reply: &Success<BookingResponse>) -> usize {
        serde_json::to_vec(reply).unwrap().len()
    }

    #[test]
    fn a_reply_that_fits_is_left_whole() {
        let whole = Success::new(booking(10));
        let fitted = trim_history(booking(10), len(&whole)).unwrap();
        assert_eq!(fitted, whole);
    }

    #[test]
    fn the_oldest_entries_go_until_the_reply_fits_and_no_more() {
        let whole = len(&Success::new(booking(10)));
        let mut bare = booking(10);
        bare.histories.clear();
        for room in (len(&Success::new(bare))..whole).step_by(97) {
            let fitted = trim_history(booking(10), room).unwrap();
            let kept = fitted.data.histories.len();
            assert!(len(&fitted) <= room, "{room}: {} bytes", len(&fitted));
            let mut one_more = booking(10);
            one_more.histories.truncate(kept + 1);
            assert!(len(&Success::new(one_more)) > room, "{room}: one more fits");
            assert_eq!(fitted.data.histories[..], booking(10).histories[..kept]);
            assert_eq!(fitted.data.history_total, Some(10));
        }
    }

    #[test]
    fn a_booking_that_does_not_fit_without_history_is_refused() {
        let bare = len(&Success::new(booking(0)));
        let refused = trim_history(booking(3), bare - 1).unwrap_err();
        assert!(
            matches!(refused, ServiceError::BookingTooLarge { bytes, .. } if bytes == bare),
            "{refused}"
        );
    }
}
