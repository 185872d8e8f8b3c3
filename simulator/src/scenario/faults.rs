//! The faults a scenario schedules: what each does (to course-service, the processes, the
//! servers, or the network between the replicas and the servers) and its kebab-case name.

use serde::{Deserialize, Serialize};

/// One scheduled fault. (Unknown keys inside a fault are refused by [`FaultKind`]; `serde`
/// cannot refuse them on a struct that flattens.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// When it starts, seconds from the start of the load.
    pub at_s: f64,
    /// How long it lasts, seconds (ignored by one-shot faults).
    #[serde(default = "second")]
    pub for_s: f64,
}

fn second() -> f64 {
    1.0
}

/// The faults the simulator can inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultKind {
    /// course-service answers nothing.
    CourseOutage,
    /// course-service answers late.
    CourseLatency {
        /// Added delay.
        latency_ms: u64,
    },
    /// A fraction of book/release is dropped unanswered.
    Drop {
        /// 0..=1.
        fraction: f64,
    },
    /// A fraction of book/release is delivered twice.
    Duplicate {
        /// 0..=1.
        fraction: f64,
    },
    /// course-service broadcasts an outdated catalogue (one shot).
    StaleSync,
    /// course-service's own count moves without booking-service (one shot): `seats` booked at the
    /// club's desk on each of the first `slots` slots, so its count disagrees and it refuses.
    CourseDrift {
        /// Slots, from the start of the catalogue (the hot ones).
        slots: u32,
        /// Seats per slot.
        seats: i32,
    },
    /// kill -9 of a replica, restarted after `for_s`.
    KillService {
        /// Which replica.
        #[serde(default)]
        replica: usize,
    },
    /// NATS stopped for `for_s`, then started.
    NatsRestart,
    /// PostgreSQL stopped for `for_s`, then started.
    PostgresRestart,
    /// A replica restarted with `FAULT_POINT`/`FAULT_AFTER`: it aborts there, and is restarted clean.
    FaultPoint {
        /// `after-commit` or `before-mark-sent`.
        point: String,
        /// Passes before the crash.
        #[serde(default = "one_u64")]
        after: u64,
        /// Which replica.
        #[serde(default)]
        replica: usize,
    },
    /// Every replica's link to PostgreSQL slowed by `min_ms..=max_ms` each way (jitter).
    DbLatency {
        /// Least delay, ms.
        min_ms: u64,
        /// Most delay, ms.
        max_ms: u64,
    },
    /// Every replica's link to PostgreSQL hangs: connections stay open, nothing passes.
    DbBlackhole,
    /// Every replica's link to PostgreSQL is reset, new connections too.
    DbCut,
    /// A share of the transactions that write bookings commit, but their answer is lost and the
    /// connection reset: the service cannot know from the connection whether they committed.
    DbCommitLost {
        /// 0..=1, per booking write: its commit happens, its answer is lost.
        fraction: f64,
        /// 0..=1, per booking write: its commit is lost on the way (it rolls back).
        #[serde(default, skip_serializing_if = "crate::scenario::stages::is_zero")]
        before_fraction: f64,
    },
    /// A replica cut off from every NATS node (its connections reset).
    Partition {
        /// Which replica.
        #[serde(default)]
        replica: usize,
    },
    /// kill -9 of one node of a NATS cluster, restarted after `for_s`.
    NatsNodeKill {
        /// Which node.
        #[serde(default)]
        node: usize,
    },
}

impl FaultKind {
    /// Whether the fault is played on the proxies between the replicas and the servers (the
    /// stack then puts them in).
    pub fn on_the_network(&self) -> bool {
        matches!(
            self,
            FaultKind::DbLatency { .. }
                | FaultKind::DbBlackhole
                | FaultKind::DbCut
                | FaultKind::DbCommitLost { .. }
                | FaultKind::Partition { .. }
        )
    }
}

fn one_u64() -> u64 {
    1
}

impl FaultKind {
    /// The kebab-case name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::CourseOutage => "course-outage",
            FaultKind::CourseLatency { .. } => "course-latency",
            FaultKind::Drop { .. } => "drop",
            FaultKind::Duplicate { .. } => "duplicate",
            FaultKind::StaleSync => "stale-sync",
            FaultKind::CourseDrift { .. } => "course-drift",
            FaultKind::KillService { .. } => "kill-service",
            FaultKind::NatsRestart => "nats-restart",
            FaultKind::PostgresRestart => "postgres-restart",
            FaultKind::FaultPoint { .. } => "fault-point",
            FaultKind::DbLatency { .. } => "db-latency",
            FaultKind::DbBlackhole => "db-blackhole",
            FaultKind::DbCut => "db-cut",
            FaultKind::DbCommitLost { .. } => "db-commit-lost",
            FaultKind::Partition { .. } => "partition",
            FaultKind::NatsNodeKill { .. } => "nats-node-kill",
        }
    }
}
