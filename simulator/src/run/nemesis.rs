//! The nemesis: the one handle that owns every fault the simulator can inject, as Jepsen's
//! nemeses and turmoil's `Sim` do. Each fault is a verb on [`Nemesis`]; [`Nemesis::apply`] is the
//! only place a scenario's fault (its TOML `kind`) meets its verbs, so a new fault is one method
//! here plus one [`FaultKind`] variant. The nemesis also keeps the replicas alive: one that dies is
//! restarted clean unless a fault is holding it down.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use course_stub::control::{self, Control};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use world::proxy::Mode;
use world::stack::Stack;

use super::Journal;
use crate::scenario::FaultKind;
use crate::trace::{FaultEvent, Phase};

/// Every fault verb, over the stack's processes and course-stub's control plane.
pub(crate) struct Nemesis {
    stack: Arc<Stack>,
    course: Control,
    journal: Arc<Journal>,
    /// Replicas a fault keeps down: the supervisor leaves them alone.
    held: Mutex<HashSet<usize>>,
}

impl Nemesis {
    pub fn new(stack: Arc<Stack>, client: async_nats::Client, journal: Arc<Journal>) -> Self {
        Nemesis {
            stack,
            course: Control::new(client),
            journal,
            held: Mutex::new(HashSet::new()),
        }
    }

    /// Applies `events` at their times; a fault that cannot be applied becomes a happening.
    pub fn schedule(self: Arc<Self>, events: Vec<FaultEvent>) -> JoinHandle<()> {
        tokio::spawn(async move {
            for event in events {
                let at = self.journal.t0 + Duration::from_millis(event.t_ms);
                tokio::time::sleep_until(at.into()).await;
                if let Err(e) = self.apply(&event).await {
                    self.journal
                        .happened(format!("applying {}: {e:#}", event.kind.name()));
                }
            }
        })
    }

    /// Restarts replicas that exited (unless held down) until `stop` turns true.
    pub fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while !*stop.borrow() {
                self.revive_exited().await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    /// One fault event: the start or the end of a scheduled fault, mapped to its verbs.
    pub async fn apply(&self, event: &FaultEvent) -> anyhow::Result<()> {
        let start = event.phase == Phase::Start;
        let name = event.kind.name();
        let edge = if start { "begins" } else { "ends" };
        self.journal.happened(format!("{name} {edge}"));
        match &event.kind {
            FaultKind::CourseOutage => self.course_outage(start).await,
            FaultKind::CourseLatency { latency_ms } => {
                self.course_latency(if start { *latency_ms } else { 0 })
                    .await
            }
            FaultKind::Drop { fraction } => {
                self.course_drop(if start { *fraction } else { 0.0 }).await
            }
            FaultKind::Duplicate { fraction } => {
                self.course_duplicate(if start { *fraction } else { 0.0 })
                    .await
            }
            FaultKind::StaleSync => self.stale_sync().await,
            FaultKind::CourseDrift { slots, seats } if start => {
                self.course_drift(*slots, *seats).await
            }
            FaultKind::CourseDrift { .. } => {}
            FaultKind::KillService { replica } if start => self.kill_service(*replica).await?,
            FaultKind::KillService { replica } => self.restart_service(*replica).await?,
            FaultKind::NatsRestart if start => self.stack.world.stop_nats().await?,
            FaultKind::NatsRestart => self.stack.world.start_nats().await?,
            FaultKind::PostgresRestart if start => self.stack.world.stop_postgres().await?,
            FaultKind::PostgresRestart => self.stack.world.start_postgres().await?,
            FaultKind::FaultPoint {
                point,
                after,
                replica,
            } if start => self.crash_at(*replica, point, *after).await?,
            // The end needs nothing: the supervisor restarts the replica clean once it aborts,
            // and a replica that never reached the point keeps running.
            FaultKind::FaultPoint { .. } => {}
            FaultKind::DbLatency { min_ms, max_ms } => self.network()?.database(if start {
                Mode::Latency {
                    min_ms: *min_ms,
                    max_ms: *max_ms,
                }
            } else {
                Mode::Pass
            }),
            FaultKind::DbBlackhole => {
                self.network()?
                    .database(if start { Mode::Blackhole } else { Mode::Pass })
            }
            FaultKind::DbCut => {
                self.network()?
                    .database(if start { Mode::Cut } else { Mode::Pass })
            }
            FaultKind::DbCommitLost {
                fraction,
                before_fraction,
            } => self.network()?.database(if start {
                let per_mille = |f: &f64| (f.clamp(0.0, 1.0) * 1000.0).round() as u32;
                Mode::CommitLost {
                    per_mille: per_mille(fraction),
                    before_per_mille: per_mille(before_fraction),
                }
            } else {
                Mode::Pass
            }),
            FaultKind::Partition { replica } => self.network()?.partition(*replica, start)?,
            FaultKind::NatsNodeKill { node } if start => {
                self.stack.world.kill_nats_node(*node).await?
            }
            FaultKind::NatsNodeKill { node } => self.stack.world.start_nats_node(*node).await?,
        }
        Ok(())
    }

    /// The proxies the network faults are played on.
    fn network(&self) -> anyhow::Result<&world::network::Network> {
        self.stack
            .network
            .as_ref()
            .context("a network fault on a stack without proxies")
    }

    /// course-service answers nothing (`on`) or answers again.
    pub async fn course_outage(&self, on: bool) {
        self.tell_course(control::FAULTS, json!({"outage": on}))
            .await;
    }

    /// course-service answers `ms` late (0 to stop).
    pub async fn course_latency(&self, ms: u64) {
        self.tell_course(control::FAULTS, json!({"latencyMs": ms}))
            .await;
    }

    /// course-service drops this fraction of book/release unanswered.
    pub async fn course_drop(&self, fraction: f64) {
        self.tell_course(control::FAULTS, json!({"dropFraction": fraction}))
            .await;
    }

    /// course-service receives this fraction of book/release twice.
    pub async fn course_duplicate(&self, fraction: f64) {
        self.tell_course(control::FAULTS, json!({"duplicateFraction": fraction}))
            .await;
    }

    /// course-service broadcasts an outdated catalogue.
    pub async fn stale_sync(&self) {
        self.tell_course(control::SYNC, json!({"stale": true}))
            .await;
    }

    /// course-service's own count moves by `seats` on each of the first `slots` slots.
    pub async fn course_drift(&self, slots: u32, seats: i32) {
        self.tell_course(control::DRIFT, json!({"slots": slots, "seats": seats}))
            .await;
    }

    /// kill -9 of a replica, held down until [`Nemesis::restart_service`].
    pub async fn kill_service(&self, replica: usize) -> anyhow::Result<()> {
        self.hold(replica, true);
        self.stack.kill_service(replica).await?;
        self.journal
            .happened(format!("replica {replica} killed (SIGKILL)"));
        Ok(())
    }

    /// Starts a replica again, clean, and lets the supervisor look after it.
    pub async fn restart_service(&self, replica: usize) -> anyhow::Result<()> {
        self.stack.start_service(replica, &[]).await?;
        self.hold(replica, false);
        self.journal
            .happened(format!("replica {replica} restarted"));
        Ok(())
    }

    /// Restarts a replica armed to abort at fault point `point` after `after` passes.
    pub async fn crash_at(&self, replica: usize, point: &str, after: u64) -> anyhow::Result<()> {
        self.hold(replica, true);
        self.stack.kill_service(replica).await?;
        let after = after.to_string();
        let env = [("FAULT_POINT", point), ("FAULT_AFTER", after.as_str())];
        self.stack.start_service(replica, &env).await?;
        self.hold(replica, false);
        self.journal.happened(format!(
            "replica {replica} restarted with FAULT_POINT={point} FAULT_AFTER={after}"
        ));
        Ok(())
    }

    /// Restarts, clean, every replica that exited and no fault holds down.
    async fn revive_exited(&self) {
        for (i, status) in self.stack.exited_services().await {
            self.journal
                .happened(format!("replica {i} exited: {status}"));
            let held = self.held.lock().map(|h| h.contains(&i)).unwrap_or(false);
            if held {
                continue;
            }
            match self.stack.start_service(i, &[]).await {
                Ok(()) => self.journal.happened(format!("replica {i} restarted")),
                Err(e) => self
                    .journal
                    .happened(format!("replica {i} restart failed: {e:#}")),
            }
        }
    }

    fn hold(&self, replica: usize, on: bool) {
        if let Ok(mut h) = self.held.lock() {
            if on {
                h.insert(replica);
            } else {
                h.remove(&replica);
            }
        }
    }

    /// Sends a control request to course-stub; a refusal or silence becomes a happening.
    async fn tell_course(&self, subject: &str, data: Value) {
        if self.course.send(subject, data.clone()).await.is_none() {
            self.journal
                .happened(format!("course-stub did not take {subject} {data}"));
        }
    }
}
