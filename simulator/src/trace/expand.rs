//! Expansion: a scenario and a seed become the trace's operations (the rush, then Poisson
//! arrivals drawn from the workload's mix) and fault events, using only the seeded RNG and integer
//! milliseconds.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::{Action, Derived, FaultEvent, Header, Op, Phase, Trace, FORMAT};
use crate::scenario::{FaultKind, Scenario};

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
        let peak = w.peak_rate();
        if !w.stages.is_empty() && peak > 0.0 {
            // Ramping arrivals by thinning: Poisson arrivals at the peak rate, each kept with
            // the chance the rate at its moment bears to the peak.
            let mut t = 0.0f64;
            loop {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() / peak;
                if t >= scenario.duration_s {
                    break;
                }
                if rng.random_range(0.0..1.0) < w.rate_at(t) / peak {
                    arrivals.push((ms(t), false));
                }
            }
        } else if w.stages.is_empty() && w.rate > 0.0 {
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
}
