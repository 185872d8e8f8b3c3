//! Scenarios: a catalogue, a workload, a fault schedule and a replica count, read from TOML.
//! The files in `simulator/scenarios/` are compiled in, so `sim run rush` works from anywhere;
//! any other path to a `.toml` file works too.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

mod faults;
mod stages;

pub use faults::{Fault, FaultKind};
pub use stages::{Stage, BUILT_IN};

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (the file's stem).
    pub name: String,
    /// One line on what it exercises.
    #[serde(default)]
    pub description: String,
    /// booking-service replicas.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Length of the arrival window, seconds.
    pub duration_s: f64,
    /// Longest wait after the load and the faults for course-service to converge, seconds.
    #[serde(default = "settle")]
    pub settle_s: f64,
    /// The course-stub's catalogue.
    #[serde(default)]
    pub catalog: CatalogShape,
    /// Who does what, when.
    #[serde(default)]
    pub workload: Workload,
    /// Extra environment for every booking-service replica.
    #[serde(default)]
    pub service: BTreeMap<String, String>,
    /// Run NATS with JetStream (default) or as a core server without it.
    #[serde(default = "yes")]
    pub jetstream: bool,
    /// Secure NATS as production does (default): anonymous clients refused, a user per role with
    /// only its subjects; the load logs in as user-api, the stub as course-service.
    #[serde(default = "yes")]
    pub secured_nats: bool,
    /// NATS servers: 1 (default), or a cluster of this many routed nodes with the events stream
    /// kept on up to 3 of them.
    #[serde(default = "one")]
    pub nats_nodes: usize,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Bounds that fail the run (for CI).
    #[serde(default)]
    pub thresholds: Thresholds,
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn settle() -> f64 {
    60.0
}

/// Catalogue shape, as the course-stub generates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogShape {
    /// Clubs.
    pub clubs: u32,
    /// Games per club.
    pub games_per_club: u32,
    /// Days of slots.
    pub days: u32,
    /// Slots per game and day.
    pub slots_per_day: u32,
    /// Seats per slot.
    pub max_players: i32,
}

impl Default for CatalogShape {
    fn default() -> Self {
        Self {
            clubs: 2,
            games_per_club: 2,
            days: 3,
            slots_per_day: 8,
            max_players: 4,
        }
    }
}

/// The workload: an optional opening rush plus steady Poisson arrivals with an operation mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Steady arrivals per second (open model: sent on schedule whatever the system does).
    pub rate: f64,
    /// Users in the opening rush (0: none).
    pub rush_users: u32,
    /// Slots the rush aims at (the first ones of the catalogue).
    pub rush_slots: u32,
    /// When the rush starts, seconds.
    pub rush_at_s: f64,
    /// The rush's arrivals spread over this many milliseconds.
    pub rush_spread_ms: u64,
    /// Weight of creates in the mix.
    pub create: u32,
    /// Weight of cancels (of an earlier create).
    pub cancel: u32,
    /// Weight of player-count updates (of an earlier create).
    pub update: u32,
    /// Weight of reads (findById, findByUserId, availability, search).
    pub read: u32,
    /// Slots that take `hot_share` of the creates.
    pub hot_slots: u32,
    /// Share of creates aimed at the hot slots.
    pub hot_share: f64,
    /// Share of creates carrying an idempotency key.
    pub keyed_share: f64,
    /// Client timeout per attempt, ms; a timeout is an unknown outcome.
    pub client_timeout_ms: u64,
    /// Extra attempts for a keyed create whose outcome is unknown.
    pub retries: u32,
    /// Ramping arrivals, as k6's ramping-arrival-rate: from `rate`, each stage moves the rate
    /// linearly to its target over its duration; the last target holds to the end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// Operations scheduled in the first `warmup_s` seconds count in outcomes and invariants
    /// but not in the latency percentiles.
    #[serde(skip_serializing_if = "stages::is_zero")]
    pub warmup_s: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            rate: 100.0,
            rush_users: 0,
            rush_slots: 2,
            rush_at_s: 1.0,
            rush_spread_ms: 200,
            create: 55,
            cancel: 12,
            update: 8,
            read: 25,
            hot_slots: 24,
            hot_share: 0.7,
            keyed_share: 0.5,
            client_timeout_ms: 5000,
            retries: 2,
            stages: Vec::new(),
            warmup_s: 0.0,
        }
    }
}

/// Bounds checked after the run; any breach fails it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Completed operations per second at least.
    pub min_throughput: Option<f64>,
    /// p99 latency bound per operation kind, ms.
    pub max_p99_ms: BTreeMap<String, f64>,
    /// course-service converged within this many seconds.
    pub max_convergence_s: Option<f64>,
    /// Share of the operations sent (0..=1) that may end in an error (not a refusal by a rule)
    /// or without an answer.
    pub max_error_share: Option<f64>,
}

impl Scenario {
    /// Parses TOML and checks the values.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// A built-in scenario by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> anyhow::Result<Self> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text).with_context(|| format!("built-in scenario {name_or_path}"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario {name_or_path:?}: give a path to a .toml file or one of {}",
                names.join(", ")
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("scenario {}", path.display()))
    }

    /// Refuses values that cannot be run.
    pub fn check(&self) -> anyhow::Result<()> {
        let w = &self.workload;
        if !(self.duration_s > 0.0 && self.duration_s <= 3600.0) {
            bail!("duration_s must be in (0, 3600], got {}", self.duration_s);
        }
        if self.nats_nodes == 0 || self.nats_nodes > 5 {
            bail!("nats_nodes must be 1..=5, got {}", self.nats_nodes);
        }
        if self.replicas == 0 || self.replicas > 16 {
            bail!("replicas must be 1..=16, got {}", self.replicas);
        }
        if !(w.rate >= 0.0 && w.rate <= 100_000.0) {
            bail!("workload.rate must be in [0, 100000], got {}", w.rate);
        }
        stages::check(w, self.duration_s)?;
        if w.create + w.cancel + w.update + w.read == 0 {
            bail!("workload: the operation mix weights are all zero");
        }
        for (name, f) in [("hot_share", w.hot_share), ("keyed_share", w.keyed_share)] {
            if !(0.0..=1.0).contains(&f) {
                bail!("workload.{name} must be between 0 and 1, got {f}");
            }
        }
        let slots = self.catalog.clubs
            * self.catalog.games_per_club
            * self.catalog.days
            * self.catalog.slots_per_day;
        if slots == 0 {
            bail!("catalog: no slots");
        }
        if w.rush_users > 0 && (w.rush_slots == 0 || w.rush_slots > slots) {
            bail!("workload.rush_slots must be 1..={slots}");
        }
        if w.client_timeout_ms == 0 {
            bail!("workload.client_timeout_ms must be positive");
        }
        for f in &self.faults {
            if f.at_s < 0.0 || f.for_s < 0.0 {
                bail!("fault {}: times must not be negative", f.kind.name());
            }
            match &f.kind {
                FaultKind::Drop { fraction } | FaultKind::Duplicate { fraction }
                    if !(0.0..=1.0).contains(fraction) =>
                {
                    bail!("fault {}: fraction must be between 0 and 1", f.kind.name())
                }
                FaultKind::KillService { replica }
                | FaultKind::FaultPoint { replica, .. }
                | FaultKind::Partition { replica }
                    if *replica >= self.replicas =>
                {
                    bail!(
                        "fault {}: replica {replica} does not exist ({} replicas)",
                        f.kind.name(),
                        self.replicas
                    )
                }
                FaultKind::NatsNodeKill { node } if *node >= self.nats_nodes => bail!(
                    "fault nats-node-kill: node {node} does not exist ({} NATS node(s))",
                    self.nats_nodes
                ),
                FaultKind::DbLatency { min_ms, max_ms } if min_ms > max_ms => {
                    bail!("fault db-latency: min_ms must not exceed max_ms")
                }
                FaultKind::FaultPoint { point, .. }
                    if point != "after-commit" && point != "before-mark-sent" =>
                {
                    bail!("fault-point: point must be after-commit or before-mark-sent, got {point:?}")
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Seconds from the start until the last fault has healed.
    pub fn faults_end_s(&self) -> f64 {
        self.faults
            .iter()
            .map(|f| f.at_s + f.for_s)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests;
