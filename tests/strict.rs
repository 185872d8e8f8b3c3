//! The service against peers as strict as production (issue 11): the real course-service's failure
//! answers and refusals, a NATS server without JetStream, clients that retry after a commit, and a
//! shutdown with requests still queued. Each test failed on the code before the fix it names.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::{subjects as s, ErrorCode};
use course_stub::control;
use course_stub::Faults;
use futures::StreamExt as _;
use integration_tests::*;
use serde_json::{json, Value};

async fn http(app: &TestApp, method: reqwest::Method, path: &str) -> String {
    // The operator's routes are on the admin address, the rest beside the metrics.
    let addr = if path.starts_with("/outbox") {
        app.replicas[0].admin_addr()
    } else {
        app.replicas[0].http_addr()
    };
    let url = format!("http://{addr}{path}");
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.text().await.unwrap()
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = http(app, reqwest::Method::GET, "/metrics").await;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn statuses(app: &TestApp) -> Vec<(String, String, i32)> {
    sqlx::query_as(
        "SELECT event_type, status, retry_count FROM outbox_events WHERE channel = 'course' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Before: course-service's `GAME_TIMESLOT_GET_FAILED` was unreadable, so an unknown slot got
/// `SYS_004` after 3 calls, and five of them opened the breaker for everyone.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_slot_is_bus_002_after_one_call_and_never_opens_the_breaker() {
    let app = spawn_app().await;
    let (_stub, _catalog) = start_stub(&app, Faults::default()).await;
    for user in 1..=7 {
        let answer = app
            .call(s::BOOKING_CREATE, create_request(user, 424_242, 1))
            .await;
        let Answer::Err(err) = answer else {
            panic!("created a booking on an unknown slot")
        };
        assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
        assert!(
            err.error
                .message
                .contains("GameTimeSlot with ID 424242 not found"),
            "{err}"
        );
    }
    assert_eq!(stub_state(&app).await.counts.lookups, 7, "one call each");
    assert_eq!(
        metric(&app, "course_service_breaker_state").await,
        0.0,
        "still closed"
    );
    assert_eq!(
        metric(&app, "course_service_failures_total{kind=\"refused\"}").await,
        7.0
    );
}

/// Before: a `success:false` answer to `gameTimeSlots.book` was marked SENT, silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_book_is_rejected_counted_shown_holds_its_release_and_can_be_redriven() {
    let app = spawn_app().await;
    let (_stub, catalog) = start_stub(&app, Faults::default()).await;
    let slot = catalog.slots[0].id;
    // The club's desk sells all 4 seats on course-service's side only.
    control(&app, control::DRIFT, json!({"slots": 1, "seats": 4})).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(9, slot, 2))
        .await
        .ok();
    eventually(
        "the book to be refused",
        Duration::from_secs(10),
        || async { (statuses(&app).await.first()?.1 == "REJECTED").then_some(()) },
    )
    .await;
    let answer: String =
        sqlx::query_scalar("SELECT last_error FROM outbox_events WHERE status = 'REJECTED'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        answer.contains("GAME_TIMESLOT_BOOK_FAILED") && answer.contains("FULLY_BOOKED"),
        "{answer}"
    );
    assert_eq!(metric(&app, "outbox_rejected").await, 1.0);
    assert_eq!(
        metric(&app, "outbox_rejections_total{kind=\"gameTimeSlots.book\"}").await,
        1.0
    );
    let listed: Vec<Value> =
        serde_json::from_str(&http(&app, reqwest::Method::GET, "/outbox").await).unwrap();
    assert_eq!(listed[0]["status"], "REJECTED", "{listed:?}");

    // The booking's release must not reach course-service before its book.
    app.call(
        s::BOOKING_CANCEL,
        json!({"id": booking["data"]["id"], "userId": 9}),
    )
    .await
    .ok();
    // A witness that the relay has claimed since the cancel committed: a later booking on another
    // slot, whose book goes out.
    app.call(
        s::BOOKING_CREATE,
        create_request(10, catalog.slots[1].id, 1),
    )
    .await
    .ok();
    eventually(
        "the later booking's book to go out",
        Duration::from_secs(10),
        || async { (statuses(&app).await.get(2)?.1 == "SENT").then_some(()) },
    )
    .await;
    let rows = statuses(&app).await;
    assert_eq!(
        rows[1],
        (s::SLOTS_RELEASE.to_owned(), "PENDING".to_owned(), 0),
        "{rows:?}"
    );
    assert_eq!(stub_state(&app).await.counts.clamped, 0);

    // The desk gives its seats back; the operator re-drives; book then release arrive.
    control(&app, control::DRIFT, json!({"slots": 1, "seats": -4})).await;
    let moved: Value =
        serde_json::from_str(&http(&app, reqwest::Method::POST, "/outbox/redrive").await).unwrap();
    assert_eq!(moved["redriven"], 1);
    let state = converge(&app, &catalog).await;
    // The book, its release, and the witness's book.
    assert_eq!((state.counts.applied, state.counts.clamped), (3, 0));
}

/// Before: after OUTBOX_MAX_ATTEMPTS the book was FAILED for good and its release went out
/// alone, so the real course-service clamped and the two counts never met again.
#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_book_is_still_retried_and_its_release_never_overtakes_it() {
    let app = spawn_app_with(AppOptions {
        configure: |c| {
            c.outbox_max_attempts = 2;
            c.outbox_retry_cap = Duration::from_millis(300);
            c.course_timeout = Duration::from_millis(200);
        },
        ..AppOptions::default()
    })
    .await;
    let (_stub, catalog) = start_stub(
        &app,
        Faults {
            outage: true,
            ..Faults::default()
        },
    )
    .await;
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
    eventually(
        "the book to use up its attempts",
        Duration::from_secs(20),
        || async {
            let rows = statuses(&app).await;
            (rows[0].2 >= 4).then_some(rows)
        },
    )
    .await;
    let rows = statuses(&app).await;
    assert_eq!(
        (rows[0].1.as_str(), rows[1].1.as_str(), rows[1].2),
        ("PENDING", "PENDING", 0),
        "{rows:?}"
    );
    assert_eq!(metric(&app, "outbox_stuck").await, 1.0);

    control(&app, control::FAULTS, json!({"outage": false})).await;
    let state = converge(&app, &catalog).await;
    assert_eq!((state.counts.applied, state.counts.clamped), (2, 0));
}

/// Before: without JetStream each event was published, waited for an ack that never came, and
/// was published again, up to OUTBOX_MAX_ATTEMPTS times.
#[tokio::test(flavor = "multi_thread")]
async fn without_jetstream_each_booking_event_is_published_once() {
    let app = spawn_app_with(AppOptions {
        jetstream: false,
        ..AppOptions::default()
    })
    .await;
    let mut confirmed = app.client.subscribe(s::BOOKING_CONFIRMED).await.unwrap();
    app.client.flush().await.unwrap();
    app.seed_slot(&slot(31, 1, 10, 20), &game(1)).await;
    for user in 1..=5 {
        app.call(s::BOOKING_CREATE, create_request(user, 31, 1))
            .await
            .ok();
    }
    eventually("the events to be sent", Duration::from_secs(10), || async {
        let unsent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_events WHERE channel = 'events' AND status <> 'SENT'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (unsent == 0).then_some(())
    })
    .await;
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(
        Duration::from_millis(1500),
        futures::StreamExt::next(&mut confirmed),
    )
    .await
    {
        seen += 1;
    }
    assert_eq!(seen, 5);
    let retries: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(retry_count), 0)::int8 FROM outbox_events WHERE channel = 'events'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(retries, 0);
}

/// Before: the relay waited for a whole batch, so one slow book held back every booking event
/// created after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_course_service_does_not_hold_back_booking_events() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.course_timeout = Duration::from_secs(8),
        ..AppOptions::default()
    })
    .await;
    let (_stub, catalog) = start_stub(&app, Faults::default()).await;
    control(&app, control::FAULTS, json!({"latencyMs": 6000})).await;
    let mut confirmed = app.client.subscribe(s::BOOKING_CONFIRMED).await.unwrap();
    app.client.flush().await.unwrap();
    app.call(s::BOOKING_CREATE, create_request(1, catalog.slots[0].id, 1))
        .await
        .ok();
    // The relay takes the first booking's book (its lease moves `next_attempt_at` ahead); the
    // book now waits 6 s for an answer.
    eventually(
        "the relay to lease the first book",
        Duration::from_secs(10),
        || async {
            let leased: bool = sqlx::query_scalar(
                "SELECT next_attempt_at > now() FROM outbox_events \
             WHERE channel = 'course' AND status = 'PENDING' ORDER BY id LIMIT 1",
            )
            .fetch_optional(&app.pool)
            .await
            .ok()??;
            leased.then_some(())
        },
    )
    .await;
    let second = app
        .call(s::BOOKING_CREATE, create_request(2, catalog.slots[1].id, 1))
        .await
        .ok();
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(
            Duration::from_secs(10),
            futures::StreamExt::next(&mut confirmed),
        )
        .await
        .unwrap()
        .unwrap();
        let data = contracts::Codec::default()
            .decode_inbound(&message.payload)
            .unwrap()
            .data;
        seen.push(data["bookingId"].clone());
    }
    assert!(seen.contains(&second["data"]["id"]));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the second booking's event waited {:?} for the first booking's book",
        started.elapsed()
    );
}

/// Before: a copy whose key lookup ran before the first copy committed was told `BUS_004`.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_copies_of_one_keyed_create_all_get_the_one_booking() {
    let app = spawn_app().await;
    app.seed_slot(&slot(41, 1, 10, 4), &game(1)).await;
    let mut request = create_request(7, 41, 4);
    request["idempotencyKey"] = json!("k-50");
    let calls = (0..50).map(|_| app.call(s::BOOKING_CREATE, request.clone()));
    let answers = futures::future::join_all(calls).await;
    let mut numbers = Vec::new();
    for answer in answers {
        match answer {
            Answer::Ok(v) => numbers.push(v["data"]["bookingNumber"].as_str().unwrap().to_owned()),
            Answer::Err(e) => panic!("a copy was refused: {e}"),
        }
    }
    numbers.dedup();
    assert_eq!(numbers.len(), 1);
    assert_eq!(app.count("bookings").await, 1);
}

/// Before: a cancel sent again after it committed was told "already cancelled".
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_sent_again_gets_its_own_answer_and_another_cancel_is_refused() {
    let app = spawn_app().await;
    app.seed_slot(&slot(51, 1, 10, 4), &game(1)).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(3, 51, 2))
        .await
        .ok();
    let cancel = json!({"id": booking["data"]["id"], "userId": 3, "reason": "rain"});
    let first = app.call(s::BOOKING_CANCEL, cancel.clone()).await.ok();
    let again = app.call(s::BOOKING_CANCEL, cancel).await.ok();
    assert_eq!(first["data"]["status"], "CANCELLED");
    assert_eq!(again["data"], first["data"]);
    let other = app
        .call(
            s::BOOKING_CANCEL,
            json!({"id": booking["data"]["id"], "userId": 3, "reason": "other"}),
        )
        .await;
    assert_eq!(other.code(), ErrorCode::BusinessRule);
    assert_eq!(app.cached_booked(51).await, 0, "seats given back once");
    // An update sent twice: the second finds the change made and answers the same booking.
    let kept = app
        .call(s::BOOKING_CREATE, create_request(4, 51, 1))
        .await
        .ok();
    let update = json!({"id": kept["data"]["id"], "userId": 4, "dto": {"playerCount": 3}});
    let once = app.call(s::BOOKING_UPDATE, update.clone()).await.ok();
    let twice = app.call(s::BOOKING_UPDATE, update).await.ok();
    assert_eq!(once["data"]["playerCount"], 3);
    assert_eq!(twice["data"]["totalPrice"], once["data"]["totalPrice"]);
    assert_eq!(app.cached_booked(51).await, 3, "seats taken once");
    let releases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE event_type = $1")
            .bind(s::SLOTS_RELEASE)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(releases, 1);
}

/// Before: stopping unsubscribed, and requests NATS had already handed to the replica were
/// dropped unanswered.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_answers_every_request_already_queued() {
    let mut app = spawn_app_with(AppOptions {
        configure: |c| c.max_in_flight = 2,
        ..AppOptions::default()
    })
    .await;
    app.seed_slot(&slot(61, 1, 10, 4), &game(1)).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(1, 61, 1))
        .await
        .ok();
    // Stall the handlers: the first two wait on the lock, the rest wait in the subscription.
    #[allow(clippy::disallowed_methods)] // the test's own blocker, never cancelled
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    // Publish the requests with one reply inbox, then prove NATS has routed all twelve to the
    // replica before the stop: a message to our own inbox comes back only after NATS processed
    // everything this connection sent before it.
    let codec = contracts::Codec::default();
    let inbox = app.client.new_inbox();
    let mut replies = app.client.subscribe(inbox.clone()).await.unwrap();
    for _ in 0..12 {
        let body = codec
            .encode_request(
                s::BOOKING_FIND_BY_ID,
                &json!({"id": booking["data"]["id"]}),
                &contracts::MessageId::fresh(),
            )
            .unwrap();
        app.client
            .publish_with_reply(s::BOOKING_FIND_BY_ID, inbox.clone(), body.into())
            .await
            .unwrap();
    }
    barrier(&app.client).await;
    let replica = app.replicas.remove(0);
    let stopping = tokio::spawn(replica.stop());
    // The stop has begun once the replica's subscription is gone from the server.
    let probe = contracts::NestClient::new(app.client.clone(), Duration::from_millis(200));
    eventually(
        "the replica to unsubscribe",
        Duration::from_secs(10),
        || async {
            let asked = probe.request(s::BOOKING_SEARCH, &json!({})).await;
            matches!(asked, Err(contracts::CallError::NoResponders(_))).then_some(())
        },
    )
    .await;
    blocker.rollback().await.unwrap();
    let mut answered = 0;
    while answered < 12 {
        match tokio::time::timeout(Duration::from_secs(10), replies.next()).await {
            Ok(Some(_)) => answered += 1,
            _ => break,
        }
    }
    stopping.await.unwrap().unwrap();
    assert_eq!(answered, 12);
}

/// A replica of the previous version, during a rolling upgrade, writes outbox rows without
/// `channel` and `lane`; the migration's trigger fills them and the relay delivers them in line.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_written_by_the_previous_version_is_filled_in_and_delivered() {
    let app = spawn_app().await;
    let (_stub, catalog) = start_stub(&app, Faults::default()).await;
    let slot = catalog.slots[2].id;
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload) \
         VALUES (gen_random_uuid(), 'Booking', '900', 'gameTimeSlots.book', $1)",
    )
    .bind(json!({"timeSlotId": slot, "playerCount": 2}))
    .execute(&app.pool)
    .await
    .unwrap();
    let (channel, lane): (String, String) =
        sqlx::query_as("SELECT channel, lane FROM outbox_events WHERE aggregate_id = '900'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((channel.as_str(), lane), ("course", format!("slot:{slot}")));
    eventually(
        "the old row to be delivered",
        Duration::from_secs(10),
        || async { (pending(&app).await == 0).then_some(()) },
    )
    .await;
    let state = stub_state(&app).await;
    let booked = state
        .slots
        .iter()
        .find(|s| s.id == slot)
        .unwrap()
        .booked_players;
    assert_eq!(booked, 2);
}

/// A claim looks at a bounded window of the first PENDING rows; rows held behind refusals (waiting
/// for an operator) must never fill it. 1,100 refused books with their releases held ahead of a
/// new booking: the new booking's book is still delivered, and the held rows stay held.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_waiting_for_an_operator_never_hold_back_later_bookings() {
    let app = spawn_app().await;
    let (_stub, catalog) = start_stub(&app, Faults::default()).await;
    let (held_slot, slot) = (catalog.slots[3].id, catalog.slots[4].id);
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, status) \
         SELECT gen_random_uuid(), 'Booking', (100000 + g)::text, t.event_type, $1, t.status \
         FROM generate_series(1, 1100) g, \
              (VALUES (1, 'gameTimeSlots.book', 'REJECTED'), (2, 'gameTimeSlots.release', 'PENDING')) \
                AS t(k, event_type, status) \
         ORDER BY g, t.k",
    )
    .bind(json!({"timeSlotId": held_slot, "playerCount": 1}))
    .execute(&app.pool)
    .await
    .unwrap();
    let booked = |state: control::StubState| {
        state
            .slots
            .iter()
            .find(|s| s.id == slot)
            .map(|s| s.booked_players)
    };
    let before = booked(stub_state(&app).await).unwrap();
    app.call(s::BOOKING_CREATE, create_request(1, slot, 2))
        .await
        .ok();
    eventually(
        "the new booking's book to reach course-service",
        Duration::from_secs(10),
        || async { (booked(stub_state(&app).await)? == before + 2).then_some(()) },
    )
    .await;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox_events WHERE status = 'PENDING' AND event_type = 'gameTimeSlots.release'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held, 1100);
}
