//! `sim up`'s hints and `sim req` against a real stack: the slots it names exist, the create it
//! suggests books, and a refusal comes back as the service's error with a failing status.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use simulator::manual;
use world::stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn the_suggested_create_books_and_a_bad_one_is_shown_as_refused() {
    let logs = tempfile::tempdir().unwrap();
    let stack = Stack::start(
        &StackOptions {
            fsync: false,
            ..StackOptions::default()
        },
        logs.path(),
    )
    .await
    .unwrap();
    let slots = manual::sample_slots(&stack.client().await.unwrap(), 3).await;
    assert_eq!(slots.len(), 3, "{slots:?}");
    let url = stack.world.nats_url();
    let timeout = Duration::from_secs(5);

    let create = manual::example_create(&slots[0]);
    assert!(
        manual::request(url, "booking.create", &create, false, timeout)
            .await
            .unwrap()
    );
    // The same key again: replayed, still a success.
    assert!(
        manual::request(url, "booking.create", &create, false, timeout)
            .await
            .unwrap()
    );
    let refused = serde_json::json!({ "userId": 1 });
    assert!(
        !manual::request(url, "booking.create", &refused, false, timeout)
            .await
            .unwrap()
    );
    // An event is sent, with nothing to wait for.
    assert!(manual::request(
        url,
        "booking.game.sync",
        &serde_json::json!({}),
        true,
        timeout
    )
    .await
    .unwrap());
    // Nobody serves this subject: an error, not a hang.
    assert!(
        manual::request(url, "nobody.home", &serde_json::json!({}), false, timeout)
            .await
            .is_err()
    );
}
