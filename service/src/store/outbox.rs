//! The writing side of the transactional outbox: the rows a booking change queues in its own
//! transaction (book/release for course-service, booking events for consumers), each with the
//! relay loop (`channel`) and the ordering lane it belongs to; a row as it goes to delivery
//! ([`Claimed`]), and the release of rows handed to a relay that had stopped. The relay is in
//! `outbox/`.

use contracts::course::SlotSeats;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Result, StepExt as _};

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
    pub(crate) subject: &'static str,
    pub(crate) payload: Value,
    slot: Option<i32>,
}

impl Pending {
    /// The relay loop and lane of this event for `booking_id`: course-service messages go in their
    /// slot's lane (its count must see the slot's changes in commit order), booking events in
    /// their booking's.
    pub(crate) fn channel_and_lane(&self, booking_id: i32) -> (&'static str, String) {
        match self.slot {
            Some(slot) => (Channel::Course.as_str(), format!("slot:{slot}")),
            None => (Channel::Events.as_str(), format!("booking:{booking_id}")),
        }
    }
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
        .map(|e| e.channel_and_lane(booking_id))
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
    .await
    .step("queueing the events")?;
    Ok(())
}

/// A row on its way to delivery: claimed by a relay, or handed to it by the create that wrote it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) event_id: uuid::Uuid,
    pub(crate) event_type: String,
    pub(crate) payload: Value,
    pub(crate) retry_count: i32,
}

/// Gives leased rows back to any relay's claim at once (rows handed to a relay that had stopped).
pub(crate) async fn release(pool: &sqlx::PgPool, ids: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE outbox_events SET next_attempt_at = now() WHERE id = ANY($1) AND status = 'PENDING'",
    )
    .bind(ids)
    .execute(pool)
    .await
    .step("releasing handed outbox rows")?;
    Ok(())
}
