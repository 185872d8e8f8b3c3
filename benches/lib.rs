//! The benchmark harness shared by `benches/create.rs` (criterion) and its summary table: a
//! production-like stack (PostgreSQL with fsync on, NATS, one release booking-service process,
//! the course-stub), slots already in the cache, and closed-loop clients that issue
//! `booking.create` over NATS to the service; beside it, the database's own limit for this work:
//! the same SQL transaction run by `pgbench` ([`pgbench`]) and by Rust straight to PostgreSQL, both
//! on a quiet database of their own (same server, same schema and slots, no relay attached).

mod direct;
mod observe;
pub mod pgbench;
mod setup;

pub use direct::direct_create;
pub use observe::{
    db_time, machine_busy_ms, process_busy_ms, reset_db_time, DbTime, ServiceSums, CPU_PARTS,
};
pub use setup::quiet_database;
use setup::{roomy_stub_slots, seed};

use std::path::Path;
use std::time::{Duration, Instant};

use contracts::{subjects, NestClient, ReplyOutcome};
use hdrhistogram::Histogram;
use serde::Serialize;
use world::stack::{Stack, StackOptions};

/// Slots the benchmark books on (each with room for every booking it will make).
pub const SLOTS: i32 = 256;
/// First slot id.
pub(crate) const FIRST_SLOT: i32 = 900_001;
/// The benchmark's game.
pub(crate) const GAME: i32 = 9_001;
/// Price per player of the benchmark's slots.
pub(crate) const PRICE: i64 = 20_000;
/// The 4-seat slot of the hot-slot rush.
const HOT_SLOT: i32 = 990_001;

/// Throughput and latency of one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// What was measured.
    pub what: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Completed bookings.
    pub ops: u64,
    /// Per second.
    pub throughput: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// A running benchmark world.
pub struct Bench {
    /// The stack (its logs are in `target/bench/logs`).
    pub stack: Stack,
    /// A pool on the service's database.
    pub pool: sqlx::PgPool,
    /// A quiet database (same schema and slots, no relay attached) for the direct baselines.
    pub quiet: world::TestDatabase,
    /// One connection on it, for its statement statistics.
    pub quiet_stats: sqlx::PgPool,
    /// A pool on it for the Rust direct path, one connection per client (made for each point, so
    /// that idle connections never crowd out `pgbench`'s).
    quiet_pool: std::sync::Mutex<sqlx::PgPool>,
    /// A NATS client.
    pub client: async_nats::Client,
    /// The course-stub's slots, roomy in the service's cache.
    service_slots: Vec<i32>,
    /// Shared counter for unique users and slot choice.
    next: std::sync::atomic::AtomicU64,
}

/// How a hot-slot rush ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rush {
    /// Clients that asked at once.
    pub clients: usize,
    /// Until the last answer (or give-up), ms.
    pub settled_ms: f64,
    /// Bookings made.
    pub sold: usize,
    /// Answered with an error (`BUS_004` for the losers).
    pub refused: usize,
    /// Never answered within 10 s.
    pub unanswered: usize,
}

/// Which path a booking takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `booking.create` over NATS to the service.
    Service,
    /// The same transaction straight to PostgreSQL.
    Direct,
}

impl Bench {
    /// Starts the stack (fsync on); the service books on the course-stub's 256 slots, made roomy
    /// in the cache, with the stub applying every book (as production's course-service would for a
    /// slot it knows), so the relay's work is the real work of delivering each booking.
    pub async fn start(log_dir: &Path) -> anyhow::Result<Self> {
        let stub_args = [
            "--clubs",
            "4",
            "--games-per-club",
            "4",
            "--days",
            "4",
            "--slots-per-day",
            "4",
        ];
        let stack = Stack::start(
            &StackOptions {
                replicas: 1,
                seed: 1,
                stub_args: stub_args.iter().map(|a| (*a).to_owned()).collect(),
                fsync: true,
                // Group-commit and relay knobs given to the bench (`CREATE_BATCH_*`, `OUTBOX_*`)
                // reach the service, and `BENCH_SERVICE_LOG` becomes its `RUST_LOG`.
                service_env: std::iter::once(("RUST_LOG".into(), "error".into()))
                    .chain(std::env::vars().filter(|(k, _)| {
                        k.starts_with("CREATE_BATCH_")
                            || k.starts_with("OUTBOX_")
                            || k == "BENCH_SERVICE_LOG"
                    }))
                    .map(|(k, v)| match k.as_str() {
                        "BENCH_SERVICE_LOG" => ("RUST_LOG".to_owned(), v),
                        _ => (k, v),
                    })
                    .collect(),
                // Statement statistics, for where PostgreSQL's time goes (same server for both
                // sides, so the cost of keeping them falls on both).
                pg_settings: vec![(
                    "shared_preload_libraries".into(),
                    "pg_stat_statements".into(),
                )],
                ..StackOptions::default()
            },
            log_dir,
        )
        .await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(stack.db.url())
            .await?;
        seed(&pool).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pool)
            .await?;
        let client = stack.client().await?;
        let service_slots = roomy_stub_slots(&pool, &client).await?;
        let quiet = quiet_database(&stack.world).await?;
        let quiet_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(quiet.url())
            .await?;
        let quiet_stats = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(quiet.url())
            .await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&quiet_stats)
            .await?;
        Ok(Self {
            stack,
            pool,
            quiet,
            quiet_stats,
            quiet_pool: std::sync::Mutex::new(quiet_pool),
            client,
            service_slots,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn direct_pool(&self) -> sqlx::PgPool {
        match self.quiet_pool.lock() {
            Ok(pool) => pool.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Gives the Rust direct path a pool of `size` connections, closing the previous one.
    pub async fn direct_clients(&self, size: usize) -> anyhow::Result<()> {
        let fresh = sqlx::postgres::PgPoolOptions::new()
            .max_connections(u32::try_from(size.max(1)).unwrap_or(1))
            .connect(self.quiet.url())
            .await?;
        let old = match self.quiet_pool.lock() {
            Ok(mut pool) => std::mem::replace(&mut *pool, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        old.close().await;
        Ok(())
    }

    /// The next user, and a slot of `path`'s database, round robin.
    fn next(&self, path: Route) -> (i32, i32) {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = i32::try_from(n % 1_000_000).unwrap_or(1) + 1;
        let slot = match path {
            Route::Service => {
                let i = usize::try_from(n).unwrap_or(0) % self.service_slots.len().max(1);
                self.service_slots.get(i).copied().unwrap_or(FIRST_SLOT)
            }
            Route::Direct => FIRST_SLOT + i32::try_from(n % SLOTS as u64).unwrap_or(0),
        };
        (user, slot)
    }

    /// One booking through `path`; its latency.
    pub async fn book(&self, path: Route) -> anyhow::Result<Duration> {
        let (user, slot) = self.next(path);
        let started = Instant::now();
        match path {
            Route::Service => self.over_nats(user, slot).await?,
            Route::Direct => direct_create(&self.direct_pool(), user, slot).await?,
        }
        Ok(started.elapsed())
    }

    async fn over_nats(&self, user: i32, slot: i32) -> anyhow::Result<()> {
        match self.ask_create(user, slot).await? {
            ReplyOutcome::Response(_) => Ok(()),
            other => anyhow::bail!("booking.create failed: {other:?}"),
        }
    }

    async fn ask_create(&self, user: i32, slot: i32) -> anyhow::Result<ReplyOutcome> {
        let data = serde_json::json!({"userId": user, "gameTimeSlotId": slot, "playerCount": 1,
            "paymentMethod": "card", "userEmail": "bench@example.com", "userName": "bench"});
        Ok(
            NestClient::new(self.client.clone(), Duration::from_secs(60))
                .request(subjects::BOOKING_CREATE, &data)
                .await?
                .outcome,
        )
    }

    /// `users` clients ask at once for one seat each of a fresh 4-seat slot: the time until every
    /// one is answered (or given up after 10 s), the seats sold, and the requests never answered.
    pub async fn rush(&self, users: usize, round: i32) -> anyhow::Result<Rush> {
        let slot = HOT_SLOT + round;
        sqlx::query(
            "INSERT INTO game_time_slot_cache (game_time_slot_id, game_id, game_name, game_code, \
             front_nine_course_name, back_nine_course_name, club_id, club_name, date, start_time, end_time, \
             max_players, booked_players, available_players, price, last_sync_at, updated_at) \
             VALUES ($1, $2, 'bench', 'B1', 'A', 'B', 1, 'club', CURRENT_DATE + 30, '10:00', '13:00', 4, 0, 4, \
             $3, now() + interval '1 day', now())",
        )
        .bind(slot)
        .bind(GAME)
        .bind(PRICE)
        .execute(&self.pool)
        .await?;
        let started = Instant::now();
        let asker = NestClient::new(self.client.clone(), Duration::from_secs(10));
        let asks = (0..users).map(|u| {
            let data = serde_json::json!({"userId": 2_000_000 + u, "gameTimeSlotId": slot,
                "playerCount": 1, "userEmail": "rush@example.com", "userName": "rush"});
            let asker = &asker;
            async move { asker.request(subjects::BOOKING_CREATE, &data).await }
        });
        let mut rush = Rush {
            clients: users,
            ..Rush::default()
        };
        for answer in futures::future::join_all(asks).await {
            match answer.map(|reply| reply.outcome) {
                Ok(ReplyOutcome::Response(_)) => rush.sold += 1,
                Ok(_) => rush.refused += 1,
                Err(_) => rush.unanswered += 1,
            }
        }
        rush.settled_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(rush)
    }

    /// `n` bookings by `clients` closed-loop clients; the wall time.
    pub async fn batch(&self, path: Route, clients: usize, n: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let per = n.div_ceil(clients as u64);
        let runs = (0..clients).map(|_| async move {
            for _ in 0..per {
                self.book(path).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
        for r in futures::future::join_all(runs).await {
            r?;
        }
        Ok(started.elapsed())
    }

    /// `clients` closed-loop clients for `duration`: throughput and latency.
    pub async fn measure(
        &self,
        path: Route,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Figures> {
        let started = Instant::now();
        let runs = (0..clients).map(|_| async move {
            let mut h = histogram();
            while started.elapsed() < duration {
                let took = self.book(path).await?;
                h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1))?;
            }
            Ok::<_, anyhow::Error>(h)
        });
        let mut all = histogram();
        for h in futures::future::join_all(runs).await {
            all.add(h?)?;
        }
        let wall = started.elapsed().as_secs_f64();
        Ok(Figures {
            what: match path {
                Route::Service => "service over NATS".into(),
                Route::Direct => "direct SQL".into(),
            },
            clients,
            ops: all.len(),
            throughput: all.len() as f64 / wall,
            p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
            mean_ms: all.mean() / 1000.0,
            p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        })
    }

    /// The NATS request/reply floor: an empty responder, one client, median and p99 in ms.
    pub async fn nats_round_trip(&self, n: usize) -> anyhow::Result<(f64, f64)> {
        use futures::StreamExt as _;
        let responder = async_nats::connect(self.stack.world.nats_url()).await?;
        let mut sub = responder.subscribe("bench.echo").await?;
        responder.flush().await?;
        let echo = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = responder.publish(reply, m.payload).await;
                }
            }
        });
        // The subscription reaches the server asynchronously: wait until it answers.
        let mut tries = 0;
        while self
            .client
            .request("bench.echo", "{}".into())
            .await
            .is_err()
        {
            tries += 1;
            anyhow::ensure!(tries < 100, "the echo responder never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut h = histogram();
        for _ in 0..n {
            let t = Instant::now();
            self.client.request("bench.echo", "{}".into()).await?;
            h.record(
                u64::try_from(t.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )?;
        }
        echo.abort();
        Ok((
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}
