//! One delivery attempt and how it is recorded: book/release as NestJS requests to course-service
//! (a `success:false` answer is a refusal, not a delivery), booking events through the
//! [`EventSink`]; failures retried with capped, jittered backoff.

use std::time::Duration;

use contracts::{subjects, MessageId, ReplyOutcome, MSG_ID_HEADER};
use rand::Rng as _;
use serde_json::Value;

use super::rows::{self, Claimed};
use super::sink::EventSink;
use crate::app::App;
use crate::error::{Result, ServiceError};
use crate::faults::{FaultPoint, PlantedBug};

/// How one delivery attempt ended.
enum Delivery {
    /// The peer has it.
    Delivered,
    /// Course-service answered `success:false`: its answer, as JSON text.
    Refused(String),
}

/// Delivers a claimed row and records a refusal or a failure; a delivered row's id is returned,
/// for the loop to mark it SENT together with the others that settled meanwhile. A failure to
/// record is logged and the row's lease brings it back.
pub(super) async fn settle(app: &App, events: &EventSink, row: Claimed) -> Option<i64> {
    let outcome = deliver(app, events, &row).await;
    let result = match &outcome {
        Ok(Delivery::Refused(answer)) if !app.faults.planted(PlantedBug::AcceptRefusals) => {
            app.metrics.outbox_rejection(&row.event_type);
            tracing::error!(
                event = %row.event_type,
                event_id = %row.event_id,
                payload = %row.payload,
                answer = %answer,
                "course-service refused an event: the row is REJECTED and waits for an operator (POST /outbox/redrive)"
            );
            record(app, || rows::mark_rejected(&app.relay_pool, row.id, answer)).await
        }
        Ok(_) => return Some(row.id),
        Err(error) => {
            app.metrics.nats_publish_failures.inc();
            let attempts = row.retry_count + 1;
            let backoff = backoff(attempts, app.config.outbox_retry_cap);
            if attempts == app.config.outbox_max_attempts {
                tracing::error!(event = %row.event_type, event_id = %row.event_id, attempts, error = %error,
                    "event delivery is stuck; it is still retried every {:?}", app.config.outbox_retry_cap);
            } else {
                tracing::warn!(event = %row.event_type, attempts, error = %error, "event delivery failed; will retry");
            }
            if row.event_type.starts_with("booking.") {
                // The server may have lost (or gained) JetStream, e.g. after a reconnect.
                events.refresh(app, true).await;
            }
            let error = error.to_string();
            record(app, || {
                rows::mark_retry(&app.relay_pool, row.id, attempts, &error, backoff)
            })
            .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, id = row.id, "could not record an outbox delivery; the lease will expire and it is retried");
    }
    None
}

/// Marks delivered rows SENT in one statement (after the crash point that sits between a
/// delivery and its record).
pub(super) async fn record_sent(app: &App, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    app.faults.crash_at_passes(
        FaultPoint::BeforeMarkSent,
        u64::try_from(ids.len()).unwrap_or(u64::MAX),
    );
    if let Err(e) = record(app, || rows::mark_sent(&app.relay_pool, ids)).await {
        tracing::warn!(error = %e, rows = ids.len(), "could not mark delivered events sent; their leases will expire and they are sent again (deduplicated by Nats-Msg-Id)");
    }
}

/// Records a delivery's outcome (an idempotent statement), sending it again while the database
/// cannot be reached, for at most half the lease: the row is this relay's until then. Giving up
/// at once left a delivered row to wait out its whole lease (24 s in the db-blackhole scenario)
/// and be sent again, although the database was back within a second.
async fn record<F, Fut>(app: &App, mut statement: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = std::time::Instant::now() + app.config.outbox_lease / 2;
    let mut pause = Duration::from_millis(50);
    loop {
        match statement().await {
            Err(e) if e.is_unreachable() && std::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %e, "recording an outbox delivery failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

/// Capped exponential backoff with full jitter: 100 ms · 2^attempts, at most `cap`.
fn backoff(attempts: i32, cap: Duration) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1u32 << attempts.clamp(0, 20))
        .min(cap);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

/// Sends one row to its peer.
async fn deliver(app: &App, events: &EventSink, row: &Claimed) -> Result<Delivery> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, row.event_id.to_string().as_str());
    let subject = row.event_type.clone();
    match row.event_type.as_str() {
        subjects::SLOTS_BOOK | subjects::SLOTS_RELEASE => {
            // The course client's requests (its timeout and reply limit), without its retries
            // and breaker: the relay has its own schedule.
            let reply = app
                .course
                .nest()
                .request_with(&subject, &row.payload, &MessageId::fresh(), Some(headers))
                .await
                // Nobody listening (NATS 503) and a slow listener need different fixes; the
                // error says which.
                .map_err(|e| ServiceError::Unavailable(format!("{}: {e}", row.event_type)))?;
            match reply.outcome {
                // course-service answers its refusals inside `response` (read liberally: only
                // `success` matters); anything else there is an acknowledgement.
                ReplyOutcome::Response(value)
                    if value.get("success") == Some(&Value::Bool(false)) =>
                {
                    Ok(Delivery::Refused(value.to_string()))
                }
                ReplyOutcome::Response(_) => Ok(Delivery::Delivered),
                ReplyOutcome::Err(err) => Err(ServiceError::Unavailable(format!(
                    "course-service failed: {err}"
                ))),
                ReplyOutcome::NoHandler(text) => Err(ServiceError::Unavailable(text)),
            }
        }
        _ => {
            let body = app.codec.encode_event(&subject, &row.payload)?;
            events.publish(app, subject, headers, body).await?;
            Ok(Delivery::Delivered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `OUTBOX_RETRY_CAP_MS`.
    const MAX_BACKOFF: Duration = Duration::from_secs(60);

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 0..40 {
            let b = backoff(attempts, MAX_BACKOFF);
            assert!(b <= MAX_BACKOFF, "{b:?}");
            assert!(b >= Duration::from_millis(50));
        }
        assert!(backoff(30, MAX_BACKOFF) >= MAX_BACKOFF / 2);
        assert!(backoff(30, Duration::from_secs(1)) <= Duration::from_secs(1));
    }
}
