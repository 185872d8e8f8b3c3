//! Executes a trace against the whole stack: operations are sent at their scheduled times (open
//! model: a slow system does not slow the senders, and latency counts from the scheduled time, so
//! coordinated omission cannot hide queueing), faults are applied on schedule, crashed replicas
//! are restarted, the database and course-stub are probed throughout (I1/I2 during faults,
//! backlog and drift for the charts), `/metrics` is scraped, and after the faults heal the run
//! waits for convergence and judges I1–I6.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use contracts::{subjects, CallError, NestClient, ReplyOutcome};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::checker::{self, Acknowledged, Deliveries, EventSeen, SlotSnapshot, Verdict};
use crate::delivery::{accounted, stranded, stub_slots, with_external, EventCounter};
use crate::report::{
    Bucket, Check, FaultSpan, Happening, Latency, MetricsAt, OpStats, Probe, Report,
};
use crate::scenario::FaultKind;
use crate::scrape::{self, Scraper};
use crate::trace::{Action, Op, Phase, Trace};
use world::stack::{ask, Stack, StackOptions};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's folder (trace, history, report, logs).
    pub out: PathBuf,
    /// Keep fsync on.
    pub fsync: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// The command that reproduces this run (printed on failure).
    pub reproduce: String,
    /// Extra service environment (e.g. a planted bug), on top of the scenario's.
    pub service_env: Vec<(String, String)>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Succeeded.
    Ok,
    /// Answered with an error.
    Fail,
    /// No answer: it may or may not have happened.
    Unknown,
    /// Not sent: the booking it refers to does not exist.
    Skipped,
}

/// One attempt of one operation, as the history records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// Operation index.
    pub i: u32,
    /// Operation kind.
    pub op: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// When it was sent, ms from the start.
    pub invoke_ms: f64,
    /// When it ended, ms from the start.
    pub end_ms: f64,
    /// How.
    pub outcome: Outcome,
    /// Wire code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Booking number the reply named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
}

/// A booking a create made, for later operations on it.
#[derive(Debug, Clone)]
struct Made {
    id: i64,
    user: i64,
    number: String,
}

/// State shared by the operation tasks.
struct Shared {
    /// The load's requests, logged in as user-api (only `booking.*` requests on a secured NATS),
    /// each waiting at most the scenario's client timeout.
    users: NestClient,
    /// The harness's connection, for the stub's control plane.
    control: async_nats::Client,
    t0: Instant,
    /// The wall clock at `t0` (UTC), to compare history times with times the service stored.
    t0_wall: chrono::NaiveDateTime,
    retries: u32,
    start_date: chrono::NaiveDate,
    made: Mutex<HashMap<u32, Made>>,
    history: Mutex<Vec<Attempt>>,
    happenings: Mutex<Vec<Happening>>,
}

impl Shared {
    fn now_ms(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1000.0
    }

    fn happened(&self, what: String) {
        let t_ms = self.t0.elapsed().as_millis() as u64;
        if let Ok(mut h) = self.happenings.lock() {
            h.push(Happening { t_ms, what });
        }
    }
}

/// A call's result: the response, a wire error code, or no answer.
enum Answer {
    Ok(Value),
    Fail(String),
    Unknown,
}

async fn call(shared: &Shared, subject: &'static str, data: &Value) -> Answer {
    match shared.users.request(subject, data).await {
        Ok(reply) => match reply.outcome {
            ReplyOutcome::Response(v) => Answer::Ok(v),
            ReplyOutcome::Err(e) => {
                Answer::Fail(e["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned())
            }
            ReplyOutcome::NoHandler(_) => Answer::Fail("NO_HANDLER".into()),
        },
        // Nobody received it: a definite failure, safe to retry.
        Err(CallError::NoResponders(_)) => Answer::Fail("NO_RESPONDERS".into()),
        Err(CallError::Unreadable(..) | CallError::WrongId(_)) => Answer::Fail("DECODE".into()),
        Err(_) => Answer::Unknown,
    }
}

/// Runs one operation (with its retries) and records every attempt.
async fn perform(shared: Arc<Shared>, op: Op) {
    // A cancel's acknowledgement names the booking it cancelled (for I4).
    let mut cancels = None;
    let (subject, data, attempts) = match &op.action {
        Action::Create {
            user,
            slot,
            players,
            key,
            ..
        } => {
            let mut data = json!({"userId": user, "gameTimeSlotId": slot, "playerCount": players,
                "paymentMethod": "card", "userEmail": format!("user{user}@example.com"),
                "userName": "시뮬레이터", "specialRequests": format!("sim-op-{}", op.i)});
            if let Some(key) = key {
                data["idempotencyKey"] = Value::from(key.clone());
            }
            // Only a keyed create may be retried safely.
            let attempts = if key.is_some() { 1 + shared.retries } else { 1 };
            (subjects::BOOKING_CREATE, data, attempts)
        }
        Action::Cancel { of } | Action::Update { of, .. } | Action::FindById { of } => {
            let made = shared.made.lock().ok().and_then(|m| m.get(of).cloned());
            let Some(made) = made else {
                record(
                    &shared,
                    &op,
                    0,
                    shared.now_ms(),
                    Outcome::Skipped,
                    None,
                    None,
                );
                return;
            };
            match &op.action {
                Action::Cancel { .. } => {
                    cancels = Some(made.number.clone());
                    (
                        subjects::BOOKING_CANCEL,
                        json!({"id": made.id, "userId": made.user, "reason": "simulator"}),
                        1,
                    )
                }
                Action::Update { players, .. } => (
                    subjects::BOOKING_UPDATE,
                    json!({"id": made.id, "dto": {"playerCount": players}}),
                    1,
                ),
                _ => (subjects::BOOKING_FIND_BY_ID, json!({"id": made.id}), 1),
            }
        }
        Action::FindByUserId { user } => (
            subjects::BOOKING_FIND_BY_USER_ID,
            json!({"userId": user}),
            1,
        ),
        Action::Availability { game, day } => {
            let date = shared.start_date + chrono::Duration::days(i64::from(*day));
            (
                subjects::BOOKING_AVAILABILITY,
                json!({"gameId": game, "date": date.to_string()}),
                1,
            )
        }
        Action::Search => (
            subjects::BOOKING_SEARCH,
            json!({"timeFilter": "upcoming", "limit": 20}),
            1,
        ),
    };
    for attempt in 0..attempts {
        let invoke = shared.now_ms();
        let answer = call(&shared, subject, &data).await;
        let last = attempt + 1 == attempts;
        match answer {
            Answer::Ok(v) => {
                let number = v["data"]["bookingNumber"].as_str().map(str::to_owned);
                if let (Action::Create { .. }, Some(id), Some(user), Some(n)) = (
                    &op.action,
                    v["data"]["id"].as_i64(),
                    v["data"]["userId"].as_i64(),
                    number.clone(),
                ) {
                    if let Ok(mut m) = shared.made.lock() {
                        m.insert(
                            op.i,
                            Made {
                                id,
                                user,
                                number: n,
                            },
                        );
                    }
                }
                let number = cancels.or(number);
                record(&shared, &op, attempt, invoke, Outcome::Ok, None, number);
                return;
            }
            Answer::Fail(code) => {
                // Unavailable or database trouble: a keyed create tries again with its key.
                let transient = code.starts_with("SYS_") || code == "NO_RESPONDERS";
                record(
                    &shared,
                    &op,
                    attempt,
                    invoke,
                    Outcome::Fail,
                    Some(code),
                    None,
                );
                if !transient || last {
                    return;
                }
            }
            Answer::Unknown => {
                record(&shared, &op, attempt, invoke, Outcome::Unknown, None, None);
                if last {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
    }
}

fn record(
    shared: &Shared,
    op: &Op,
    attempt: u32,
    invoke_ms: f64,
    outcome: Outcome,
    code: Option<String>,
    number: Option<String>,
) {
    let end_ms = shared.now_ms();
    if let Ok(mut h) = shared.history.lock() {
        h.push(Attempt {
            i: op.i,
            op: op.action.name().to_owned(),
            attempt,
            invoke_ms,
            end_ms,
            outcome,
            code,
            number,
        });
    }
}

/// I1 and I2 on one consistent snapshot (one statement sees one snapshot).
async fn slot_snapshot(pool: &sqlx::PgPool) -> anyhow::Result<Vec<SlotSnapshot>> {
    let rows: Vec<(i32, i32, i32, i64)> = sqlx::query_as(
        "SELECT c.game_time_slot_id, c.max_players, c.booked_players, COALESCE(b.players, 0)::int8 \
         FROM game_time_slot_cache c LEFT JOIN ( \
           SELECT game_time_slot_id, SUM(player_count) AS players FROM bookings \
           WHERE status IN ('PENDING', 'CONFIRMED') GROUP BY 1) b USING (game_time_slot_id) \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, max_players, cached, sum)| SlotSnapshot {
            id,
            max_players,
            cached,
            sum,
        })
        .collect())
}

async fn backlog(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status = 'PENDING'")
            .fetch_one(pool)
            .await?,
    )
}

/// course-stub's count per slot.
async fn stub_counts(client: &async_nats::Client) -> Option<BTreeMap<i32, i32>> {
    let state = course_stub::control::Control::new(client.clone())
        .state()
        .await?;
    Some(
        state
            .slots
            .iter()
            .map(|s| (s.id, s.booked_players))
            .collect(),
    )
}

fn drift(stub: &BTreeMap<i32, i32>, slots: &[SlotSnapshot]) -> i64 {
    let ours: HashMap<i32, i64> = slots.iter().map(|s| (s.id, s.sum)).collect();
    stub.iter()
        .map(|(id, theirs)| (i64::from(*theirs) - ours.get(id).copied().unwrap_or(0)).abs())
        .sum()
}

/// Sends a control request to course-stub; failures become happenings.
async fn stub_control(shared: &Shared, subject: &str, data: Value) {
    if ask(&shared.control, subject, data.clone()).await.is_none() {
        shared.happened(format!("course-stub did not take {subject} {data}"));
    }
}

/// Applies one fault event.
async fn apply(
    stack: &Stack,
    shared: &Shared,
    held: &Mutex<HashSet<usize>>,
    event: &crate::trace::FaultEvent,
) -> anyhow::Result<()> {
    use course_stub::control;
    let start = event.phase == Phase::Start;
    shared.happened(format!(
        "{} {}",
        event.kind.name(),
        if start { "begins" } else { "ends" }
    ));
    let hold = |i: usize, on: bool| {
        if let Ok(mut h) = held.lock() {
            if on {
                h.insert(i);
            } else {
                h.remove(&i);
            }
        }
    };
    match &event.kind {
        FaultKind::CourseOutage => {
            stub_control(shared, control::FAULTS, json!({"outage": start})).await
        }
        FaultKind::CourseLatency { latency_ms } => {
            let v = if start { *latency_ms } else { 0 };
            stub_control(shared, control::FAULTS, json!({"latencyMs": v})).await
        }
        FaultKind::Drop { fraction } => {
            let v = if start { *fraction } else { 0.0 };
            stub_control(shared, control::FAULTS, json!({"dropFraction": v})).await
        }
        FaultKind::Duplicate { fraction } => {
            let v = if start { *fraction } else { 0.0 };
            stub_control(shared, control::FAULTS, json!({"duplicateFraction": v})).await
        }
        FaultKind::StaleSync => stub_control(shared, control::SYNC, json!({"stale": true})).await,
        FaultKind::CourseDrift { slots, seats } => {
            if start {
                stub_control(
                    shared,
                    control::DRIFT,
                    json!({"slots": slots, "seats": seats}),
                )
                .await
            }
        }
        FaultKind::KillService { replica } => {
            if start {
                hold(*replica, true);
                stack.kill_service(*replica).await?;
                shared.happened(format!("replica {replica} killed (SIGKILL)"));
            } else {
                stack.start_service(*replica, &[]).await?;
                hold(*replica, false);
                shared.happened(format!("replica {replica} restarted"));
            }
        }
        FaultKind::NatsRestart => {
            if start {
                stack.world.stop_nats().await?;
            } else {
                stack.world.start_nats().await?;
            }
        }
        FaultKind::PostgresRestart => {
            if start {
                stack.world.stop_postgres().await?;
            } else {
                stack.world.start_postgres().await?;
            }
        }
        FaultKind::FaultPoint {
            point,
            after,
            replica,
        } => {
            if start {
                hold(*replica, true);
                stack.kill_service(*replica).await?;
                let after = after.to_string();
                stack
                    .start_service(
                        *replica,
                        &[
                            ("FAULT_POINT", point.as_str()),
                            ("FAULT_AFTER", after.as_str()),
                        ],
                    )
                    .await?;
                hold(*replica, false);
                shared.happened(format!(
                    "replica {replica} restarted with FAULT_POINT={point} FAULT_AFTER={after}"
                ));
            }
            // The end needs nothing: the supervisor restarts the replica clean once it aborts,
            // and a replica that never reached the point keeps running.
        }
    }
    Ok(())
}

/// Expands nothing, runs `trace`, writes the run's files, and returns the report.
pub async fn execute(trace: &Trace, options: &RunOptions) -> anyhow::Result<Report> {
    let scenario = &trace.header.scenario;
    let seed = trace.header.seed;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    std::fs::write(options.out.join("trace.jsonl"), trace.to_jsonl())?;
    let hash = trace.hash();

    let start_date = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    let shape = &scenario.catalog;
    let mut service_env: Vec<(String, String)> = vec![("OUTBOX_POLL_MS".into(), "200".into())];
    service_env.extend(scenario.service.iter().map(|(k, v)| (k.clone(), v.clone())));
    service_env.extend(options.service_env.iter().cloned());
    let stack_options = StackOptions {
        replicas: scenario.replicas,
        seed,
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
    };
    let stack = Arc::new(Stack::start(&stack_options, &options.out.join("logs")).await?);
    let client = stack.client().await?;
    let tap = crate::tap::Tap::start(&client).await?;
    let events_seen = EventCounter::start(&client).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(2))
        .connect(stack.db.url())
        .await?;
    let slots = trace.header.derived.slots;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM game_time_slot_cache")
            .fetch_one(&pool)
            .await?;
        if n as usize >= slots {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the catalogue sync did not reach the cache ({n} of {slots} slots)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let shared = Arc::new(Shared {
        users: NestClient::new(
            stack.client_as(world::NatsRole::UserApi).await?,
            Duration::from_millis(scenario.workload.client_timeout_ms),
        ),
        control: client.clone(),
        t0: Instant::now(),
        t0_wall: chrono::Utc::now().naive_utc(),
        retries: scenario.workload.retries,
        start_date,
        made: Mutex::new(HashMap::new()),
        history: Mutex::new(Vec::new()),
        happenings: Mutex::new(Vec::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let held: Arc<Mutex<HashSet<usize>>> = Arc::default();

    // Faults on schedule.
    let faults = {
        let (stack, shared, held, events) = (
            stack.clone(),
            shared.clone(),
            held.clone(),
            trace.faults.clone(),
        );
        tokio::spawn(async move {
            for event in events {
                tokio::time::sleep_until((shared.t0 + Duration::from_millis(event.t_ms)).into())
                    .await;
                if let Err(e) = apply(&stack, &shared, &held, &event).await {
                    shared.happened(format!("applying {}: {e:#}", event.kind.name()));
                }
            }
        })
    };

    // Replicas that die are restarted clean (unless a fault holds them down).
    let supervisor = {
        let (stack, shared, held, mut stop) =
            (stack.clone(), shared.clone(), held.clone(), stop_rx.clone());
        tokio::spawn(async move {
            while !*stop.borrow() {
                for (i, status) in stack.exited_services().await {
                    shared.happened(format!("replica {i} exited: {status}"));
                    let is_held = held.lock().map(|h| h.contains(&i)).unwrap_or(false);
                    if !is_held {
                        match stack.start_service(i, &[]).await {
                            Ok(()) => shared.happened(format!("replica {i} restarted")),
                            Err(e) => shared.happened(format!("replica {i} restart failed: {e:#}")),
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    };

    // Probes: I1/I2 on every snapshot, backlog, drift.
    let probing = {
        let (shared, pool, client, mut stop) = (
            shared.clone(),
            pool.clone(),
            client.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            let mut i1 = Verdict::new("I1", "no oversell: Σ players ≤ maxPlayers, at every probe");
            let mut i2 = Verdict::new("I2", "cache booked_players = Σ bookings, at every probe");
            let mut probes = Vec::new();
            let mut tick = 0u64;
            while !*stop.borrow() {
                let t_ms = shared.t0.elapsed().as_millis() as u64;
                let snapshot = slot_snapshot(&pool).await.ok();
                if let Some(s) = &snapshot {
                    checker::check_slots(t_ms, s, &mut i1, &mut i2);
                }
                let drift = match (&snapshot, tick % 2 == 0) {
                    (Some(s), true) => stub_counts(&client).await.map(|c| drift(&c, s)),
                    _ => None,
                };
                probes.push(Probe {
                    t_ms,
                    backlog: backlog(&pool).await.ok(),
                    drift,
                });
                tick += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => {}
                }
            }
            (i1, i2, probes)
        })
    };

    // /metrics of every replica, once a second.
    let scraping = {
        let (addrs, shared, mut stop) =
            (stack.http_addrs().to_vec(), shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let scraper = Scraper::new(Duration::from_millis(800));
            let mut out = Vec::new();
            while !*stop.borrow() {
                let t_ms = shared.t0.elapsed().as_millis() as u64;
                let mut samples = Vec::new();
                for addr in &addrs {
                    if let Ok(s) = scraper.scrape(&format!("http://{addr}/metrics")).await {
                        samples.push(
                            s.into_iter()
                                .filter(|(k, _)| !k.contains("_bucket"))
                                .collect(),
                        );
                    }
                }
                out.push(MetricsAt {
                    t_ms,
                    replicas: samples.len(),
                    values: scrape::sum(&samples),
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
            out
        })
    };

    // The operations, each at its time.
    let bar = if options.progress {
        indicatif::ProgressBar::new(trace.ops.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} ops {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for op in trace.ops.iter().cloned() {
        tokio::time::sleep_until((shared.t0 + Duration::from_millis(op.t_ms)).into()).await;
        let shared = shared.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            perform(shared, op).await;
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    faults.await.context("the fault task panicked")?;
    bar.finish_and_clear();
    let load_end = shared.t0.elapsed();

    // Liveness: the outbox drains (but for rows course-service refused, and what waits behind
    // them) and course-stub matches the bookings, refusals accounted.
    let settle = Duration::from_secs_f64(scenario.settle_s);
    let healed = Instant::now();
    let mut converged = None;
    while healed.elapsed() < settle {
        if let (Ok(0), Ok(snapshot), Some(stub), Ok(accounted)) = (
            stranded(&pool).await.map(|rows| rows.len()),
            slot_snapshot(&pool).await,
            course_stub::control::Control::new(client.clone())
                .state()
                .await,
            accounted(&pool).await,
        ) {
            let sums: HashMap<i32, i64> = snapshot.iter().map(|s| (s.id, s.sum)).collect();
            if checker::check_convergence(
                &stub_slots(&stub),
                &sums,
                &with_external(accounted, &stub),
                Some(0.0),
            )
            .held
            {
                converged = Some(healed.elapsed().as_secs_f64());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let (c1, wire) = tap.finish();
    let (mut i1, mut i2, probes) = probing.await.context("the probe task panicked")?;
    let metrics = scraping.await.context("the scrape task panicked")?;
    supervisor.await.context("the supervisor panicked")?;

    // Final judgement.
    let snapshot = slot_snapshot(&pool).await?;
    checker::check_slots(load_end.as_millis() as u64, &snapshot, &mut i1, &mut i2);
    let sums: HashMap<i32, i64> = snapshot.iter().map(|s| (s.id, s.sum)).collect();
    let stub_state = course_stub::control::Control::new(client.clone())
        .state()
        .await
        .context("course-stub did not report its state")?;
    let i3 = checker::check_convergence(
        &stub_slots(&stub_state),
        &sums,
        &with_external(accounted(&pool).await?, &stub_state),
        converged,
    );

    let history = shared.history.lock().map(|h| h.clone()).unwrap_or_default();
    let stored: Vec<(String, String, Option<String>, chrono::NaiveDateTime)> = sqlx::query_as(
        "SELECT booking_number, status::text, special_requests, created_at FROM bookings",
    )
    .fetch_all(&pool)
    .await?;
    let status: HashMap<String, String> = stored
        .iter()
        .map(|(n, s, _, _)| (n.clone(), s.clone()))
        .collect();
    let acks: Vec<Acknowledged> = history
        .iter()
        .filter(|a| a.outcome == Outcome::Ok && (a.op == "create" || a.op == "cancel"))
        .filter_map(|a| {
            Some(Acknowledged {
                op: a.i,
                kind: if a.op == "create" { "create" } else { "cancel" },
                number: a.number.clone()?,
            })
        })
        .collect();
    let i4 = checker::check_acknowledged(&acks, &status);
    // Each create tags its booking with its operation index; when the booking was written (under
    // its slot lock, just before the commit) decides which refusals count against I5.
    let mut per_op: HashMap<u32, Vec<String>> = HashMap::new();
    let mut made_at: HashMap<u32, chrono::NaiveDateTime> = HashMap::new();
    for (number, _, tag, at) in &stored {
        if let Some(op) = tag
            .as_deref()
            .and_then(|t| t.strip_prefix("sim-op-"))
            .and_then(|t| t.parse::<u32>().ok())
        {
            per_op.entry(op).or_default().push(number.clone());
            made_at.entry(op).or_insert(*at);
        }
    }
    let mut replies: HashMap<u32, Vec<String>> = HashMap::new();
    for a in history.iter().filter(|a| a.op == "create") {
        if let Some(n) = &a.number {
            replies.entry(a.i).or_default().push(n.clone());
        }
    }
    let keyed: HashSet<u32> = trace
        .ops
        .iter()
        .filter(|op| matches!(&op.action, Action::Create { key: Some(_), .. }))
        .map(|op| op.i)
        .collect();
    // A refusal counts against I5 only if the booking was already written when it was answered:
    // an abandoned attempt that commits after its retry was refused is another story.
    let refusals: Vec<(u32, u32, String)> = history
        .iter()
        .filter(|a| a.outcome == Outcome::Fail && keyed.contains(&a.i))
        .filter(|a| {
            let answered =
                shared.t0_wall + chrono::Duration::microseconds((a.end_ms * 1000.0) as i64);
            made_at.get(&a.i).is_some_and(|at| *at < answered)
        })
        .filter_map(|a| {
            let code = a.code.clone()?;
            code.starts_with("BUS_").then_some((a.i, a.attempt, code))
        })
        .collect();
    let i5 = checker::check_retries(&per_op, &replies, &refusals, trace.header.derived.keyed);

    let counts: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT event_type, status, count(*) FROM outbox_events GROUP BY 1, 2")
            .fetch_all(&pool)
            .await?;
    let rows = |seats: bool, state: &str| -> u64 {
        counts
            .iter()
            .filter(|(t, s, _)| t.starts_with("gameTimeSlots.") == seats && s == state)
            .map(|(_, _, n)| u64::try_from(*n).unwrap_or(0))
            .sum()
    };
    let stream_messages = async {
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js.get_stream("BOOKING_EVENTS").await.ok()?;
        Some(stream.info().await.ok()?.state.messages)
    }
    .await;
    let seen = events_seen.finish();
    let events_seen = if scenario.jetstream {
        None
    } else {
        let rows: Vec<(uuid::Uuid, i32, String)> = sqlx::query_as(
            "SELECT event_id, retry_count, status FROM outbox_events WHERE channel = 'events' ORDER BY id",
        )
        .fetch_all(&pool)
        .await?;
        Some(
            rows.into_iter()
                .map(|(id, retries, status)| {
                    let id = id.to_string();
                    EventSeen {
                        seen: seen.get(&id).copied().unwrap_or(0),
                        // A SENT row's last attempt is not counted in retry_count.
                        attempts: retries + i32::from(status == "SENT"),
                        sent: status == "SENT",
                        id,
                    }
                })
                .collect(),
        )
    };
    let refused_ids: Vec<uuid::Uuid> = stub_state
        .refused_ids
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    let refusals_unrecorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT event_id::text, status FROM outbox_events \
         WHERE event_id = ANY($1) AND status <> 'REJECTED' ORDER BY 1",
    )
    .bind(&refused_ids)
    .fetch_all(&pool)
    .await?;
    let rejected: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_type, COALESCE(last_error, '') FROM outbox_events WHERE status = 'REJECTED' ORDER BY id",
    )
    .fetch_all(&pool)
    .await?;
    let i6 = checker::check_deliveries(&Deliveries {
        seat_rows: rows(true, "SENT"),
        applied: stub_state.counts.applied,
        duplicated: stub_state.counts.duplicated,
        deduplicated: stub_state.counts.deduplicated,
        event_rows: rows(false, "SENT"),
        stream_messages: stream_messages.filter(|_| scenario.jetstream),
        events_seen,
        stranded: stranded(&pool).await?,
        refusals_unrecorded,
        rejected,
    });

    pool.close().await;
    let happenings = shared
        .happenings
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    drop(shared);
    match Arc::try_unwrap(stack) {
        Ok(stack) => drop(stack),
        Err(_) => anyhow::bail!("the stack is still shared after the run"),
    }

    let mut report = summarise(trace, &hash, &history, load_end);
    report.reproduce = options.reproduce.clone();
    report.probes = probes;
    report.metrics = metrics;
    report.happenings = happenings;
    report.convergence_s = converged;
    report.invariants = vec![i1, i2, i3, i4, i5, i6, c1];
    report.wire = wire;
    report.thresholds = thresholds(trace, &report);
    write_history(&options.out, &history)?;
    crate::charts::write(&report, &options.out)?;
    Ok(report)
}

fn write_history(dir: &std::path::Path, history: &[Attempt]) -> anyhow::Result<()> {
    let mut sorted: Vec<&Attempt> = history.iter().collect();
    sorted.sort_by_key(|a| (a.i, a.attempt));
    let mut text = String::new();
    for a in sorted {
        text.push_str(&serde_json::to_string(a)?);
        text.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), text)?;
    Ok(())
}

/// One second's completions: done, succeeded, latency per operation kind.
type Second = (u64, u64, BTreeMap<String, Histogram<u64>>);

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Per-operation figures and the per-second timeline from the history. An operation's latency
/// runs from its scheduled time to its final answer, retries included.
pub fn summarise(trace: &Trace, hash: &str, history: &[Attempt], load_end: Duration) -> Report {
    let scheduled: HashMap<u32, u64> = trace.ops.iter().map(|o| (o.i, o.t_ms)).collect();
    let mut finals: BTreeMap<u32, &Attempt> = BTreeMap::new();
    let mut retries: HashMap<String, u64> = HashMap::new();
    for a in history {
        if a.attempt > 0 {
            *retries.entry(a.op.clone()).or_default() += 1;
        }
        let keep = finals.get(&a.i).is_none_or(|b| a.attempt >= b.attempt);
        if keep {
            finals.insert(a.i, a);
        }
    }
    let mut hists: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut stats: BTreeMap<String, OpStats> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, Second> = BTreeMap::new();
    for a in finals.values() {
        let s = stats.entry(a.op.clone()).or_default();
        s.count += 1;
        match a.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Fail => {
                s.fail += 1;
                *s.codes
                    .entry(a.code.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            Outcome::Unknown => s.unknown += 1,
            Outcome::Skipped => {
                s.skipped += 1;
                continue;
            }
        }
        let at = scheduled.get(&a.i).copied().unwrap_or(0) as f64;
        let micros = ((a.end_ms - at).max(0.001) * 1000.0) as u64;
        let _ = hists
            .entry(a.op.clone())
            .or_insert_with(histogram)
            .record(micros.clamp(1, 600_000_000));
        let b = buckets.entry((a.end_ms / 1000.0) as u64).or_default();
        b.0 += 1;
        if a.outcome == Outcome::Ok {
            b.1 += 1;
        }
        let _ =
            b.2.entry(a.op.clone())
                .or_insert_with(histogram)
                .record(micros.clamp(1, 600_000_000));
    }
    for (op, h) in &hists {
        if let Some(s) = stats.get_mut(op) {
            s.latency = Latency::of(h);
            let mut bins = Vec::new();
            let mut le = 1.0f64;
            let mut below = 0u64;
            while below < h.len() && le <= 600_000.0 {
                let upto = h.count_between(0, (le * 1000.0) as u64);
                bins.push((le, upto - below));
                below = upto;
                le *= 2.0;
            }
            s.histogram = bins.into_iter().filter(|(_, n)| *n > 0).collect();
        }
    }
    for (op, n) in retries {
        if let Some(s) = stats.get_mut(&op) {
            s.retries = n;
        }
    }
    let last = buckets.keys().last().copied().unwrap_or(0);
    let timeline = (0..=last)
        .map(|t| {
            let (done, ok, per) = buckets.remove(&t).unwrap_or_default();
            Bucket {
                t_s: t,
                done,
                ok,
                ops: per
                    .into_iter()
                    .map(|(op, h)| (op, (h.len(), Latency::of(&h))))
                    .collect(),
            }
        })
        .collect();
    let completed: u64 = stats.values().map(|s| s.count - s.skipped).sum();
    let load_s = load_end.as_secs_f64();
    let scenario = &trace.header.scenario;
    let faults = trace
        .faults
        .iter()
        .filter(|e| e.phase == Phase::Start)
        .map(|start| FaultSpan {
            kind: start.kind.name().to_owned(),
            start_ms: start.t_ms,
            end_ms: trace
                .faults
                .iter()
                .find(|e| e.fault == start.fault && e.phase == Phase::End)
                .map_or(start.t_ms, |e| e.t_ms),
        })
        .collect();
    Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed: trace.header.seed,
        trace_hash: hash.to_owned(),
        replicas: scenario.replicas,
        reproduce: String::new(),
        offered_rate: scenario.workload.rate,
        load_s,
        throughput: completed as f64 / load_s.max(1e-9),
        ops: stats,
        timeline,
        probes: Vec::new(),
        metrics: Vec::new(),
        faults,
        happenings: Vec::new(),
        convergence_s: None,
        invariants: Vec::new(),
        wire: BTreeMap::new(),
        thresholds: Vec::new(),
    }
}

/// The scenario's thresholds against the report.
fn thresholds(trace: &Trace, report: &Report) -> Vec<Check> {
    let t = &trace.header.scenario.thresholds;
    let mut out = Vec::new();
    if let Some(bound) = t.min_throughput {
        out.push(Check {
            name: "min throughput ops/s".into(),
            bound,
            actual: report.throughput,
            held: report.throughput >= bound,
        });
    }
    for (op, bound) in &t.max_p99_ms {
        let actual = report.ops.get(op).map_or(0.0, |s| s.latency.p99);
        out.push(Check {
            name: format!("max {op} p99 ms"),
            bound: *bound,
            actual,
            held: actual <= *bound,
        });
    }
    if let Some(bound) = t.max_convergence_s {
        let actual = report.convergence_s.unwrap_or(f64::INFINITY);
        out.push(Check {
            name: "max convergence s".into(),
            bound,
            actual,
            held: actual <= bound,
        });
    }
    out
}
