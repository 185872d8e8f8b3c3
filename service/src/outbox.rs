//! The transactional outbox (seed §5.2, §10.2): events are rows written in the same transaction as
//! the booking change, and a relay delivers them after commit.
//!
//! Two relay loops run side by side, one per channel, so a slow course-service never holds up
//! booking events: `course` sends `gameTimeSlots.book`/`release` as NestJS requests, `events` sends
//! `booking.confirmed`/`booking.cancelled` to JetStream (or, where the server has no JetStream, as
//! core NATS messages: detected at start and checked again every few seconds and after a failure).
//! Each loop wakes on `LISTEN outbox_events` and polls as a back-up, reads the rows that may go
//! next and leases them by pushing `next_attempt_at` forward in an `UPDATE` that re-checks each row
//! under its lock, so replicas never hold the same row and a crashed relay's rows come back when
//! the lease runs out. Up to
//! `OUTBOX_BATCH` rows are in flight per loop; each is recorded as soon as it settles, so one slow
//! answer delays only its own lane.
//!
//! Order: a row waits while an earlier row of its lane is PENDING (the lane is the slot for
//! course-service messages, whose count must see the slot's changes in commit order, and the booking
//! for booking events), and while an earlier row of its booking on its channel is not SENT in any
//! state, so a booking's `release` never overtakes its `book`, even a refused one. A row held behind
//! a refused row of its own booking does not hold up its lane: other bookings' rows go on.
//!
//! Outcomes: delivered rows are SENT; a `success:false` answer from course-service is a refusal,
//! not a delivery: the row becomes REJECTED with the peer's answer, is logged once at ERROR and
//! counted (`outbox_rejections`, `outbox_rejected`), and waits for an operator (`POST
//! /outbox/redrive`). Booking-service stays the system of record: it does not cancel a customer's
//! booking because course-service's derived count disagrees. Failures are retried with capped
//! backoff forever; after `OUTBOX_MAX_ATTEMPTS` a row is logged as stuck and shown by
//! `outbox_stuck`. Every message carries the row's `event_id` as `Nats-Msg-Id`, so a redelivery
//! after a crash is deduplicated downstream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contracts::course::SlotSeats;
use contracts::{subjects, MessageId, ReplyOutcome, MSG_ID_HEADER};
use rand::Rng as _;
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::app::App;
use crate::error::{Result, ServiceError};
use crate::faults::{FaultPoint, PlantedBug};

/// The default `OUTBOX_RETRY_CAP_MS`, for tests.
#[cfg(test)]
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How often the events loop asks the server again whether it has JetStream.
const JETSTREAM_RECHECK: Duration = Duration::from_secs(10);

/// Which relay loop owns a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Book/release requests to course-service.
    Course,
    /// Booking events for consumers (JetStream, or core NATS).
    Events,
}

impl Channel {
    /// The `channel` column's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Channel::Course => "course",
            Channel::Events => "events",
        }
    }
}

/// An event to write: subject, payload, and the slot for course-service messages.
pub(crate) struct Pending {
    subject: &'static str,
    payload: Value,
    slot: Option<i32>,
}

/// A book/release message for course-service.
pub(crate) fn seats(subject: &'static str, slot_id: i32, players: i32) -> Pending {
    Pending {
        slot: Some(slot_id),
        ..event(
            subject,
            &SlotSeats {
                time_slot_id: slot_id,
                player_count: players,
            },
        )
    }
}

/// Any event.
pub(crate) fn event(subject: &'static str, payload: &impl Serialize) -> Pending {
    Pending {
        subject,
        payload: serde_json::to_value(payload).unwrap_or(Value::Null),
        slot: None,
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
    let (channels, lanes): (Vec<&str>, Vec<String>) = events
        .iter()
        .map(|e| match e.slot {
            Some(slot) => (Channel::Course.as_str(), format!("slot:{slot}")),
            None => (Channel::Events.as_str(), format!("booking:{booking_id}")),
        })
        .unzip();
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) \
         SELECT id, 'Booking', $2, subject, payload, channel, lane \
         FROM UNNEST($1::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::text[]) \
         AS e(id, subject, payload, channel, lane)",
    )
    .bind(&ids)
    .bind(booking_id.to_string())
    .bind(&subjects)
    .bind(&payloads)
    .bind(&channels)
    .bind(&lanes)
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

/// Runs both relay loops until `shutdown` turns true; each finishes the rows it has in flight.
pub(crate) async fn relay(app: Arc<App>, shutdown: watch::Receiver<bool>) {
    let events = Arc::new(EventSink::new(&app));
    events.refresh(&app, true).await;
    let course = tokio::spawn(run_channel(
        app.clone(),
        Channel::Course,
        events.clone(),
        shutdown.clone(),
    ));
    run_channel(app, Channel::Events, events, shutdown).await;
    let _ = course.await;
    tracing::info!("outbox relay stopped");
}

async fn run_channel(
    app: Arc<App>,
    channel: Channel,
    events: Arc<EventSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = listen(&app).await;
    let mut in_flight = tokio::task::JoinSet::new();
    let batch = usize::try_from(app.config.outbox_batch).unwrap_or(1).max(1);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let room = batch.saturating_sub(in_flight.len());
        let claimed = if room == 0 {
            Vec::new()
        } else {
            claim(&app, channel, room).await.unwrap_or_else(|e| {
                tracing::warn!(channel = channel.as_str(), error = %e, "outbox relay could not claim rows");
                Vec::new()
            })
        };
        if !claimed.is_empty() {
            for row in claimed {
                let (app, events) = (app.clone(), events.clone());
                in_flight.spawn(async move { settle(&app, &events, row).await });
            }
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
            // A settled row frees room, and may let the next row of its lane go.
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = wake => {}
            _ = tokio::time::sleep(app.config.outbox_poll) => {}
            _ = shutdown.changed() => {}
        }
        if listener.is_none() {
            listener = listen(&app).await;
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn listen(app: &App) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(&app.pool).await.ok()?;
    listener.listen("outbox_events").await.ok()?;
    Some(listener)
}

/// Where booking events go: JetStream when the server has it, core NATS otherwise.
struct EventSink {
    js: async_nats::jetstream::Context,
    /// JetStream answered the last check and the stream exists.
    jetstream: AtomicBool,
    /// When JetStream was last checked.
    checked: Mutex<Option<Instant>>,
}

impl EventSink {
    fn new(app: &App) -> Self {
        Self {
            js: async_nats::jetstream::new(app.nats.clone()),
            jetstream: AtomicBool::new(false),
            checked: Mutex::new(None),
        }
    }

    /// Asks the server whether it has JetStream (and creates the stream) when `force`d or when the
    /// last answer is older than [`JETSTREAM_RECHECK`]: after a reconnect the server may differ.
    async fn refresh(&self, app: &App, force: bool) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let due = force || checked.is_none_or(|at| at.elapsed() >= JETSTREAM_RECHECK);
            if !due {
                return;
            }
            *checked = Some(Instant::now());
        }
        let available = match jetstream_enabled(&app.nats).await {
            Ok(()) => ensure_stream(app, &self.js).await,
            Err(e) => {
                tracing::debug!(error = %e, "no JetStream on this server");
                false
            }
        };
        let before = self.jetstream.swap(available, Ordering::SeqCst);
        if before != available || force {
            if available {
                tracing::info!(stream = %app.config.events_stream, "booking events go to JetStream");
            } else {
                tracing::warn!("the NATS server has no JetStream: booking events go out as core NATS messages (no server-side dedup)");
            }
        }
    }
}

/// Whether the server answers JetStream's account-info request. Read liberally: the typed
/// `query_account` of async-nats 0.51 cannot parse the answer of nats-server 2.9 (the version
/// Debian ships), which once made every JetStream server look like a core one.
async fn jetstream_enabled(nats: &async_nats::Client) -> anyhow::Result<()> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        nats.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer to $JS.API.INFO within 5 s"))??;
    let info: Value = serde_json::from_slice(&reply.payload)?;
    match info.get("error") {
        None if info.get("type").is_some() || info.get("limits").is_some() => Ok(()),
        None => anyhow::bail!("unexpected answer to $JS.API.INFO"),
        Some(error) => anyhow::bail!("JetStream refused: {error}"),
    }
}

/// Creates the booking-events stream if it is missing.
async fn ensure_stream(app: &App, js: &async_nats::jetstream::Context) -> bool {
    let window = duplicate_window(
        app.config.outbox_max_attempts,
        app.config.outbox_retry_cap,
        app.config.outbox_lease,
    );
    let config = async_nats::jetstream::stream::Config {
        name: app.config.events_stream.clone(),
        subjects: vec![
            subjects::BOOKING_CONFIRMED.into(),
            subjects::BOOKING_CANCELLED.into(),
        ],
        duplicate_window: window,
        // Bounded: a stream without limits grows until the disk is full.
        max_age: app.config.events_max_age.max(window),
        max_bytes: app.config.events_max_bytes,
        ..Default::default()
    };
    // Create it, or bring an existing stream's limits up to date.
    let result = match js.get_stream(&config.name).await {
        Ok(_) => js
            .update_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(_) => js
            .create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "JetStream stream unavailable");
            false
        }
    }
}

/// The due rows of one channel that head both their lane and their booking (see the module docs),
/// found by sorting the channel's unsent rows once (DISTINCT ON) rather than asking "is there an
/// earlier row?" per row, which is quadratic in the backlog after an outage.
const HEADS: &str = "WITH unsent AS ( \
       SELECT id, lane, aggregate_type, aggregate_id, status FROM outbox_events \
       WHERE channel = $1 AND status <> 'SENT'), \
     refused AS ( \
       SELECT aggregate_type, aggregate_id, min(id) AS first FROM unsent \
       WHERE status = 'REJECTED' GROUP BY 1, 2), \
     lane_heads AS ( \
       SELECT DISTINCT ON (u.lane) u.id FROM unsent u \
       LEFT JOIN refused r ON r.aggregate_type = u.aggregate_type \
         AND r.aggregate_id = u.aggregate_id AND r.first < u.id \
       WHERE u.status = 'PENDING' AND r.first IS NULL ORDER BY u.lane, u.id), \
     booking_heads AS ( \
       SELECT DISTINCT ON (aggregate_type, aggregate_id) id FROM unsent \
       ORDER BY aggregate_type, aggregate_id, id) \
     SELECT o.id FROM lane_heads l JOIN booking_heads b ON b.id = l.id \
     JOIN outbox_events o ON o.id = l.id \
     WHERE o.status = 'PENDING' AND o.next_attempt_at <= now() ORDER BY o.id LIMIT $2";

/// Claims up to `limit` due rows of `channel`, in id order. The heads are read without locks, then
/// leased by one `UPDATE` that re-checks each row under its row lock, so of two relays reading the
/// same heads only one leases each row. (One statement with `FOR UPDATE SKIP LOCKED` around the
/// sorts spent a second per claim re-checking rows that other relay tasks had just updated.)
async fn claim(app: &App, channel: Channel, limit: usize) -> Result<Vec<Claimed>> {
    let heads: Vec<i64> = sqlx::query_scalar(HEADS)
        .bind(channel.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&app.pool)
        .await?;
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<Claimed> = sqlx::query_as(
        "UPDATE outbox_events SET next_attempt_at = now() + $2 \
         WHERE id = ANY($1) AND status = 'PENDING' AND next_attempt_at <= now() \
         RETURNING id, event_id, event_type, payload, retry_count",
    )
    .bind(&heads)
    .bind(app.config.outbox_lease)
    .fetch_all(&app.pool)
    .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// How one delivery attempt ended.
enum Delivery {
    /// The peer has it.
    Delivered,
    /// Course-service answered `success:false`: its answer, as JSON text.
    Refused(String),
}

async fn settle(app: &App, events: &EventSink, row: Claimed) {
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
            sqlx::query(
                "UPDATE outbox_events SET status = 'REJECTED', retry_count = retry_count + 1, \
                 last_error = $2, processed_at = now() WHERE id = $1",
            )
            .bind(row.id)
            .bind(answer)
            .execute(&app.pool)
            .await
        }
        Ok(_) => {
            app.faults.crash_at(FaultPoint::BeforeMarkSent);
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
            sqlx::query(
                "UPDATE outbox_events SET retry_count = $2, last_error = $3, next_attempt_at = now() + $4 \
                 WHERE id = $1",
            )
            .bind(row.id)
            .bind(attempts)
            .bind(error.to_string())
            .bind(backoff)
            .execute(&app.pool)
            .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, id = row.id, "could not record an outbox delivery; the lease will expire and it is retried");
    }
}

/// JetStream's dedup window must outlast the retries of one event that JetStream may already
/// hold (an ack lost on the way back): `attempts` waits of at most `cap` and `attempts` leases,
/// with an hour as the floor.
fn duplicate_window(attempts: i32, cap: Duration, lease: Duration) -> Duration {
    let attempts = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
    let horizon = (cap + lease).saturating_mul(attempts);
    horizon.max(Duration::from_secs(3600))
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
            events.refresh(app, false).await;
            if events.jetstream.load(Ordering::SeqCst) {
                let ack = events
                    .js
                    .publish_with_headers(subject.clone(), headers, body.into())
                    .await
                    .map_err(|e| ServiceError::Unavailable(format!("publishing {subject}: {e}")))?;
                ack.await.map_err(|e| {
                    ServiceError::Unavailable(format!("JetStream ack for {subject}: {e}"))
                })?;
            } else {
                // Core NATS: delivered to whoever listens now; a flush proves it left.
                app.nats
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                app.nats
                    .flush()
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            }
            Ok(Delivery::Delivered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_window_outlasts_every_retry() {
        let lease = Duration::from_secs(30);
        assert_eq!(
            duplicate_window(5, MAX_BACKOFF, lease),
            Duration::from_secs(3600)
        );
        assert!(duplicate_window(100, MAX_BACKOFF, lease) > (MAX_BACKOFF + lease) * 100 - lease);
    }

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
