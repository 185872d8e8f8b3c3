//! The stub itself: catalogue state, the course-service handlers, faults and the control plane.
//!
//! By default it answers exactly as the real NestJS course-service does (its game NATS controller
//! and time-slot service): every handler answers inside `response`, failures as
//! `{"success":false,"error":{"code":"GAME_TIMESLOT_BOOK_FAILED","message":..}}` with no timestamp;
//! `book` refuses an unknown slot, a slot that is not `AVAILABLE` and a count past capacity;
//! `release` refuses only an unknown slot and clamps its count at zero; the `book`/`release` reply
//! is the slot row without the game's names. [`Faults::lenient`] brings back a kinder stand-in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::course::{
    CourseReply, Game, GameQuery, PeerError, PeerErrorDetail, SlotSeats, SlotStatus, TimeSlot,
    TimeSlotQuery,
};
use contracts::sync::{GameSync, GameTimeSlotSync};
use contracts::{subjects, Codec, ErrorCode, ErrorValue, InboundKind, Success, MSG_ID_HEADER};
use futures::StreamExt as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::control::{self, Counts, Drift, Faults, SlotCount, StubState, SyncReport, SyncRequest};

/// Refused message ids kept for `courseStub.state`.
const REFUSED_IDS_KEPT: usize = 10_000;

/// How to run a stub.
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// NATS to connect to.
    pub nats_url: String,
    /// How to log in to NATS.
    pub login: contracts::NatsLogin,
    /// Seeds every random fault decision.
    pub seed: u64,
    /// The catalogue.
    pub catalog: Catalog,
    /// Faults in force from the start.
    pub faults: Faults,
    /// Emit the whole catalogue as sync messages once listening.
    pub sync_on_start: bool,
}

/// Everything the handlers share, behind one lock (no `.await` while it is held).
struct State {
    slots: HashMap<i32, TimeSlot>,
    order: Vec<i32>,
    games: HashMap<i32, Game>,
    seen: HashSet<String>,
    external: HashMap<i32, i32>,
    refused_ids: Vec<String>,
    counts: Counts,
    faults: Faults,
    rng: ChaCha8Rng,
}

/// A running stub.
pub struct RunningStub {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningStub {
    /// Stops answering and disconnects.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

struct Stub {
    state: Mutex<State>,
    nats: async_nats::Client,
    codec: Codec,
}

/// Connects, subscribes, optionally syncs, and serves until stopped.
pub async fn start(config: StubConfig) -> anyhow::Result<RunningStub> {
    config.faults.check().map_err(anyhow::Error::msg)?;
    let options = config
        .login
        .apply(async_nats::ConnectOptions::new())
        .await
        .map_err(|e| anyhow::anyhow!("logging in to NATS as {:?}: {e}", config.login))?;
    let nats = options
        .event_callback(|event| async move {
            // A refusal by the server (a permission it lacks) must show, not vanish.
            match event {
                async_nats::Event::ServerError(e) => {
                    tracing::error!(error = %e, "NATS server error")
                }
                async_nats::Event::SlowConsumer(sid) => {
                    tracing::warn!(sid, "NATS client buffer full: a message was dropped");
                }
                other => tracing::info!(event = %other, "NATS event"),
            }
        })
        .connect(&config.nats_url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS at {}: {e}", config.nats_url))?;
    let state = State {
        order: config.catalog.slots.iter().map(|s| s.id).collect(),
        slots: config
            .catalog
            .slots
            .into_iter()
            .map(|s| (s.id, s))
            .collect(),
        games: config
            .catalog
            .games
            .into_iter()
            .map(|g| (g.id, g))
            .collect(),
        seen: HashSet::new(),
        external: HashMap::new(),
        refused_ids: Vec::new(),
        counts: Counts::default(),
        faults: config.faults,
        rng: ChaCha8Rng::seed_from_u64(config.seed),
    };
    let stub = Arc::new(Stub {
        state: Mutex::new(state),
        nats: nats.clone(),
        codec: Codec::with_max_len(1024 * 1024),
    });
    let mut subs = Vec::new();
    for subject in [
        subjects::SLOTS_GET,
        subjects::GAMES_GET,
        subjects::SLOTS_BOOK,
        subjects::SLOTS_RELEASE,
        control::FAULTS,
        control::STATE,
        control::SYNC,
        control::DRIFT,
    ] {
        subs.push(nats.subscribe(subject).await?);
    }
    barrier(&nats).await?;
    if config.sync_on_start {
        stub.sync(false).await?;
    }
    let (shutdown, mut signal) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::select_all(subs);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let stub = stub.clone();
                    tokio::spawn(async move { stub.handle(message).await });
                }
                _ = signal.changed() => break,
            }
        }
        let _ = nats.drain().await;
    });
    tracing::info!("course-stub is listening");
    Ok(RunningStub { shutdown, task })
}

/// Returns once the server has processed our subscriptions (our own message comes back).
async fn barrier(nats: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = nats.new_inbox();
    let mut echo = nats.subscribe(inbox.clone()).await?;
    nats.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .map_err(|_| anyhow::anyhow!("NATS did not confirm the subscriptions"))?;
    Ok(())
}

/// course-service's failure answer: its own code, the exception's message, no timestamp.
fn refusal(code: &str, message: String) -> Value {
    let reply = CourseReply::<Value>::Failed(PeerError {
        success: false,
        error: PeerErrorDetail {
            code: code.into(),
            message,
            details: None,
        },
        timestamp: None,
    });
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

fn success(data: Value) -> Value {
    serde_json::to_value(Success::new(data)).unwrap_or(Value::Null)
}

/// A found item as course-service maps it, with the fields it adds beyond the seed's table.
fn found<T: Serialize>(item: Option<&T>, code: &str, missing: String) -> Value {
    let Some(item) = item else {
        return refusal(code, missing);
    };
    let mut data = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut data {
        if let (Some(max), Some(booked)) = (
            map.get("maxPlayers").and_then(Value::as_i64),
            map.get("bookedPlayers").and_then(Value::as_i64),
        ) {
            map.insert("availablePlayers".into(), Value::from(max - booked));
        }
        map.insert("createdAt".into(), Value::from("2025-01-01T00:00:00.000Z"));
        map.insert("updatedAt".into(), Value::Null);
    }
    success(data)
}

/// The `book`/`release` answer: the updated row, without the game relation the real handler
/// does not load (so no game, course or club names).
fn updated_row(slot: &TimeSlot) -> Value {
    success(serde_json::json!({
        "id": slot.id,
        "gameId": slot.game_id,
        "date": slot.date,
        "startTime": slot.start_time,
        "endTime": slot.end_time,
        "maxPlayers": slot.max_players,
        "bookedPlayers": slot.booked_players,
        "availablePlayers": slot.max_players - slot.booked_players,
        "price": slot.price,
        "isPremium": slot.is_premium,
        "status": slot.status,
        "isActive": slot.is_active,
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": null,
    }))
}

fn not_found_slot(id: i32) -> String {
    format!("GameTimeSlot with ID {id} not found")
}

impl Stub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, message: async_nats::Message) {
        let subject = message.subject.as_str().to_owned();
        let inbound = match self.codec.decode_inbound(&message.payload) {
            Ok(inbound) => inbound,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "malformed message");
                return;
            }
        };
        let is_control = subject.starts_with("courseStub.");
        let latency = {
            let mut state = self.lock();
            if !is_control && state.faults.outage {
                state.counts.silenced += 1;
                if matches!(
                    subject.as_str(),
                    subjects::SLOTS_BOOK | subjects::SLOTS_RELEASE
                ) {
                    state.counts.received += 1;
                }
                return;
            }
            state.faults.latency_ms
        };
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(MSG_ID_HEADER))
            .map(|v| v.to_string());
        let answer = match subject.as_str() {
            subjects::SLOTS_GET => match Codec::decode_data::<TimeSlotQuery>(inbound.data) {
                Ok(q) => {
                    let mut state = self.lock();
                    state.counts.lookups += 1;
                    Ok(found(
                        state.slots.get(&q.time_slot_id),
                        "GAME_TIMESLOT_GET_FAILED",
                        not_found_slot(q.time_slot_id),
                    ))
                }
                Err(e) => Err(e.to_error_value()),
            },
            subjects::GAMES_GET => match Codec::decode_data::<GameQuery>(inbound.data) {
                Ok(q) => {
                    let mut state = self.lock();
                    state.counts.lookups += 1;
                    Ok(found(
                        state.games.get(&q.game_id),
                        "GAME_GET_FAILED",
                        format!("Game with ID {} not found", q.game_id),
                    ))
                }
                Err(e) => Err(e.to_error_value()),
            },
            subjects::SLOTS_BOOK | subjects::SLOTS_RELEASE => {
                match Codec::decode_data::<SlotSeats>(inbound.data) {
                    Ok(seats) => {
                        match self.seats(&seats, subject == subjects::SLOTS_BOOK, msg_id) {
                            Some(answer) => Ok(answer),
                            None => return, // dropped
                        }
                    }
                    Err(e) => Err(e.to_error_value()),
                }
            }
            control::FAULTS => match serde_json::from_value::<Faults>(inbound.data) {
                Ok(faults) => match faults.check() {
                    Ok(()) => {
                        tracing::info!(?faults, "faults changed");
                        self.lock().faults = faults.clone();
                        Ok(serde_json::to_value(Success::new(faults)).unwrap_or_default())
                    }
                    Err(e) => Err(ErrorValue::new(ErrorCode::Validation, e)),
                },
                Err(e) => Err(ErrorValue::new(ErrorCode::Validation, e.to_string())),
            },
            control::DRIFT => match serde_json::from_value::<Drift>(inbound.data) {
                Ok(drift) => {
                    let moved = self.drift(&drift);
                    Ok(serde_json::to_value(Success::new(moved)).unwrap_or_default())
                }
                Err(e) => Err(ErrorValue::new(ErrorCode::Validation, e.to_string())),
            },
            control::STATE => {
                Ok(serde_json::to_value(Success::new(self.state())).unwrap_or_default())
            }
            control::SYNC => {
                let stale = serde_json::from_value::<SyncRequest>(inbound.data)
                    .unwrap_or_default()
                    .stale;
                match self.sync(stale).await {
                    Ok(report) => {
                        Ok(serde_json::to_value(Success::new(report)).unwrap_or_default())
                    }
                    Err(e) => Err(ErrorValue::new(ErrorCode::Network, e.to_string())),
                }
            }
            _ => return,
        };
        if latency > 0 && !is_control {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let Some(reply) = message.reply else { return };
        let body = match (&inbound.kind, &answer) {
            (InboundKind::Request(id), Ok(v)) => self.codec.encode_response(id, v),
            (InboundKind::Request(id), Err(e)) => self.codec.encode_error(id, e),
            (InboundKind::External, Ok(v)) => self.codec.encode_bare(v),
            (InboundKind::External, Err(e)) => self.codec.encode_bare(e),
            (InboundKind::Event, _) => return,
        };
        if let Ok(body) = body {
            let _ = self.nats.publish(reply, body.into()).await;
        }
    }

    /// Handles a book or release under the drop, duplicate and dedup rules. `None` when the
    /// message is dropped (no answer). A message id counts as seen only once its message was
    /// applied, so a refused message can be sent again later and be applied then.
    fn seats(&self, seats: &SlotSeats, book: bool, msg_id: Option<String>) -> Option<Value> {
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
    fn drift(&self, drift: &Drift) -> i32 {
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

    fn state(&self) -> StubState {
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
    async fn sync(&self, stale: bool) -> anyhow::Result<SyncReport> {
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
