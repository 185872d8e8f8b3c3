//! Booking events handed to the relay in process: a `booking.confirmed` row that a one-statement
//! create writes is born leased to its own replica (`next_attempt_at` a lease ahead, so no other
//! relay claims it) and, once committed, is given to this replica's events loop as it is, so the
//! loop sends it without a claim. At 16 clients the claims (a window of the channel's PENDING
//! rows, then a lease `UPDATE` per row) cost the database a fifth of its statement time, half of
//! it for these rows.
//!
//! Only such rows: a new booking's confirmation heads both its lane and its booking, so nothing
//! may have to go before it. (A course-service row heads its slot's lane only if no earlier row
//! of that slot is unsent, which a one-statement create cannot see reliably: its snapshot
//! predates the slot lock it may wait for.) Room is reserved before the write, at most
//! `OUTBOX_BATCH` rows in hand at once; without room the rows are written due and claimed as
//! before. A replica that dies with rows in hand leaves them leased, and another relay takes them
//! when the lease runs out, as it does for rows that die in flight after a claim. That lease is
//! `OUTBOX_HANDOFF_LEASE_MS`, short: a write can commit while its answer is lost (the database
//! link hung), and its row, handed to nobody, waits out the lease (with the claim's 30 s,
//! db-blackhole seed 5 converged in 24 s against its 10 s bound).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::store::outbox::Claimed;

/// The replica's hand-over from its one-statement creates to its events loop.
#[derive(Debug)]
pub(crate) struct Handoff {
    rows: mpsc::UnboundedSender<Claimed>,
    inbox: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Claimed>>>,
    /// Rows in hand (reserved, queued or in flight) at most.
    room: Arc<Semaphore>,
    /// How far ahead a handed row's lease reaches.
    lease: Duration,
}

impl Handoff {
    /// Room for `capacity` rows in hand, each leased for `lease`.
    pub(crate) fn new(capacity: usize, lease: Duration) -> Self {
        let (rows, inbox) = mpsc::unbounded_channel();
        Self {
            rows,
            inbox: std::sync::Mutex::new(Some(inbox)),
            room: Arc::new(Semaphore::new(capacity)),
            lease,
        }
    }

    /// Room for `n` rows, or `None`: they are then written due, for a claim.
    pub(crate) fn reserve(&self, n: usize) -> Option<Reservation> {
        let permits = u32::try_from(n).ok()?;
        let permit = self.room.clone().try_acquire_many_owned(permits).ok()?;
        Some(Reservation {
            permit,
            lease: self.lease,
        })
    }

    /// Hands over committed rows; `held` is the reservation they were written under (room not
    /// used is given back). The ids of rows the relay no longer takes (it has stopped) come
    /// back: their leases should be released so that another relay claims them now.
    pub(crate) fn give(&self, held: Reservation, rows: Vec<Claimed>) -> Vec<i64> {
        let mut permit = held.permit;
        let mut refused = Vec::new();
        for row in rows {
            // Each row's permit goes back when its delivery settles (`settled`).
            match permit.split(1) {
                Some(one) => one.forget(),
                None => {
                    tracing::error!(id = row.id, "a booking event was handed over without room");
                }
            }
            if let Err(unsent) = self.rows.send(row) {
                self.room.add_permits(1);
                refused.push(unsent.0.id);
            }
        }
        refused
    }

    /// A handed row's delivery settled: its room is free again.
    pub(crate) fn settled(&self) {
        self.room.add_permits(1);
    }

    /// The events loop's end of the hand-over (taken once).
    pub(crate) fn inbox(&self) -> Option<mpsc::UnboundedReceiver<Claimed>> {
        self.inbox.lock().ok()?.take()
    }
}

/// Room reserved for rows about to be written leased.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: OwnedSemaphorePermit,
    lease: Duration,
}

impl Reservation {
    /// The lease the rows are written with.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }
}

/// A committed `booking.confirmed` row as the relay would have claimed it: `payload` is what the
/// statement stored (its `bookingId` stamped with the sequence's id, as the statement does).
pub(crate) fn confirmed(
    id: i64,
    event_id: uuid::Uuid,
    mut payload: Value,
    booking: i32,
) -> Claimed {
    if let Some(slot) = payload.get_mut("bookingId") {
        *slot = Value::from(booking);
    }
    Claimed {
        id,
        event_id,
        event_type: contracts::subjects::BOOKING_CONFIRMED.to_owned(),
        payload,
        retry_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_reserved_per_row_and_comes_back_as_rows_settle_or_go_unused() {
        let handoff = Handoff::new(3, Duration::from_secs(30));
        let mut inbox = handoff.inbox().expect("the inbox, once");
        assert!(handoff.inbox().is_none());
        let held = handoff.reserve(2).expect("room for two");
        assert!(handoff.reserve(2).is_none(), "one left");
        let row = confirmed(
            7,
            uuid::Uuid::nil(),
            serde_json::json!({"bookingId": 0}),
            41,
        );
        assert_eq!(row.payload["bookingId"], 41);
        // One of the two reserved rows was written: the other's room comes back at once.
        assert!(handoff.give(held, vec![row]).is_empty());
        assert_eq!(handoff.room.available_permits(), 2);
        assert_eq!(inbox.recv().await.map(|r| r.id), Some(7));
        handoff.settled();
        assert_eq!(handoff.room.available_permits(), 3);
        // Once the relay has stopped, rows handed over come back, and so does their room.
        inbox.close();
        let held = handoff.reserve(1).expect("room");
        let late = confirmed(8, uuid::Uuid::nil(), serde_json::json!({}), 42);
        assert_eq!(handoff.give(held, vec![late]), [8]);
        assert_eq!(handoff.room.available_permits(), 3);
    }
}
