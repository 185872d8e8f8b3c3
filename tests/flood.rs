//! Memory under a flood (issue 12): a measurement of the service binary's peak RSS, in a test
//! binary of its own so no other test competes with it for the two cores while it measures.

#![allow(clippy::unwrap_used)]

use contracts::subjects as s;
use integration_tests::{flood, peak_rss};
use serde_json::json;

/// Before: with handlers stalled (a table lock) 1,500 bodies of 1 MB took the service from 53 MB
/// to 2.0 GB: async-nats buffered 65,536 messages per subject before any size check ran. Now the
/// service takes messages off the client's buffers at once, refuses oversized ones there, queues
/// the rest under a byte budget and sheds past it, so its peak RSS stays bounded. Two more
/// findings kept it from holding every time (71-174 MiB over 40 runs): the serve loop shared a
/// worker with the NATS reader and, woken into tokio's unstealable LIFO slot, waited while the
/// reader buffered 1 MB bodies; and a small body kept waiting pinned the whole read buffer it was
/// sliced from. With the loop on its own thread and waiting bodies copied out: 60-68 MiB over 30
/// runs, 10 of them with both cores kept busy by other processes.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_bodies_while_handlers_are_stalled_keeps_memory_bounded() {
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
    let pid = stack.service_pid(0).await.unwrap();
    let pool = stack.pool().await.unwrap();
    let client = stack.client().await.unwrap();
    let codec = contracts::Codec::default();
    let small = |pad: usize| -> bytes::Bytes {
        codec
            .encode_request(
                s::BOOKING_FIND_BY_ID,
                &json!({"id": 1, "pad": "x".repeat(pad)}),
                &contracts::MessageId::fresh(),
            )
            .unwrap()
            .into()
    };
    let before = peak_rss(pid);
    // Stall every handler: findById waits on the lock; 600 of them fill the 512 in flight.
    #[allow(clippy::disallowed_methods)] // the test's own blocker, never cancelled
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let stalled = flood(&client, s::BOOKING_FIND_BY_ID, small(0), 600).await;
    // Bodies under the 256 KiB limit wait for a handler until MAX_QUEUED_MIB is used, then are shed.
    let queued = flood(&client, s::BOOKING_FIND_BY_ID, small(200 * 1024), 400).await;
    // Bodies over the limit are refused as they arrive.
    let huge = bytes::Bytes::from(vec![b'{'; 1_000_000]);
    let oversized = flood(&client, s::BOOKING_FIND_BY_ID, huge, 1_500).await;
    let oversized = oversized.await.unwrap();
    let peak_during = peak_rss(pid);
    blocker.rollback().await.unwrap();
    let queued = queued.await.unwrap();
    let stalled = stalled.await.unwrap();
    let peak = peak_rss(pid);
    eprintln!(
        "peak RSS: before {} MiB, during the flood {} MiB, after {} MiB",
        before >> 20,
        peak_during >> 20,
        peak >> 20
    );

    // The flood really arrived and every request was answered: the bound is not luck.
    let code = |b: &Option<bytes::Bytes>| {
        let text = String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned();
        ["BUS_001", "SYS_004", "BUS_002", "SYS_002"]
            .into_iter()
            .find(|c| text.contains(c))
            .unwrap_or("none")
    };
    let tally = |replies: &[Option<bytes::Bytes>]| {
        let mut t = std::collections::BTreeMap::new();
        for r in replies {
            *t.entry(code(r)).or_insert(0) += 1;
        }
        t
    };
    eprintln!(
        "oversized {:?}, queued {:?}, stalled {:?}",
        tally(&oversized),
        tally(&queued),
        tally(&stalled)
    );
    assert!(oversized.iter().all(|b| code(b) == "BUS_001"));
    let shed = queued.iter().filter(|b| code(b) == "SYS_004").count();
    let served = queued.iter().filter(|b| code(b) == "BUS_002").count();
    assert_eq!(shed + served, 400, "every queued body answered");
    assert!(shed > 0 && served > 0, "shed {shed}, served {served}");
    assert!(stalled.iter().all(|b| code(b) == "BUS_002"));
    let metrics = reqwest::get(format!("http://{}/metrics", stack.http_addrs()[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("requests_shed_total {shed}")),
        "{metrics}"
    );
    assert!(metrics.contains("nats_slow_consumer_total 0"), "{metrics}");
    assert!(
        peak < 128 << 20,
        "peak RSS {} MiB is over 128 MiB",
        peak >> 20
    );
}
