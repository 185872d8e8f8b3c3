//! Delivery under faults, against the real course-stub: nothing is lost while course-service is
//! down, dropped and duplicated book/release still converge, and two relays never send one event
//! twice.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::subjects as s;
use course_stub::control;
use course_stub::Faults;
use integration_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn bookings_succeed_during_a_course_service_outage_and_every_event_arrives_after_it() {
    let app = spawn_app().await;
    let (_stub, catalog) = start_stub(
        &app,
        Faults {
            outage: true,
            ..Faults::default()
        },
    )
    .await;
    for i in 0..100 {
        let slot = &catalog.slots[i % catalog.slots.len()];
        app.call(s::BOOKING_CREATE, create_request(i as i32 + 1, slot.id, 1))
            .await
            .ok();
    }
    // The book events cannot be delivered: the relay keeps trying and the backlog holds them.
    eventually("the relay to retry", Duration::from_secs(10), || async {
        let attempts: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(retry_count), 0)::int8 FROM outbox_events")
                .fetch_one(&app.pool)
                .await
                .ok()?;
        (attempts >= 1).then_some(())
    })
    .await;
    assert!(pending(&app).await >= 100, "book events wait in the outbox");
    assert_eq!(stub_state(&app).await.counts.applied, 0);

    control(&app, control::FAULTS, json!({"outage": false})).await;
    let state = converge(&app, &catalog).await;
    assert_eq!(state.counts.applied, 100);
    assert_eq!(pending(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_and_duplicated_book_and_release_still_converge() {
    let app = spawn_app().await;
    let faults = Faults {
        drop_fraction: 0.3,
        duplicate_fraction: 0.2,
        ..Faults::default()
    };
    let (_stub, catalog) = start_stub(&app, faults).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let slot = &catalog.slots[i % 20];
        let reply = app
            .call(s::BOOKING_CREATE, create_request(i as i32 + 1, slot.id, 1))
            .await
            .ok();
        ids.push((reply["data"]["id"].clone(), i as i32 + 1));
    }
    for (id, user) in ids.iter().step_by(3) {
        app.call(s::BOOKING_CANCEL, json!({"id": id, "userId": user}))
            .await
            .ok();
    }
    let state = converge(&app, &catalog).await;
    assert!(state.counts.dropped > 0, "{:?}", state.counts);
    assert!(state.counts.duplicated > 0, "{:?}", state.counts);
    assert_eq!(
        state.counts.deduplicated, state.counts.duplicated,
        "every duplicate was caught by its id"
    );
    assert_eq!(
        state.counts.applied,
        60 + 20,
        "each book and release applied exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_relaying_at_once_never_send_one_event_twice() {
    let app = spawn_app_with(AppOptions {
        replicas: 2,
        ..AppOptions::default()
    })
    .await;
    let (_stub, catalog) = start_stub(&app, Faults::default()).await;
    let calls = (0..80).map(|i| {
        let slot = catalog.slots[i % catalog.slots.len()].id;
        app.call(s::BOOKING_CREATE, create_request(i as i32 + 1, slot, 1))
    });
    for answer in futures::future::join_all(calls).await {
        answer.ok();
    }
    let state = converge(&app, &catalog).await;
    assert_eq!(state.counts.received, 80, "one message per event");
    assert_eq!(state.counts.deduplicated, 0);
    assert_eq!(state.counts.applied, 80);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_fails_fast_while_course_service_is_down_and_closes_after_a_good_probe() {
    let app = spawn_app_with(AppOptions {
        configure: |c| {
            c.breaker_threshold = 3;
            c.breaker_open = Duration::from_millis(500);
            c.course_retries = 0;
        },
        ..AppOptions::default()
    })
    .await;
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", app.replicas[0].http_addr()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Three misses with nobody listening open the breaker; the next ones are not even tried.
    for i in 0..6 {
        let code = app
            .call(s::BOOKING_CREATE, create_request(1, 800 + i, 1))
            .await
            .code();
        assert_eq!(code, contracts::ErrorCode::ServiceUnavailable);
    }
    let text = metrics().await;
    assert_eq!(
        metric(
            &text,
            "course_service_failures_total{kind=\"no_responders\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "course_service_failures_total{kind=\"circuit_open\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(metric(&text, "course_service_breaker_state"), 1.0);

    // Course-service comes back; after the open period one probe goes through and closes it.
    let _course = FakeCourse::start(
        app.client.clone(),
        vec![slot(810, 8, 10, 4)],
        vec![game(8)],
        Duration::ZERO,
    )
    .await;
    // Until the open period ends creates fail fast; then the first one is the probe.
    eventually(
        "a create to get through",
        Duration::from_secs(10),
        || async {
            let answer = app.call(s::BOOKING_CREATE, create_request(1, 810, 1)).await;
            matches!(answer, Answer::Ok(_)).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(&metrics().await, "course_service_breaker_state"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_never_overtakes_the_book_of_its_booking() {
    let app = spawn_app().await;
    let (_stub, catalog) = start_stub(
        &app,
        Faults {
            outage: true,
            ..Faults::default()
        },
    )
    .await;
    // A bystander sees every book/release the relay puts on the wire, in the order it sent them.
    let mut wire = app.client.subscribe("gameTimeSlots.*").await.unwrap();
    app.client.flush().await.unwrap();
    let slot = catalog.slots[0].id;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(5, slot, 2))
        .await
        .ok();
    app.call(
        s::BOOKING_CANCEL,
        json!({"id": booking["data"]["id"], "userId": 5}),
    )
    .await
    .ok();

    // While course-service is silent the book is retried and the release is never even tried.
    eventually(
        "the book to be retried",
        Duration::from_secs(10),
        || async {
            let tries: i32 = sqlx::query_scalar(
                "SELECT retry_count FROM outbox_events WHERE event_type = $1 ORDER BY id LIMIT 1",
            )
            .bind(s::SLOTS_BOOK)
            .fetch_optional(&app.pool)
            .await
            .ok()??;
            (tries >= 1).then_some(())
        },
    )
    .await;
    let tries: Vec<(String, i32)> = sqlx::query_as(
        "SELECT event_type, retry_count FROM outbox_events \
         WHERE event_type LIKE 'gameTimeSlots.%' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(tries[0].0 == s::SLOTS_BOOK && tries[0].1 >= 1, "{tries:?}");
    assert_eq!((tries[1].0.as_str(), tries[1].1), (s::SLOTS_RELEASE, 0));

    control(&app, control::FAULTS, json!({"outage": false})).await;
    let state = converge(&app, &catalog).await;
    assert_eq!(state.counts.applied, 2);
    let mut order = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(
        Duration::from_millis(200),
        futures::StreamExt::next(&mut wire),
    )
    .await
    {
        order.push(message.subject.to_string());
    }
    let last_book = order.iter().rposition(|subject| subject == s::SLOTS_BOOK);
    let first_release = order.iter().position(|subject| subject == s::SLOTS_RELEASE);
    assert!(
        matches!((last_book, first_release), (Some(b), Some(r)) if b < r),
        "every book attempt precedes the release: {order:?}"
    );
}
