//! The stub itself: catalogue state, the course-service handlers, faults and the control plane.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::course::{
    CourseReply, Game, GameQuery, SlotSeats, SlotStatus, TimeSlot, TimeSlotQuery,
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
use crate::control::{self, Counts, Faults, SlotCount, StubState, SyncReport, SyncRequest};

/// How to run a stub.
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// NATS to connect to.
    pub nats_url: String,
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
    let nats = async_nats::connect(&config.nats_url)
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

fn found<T: Serialize>(item: Option<T>, what: &str) -> Value {
    let reply = match item {
        Some(item) => CourseReply::Found(Success::new(item)),
        None => CourseReply::Failed(ErrorValue::new(
            ErrorCode::NotFound,
            format!("{what} not found"),
        )),
    };
    serde_json::to_value(reply).unwrap_or(Value::Null)
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
                        state.slots.get(&q.time_slot_id).cloned(),
                        &format!("Time slot {}", q.time_slot_id),
                    ))
                }
                Err(e) => Err(e.to_error_value()),
            },
            subjects::GAMES_GET => match Codec::decode_data::<GameQuery>(inbound.data) {
                Ok(q) => {
                    let mut state = self.lock();
                    state.counts.lookups += 1;
                    Ok(found(
                        state.games.get(&q.game_id).cloned(),
                        &format!("Game {}", q.game_id),
                    ))
                }
                Err(e) => Err(e.to_error_value()),
            },
            subjects::SLOTS_BOOK | subjects::SLOTS_RELEASE => {
                match Codec::decode_data::<SlotSeats>(inbound.data) {
                    Ok(seats) => {
                        let sign = if subject == subjects::SLOTS_BOOK {
                            1
                        } else {
                            -1
                        };
                        match self.seats(&seats, sign, msg_id) {
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

    /// Applies a book (`sign` 1) or release (-1) under the drop, duplicate and dedup rules.
    /// `None` when the message is dropped (no answer).
    fn seats(&self, seats: &SlotSeats, sign: i32, msg_id: Option<String>) -> Option<Value> {
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
        for _ in 0..copies {
            match &msg_id {
                Some(id) if state.seen.contains(id) => {
                    state.counts.deduplicated += 1;
                    continue;
                }
                Some(id) => {
                    state.seen.insert(id.clone());
                }
                None => state.counts.without_id += 1,
            }
            let Some(slot) = state.slots.get_mut(&seats.time_slot_id) else {
                state.counts.unknown_slot += 1;
                continue;
            };
            // Every event is applied once and never clamped, so the count converges to
            // booking-service's sum whatever order book and release arrive in.
            slot.booked_players += sign * seats.player_count;
            let over = slot.booked_players > slot.max_players;
            slot.status = if slot.booked_players >= slot.max_players {
                SlotStatus::FullyBooked
            } else {
                SlotStatus::Available
            };
            state.counts.applied += 1;
            if over && sign > 0 {
                state.counts.over_capacity += 1;
            }
        }
        let slot = state.slots.get(&seats.time_slot_id).cloned();
        Some(found(slot, &format!("Time slot {}", seats.time_slot_id)))
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
                })
                .collect(),
            counts: state.counts.clone(),
            faults: state.faults.clone(),
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
