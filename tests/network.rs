//! The service over a faulty network to PostgreSQL (a proxy of the world's between them): a
//! blackholed database is answered `SYS_002` within `REQUEST_DEADLINE_MS` and makes the replica
//! unready, a cut one fails fast, a slow one is slow; each heals by itself.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use contracts::{subjects as s, ErrorCode};
use integration_tests::*;
use serde_json::json;
use world::proxy::Mode;

async fn app_behind_a_proxy() -> TestApp {
    spawn_app_with(AppOptions {
        db_proxy: true,
        // The pool's own wait stays at its 5 s default: the deadline, not it, bounds the answer
        // (and a statement already sent to a hung database has no other bound at all).
        configure: |c| c.request_deadline = Duration::from_millis(1500),
        ..AppOptions::default()
    })
    .await
}

/// `/readyz`'s status.
async fn ready(app: &TestApp) -> u16 {
    let url = format!("http://{}/readyz", app.replicas[0].http_addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.get(url).send().await.unwrap().status().as_u16()
}

/// Asks until `pred` holds of the answer to `findById` of a booking that does not exist (a
/// database read), or `within` passes.
async fn until(app: &TestApp, within: Duration, pred: impl Fn(&Answer) -> bool) -> Answer {
    let started = Instant::now();
    loop {
        let answer = app
            .call(s::BOOKING_FIND_BY_ID, json!({"id": 987_654}))
            .await;
        if pred(&answer) || started.elapsed() > within {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn not_found(a: &Answer) -> bool {
    matches!(a, Answer::Err(e) if e.code() == ErrorCode::NotFound)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blackholed_database_is_answered_sys_002_within_the_deadline_and_heals() {
    let app = app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().unwrap();
    assert!(not_found(&until(&app, Duration::ZERO, not_found).await));
    assert_eq!(ready(&app).await, 200);

    proxy.set(Mode::Blackhole);
    let asked = Instant::now();
    let answer = app
        .call(s::BOOKING_FIND_BY_ID, json!({"id": 987_654}))
        .await;
    let took = asked.elapsed();
    assert_eq!(answer.code(), ErrorCode::Database, "{answer:?}");
    // 1.5 s deadline; a hang would last until the test client gives up.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let probed = Instant::now();
    assert_eq!(ready(&app).await, 503);
    assert!(probed.elapsed() < Duration::from_secs(3));

    proxy.set(Mode::Pass);
    let answer = until(&app, Duration::from_secs(15), not_found).await;
    assert!(not_found(&answer), "not healed: {answer:?}");
    assert_eq!(ready(&app).await, 200);
    // Writes heal too.
    let slot = slot(601, 6, 10, 4);
    app.seed_slot(&slot, &game(6)).await;
    app.call(s::BOOKING_CREATE, create_request(1, 601, 2))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_database_fails_fast_and_new_connections_heal_it() {
    let app = app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().unwrap();
    assert!(not_found(&until(&app, Duration::ZERO, not_found).await));
    proxy.set(Mode::Cut);
    let asked = Instant::now();
    let answer = app
        .call(s::BOOKING_FIND_BY_ID, json!({"id": 987_654}))
        .await;
    assert_eq!(answer.code(), ErrorCode::Database, "{answer:?}");
    assert!(asked.elapsed() < Duration::from_secs(4));
    proxy.set(Mode::Pass);
    let answer = until(&app, Duration::from_secs(15), not_found).await;
    assert!(not_found(&answer), "not healed: {answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_database_is_slow_not_wrong() {
    let app = app_behind_a_proxy().await;
    let proxy = app.db_proxy.as_ref().unwrap();
    let slot = slot(602, 6, 10, 4);
    app.seed_slot(&slot, &game(6)).await;
    proxy.set(Mode::Latency {
        min_ms: 30,
        max_ms: 60,
    });
    let asked = Instant::now();
    let booking = app
        .call(s::BOOKING_CREATE, create_request(2, 602, 2))
        .await
        .ok();
    assert!(asked.elapsed() >= Duration::from_millis(60));
    assert_eq!(booking["data"]["playerCount"], 2, "{booking}");
    assert_eq!(app.booked_sum(602).await, 2);
}

/// A transaction whose `BEGIN` was sent but whose answer never came back in time (the request's
/// deadline dropped it) must not leave its connection inside that transaction: the next borrower's
/// one-statement create would run in it, be answered, and vanish when the session ends. That is
/// how `db-blackhole` seed 1 once lost an acknowledged create (sqlx 0.8.6 raises its transaction
/// depth only once `BEGIN` is answered, so a cancelled `begin()` queues no `ROLLBACK`).
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_cancelled_during_its_begin_does_not_swallow_the_next_write() {
    let app = spawn_app_with(AppOptions {
        db_proxy: true,
        // One connection, so the create after the cancel gets the connection the cancel had.
        configure: |c| {
            c.request_deadline = Duration::from_millis(900);
            c.db_pool_size = 1;
        },
        ..AppOptions::default()
    })
    .await;
    let proxy = app.db_proxy.as_ref().unwrap();
    let slot = slot(603, 6, 10, 4);
    app.seed_slot(&slot, &game(6)).await;
    assert!(not_found(&until(&app, Duration::ZERO, not_found).await));
    // The pool checks a connection coming back before it is idle again (one round trip, after
    // the answer went out): let that finish before the link slows down.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 300 ms each way: the pool's check of its idle connection is back at 600 ms, the `BEGIN`
    // is sent then and its answer is due at 1200 ms, after the 900 ms deadline. A cancel of a
    // booking that does not exist opens its transaction first thing.
    proxy.set(Mode::Latency {
        min_ms: 300,
        max_ms: 300,
    });
    let answer = app
        .call(s::BOOKING_CANCEL, json!({"id": 987_654, "userId": 1}))
        .await;
    assert_eq!(answer.code(), ErrorCode::Database, "{answer:?}");
    proxy.set(Mode::Pass);
    // The late answers drain from the connection.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(3, 603, 2))
        .await
        .ok();
    let id = booking["data"]["id"].as_i64().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE id = $1")
        .bind(i32::try_from(id).unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let stuck: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity \
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        stored, 1,
        "booking {id} was acknowledged but is not stored; sessions idle in a transaction: {stuck:?}"
    );
    assert!(
        stuck.is_empty(),
        "sessions idle in a transaction: {stuck:?}"
    );
}
