//! `/metrics`, `/healthz` and `/readyz`: every named metric moves as the test drives it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::{subjects as s, ErrorCode};
use integration_tests::*;
use serde_json::json;

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", app.replicas[0].http_addr());
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the first sample whose line starts with `name` (labels included in `name`).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_named_metric_moves_as_the_service_works() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.cache_ttl = Duration::ZERO,
        ..AppOptions::default()
    })
    .await;
    assert_eq!(get(&app, "/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get(&app, "/readyz").await.0, 200);
    let (_, before) = get(&app, "/metrics").await;
    for name in [
        "booking_created_total",
        "booking_cancelled_total",
        "cache_hits_total",
        "cache_misses_total",
        "stale_fallbacks_total",
        "course_service_latency_seconds",
        "course_service_failures_total",
        "nats_publish_failures_total",
        "outbox_backlog",
        "outbox_oldest_pending_seconds",
        "create_seconds",
        "create_write_seconds",
    ] {
        assert!(
            before.contains(name),
            "{name} missing from /metrics:\n{before}"
        );
    }

    // A miss answered by course-service, then (TTL 0) a stale fallback once it is gone.
    let course = FakeCourse::start(
        app.client.clone(),
        vec![slot(700, 7, 10, 4)],
        vec![game(7)],
        Duration::ZERO,
    )
    .await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(1, 700, 1))
        .await
        .ok()["data"]
        .clone();
    course.stop().await;
    app.call(s::BOOKING_CREATE, create_request(2, 700, 1))
        .await
        .ok();
    app.call(s::BOOKING_CANCEL, json!({"id": booking["id"], "userId": 1}))
        .await
        .ok();
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(3, 701, 1))
            .await
            .code(),
        ErrorCode::ServiceUnavailable
    );
    app.raw(s::BOOKING_CREATE, b"{broken".to_vec()).await;

    let after = eventually(
        "publish failures to be counted",
        Duration::from_secs(10),
        || async {
            let (_, text) = get(&app, "/metrics").await;
            (sample(&text, "nats_publish_failures_total") > 0.0).then_some(text)
        },
    )
    .await;
    assert_eq!(sample(&after, "booking_created_total"), 2.0);
    assert_eq!(sample(&after, "booking_cancelled_total"), 1.0);
    assert!(sample(&after, "cache_misses_total") >= 3.0);
    assert_eq!(sample(&after, "stale_fallbacks_total"), 1.0);
    assert!(sample(&after, "course_service_latency_seconds_count") >= 3.0);
    assert!(
        sample(
            &after,
            "course_service_failures_total{kind=\"no_responders\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "outbox_backlog") >= 1.0,
        "book/release wait while course-service is gone"
    );
    assert_eq!(sample(&after, "malformed_messages_total"), 1.0);
    // Every create answered is timed (the unreadable one never reached a handler); the two that
    // got as far as their write are timed there too (the third was refused before, SYS_004).
    assert_eq!(sample(&after, "create_seconds_count"), 3.0, "{after}");
    assert!(sample(&after, "create_seconds_sum") > 0.0, "{after}");
    assert_eq!(sample(&after, "create_write_seconds_count"), 2.0, "{after}");
    assert!(
        sample(&after, "create_write_seconds_sum") <= sample(&after, "create_seconds_sum"),
        "a create's write is part of its time in the replica: {after}"
    );
}
