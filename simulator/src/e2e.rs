//! The end-to-end run behind `cargo xtask e2e`: the whole stack as real processes, a seeded mixed
//! workload from concurrent clients (creates concentrated on a few hot slots, cancels, updates,
//! reads), then the invariants once the outbox drains: no slot oversold (I1), cache equal to the
//! bookings (I2), and course-stub's counts equal to booking-service's sums (I3).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contracts::{subjects, Codec, MessageId, ReplyOutcome};
use hdrhistogram::Histogram;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::stack::{Stack, StackOptions};

/// Knobs of the run.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// Seed of the catalogue and of every client's choices.
    pub seed: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations in all.
    pub operations: usize,
    /// booking-service replicas.
    pub replicas: usize,
    /// Where the summary and logs go.
    pub out: PathBuf,
}

/// One operation kind's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    /// Calls made.
    pub count: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Refusals and failures by wire code (`TIMEOUT` when no reply came).
    pub errors: BTreeMap<String, u64>,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest call, ms.
    pub max_ms: f64,
}

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `I1`, `I2`, `I3`.
    pub id: &'static str,
    /// What it says.
    pub name: &'static str,
    /// Whether it held.
    pub held: bool,
    /// Slots checked.
    pub checked: usize,
    /// Up to five counterexamples.
    pub witnesses: Vec<String>,
}

/// The run's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Seed.
    pub seed: u64,
    /// Clients.
    pub clients: usize,
    /// Replicas.
    pub replicas: usize,
    /// Operations.
    pub operations: usize,
    /// Wall time of the load, seconds.
    pub duration_s: f64,
    /// Operations per second.
    pub throughput: f64,
    /// Per operation kind.
    pub ops: BTreeMap<String, OpFigures>,
    /// Seconds from the end of the load until course-stub matched booking-service.
    pub convergence_s: f64,
    /// Invariants.
    pub invariants: Vec<Verdict>,
}

impl Summary {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|v| v.held)
    }

    /// The human-readable form (Markdown).
    pub fn render(&self) -> String {
        let mut out = format!(
            "# e2e run\n\nseed {} · {} clients · {} replica(s) · {} operations in {:.2} s · **{:.0} ops/s**\n\n\
             | operation | count | ok | errors | p50 ms | p99 ms | max ms |\n|---|---:|---:|---|---:|---:|---:|\n",
            self.seed, self.clients, self.replicas, self.operations, self.duration_s, self.throughput
        );
        for (name, f) in &self.ops {
            let errors = if f.errors.is_empty() {
                "-".to_owned()
            } else {
                f.errors
                    .iter()
                    .map(|(c, n)| format!("{c}×{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push_str(&format!(
                "| {name} | {} | {} | {errors} | {:.1} | {:.1} | {:.1} |\n",
                f.count, f.ok, f.p50_ms, f.p99_ms, f.max_ms
            ));
        }
        out.push_str(&format!(
            "\ncourse-stub converged {:.2} s after the load\n\n",
            self.convergence_s
        ));
        for v in &self.invariants {
            out.push_str(&format!(
                "- {} {}: **{}** ({} slots){}\n",
                v.id,
                v.name,
                if v.held { "held" } else { "VIOLATED" },
                v.checked,
                if v.witnesses.is_empty() {
                    String::new()
                } else {
                    format!(": {}", v.witnesses.join("; "))
                }
            ));
        }
        out
    }
}

/// One operation kind's latencies (µs), successes, and errors by code.
type OpRecord = (Histogram<u64>, u64, BTreeMap<String, u64>);

/// Per-operation latency and outcomes.
struct Recorder {
    ops: HashMap<&'static str, OpRecord>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            ops: HashMap::new(),
        }
    }

    fn record(&mut self, op: &'static str, took: Duration, outcome: Result<(), String>) {
        let entry = self
            .ops
            .entry(op)
            .or_insert_with(|| (histogram(), 0, BTreeMap::new()));
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = entry.0.record(micros.min(120_000_000));
        match outcome {
            Ok(()) => entry.1 += 1,
            Err(code) => *entry.2.entry(code).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Recorder) {
        for (op, (hist, ok, errors)) in other.ops {
            let entry = self
                .ops
                .entry(op)
                .or_insert_with(|| (histogram(), 0, BTreeMap::new()));
            let _ = entry.0.add(&hist);
            entry.1 += ok;
            for (code, n) in errors {
                *entry.2.entry(code).or_default() += n;
            }
        }
    }
}

/// Latencies from 1 µs to 2 minutes at three significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("constant, valid histogram bounds")
}

/// A request and its outcome: the response value, or the error code.
async fn call(
    client: &async_nats::Client,
    subject: &'static str,
    data: Value,
) -> Result<Value, String> {
    let codec = Codec::default();
    let body = codec
        .encode_request(subject, &data, &MessageId::fresh())
        .map_err(|e| e.to_string())?;
    let reply = match tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject, body.into()),
    )
    .await
    {
        Err(_) => return Err("TIMEOUT".into()),
        Ok(Err(e)) => return Err(format!("NATS:{:?}", e.kind())),
        Ok(Ok(reply)) => reply,
    };
    match Codec::with_max_len(16 << 20).decode_reply(&reply.payload) {
        Ok(r) => match r.outcome {
            ReplyOutcome::Response(v) => Ok(v),
            ReplyOutcome::Err(e) => {
                Err(e["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned())
            }
            ReplyOutcome::NoHandler(_) => Err("NO_HANDLER".into()),
        },
        Err(e) => Err(format!("DECODE:{e}")),
    }
}

/// One client's share of the workload.
async fn client_loop(
    client: async_nats::Client,
    seed: u64,
    index: usize,
    operations: usize,
    slots: Vec<(i32, i32, String)>,
) -> Recorder {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
    let mut rec = Recorder::new();
    let mut mine: Vec<(i64, i32)> = Vec::new();
    let hot = slots.len().clamp(1, 24);
    for _ in 0..operations {
        let user = i32::try_from(index * 1000).unwrap_or(0) + rng.random_range(1..=50);
        let roll = rng.random_range(0..100);
        let started = Instant::now();
        let (op, result) = if roll < 55 || mine.is_empty() {
            let slot = if rng.random_bool(0.7) {
                &slots[rng.random_range(0..hot)]
            } else {
                &slots[rng.random_range(0..slots.len())]
            };
            let players = rng.random_range(1..=2);
            let mut data = json!({
                "userId": user, "gameTimeSlotId": slot.0, "playerCount": players, "paymentMethod": "card",
                "userEmail": format!("user{user}@example.com"), "userName": "시뮬레이터"
            });
            if rng.random_bool(0.2) {
                data["idempotencyKey"] = Value::from(format!("k-{index}-{}", rng.random::<u32>()));
            }
            let r = call(&client, subjects::BOOKING_CREATE, data).await;
            if let Ok(v) = &r {
                if let (Some(id), Some(owner)) =
                    (v["data"]["id"].as_i64(), v["data"]["userId"].as_i64())
                {
                    mine.push((id, i32::try_from(owner).unwrap_or(0)));
                }
            }
            ("create", r.map(|_| ()))
        } else if roll < 67 {
            let (id, owner) = mine.swap_remove(rng.random_range(0..mine.len()));
            let r = call(
                &client,
                subjects::BOOKING_CANCEL,
                json!({"id": id, "userId": owner, "reason": "e2e"}),
            )
            .await;
            ("cancel", r.map(|_| ()))
        } else if roll < 75 {
            let (id, _) = mine[rng.random_range(0..mine.len())];
            let players = rng.random_range(1..=3);
            let r = call(
                &client,
                subjects::BOOKING_UPDATE,
                json!({"id": id, "dto": {"playerCount": players}}),
            )
            .await;
            ("update", r.map(|_| ()))
        } else {
            match rng.random_range(0..4) {
                0 => {
                    let (id, _) = mine[rng.random_range(0..mine.len())];
                    (
                        "findById",
                        call(&client, subjects::BOOKING_FIND_BY_ID, json!({"id": id}))
                            .await
                            .map(|_| ()),
                    )
                }
                1 => {
                    let (_, owner) = mine[rng.random_range(0..mine.len())];
                    (
                        "findByUserId",
                        call(
                            &client,
                            subjects::BOOKING_FIND_BY_USER_ID,
                            json!({"userId": owner}),
                        )
                        .await
                        .map(|_| ()),
                    )
                }
                2 => {
                    let slot = &slots[rng.random_range(0..slots.len())];
                    (
                        "availability",
                        call(
                            &client,
                            subjects::BOOKING_AVAILABILITY,
                            json!({"gameId": slot.1, "date": slot.2}),
                        )
                        .await
                        .map(|_| ()),
                    )
                }
                _ => (
                    "search",
                    call(
                        &client,
                        subjects::BOOKING_SEARCH,
                        json!({"timeFilter": "upcoming", "limit": 20}),
                    )
                    .await
                    .map(|_| ()),
                ),
            }
        };
        rec.record(op, started.elapsed(), result);
    }
    rec
}

/// Sums of PENDING+CONFIRMED players per slot, and the cache rows.
async fn load_sums(
    pool: &sqlx::PgPool,
) -> anyhow::Result<(HashMap<i32, i64>, Vec<(i32, i32, i32)>)> {
    let sums: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT game_time_slot_id, SUM(player_count)::int8 FROM bookings \
         WHERE status IN ('PENDING', 'CONFIRMED') GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    let cache: Vec<(i32, i32, i32)> =
        sqlx::query_as("SELECT game_time_slot_id, max_players, booked_players FROM game_time_slot_cache ORDER BY 1")
            .fetch_all(pool)
            .await?;
    Ok((sums.into_iter().collect(), cache))
}

/// Runs the default scenario and writes `summary.md` and `summary.json` under `options.out`.
pub async fn run(options: &E2eOptions) -> anyhow::Result<Summary> {
    let start = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    let stack_options = StackOptions {
        replicas: options.replicas,
        seed: options.seed,
        stub_args: vec!["--start".into(), start.to_string()],
        fsync: true,
    };
    eprintln!(
        "e2e: seed {} · {} clients · {} operations · {} replica(s) · catalogue 2 clubs × 2 games × 3 days × 8 slots from {start}",
        options.seed, options.clients, options.operations, options.replicas
    );
    let stack = Stack::start(&stack_options, &options.out.join("logs")).await?;
    let client = stack.client().await?;
    let pool = stack.pool().await?;
    let catalog =
        course_stub::Catalog::generate(options.seed, &course_stub::CatalogSpec::small(start));
    let slots: Vec<(i32, i32, String)> = catalog
        .slots
        .iter()
        .map(|s| (s.id, s.game_id, s.date.to_string()))
        .collect();

    // The stub synced its catalogue on start; wait until the cache has it all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM game_time_slot_cache")
            .fetch_one(&pool)
            .await?;
        if n as usize >= slots.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the catalogue sync did not reach the cache ({n} of {} slots)",
            slots.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let per_client = options.operations.div_ceil(options.clients.max(1));
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.clients)
        .map(|i| {
            tokio::spawn(client_loop(
                client.clone(),
                options.seed,
                i,
                per_client,
                slots.clone(),
            ))
        })
        .collect();
    let mut recorder = Recorder::new();
    for t in tasks {
        recorder.merge(t.await.context("a client task panicked")?);
    }
    let duration = started.elapsed();

    // Liveness: the outbox drains and course-stub converges on booking-service's sums.
    let load_end = Instant::now();
    let deadline = load_end + Duration::from_secs(60);
    let (sums, cache, stub) = loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status <> 'SENT'")
                .fetch_one(&pool)
                .await?;
        let (sums, cache) = load_sums(&pool).await?;
        let stub = stack.stub_state(&client).await?;
        let converged = pending == 0
            && stub
                .slots
                .iter()
                .all(|s| i64::from(s.booked_players) == sums.get(&s.id).copied().unwrap_or(0));
        if converged || Instant::now() > deadline {
            break (sums, cache, stub);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let convergence = load_end.elapsed();

    let mut i1 = Verdict {
        id: "I1",
        name: "no oversell (Σ players ≤ maxPlayers)",
        held: true,
        checked: cache.len(),
        witnesses: vec![],
    };
    let mut i2 = Verdict {
        id: "I2",
        name: "cache booked_players = Σ bookings",
        held: true,
        checked: cache.len(),
        witnesses: vec![],
    };
    for (slot, max, booked) in &cache {
        let sum = sums.get(slot).copied().unwrap_or(0);
        if sum > i64::from(*max) {
            i1.held = false;
            i1.witnesses
                .push(format!("slot {slot}: {sum} players on {max} seats"));
        }
        if sum != i64::from(*booked) {
            i2.held = false;
            i2.witnesses
                .push(format!("slot {slot}: cache {booked}, bookings {sum}"));
        }
    }
    let mut i3 = Verdict {
        id: "I3",
        name: "course-stub bookedPlayers = Σ bookings after drain",
        held: true,
        checked: stub.slots.len(),
        witnesses: vec![],
    };
    for s in &stub.slots {
        let sum = sums.get(&s.id).copied().unwrap_or(0);
        if i64::from(s.booked_players) != sum {
            i3.held = false;
            i3.witnesses.push(format!(
                "slot {}: course-stub {}, bookings {sum}",
                s.id, s.booked_players
            ));
        }
    }
    for v in [&mut i1, &mut i2, &mut i3] {
        v.witnesses.truncate(5);
    }

    let ops = recorder
        .ops
        .into_iter()
        .map(|(name, (hist, ok, errors))| {
            let ms = |v: u64| v as f64 / 1000.0;
            let count = hist.len();
            (
                name.to_owned(),
                OpFigures {
                    count,
                    ok,
                    errors,
                    p50_ms: ms(hist.value_at_quantile(0.5)),
                    p99_ms: ms(hist.value_at_quantile(0.99)),
                    max_ms: ms(hist.max()),
                },
            )
        })
        .collect::<BTreeMap<_, _>>();
    let total: u64 = ops.values().map(|o| o.count).sum();
    let summary = Summary {
        seed: options.seed,
        clients: options.clients,
        replicas: options.replicas,
        operations: usize::try_from(total).unwrap_or(usize::MAX),
        duration_s: duration.as_secs_f64(),
        throughput: total as f64 / duration.as_secs_f64().max(1e-9),
        ops,
        convergence_s: convergence.as_secs_f64(),
        invariants: vec![i1, i2, i3],
    };
    write(&options.out, &summary)?;
    pool.close().await;
    drop(stack);
    Ok(summary)
}

fn write(dir: &Path, summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("summary.md"), summary.render())?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(summary)?,
    )?;
    Ok(())
}
