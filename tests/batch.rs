//! Group commit seen from outside: creates that arrive together share one transaction, yet each
//! caller gets exactly what it would have got alone, in arrival order.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::{subjects as s, ErrorCode};
use integration_tests::*;
use serde_json::Value;

/// One batch worker that waits 300 ms for company: creates sent together land in one batch.
async fn crowded_app() -> TestApp {
    spawn_app_with(AppOptions {
        configure: |c| {
            c.create_batch_workers = 1;
            c.create_batch_wait = Duration::from_millis(300);
        },
        ..AppOptions::default()
    })
    .await
}

fn keyed(user: i32, slot: i32, players: i32, key: &str) -> Value {
    let mut request = create_request(user, slot, players);
    request["idempotencyKey"] = Value::from(key);
    request
}

/// Handlers reach the batcher in whatever order their slot lookups finish, so the test checks what
/// arrival-order allocation guarantees in any order: no oversell, and each refused create asked
/// for more seats than were left at the end.
#[tokio::test(flavor = "multi_thread")]
async fn one_batch_never_oversells_and_refuses_only_creates_that_could_not_fit() {
    let app = crowded_app().await;
    app.seed_slot(&slot(71, 1, 10, 4), &game(1)).await;
    let wants = [3, 2, 1, 2];
    let calls = wants
        .iter()
        .zip(1..)
        .map(|(players, user)| app.call(s::BOOKING_CREATE, create_request(user, 71, *players)));
    let answers = futures::future::join_all(calls).await;
    let mut sold = 0;
    let mut refused = Vec::new();
    for (answer, players) in answers.into_iter().zip(wants) {
        match answer {
            Answer::Ok(_) => sold += players,
            Answer::Err(e) => {
                assert_eq!(e.code(), ErrorCode::BusinessRule, "{e}");
                refused.push(players);
            }
        }
    }
    assert!((3..=4).contains(&sold), "sold {sold}");
    for players in refused {
        assert!(
            players > 4 - sold,
            "{players} would have fitted in {}",
            4 - sold
        );
    }
    assert_eq!(app.cached_booked(71).await, sold);
    assert_eq!(app.booked_sum(71).await, i64::from(sold));
}

/// Before: the second copy of a refused keyed create was sent to replay a key nobody held, and
/// got `SYS_001` instead of the refusal its first copy got. Here the slot's cached availability
/// still says 4 while its locked count is full (another replica just sold the seats), so both
/// copies pass the cache's pre-check and meet the full slot in their batch.
#[tokio::test(flavor = "multi_thread")]
async fn copies_of_a_refused_keyed_create_in_one_batch_are_all_refused() {
    let app = crowded_app().await;
    app.seed_slot(&slot(72, 1, 10, 4), &game(1)).await;
    sqlx::query("UPDATE game_time_slot_cache SET booked_players = 4 WHERE game_time_slot_id = 72")
        .execute(&app.pool)
        .await
        .unwrap();
    let (copy_a, copy_b) = tokio::join!(
        app.call(s::BOOKING_CREATE, keyed(2, 72, 1, "late")),
        app.call(s::BOOKING_CREATE, keyed(2, 72, 1, "late")),
    );
    assert_eq!(copy_a.code(), ErrorCode::BusinessRule);
    assert_eq!(copy_b.code(), ErrorCode::BusinessRule);
    assert_eq!(app.count("bookings").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_of_a_keyed_create_in_one_batch_get_the_one_booking() {
    let app = crowded_app().await;
    app.seed_slot(&slot(73, 1, 10, 4), &game(1)).await;
    let (a, b, c) = tokio::join!(
        app.call(s::BOOKING_CREATE, keyed(5, 73, 1, "same")),
        app.call(s::BOOKING_CREATE, keyed(5, 73, 1, "same")),
        app.call(s::BOOKING_CREATE, keyed(5, 73, 1, "same")),
    );
    let (a, b, c) = (a.ok(), b.ok(), c.ok());
    assert_eq!(a["data"]["id"], b["data"]["id"]);
    assert_eq!(a["data"]["id"], c["data"]["id"]);
    assert_eq!(app.count("bookings").await, 1);
    assert_eq!(app.cached_booked(73).await, 1);
}

/// Creates the first replica wrote by `path` (`creates_written{path}`).
async fn written_by(app: &TestApp, path: &str) -> f64 {
    metric(app, &format!("creates_written_total{{path=\"{path}\"}}"))
        .await
        .unwrap_or(0.0)
}

/// A metric of the first replica: the value of the line that starts with `prefix`.
async fn metric(app: &TestApp, prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", app.replicas[0].http_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

/// Unkeyed creates whose slots have room for them all are one statement; what it writes must be
/// exactly what the locking path writes: each booking with its own payment and history, events
/// naming the booking the sequence gave it in that booking's lane, and each slot counted once.
#[tokio::test(flavor = "multi_thread")]
async fn a_roomy_batch_is_one_statement_that_writes_what_the_locking_path_would() {
    let app = crowded_app().await;
    app.seed_slot(&slot(77, 1, 10, 8), &game(1)).await;
    app.seed_slot(&slot(78, 1, 10, 8), &game(1)).await;
    let wants = [(77, 2), (78, 1), (77, 3), (78, 4), (77, 1)];
    let calls = wants.iter().zip(1..).map(|((slot, players), user)| {
        app.call(s::BOOKING_CREATE, create_request(user, *slot, *players))
    });
    let replies: Vec<Value> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|a| a.ok())
        .collect();
    // With a wait for company set, every create queues: all five are one batch, one statement.
    assert_eq!(written_by(&app, "single").await, 5.0);
    assert_eq!(
        written_by(&app, "lone").await + written_by(&app, "locking").await,
        0.0
    );
    for (reply, (slot, players)) in replies.iter().zip(wants) {
        let data = &reply["data"];
        let id = data["id"].as_i64().unwrap();
        assert_eq!(data["gameTimeSlotId"], slot);
        assert_eq!(data["playerCount"], players);
        assert_eq!(data["frontNineCourseId"], 11, "the game's courses: {data}");
        assert_eq!(data["backNineCourseId"], 12, "the game's courses: {data}");
        let rows: Vec<(String, Value, String)> = sqlx::query_as(
            "SELECT event_type, payload, lane FROM outbox_events WHERE aggregate_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].0, s::SLOTS_BOOK);
        assert_eq!(rows[0].1["timeSlotId"], slot);
        assert_eq!(rows[0].1["playerCount"], players);
        assert_eq!(rows[0].2, format!("slot:{slot}"));
        assert_eq!(rows[1].0, s::BOOKING_CONFIRMED);
        assert_eq!(rows[1].1["bookingId"].as_i64(), Some(id));
        assert_eq!(rows[1].1["bookingNumber"], data["bookingNumber"]);
        assert_eq!(rows[1].2, format!("booking:{id}"));
        let found = app
            .call(s::BOOKING_FIND_BY_ID, serde_json::json!({ "id": id }))
            .await
            .ok();
        assert_eq!(found["data"], *data, "the reply is the booking as stored");
    }
    assert_eq!(app.cached_booked(77).await, 6);
    assert_eq!(app.cached_booked(78).await, 5);
    assert_eq!(app.count("payments").await, 5);
    assert_eq!(app.count("booking_history").await, 5);
}

/// A slot without room for all of a batch's creates leaves the one statement: the locking path
/// hands out what is left in arrival order, while the other slot's creates are still one
/// statement.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_slot_without_room_for_all_goes_to_the_locking_path_alone() {
    let app = crowded_app().await;
    app.seed_slot(&slot(79, 1, 10, 4), &game(1)).await;
    app.seed_slot(&slot(80, 1, 10, 8), &game(1)).await;
    let wants = [(79, 3), (80, 2), (79, 3), (80, 2)];
    let calls = wants.iter().zip(1..).map(|((slot, players), user)| {
        app.call(s::BOOKING_CREATE, create_request(user, *slot, *players))
    });
    let answers = futures::future::join_all(calls).await;
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Answer::Err(e) if e.code() == ErrorCode::BusinessRule))
        .count();
    assert_eq!(
        refused, 1,
        "one of the two 3-seat creates fits in 4: {answers:?}"
    );
    // Slot 80's creates are one statement; slot 79's take the locking path, which sells the
    // first to arrive and refuses the other.
    assert_eq!(written_by(&app, "single").await, 2.0);
    assert_eq!(written_by(&app, "locking").await, 1.0);
    assert_eq!(written_by(&app, "lone").await, 0.0);
    assert_eq!(app.cached_booked(79).await, 3);
    assert_eq!(app.cached_booked(80).await, 4);
    assert_eq!(app.booked_sum(79).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_is_counted_in_its_size_histogram() {
    let app = crowded_app().await;
    app.seed_slot(&slot(74, 1, 10, 8), &game(1)).await;
    let calls = (1..=5).map(|user| app.call(s::BOOKING_CREATE, create_request(user, 74, 1)));
    for answer in futures::future::join_all(calls).await {
        answer.ok();
    }
    let sum = metric(&app, "create_batch_size_sum ").await;
    let count = metric(&app, "create_batch_size_count ").await.unwrap();
    assert_eq!(sum, Some(5.0));
    assert!(count < 5.0, "five creates in fewer batches: {count}");
}

/// A lone create is one statement; what it writes must be exactly what the locking path writes:
/// the event names the booking the sequence gave it, and its lane is that booking's.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_create_stamps_its_booking_id_into_its_event_and_lane() {
    let app = spawn_app().await;
    app.seed_slot(&slot(75, 1, 10, 4), &game(1)).await;
    let reply = app
        .call(s::BOOKING_CREATE, create_request(9, 75, 2))
        .await
        .ok();
    let id = reply["data"]["id"].as_i64().unwrap();
    let rows: Vec<(String, Value, String, String)> = sqlx::query_as(
        "SELECT event_type, payload, lane, aggregate_id FROM outbox_events ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (book, confirmed) = (&rows[0], &rows[1]);
    assert_eq!(book.0, s::SLOTS_BOOK);
    assert_eq!(book.1["timeSlotId"], 75);
    assert_eq!(book.2, "slot:75");
    assert_eq!(confirmed.0, s::BOOKING_CONFIRMED);
    assert_eq!(confirmed.1["bookingId"].as_i64(), Some(id));
    assert_eq!(confirmed.1["bookingNumber"], reply["data"]["bookingNumber"]);
    assert_eq!(confirmed.2, format!("booking:{id}"));
    assert!(rows.iter().all(|r| r.3 == id.to_string()), "{rows:?}");
    // The reply is the booking as stored.
    let found = app
        .call(s::BOOKING_FIND_BY_ID, serde_json::json!({ "id": id }))
        .await
        .ok();
    assert_eq!(found["data"], reply["data"]);
    assert_eq!(app.cached_booked(75).await, 2);
}

/// The cache still shows room but the slot's locked count is full (another replica sold the
/// seats): the one statement writes nothing, and the locking path refuses exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_create_on_a_slot_filled_behind_the_cache_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    app.seed_slot(&slot(76, 1, 10, 4), &game(1)).await;
    sqlx::query("UPDATE game_time_slot_cache SET booked_players = 3 WHERE game_time_slot_id = 76")
        .execute(&app.pool)
        .await
        .unwrap();
    let answer = app.call(s::BOOKING_CREATE, create_request(9, 76, 2)).await;
    let Answer::Err(e) = answer else {
        panic!("sold 2 seats of the 1 left: {answer:?}");
    };
    assert_eq!(e.code(), ErrorCode::BusinessRule, "{e}");
    assert!(e.to_string().contains("1 seats left"), "{e}");
    assert_eq!(app.count("bookings").await, 0);
    assert_eq!(app.count("payments").await, 0);
    assert_eq!(app.count("outbox_events").await, 0);
    assert_eq!(app.cached_booked(76).await, 3);
    // One seat still sells.
    app.call(s::BOOKING_CREATE, create_request(9, 76, 1))
        .await
        .ok();
    assert_eq!(app.cached_booked(76).await, 4);
}

/// The booking events of one-statement creates are born leased to their own replica's relay and
/// handed to it in process: they go out without a claim (the claims, a window of PENDING rows and
/// a lease per row, cost the database a fifth of its statement time at 16 clients), are SENT
/// like any other, and a cancel's `booking.cancelled`, which waits for its booking's
/// confirmation, still goes out after it.
#[tokio::test(flavor = "multi_thread")]
async fn one_statement_creates_hand_their_booking_events_to_the_relay() {
    let app = crowded_app().await;
    app.seed_slot(&slot(83, 1, 10, 8), &game(1)).await;
    let calls = (1..=3).map(|user| app.call(s::BOOKING_CREATE, create_request(user, 83, 1)));
    let ids: Vec<i64> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|a| a.ok()["data"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(written_by(&app, "single").await, 3.0);
    let cancelled = app
        .call(
            s::BOOKING_CANCEL,
            serde_json::json!({"id": ids[0], "userId": 1}),
        )
        .await;
    assert_eq!(cancelled.ok()["data"]["status"], "CANCELLED");
    let unsent = || async {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_events WHERE channel = 'events' AND status <> 'SENT'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (left == 0).then_some(())
    };
    eventually("every booking event sent", Duration::from_secs(10), unsent).await;
    assert_eq!(metric(&app, "outbox_rows_handed_total").await, Some(3.0));
    let order: Vec<(String, i32)> = sqlx::query_as(
        "SELECT event_type, retry_count FROM outbox_events WHERE channel = 'events' \
         AND aggregate_id = $1 ORDER BY processed_at, id",
    )
    .bind(ids[0].to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        order,
        [
            (s::BOOKING_CONFIRMED.to_owned(), 0),
            (s::BOOKING_CANCELLED.to_owned(), 0)
        ]
    );
}
