//! booking-service handlers against real PostgreSQL and NATS: success, every error code, bad input
//! answered with a clear error and nothing written, events delivered through the outbox.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use contracts::{subjects as s, Codec, ErrorCode};
use futures::StreamExt as _;
use integration_tests::*;
use serde_json::{json, Value};

/// A service with game 1 and slot `slot_id` (4 seats, 10 days out) in its cache.
async fn app_with_slot(slot_id: i32) -> TestApp {
    let app = spawn_app().await;
    app.seed_slot(&slot(slot_id, 1, 10, 4), &game(1)).await;
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_create_the_reference_tables_and_columns() {
    let db = migrated_database().await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let expected: &[(&str, &[&str])] = &[
        (
            "bookings",
            &[
                "id",
                "booking_number",
                "user_id",
                "game_id",
                "game_time_slot_id",
                "game_name",
                "game_code",
                "front_nine_course_id",
                "front_nine_course_name",
                "back_nine_course_id",
                "back_nine_course_name",
                "club_id",
                "club_name",
                "booking_date",
                "start_time",
                "end_time",
                "player_count",
                "price_per_person",
                "service_fee",
                "total_price",
                "status",
                "payment_method",
                "special_requests",
                "notes",
                "user_email",
                "user_name",
                "user_phone",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "payments",
            &[
                "id",
                "booking_id",
                "amount",
                "payment_method",
                "payment_status",
                "transaction_id",
                "paid_at",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "booking_history",
            &[
                "id",
                "booking_id",
                "action",
                "details",
                "user_id",
                "created_at",
            ],
        ),
        (
            "game_cache",
            &[
                "id",
                "game_id",
                "name",
                "code",
                "description",
                "front_nine_course_id",
                "front_nine_course_name",
                "back_nine_course_id",
                "back_nine_course_name",
                "total_holes",
                "estimated_duration",
                "break_duration",
                "max_players",
                "base_price",
                "weekend_price",
                "holiday_price",
                "club_id",
                "club_name",
                "is_active",
                "last_sync_at",
                "created_at",
                "updated_at",
            ],
        ),
        (
            "game_time_slot_cache",
            &[
                "id",
                "game_time_slot_id",
                "game_id",
                "game_name",
                "game_code",
                "front_nine_course_name",
                "back_nine_course_name",
                "club_id",
                "club_name",
                "date",
                "start_time",
                "end_time",
                "max_players",
                "booked_players",
                "available_players",
                "is_available",
                "price",
                "is_premium",
                "status",
                "last_sync_at",
                "created_at",
                "updated_at",
            ],
        ),
    ];
    for (table, columns) in expected {
        let mut found: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
        )
        .bind(table)
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut want: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        found.sort();
        want.sort();
        assert_eq!(found, want, "columns of {table}");
    }
    let enums: Vec<String> = sqlx::query_scalar(
        "SELECT t.typname::text || ':' || string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder) \
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY t.typname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        enums,
        vec![
            "BookingStatus:PENDING,CONFIRMED,CANCELLED,COMPLETED,NO_SHOW".to_owned(),
            "PaymentStatus:PENDING,PAID,FAILED,REFUNDED".to_owned()
        ]
    );
    for table in ["outbox_events", "idempotency_keys"] {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
        )
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 1, "{table} exists");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_booking_is_created_with_payment_history_outbox_and_cache_count() {
    let app = app_with_slot(101).await;
    let reply = app
        .call(s::BOOKING_CREATE, create_request(7, 101, 3))
        .await
        .ok();
    assert_eq!(reply["success"], true);
    let data = &reply["data"];
    assert_eq!(data["playerCount"], 3);
    assert_eq!(data["pricePerPerson"], 15000);
    assert_eq!(data["serviceFee"], 1350, "floor(45000 * 3%)");
    assert_eq!(data["totalPrice"], 46350);
    assert_eq!(data["status"], "CONFIRMED");
    assert_eq!(data["gameName"], "게임 1");
    assert_eq!(data["frontNineCourseId"], 11);
    assert!(data["bookingNumber"].as_str().unwrap().starts_with("BK-"));
    assert_eq!(data["payments"][0]["paymentStatus"], "PENDING");
    assert_eq!(data["payments"][0]["paymentMethod"], "card");
    assert_eq!(data["payments"][0]["amount"], 46350);
    assert_eq!(data["histories"][0]["action"], "CREATED");
    // The reply is exactly the contract's type.
    let _: contracts::Success<contracts::booking::BookingResponse> =
        serde_json::from_value(reply.clone()).unwrap();

    assert_eq!(app.cached_booked(101).await, 3);
    assert_eq!(app.count("payments").await, 1);
    assert_eq!(app.count("booking_history").await, 1);
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox_events ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        events,
        vec![s::SLOTS_BOOK.to_owned(), s::BOOKING_CONFIRMED.to_owned()]
    );

    let by_id = app
        .call(s::BOOKING_FIND_BY_ID, json!({ "id": data["id"] }))
        .await
        .ok();
    assert_eq!(by_id["data"]["bookingNumber"], data["bookingNumber"]);
    let by_number = app
        .call(
            s::BOOKING_FIND_BY_NUMBER,
            json!({ "bookingNumber": data["bookingNumber"] }),
        )
        .await
        .ok();
    assert_eq!(by_number["data"]["id"], data["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_slot_is_refused_with_bus_004_and_nothing_is_written() {
    let app = app_with_slot(102).await;
    app.call(s::BOOKING_CREATE, create_request(1, 102, 3))
        .await
        .ok();
    let refused = app.call(s::BOOKING_CREATE, create_request(2, 102, 2)).await;
    assert_eq!(refused.code(), ErrorCode::BusinessRule);
    assert_eq!(app.count("bookings").await, 1);
    assert_eq!(app.cached_booked(102).await, 3);
    app.call(s::BOOKING_CREATE, create_request(2, 102, 1))
        .await
        .ok();
    assert_eq!(app.cached_booked(102).await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_bus_001_and_writes_nothing() {
    let app = app_with_slot(103).await;
    let mut cases: Vec<(&str, Value)> = vec![
        ("zero players", create_request(1, 103, 0)),
        ("negative players", create_request(1, 103, -2)),
        (
            "more players than the slot holds",
            create_request(1, 103, 5),
        ),
        ("negative user", create_request(-1, 103, 1)),
        (
            "players as a string",
            json!({"userId":1,"gameTimeSlotId":103,"playerCount":"2","userEmail":"a@b.co","userName":"n"}),
        ),
        (
            "missing e-mail",
            json!({"userId":1,"gameTimeSlotId":103,"playerCount":1,"userName":"n"}),
        ),
        (
            "bad e-mail",
            json!({"userId":1,"gameTimeSlotId":103,"playerCount":1,"userEmail":"nope","userName":"n"}),
        ),
        (
            "unknown field",
            json!({"userId":1,"gameTimeSlotId":103,"playerCount":1,"userEmail":"a@b.co","userName":"n","discount":100}),
        ),
        ("data is not an object", json!([1, 2, 3])),
    ];
    let mut long = create_request(1, 103, 1);
    long["specialRequests"] = Value::from("x".repeat(20_000));
    cases.push(("oversized string", long));
    for (what, data) in cases {
        let answer = app.call(s::BOOKING_CREATE, data).await;
        assert_eq!(answer.code(), ErrorCode::Validation, "{what}");
    }
    // Malformed JSON, truncated JSON and a 1 MiB body: answered, not fatal.
    for body in [
        b"{not json".to_vec(),
        br#"{"pattern":"booking.create","data":{"userId":1"#.to_vec(),
        vec![b'x'; 1 << 20],
    ] {
        let reply = app.raw(s::BOOKING_CREATE, body).await;
        let value: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(value["error"]["code"], "BUS_001", "{value}");
    }
    assert_eq!(app.count("bookings").await, 0);
    assert_eq!(app.count("payments").await, 0);
    assert_eq!(app.count("outbox_events").await, 0);
    assert_eq!(app.cached_booked(103).await, 0);
    // And the service still serves.
    app.call(s::BOOKING_CREATE, create_request(1, 103, 1))
        .await
        .ok();
    assert!(app.replicas[0].is_serving());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_miss_fetches_the_slot_once_for_concurrent_callers() {
    let app = spawn_app().await;
    let course = FakeCourse::start(
        app.client.clone(),
        vec![slot(201, 2, 10, 4)],
        vec![game(2)],
        Duration::from_millis(200),
    )
    .await;
    let calls = (0..8).map(|i| app.call(s::BOOKING_CREATE, create_request(i + 1, 201, 1)));
    let answers = futures::future::join_all(calls).await;
    let ok = answers
        .iter()
        .filter(|a| matches!(a, Answer::Ok(_)))
        .count();
    assert_eq!(ok, 4, "four seats");
    assert!(answers
        .iter()
        .all(|a| matches!(a, Answer::Ok(_)) || a.code() == ErrorCode::BusinessRule));
    assert_eq!(
        course.slot_calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one course-service call"
    );
    assert_eq!(app.cached_booked(201).await, 4);
    let game_name: String = sqlx::query_scalar("SELECT name FROM game_cache WHERE game_id = 2")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(game_name, "게임 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_slot_is_bus_002_and_an_absent_course_service_is_sys_004_within_the_timeout() {
    // The breaker would open after these failures; this test is about single calls.
    let app = spawn_app_with(AppOptions {
        configure: |c| c.breaker_threshold = 1000,
        ..AppOptions::default()
    })
    .await;
    // No course-service at all: NATS answers "no responders" at once.
    let started = Instant::now();
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(1, 999, 1))
            .await
            .code(),
        ErrorCode::ServiceUnavailable
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // A course-service that hangs: the configured timeout (500 ms here) bounds the wait.
    let mut hang = app.client.subscribe(s::SLOTS_GET).await.unwrap();
    let swallow = tokio::spawn(async move { while hang.next().await.is_some() {} });
    barrier(&app.client).await;
    let started = Instant::now();
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(1, 998, 1))
            .await
            .code(),
        ErrorCode::ServiceUnavailable
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    swallow.abort();
    // A course-service that does not know the slot.
    let _course = FakeCourse::start(app.client.clone(), vec![], vec![], Duration::ZERO).await;
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(1, 997, 1))
            .await
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(app.count("bookings").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_booking() {
    let app = app_with_slot(104).await;
    let mut req = create_request(5, 104, 1);
    req["idempotencyKey"] = Value::from("key-1");
    let first = app.call(s::BOOKING_CREATE, req.clone()).await.ok();
    let again = app.call(s::BOOKING_CREATE, req.clone()).await.ok();
    assert_eq!(
        first["data"]["bookingNumber"],
        again["data"]["bookingNumber"]
    );
    // Concurrent duplicates too.
    let mut req2 = create_request(5, 104, 1);
    req2["idempotencyKey"] = Value::from("key-2");
    let answers =
        futures::future::join_all((0..5).map(|_| app.call(s::BOOKING_CREATE, req2.clone()))).await;
    let numbers: std::collections::HashSet<String> = answers
        .into_iter()
        .map(|a| a.ok()["data"]["bookingNumber"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(numbers.len(), 1);
    assert_eq!(app.count("bookings").await, 2);
    assert_eq!(app.cached_booked(104).await, 2);
    // The same key with another body is refused.
    let mut other = req.clone();
    other["playerCount"] = Value::from(2);
    assert_eq!(
        app.call(s::BOOKING_CREATE, other).await.code(),
        ErrorCode::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_restores_capacity_and_enforces_owner_status_and_cutoff() {
    let app = spawn_app().await;
    app.seed_slot(&slot(105, 1, 10, 4), &game(1)).await;
    app.seed_slot(&slot(106, 1, 1, 4), &game(1)).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(9, 105, 4))
        .await
        .ok()["data"]
        .clone();
    let id = booking["id"].clone();

    let not_owner = app
        .call(s::BOOKING_CANCEL, json!({"id": id, "userId": 10}))
        .await;
    assert_eq!(not_owner.code(), ErrorCode::Forbidden);
    assert_eq!(
        app.call(s::BOOKING_CANCEL, json!({"id": 424242, "userId": 9}))
            .await
            .code(),
        ErrorCode::NotFound
    );

    let cancelled = app
        .call(
            s::BOOKING_CANCEL,
            json!({"id": id, "userId": 9, "reason": "rain"}),
        )
        .await
        .ok();
    assert_eq!(cancelled["data"]["status"], "CANCELLED");
    assert_eq!(app.cached_booked(105).await, 0);
    assert_eq!(
        app.call(s::BOOKING_CANCEL, json!({"id": id, "userId": 9}))
            .await
            .code(),
        ErrorCode::BusinessRule
    );
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox_events ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(&events[2..], [s::SLOTS_RELEASE, s::BOOKING_CANCELLED]);

    // Tomorrow's booking is inside the 3-day cut-off.
    let soon = app
        .call(s::BOOKING_CREATE, create_request(9, 106, 1))
        .await
        .ok()["data"]
        .clone();
    let late = app
        .call(s::BOOKING_CANCEL, json!({"id": soon["id"], "userId": 9}))
        .await;
    assert_eq!(late.code(), ErrorCode::BusinessRule);
    assert_eq!(app.cached_booked(106).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn updating_player_count_rechecks_capacity_and_reprices() {
    let app = app_with_slot(107).await;
    let a = app
        .call(s::BOOKING_CREATE, create_request(1, 107, 2))
        .await
        .ok()["data"]
        .clone();
    app.call(s::BOOKING_CREATE, create_request(2, 107, 1))
        .await
        .ok();
    let too_many = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": a["id"], "dto": {"playerCount": 4}}),
        )
        .await;
    assert_eq!(too_many.code(), ErrorCode::BusinessRule);
    assert_eq!(app.cached_booked(107).await, 3);

    let grown = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": a["id"], "dto": {"playerCount": 3, "userPhone": "010-0000-1111"}}),
        )
        .await
        .ok();
    assert_eq!(grown["data"]["playerCount"], 3);
    assert_eq!(grown["data"]["totalPrice"], 46350);
    assert_eq!(grown["data"]["userPhone"], "010-0000-1111");
    assert_eq!(app.cached_booked(107).await, 4);
    assert_eq!(app.booked_sum(107).await, 4);

    let shrunk = app
        .call(
            s::BOOKING_UPDATE,
            json!({"id": a["id"], "dto": {"playerCount": 1}}),
        )
        .await
        .ok();
    assert_eq!(shrunk["data"]["playerCount"], 1);
    assert_eq!(app.cached_booked(107).await, 2);
    assert_eq!(
        app.call(s::BOOKING_UPDATE, json!({"id": 9999, "dto": {}}))
            .await
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        app.call(
            s::BOOKING_UPDATE,
            json!({"id": a["id"], "dto": {"playerCount": 0}})
        )
        .await
        .code(),
        ErrorCode::Validation
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_bookings_search_and_availability_answer_with_the_reference_shapes() {
    let app = spawn_app().await;
    app.seed_slot(&slot(110, 1, 10, 4), &game(1)).await;
    let mut later = slot(111, 1, 10, 4);
    later.start_time = "13:00".into();
    later.end_time = "16:00".into();
    app.seed_slot(&later, &game(1)).await;
    for (user, slot_id) in [(1, 110), (1, 111), (2, 110)] {
        app.call(s::BOOKING_CREATE, create_request(user, slot_id, 1))
            .await
            .ok();
    }
    let mine = app
        .call(s::BOOKING_FIND_BY_USER_ID, json!({"userId": 1}))
        .await
        .ok();
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);
    assert_eq!(mine["data"][0]["gameTimeSlotId"], 111, "newest first");
    assert_eq!(mine["data"][0]["canCancel"], true);

    let page = app
        .call(
            s::BOOKING_SEARCH,
            json!({"userId": 1, "limit": 1, "page": 2, "sortBy": "createdAt", "sortOrder": "asc"}),
        )
        .await
        .ok();
    assert_eq!(page["total"], 2);
    assert_eq!(page["totalPages"], 2);
    assert_eq!(page["page"], 2);
    assert_eq!(page["data"][0]["gameTimeSlotId"], 111);
    let _: contracts::Page<contracts::booking::BookingResponse> =
        serde_json::from_value(page).unwrap();
    let upcoming = app
        .call(
            s::BOOKING_SEARCH,
            json!({"timeFilter": "upcoming", "status": "CONFIRMED"}),
        )
        .await
        .ok();
    assert_eq!(upcoming["total"], 3);
    let past = app
        .call(s::BOOKING_SEARCH, json!({"timeFilter": "past"}))
        .await
        .ok();
    assert_eq!(past["total"], 0);
    assert_eq!(
        app.call(s::BOOKING_SEARCH, json!({"limit": 500}))
            .await
            .code(),
        ErrorCode::Validation
    );

    let date = slot(110, 1, 10, 4).date.to_string();
    let slots = app
        .call(s::BOOKING_AVAILABILITY, json!({"gameId": 1, "date": date}))
        .await
        .ok();
    let slots = slots["data"].as_array().unwrap().clone();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[0]["startTime"], "09:00");
    assert_eq!(slots[0]["bookedPlayers"], 2);
    assert_eq!(slots[0]["availablePlayers"], 2);
    assert_eq!(slots[1]["bookedPlayers"], 1);
    assert_eq!(
        app.call(s::BOOKING_FIND_BY_ID, json!({"id": 777}))
            .await
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        app.call(s::BOOKING_FIND_BY_NUMBER, json!({"bookingNumber": "BK-0"}))
            .await
            .code(),
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_sync_never_lowers_the_local_booked_count() {
    let app = app_with_slot(112).await;
    app.call(s::BOOKING_CREATE, create_request(1, 112, 3))
        .await
        .ok();
    // Course-service's older view: nothing booked, price changed.
    let mut stale = slot(112, 1, 10, 4);
    stale.price = contracts::Won(20_000);
    app.call(
        s::BOOKING_SLOT_SYNC,
        serde_json::to_value(slot_sync(&stale)).unwrap(),
    )
    .await
    .ok();
    assert_eq!(app.cached_booked(112).await, 3);
    let price: i64 = sqlx::query_scalar(
        "SELECT price::int8 FROM game_time_slot_cache WHERE game_time_slot_id = 112",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(price, 20_000, "course-owned fields do update");
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(2, 112, 2))
            .await
            .code(),
        ErrorCode::BusinessRule
    );
    // Sync as an event (no id): applied, never answered.
    let mut closed = slot(112, 1, 10, 4);
    closed.status = contracts::course::SlotStatus::Closed;
    let body = Codec::default()
        .encode_event(s::BOOKING_SLOT_SYNC, &slot_sync(&closed))
        .unwrap();
    app.client
        .publish(s::BOOKING_SLOT_SYNC, body.into())
        .await
        .unwrap();
    eventually("the closing sync", Duration::from_secs(5), || async {
        let status: String = sqlx::query_scalar(
            "SELECT status FROM game_time_slot_cache WHERE game_time_slot_id = 112",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (status == "CLOSED").then_some(())
    })
    .await;
    assert_eq!(
        app.call(s::BOOKING_CREATE, create_request(3, 112, 1))
            .await
            .code(),
        ErrorCode::BusinessRule
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn external_bare_json_requests_get_bare_replies() {
    let app = app_with_slot(113).await;
    let created = app
        .call(s::BOOKING_CREATE, create_request(1, 113, 1))
        .await
        .ok();
    let reply = app
        .raw(
            s::BOOKING_FIND_BY_ID,
            serde_json::to_vec(&json!({"id": created["data"]["id"]})).unwrap(),
        )
        .await;
    let value: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(value["success"], true);
    assert_eq!(value["data"]["id"], created["data"]["id"]);
    let missing = app
        .raw(s::BOOKING_FIND_BY_ID, br#"{"id":31337}"#.to_vec())
        .await;
    let value: Value = serde_json::from_slice(&missing.payload).unwrap();
    assert_eq!(value["success"], false);
    assert_eq!(value["error"]["code"], "BUS_002");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_leave_through_the_outbox_with_a_message_id() {
    let app = spawn_app().await;
    let course = FakeCourse::start(
        app.client.clone(),
        vec![slot(120, 1, 10, 4)],
        vec![game(1)],
        Duration::ZERO,
    )
    .await;
    let mut confirmed = app.client.subscribe(s::BOOKING_CONFIRMED).await.unwrap();
    barrier(&app.client).await;
    let booking = app
        .call(s::BOOKING_CREATE, create_request(1, 120, 2))
        .await
        .ok()["data"]
        .clone();

    let event = tokio::time::timeout(Duration::from_secs(10), confirmed.next())
        .await
        .unwrap()
        .unwrap();
    let header = event
        .headers
        .as_ref()
        .and_then(|h| h.get(contracts::MSG_ID_HEADER))
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&header).is_ok());
    let inbound = Codec::default().decode_inbound(&event.payload).unwrap();
    assert_eq!(inbound.kind, contracts::InboundKind::Event);
    let payload: contracts::events::BookingConfirmed = Codec::decode_data(inbound.data).unwrap();
    assert_eq!(
        payload.booking_number,
        booking["bookingNumber"].as_str().unwrap()
    );

    eventually(
        "gameTimeSlots.book at course-service",
        Duration::from_secs(10),
        || async {
            let seats = course.seats.lock().unwrap().clone();
            (seats.len() == 1).then_some(seats)
        },
    )
    .await;
    eventually("the outbox to drain", Duration::from_secs(10), || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status <> 'SENT'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    let seats = course.seats.lock().unwrap().clone();
    assert_eq!(seats[0].0, s::SLOTS_BOOK);
    assert_eq!(seats[0].2.player_count, 2);
    assert!(uuid::Uuid::parse_str(&seats[0].1).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configuration_fails_at_start_with_a_clear_message() {
    let err = booking_service::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some("mysql://nope".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_handler_answers_bad_input_with_bus_001_and_keeps_serving() {
    let app = app_with_slot(130).await;
    let before = (
        app.count("bookings").await,
        app.count("game_cache").await,
        app.count("game_time_slot_cache").await,
    );
    let huge = "x".repeat(300_000);
    for subject in contracts::subjects::BOOKING_HANDLERS {
        let bad: Vec<(&str, Value)> = vec![
            (
                "wrong types",
                json!({"id": "one", "userId": [1], "gameId": {}, "bookingNumber": 5, "gameTimeSlotId": "x", "date": 3}),
            ),
            (
                "negative ids",
                json!({"id": -1, "userId": -1, "gameId": -1, "gameTimeSlotId": -1, "bookingNumber": "", "date": "2025-01-01", "dto": {}}),
            ),
            ("an array", json!([])),
            ("a huge string", json!({"id": huge.clone()})),
        ];
        for (what, data) in bad {
            let body = Codec::with_max_len(1 << 20)
                .encode_request(subject, &data, &contracts::MessageId::fresh())
                .unwrap();
            let reply = app.raw(subject, body).await;
            let value: Value = serde_json::from_slice(&reply.payload).unwrap();
            // An error envelope, or (for a body too large to read its id) a bare error value.
            let code = if value.get("err").is_some() {
                value["err"]["error"]["code"].clone()
            } else {
                assert_eq!(value["success"], false, "{subject} with {what}: {value}");
                value["error"]["code"].clone()
            };
            assert_eq!(code, "BUS_001", "{subject} with {what}");
        }
        for body in [b"{\"pattern\":".to_vec(), b"\xff\xfe".to_vec()] {
            let reply = app.raw(subject, body).await;
            let value: Value = serde_json::from_slice(&reply.payload).unwrap();
            assert_eq!(
                value["error"]["code"], "BUS_001",
                "{subject} with broken JSON"
            );
        }
    }
    let after = (
        app.count("bookings").await,
        app.count("game_cache").await,
        app.count("game_time_slot_cache").await,
    );
    assert_eq!(before, after, "bad input wrote nothing");
    assert_eq!(app.count("outbox_events").await, 0);
    app.call(s::BOOKING_CREATE, create_request(1, 130, 1))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_expires_after_its_time() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.idempotency_ttl = Duration::from_secs(1),
        ..AppOptions::default()
    })
    .await;
    app.seed_slot(&slot(140, 1, 10, 4), &game(1)).await;
    let mut req = create_request(5, 140, 1);
    req["idempotencyKey"] = Value::from("short-lived");
    let first = app.call(s::BOOKING_CREATE, req.clone()).await.ok();
    assert_eq!(
        app.call(s::BOOKING_CREATE, req.clone()).await.ok()["data"]["id"],
        first["data"]["id"]
    );
    // Until the key expires each retry replays the first booking; once it has, the retry books
    // anew.
    let later = eventually("the key to expire", Duration::from_secs(10), || async {
        let again = app.call(s::BOOKING_CREATE, req.clone()).await.ok();
        (again["data"]["id"] != first["data"]["id"]).then_some(again)
    })
    .await;
    let replayed = app.call(s::BOOKING_CREATE, req).await.ok();
    assert_eq!(
        replayed["data"]["id"], later["data"]["id"],
        "the new booking owns the key"
    );
    assert_eq!(app.cached_booked(140).await, 2);
}

/// `DB_POOL_SIZE` counts the connections requests are served with: the relay's listeners hold
/// connections of their own for good, and when they took theirs from this pool a service with
/// one or two connections answered nothing (every request `SYS_002` after the pool's wait).
#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_one_database_connection_answers() {
    let app = spawn_app_with(AppOptions {
        configure: |c| c.db_pool_size = 1,
        ..AppOptions::default()
    })
    .await;
    app.seed_slot(&slot(701, 1, 10, 8), &game(1)).await;
    for user in 1..=3 {
        let booking = app
            .call(s::BOOKING_CREATE, create_request(user, 701, 2))
            .await
            .ok();
        assert_eq!(booking["data"]["playerCount"], 2, "{booking}");
    }
    assert_eq!(app.booked_sum(701).await, 6);
}
