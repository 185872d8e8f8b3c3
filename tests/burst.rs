//! A ticket-opening burst: ten thousand small requests at once, every one answered. In a test
//! binary of its own, like the flood test, so that nothing else competes for the two cores.

#![allow(clippy::unwrap_used)]

use contracts::subjects as s;
use integration_tests::flood;
use serde_json::json;

/// Before: the NATS client's buffer held 2,048 messages, and a ticket-opening burst of small
/// requests outran the serve loop: the bench's 10,000-client rush left 4,000-5,700 requests
/// unanswered, dropped silently but for a log line. Now the buffer holds what MAX_QUEUED_MIB
/// admits, so a burst is answered or shed with `SYS_004`, never dropped.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_ten_thousand_small_requests_is_answered_in_full() {
    let logs = tempfile::tempdir().unwrap();
    let stack = world::stack::Stack::start(
        &world::stack::StackOptions {
            fsync: false,
            ..Default::default()
        },
        logs.path(),
    )
    .await
    .unwrap();
    let client = stack.client().await.unwrap();
    let body: bytes::Bytes = contracts::Codec::default()
        .encode_request(
            s::BOOKING_FIND_BY_ID,
            &json!({"id": 424242}),
            &contracts::MessageId::fresh(),
        )
        .unwrap()
        .into();
    let replies = flood(&client, s::BOOKING_FIND_BY_ID, body, 10_000)
        .await
        .await
        .unwrap();
    let unanswered = replies.iter().filter(|r| r.is_none()).count();
    let metrics = reqwest::get(format!("http://{}/metrics", stack.http_addrs()[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nats_slow_consumer_total "))
        .unwrap_or("0")
        .trim()
        .to_owned();
    assert_eq!(unanswered, 0, "{unanswered} of 10,000 never answered");
    assert_eq!(dropped, "0", "dropped by the client buffer");
}
