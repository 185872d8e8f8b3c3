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

use contracts::{subjects as s, Codec};
use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::error::{Result, ServiceError};

fn to_value(reply: impl Serialize) -> Result<Value> {
    serde_json::to_value(reply).map_err(|e| ServiceError::Internal(e.into()))
}

/// Runs the handler of `subject` on `data`; `None` when no handler matches.
pub(crate) async fn dispatch(app: &App, subject: &str, data: Value) -> Option<Result<Value>> {
    let result = match subject {
        s::BOOKING_CREATE => {
            // Its booking event went to the relay by hand, or the path that wrote it asked the
            // events loop to claim it; only course-service's row waits for a claim here.
            let result = run(data, |req| create::create(app, req)).await;
            app.relay_wake.course_rows_written();
            result
        }
        s::BOOKING_FIND_BY_ID => run(data, |req| query::find_by_id(app, req)).await,
        s::BOOKING_FIND_BY_NUMBER => run(data, |req| query::find_by_number(app, req)).await,
        s::BOOKING_FIND_BY_USER_ID => run(data, |req| query::find_by_user_id(app, req)).await,
        s::BOOKING_SEARCH => run(data, |req| query::search(app, req)).await,
        s::BOOKING_AVAILABILITY => run(data, |req| query::availability(app, req)).await,
        s::BOOKING_UPDATE => wake(app, run(data, |req| change::update(app, req)).await),
        s::BOOKING_CANCEL => wake(app, run(data, |req| change::cancel(app, req)).await),
        s::BOOKING_GAME_SYNC => run(data, |req| sync::game(app, req)).await,
        s::BOOKING_SLOT_SYNC => run(data, |req| sync::slot(app, req)).await,
        _ => return None,
    };
    Some(result)
}

/// After a handler that may have committed outbox rows: its own relay looks at once (a refusal
/// costs one spare look, at most one per `OUTBOX_CLAIM_GAP_MS`).
fn wake(app: &App, result: Result<Value>) -> Result<Value> {
    app.relay_wake.rows_written();
    result
}

/// Attempts of a handler whose transaction hit a transient database error.
const DB_ATTEMPTS: u32 = 3;

async fn run<Req, Resp, F, Fut>(data: Value, mut handler: F) -> Result<Value>
where
    Req: serde::de::DeserializeOwned + contracts::Validate + Clone,
    Resp: Serialize,
    F: FnMut(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp>>,
{
    let request: Req = Codec::decode_data(data)?;
    let mut attempt = 1;
    loop {
        match handler(request.clone()).await {
            Err(e) if attempt < DB_ATTEMPTS && e.is_retryable() => {
                tracing::warn!(attempt, error = %e, "transient database error; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
                attempt += 1;
            }
            result => return to_value(result?),
        }
    }
}
