//! The reference oversold under concurrency; this one must not, whatever the replica count.

#![allow(clippy::unwrap_used)]

use contracts::{subjects as s, ErrorCode};
use integration_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_creates_on_one_four_seat_slot_across_two_replicas_sell_exactly_four_seats(
) {
    let app = spawn_app_with(AppOptions {
        replicas: 2,
        configure: |c| c.db_pool_size = 16,
        ..AppOptions::default()
    })
    .await;
    app.seed_slot(&slot(300, 1, 10, 4), &game(1)).await;

    let calls = (0..200).map(|i| app.call(s::BOOKING_CREATE, create_request(i + 1, 300, 1)));
    let answers = futures::future::join_all(calls).await;

    let won = answers
        .iter()
        .filter(|a| matches!(a, Answer::Ok(_)))
        .count();
    let full = answers
        .iter()
        .filter(|a| matches!(a, Answer::Err(e) if e.code() == ErrorCode::BusinessRule))
        .count();
    assert_eq!(won, 4, "exactly four one-player bookings fit");
    assert_eq!(full, 196, "every other caller hears BUS_004");
    assert_eq!(app.booked_sum(300).await, 4);
    assert_eq!(app.cached_booked(300).await, 4, "cache = sum of bookings");
}
