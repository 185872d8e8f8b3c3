//! The trace: a scenario and a seed expanded into every operation (time, user, slot, counts) and
//! every fault event, as JSONL. Expansion uses only the seeded RNG and integer milliseconds, so the
//! same scenario and seed give the same bytes on every machine; the SHA-256 of those bytes names
//! the run. `sim replay` executes a saved trace without the scenario file.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::scenario::{FaultKind, Scenario};

/// Bump when the line format changes.
pub const FORMAT: u32 = 1;

/// One line of the trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Line {
    /// First line: what the rest was expanded from.
    Header(Box<Header>),
    /// A client operation.
    Op(Op),
    /// A fault starting or ending.
    Fault(FaultEvent),
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: u32,
    /// The seed.
    pub seed: u64,
    /// The scenario, whole.
    pub scenario: Scenario,
    /// Parameters derived during expansion.
    pub derived: Derived,
}

/// Figures derived from the scenario and the seed, printed before a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// Operations in all.
    pub ops: usize,
    /// Creates (rush included).
    pub creates: usize,
    /// Rush creates.
    pub rush: usize,
    /// Cancels.
    pub cancels: usize,
    /// Updates.
    pub updates: usize,
    /// Reads.
    pub reads: usize,
    /// Slots in the catalogue.
    pub slots: usize,
    /// Seats in the catalogue.
    pub seats: usize,
    /// Slots taking the hot share of creates.
    pub hot_slots: usize,
    /// Creates carrying an idempotency key.
    pub keyed: usize,
    /// Time of the last operation, ms.
    pub last_op_ms: u64,
    /// Fault events.
    pub fault_events: usize,
}

/// One client operation, scheduled at `t_ms` from the start of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Index in the trace (0-based, in time order).
    pub i: u32,
    /// Scheduled time, ms.
    pub t_ms: u64,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
}

/// What an operation does. Operations on an earlier booking name the create (`of`) that made it;
/// if that create has not succeeded by then, the operation is skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Action {
    /// `booking.create`.
    Create {
        /// User.
        user: i32,
        /// Slot.
        slot: i32,
        /// Players.
        players: i32,
        /// Idempotency key, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Part of the opening rush.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rush: bool,
    },
    /// `booking.cancel` of the booking made by create `of`.
    Cancel {
        /// The create.
        of: u32,
    },
    /// `booking.update` of the player count.
    Update {
        /// The create.
        of: u32,
        /// New player count.
        players: i32,
    },
    /// `booking.findById`.
    FindById {
        /// The create.
        of: u32,
    },
    /// `booking.findByUserId`.
    FindByUserId {
        /// User.
        user: i32,
    },
    /// `booking.gameTimeSlots.availability` for a game on a catalogue day.
    Availability {
        /// Game.
        game: i32,
        /// Day index from the catalogue's first day.
        day: u32,
    },
    /// `booking.search` of upcoming bookings.
    Search,
}

impl Action {
    /// Name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Cancel { .. } => "cancel",
            Action::Update { .. } => "update",
            Action::FindById { .. } => "findById",
            Action::FindByUserId { .. } => "findByUserId",
            Action::Availability { .. } => "availability",
            Action::Search => "search",
        }
    }
}

/// A fault starting or ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Time, ms.
    pub t_ms: u64,
    /// Index of the fault in the scenario.
    pub fault: usize,
    /// `start` or `end`.
    pub phase: Phase,
    /// The fault.
    pub kind: FaultKind,
}

/// Start or end of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// It begins.
    Start,
    /// It heals.
    End,
}

/// An expanded trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// First line.
    pub header: Header,
    /// Operations in time order.
    pub ops: Vec<Op>,
    /// Fault events in time order.
    pub faults: Vec<FaultEvent>,
}

/// A slot as the workload sees it.
#[derive(Debug, Clone, Copy)]
struct SlotRef {
    id: i32,
    game: i32,
    day: u32,
}

/// The catalogue the stub will generate for this scenario and seed (ids do not depend on the
/// start date, so any date will do here).
pub fn catalog(scenario: &Scenario, seed: u64, start: chrono::NaiveDate) -> course_stub::Catalog {
    let shape = &scenario.catalog;
    course_stub::Catalog::generate(
        seed,
        &course_stub::CatalogSpec {
            clubs: shape.clubs,
            games_per_club: shape.games_per_club,
            days: shape.days,
            slots_per_day: shape.slots_per_day,
            max_players: shape.max_players,
            start,
        },
    )
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

impl Trace {
    /// Expands `scenario` with `seed`.
    pub fn expand(scenario: &Scenario, seed: u64) -> Self {
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
        let catalog = catalog(scenario, seed, epoch);
        let slots: Vec<SlotRef> = catalog
            .slots
            .iter()
            .map(|s| SlotRef {
                id: s.id,
                game: s.game_id,
                day: u32::try_from((s.date - epoch).num_days()).unwrap_or(0),
            })
            .collect();
        let w = &scenario.workload;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);

        // Arrival times: the rush, then Poisson arrivals; merged in time order.
        let mut arrivals: Vec<(u64, bool)> = Vec::new();
        for _ in 0..w.rush_users {
            let jitter = if w.rush_spread_ms == 0 {
                0
            } else {
                rng.random_range(0..w.rush_spread_ms)
            };
            arrivals.push((ms(w.rush_at_s) + jitter, true));
        }
        if w.rate > 0.0 {
            let mut t = 0.0f64;
            loop {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() / w.rate;
                if t >= scenario.duration_s {
                    break;
                }
                arrivals.push((ms(t), false));
            }
        }
        arrivals.sort_by_key(|(t, rush)| (*t, !*rush));

        let hot = (w.hot_slots as usize).clamp(1, slots.len());
        let weights = [w.create, w.cancel, w.update, w.read];
        let total: u32 = weights.iter().sum();
        // Creates that later operations may refer to: (op index, user, time, cancelled).
        let mut made: Vec<(u32, i32, u64)> = Vec::new();
        let mut ops = Vec::with_capacity(arrivals.len());
        let mut next_rush_user = 100_000;
        for (n, (t_ms, rush)) in arrivals.into_iter().enumerate() {
            let i = u32::try_from(n).unwrap_or(u32::MAX);
            let keyed = |rng: &mut ChaCha8Rng| {
                rng.random_bool(w.keyed_share)
                    .then(|| format!("s{seed}-op{i}"))
            };
            let action = if rush {
                next_rush_user += 1;
                let slot = slots[rng.random_range(0..w.rush_slots as usize)];
                Action::Create {
                    user: next_rush_user,
                    slot: slot.id,
                    players: 1,
                    key: keyed(&mut rng),
                    rush: true,
                }
            } else {
                let roll = rng.random_range(0..total);
                // Only bookings made at least 300 ms earlier can be the target of a later call.
                let ready = made.partition_point(|(_, _, t)| t + 300 <= t_ms);
                let pick = |rng: &mut ChaCha8Rng| (ready > 0).then(|| rng.random_range(0..ready));
                if roll < w.create || ready == 0 {
                    let slot = if rng.random_bool(w.hot_share) {
                        slots[rng.random_range(0..hot)]
                    } else {
                        slots[rng.random_range(0..slots.len())]
                    };
                    Action::Create {
                        user: rng.random_range(1..=5000),
                        slot: slot.id,
                        players: rng.random_range(1..=2),
                        key: keyed(&mut rng),
                        rush: false,
                    }
                } else if roll < w.create + w.cancel {
                    match pick(&mut rng) {
                        Some(k) => Action::Cancel {
                            of: made.remove(k).0,
                        },
                        None => Action::Search,
                    }
                } else if roll < w.create + w.cancel + w.update {
                    match pick(&mut rng) {
                        Some(k) => Action::Update {
                            of: made[k].0,
                            players: rng.random_range(1..=3),
                        },
                        None => Action::Search,
                    }
                } else {
                    match rng.random_range(0..4) {
                        0 => match pick(&mut rng) {
                            Some(k) => Action::FindById { of: made[k].0 },
                            None => Action::Search,
                        },
                        1 => match pick(&mut rng) {
                            Some(k) => Action::FindByUserId { user: made[k].1 },
                            None => Action::Search,
                        },
                        2 => {
                            let s = slots[rng.random_range(0..slots.len())];
                            Action::Availability {
                                game: s.game,
                                day: s.day,
                            }
                        }
                        _ => Action::Search,
                    }
                }
            };
            if let Action::Create { user, .. } = &action {
                made.push((i, *user, t_ms));
            }
            ops.push(Op { i, t_ms, action });
        }

        let mut faults = Vec::new();
        for (index, f) in scenario.faults.iter().enumerate() {
            faults.push(FaultEvent {
                t_ms: ms(f.at_s),
                fault: index,
                phase: Phase::Start,
                kind: f.kind.clone(),
            });
            if !matches!(f.kind, FaultKind::StaleSync) {
                faults.push(FaultEvent {
                    t_ms: ms(f.at_s + f.for_s),
                    fault: index,
                    phase: Phase::End,
                    kind: f.kind.clone(),
                });
            }
        }
        faults.sort_by_key(|e| (e.t_ms, e.phase == Phase::Start, e.fault));

        let count = |name: &str| ops.iter().filter(|o| o.action.name() == name).count();
        let derived = Derived {
            ops: ops.len(),
            creates: count("create"),
            rush: ops
                .iter()
                .filter(|o| matches!(o.action, Action::Create { rush: true, .. }))
                .count(),
            cancels: count("cancel"),
            updates: count("update"),
            reads: ops.len() - count("create") - count("cancel") - count("update"),
            slots: slots.len(),
            seats: catalog
                .slots
                .iter()
                .map(|s| usize::try_from(s.max_players).unwrap_or(0))
                .sum(),
            hot_slots: hot,
            keyed: ops
                .iter()
                .filter(|o| matches!(o.action, Action::Create { key: Some(_), .. }))
                .count(),
            last_op_ms: ops.last().map_or(0, |o| o.t_ms),
            fault_events: faults.len(),
        };
        Trace {
            header: Header {
                format: FORMAT,
                seed,
                scenario: scenario.clone(),
                derived,
            },
            ops,
            faults,
        }
    }

    /// The JSONL text: the header, then operations and fault events merged in time order.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        let mut push = |line: Line| {
            // Serializing these plain types cannot fail.
            let text = serde_json::to_string(&line).unwrap_or_default();
            let _ = writeln!(out, "{text}");
        };
        push(Line::Header(Box::new(self.header.clone())));
        let mut faults = self.faults.iter().peekable();
        for op in &self.ops {
            while let Some(f) = faults.next_if(|f| f.t_ms <= op.t_ms) {
                push(Line::Fault(f.clone()));
            }
            push(Line::Op(op.clone()));
        }
        for f in faults {
            push(Line::Fault(f.clone()));
        }
        out
    }

    /// SHA-256 of [`Trace::to_jsonl`], hex.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.to_jsonl().as_bytes()))
    }

    /// Reads a trace written by [`Trace::to_jsonl`].
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header = match lines.next() {
            Some((_, first)) => match serde_json::from_str(first).context("line 1")? {
                Line::Header(h) => *h,
                _ => bail!("line 1 is not a trace header"),
            },
            None => bail!("empty trace"),
        };
        if header.format != FORMAT {
            bail!(
                "trace format {} is not the supported {FORMAT}",
                header.format
            );
        }
        header.scenario.check()?;
        let mut ops = Vec::new();
        let mut faults = Vec::new();
        for (n, line) in lines {
            match serde_json::from_str(line).with_context(|| format!("line {}", n + 1))? {
                Line::Header(_) => bail!("line {}: a second header", n + 1),
                Line::Op(op) => ops.push(op),
                Line::Fault(f) => faults.push(f),
            }
        }
        Ok(Trace {
            header,
            ops,
            faults,
        })
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::BUILT_IN;

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        for (name, _) in BUILT_IN {
            let scenario = Scenario::load(name).unwrap();
            let a = Trace::expand(&scenario, 7);
            let b = Trace::expand(&scenario, 7);
            assert_eq!(a.to_jsonl(), b.to_jsonl(), "{name}");
            assert_eq!(a.hash(), b.hash());
            assert_ne!(a.hash(), Trace::expand(&scenario, 8).hash(), "{name}");
        }
    }

    #[test]
    fn a_written_trace_reads_back_equal() {
        let scenario = Scenario::load("crash-restart").unwrap();
        let trace = Trace::expand(&scenario, 3);
        let back = Trace::parse(&trace.to_jsonl()).unwrap();
        assert_eq!(back, trace);
        assert_eq!(back.hash(), trace.hash());
    }

    #[test]
    fn later_operations_only_name_earlier_creates() {
        let scenario = Scenario::load("steady").unwrap();
        let trace = Trace::expand(&scenario, 1);
        assert!(trace.header.derived.cancels > 0 && trace.header.derived.updates > 0);
        for op in &trace.ops {
            if let Action::Cancel { of } | Action::Update { of, .. } | Action::FindById { of } =
                &op.action
            {
                let target = &trace.ops[*of as usize];
                assert!(matches!(target.action, Action::Create { .. }));
                assert!(target.t_ms + 300 <= op.t_ms);
            }
        }
        let cancelled: Vec<u32> = trace
            .ops
            .iter()
            .filter_map(|o| match o.action {
                Action::Cancel { of } => Some(of),
                _ => None,
            })
            .collect();
        let mut unique = cancelled.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            cancelled.len(),
            "no booking is cancelled twice"
        );
    }

    #[test]
    fn the_rush_lands_on_its_slots_within_its_spread() {
        let scenario = Scenario::load("rush").unwrap();
        let trace = Trace::expand(&scenario, 1);
        let rush: Vec<&Op> = trace
            .ops
            .iter()
            .filter(|o| matches!(o.action, Action::Create { rush: true, .. }))
            .collect();
        assert_eq!(rush.len(), 1000);
        assert!(rush.iter().all(|o| (1000..1200).contains(&o.t_ms)));
        assert!(rush
            .iter()
            .all(|o| matches!(o.action, Action::Create { slot, .. } if slot <= 2)));
    }
}
