//! Shared helpers of the integration suites.
//!
//! Every suite runs against real servers from [`world::World`]: one shared PostgreSQL per test
//! binary (fsync off) with a fresh database per test cloned from a migrated template, and a NATS
//! server per test, because the service's subjects are fixed by the wire and two tests' services
//! on one NATS would answer each other's requests. Suites that kill servers build worlds of their
//! own.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use booking_service::{Config, Running};
use contracts::course::{
    CourseReply, Game, GameQuery, SlotSeats, SlotStatus, TimeSlot, TimeSlotQuery,
};
use contracts::sync::{GameSync, GameTimeSlotSync};
use contracts::{subjects, Codec, ErrorCode, ErrorValue, MessageId, ReplyOutcome, Success, Won};
use futures::StreamExt as _;
use serde_json::Value;
use world::{NatsRole, WorldBuilder};

pub use world::{TestDatabase, World};

/// The world shared by the tests of this binary.
pub async fn shared_world() -> &'static World {
    World::shared().await.unwrap()
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Returns once the NATS server has processed every subscription `client` sent so far (a flush
/// only empties the client's buffer): a message to our own inbox comes back after them.
pub async fn barrier(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .expect("NATS did not echo within 10 s");
}

/// A template name that changes whenever the migrations do.
fn template_name() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for m in booking_service::MIGRATOR.iter() {
        for b in m.checksum.iter() {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("booking_tpl_{hash:016x}")
}

/// A migrated database of this test's own.
pub async fn migrated_database() -> TestDatabase {
    shared_world()
        .await
        .database_from(&template_name(), |url| async move {
            booking_service::migrate(&url).await
        })
        .await
        .unwrap()
}

/// One test's service: its database, its NATS, the service, and a client.
pub struct TestApp {
    /// The database.
    pub db: TestDatabase,
    /// A pool on it, for assertions.
    pub pool: sqlx::PgPool,
    /// The NATS world of this test.
    pub nats_world: World,
    /// The running service replicas.
    pub replicas: Vec<Running>,
    /// The proxy between the replicas and PostgreSQL, when asked for (network faults); the
    /// test's own pool goes around it.
    pub db_proxy: Option<world::proxy::Proxy>,
    /// A NATS client for requests.
    pub client: async_nats::Client,
}

/// Options of [`spawn_app_with`].
pub struct AppOptions {
    /// Service replicas in the queue group.
    pub replicas: usize,
    /// Changes to the default configuration.
    pub configure: fn(&mut Config),
    /// NATS with JetStream (default) or without.
    pub jetstream: bool,
    /// Changes to the NATS server (`max_payload`, users and permissions).
    pub nats: fn(WorldBuilder) -> WorldBuilder,
    /// The replicas reach PostgreSQL through a proxy ([`TestApp::db_proxy`]).
    pub db_proxy: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            configure: |_| {},
            jetstream: true,
            nats: |world| world,
            db_proxy: false,
        }
    }
}

/// A service with default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A service on a fresh database and a NATS server of its own.
pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let db = migrated_database().await;
    let nats_world = (options.nats)(
        World::builder()
            .without_postgres()
            .local_only()
            .jetstream(options.jetstream),
    )
    .start()
    .await
    .unwrap();
    let (db_proxy, service_db_url) = if options.db_proxy {
        let (proxy, url) = proxy_to(db.url()).await;
        (Some(proxy), url)
    } else {
        (None, db.url().to_owned())
    };
    let mut config = Config::new(&service_db_url, nats_world.nats_url()).unwrap();
    // On a secured NATS the service logs in as itself, through its own settings.
    if let Some((user, password)) = nats_world.nats_credentials(NatsRole::BookingService) {
        config.nats_auth = booking_service::config::NatsLogin::UserPassword {
            user: user.to_owned(),
            password: password.to_owned(),
        };
    }
    config.course_timeout = Duration::from_millis(500);
    config.outbox_poll = Duration::from_millis(100);
    config.db_pool_size = 8;
    config.http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    (options.configure)(&mut config);
    let mut replicas = Vec::new();
    for _ in 0..options.replicas {
        replicas.push(booking_service::start(config.clone()).await.unwrap());
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(db.url())
        .await
        .unwrap();
    let client = nats_world.nats_connect(NatsRole::Harness).await.unwrap();
    TestApp {
        db,
        pool,
        nats_world,
        replicas,
        db_proxy,
        client,
    }
}

/// A proxy in front of the server of `url`, and `url` with its address replaced by the proxy's.
pub async fn proxy_to(url: &str) -> (world::proxy::Proxy, String) {
    let proxy = world::proxy::Proxy::start(world::network::address(url).unwrap())
        .await
        .unwrap();
    let through = world::network::pointed_at(url, proxy.addr()).unwrap();
    (proxy, through)
}

/// A decoded reply.
#[derive(Debug)]
pub enum Answer {
    /// `response`.
    Ok(Value),
    /// `err`.
    Err(ErrorValue),
}

impl Answer {
    /// The success value, or a panic naming the error.
    pub fn ok(self) -> Value {
        match self {
            Answer::Ok(v) => v,
            Answer::Err(e) => panic!("expected success, got {e}"),
        }
    }

    /// The error code, or a panic.
    pub fn code(&self) -> ErrorCode {
        match self {
            Answer::Ok(v) => panic!("expected an error, got {v}"),
            Answer::Err(e) => e.code(),
        }
    }
}

impl TestApp {
    /// Sends raw bytes as a request and returns the raw reply.
    pub async fn raw(&self, subject: &str, body: Vec<u8>) -> async_nats::Message {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.client.request(subject.to_owned(), body.into()),
        )
        .await
        .expect("request timed out")
        .expect("request failed")
    }

    /// Sends a NestJS request and decodes the reply envelope (checking the echoed id).
    pub async fn call(&self, subject: &str, data: Value) -> Answer {
        let id = MessageId::fresh();
        let reply = contracts::NestClient::new(self.client.clone(), Duration::from_secs(10))
            .request_with(subject, &data, &id, None)
            .await
            .unwrap_or_else(|e| panic!("{subject}: {e}"));
        assert_eq!(
            reply.id.as_ref(),
            Some(&id),
            "the reply must echo the request id"
        );
        match reply.outcome {
            ReplyOutcome::Response(v) => Answer::Ok(v),
            ReplyOutcome::Err(e) => Answer::Err(serde_json::from_value(e).unwrap()),
            ReplyOutcome::NoHandler(t) => panic!("no handler: {t}"),
        }
    }

    /// Pushes a game and a slot into the service's caches through the sync handlers.
    pub async fn seed_slot(&self, slot: &TimeSlot, game: &Game) {
        self.call(
            subjects::BOOKING_GAME_SYNC,
            serde_json::to_value(game_sync(game)).unwrap(),
        )
        .await
        .ok();
        self.call(
            subjects::BOOKING_SLOT_SYNC,
            serde_json::to_value(slot_sync(slot)).unwrap(),
        )
        .await
        .ok();
    }

    /// Rows in a table, for "nothing was written" checks.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The cached booked count of a slot.
    pub async fn cached_booked(&self, slot_id: i32) -> i32 {
        sqlx::query_scalar(
            "SELECT booked_players FROM game_time_slot_cache WHERE game_time_slot_id = $1",
        )
        .bind(slot_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Seats held by PENDING and CONFIRMED bookings of a slot.
    pub async fn booked_sum(&self, slot_id: i32) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(SUM(player_count), 0)::int8 FROM bookings \
             WHERE game_time_slot_id = $1 AND status IN ('PENDING', 'CONFIRMED')",
        )
        .bind(slot_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

/// The sync message for a game.
pub fn game_sync(game: &Game) -> GameSync {
    GameSync::from(game)
}

/// The sync message for a slot.
pub fn slot_sync(slot: &TimeSlot) -> GameTimeSlotSync {
    GameTimeSlotSync::from(slot)
}

/// A game for tests.
pub fn game(id: i32) -> Game {
    Game {
        id,
        name: format!("게임 {id}"),
        code: format!("G{id}"),
        description: None,
        front_nine_course_id: 10 * id + 1,
        front_nine_course_name: "A코스".into(),
        back_nine_course_id: 10 * id + 2,
        back_nine_course_name: "B코스".into(),
        total_holes: 18,
        estimated_duration: 180,
        break_duration: 10,
        max_players: 4,
        base_price: Won(15_000),
        weekend_price: None,
        holiday_price: None,
        club_id: 1,
        club_name: "한강 파크골프장".into(),
        is_active: true,
    }
}

/// A slot of `game_id`, `days` from today, with `max_players` seats.
pub fn slot(id: i32, game_id: i32, days: i64, max_players: i32) -> TimeSlot {
    TimeSlot {
        id,
        game_id,
        game_name: format!("게임 {game_id}"),
        game_code: format!("G{game_id}"),
        front_nine_course_name: "A코스".into(),
        back_nine_course_name: "B코스".into(),
        club_id: Some(1),
        club_name: "한강 파크골프장".into(),
        date: chrono::Utc::now().date_naive() + chrono::Duration::days(days),
        start_time: "09:00".into(),
        end_time: "12:00".into(),
        max_players,
        booked_players: 0,
        price: Won(15_000),
        is_premium: false,
        status: SlotStatus::Available,
        is_active: true,
    }
}

/// A valid `booking.create` payload.
pub fn create_request(user_id: i32, slot_id: i32, players: i32) -> Value {
    serde_json::json!({
        "userId": user_id,
        "gameTimeSlotId": slot_id,
        "playerCount": players,
        "paymentMethod": "card",
        "userEmail": format!("user{user_id}@example.com"),
        "userName": "홍길동",
        "userPhone": "010-1234-5678"
    })
}

/// A minimal course-service for tests: answers `gameTimeSlots.get`/`games.get` from maps and
/// records `gameTimeSlots.book`/`release` with their `Nats-Msg-Id`.
pub struct FakeCourse {
    /// Calls of `gameTimeSlots.get`.
    pub slot_calls: Arc<AtomicUsize>,
    /// `(subject, Nats-Msg-Id, payload)` of every book/release received.
    pub seats: Arc<Mutex<Vec<(String, String, SlotSeats)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: async_nats::Client,
}

impl Drop for FakeCourse {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeCourse {
    /// Starts answering on `client`, each answer after `delay`.
    pub async fn start(
        client: async_nats::Client,
        slots: Vec<TimeSlot>,
        games: Vec<Game>,
        delay: Duration,
    ) -> Self {
        let slots: Arc<HashMap<i32, TimeSlot>> =
            Arc::new(slots.into_iter().map(|s| (s.id, s)).collect());
        let games: Arc<HashMap<i32, Game>> =
            Arc::new(games.into_iter().map(|g| (g.id, g)).collect());
        let slot_calls = Arc::new(AtomicUsize::new(0));
        let seats = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for subject in [
            subjects::SLOTS_GET,
            subjects::GAMES_GET,
            subjects::SLOTS_BOOK,
            subjects::SLOTS_RELEASE,
        ] {
            let mut sub = client.subscribe(subject).await.unwrap();
            let (client, slots, games, slot_calls, seats) = (
                client.clone(),
                slots.clone(),
                games.clone(),
                slot_calls.clone(),
                seats.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    tokio::time::sleep(delay).await;
                    let codec = Codec::default();
                    let inbound = codec.decode_inbound(&msg.payload).unwrap();
                    let answer = match subject {
                        subjects::SLOTS_GET => {
                            slot_calls.fetch_add(1, Ordering::SeqCst);
                            let q: TimeSlotQuery = serde_json::from_value(inbound.data).unwrap();
                            found(slots.get(&q.time_slot_id).cloned())
                        }
                        subjects::GAMES_GET => {
                            let q: GameQuery = serde_json::from_value(inbound.data).unwrap();
                            found(games.get(&q.game_id).cloned())
                        }
                        _ => {
                            let s: SlotSeats = serde_json::from_value(inbound.data).unwrap();
                            let id = msg
                                .headers
                                .as_ref()
                                .and_then(|h| h.get(contracts::MSG_ID_HEADER))
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                            seats
                                .lock()
                                .unwrap()
                                .push((subject.to_owned(), id, s.clone()));
                            found(slots.get(&s.time_slot_id).cloned())
                        }
                    };
                    if let (Some(reply), contracts::InboundKind::Request(id)) =
                        (msg.reply, inbound.kind)
                    {
                        let body = codec.encode_response(&id, &answer).unwrap();
                        client.publish(reply, body.into()).await.unwrap();
                    }
                }
            }));
        }
        barrier(&client).await;
        Self {
            slot_calls,
            seats,
            tasks,
            client,
        }
    }

    /// Stops answering, and returns once the server has forgotten every subscription (a drop
    /// only queues the unsubscriptions).
    pub async fn stop(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
        barrier(&self.client).await;
    }
}

/// Answers as the real course-service does: found, or its own `success:false` without a timestamp.
fn found<T: serde::Serialize>(item: Option<T>) -> Value {
    match item {
        Some(item) => serde_json::to_value(CourseReply::Found(Success::new(item))).unwrap(),
        None => serde_json::json!({"success": false,
            "error": {"code": "GAME_TIMESLOT_GET_FAILED", "message": "GameTimeSlot with ID 0 not found"}}),
    }
}

// ---- the real course-stub, for the delivery suites ----

use course_stub::control::{self as stub_control, StubState};
use course_stub::{Catalog, CatalogSpec, Faults, RunningStub, StubConfig};

/// Starts the real course-stub (strict unless `faults.lenient`) on the app's NATS with a small
/// catalogue, and waits until its sync has filled the cache.
pub async fn start_stub(app: &TestApp, faults: Faults) -> (RunningStub, Catalog) {
    let start = chrono::Utc::now().date_naive() + chrono::Duration::days(10);
    let catalog = Catalog::generate(11, &CatalogSpec::small(start));
    let stub = course_stub::start(StubConfig {
        nats_url: app.nats_world.nats_url().to_owned(),
        login: match app.nats_world.nats_credentials(NatsRole::CourseService) {
            Some((user, password)) => contracts::NatsLogin::UserPassword {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            None => contracts::NatsLogin::Anonymous,
        },
        seed: 11,
        catalog: catalog.clone(),
        faults,
        sync_on_start: true,
    })
    .await
    .unwrap();
    let slots = catalog.slots.len() as i64;
    eventually(
        "the catalogue to reach the cache",
        Duration::from_secs(10),
        || async { (app.count("game_time_slot_cache").await == slots).then_some(()) },
    )
    .await;
    (stub, catalog)
}

/// A control request to course-stub; its `data`.
pub async fn control(app: &TestApp, subject: &str, data: Value) -> Value {
    stub_control::Control::new(app.client.clone())
        .send(subject, data)
        .await
        .unwrap_or_else(|| panic!("course-stub did not take {subject}"))
}

/// course-stub's counts.
pub async fn stub_state(app: &TestApp) -> StubState {
    stub_control::Control::new(app.client.clone())
        .state()
        .await
        .expect("course-stub's state")
}

/// Outbox rows not SENT.
pub async fn pending(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status <> 'SENT'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Waits for the outbox to drain and for course-stub's counts to equal the booking sums.
pub async fn converge(app: &TestApp, catalog: &Catalog) -> StubState {
    eventually(
        "the outbox to drain and course-stub to converge",
        Duration::from_secs(90),
        || async {
            if pending(app).await != 0 {
                return None;
            }
            let state = stub_state(app).await;
            for slot in &catalog.slots {
                let theirs = state
                    .slots
                    .iter()
                    .find(|s| s.id == slot.id)
                    .unwrap()
                    .booked_players;
                if i64::from(theirs) != app.booked_sum(slot.id).await {
                    return None;
                }
            }
            Some(state)
        },
    )
    .await
}

// ---- the booking-service binary, for the process suites ----

/// Servers of this test's own: for tests that stop servers or kill processes, never shared ones.
pub async fn own_world() -> World {
    World::builder()
        .fsync(false)
        .local_only()
        .start()
        .await
        .unwrap()
}

/// Starts the `booking-service` binary `cargo test` built, on `world` and `db`, with extra
/// environment; its output goes nowhere.
pub fn spawn_service(world: &World, db: &str, env: &[(&str, &str)]) -> std::process::Child {
    service_command(world, db, env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The command that starts the binary (quiet logs, any free HTTP and admin ports, a short relay
/// poll).
pub fn service_command(world: &World, db: &str, env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(world::stack::binary("booking-service").unwrap());
    cmd.env("DATABASE_URL", db)
        .env("NATS_URL", world.nats_url())
        .env("RUST_LOG", "error")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("OUTBOX_POLL_MS", "100")
        .env("COURSE_TIMEOUT_MS", "1000");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits (15 s at most) for `child` to exit.
pub fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to `child` and waits for it to exit.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {}", child.id());
    wait_exit(child)
}

/// Polls until the service on `client` answers a search (30 s at most).
pub async fn until_serving(client: &async_nats::Client) -> Value {
    eventually("the binary to answer", Duration::from_secs(30), || {
        world::stack::ask(client, subjects::BOOKING_SEARCH, serde_json::json!({}))
    })
    .await
}

// ---- floods of raw requests ----

/// Sends `n` requests of `body` to `subject` at once; returns each reply's payload (or `None`).
pub async fn flood(
    client: &async_nats::Client,
    subject: &'static str,
    body: bytes::Bytes,
    n: usize,
) -> tokio::task::JoinHandle<Vec<Option<bytes::Bytes>>> {
    let client = client.clone();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    for i in 0..n {
        client
            .publish_with_reply(subject, format!("{inbox}.{i}"), body.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    tokio::spawn(async move {
        let mut got = vec![None; n];
        let mut seen = 0;
        while seen < n {
            match tokio::time::timeout(Duration::from_secs(60), replies.next()).await {
                Ok(Some(m)) => {
                    let i: usize = m.subject.rsplit('.').next().unwrap().parse().unwrap();
                    if got[i].is_none() {
                        seen += 1;
                    }
                    got[i] = Some(m.payload);
                }
                _ => break,
            }
        }
        got
    })
}

/// The service process's peak resident set (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a VmHWM figure");
    kib * 1024
}
