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

use contracts::course::{Game, GameQuery, SlotSeats, TimeSlot, TimeSlotQuery};
use contracts::{subjects, Codec, ErrorCode, ErrorValue, InboundKind, Success, MSG_ID_HEADER};
use futures::StreamExt as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::control::{self, Counts, Drift, Faults, SyncRequest};

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
        .connect(
            contracts::client::servers(&config.nats_url)
                .map_err(|e| anyhow::anyhow!("--nats-url: {e}"))?,
        )
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

mod replies;
mod seats;

use replies::{found, not_found_slot};

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
}
