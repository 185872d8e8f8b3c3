//! The `booking-service` binary: configuration errors stop it with a message naming the variable,
//! and SIGTERM stops it cleanly after it has served.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contracts::subjects;
use simulator::stack::ask;

const BIN: &str = env!("CARGO_BIN_EXE_booking-service");

#[test]
fn a_missing_database_url_stops_the_binary_with_a_clear_message() {
    let output = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL is required"), "{stderr}");
}

#[test]
fn a_malformed_knob_stops_the_binary_with_a_clear_message() {
    let output = Command::new(BIN)
        .env("DATABASE_URL", "postgres://127.0.0.1:1/x")
        .env("CACHE_TTL_SECS", "five minutes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CACHE_TTL_SECS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_serving_binary_cleanly() {
    let world = local_world().await;
    let db = world.database().await.unwrap();
    let mut child = spawn_service(&world, db.url(), &[]);
    let client = async_nats::connect(world.nats_url()).await.unwrap();
    let page = until("the binary to answer", || {
        ask(&client, subjects::BOOKING_SEARCH, serde_json::json!({}))
    })
    .await;
    assert_eq!(page["success"], true);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(&mut child);
    assert!(exit.success(), "{exit}");
}

/// Servers of this test's own (the crash tests kill processes, never shared ones).
async fn local_world() -> simulator::World {
    simulator::World::builder()
        .fsync(false)
        .local_only()
        .start()
        .await
        .unwrap()
}

/// Starts the binary on `world` with extra environment.
fn spawn_service(world: &simulator::World, db: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    cmd.env("DATABASE_URL", db)
        .env("NATS_URL", world.nats_url())
        .env("RUST_LOG", "error")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("OUTBOX_POLL_MS", "100")
        .env("COURSE_TIMEOUT_MS", "1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Crashes the binary at `point`, restarts it without the fault, and checks that the booking is
/// durable and its book event reached course-stub exactly once.
async fn crash_and_recover(point: &str, expect_reply: bool) {
    let world = local_world().await;
    let db = world.database().await.unwrap();
    let start = chrono::Utc::now().date_naive() + chrono::Duration::days(10);
    let catalog = course_stub::Catalog::generate(2, &course_stub::CatalogSpec::small(start));
    let slot = catalog.slots[0].id;
    let mut service = spawn_service(&world, db.url(), &[("FAULT_POINT", point)]);
    let client = async_nats::connect(world.nats_url()).await.unwrap();
    until("the service", || {
        ask(&client, subjects::BOOKING_SEARCH, serde_json::json!({}))
    })
    .await;
    let _stub = course_stub::start(course_stub::StubConfig {
        nats_url: world.nats_url().to_owned(),
        seed: 2,
        catalog,
        faults: course_stub::Faults::default(),
        sync_on_start: true,
    })
    .await
    .unwrap();
    let request = serde_json::json!({"userId": 77, "gameTimeSlotId": slot, "playerCount": 2,
        "userEmail": "a@example.com", "userName": "n"});
    until("the catalogue in the cache", || async {
        let answer = ask(
            &client,
            subjects::BOOKING_AVAILABILITY,
            serde_json::json!({"gameId": 1, "date": start.to_string()}),
        )
        .await?;
        (answer["data"].as_array()?.len() == 8).then_some(())
    })
    .await;
    let reply = ask(&client, subjects::BOOKING_CREATE, request).await;
    assert_eq!(reply.is_some(), expect_reply, "{point}: reply {reply:?}");
    let exit = wait_exit(&mut service);
    assert!(!exit.success(), "{point}: the process crashed");

    let mut service = spawn_service(&world, db.url(), &[]);
    let mine = until("the restarted service", || {
        ask(
            &client,
            subjects::BOOKING_FIND_BY_USER_ID,
            serde_json::json!({"userId": 77}),
        )
    })
    .await;
    assert_eq!(
        mine["data"].as_array().unwrap().len(),
        1,
        "{point}: the committed booking survived"
    );
    let state = until("course-stub to count the seats", || async {
        let v = ask(&client, course_stub::control::STATE, serde_json::json!({})).await?;
        let state: course_stub::StubState = serde_json::from_value(v["data"].clone()).ok()?;
        let booked = state.slots.iter().find(|s| s.id == slot)?.booked_players;
        (booked == 2).then_some(state)
    })
    .await;
    assert_eq!(state.counts.applied, 1, "{point}: applied exactly once");
    Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut service).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_commit_loses_no_booking_and_no_event() {
    crash_and_recover("after-commit", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_marking_an_event_sent_redelivers_it_and_course_stub_applies_it_once() {
    crash_and_recover("before-mark-sent", true).await;
}
