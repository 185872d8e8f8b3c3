//! The benchmark harness shared by `benches/create.rs` (criterion) and its summary table: a
//! production-like stack (PostgreSQL with fsync on, NATS, one release booking-service process,
//! the course-stub), slots already in the cache, and closed-loop clients that issue
//! `booking.create` either over NATS to the service or as the same SQL transaction straight to
//! PostgreSQL: the database's own limit for this work.

use std::path::Path;
use std::time::{Duration, Instant};

use contracts::{subjects, NestClient, ReplyOutcome};
use hdrhistogram::Histogram;
use serde::Serialize;
use world::stack::{Stack, StackOptions};

/// Slots the benchmark books on (each with room for every booking it will make).
pub const SLOTS: i32 = 256;
/// First slot id.
const FIRST_SLOT: i32 = 900_001;
/// The benchmark's game.
const GAME: i32 = 9_001;

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
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// A running benchmark world.
pub struct Bench {
    /// The stack (its logs are in `target/bench/logs`).
    pub stack: Stack,
    /// A pool for the direct transactions, one connection per client.
    pub pool: sqlx::PgPool,
    /// A NATS client.
    pub client: async_nats::Client,
    /// Shared counter for unique users and slot choice.
    next: std::sync::atomic::AtomicU64,
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
    /// Starts the stack (fsync on) and fills the cache with [`SLOTS`] roomy slots.
    pub async fn start(log_dir: &Path) -> anyhow::Result<Self> {
        let stack = Stack::start(
            &StackOptions {
                replicas: 1,
                seed: 1,
                stub_args: Vec::new(),
                fsync: true,
                // Group-commit knobs given to the bench (`CREATE_BATCH_*`) reach the service.
                service_env: std::iter::once(("RUST_LOG".into(), "error".into()))
                    .chain(std::env::vars().filter(|(k, _)| k.starts_with("CREATE_BATCH_")))
                    .collect(),
                ..StackOptions::default()
            },
            log_dir,
        )
        .await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(64)
            .connect(stack.db.url())
            .await?;
        let date = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
        sqlx::query(
            "INSERT INTO game_cache (game_id, name, code, front_nine_course_id, front_nine_course_name, \
             back_nine_course_id, back_nine_course_name, base_price, club_id, club_name, updated_at) \
             VALUES ($1, 'bench', 'B1', 1, 'A', 2, 'B', 20000, 1, 'club', now())",
        )
        .bind(GAME)
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO game_time_slot_cache (game_time_slot_id, game_id, game_name, game_code, \
             front_nine_course_name, back_nine_course_name, club_id, club_name, date, start_time, end_time, \
             max_players, booked_players, available_players, price, last_sync_at, updated_at) \
             SELECT id, $2, 'bench', 'B1', 'A', 'B', 1, 'club', $3, '09:00', '12:00', 1000000, 0, 1000000, \
             20000, now() + interval '1 day', now() FROM generate_series($1::int, $1::int + $4 - 1) AS id",
        )
        .bind(FIRST_SLOT)
        .bind(GAME)
        .bind(date)
        .bind(SLOTS)
        .execute(&pool)
        .await?;
        let client = stack.client().await?;
        Ok(Self {
            stack,
            pool,
            client,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn next(&self) -> (i32, i32) {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = i32::try_from(n % 1_000_000).unwrap_or(1) + 1;
        let slot = FIRST_SLOT + i32::try_from(n % SLOTS as u64).unwrap_or(0);
        (user, slot)
    }

    /// One booking through `path`; its latency.
    pub async fn book(&self, path: Route) -> anyhow::Result<Duration> {
        let (user, slot) = self.next();
        let started = Instant::now();
        match path {
            Route::Service => self.over_nats(user, slot).await?,
            Route::Direct => direct_create(&self.pool, user, slot).await?,
        }
        Ok(started.elapsed())
    }

    async fn over_nats(&self, user: i32, slot: i32) -> anyhow::Result<()> {
        let data = serde_json::json!({"userId": user, "gameTimeSlotId": slot, "playerCount": 1,
            "paymentMethod": "card", "userEmail": "bench@example.com", "userName": "bench"});
        let reply = NestClient::new(self.client.clone(), Duration::from_secs(30))
            .request(subjects::BOOKING_CREATE, &data)
            .await?;
        match reply.outcome {
            ReplyOutcome::Response(_) => Ok(()),
            other => anyhow::bail!("booking.create failed: {other:?}"),
        }
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

    /// The service process's peak resident memory (VmHWM), MiB.
    pub async fn service_peak_memory_mib(&self) -> Option<f64> {
        let pid = self.stack.service_pid(0).await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant, valid histogram bounds")
}

/// The service's create transaction as plain SQL (warm cache, no idempotency key): lock the slot,
/// read the game, insert booking, payment, history and two outbox rows, update the cache, commit.
pub async fn direct_create(pool: &sqlx::PgPool, user: i32, slot: i32) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let (max, booked, price): (i32, i32, i64) = sqlx::query_as(
        "SELECT max_players, booked_players, price::int8 FROM game_time_slot_cache \
         WHERE game_time_slot_id = $1 FOR UPDATE",
    )
    .bind(slot)
    .fetch_one(&mut *tx)
    .await?;
    anyhow::ensure!(max - booked >= 1, "slot {slot} is full");
    let _game: Option<(i32, i32)> = sqlx::query_as(
        "SELECT front_nine_course_id, back_nine_course_id FROM game_cache WHERE game_id = $1",
    )
    .bind(GAME)
    .fetch_optional(&mut *tx)
    .await?;
    let number = format!("BK-{}", uuid::Uuid::new_v4().simple());
    let charge = contracts::money::Charge::of(contracts::Won(price), 1);
    let (fee, total) = (charge.fee.get(), charge.total.get());
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'bench', 'B1', 1, 'A', 2, 'B', 1, 'club', now(), '09:00', '12:00', 1, $5, $6, $7, \
         'CONFIRMED'::\"BookingStatus\", 'card', NULL, 'bench@example.com', 'bench', NULL, now(), now()) RETURNING id",
    )
    .bind(&number)
    .bind(user)
    .bind(GAME)
    .bind(slot)
    .bind(price)
    .bind(fee)
    .bind(total)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         VALUES ($1, $2, 'card', 'PENDING', now(), now())",
    )
    .bind(id)
    .bind(total)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES ($1, 'CREATED', $2, $3, now())",
    )
    .bind(id)
    .bind(serde_json::json!({"playerCount": 1, "totalPrice": total.to_string()}))
    .bind(user)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) \
         VALUES ($1, 'Booking', $3, 'gameTimeSlots.book', $4, 'course', $6), \
         ($2, 'Booking', $3, 'booking.confirmed', $5, 'events', 'booking:' || $3)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(uuid::Uuid::new_v4())
    .bind(id.to_string())
    .bind(serde_json::json!({"timeSlotId": slot, "playerCount": 1}))
    .bind(serde_json::json!({"bookingId": id, "bookingNumber": number}))
    .bind(format!("slot:{slot}"))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE game_time_slot_cache SET booked_players = $2, available_players = max_players - $2, \
         updated_at = now() WHERE game_time_slot_id = $1",
    )
    .bind(slot)
    .bind(booked + 1)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
