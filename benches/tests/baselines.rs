//! The direct baselines do the work they claim: `pgbench`'s script and the Rust direct path each
//! write a booking with its payment, history, two outbox rows and the seat count, on a quiet
//! database of the service's schema.

#![allow(clippy::unwrap_used)]

#[tokio::test(flavor = "multi_thread")]
async fn pgbench_and_the_rust_path_write_what_the_service_writes() {
    let world = world::World::builder()
        .fsync(false)
        .without_nats()
        .start()
        .await
        .unwrap();
    let db = benches::quiet_database(&world).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let figures = benches::pgbench::run(db.url(), 2, 1, dir.path()).unwrap();
    assert!(figures.throughput > 0.0, "{figures:?}");
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    benches::direct_create(&pool, 7, 900_001).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let bookings = count("bookings").await;
    assert!(
        bookings as u64 > figures.ops,
        "pgbench's and ours: {bookings}"
    );
    assert_eq!(count("payments").await, bookings);
    assert_eq!(count("booking_history").await, bookings);
    assert_eq!(count("outbox_events").await, 2 * bookings);
    let seats: i64 =
        sqlx::query_scalar("SELECT SUM(booked_players)::int8 FROM game_time_slot_cache")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(seats, bookings, "each booking counted one seat");
}
