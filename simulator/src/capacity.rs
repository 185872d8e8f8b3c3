//! Capacity planning: runs a fault-free scenario at a sweep of arrival rates for each replica
//! count, and reports the throughput–latency curve, the knee (the highest offered rate still
//! served in full within the p99 bound) and the fewest replicas that reach a target rate.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::run::{execute, RunOptions};
use crate::scenario::{Scenario, Thresholds};
use crate::trace::Trace;

mod render;

pub use render::markdown;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The workload's shape (its faults and rush are dropped).
    pub base: Scenario,
    /// Offered arrival rates, per second.
    pub rates: Vec<f64>,
    /// Replica counts.
    pub replicas: Vec<usize>,
    /// Seconds of load per point.
    pub duration_s: f64,
    /// The latency bound on `create`'s p99, ms.
    pub p99_ms: f64,
    /// The rate to plan for, per second.
    pub target: f64,
    /// Seed.
    pub seed: u64,
    /// Where the points and the summary go.
    pub out: PathBuf,
    /// fsync on.
    pub fsync: bool,
}

/// One measured point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Replicas.
    pub replicas: usize,
    /// Offered rate.
    pub offered: f64,
    /// Achieved throughput.
    pub throughput: f64,
    /// create p50, ms.
    pub p50_ms: f64,
    /// create p99, ms.
    pub p99_ms: f64,
    /// Share of operations answered (ok or refused) rather than timed out.
    pub answered: f64,
    /// Seconds of arrivals.
    pub duration_s: f64,
    /// Seconds until the last answer.
    pub load_s: f64,
    /// Every invariant held.
    pub invariants_held: bool,
}

impl Point {
    /// The system kept up: the last answer came within 10% of the arrival window's end, so
    /// nothing queued up (operations skipped by the workload do not count against it).
    pub fn kept_up(&self) -> bool {
        self.load_s <= self.duration_s / 0.9
    }

    /// Served in full within the bound.
    pub fn within(&self, p99_ms: f64) -> bool {
        self.p99_ms <= p99_ms && self.kept_up() && self.answered >= 0.999
    }
}

/// The sweep's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// p99 bound, ms.
    pub p99_ms: f64,
    /// Target rate.
    pub target: f64,
    /// Every point.
    pub points: Vec<Point>,
    /// Per replica count, the knee: highest offered rate within the bound (None: not even the
    /// lowest).
    pub knees: Vec<(usize, Option<f64>)>,
    /// Fewest replicas whose knee reaches the target (None: none swept does).
    pub replicas_for_target: Option<usize>,
    /// Cores of the machine that ran the sweep (the load generator shares them with the stack).
    #[serde(default)]
    pub host_cores: usize,
}

/// The knee of each replica count and the replicas needed for `target`.
pub fn analyse(
    points: &[Point],
    p99_ms: f64,
    target: f64,
) -> (Vec<(usize, Option<f64>)>, Option<usize>) {
    let mut counts: Vec<usize> = points.iter().map(|p| p.replicas).collect();
    counts.sort_unstable();
    counts.dedup();
    let knees: Vec<(usize, Option<f64>)> = counts
        .iter()
        .map(|&r| {
            let mut mine: Vec<&Point> = points.iter().filter(|p| p.replicas == r).collect();
            mine.sort_by(|a, b| a.offered.total_cmp(&b.offered));
            // The knee is the last rate before the first one that breaks the bound.
            let knee = mine
                .iter()
                .take_while(|p| p.within(p99_ms))
                .last()
                .map(|p| p.offered);
            (r, knee)
        })
        .collect();
    let needed = knees
        .iter()
        .find(|(_, k)| k.is_some_and(|k| k >= target))
        .map(|(r, _)| *r);
    (knees, needed)
}

/// The folder of a point's own report, under the sweep's.
pub fn point_dir(replicas: usize, rate: f64) -> String {
    format!("r{replicas}-rate{rate}")
}

/// Runs the sweep and writes `capacity.json`, `capacity.md` and `index.html` into `out`.
pub async fn sweep(s: &Sweep, progress: bool) -> anyhow::Result<Capacity> {
    let mut points = Vec::new();
    for &replicas in &s.replicas {
        for &rate in &s.rates {
            let mut scenario = s.base.clone();
            scenario.name = format!("{}-r{replicas}-{rate}", s.base.name);
            scenario.replicas = replicas;
            scenario.duration_s = s.duration_s;
            scenario.settle_s = 30.0;
            scenario.workload.rate = rate;
            scenario.workload.rush_users = 0;
            scenario.faults.clear();
            // Enough seats that the cold slots do not sell out during the point (twice what its
            // creates could take), so high rates measure bookings, not just refusals.
            let w = &scenario.workload;
            let create_share =
                f64::from(w.create) / f64::from(w.create + w.cancel + w.update + w.read).max(1.0);
            let wanted = 2.0 * rate * s.duration_s * create_share * 1.5;
            let shape = &mut scenario.catalog;
            let per_day = f64::from(shape.clubs * shape.games_per_club * shape.slots_per_day)
                * f64::from(shape.max_players.max(1));
            let days = (wanted / per_day.max(1.0)).ceil().clamp(1.0, 365.0) as u32;
            shape.days = shape.days.max(days);
            scenario.thresholds = Thresholds::default();
            scenario.check()?;
            let trace = Trace::expand(&scenario, s.seed);
            let out = s.out.join(point_dir(replicas, rate));
            eprintln!("capacity: {replicas} replica(s) at {rate}/s …");
            let report = execute(
                &trace,
                &RunOptions {
                    out: out.clone(),
                    fsync: s.fsync,
                    progress,
                    reproduce: String::new(),
                    service_env: Vec::new(),
                },
            )
            .await
            .with_context(|| format!("{replicas} replica(s) at {rate}/s"))?;
            let create = report.ops.get("create").cloned().unwrap_or_default();
            let total: u64 = report.ops.values().map(|o| o.count - o.skipped).sum();
            let unknown: u64 = report.ops.values().map(|o| o.unknown).sum();
            let point = Point {
                replicas,
                offered: rate,
                throughput: report.throughput,
                p50_ms: create.latency.p50,
                p99_ms: create.latency.p99,
                answered: if total == 0 {
                    1.0
                } else {
                    1.0 - unknown as f64 / total as f64
                },
                duration_s: s.duration_s,
                load_s: report.load_s,
                invariants_held: report.invariants.iter().all(|v| v.held),
            };
            eprintln!(
                "  {:.0} ops/s, create p50 {:.1} ms p99 {:.1} ms, {:.1}% answered",
                point.throughput,
                point.p50_ms,
                point.p99_ms,
                point.answered * 100.0
            );
            points.push(point);
        }
    }
    let (knees, replicas_for_target) = analyse(&points, s.p99_ms, s.target);
    let result = Capacity {
        p99_ms: s.p99_ms,
        target: s.target,
        points,
        knees,
        replicas_for_target,
        host_cores: std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
    };
    std::fs::create_dir_all(&s.out)?;
    std::fs::write(
        s.out.join("capacity.json"),
        serde_json::to_vec_pretty(&result)?,
    )?;
    std::fs::write(s.out.join("capacity.md"), markdown(&result))?;
    std::fs::write(s.out.join("index.html"), render::page(&result)?)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point whose load lasted `load_s` for a 10 s window.
    fn p(replicas: usize, offered: f64, load_s: f64, p99_ms: f64) -> Point {
        Point {
            replicas,
            offered,
            throughput: offered * 10.0 / load_s,
            p50_ms: 1.0,
            p99_ms,
            answered: 1.0,
            duration_s: 10.0,
            load_s,
            invariants_held: true,
        }
    }

    #[test]
    fn the_knee_is_the_last_rate_within_the_bound() {
        let points = [
            p(1, 100.0, 10.0, 20.0),
            p(1, 200.0, 10.1, 40.0),
            p(1, 400.0, 13.0, 900.0),
            p(2, 100.0, 10.0, 15.0),
            p(2, 200.0, 10.0, 20.0),
            p(2, 400.0, 10.2, 60.0),
        ];
        let (knees, needed) = analyse(&points, 100.0, 300.0);
        assert_eq!(knees, vec![(1, Some(200.0)), (2, Some(400.0))]);
        assert_eq!(needed, Some(2));
        let (_, none) = analyse(&points, 100.0, 1000.0);
        assert_eq!(none, None);
    }

    #[test]
    fn a_point_that_falls_behind_the_offered_rate_is_past_the_knee() {
        assert!(!p(1, 400.0, 13.0, 10.0).within(100.0));
        assert!(p(1, 400.0, 10.5, 10.0).within(100.0));
    }

    #[test]
    fn the_summary_and_chart_render() {
        let c = Capacity {
            p99_ms: 100.0,
            target: 150.0,
            points: vec![p(1, 100.0, 10.0, 20.0), p(1, 200.0, 10.0, 50.0)],
            knees: vec![(1, Some(200.0))],
            replicas_for_target: Some(1),
            host_cores: 2,
        };
        let md = markdown(&c);
        assert!(md.contains("**1 replica(s)** serve 150/s"), "{md}");
        // Every swept rate met the bound: the knee lies beyond the sweep.
        assert!(md.contains("knee not reached"), "{md}");
        assert!(md.contains("2 cores"), "{md}");
        let page = render::page(&c).unwrap();
        assert!(page.contains("<svg") && page.contains("<table"), "{page}");
        assert!(page.contains("href=\"r1-rate200/index.html\""), "{page}");
        assert!(page.contains("200/s"), "{page}");
    }
}
