//! Executes a trace against the whole stack, phase by phase, the way a deterministic-simulation
//! test reads:
//!
//! 1. [`setup`]: start the throwaway stack for the scenario and wait for the catalogue.
//! 2. Safety: the open-model [`load`] (every operation at its scheduled time, so a slow system
//!    cannot slow the senders), the [`nemesis`] applying faults on schedule and restarting replicas
//!    that die, and the [`probes`] checking I1/I2 on every snapshot and scraping `/metrics`.
//! 3. [`liveness`]: after the faults heal, wait for the outbox to drain and course-stub to agree.
//! 4. [`judge`]: I1–I7 on the final state; [`summary`] turns the history into the report.

mod judge;
mod live;
mod liveness;
mod load;
mod nemesis;
mod phantoms;
mod probes;
mod setup;
mod summary;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::report::{Happening, Report};
use crate::trace::Trace;

pub use load::{Attempt, Outcome};
pub use summary::summarise;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's folder (trace, history, report, logs).
    pub out: PathBuf,
    /// Keep fsync on.
    pub fsync: bool,
    /// Print a live line each second (elapsed, ops/s, p99, errors by code, backlog) on stderr.
    pub progress: bool,
    /// The command that reproduces this run (printed on failure).
    pub reproduce: String,
    /// Extra service environment (e.g. a planted bug), on top of the scenario's.
    pub service_env: Vec<(String, String)>,
}

/// The run's clock and its log of notable moments (faults, restarts, failed control requests),
/// shared by the load, the nemesis and the probes.
pub(crate) struct Journal {
    /// The start of the load.
    pub t0: Instant,
    /// The wall clock at `t0` (UTC), to compare history times with times the service stored.
    pub t0_wall: chrono::NaiveDateTime,
    happenings: Mutex<Vec<Happening>>,
    /// The outbox backlog at the latest probe (-1: none yet), for the live line.
    backlog: std::sync::atomic::AtomicI64,
}

impl Journal {
    fn start() -> Self {
        Journal {
            t0: Instant::now(),
            t0_wall: chrono::Utc::now().naive_utc(),
            happenings: Mutex::new(Vec::new()),
            backlog: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    /// Records the latest probe's outbox backlog.
    pub fn set_backlog(&self, rows: Option<i64>) {
        self.backlog
            .store(rows.unwrap_or(-1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The latest probe's outbox backlog, if a probe has read it.
    pub fn backlog(&self) -> Option<i64> {
        let rows = self.backlog.load(std::sync::atomic::Ordering::Relaxed);
        (rows >= 0).then_some(rows)
    }

    /// Milliseconds since the start of the load.
    pub fn now_ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1000.0
    }

    /// Whole milliseconds since the start of the load.
    pub fn t_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Notes a moment for the report's timeline.
    pub fn happened(&self, what: String) {
        let t_ms = self.t_ms();
        if let Ok(mut h) = self.happenings.lock() {
            h.push(Happening { t_ms, what });
        }
    }

    fn happenings(&self) -> Vec<Happening> {
        self.happenings
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }
}

/// Runs `trace`, writes the run's files (trace, history, report, charts), and returns the report.
pub async fn execute(trace: &Trace, options: &RunOptions) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    std::fs::write(options.out.join("trace.jsonl"), trace.to_jsonl())?;
    let hash = trace.hash();

    // 1. Setup.
    let world = setup::World::start(trace, options).await?;
    let journal = Arc::new(Journal::start());

    // 2. Safety: load, faults and probes together.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let nemesis = Arc::new(nemesis::Nemesis::new(
        world.stack.clone(),
        world.client.clone(),
        journal.clone(),
    ));
    let faults = nemesis.clone().schedule(trace.faults.clone());
    let supervisor = nemesis.clone().supervise(stop_rx.clone());
    let probing = probes::probe(
        journal.clone(),
        world.pool.clone(),
        world.client.clone(),
        stop_rx.clone(),
    );
    let scraping = probes::scrape(journal.clone(), world.stack.http_addrs().to_vec(), stop_rx);
    let load = load::Load::new(&world, trace, journal.clone());
    let history = load.run(trace, options.progress).await;
    faults.await.context("the fault task panicked")?;
    let load_end = journal.t0.elapsed();

    // 3. Liveness.
    let settle = Duration::from_secs_f64(trace.header.scenario.settle_s);
    let converged = liveness::converge(&world, settle).await;
    let _ = stop_tx.send(true);
    let (c1, wire) = world.tap.finish();
    let (mut i1, mut i2, probes) = probing.await.context("the probe task panicked")?;
    let metrics = scraping.await.context("the scrape task panicked")?;
    supervisor.await.context("the supervisor panicked")?;

    // 4. Judge.
    let last = probes::check_final(&world.pool, load_end, &mut i1, &mut i2).await?;
    let [i3, i4, i5, i6, i7] =
        judge::judge(&world, trace, &history, &journal, converged, &last).await?;
    drop(nemesis);
    let host = host_facts(&world).await;
    world.stop().await?;

    let mut report = summarise(trace, &hash, &history, load_end);
    report.host = host;
    report.parameters.push((
        "fsync".to_owned(),
        if options.fsync { "on" } else { "off" }.to_owned(),
    ));
    report.reproduce = options.reproduce.clone();
    report.probes = probes;
    report.metrics = metrics;
    report.happenings = journal.happenings();
    report.convergence_s = converged;
    report.invariants = vec![i1, i2, i3, i4, i5, i6, i7, c1];
    report.wire = wire;
    report.thresholds = judge::thresholds(trace, &report);
    load::write_history(&options.out, &history)?;
    crate::charts::write(&report, &options.out)?;
    Ok(report)
}

/// The machine the run shared: its cores, PostgreSQL's and NATS's versions.
async fn host_facts(world: &setup::World) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let postgres: Option<String> = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&world.pool)
        .await
        .ok();
    vec![
        (
            "cores".to_owned(),
            format!("{cores}, shared by the load generator, PostgreSQL, NATS and every replica"),
        ),
        (
            "PostgreSQL".to_owned(),
            postgres.unwrap_or_else(|| "unknown".to_owned()),
        ),
        ("NATS".to_owned(), world.client.server_info().version),
    ]
}
