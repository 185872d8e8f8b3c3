//! The transactional outbox (seed §5.2, §10.2): events are rows written in the same transaction as
//! the booking change, and a relay delivers them after commit.
//!
//! The relay wakes on `LISTEN outbox_events` (a trigger notifies after each insert) and polls as a
//! back-up. It claims a batch with `FOR UPDATE SKIP LOCKED` and pushes each row's
//! `next_attempt_at` forward (a lease), so replicas never hold the same row and a crashed relay's
//! rows come back when the lease runs out. `gameTimeSlots.book`/`release` go to course-service as
//! NestJS requests and count as delivered only when a reply arrives; booking events go to
//! JetStream and count on the publish ack. Every message carries the row's `event_id` as
//! `Nats-Msg-Id`, so a redelivery after a crash is deduplicated downstream.

use std::sync::Arc;
use std::time::Duration;

use contracts::course::SlotSeats;
use contracts::{subjects, Codec, MessageId, ReplyOutcome, MSG_ID_HEADER};
use rand::Rng as _;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::app::App;
use crate::error::{Result, ServiceError};

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// An event to write: subject and payload.
pub(crate) struct Pending {
    subject: &'static str,
    payload: Value,
}

/// A book/release message for course-service.
pub(crate) fn seats(subject: &'static str, slot_id: i32, players: i32) -> Pending {
    event(
        subject,
        &SlotSeats {
            time_slot_id: slot_id,
            player_count: players,
        },
    )
}

/// Any event.
pub(crate) fn event(subject: &'static str, payload: &impl Serialize) -> Pending {
    Pending {
        subject,
        payload: serde_json::to_value(payload).unwrap_or(Value::Null),
    }
}

/// Writes events for `booking_id` inside the caller's transaction.
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    booking_id: i32,
    events: &[Pending],
) -> Result<()> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|_| uuid::Uuid::new_v4()).collect();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject).collect();
    let payloads: Vec<Value> = events.iter().map(|e| e.payload.clone()).collect();
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT id, 'Booking', $2, subject, payload FROM UNNEST($1::uuid[], $3::text[], $4::jsonb[]) \
         AS e(id, subject, payload)",
    )
    .bind(&ids)
    .bind(booking_id.to_string())
    .bind(&subjects)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A claimed row.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: i64,
    event_id: uuid::Uuid,
    event_type: String,
    payload: Value,
    retry_count: i32,
}

/// Runs the relay until `shutdown` turns true, then finishes the batch in hand.
pub(crate) async fn relay(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let jetstream = async_nats::jetstream::new(app.nats.clone());
    let mut stream_ready = ensure_stream(&app, &jetstream).await;
    let mut listener = listen(&app).await;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let claimed = match claim(&app).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not claim rows");
                Vec::new()
            }
        };
        // A delivered row may release its aggregate's next one: claim again until nothing is due.
        let busy = !claimed.is_empty();
        if !claimed.is_empty() && !stream_ready {
            stream_ready = ensure_stream(&app, &jetstream).await;
        }
        let deliveries = claimed.into_iter().map(|row| {
            let app = app.clone();
            let jetstream = jetstream.clone();
            async move { settle(&app, &jetstream, row).await }
        });
        futures::future::join_all(deliveries).await;
        if busy {
            continue;
        }
        let wake = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(app.config.outbox_poll).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake => {}
            _ = tokio::time::sleep(app.config.outbox_poll) => {}
            _ = shutdown.changed() => {}
        }
        if listener.is_none() {
            listener = listen(&app).await;
        }
    }
    tracing::info!("outbox relay stopped");
}

async fn listen(app: &App) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(&app.pool).await.ok()?;
    listener.listen("outbox_events").await.ok()?;
    Some(listener)
}

/// Creates the booking-events stream if it is missing. `false` when JetStream is unavailable
/// (events then go out as plain NATS messages).
async fn ensure_stream(app: &App, js: &async_nats::jetstream::Context) -> bool {
    let config = async_nats::jetstream::stream::Config {
        name: app.config.events_stream.clone(),
        subjects: vec![
            subjects::BOOKING_CONFIRMED.into(),
            subjects::BOOKING_CANCELLED.into(),
        ],
        duplicate_window: duplicate_window(app.config.outbox_max_attempts, app.config.outbox_lease),
        ..Default::default()
    };
    match js.get_or_create_stream(config).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "JetStream stream unavailable; booking events go out as core NATS messages");
            false
        }
    }
}

/// Claims up to a batch of due rows. A row waits while an earlier row of the same aggregate on the
/// same channel (course-service, or booking events) is still pending, so one booking's `release`
/// never overtakes its `book`, and `booking.cancelled` never overtakes `booking.confirmed`. The
/// earlier row stays `PENDING` while another relay holds its lease, so this holds across replicas.
async fn claim(app: &App) -> Result<Vec<Claimed>> {
    let sql = "UPDATE outbox_events SET next_attempt_at = now() + $2 WHERE id IN ( \
         SELECT o.id FROM outbox_events o WHERE o.status = 'PENDING' AND o.next_attempt_at <= now() \
         AND NOT EXISTS (SELECT 1 FROM outbox_events e WHERE e.status = 'PENDING' \
           AND e.aggregate_type = o.aggregate_type AND e.aggregate_id = o.aggregate_id AND e.id < o.id \
           AND (e.event_type LIKE 'gameTimeSlots.%') = (o.event_type LIKE 'gameTimeSlots.%')) \
         ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED) \
         RETURNING id, event_id, event_type, payload, retry_count";
    let mut rows: Vec<Claimed> = sqlx::query_as(sql)
        .bind(app.config.outbox_batch)
        .bind(app.config.outbox_lease)
        .fetch_all(&app.pool)
        .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

async fn settle(app: &App, js: &async_nats::jetstream::Context, row: Claimed) {
    let outcome = deliver(app, js, &row).await;
    let result = match &outcome {
        Ok(()) => {
            app.config
                .crash_at(crate::config::FaultPoint::BeforeMarkSent);
            sqlx::query(
                "UPDATE outbox_events SET status = 'SENT', processed_at = now(), last_error = NULL WHERE id = $1",
            )
            .bind(row.id)
            .execute(&app.pool)
            .await
        }
        Err(error) => {
            app.metrics.nats_publish_failures.inc();
            let attempts = row.retry_count + 1;
            let backoff = backoff(attempts);
            tracing::warn!(event = %row.event_type, attempts, error = %error, "event delivery failed; will retry");
            sqlx::query(
                "UPDATE outbox_events SET retry_count = $2, last_error = $3, \
                 next_attempt_at = now() + $4, status = CASE WHEN $2 >= $5 THEN 'FAILED' ELSE 'PENDING' END \
                 WHERE id = $1",
            )
            .bind(row.id)
            .bind(attempts)
            .bind(error.to_string())
            .bind(backoff)
            .bind(app.config.outbox_max_attempts)
            .execute(&app.pool)
            .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, id = row.id, "could not record an outbox delivery; the lease will expire and it is retried");
    }
}

/// JetStream's dedup window must outlast every retry of one event: at most `attempts` waits of
/// [`MAX_BACKOFF`] and `attempts` leases, with an hour as the floor.
fn duplicate_window(attempts: i32, lease: Duration) -> Duration {
    let attempts = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
    let horizon = (MAX_BACKOFF + lease).saturating_mul(attempts);
    horizon.max(Duration::from_secs(3600))
}

/// Capped exponential backoff with full jitter: 100 ms · 2^attempts, at most [`MAX_BACKOFF`].
fn backoff(attempts: i32) -> Duration {
    let ceiling = Duration::from_millis(100)
        .saturating_mul(1u32 << attempts.clamp(0, 20))
        .min(MAX_BACKOFF);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

async fn deliver(app: &App, js: &async_nats::jetstream::Context, row: &Claimed) -> Result<()> {
    let codec = Codec::with_max_len(1024 * 1024);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, row.event_id.to_string().as_str());
    let subject = row.event_type.clone();
    match row.event_type.as_str() {
        subjects::SLOTS_BOOK | subjects::SLOTS_RELEASE => {
            let id = MessageId::fresh();
            let body = codec.encode_request(&subject, &row.payload, &id)?;
            let request = async_nats::Request::new()
                .payload(body.into())
                .headers(headers)
                .timeout(Some(app.config.course_timeout));
            let reply = app.nats.send_request(subject, request).await.map_err(|e| {
                // Nobody listening (NATS 503) and a slow listener need different fixes.
                let why = match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => "no responders",
                    async_nats::RequestErrorKind::TimedOut => "timed out",
                    _ => "request failed",
                };
                ServiceError::Unavailable(format!("{}: {why}: {e}", row.event_type))
            })?;
            match codec.decode_reply(&reply.payload)?.outcome {
                // A refusal (`success:false`) is still an answer: course-service has seen the event.
                ReplyOutcome::Response(_) => Ok(()),
                ReplyOutcome::Err(err) => Err(ServiceError::Unavailable(format!(
                    "course-service refused: {err}"
                ))),
                ReplyOutcome::NoHandler(text) => Err(ServiceError::Unavailable(text)),
            }
        }
        _ => {
            let body = codec.encode_event(&subject, &row.payload)?;
            match js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone().into())
                .await
            {
                Ok(ack) => {
                    ack.await.map_err(|e| {
                        ServiceError::Unavailable(format!("JetStream ack for {subject}: {e}"))
                    })?;
                    Ok(())
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::context::PublishErrorKind::StreamNotFound
                    ) =>
                {
                    // No stream (JetStream off): plain NATS, which consumers also receive.
                    app.nats
                        .publish_with_headers(subject, headers, body.into())
                        .await
                        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                    app.nats
                        .flush()
                        .await
                        .map_err(|e| ServiceError::Unavailable(e.to_string()))
                }
                Err(e) => Err(ServiceError::Unavailable(format!(
                    "publishing {subject}: {e}"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_window_outlasts_every_retry() {
        let lease = Duration::from_secs(30);
        assert_eq!(duplicate_window(5, lease), Duration::from_secs(3600));
        assert!(duplicate_window(100, lease) > (MAX_BACKOFF + lease) * 100 - lease);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 0..40 {
            let b = backoff(attempts);
            assert!(b <= MAX_BACKOFF, "{b:?}");
            assert!(b >= Duration::from_millis(50));
        }
        assert!(backoff(30) >= MAX_BACKOFF / 2);
    }
}
