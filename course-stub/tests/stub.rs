//! The course-stub on a real NATS: NestJS envelope, dedup by `Nats-Msg-Id`, each fault knob, sync.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use contracts::course::{CourseReply, SlotSeats, TimeSlot};
use contracts::{subjects as s, Codec, MessageId, ReplyOutcome, MSG_ID_HEADER};
use course_stub::control::{self, StubState};
use course_stub::{Catalog, CatalogSpec, Faults, StubConfig};
use futures::StreamExt as _;
use serde_json::{json, Value};
use world::World;

struct Setup {
    _stub: course_stub::RunningStub,
    _world: World,
    client: async_nats::Client,
    catalog: Catalog,
}

async fn setup(faults: Faults) -> Setup {
    let world = World::builder()
        .without_postgres()
        .local_only()
        .start()
        .await
        .unwrap();
    let catalog = Catalog::generate(
        3,
        &CatalogSpec::small(NaiveDate::from_ymd_opt(2031, 3, 1).unwrap()),
    );
    let stub = course_stub::start(StubConfig {
        nats_url: world.nats_url().to_owned(),
        login: Default::default(),
        seed: 3,
        catalog: catalog.clone(),
        faults,
        sync_on_start: false,
    })
    .await
    .unwrap();
    let client = async_nats::connect(world.nats_url()).await.unwrap();
    Setup {
        _stub: stub,
        _world: world,
        client,
        catalog,
    }
}

/// A NestJS request; `None` on timeout.
async fn request(
    client: &async_nats::Client,
    subject: &str,
    data: Value,
    msg_id: Option<&str>,
) -> Option<ReplyOutcome> {
    let id = MessageId::fresh();
    let mut headers = async_nats::HeaderMap::new();
    if let Some(m) = msg_id {
        headers.insert(MSG_ID_HEADER, m);
    }
    let reply = contracts::NestClient::new(client.clone(), Duration::from_millis(400))
        .request_with(subject, &data, &id, Some(headers))
        .await
        .ok()?;
    assert_eq!(reply.id, Some(id), "the stub echoes the request id");
    Some(reply.outcome)
}

fn response(outcome: Option<ReplyOutcome>) -> Value {
    match outcome {
        Some(ReplyOutcome::Response(v)) => v,
        other => panic!("expected a response, got {other:?}"),
    }
}

async fn state(client: &async_nats::Client) -> StubState {
    let v = response(request(client, control::STATE, json!({}), None).await);
    serde_json::from_value(v["data"].clone()).unwrap()
}

fn booked(state: &StubState, slot: i32) -> i32 {
    state
        .slots
        .iter()
        .find(|s| s.id == slot)
        .unwrap()
        .booked_players
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_answer_in_the_seed_shapes_and_unknown_ids_with_success_false() {
    let t = setup(Faults::default()).await;
    let first = &t.catalog.slots[0];
    let v = response(
        request(
            &t.client,
            s::SLOTS_GET,
            json!({"timeSlotId": first.id}),
            None,
        )
        .await,
    );
    let reply: CourseReply<TimeSlot> = serde_json::from_value(v).unwrap();
    assert!(matches!(reply, CourseReply::Found(ref f) if f.data == *first));
    let v = response(
        request(
            &t.client,
            s::GAMES_GET,
            json!({"gameId": first.game_id}),
            None,
        )
        .await,
    );
    assert_eq!(v["data"]["id"], first.game_id);
    // Unknown ids: course-service's own codes and messages, inside `response`, no timestamp.
    let v = response(request(&t.client, s::SLOTS_GET, json!({"timeSlotId": 99999}), None).await);
    assert_eq!(
        v,
        json!({"success": false, "error": {"code": "GAME_TIMESLOT_GET_FAILED",
            "message": "GameTimeSlot with ID 99999 not found"}})
    );
    let v = response(request(&t.client, s::GAMES_GET, json!({"gameId": 99999}), None).await);
    assert_eq!(v["error"]["code"], "GAME_GET_FAILED");
    assert_eq!(v["error"]["message"], "Game with ID 99999 not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn book_and_release_refuse_and_clamp_exactly_as_the_real_course_service() {
    let t = setup(Faults::default()).await;
    let slot = &t.catalog.slots[3];
    assert_eq!(slot.max_players, 4);
    let book = |n: i32| json!({"timeSlotId": slot.id, "playerCount": n});
    // The reply is the updated row without the game's names.
    let v = response(request(&t.client, s::SLOTS_BOOK, book(3), Some("r-1")).await);
    assert_eq!(v["data"]["bookedPlayers"], 3);
    assert!(v["data"].get("gameName").is_none(), "{v}");
    // Past capacity: refused, nothing applied.
    let v = response(request(&t.client, s::SLOTS_BOOK, book(2), Some("r-2")).await);
    assert_eq!(
        v,
        json!({"success": false, "error": {"code": "GAME_TIMESLOT_BOOK_FAILED",
            "message": "Not enough capacity. Available: 1, Requested: 2"}})
    );
    // Full: the status is FULLY_BOOKED, and any book is refused for it.
    response(request(&t.client, s::SLOTS_BOOK, book(1), Some("r-3")).await);
    let v = response(request(&t.client, s::SLOTS_BOOK, book(1), Some("r-4")).await);
    assert_eq!(
        v["error"]["message"],
        "Time slot is not available (status: FULLY_BOOKED)"
    );
    // Unknown slot.
    let v = response(
        request(
            &t.client,
            s::SLOTS_RELEASE,
            json!({"timeSlotId": 99999, "playerCount": 1}),
            Some("r-5"),
        )
        .await,
    );
    assert_eq!(v["error"]["code"], "GAME_TIMESLOT_RELEASE_FAILED");
    // A release past zero is clamped and still answered as a success.
    let v = response(
        request(
            &t.client,
            s::SLOTS_RELEASE,
            json!({"timeSlotId": slot.id, "playerCount": 4}),
            Some("r-6"),
        )
        .await,
    );
    assert_eq!(v["data"]["bookedPlayers"], 0);
    let v = response(
        request(
            &t.client,
            s::SLOTS_RELEASE,
            json!({"timeSlotId": slot.id, "playerCount": 1}),
            Some("r-7"),
        )
        .await,
    );
    assert_eq!(
        (v["success"].clone(), v["data"]["bookedPlayers"].clone()),
        (json!(true), json!(0))
    );
    let st = state(&t.client).await;
    assert_eq!((st.counts.refused, st.counts.clamped), (3, 1));
    assert_eq!(st.refused_ids, ["r-2", "r-4", "r-5"]);
    // A refused message is not "seen": sent again once there is room, it is applied.
    let v = response(request(&t.client, s::SLOTS_BOOK, book(2), Some("r-2")).await);
    assert_eq!(v["data"]["bookedPlayers"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_books_seats_on_course_services_side_and_lenient_never_refuses() {
    let t = setup(Faults::default()).await;
    let slot = t.catalog.slots[0].id;
    let v = response(
        request(
            &t.client,
            control::DRIFT,
            json!({"slots": 2, "seats": 3}),
            None,
        )
        .await,
    );
    assert_eq!(v["data"], 6);
    let st = state(&t.client).await;
    assert_eq!((booked(&st, slot), st.slots[0].external), (3, 3));
    let book = json!({"timeSlotId": slot, "playerCount": 2});
    let v = response(request(&t.client, s::SLOTS_BOOK, book.clone(), Some("l-1")).await);
    assert_eq!(v["success"], false);
    response(request(&t.client, control::FAULTS, json!({"lenient": true}), None).await);
    let v = response(request(&t.client, s::SLOTS_BOOK, book, Some("l-1")).await);
    assert_eq!(v["data"]["bookedPlayers"], 5, "the kind stand-in overbooks");
}

#[tokio::test(flavor = "multi_thread")]
async fn book_and_release_apply_once_per_message_id_as_requests_or_events() {
    let t = setup(Faults::default()).await;
    let slot = t.catalog.slots[1].id;
    let seats = json!({"timeSlotId": slot, "playerCount": 2});
    let v = response(request(&t.client, s::SLOTS_BOOK, seats.clone(), Some("evt-1")).await);
    assert_eq!(
        v["data"]["bookedPlayers"], 2,
        "answered with the updated slot"
    );
    response(request(&t.client, s::SLOTS_BOOK, seats.clone(), Some("evt-1")).await);
    assert_eq!(
        booked(&state(&t.client).await, slot),
        2,
        "a redelivery is not applied again"
    );
    // As an event (emit): no reply, still applied once.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(MSG_ID_HEADER, "evt-2");
    let body = Codec::default()
        .encode_event(
            s::SLOTS_RELEASE,
            &SlotSeats {
                time_slot_id: slot,
                player_count: 1,
            },
        )
        .unwrap();
    for _ in 0..2 {
        t.client
            .publish_with_headers(s::SLOTS_RELEASE, headers.clone(), body.clone().into())
            .await
            .unwrap();
    }
    t.client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = state(&t.client).await;
        // Messages are handled concurrently: wait until all four have been seen.
        if st.counts.applied + st.counts.deduplicated == 4 {
            assert_eq!(booked(&st, slot), 1);
            assert_eq!(st.counts.deduplicated, 2);
            assert_eq!(st.counts.applied, 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "release not handled: {:?}",
            st.counts
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_answers_nothing_until_it_is_lifted() {
    let t = setup(Faults {
        outage: true,
        ..Faults::default()
    })
    .await;
    let slot = t.catalog.slots[0].id;
    assert!(
        request(&t.client, s::SLOTS_GET, json!({"timeSlotId": slot}), None)
            .await
            .is_none()
    );
    assert!(request(
        &t.client,
        s::SLOTS_BOOK,
        json!({"timeSlotId": slot, "playerCount": 1}),
        Some("o-1")
    )
    .await
    .is_none());
    let st = state(&t.client).await;
    assert_eq!(booked(&st, slot), 0);
    assert_eq!(st.counts.silenced, 2);
    response(request(&t.client, control::FAULTS, json!({"outage": false}), None).await);
    response(
        request(
            &t.client,
            s::SLOTS_BOOK,
            json!({"timeSlotId": slot, "playerCount": 1}),
            Some("o-1"),
        )
        .await,
    );
    assert_eq!(booked(&state(&t.client).await, slot), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_delays_every_answer() {
    let t = setup(Faults {
        latency_ms: 300,
        ..Faults::default()
    })
    .await;
    let started = Instant::now();
    response(
        request(
            &t.client,
            s::SLOTS_GET,
            json!({"timeSlotId": t.catalog.slots[0].id}),
            None,
        )
        .await,
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_messages_are_neither_applied_nor_answered_and_duplicates_are_deduplicated() {
    let t = setup(Faults {
        drop_fraction: 1.0,
        ..Faults::default()
    })
    .await;
    let slot = t.catalog.slots[2].id;
    let seats = json!({"timeSlotId": slot, "playerCount": 1});
    assert!(
        request(&t.client, s::SLOTS_BOOK, seats.clone(), Some("d-1"))
            .await
            .is_none()
    );
    let st = state(&t.client).await;
    assert_eq!((st.counts.dropped, booked(&st, slot)), (1, 0));

    response(
        request(
            &t.client,
            control::FAULTS,
            json!({"duplicateFraction": 1.0}),
            None,
        )
        .await,
    );
    response(request(&t.client, s::SLOTS_BOOK, seats.clone(), Some("d-1")).await);
    let st = state(&t.client).await;
    assert_eq!(booked(&st, slot), 1, "handled twice, applied once");
    assert_eq!((st.counts.duplicated, st.counts.deduplicated), (1, 1));

    // A bad knob is refused.
    match request(
        &t.client,
        control::FAULTS,
        json!({"dropFraction": 2.0}),
        None,
    )
    .await
    {
        Some(ReplyOutcome::Err(e)) => assert_eq!(e["error"]["code"], "BUS_001"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_decisions_follow_the_seed() {
    async fn run() -> (u64, u64) {
        let t = setup(Faults {
            drop_fraction: 0.5,
            ..Faults::default()
        })
        .await;
        for i in 0..16 {
            let _ = request(
                &t.client,
                s::SLOTS_BOOK,
                json!({"timeSlotId": 1, "playerCount": 1}),
                Some(&format!("s-{i}")),
            )
            .await;
        }
        let st = state(&t.client).await;
        (st.counts.dropped, st.counts.applied)
    }
    let a = run().await;
    assert_eq!(a, run().await);
    assert!(a.0 > 0 && a.1 > 0, "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_emits_the_catalogue_and_a_stale_sync_reports_zero_booked() {
    let t = setup(Faults::default()).await;
    let slot = t.catalog.slots[0].id;
    response(
        request(
            &t.client,
            s::SLOTS_BOOK,
            json!({"timeSlotId": slot, "playerCount": 3}),
            Some("y-1"),
        )
        .await,
    );
    let mut games = t.client.subscribe(s::BOOKING_GAME_SYNC).await.unwrap();
    let mut slots = t.client.subscribe(s::BOOKING_SLOT_SYNC).await.unwrap();
    t.client.flush().await.unwrap();
    let v = response(request(&t.client, control::SYNC, json!({}), None).await);
    assert_eq!(v["data"]["games"], t.catalog.games.len());
    assert_eq!(v["data"]["slots"], t.catalog.slots.len());
    let game = games.next().await.unwrap();
    let inbound = Codec::default().decode_inbound(&game.payload).unwrap();
    assert_eq!(inbound.kind, contracts::InboundKind::Event);
    let _: contracts::sync::GameSync = Codec::decode_data(inbound.data).unwrap();
    let first = slots.next().await.unwrap();
    let data = Codec::default()
        .decode_inbound(&first.payload)
        .unwrap()
        .data;
    let sync: contracts::sync::GameTimeSlotSync = Codec::decode_data(data).unwrap();
    assert_eq!((sync.game_time_slot_id, sync.booked_players), (slot, 3));

    response(request(&t.client, control::SYNC, json!({"stale": true}), None).await);
    let mut seen = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), slots.next()).await {
        let data = Codec::default().decode_inbound(&msg.payload).unwrap().data;
        let sync: contracts::sync::GameTimeSlotSync = Codec::decode_data(data).unwrap();
        if sync.game_time_slot_id == slot {
            seen = Some(sync.booked_players);
        }
    }
    assert_eq!(seen, Some(0), "the stale view");
}
