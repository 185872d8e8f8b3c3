//! Phase 1: the throwaway stack a scenario asks for (replicas, catalogue, NATS flavour, service
//! environment), the harness's connections to it, and the wait for the catalogue to reach the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::NestClient;
use world::stack::{Stack, StackOptions};

use super::RunOptions;
use crate::delivery::EventCounter;
use crate::tap::Tap;
use crate::trace::Trace;

/// The running stack and the harness's handles on it.
pub(crate) struct World {
    /// The processes (shared with the nemesis while faults run).
    pub stack: Arc<Stack>,
    /// The harness's own connection (probes, course-stub's control plane, the stream's state).
    pub client: async_nats::Client,
    /// The load's requests, logged in as user-api (only `booking.*` requests on a secured NATS),
    /// each waiting at most the scenario's client timeout.
    pub users: NestClient,
    /// The database, for probes and the judge.
    pub pool: sqlx::PgPool,
    /// Checks every message on the wire against its contract (C1).
    pub tap: Tap,
    /// Counts booking events as a subscriber sees them (I6 without JetStream).
    pub events_seen: EventCounter,
    /// The first day of the catalogue.
    pub start_date: chrono::NaiveDate,
}

impl World {
    /// Starts the stack for `trace`'s scenario and waits until every slot is in the cache.
    pub async fn start(trace: &Trace, options: &RunOptions) -> anyhow::Result<Self> {
        let scenario = &trace.header.scenario;
        let start_date = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
        let stack_options = stack_options(trace, options, start_date);
        let stack = Arc::new(Stack::start(&stack_options, &options.out.join("logs")).await?);
        let client = stack.client().await?;
        let tap = Tap::start(&client).await?;
        let events_seen = EventCounter::start(&client).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(3)
            .acquire_timeout(Duration::from_secs(2))
            .connect(stack.db.url())
            .await?;
        wait_for_catalogue(&pool, trace.header.derived.slots).await?;
        let users = NestClient::new(
            stack.client_as(world::NatsRole::UserApi).await?,
            Duration::from_millis(scenario.workload.client_timeout_ms),
        );
        Ok(World {
            stack,
            client,
            users,
            pool,
            tap,
            events_seen,
            start_date,
        })
    }

    /// Closes the pool and stops every process.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        match Arc::try_unwrap(self.stack) {
            Ok(stack) => drop(stack),
            Err(_) => anyhow::bail!("the stack is still shared after the run"),
        }
        Ok(())
    }
}

/// The stack a scenario describes: its catalogue as course-stub's arguments, the service's
/// environment (scenario, then the run's extras such as a planted bug), and the NATS flavour.
fn stack_options(
    trace: &Trace,
    options: &RunOptions,
    start_date: chrono::NaiveDate,
) -> StackOptions {
    let scenario = &trace.header.scenario;
    let shape = &scenario.catalog;
    let mut service_env: Vec<(String, String)> = vec![("OUTBOX_POLL_MS".into(), "200".into())];
    service_env.extend(scenario.service.iter().map(|(k, v)| (k.clone(), v.clone())));
    service_env.extend(options.service_env.iter().cloned());
    StackOptions {
        replicas: scenario.replicas,
        seed: trace.header.seed,
        stub_args: vec![
            "--start".into(),
            start_date.to_string(),
            "--clubs".into(),
            shape.clubs.to_string(),
            "--games-per-club".into(),
            shape.games_per_club.to_string(),
            "--days".into(),
            shape.days.to_string(),
            "--slots-per-day".into(),
            shape.slots_per_day.to_string(),
            "--max-players".into(),
            shape.max_players.to_string(),
        ],
        fsync: options.fsync,
        service_env,
        jetstream: scenario.jetstream,
        secured_nats: scenario.secured_nats,
        nats_nodes: scenario.nats_nodes,
        network: scenario.faults.iter().any(|f| f.kind.on_the_network()),
        pg_settings: Vec::new(),
    }
}

/// Polls until the catalogue sync has put `slots` slots in the cache (60 s at most).
async fn wait_for_catalogue(pool: &sqlx::PgPool, slots: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM game_time_slot_cache")
            .fetch_one(pool)
            .await?;
        if n as usize >= slots {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the catalogue sync did not reach the cache ({n} of {slots} slots)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
