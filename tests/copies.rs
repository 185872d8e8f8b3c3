//! The replica's copies of slot rows (`service/src/cache/copies.rs`) seen from outside: a copy
//! may let a create skip reading its slot, but never writes what the slot no longer says, and
//! never refuses on its own.

#![allow(clippy::unwrap_used)]

use contracts::subjects as s;
use integration_tests::*;

/// A change to the service's configuration.
type Configure = fn(&mut booking_service::Config);

/// Creates on a slot that course-service renamed after this replica copied it: the names
/// written are the slot's new ones, on the one-statement path, the batch path and the path of a
/// create run alone (`CREATE_BATCH_MAX` 1).
#[tokio::test(flavor = "multi_thread")]
async fn a_create_after_course_service_rewrote_its_slot_carries_the_new_names() {
    let configs: [(&str, Configure); 2] = [
        ("group commit", |_| {}),
        ("alone", |c| c.create_batch_max = 1),
    ];
    for (batch_max, configure) in configs {
        let app = spawn_app_with(AppOptions {
            configure,
            ..AppOptions::default()
        })
        .await;
        let mut rewritten = slot(81, 1, 10, 4);
        app.seed_slot(&rewritten, &game(1)).await;
        // The first create leaves the replica holding a copy of the slot.
        let first = app
            .call(s::BOOKING_CREATE, create_request(1, 81, 1))
            .await
            .ok();
        assert_eq!(first["data"]["gameName"], "게임 1");

        rewritten.game_name = "새 이름".into();
        rewritten.start_time = "15:30".into();
        app.call(
            s::BOOKING_SLOT_SYNC,
            serde_json::to_value(slot_sync(&rewritten)).unwrap(),
        )
        .await
        .ok();
        let second = app
            .call(s::BOOKING_CREATE, create_request(2, 81, 1))
            .await
            .ok();
        assert_eq!(second["data"]["gameName"], "새 이름", "{batch_max}");
        assert_eq!(second["data"]["startTime"], "15:30", "{batch_max}");
        let stored: String = sqlx::query_scalar("SELECT game_name FROM bookings WHERE user_id = 2")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(stored, "새 이름");
    }
}

/// The copy says the slot is full (this replica sold its last seats), then a cancel frees them
/// behind the copy's back: the next create is not refused on the copy's word, it reads the slot
/// and gets the seats.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_that_says_full_is_read_again_before_a_refusal() {
    let app = spawn_app().await;
    app.seed_slot(&slot(82, 1, 10, 4), &game(1)).await;
    let sold = app
        .call(s::BOOKING_CREATE, create_request(1, 82, 4))
        .await
        .ok();
    // Cancelled straight in the database, as another replica would: this replica's copy still
    // counts the four seats.
    sqlx::query("UPDATE bookings SET status = 'CANCELLED' WHERE id = $1")
        .bind(i32::try_from(sold["data"]["id"].as_i64().unwrap()).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE game_time_slot_cache SET booked_players = 0, available_players = 4, status = 'AVAILABLE' WHERE game_time_slot_id = 82")
        .execute(&app.pool)
        .await
        .unwrap();
    let again = app
        .call(s::BOOKING_CREATE, create_request(2, 82, 3))
        .await
        .ok();
    assert_eq!(again["data"]["playerCount"], 3);
    assert_eq!(app.cached_booked(82).await, 3);
}
