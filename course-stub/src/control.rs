//! The stub's control plane: NestJS-enveloped requests on `courseStub.*` subjects that a test or
//! the simulator sends to change faults, read counts, or trigger a proactive sync at run time.
//! Control subjects ignore the fault knobs (an outage silences course-service, not its operator).

use serde::{Deserialize, Serialize};

/// Set the fault knobs; replies with the knobs now in force.
pub const FAULTS: &str = "courseStub.faults";
/// Read slot counts and message counters.
pub const STATE: &str = "courseStub.state";
/// Emit `booking.game.sync` and `booking.gameTimeSlot.sync` for the whole catalogue.
pub const SYNC: &str = "courseStub.sync";
/// Book seats on course-service's side only, as a club's front desk would ([`Drift`]).
pub const DRIFT: &str = "courseStub.drift";

/// Fault knobs. Every random choice comes from the stub's seeded RNG.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Answer nothing at all on course-service subjects (book/release are not applied).
    pub outage: bool,
    /// Added delay before every course-service answer, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..=1) of book/release messages dropped unapplied and unanswered.
    pub drop_fraction: f64,
    /// Fraction (0..=1) of book/release messages handled twice, as a redelivery would.
    pub duplicate_fraction: f64,
    /// Kinder than the real course-service: apply every book and release, never refuse a book
    /// nor clamp a release at zero. Off by default; only for tests that want the old stand-in.
    pub lenient: bool,
}

impl Faults {
    /// Refuses fractions outside `0..=1` and absurd latencies.
    pub fn check(&self) -> Result<(), String> {
        for (name, f) in [
            ("dropFraction", self.drop_fraction),
            ("duplicateFraction", self.duplicate_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("{name} must be between 0 and 1, got {f}"));
            }
        }
        if self.latency_ms > 600_000 {
            return Err(format!(
                "latencyMs must be at most 600000, got {}",
                self.latency_ms
            ));
        }
        Ok(())
    }
}

/// `courseStub.sync` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncRequest {
    /// Send an outdated view: every slot with `bookedPlayers` 0, as a late sync would.
    pub stale: bool,
}

/// `courseStub.drift` request: course-service's own count moves without booking-service, as when
/// the club books seats at its desk. The seats go to the first `slots` slots of the catalogue,
/// never past a slot's capacity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Drift {
    /// How many slots, from the start of the catalogue.
    pub slots: u32,
    /// Seats added to each (negative: the desk gives seats back, at most those it booked).
    pub seats: i32,
}

/// `courseStub.sync` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Game messages sent.
    pub games: usize,
    /// Slot messages sent.
    pub slots: usize,
}

/// One slot's count as the stub holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotCount {
    /// Slot id.
    pub id: i32,
    /// Capacity.
    pub max_players: i32,
    /// Seats booked per the book/release messages applied, plus [`SlotCount::external`].
    pub booked_players: i32,
    /// Seats booked on course-service's side only ([`Drift`]).
    #[serde(default)]
    pub external: i32,
}

/// Message counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Book/release messages that arrived (before faults).
    pub received: u64,
    /// Book/release messages applied to a slot.
    pub applied: u64,
    /// Book/release messages ignored because their `Nats-Msg-Id` was already applied.
    pub deduplicated: u64,
    /// Book/release messages dropped by the drop fault.
    pub dropped: u64,
    /// Book/release messages handled twice by the duplicate fault.
    pub duplicated: u64,
    /// Book/release messages without a `Nats-Msg-Id` (applied, but cannot be deduplicated).
    pub without_id: u64,
    /// Book/release messages for unknown slots.
    pub unknown_slot: u64,
    /// Applied books that took a slot past its capacity (booking-service is the authority).
    pub over_capacity: u64,
    /// `gameTimeSlots.get` and `games.get` requests answered.
    pub lookups: u64,
    /// Messages not answered because of the outage fault.
    pub silenced: u64,
    /// Books refused as the real course-service refuses them (unknown slot, not AVAILABLE, not
    /// enough capacity) and releases of unknown slots; nothing was applied.
    #[serde(default)]
    pub refused: u64,
    /// Releases that would have taken a count below zero, clamped to zero as the real
    /// course-service does (silently: its reply says success).
    #[serde(default)]
    pub clamped: u64,
}

/// `courseStub.state` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StubState {
    /// Every slot's count, by id.
    pub slots: Vec<SlotCount>,
    /// Message counters.
    pub counts: Counts,
    /// The knobs in force.
    pub faults: Faults,
    /// `Nats-Msg-Id` of every refused message, in order (the first 10,000).
    #[serde(default)]
    pub refused_ids: Vec<String>,
}

/// The control plane's client: what a test or the simulator uses to drive a running stub.
#[derive(Debug, Clone)]
pub struct Control {
    nest: contracts::NestClient,
}

impl Control {
    /// A control client on `nats` (each request waits at most 2 s).
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            nest: contracts::NestClient::new(nats, std::time::Duration::from_secs(2)),
        }
    }

    /// Sends `data` on a control subject and returns the reply's `data`; `None` when the stub
    /// does not answer or refuses.
    pub async fn send(&self, subject: &str, data: serde_json::Value) -> Option<serde_json::Value> {
        let mut response = self.nest.ask(subject, &data).await?;
        (response.get("success") == Some(&serde_json::Value::Bool(true)))
            .then(|| response["data"].take())
    }

    /// The stub's counts and counters ([`STATE`]).
    pub async fn state(&self) -> Option<StubState> {
        let data = self.send(STATE, serde_json::json!({})).await?;
        serde_json::from_value(data).ok()
    }
}
