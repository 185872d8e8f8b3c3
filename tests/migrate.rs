//! Migrations run by several processes at once on a new database (replicas started together):
//! one migrates at a time, and one waiting for its turn never blocks the other's concurrent index
//! builds.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use integration_tests::*;
use sqlx::{Connection as _, Executor as _};

/// Another process holds the migration lock and builds an index concurrently, which waits for
/// every snapshot older than its own. A migrator waiting for the lock must hold none: sqlx's
/// migrator waited inside `pg_advisory_lock`, a statement with a snapshot, so the build and the
/// wait waited for each other until PostgreSQL's deadlock detector failed one of them (and when
/// it failed the build, sqlx kept its lock, and the replicas started with it hung for ever).
#[tokio::test(flavor = "multi_thread")]
async fn a_migrator_waiting_for_its_turn_holds_no_snapshot() {
    let db = shared_world().await.database().await.unwrap();
    let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
    holder
        .execute("CREATE TABLE elsewhere (id int); SET statement_timeout = '20s'")
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(booking_service::MIGRATION_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();

    let url = db.url().to_owned();
    let waiting = tokio::spawn(async move { booking_service::migrate(&url).await });
    // Until the waiter has a session of its own.
    let mut sessions = 0_i64;
    for _ in 0..100 {
        sessions = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if sessions > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sessions > 0, "the migrator never connected");
    // Sampled while it waits: a session inside a statement shows the snapshot it holds.
    let mut holding = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let xmins: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        holding += usize::from(xmins > 0);
    }
    assert!(
        holding <= 2,
        "the waiting migrator held a snapshot in {holding} of 10 samples"
    );
    // So a concurrent build by the lock's holder goes through without meeting it.
    holder
        .execute("CREATE INDEX CONCURRENTLY elsewhere_id_idx ON elsewhere (id)")
        .await
        .expect("the concurrent build must not meet the migrator waiting for its turn");
    assert!(
        !waiting.is_finished(),
        "the migrator did not wait for the lock"
    );

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(booking_service::MIGRATION_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the migrator did not finish once the lock was free")
        .unwrap()
        .unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(held, 0, "a finished migration left an advisory lock held");
}

/// A concurrent build that failed half-way (its process killed, say) leaves an INVALID index
/// under the name its migration uses; `IF NOT EXISTS` would then skip the build and record the
/// migration as applied, and the outbox would go without its index for good.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_left_invalid_by_a_failed_build_is_built_again() {
    // The migrations before the one that builds the claim's index, applied as they were.
    let earlier = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/migrations");
    let mut names: Vec<_> = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let cut = names
        .iter()
        .position(|n| n.contains("outbox_channel_unsent"))
        .unwrap();
    for name in &names[..cut] {
        std::fs::copy(source.join(name), earlier.path().join(name)).unwrap();
    }
    let db = shared_world().await.database().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .unwrap()
        .run_direct(&mut conn)
        .await
        .unwrap();
    // A build under that index's name that fails half-way: a unique index over duplicates.
    conn.execute(
        "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) \
         VALUES (gen_random_uuid(), 'Booking', '1', 'booking.confirmed', '{}', 'events', 'booking:1'), \
                (gen_random_uuid(), 'Booking', '2', 'booking.confirmed', '{}', 'events', 'booking:2')",
    )
    .await
    .unwrap();
    let failed = conn
        .execute(
            "CREATE UNIQUE INDEX CONCURRENTLY outbox_events_channel_unsent_idx \
             ON outbox_events (channel)",
        )
        .await;
    assert!(failed.is_err(), "the planted build should fail");

    booking_service::migrate(db.url()).await.unwrap();
    let (valid, definition): (bool, String) = sqlx::query_as(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indexrelid = 'outbox_events_channel_unsent_idx'::regclass",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(valid, "{definition}");
    assert!(
        definition.contains("(channel, id) WHERE (status <> 'SENT'::text)"),
        "{definition}"
    );
}
