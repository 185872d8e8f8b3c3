//! A hostile or buggy client, from outside over NATS or HTTP: someone else's booking, fields a
//! user may not touch, a user with thousands of bookings, replies larger than NATS carries,
//! publishers the deployment's permissions must stop, and strangers at the operator's routes. Each
//! case names the answer it must get.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::{subjects as s, ErrorCode};
use integration_tests::*;
use serde_json::{json, Value};
use world::NatsRole;

async fn booked(app: &TestApp, slot_id: i32, days: i64, players: i32) -> Value {
    app.seed_slot(&slot(slot_id, 1, days, 4), &game(1)).await;
    app.call(s::BOOKING_CREATE, create_request(1, slot_id, players))
        .await
        .ok()["data"]
        .clone()
}

async fn outbox_rows(app: &TestApp, subject: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE event_type = $1")
        .bind(subject)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Before: anyone could change anyone's booking, including booking extra seats on it.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_by_someone_else_is_forbidden_and_changes_nothing() {
    let app = spawn_app().await;
    let booking = booked(&app, 201, 10, 1).await;
    let theirs = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": booking["id"], "userId": 2, "dto": {"playerCount": 3}}),
        )
        .await;
    assert_eq!(theirs.code(), ErrorCode::Forbidden);
    assert_eq!(app.cached_booked(201).await, 1);
    assert_eq!(
        outbox_rows(&app, s::SLOTS_BOOK).await,
        1,
        "no extra seats booked"
    );
    let mine = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": booking["id"], "userId": 1, "dto": {"playerCount": 2}}),
        )
        .await
        .ok();
    assert_eq!(mine["data"]["playerCount"], 2);
    // The reference's user-api sends only {id, dto}: still accepted unless the knob says otherwise.
    let anonymous = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": booking["id"], "dto": {"specialRequests": "카트"}}),
        )
        .await
        .ok();
    assert_eq!(anonymous["data"]["specialRequests"], "카트");
}

/// Before: an update without the caller's `userId` was recorded in the booking's history as made
/// by its owner.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_without_a_caller_is_recorded_as_anonymous_in_the_history() {
    let app = spawn_app().await;
    let booking = booked(&app, 204, 10, 1).await;
    app.call(
        s::BOOKING_UPDATE,
        json!({"id": booking["id"], "dto": {"specialRequests": "카트"}}),
    )
    .await
    .ok();
    app.call(
        s::BOOKING_UPDATE,
        json!({"id": booking["id"], "userId": 1, "dto": {"specialRequests": "없음"}}),
    )
    .await
    .ok();
    let found = app
        .call(s::BOOKING_FIND_BY_ID, json!({"id": booking["id"]}))
        .await
        .ok();
    let histories = found["data"]["histories"].as_array().unwrap();
    let updates: Vec<&Value> = histories
        .iter()
        .filter(|h| h["action"] == "UPDATED")
        .collect();
    assert_eq!(updates.len(), 2, "{histories:?}");
    // Newest first: the owner's own update, then the anonymous one.
    assert_eq!(updates[0]["details"]["specialRequests"], "없음");
    assert!(updates[0]["details"].get("caller").is_none(), "{updates:?}");
    assert_eq!(updates[1]["details"]["specialRequests"], "카트");
    assert_eq!(
        updates[1]["details"]["caller"], "anonymous",
        "the history must say the caller was not given: {updates:?}"
    );
}

/// Before: `GET /outbox` on the metrics address (`0.0.0.0:8080` by default) listed unsent events
/// with customers' e-mails and names, and anyone could `POST /outbox/redrive`. Now both are on the
/// admin address only, and the payloads are masked.
#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_is_served_on_the_admin_address_only_and_masks_personal_data() {
    let app = spawn_app().await;
    unsent_event_with_personal_data(&app).await;
    let http = reqwest::Client::new();
    let metrics = app.replicas[0].http_addr();
    for (method, path) in [
        (reqwest::Method::GET, "/outbox"),
        (reqwest::Method::POST, "/outbox/redrive"),
    ] {
        let response = http
            .request(method, format!("http://{metrics}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            reqwest::StatusCode::NOT_FOUND,
            "{path} answered: {body}"
        );
    }
    let health = http
        .get(format!("http://{metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());

    let admin = app.replicas[0].admin_addr();
    assert_ne!(admin, metrics);
    let text = http
        .get(format!("http://{admin}/outbox"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("kim.chulsoo") && !text.contains("김철수"),
        "personal data shown: {text}"
    );
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.len(), 1, "{text}");
    assert_eq!(listed[0]["payload"]["userEmail"], "k***@example.com");
    assert_eq!(listed[0]["payload"]["userName"], "김***");
    assert_eq!(listed[0]["payload"]["bookingId"], 1);
    let moved = http
        .post(format!("http://{admin}/outbox/redrive"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let moved: Value = serde_json::from_str(&moved).unwrap();
    assert_eq!(moved["redriven"], 0, "nothing was REJECTED");
}

/// With `ADMIN_TOKEN` set, the operator's routes answer only requests that carry it.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_admin_token_the_outbox_answers_only_its_bearer() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.admin_token = Some("s3cret-token".into()),
        ..AppOptions::default()
    })
    .await;
    unsent_event_with_personal_data(&app).await;
    let http = reqwest::Client::new();
    let admin = app.replicas[0].admin_addr();
    for (method, path) in [
        (reqwest::Method::GET, "/outbox"),
        (reqwest::Method::POST, "/outbox/redrive"),
    ] {
        let url = format!("http://{admin}{path}");
        for wrong in [
            None,
            Some("Bearer nope"),
            Some("s3cret-token"),
            Some("Basic s3cret-token"),
        ] {
            let mut request = http.request(method.clone(), &url);
            if let Some(header) = wrong {
                request = request.header("Authorization", header);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                reqwest::StatusCode::UNAUTHORIZED,
                "{path} with {wrong:?}"
            );
            let body = response.text().await.unwrap();
            assert!(!body.contains("example.com"), "{body}");
        }
        let allowed = http
            .request(method, &url)
            .header("Authorization", "Bearer s3cret-token")
            .send()
            .await
            .unwrap();
        assert!(
            allowed.status().is_success(),
            "{path}: {}",
            allowed.status()
        );
    }
}

/// A `booking.confirmed` row that stays unsent for an hour, carrying an e-mail and a name.
async fn unsent_event_with_personal_data(app: &TestApp) {
    sqlx::query(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, \
         next_attempt_at) VALUES (gen_random_uuid(), 'Booking', '1', 'booking.confirmed', $1, \
         now() + interval '1 hour')",
    )
    .bind(json!({"bookingId": 1, "userEmail": "kim.chulsoo@example.com", "userName": "김철수"}))
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_update_requires_caller_an_update_without_user_id_is_refused() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.update_requires_caller = true,
        ..AppOptions::default()
    })
    .await;
    let booking = booked(&app, 202, 10, 1).await;
    let answer = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": booking["id"], "dto": {"playerCount": 2}}),
        )
        .await;
    assert_eq!(answer.code(), ErrorCode::Validation);
    assert_eq!(app.cached_booked(202).await, 1);
}

/// Before: unknown fields in `dto` were silently ignored, so a caller could not tell that its
/// `status` or `totalPrice` was not applied (and a later version might apply it).
#[tokio::test(flavor = "multi_thread")]
async fn an_update_may_change_only_what_a_user_owns() {
    let app = spawn_app().await;
    let booking = booked(&app, 203, 10, 1).await;
    for dto in [
        json!({"status": "CANCELLED"}),
        json!({"totalPrice": 0}),
        json!({"userId": 2}),
        json!({"gameTimeSlotId": 999}),
    ] {
        let answer = app
            .call(s::BOOKING_UPDATE, json!({"id": booking["id"], "dto": dto}))
            .await;
        assert_eq!(answer.code(), ErrorCode::Validation, "{dto}");
    }
    let now = app
        .call(s::BOOKING_FIND_BY_ID, json!({"id": booking["id"]}))
        .await
        .ok();
    assert_eq!(now["data"]["status"], "CONFIRMED");
    assert_eq!(now["data"]["totalPrice"], booking["totalPrice"]);
}

/// Before: `playerCount` went up on a CLOSED slot and down inside the cancel cutoff.
#[tokio::test(flavor = "multi_thread")]
async fn closed_slots_and_the_cutoff_hold_for_updates_as_for_create_and_cancel() {
    let app = spawn_app().await;
    let booking = booked(&app, 204, 10, 1).await;
    let mut closed = slot(204, 1, 10, 4);
    closed.status = contracts::course::SlotStatus::Closed;
    app.call(
        s::BOOKING_SLOT_SYNC,
        serde_json::to_value(slot_sync(&closed)).unwrap(),
    )
    .await
    .ok();
    let more = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": booking["id"], "dto": {"playerCount": 2}}),
        )
        .await;
    assert_eq!(more.code(), ErrorCode::BusinessRule);
    assert_eq!(app.cached_booked(204).await, 1);

    let soon = booked(&app, 205, 1, 3).await;
    let fewer = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": soon["id"], "dto": {"playerCount": 1}}),
        )
        .await;
    assert_eq!(fewer.code(), ErrorCode::BusinessRule);
    assert_eq!(app.cached_booked(205).await, 3);
    assert_eq!(outbox_rows(&app, s::SLOTS_RELEASE).await, 0);
    // What does not move seats is still allowed close to the day.
    app.call(
        s::BOOKING_UPDATE,
        json!({"id": soon["id"], "dto": {"specialRequests": "늦게 도착"}}),
    )
    .await
    .ok();
}

/// Copies booking `id` `n` times for the same user, one second apart, each with its payment.
async fn clone_booking(app: &TestApp, id: i64, n: i32, special: &str) {
    sqlx::query(
        "INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         SELECT 'BK-CLONE-' || g, user_id, game_id, game_time_slot_id, game_name, game_code, booking_date, \
         start_time, end_time, player_count, price_per_person, service_fee, total_price, status, \
         payment_method, $3, user_email, user_name, user_phone, \
         created_at - make_interval(secs => g), updated_at \
         FROM bookings, generate_series(1, $2) g WHERE id = $1",
    )
    .bind(id as i32)
    .bind(n)
    .bind(special)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         SELECT id, total_price, 'CARD', 'PENDING', created_at, updated_at FROM bookings \
         WHERE booking_number LIKE 'BK-CLONE-%'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
}

/// `booking.findByUserId`'s answer, which must be a bare array.
async fn user_bookings(app: &TestApp, query: Value) -> Vec<Value> {
    let answer = app.call(s::BOOKING_FIND_BY_USER_ID, query).await.ok();
    answer["data"].as_array().expect("a bare array").clone()
}

/// Before: past ~1,400 bookings the reply outgrew NATS's 1 MiB, the publish failed with a WARN and
/// the caller waited forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_thousands_of_bookings_gets_a_bounded_page_newest_first() {
    let app = spawn_app().await;
    let newest = booked(&app, 206, 10, 1).await;
    clone_booking(&app, newest["id"].as_i64().unwrap(), 1_999, "").await;
    let list = user_bookings(&app, json!({"userId": 1})).await;
    assert_eq!(list.len(), 100, "still a bare array, bounded");
    assert_eq!(list[0]["id"], newest["id"], "newest first");
    assert_eq!(list[0]["payments"].as_array().unwrap().len(), 1);
    assert_eq!(list[1]["bookingNumber"], "BK-CLONE-1");
    let page = user_bookings(&app, json!({"userId": 1, "page": 3, "limit": 50})).await;
    assert_eq!(page.len(), 50);
    assert_eq!(page[0]["bookingNumber"], "BK-CLONE-100");
    let last = user_bookings(&app, json!({"userId": 1, "page": 20, "limit": 100})).await;
    assert_eq!(last.len(), 100);
    let beyond = user_bookings(&app, json!({"userId": 1, "page": 21, "limit": 100})).await;
    assert_eq!(beyond.len(), 0);
    let greedy = app
        .call(
            s::BOOKING_FIND_BY_USER_ID,
            json!({"userId": 1, "limit": 5000}),
        )
        .await;
    assert_eq!(greedy.code(), ErrorCode::Validation);
}

/// Any reply too large for the connection is answered with a clear error and counted, never
/// dropped with only a log line.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_over_max_payload_is_a_clear_error_and_counted() {
    let app = spawn_app_with(AppOptions {
        nats: |world| world.nats_max_payload(64 * 1024),
        ..AppOptions::default()
    })
    .await;
    let first = booked(&app, 207, 10, 1).await;
    clone_booking(
        &app,
        first["id"].as_i64().unwrap(),
        99,
        &"긴 요청".repeat(200),
    )
    .await;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        app.call(s::BOOKING_FIND_BY_USER_ID, json!({"userId": 1})),
    )
    .await
    .expect("the caller hears back");
    let Answer::Err(e) = answer else {
        panic!("a reply over 64 KiB cannot be sent")
    };
    assert_eq!(e.error.code, ErrorCode::System);
    assert!(
        e.error.message.contains("max_payload"),
        "{}",
        e.error.message
    );
    let metrics = metrics_text(&app).await;
    assert!(metrics.contains("replies_too_large_total 1"), "{metrics}");
    // A page that fits is still served.
    let small = user_bookings(&app, json!({"userId": 1, "limit": 5})).await;
    assert_eq!(small.len(), 5);
}

async fn metrics_text(app: &TestApp) -> String {
    let addr = app.replicas[0].http_addr();
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Before: anyone who could publish `booking.gameTimeSlot.sync` repriced slots. With the
/// recommended permissions only course-service may; the gateway may only call `booking.*`.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_secured_nats_only_course_service_may_sync_and_the_gateway_may_only_call() {
    let app = spawn_app_with(AppOptions {
        nats: |world| world.secured_nats(),
        ..AppOptions::default()
    })
    .await;
    let booking = booked(&app, 208, 10, 1).await;
    // Anonymous clients are refused outright.
    let anonymous = async_nats::ConnectOptions::new()
        .connect(app.nats_world.nats_url())
        .await;
    assert!(anonymous.is_err(), "anonymous connection accepted");

    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let gateway = app
        .nats_world
        .nats_options(NatsRole::UserApi)
        .event_callback(move |event| {
            let errors_tx = errors_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = errors_tx.send(e.to_string());
                }
            }
        })
        .connect(app.nats_world.nats_url())
        .await
        .unwrap();
    let mut forged = slot(208, 1, 10, 4);
    forged.price = contracts::Won(0);
    forged.max_players = 100;
    let codec = contracts::Codec::default();
    let body = codec
        .encode_event(
            s::BOOKING_SLOT_SYNC,
            &serde_json::to_value(slot_sync(&forged)).unwrap(),
        )
        .unwrap();
    gateway
        .publish(s::BOOKING_SLOT_SYNC, body.into())
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    let refusal = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("NATS answers a forbidden publish with an error")
        .unwrap();
    assert!(
        refusal.to_lowercase().contains("permissions violation"),
        "{refusal}"
    );
    let (max, price): (i32, i64) = sqlx::query_as(
        "SELECT max_players, price::int8 FROM game_time_slot_cache WHERE game_time_slot_id = 208",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((max, price), (4, 15_000), "the forged sync changed nothing");

    // The gateway's own calls work; course-service's user cannot call booking.create.
    let reply = gateway
        .request(
            s::BOOKING_FIND_BY_ID,
            codec
                .encode_request(
                    s::BOOKING_FIND_BY_ID,
                    &json!({"id": booking["id"]}),
                    &contracts::MessageId::fresh(),
                )
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&reply.payload).contains("bookingNumber"));
    let course = app
        .nats_world
        .nats_connect(NatsRole::CourseService)
        .await
        .unwrap();
    let call = tokio::time::timeout(
        Duration::from_secs(2),
        course.request(
            s::BOOKING_CREATE,
            codec
                .encode_request(
                    s::BOOKING_CREATE,
                    &create_request(9, 208, 1),
                    &contracts::MessageId::fresh(),
                )
                .unwrap()
                .into(),
        ),
    )
    .await;
    assert!(
        !matches!(call, Ok(Ok(_))),
        "course-service's user created a booking"
    );
    assert_eq!(app.cached_booked(208).await, 1);
}

/// Before: SENT outbox rows and expired idempotency keys were kept for ever.
#[tokio::test(flavor = "multi_thread")]
async fn delivered_rows_and_expired_keys_are_pruned_and_nothing_else() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.prune_interval = Duration::from_millis(200),
        ..AppOptions::default()
    })
    .await;
    let booking = booked(&app, 209, 10, 1).await;
    let insert = |status: &'static str, processed_days_ago: Option<i32>| {
        sqlx::query(
            "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, status, processed_at) \
             VALUES (gen_random_uuid(), 'booking', '999999', 'booking.confirmed', '{}', $1, \
             now() - make_interval(days => $2))",
        )
        .bind(status)
        .bind(processed_days_ago)
        .execute(&app.pool)
    };
    insert("SENT", Some(8)).await.unwrap();
    insert("SENT", Some(8)).await.unwrap();
    insert("SENT", Some(1)).await.unwrap();
    insert("REJECTED", Some(30)).await.unwrap();
    for (key, expired) in [("old", true), ("live", false)] {
        sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, booking_id, expires_at) \
             VALUES (1, $1, 'h', $2, now() + CASE WHEN $3 THEN interval '-1 hour' ELSE interval '1 hour' END)",
        )
        .bind(key)
        .bind(booking["id"].as_i64().unwrap() as i32)
        .bind(expired)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    eventually("retention to run", Duration::from_secs(10), || async {
        let old: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox_events WHERE status = 'SENT' AND processed_at < now() - interval '7 days'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (old == 0).then_some(())
    })
    .await;
    let left: Vec<(String, bool)> = sqlx::query_as(
        "SELECT status, processed_at > now() - interval '2 days' FROM outbox_events \
         WHERE aggregate_id = '999999' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        vec![("SENT".to_owned(), true), ("REJECTED".to_owned(), false)],
        "recent deliveries and refusals stay"
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys ORDER BY key")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, vec!["live".to_owned()]);
    let metrics = metrics_text(&app).await;
    assert!(metrics.contains("pruned_outbox_rows_total 2"), "{metrics}");
    assert!(
        metrics.contains("pruned_idempotency_keys_total 1"),
        "{metrics}"
    );
}

/// Before: the events stream had no limits, and the `/metrics` backlog query scanned the outbox.
#[tokio::test(flavor = "multi_thread")]
async fn the_events_stream_is_bounded_and_the_gauges_query_uses_an_index() {
    let app = spawn_app().await;
    booked(&app, 210, 10, 1).await;
    let js = async_nats::jetstream::new(app.client.clone());
    // The relay creates the stream when it first delivers.
    let mut stream = eventually("the events stream", Duration::from_secs(10), || async {
        js.get_stream("BOOKING_EVENTS").await.ok()
    })
    .await;
    let config = &stream.info().await.unwrap().config;
    assert_eq!(config.max_age, Duration::from_secs(168 * 3600));
    assert_eq!(config.max_bytes, 1024 * 1024 * 1024);

    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        booking_service::OUTBOX_GAUGES_SQL.replace("$1", "50")
    ))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

/// Writes `n` UPDATED history entries for booking `id`, each with `special` as its
/// `specialRequests` (what an owner's `booking.update` records), all older than now; the CREATED
/// entry moves before them.
async fn long_history(app: &TestApp, id: i64, n: i32, special: &str) {
    sqlx::query(
        "UPDATE booking_history SET created_at = now() - interval '2 hours' WHERE booking_id = $1",
    )
    .bind(id as i32)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         SELECT $1, 'UPDATED', jsonb_build_object('specialRequests', $2::text), 1, \
         now() - interval '1 hour' + make_interval(secs => g) FROM generate_series(1, $3) g",
    )
    .bind(id as i32)
    .bind(special)
    .bind(n)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// The newest entry first, each one older than the one before.
fn newest_first(histories: &[Value]) -> bool {
    histories.windows(2).all(|w| {
        let key = |h: &Value| {
            (
                h["createdAt"].as_str().unwrap().to_owned(),
                h["id"].as_i64(),
            )
        };
        key(&w[0]) > key(&w[1])
    })
}

/// Before: every booking reply carried the booking's whole history. After ~250 owner updates with
/// long `specialRequests` it passed NATS's 1 MiB: update #253 and a later cancel were committed
/// and answered `SYS_001` "reply too large", and `booking.findById` failed for good. Now a reply
/// carries the newest entries and `historyTotal`, and the update, the cancel and every read are
/// answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_booking_with_hundreds_of_updates_is_updated_cancelled_and_found_with_its_newest_history()
{
    let app = spawn_app().await;
    let booking = booked(&app, 211, 10, 1).await;
    let id = booking["id"].as_i64().unwrap();
    // Four-byte characters: the longest a 1,000-character request can be.
    let long = "😀".repeat(1000);
    long_history(&app, id, 299, &long).await;
    let newest = "🙂".repeat(1000);
    let update = tokio::time::timeout(
        Duration::from_secs(10),
        app.call(
            s::BOOKING_UPDATE,
            json!({"id": id, "userId": 1, "dto": {"specialRequests": newest}}),
        ),
    )
    .await
    .expect("the update is answered");
    let updated = update.ok()["data"].clone();
    assert_eq!(updated["specialRequests"], newest.as_str());
    assert_eq!(updated["historyTotal"], 301);
    let histories = updated["histories"].as_array().unwrap();
    assert_eq!(histories.len(), 50, "the newest 50 entries");
    assert_eq!(histories[0]["action"], "UPDATED");
    assert_eq!(
        histories[0]["details"]["specialRequests"],
        newest.as_str(),
        "the newest entry is this update's"
    );
    assert!(newest_first(histories));

    for (subject, query) in [
        (s::BOOKING_FIND_BY_ID, json!({"id": id})),
        (
            s::BOOKING_FIND_BY_NUMBER,
            json!({"bookingNumber": booking["bookingNumber"]}),
        ),
    ] {
        let found = app.call(subject, query).await.ok()["data"].clone();
        assert_eq!(found["historyTotal"], 301, "{subject}");
        assert_eq!(found["histories"], updated["histories"], "{subject}");
    }

    let cancelled = app
        .call(s::BOOKING_CANCEL, json!({"id": id, "userId": 1}))
        .await
        .ok()["data"]
        .clone();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["historyTotal"], 302);
    assert_eq!(cancelled["histories"][0]["action"], "CANCELLED");
    assert_eq!(app.cached_booked(211).await, 0);
}

/// Before: an update was committed first and its reply measured after; one whose reply could not
/// fit the connection's `max_payload` was applied and answered `SYS_001`, which says it was not.
/// Now a reply that cannot fit, even without its history, refuses the change before it commits.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_whose_reply_cannot_fit_the_connection_is_refused_before_it_commits() {
    let app = spawn_app_with(AppOptions {
        nats: |world| world.nats_max_payload(4 * 1024),
        ..AppOptions::default()
    })
    .await;
    let booking = booked(&app, 212, 10, 1).await;
    let id = booking["id"].as_i64().unwrap();
    // 3,000 bytes: the request fits in 4 KiB, the booking carrying it does not.
    let long = "가".repeat(1000);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        app.call(
            s::BOOKING_UPDATE,
            json!({"id": id, "userId": 1, "dto": {"specialRequests": long, "playerCount": 2}}),
        ),
    )
    .await
    .expect("the caller hears back");
    let Answer::Err(e) = answer else {
        panic!("a booking over 4 KiB cannot be sent")
    };
    assert_eq!(e.error.code, ErrorCode::System);
    assert!(
        e.error.message.contains("max_payload"),
        "{}",
        e.error.message
    );
    let (special, players): (Option<String>, i32) =
        sqlx::query_as("SELECT special_requests, player_count FROM bookings WHERE id = $1")
            .bind(id as i32)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((special, players), (None, 1), "nothing was changed");
    assert_eq!(app.count("booking_history").await, 1, "no UPDATED entry");
    assert_eq!(app.cached_booked(212).await, 1, "no seat moved");
    assert_eq!(outbox_rows(&app, s::SLOTS_BOOK).await, 1, "no book queued");
    // The booking as it is still fits, and is served.
    let found = app
        .call(s::BOOKING_FIND_BY_ID, json!({"id": id}))
        .await
        .ok();
    assert_eq!(found["data"]["playerCount"], 1);
}

/// The field paths a `BUS_001` answer names.
fn refused_fields(answer: Answer) -> Vec<String> {
    let Answer::Err(e) = answer else {
        panic!("expected BUS_001, got a success")
    };
    assert_eq!(e.error.code, ErrorCode::Validation, "{}", e.error.message);
    e.error.details.as_ref().unwrap()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Before: a price the slot sync accepts (up to 99,999,999 won) times three players passed
/// `DECIMAL(10,2)`: the create, keyed or not, and an update to more players failed with `SYS_002`
/// and an ERROR line. Now the booking's total (players' total and fee) is checked before the write:
/// `BUS_001` naming `playerCount`. The sync keeps course-service's price (it is a price per
/// player, and a smaller party may still book at it).
#[tokio::test(flavor = "multi_thread")]
async fn a_total_price_past_what_the_money_columns_hold_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut dear = slot(213, 1, 10, 4);
    dear.price = contracts::Won(40_000_000);
    app.seed_slot(&dear, &game(1)).await;
    let one = app
        .call(s::BOOKING_CREATE, create_request(1, 213, 1))
        .await
        .ok();
    assert_eq!(one["data"]["totalPrice"], 41_200_000);
    let mut keyed = create_request(2, 213, 3);
    keyed["idempotencyKey"] = json!("dear-3");
    for request in [create_request(2, 213, 3), keyed] {
        let answer = app.call(s::BOOKING_CREATE, request).await;
        assert_eq!(refused_fields(answer), ["playerCount"]);
    }
    let more = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": one["data"]["id"], "userId": 1, "dto": {"playerCount": 3}}),
        )
        .await;
    assert_eq!(refused_fields(more), ["dto.playerCount"]);
    assert_eq!(app.count("bookings").await, 1, "nothing else written");
    assert_eq!(app.cached_booked(213).await, 1);
}

/// Before: days PostgreSQL cannot hold (years before 4713 BC, which chrono reads) reached the
/// database in `booking.search`, `booking.gameTimeSlots.availability` and the slot sync and came
/// back `SYS_002` with an ERROR line. Now every day is checked as a four-digit year
/// (`YYYY-MM-DD`, 0001 to 9999) and refused `BUS_001` naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn days_outside_four_digit_years_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let mut ancient = slot_sync(&slot(214, 1, 10, 4));
    ancient.date = "-5000-01-01".parse().unwrap();
    let cases = [
        (
            s::BOOKING_SEARCH,
            json!({"startDate": "-5000-01-01"}),
            "startDate",
        ),
        (
            s::BOOKING_SEARCH,
            json!({"endDate": "-5000-01-01"}),
            "endDate",
        ),
        (
            s::BOOKING_SEARCH,
            json!({"startDate": "+200000-01-01"}),
            "startDate",
        ),
        (
            s::BOOKING_AVAILABILITY,
            json!({"gameId": 1, "date": "-5000-01-01"}),
            "date",
        ),
        (
            s::BOOKING_SLOT_SYNC,
            serde_json::to_value(&ancient).unwrap(),
            "date",
        ),
    ];
    for (subject, data, field) in cases {
        let answer = app.call(subject, data.clone()).await;
        assert_eq!(refused_fields(answer), [field], "{subject} {data}");
    }
    assert_eq!(app.count("game_time_slot_cache").await, 0);
    // The days at the ends of the range are served.
    let edges = json!({"startDate": "0001-01-01", "endDate": "9999-12-31"});
    app.call(s::BOOKING_SEARCH, edges).await.ok();
}

/// Before: a create on a slot whose day had passed (2020-01-01, yesterday, or earlier today) was
/// booked, and held seats that the cancel cutoff then kept from ever being given back. Now a slot
/// that has started (its day and start time before the service's clock) is `BUS_004`, and
/// nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_on_a_slot_that_has_started_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let mut long_ago = slot(215, 1, 0, 4);
    long_ago.date = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let yesterday = slot(216, 1, -1, 4);
    let mut this_morning = slot(217, 1, 0, 4);
    this_morning.start_time = "00:00".into();
    for (started, when) in [
        (long_ago, "2020-01-01"),
        (yesterday, "yesterday"),
        (this_morning, "today at 00:00"),
    ] {
        app.seed_slot(&started, &game(1)).await;
        let answer = app
            .call(s::BOOKING_CREATE, create_request(1, started.id, 1))
            .await;
        assert_eq!(answer.code(), ErrorCode::BusinessRule, "{when}");
        let mut keyed = create_request(1, started.id, 1);
        keyed["idempotencyKey"] = json!(format!("late-{}", started.id));
        let answer = app.call(s::BOOKING_CREATE, keyed).await;
        assert_eq!(answer.code(), ErrorCode::BusinessRule, "{when}, keyed");
        assert_eq!(app.cached_booked(started.id).await, 0, "{when}");
    }
    assert_eq!(app.count("bookings").await, 0);
    assert_eq!(app.count("outbox_events").await, 0);
    // Later today and tomorrow are still booked, unless the day is about to end.
    if chrono::Utc::now().time() < chrono::NaiveTime::from_hms_opt(23, 58, 0).unwrap() {
        let mut tonight = slot(218, 1, 0, 4);
        tonight.start_time = "23:59".into();
        app.seed_slot(&tonight, &game(1)).await;
        app.call(s::BOOKING_CREATE, create_request(1, 218, 1))
            .await
            .ok();
    }
    booked(&app, 219, 1, 1).await;
}
