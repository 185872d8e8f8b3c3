//! Wire compatibility with real NestJS peers (`@nestjs/microservices`, Transport.NATS): a NestJS
//! `ClientProxy` calls every booking-service handler and gets the reference's reply shapes,
//! booking-service calls a NestJS course-service, and a NestJS listener reads the booking events.
//! The stand-ins record the fields they read, which their expectation files must list. Needs
//! `node` and `npm ci` in `tests/nestjs` (`cargo xtask test` runs it).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use contracts::booking::{BookingResponse, SlotAvailability};
use contracts::{subjects as s, ErrorValue, Page, Success, SyncAck};
use integration_tests::*;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

fn nestjs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nestjs");
    assert!(
        dir.join("node_modules/@nestjs/microservices").exists(),
        "NestJS packages are missing: run `npm ci` in {} (cargo xtask test does)",
        dir.display()
    );
    dir
}

/// The output lines of a NestJS stand-in.
type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts the NestJS stand-in `script` with `args`, recording what it reads into `reads`, and
/// waits for its `READY` line; the rest of its output is returned.
async fn start_peer(
    dir: &std::path::Path,
    script: &str,
    args: &[&str],
    reads: &std::path::Path,
) -> (tokio::process::Child, Lines) {
    let mut peer = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .env("RECORD_READS", reads)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed");
    let mut lines = tokio::io::BufReader::new(peer.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some("READY"), "{script} did not start");
    (peer, lines)
}

/// A JSON file for node to read; removed when dropped.
fn write_temp(value: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(value).unwrap()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nestjs_client_proxy_calls_every_handler_and_gets_the_reference_shapes() {
    let dir = nestjs_dir();
    let app = spawn_app().await;
    let slot = slot(501, 5, 10, 4);
    let game = game(5);
    let mut create = create_request(42, 501, 2);
    create["idempotencyKey"] = Value::from("nest-1");
    let plan = json!([
        {"send": s::BOOKING_GAME_SYNC, "data": serde_json::to_value(game_sync(&game)).unwrap()},
        {"send": s::BOOKING_SLOT_SYNC, "data": serde_json::to_value(slot_sync(&slot)).unwrap()},
        {"send": s::BOOKING_CREATE, "data": create},
        {"send": s::BOOKING_FIND_BY_ID, "data": {"id": "$bookingId"}},
        {"send": s::BOOKING_FIND_BY_NUMBER, "data": {"bookingNumber": "$bookingNumber"}},
        {"send": s::BOOKING_FIND_BY_USER_ID, "data": {"userId": 42}},
        {"send": s::BOOKING_SEARCH, "data": {"userId": 42, "page": 1, "limit": 10}},
        {"send": s::BOOKING_UPDATE, "data": {"id": "$bookingId", "dto": {"specialRequests": "카트"}}},
        {"send": s::BOOKING_AVAILABILITY, "data": {"gameId": 5, "date": slot.date.to_string()}},
        {"send": s::BOOKING_CANCEL, "data": {"id": "$bookingId", "userId": 42, "reason": "rain"}},
        {"send": s::BOOKING_FIND_BY_ID, "data": {"id": 987654}},
        {"send": s::BOOKING_CREATE, "data": {"userId": 1, "gameTimeSlotId": 501, "playerCount": 0, "userEmail": "a@b.co", "userName": "n"}},
        {"send": s::BOOKING_CANCEL, "data": {"id": "$bookingId", "userId": 7}},
        {"emit": s::BOOKING_SLOT_SYNC, "data": serde_json::to_value(slot_sync(&slot)).unwrap()}
    ]);
    let plan_file = write_temp(&plan);
    let record = tempfile::NamedTempFile::new().unwrap();
    let output = tokio::process::Command::new("node")
        .arg(dir.join("client.js"))
        .arg(app.nats_world.nats_url())
        .arg(plan_file.path())
        .env("RECORD", record.path())
        .current_dir(&dir)
        .output()
        .await
        .expect("node must be installed");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), 14);

    let response = |i: usize| -> Value {
        let r = &results[i];
        assert!(
            r.get("err").is_none(),
            "step {i} ({}) failed: {}",
            r["pattern"],
            r["err"]
        );
        r["response"].clone()
    };
    let _: Success<SyncAck> = serde_json::from_value(response(0)).unwrap();
    assert_eq!(response(1)["data"]["synced"], true);
    let created: Success<BookingResponse> = serde_json::from_value(response(2)).unwrap();
    assert_eq!(created.data.player_count, 2);
    for i in [3, 4, 7, 9] {
        let one: Success<BookingResponse> = serde_json::from_value(response(i)).unwrap();
        assert_eq!(one.data.id, created.data.id, "step {i}");
    }
    let mine: Success<Vec<BookingResponse>> = serde_json::from_value(response(5)).unwrap();
    assert_eq!(mine.data.len(), 1);
    let page: Page<BookingResponse> = serde_json::from_value(response(6)).unwrap();
    assert_eq!(
        (page.total, page.page, page.limit, page.total_pages),
        (1, 1, 10, 1)
    );
    let slots: Success<Vec<SlotAvailability>> = serde_json::from_value(response(8)).unwrap();
    assert_eq!(slots.data[0].booked_players, 2);
    let cancelled: Success<BookingResponse> = serde_json::from_value(response(9)).unwrap();
    assert_eq!(
        cancelled.data.status,
        contracts::booking::BookingStatus::Cancelled
    );

    // Errors reach the NestJS caller as the reference's error value.
    for (i, code) in [(10, "BUS_002"), (11, "BUS_001"), (12, "AUT_002")] {
        let err: ErrorValue = serde_json::from_value(results[i]["err"].clone())
            .unwrap_or_else(|e| panic!("step {i}: {e}: {}", results[i]));
        assert_eq!(err.error.code.as_str(), code, "step {i}");
        assert!(!err.success);
    }
    assert_eq!(results[13]["emitted"], true);
    assert!(app.replicas[0].is_serving());
    user_api_expectations_cover(record.path(), &dir.join("expectations/user-api.json"));
}

/// A peer's expectation for `pattern`, or a panic naming the file that lacks it.
fn interaction<'a>(expected: &'a Value, pattern: &str, file: &std::path::Path) -> &'a Value {
    expected["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subject"] == pattern)
        .unwrap_or_else(|| panic!("{} lacks {pattern}", file.display()))
}

/// What the ClientProxy sent as user-api and read from the replies is in user-api's expectation
/// file: each subject it called, an example of what it sends, and every leaf path it read.
fn user_api_expectations_cover(recorded: &std::path::Path, expectations: &std::path::Path) {
    let recorded: Value = serde_json::from_slice(&std::fs::read(recorded).unwrap()).unwrap();
    let expected: Value = serde_json::from_slice(&std::fs::read(expectations).unwrap()).unwrap();
    for (pattern, seen) in recorded.as_object().unwrap() {
        let from_user_api = contracts::catalog::spec(pattern)
            .is_some_and(|spec| spec.from == contracts::subjects::Service::UserApi);
        if !from_user_api {
            continue;
        }
        let listed = interaction(&expected, pattern, expectations);
        assert!(
            listed.get("sends").is_some(),
            "{pattern}: no example of what user-api sends"
        );
        let reads: Vec<&str> = seen["reads"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for path in &reads {
            let leaf = !reads.iter().any(|p| p.starts_with(&format!("{path}.")));
            assert!(
                !leaf || listed["reads"].get(*path).is_some(),
                "user-api reads `{path}` from {pattern}; {} does not list it",
                expectations.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn booking_service_calls_a_nestjs_course_service() {
    let dir = nestjs_dir();
    let app = spawn_app().await;
    let mut course_slot = slot(601, 6, 10, 4);
    course_slot.club_id = None;
    let catalog = json!({"slots": [course_slot], "games": [game(6)]});
    let catalog_file = write_temp(&catalog);
    let reads_file = tempfile::NamedTempFile::new().unwrap();
    let (mut course, _lines) = start_peer(
        &dir,
        "course-service.js",
        &[
            app.nats_world.nats_url(),
            &catalog_file.path().to_string_lossy(),
        ],
        reads_file.path(),
    )
    .await;

    // A cache miss: booking-service asks the NestJS course-service for slot and game.
    let created = app
        .call(s::BOOKING_CREATE, create_request(1, 601, 3))
        .await
        .ok();
    assert_eq!(created["data"]["gameName"], "게임 6");
    assert_eq!(created["data"]["frontNineCourseId"], 61);
    // An unknown slot: NestJS answers its own GAME_TIMESLOT_GET_FAILED inside `response`, with no
    // timestamp; booking-service reads it as the peer's "no": BUS_002 with the peer's message.
    match app.call(s::BOOKING_CREATE, create_request(1, 602, 1)).await {
        Answer::Err(e) => {
            assert_eq!(e.code(), contracts::ErrorCode::NotFound, "{e}");
            assert!(
                e.error
                    .message
                    .contains("GameTimeSlot with ID 602 not found"),
                "{e}"
            );
        }
        Answer::Ok(v) => panic!("created on an unknown slot: {v}"),
    }
    // The outbox delivers gameTimeSlots.book as a NestJS request; the course-service applies it.
    eventually(
        "course-service to count the booked seats",
        Duration::from_secs(15),
        || async {
            let answer = app
                .call("course.debug.slot", json!({"timeSlotId": 601}))
                .await;
            match answer {
                Answer::Ok(v) if v["data"]["bookedPlayers"] == 3 => Some(()),
                _ => None,
            }
        },
    )
    .await;
    let _ = course.kill().await;

    // What the NestJS course-service read from booking-service's messages is what its
    // expectation file says it reads (the contract suite verifies booking-service sends it).
    recorded_reads_are_expected(
        reads_file.path(),
        &dir.join("expectations/course-service.json"),
    );
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(reads_file.path()).unwrap()).unwrap();
    assert!(recorded.get(s::SLOTS_BOOK).is_some(), "{recorded}");
}

/// Reads a JSON map `{pattern: [field, ...]}` recorded by a NestJS stand-in and checks that the
/// peer's expectation file lists every field under that subject's `reads`.
fn recorded_reads_are_expected(recorded: &std::path::Path, expectations: &std::path::Path) {
    let recorded: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&std::fs::read(recorded).unwrap()).unwrap();
    let expected: Value = serde_json::from_slice(&std::fs::read(expectations).unwrap()).unwrap();
    for (pattern, fields) in recorded
        .iter()
        .filter(|(p, _)| !p.starts_with("course.debug"))
    {
        let listed = interaction(&expected, pattern, expectations);
        for field in fields {
            assert!(
                listed["reads"].get(field).is_some(),
                "the peer reads `{field}` from {pattern}; {} does not list it",
                expectations.display()
            );
        }
    }
}

/// A NestJS notification listener (@EventPattern) gets booking.confirmed and booking.cancelled
/// with every field its e-mails read, and what it read is what its expectation file says.
#[tokio::test(flavor = "multi_thread")]
async fn a_nestjs_listener_reads_every_field_it_needs_from_the_booking_events() {
    let dir = nestjs_dir();
    let app = spawn_app().await;
    let (slot, game) = (slot(701, 7, 10, 4), game(7));
    app.seed_slot(&slot, &game).await;
    let reads_file = tempfile::NamedTempFile::new().unwrap();
    let (mut listener, mut lines) = start_peer(
        &dir,
        "listener.js",
        &[app.nats_world.nats_url()],
        reads_file.path(),
    )
    .await;

    let created = app
        .call(s::BOOKING_CREATE, create_request(5, 701, 2))
        .await
        .ok();
    let id = created["data"]["id"].clone();
    app.call(s::BOOKING_CANCEL, json!({"id": id, "userId": 5}))
        .await
        .ok();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("the listener got no event within 15 s")
            .unwrap()
            .unwrap();
        assert!(
            !line.contains("undefined"),
            "a field the e-mail needs is missing: {line}"
        );
        seen.push(line);
    }
    assert!(
        seen[0].starts_with("confirmed ") && seen[1].starts_with("cancelled "),
        "{seen:?}"
    );
    let _ = listener.kill().await;
    recorded_reads_are_expected(
        reads_file.path(),
        &dir.join("expectations/notification-service.json"),
    );
}
