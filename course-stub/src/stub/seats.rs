//! What the stub does to its catalogue: book and release under the drop, duplicate and dedup
//! rules (refusing as the real course-service would), the desk's drift, the state report and the
//! catalogue broadcast.

use contracts::course::{Game, SlotSeats, SlotStatus, TimeSlot};
use contracts::subjects;
use contracts::sync::{GameSync, GameTimeSlotSync};
use rand::Rng as _;
use serde_json::Value;

use crate::control::{Drift, SlotCount, StubState, SyncReport};

use super::replies::{not_found_slot, refusal, updated_row};
use super::{State, Stub, REFUSED_IDS_KEPT};

impl Stub {
    /// Handles a book or release under the drop, duplicate and dedup rules. `None` when the
    /// message is dropped (no answer). A message id counts as seen only once its message was
    /// applied, so a refused message can be sent again later and be applied then.
    pub(super) fn seats(
        &self,
        seats: &SlotSeats,
        book: bool,
        msg_id: Option<String>,
    ) -> Option<Value> {
        let mut state = self.lock();
        state.counts.received += 1;
        let (drop, dup) = (state.faults.drop_fraction, state.faults.duplicate_fraction);
        if drop > 0.0 && state.rng.random_bool(drop) {
            state.counts.dropped += 1;
            return None;
        }
        let copies = if dup > 0.0 && state.rng.random_bool(dup) {
            state.counts.duplicated += 1;
            2
        } else {
            1
        };
        let code = if book {
            "GAME_TIMESLOT_BOOK_FAILED"
        } else {
            "GAME_TIMESLOT_RELEASE_FAILED"
        };
        let mut answer = Value::Null;
        for _ in 0..copies {
            match &msg_id {
                Some(id) if state.seen.contains(id) => {
                    state.counts.deduplicated += 1;
                    if let Some(slot) = state.slots.get(&seats.time_slot_id) {
                        answer = updated_row(slot);
                    }
                    continue;
                }
                Some(_) => {}
                None => state.counts.without_id += 1,
            }
            match apply(&mut state, seats, book) {
                Ok(row) => {
                    if let Some(id) = &msg_id {
                        state.seen.insert(id.clone());
                    }
                    state.counts.applied += 1;
                    answer = row;
                }
                Err(message) => {
                    state.counts.refused += 1;
                    if let Some(id) = &msg_id {
                        if state.refused_ids.len() < REFUSED_IDS_KEPT {
                            state.refused_ids.push(id.clone());
                        }
                    }
                    tracing::warn!(slot = seats.time_slot_id, book, %message, "refused");
                    answer = refusal(code, message);
                }
            }
        }
        Some(answer)
    }

    /// Books seats on course-service's side only (capped at capacity; negative seats give the
    /// desk's seats back); returns the seats moved.
    pub(super) fn drift(&self, drift: &Drift) -> i32 {
        let mut state = self.lock();
        let ids: Vec<i32> = state
            .order
            .iter()
            .take(drift.slots as usize)
            .copied()
            .collect();
        let mut moved = 0;
        for id in ids {
            let external = state.external.get(&id).copied().unwrap_or(0);
            let Some(slot) = state.slots.get_mut(&id) else {
                continue;
            };
            // Never past capacity, and never more given back than the desk booked.
            let seats = drift
                .seats
                .clamp(-external, (slot.max_players - slot.booked_players).max(0));
            slot.booked_players += seats;
            slot.status = status_for(slot.booked_players, slot.max_players);
            state.external.insert(id, external + seats);
            moved += seats;
        }
        tracing::info!(moved, "seats booked outside booking-service");
        moved
    }

    pub(super) fn state(&self) -> StubState {
        let state = self.lock();
        StubState {
            slots: state
                .order
                .iter()
                .filter_map(|id| state.slots.get(id))
                .map(|s| SlotCount {
                    id: s.id,
                    max_players: s.max_players,
                    booked_players: s.booked_players,
                    external: state.external.get(&s.id).copied().unwrap_or(0),
                })
                .collect(),
            counts: state.counts.clone(),
            faults: state.faults.clone(),
            refused_ids: state.refused_ids.clone(),
        }
    }

    /// Emits the catalogue as `booking.game.sync` and `booking.gameTimeSlot.sync` events.
    pub(super) async fn sync(&self, stale: bool) -> anyhow::Result<SyncReport> {
        let (games, slots) = {
            let state = self.lock();
            let mut games: Vec<Game> = state.games.values().cloned().collect();
            games.sort_by_key(|g| g.id);
            let slots: Vec<TimeSlot> = state
                .order
                .iter()
                .filter_map(|id| state.slots.get(id))
                .cloned()
                .collect();
            (games, slots)
        };
        for game in &games {
            let body = self
                .codec
                .encode_event(subjects::BOOKING_GAME_SYNC, &GameSync::from(game))?;
            self.nats
                .publish(subjects::BOOKING_GAME_SYNC, body.into())
                .await?;
        }
        for slot in &slots {
            let mut sync = GameTimeSlotSync::from(slot);
            if stale {
                sync.booked_players = 0;
                sync.available_players = Some(slot.max_players);
                sync.is_available = Some(true);
                sync.status = SlotStatus::Available;
            }
            let body = self
                .codec
                .encode_event(subjects::BOOKING_SLOT_SYNC, &sync)?;
            self.nats
                .publish(subjects::BOOKING_SLOT_SYNC, body.into())
                .await?;
        }
        self.nats.flush().await?;
        tracing::info!(
            games = games.len(),
            slots = slots.len(),
            stale,
            "catalogue synced"
        );
        Ok(SyncReport {
            games: games.len(),
            slots: slots.len(),
        })
    }
}

fn status_for(booked: i32, max: i32) -> SlotStatus {
    if booked >= max {
        SlotStatus::FullyBooked
    } else {
        SlotStatus::Available
    }
}

/// Applies one book or release to the state, or says why the real course-service would refuse it.
fn apply(state: &mut State, seats: &SlotSeats, book: bool) -> Result<Value, String> {
    let lenient = state.faults.lenient;
    let Some(slot) = state.slots.get_mut(&seats.time_slot_id) else {
        state.counts.unknown_slot += 1;
        return Err(not_found_slot(seats.time_slot_id));
    };
    let n = seats.player_count;
    if book {
        if !lenient && slot.status != SlotStatus::Available {
            return Err(format!(
                "Time slot is not available (status: {})",
                slot.status.as_str()
            ));
        }
        let booked = slot.booked_players + n;
        if !lenient && booked > slot.max_players {
            return Err(format!(
                "Not enough capacity. Available: {}, Requested: {n}",
                slot.max_players - slot.booked_players
            ));
        }
        if booked > slot.max_players {
            state.counts.over_capacity += 1;
        }
        slot.booked_players = booked;
    } else {
        let booked = slot.booked_players - n;
        // The real service clamps with Math.max(0, ..) and answers success; a lenient stub keeps
        // the negative count so that out-of-order messages still converge.
        if booked < 0 && !lenient {
            state.counts.clamped += 1;
            slot.booked_players = 0;
        } else {
            slot.booked_players = booked;
        }
    }
    // Both real handlers set the status from the count alone (a release reopens a CLOSED slot).
    slot.status = status_for(slot.booked_players, slot.max_players);
    Ok(updated_row(slot))
}
