//! The replica's in-memory copies of slot cache rows, for `booking.create` only.
//!
//! A create that finds a fresh copy goes to its write without reading the row first: every write
//! re-checks what it relies on under the row's lock (room, status and price), and requires the
//! row's `last_sync_at` to be the copy's, so names, times and the game of an older copy are never
//! written. A copy is trusted to say yes, never to say no: a create that a copy would refuse
//! reads the row again, and that read always starts after the create arrived.
//!
//! Reads of one slot are coalesced: they run one at a time, and a caller takes the row of a read
//! that started after it arrived (by this module's clock) instead of starting its own. So each
//! answer rests on a read made during its own request, and a rush of thousands on one slot costs
//! a handful of reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::store::{self, SlotRow};

/// Most slots with an entry; past it, idle entries are dropped (so do their copies).
const MAX_SLOTS: usize = 16_384;

/// A moment on the copies' clock: when a request arrived, or a read started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(u64);

/// One slot's reads and copy.
#[derive(Debug, Default)]
struct Entry {
    /// Held while the slot is read: one read at a time.
    gate: tokio::sync::Mutex<()>,
    /// The newest read: when it started, and what it found (`None`: no such row).
    last: Mutex<Option<(Ticket, Option<SlotRow>)>>,
}

impl Entry {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(Ticket, Option<SlotRow>)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The copies of one replica.
#[derive(Debug, Default)]
pub(crate) struct SlotCopies {
    clock: AtomicU64,
    slots: Mutex<HashMap<i32, Arc<Entry>>>,
}

impl SlotCopies {
    /// Now, on the copies' clock. Every call returns a later moment than all earlier calls.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.clock.fetch_add(1, Ordering::SeqCst))
    }

    /// The copy of `slot_id`, if a read found its row.
    pub(crate) fn copy(&self, slot_id: i32) -> Option<SlotRow> {
        let entry = self.slots().get(&slot_id).cloned()?;
        let last = entry.last();
        last.as_ref().and_then(|(_, row)| row.clone())
    }

    /// The row of `slot_id` as read by a query that started after `since`: the caller's own
    /// read, or one it shares with callers that arrived before it started.
    pub(crate) async fn read(
        &self,
        pool: &sqlx::PgPool,
        slot_id: i32,
        since: Ticket,
    ) -> Result<Option<SlotRow>> {
        let entry = self.entry(slot_id);
        let _gate = entry.gate.lock().await;
        if let Some((started, row)) = entry.last().as_ref() {
            if *started > since {
                return Ok(row.clone());
            }
        }
        let started = self.ticket();
        let row = store::slot(pool, slot_id).await?;
        *entry.last() = Some((started, row.clone()));
        Ok(row)
    }

    /// Counts `players` more seats taken on the copy of `slot_id` after this replica's own
    /// booking committed, so the next create's pre-check sees them. (Other replicas' bookings
    /// are seen at the next read; until then the copy says yes too often, and the write says no.)
    pub(crate) fn took(&self, slot_id: i32, players: i32) {
        let Some(entry) = self.slots().get(&slot_id).cloned() else {
            return;
        };
        let mut last = entry.last();
        if let Some((_, Some(row))) = last.as_mut() {
            row.booked_players += players;
            row.available_players = (row.max_players - row.booked_players).max(0);
        }
    }

    /// Drops the copy of `slot_id` after a write found the slot unable to take a create the
    /// copy let through (another replica sold the seats, say): until then every create of the
    /// slot would queue for its row lock to be refused there, instead of reading the count once.
    pub(crate) fn forget(&self, slot_id: i32) {
        if let Some(entry) = self.slots().get(&slot_id).cloned() {
            *entry.last() = None;
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Entry>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `slot_id`, made if missing; memory stays bounded whatever ids arrive.
    fn entry(&self, slot_id: i32) -> Arc<Entry> {
        let mut slots = self.slots();
        if let Some(entry) = slots.get(&slot_id) {
            return entry.clone();
        }
        if slots.len() >= MAX_SLOTS {
            // Entries nobody holds are dropped; one in use stays until its reads end.
            slots.retain(|_, e| Arc::strong_count(e) > 1);
        }
        let entry = Arc::new(Entry::default());
        if slots.len() < MAX_SLOTS {
            slots.insert(slot_id, entry.clone());
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_only_go_forward() {
        let copies = SlotCopies::default();
        let a = copies.ticket();
        let b = copies.ticket();
        assert!(b > a);
    }

    #[test]
    fn entries_stay_bounded_whatever_ids_arrive() {
        let copies = SlotCopies::default();
        for id in 0..(MAX_SLOTS as i32 * 3) {
            let _ = copies.entry(id);
        }
        assert!(copies.slots().len() <= MAX_SLOTS);
    }
}
