//! Server restarts under a running service: while PostgreSQL is down requests are answered
//! `SYS_002` within bounded time and `/readyz` says why; after it returns (and after a NATS restart)
//! the service serves again and the outbox drains without a restart of its own.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use booking_service::Config;
use contracts::{subjects as s, ErrorCode};
use integration_tests::*;
use serde_json::json;

/// A service on servers of this test's own, which it may stop and restart.
async fn app_on_own_servers() -> TestApp {
    let world = own_world().await;
    let db = world.database().await.unwrap();
    let mut config = Config::new(db.url(), world.nats_url()).unwrap();
    config.course_timeout = Duration::from_millis(500);
    config.outbox_poll = Duration::from_millis(100);
    config.db_acquire_timeout = Duration::from_millis(500);
    config.http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let running = booking_service::start(config).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(db.url())
        .await
        .unwrap();
    let client = async_nats::connect(world.nats_url()).await.unwrap();
    TestApp {
        db,
        pool,
        nats_world: world,
        replicas: vec![running],
        db_proxy: None,
        client,
    }
}

async fn readyz(app: &TestApp) -> reqwest::StatusCode {
    reqwest::get(format!("http://{}/readyz", app.replicas[0].http_addr()))
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_restart_gives_sys_002_while_down_and_full_service_after() {
    let app = app_on_own_servers().await;
    let course = FakeCourse::start(
        app.client.clone(),
        vec![slot(901, 9, 10, 8), slot(902, 9, 10, 8)],
        vec![game(9)],
        Duration::ZERO,
    )
    .await;
    app.call(s::BOOKING_CREATE, create_request(1, 901, 1))
        .await
        .ok();

    app.nats_world.stop_postgres().await.unwrap();
    let asked = Instant::now();
    let code = app
        .call(s::BOOKING_CREATE, create_request(2, 901, 1))
        .await
        .code();
    assert_eq!(code, ErrorCode::Database);
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "answered in bounded time, took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        app.call(s::BOOKING_FIND_BY_USER_ID, json!({"userId": 1}))
            .await
            .code(),
        ErrorCode::Database
    );
    assert_eq!(readyz(&app).await, reqwest::StatusCode::SERVICE_UNAVAILABLE);

    app.nats_world.start_postgres().await.unwrap();
    let booking = eventually(
        "a booking after PostgreSQL returns",
        Duration::from_secs(20),
        || async {
            match app.call(s::BOOKING_CREATE, create_request(3, 902, 2)).await {
                Answer::Ok(v) => Some(v),
                Answer::Err(_) => None,
            }
        },
    )
    .await;
    assert_eq!(booking["data"]["playerCount"], 2);
    assert_eq!(readyz(&app).await, reqwest::StatusCode::OK);
    // The relay reconnected too: both book events reach course-service.
    eventually("both book events", Duration::from_secs(20), || async {
        (course.seats.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    assert_eq!(app.booked_sum(901).await, 1);
    assert_eq!(app.booked_sum(902).await, 2);
    assert_eq!(app.cached_booked(901).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_restart_is_ridden_out_without_restarting_the_service() {
    let app = app_on_own_servers().await;
    app.nats_world.restart_nats().await.unwrap();
    let course = eventually(
        "FakeCourse after the restart",
        Duration::from_secs(20),
        || async {
            let client = async_nats::connect(app.nats_world.nats_url()).await.ok()?;
            Some(
                FakeCourse::start(
                    client,
                    vec![slot(903, 9, 10, 8)],
                    vec![game(9)],
                    Duration::ZERO,
                )
                .await,
            )
        },
    )
    .await;
    eventually(
        "the service to answer after the restart",
        Duration::from_secs(20),
        || async {
            // Not `call`: "no responders" is expected until the service has resubscribed.
            let reply =
                world::stack::ask(&app.client, s::BOOKING_CREATE, create_request(4, 903, 1))
                    .await?;
            (reply["success"] == true).then_some(())
        },
    )
    .await;
    eventually("the book event", Duration::from_secs(20), || async {
        (course.seats.lock().unwrap().len() == 1).then_some(())
    })
    .await;
    assert_eq!(readyz(&app).await, reqwest::StatusCode::OK);
}
