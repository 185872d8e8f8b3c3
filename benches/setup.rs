//! The benchmark's data: its game and roomy slots seeded into a cache, the course-stub's slots made
//! roomy for the service, and the quiet database where the direct baselines run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{FIRST_SLOT, GAME, PRICE, SLOTS};

/// Waits for the course-stub's catalogue sync to fill the service's cache, makes its slots roomy
/// there (a million seats each) and the stub lenient (it applies every book), and returns them.
pub(crate) async fn roomy_stub_slots(
    pool: &sqlx::PgPool,
    client: &async_nats::Client,
) -> anyhow::Result<Vec<i32>> {
    let lenient = world::stack::ask(
        client,
        "courseStub.faults",
        serde_json::json!({"lenient": true}),
    );
    anyhow::ensure!(
        lenient.await.is_some(),
        "the course-stub did not turn lenient"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM game_time_slot_cache WHERE game_time_slot_id < $1",
        )
        .bind(FIRST_SLOT)
        .fetch_one(pool)
        .await?;
        if n >= i64::from(SLOTS) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the catalogue sync reached {n} slots"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(sqlx::query_scalar(
        "UPDATE game_time_slot_cache SET max_players = 1000000, \
         available_players = 1000000 - booked_players, is_available = true, status = 'AVAILABLE', \
         last_sync_at = now() + interval '1 day' WHERE game_time_slot_id < $1 \
         RETURNING game_time_slot_id",
    )
    .bind(FIRST_SLOT)
    .fetch_all(pool)
    .await?)
}

/// A database of its own on `world`'s server with the service's schema and the benchmark's slots,
/// and no service attached: where the direct baselines run.
pub async fn quiet_database(world: &world::World) -> anyhow::Result<world::TestDatabase> {
    let db = world.database().await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await?;
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/migrations");
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await?
        .run(&pool)
        .await?;
    seed(&pool).await?;
    pool.close().await;
    Ok(db)
}

/// The benchmark's game and [`SLOTS`] roomy slots, in the cache of the database behind `pool`.
pub(crate) async fn seed(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
    sqlx::query(
        "INSERT INTO game_cache (game_id, name, code, front_nine_course_id, front_nine_course_name, \
         back_nine_course_id, back_nine_course_name, base_price, club_id, club_name, updated_at) \
         VALUES ($1, 'bench', 'B1', 1, 'A', 2, 'B', $2, 1, 'club', now())",
    )
    .bind(GAME)
    .bind(PRICE)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO game_time_slot_cache (game_time_slot_id, game_id, game_name, game_code, \
         front_nine_course_name, back_nine_course_name, club_id, club_name, date, start_time, end_time, \
         max_players, booked_players, available_players, price, last_sync_at, updated_at) \
         SELECT id, $2, 'bench', 'B1', 'A', 'B', 1, 'club', $3, '09:00', '12:00', 1000000, 0, 1000000, \
         $5, now() + interval '1 day', now() FROM generate_series($1::int, $1::int + $4 - 1) AS id",
    )
    .bind(FIRST_SLOT)
    .bind(GAME)
    .bind(date)
    .bind(SLOTS)
    .bind(PRICE)
    .execute(pool)
    .await?;
    Ok(())
}
