//! The `booking-service` binary: configuration errors stop it with a message naming the variable,
//! and SIGTERM stops it cleanly after it has served.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contracts::{subjects, Codec, MessageId};

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
    let world = simulator::World::builder()
        .fsync(false)
        .local_only()
        .start()
        .await
        .unwrap();
    let db = world.database().await.unwrap();
    let mut child = Command::new(BIN)
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", world.nats_url())
        .env("RUST_LOG", "warn")
        .env("HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = async_nats::connect(world.nats_url()).await.unwrap();
    let codec = Codec::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = codec
            .encode_request(
                subjects::BOOKING_SEARCH,
                &serde_json::json!({}),
                &MessageId::fresh(),
            )
            .unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subjects::BOOKING_SEARCH, body.into()),
        )
        .await;
        if let Ok(Ok(reply)) = reply {
            let reply = codec.decode_reply(&reply.payload).unwrap();
            assert!(matches!(
                reply.outcome,
                contracts::ReplyOutcome::Response(_)
            ));
            break;
        }
        assert!(Instant::now() < deadline, "the binary never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the binary did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
}
