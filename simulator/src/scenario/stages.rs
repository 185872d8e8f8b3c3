//! The built-in scenarios, and the workload's ramping stages: the arrival rate at each moment and
//! the checks on a stage list.

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::Workload;

/// The scenarios shipped with the simulator, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("e2e", include_str!("../../scenarios/e2e.toml")),
    ("rush", include_str!("../../scenarios/rush.toml")),
    ("steady", include_str!("../../scenarios/steady.toml")),
    (
        "course-outage",
        include_str!("../../scenarios/course-outage.toml"),
    ),
    (
        "lost-events",
        include_str!("../../scenarios/lost-events.toml"),
    ),
    (
        "duplicate-events",
        include_str!("../../scenarios/duplicate-events.toml"),
    ),
    (
        "stale-sync",
        include_str!("../../scenarios/stale-sync.toml"),
    ),
    (
        "crash-restart",
        include_str!("../../scenarios/crash-restart.toml"),
    ),
    (
        "nats-restart",
        include_str!("../../scenarios/nats-restart.toml"),
    ),
    (
        "postgres-restart",
        include_str!("../../scenarios/postgres-restart.toml"),
    ),
    ("replicas", include_str!("../../scenarios/replicas.toml")),
    (
        "course-refuses",
        include_str!("../../scenarios/course-refuses.toml"),
    ),
    (
        "no-jetstream",
        include_str!("../../scenarios/no-jetstream.toml"),
    ),
    (
        "long-outage",
        include_str!("../../scenarios/long-outage.toml"),
    ),
    (
        "retry-rush",
        include_str!("../../scenarios/retry-rush.toml"),
    ),
    (
        "batch-rush",
        include_str!("../../scenarios/batch-rush.toml"),
    ),
    ("ramp", include_str!("../../scenarios/ramp.toml")),
    (
        "nats-cluster",
        include_str!("../../scenarios/nats-cluster.toml"),
    ),
    ("partition", include_str!("../../scenarios/partition.toml")),
    (
        "db-latency",
        include_str!("../../scenarios/db-latency.toml"),
    ),
    (
        "db-blackhole",
        include_str!("../../scenarios/db-blackhole.toml"),
    ),
    (
        "commit-lost",
        include_str!("../../scenarios/commit-lost.toml"),
    ),
    (
        "jetstream-quorum",
        include_str!("../../scenarios/jetstream-quorum.toml"),
    ),
];

/// One ramping stage: the rate moves linearly to `target` over `duration_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// How long the ramp takes, seconds.
    pub duration_s: f64,
    /// The arrival rate at its end, per second.
    pub target: f64,
}

/// For `skip_serializing_if`: a field at zero is left out, so scenarios written before it existed
/// keep their bytes (and their traces' hashes).
pub(crate) fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Workload {
    /// The arrival rate `t_s` seconds into the load.
    pub fn rate_at(&self, t_s: f64) -> f64 {
        let mut from = self.rate;
        let mut start = 0.0;
        for stage in &self.stages {
            if t_s < start + stage.duration_s {
                let done = (t_s - start) / stage.duration_s;
                return from + (stage.target - from) * done;
            }
            from = stage.target;
            start += stage.duration_s;
        }
        from
    }

    /// The highest rate the workload reaches.
    pub fn peak_rate(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.rate, f64::max)
    }
}

/// A stage list and warm-up that make sense for a load of `duration_s`.
pub(crate) fn check(w: &Workload, duration_s: f64) -> anyhow::Result<()> {
    for (n, stage) in w.stages.iter().enumerate() {
        if !(stage.duration_s > 0.0 && stage.duration_s <= 3600.0) {
            bail!(
                "workload.stages[{n}].duration_s must be in (0, 3600], got {}",
                stage.duration_s
            );
        }
        if !(0.0..=100_000.0).contains(&stage.target) {
            bail!(
                "workload.stages[{n}].target must be in [0, 100000], got {}",
                stage.target
            );
        }
    }
    let ramped: f64 = w.stages.iter().map(|s| s.duration_s).sum();
    if ramped > duration_s + 1e-9 {
        bail!("workload.stages last {ramped} s, longer than duration_s {duration_s}");
    }
    if !(0.0..duration_s).contains(&w.warmup_s) {
        bail!(
            "workload.warmup_s must be in [0, duration_s), got {}",
            w.warmup_s
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_ramps_linearly_then_holds() {
        let w = Workload {
            rate: 100.0,
            stages: vec![
                Stage {
                    duration_s: 2.0,
                    target: 300.0,
                },
                Stage {
                    duration_s: 1.0,
                    target: 300.0,
                },
                Stage {
                    duration_s: 2.0,
                    target: 0.0,
                },
            ],
            ..Workload::default()
        };
        assert_eq!(w.rate_at(0.0), 100.0);
        assert_eq!(w.rate_at(1.0), 200.0);
        assert_eq!(w.rate_at(2.5), 300.0);
        assert_eq!(w.rate_at(4.0), 150.0);
        assert_eq!(w.rate_at(9.0), 0.0);
        assert_eq!(w.peak_rate(), 300.0);
    }
}
