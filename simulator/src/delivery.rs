//! What a run reads of delivery for its verdicts: outbox rows left pending that nothing holds
//! back, the seats course-service rightly lacks per slot (rows it refused, and what waits behind
//! them, plus its own desk bookings), and how often a plain subscriber saw each booking event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use contracts::subjects;

use crate::checker::Accounted;

/// Outbox rows still PENDING that nothing holds back (a REJECTED row of the same booking and
/// channel holds the rows after it): (subject, attempts, last error).
pub(crate) async fn stranded(pool: &sqlx::PgPool) -> anyhow::Result<Vec<(String, i32, String)>> {
    Ok(sqlx::query_as(
        "SELECT o.event_type, o.retry_count, COALESCE(o.last_error, '') FROM outbox_events o \
         WHERE o.status = 'PENDING' AND NOT EXISTS (SELECT 1 FROM outbox_events e \
           WHERE e.status = 'REJECTED' AND e.aggregate_type = o.aggregate_type \
           AND e.aggregate_id = o.aggregate_id AND e.channel = o.channel AND e.id < o.id) \
         ORDER BY o.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Per slot, the seats of book/release rows course-service never applied because it refused them
/// (REJECTED) or an earlier row of their booking (held PENDING behind it), with the first answer.
pub(crate) async fn accounted(pool: &sqlx::PgPool) -> anyhow::Result<HashMap<i32, Accounted>> {
    let rows: Vec<(Option<i32>, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT (payload->>'timeSlotId')::int4, event_type, (payload->>'playerCount')::int8, \
         CASE WHEN status = 'REJECTED' THEN last_error END \
         FROM outbox_events WHERE channel = 'course' AND status <> 'SENT' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<i32, Accounted> = HashMap::new();
    for (slot, subject, seats, answer) in rows {
        let Some(slot) = slot else { continue };
        let a = out.entry(slot).or_default();
        a.undelivered += if subject == subjects::SLOTS_BOOK {
            -seats
        } else {
            seats
        };
        if a.why.is_none() {
            a.why = answer;
        }
    }
    Ok(out)
}

/// Adds course-stub's own seats (its desk) to what is accounted for.
pub(crate) fn with_external(
    mut accounted: HashMap<i32, Accounted>,
    stub: &course_stub::StubState,
) -> HashMap<i32, Accounted> {
    for s in stub.slots.iter().filter(|s| s.external != 0) {
        accounted.entry(s.id).or_default().external = i64::from(s.external);
    }
    accounted
}

pub(crate) fn stub_slots(stub: &course_stub::StubState) -> BTreeMap<i32, i32> {
    stub.slots
        .iter()
        .map(|s| (s.id, s.booked_players))
        .collect()
}

/// Counts every booking event a plain subscriber receives, by `Nats-Msg-Id` (with JetStream or
/// without, a core subscription sees each publish).
pub(crate) struct EventCounter {
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl EventCounter {
    pub(crate) async fn start(client: &async_nats::Client) -> anyhow::Result<Self> {
        use futures::StreamExt as _;
        let subs = vec![
            client.subscribe(subjects::BOOKING_CONFIRMED).await?,
            client.subscribe(subjects::BOOKING_CANCELLED).await?,
        ];
        client.flush().await?;
        let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::select_all(subs);
            while let Some(m) = messages.next().await {
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(contracts::MSG_ID_HEADER))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                if let Ok(mut c) = counts.lock() {
                    *c.entry(id).or_default() += 1;
                }
            }
        });
        Ok(Self { task, seen })
    }

    pub(crate) fn finish(&self) -> HashMap<String, u64> {
        self.task.abort();
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
